"""Shape buckets: the smallest bucket that holds a batch, one compile per bucket, the same loss
as the fixed-shape path, every host on the same shape, bad bucket lists as one-line errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax import data as s2s_data
from s2s_jax.models import model
from s2s_jax.training import losses

MAX_LEN = 40


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The translation-like task at a small size: lengths 3..30, 300 training pairs."""
    cfg = s2s_data.default_config()
    cfg.update(
        dataset="translate",
        max_len=MAX_LEN,
        buckets="auto",
        data_dir=str(tmp_path_factory.mktemp("tfds")),
    )
    cfg.synthetic.update(
        num_train=300, num_valid=20, num_test=37, min_length=3, max_length=30, alphabet_size=60
    )
    return s2s_data.load_data(cfg, None)


@pytest.mark.parametrize(
    "spec,want",
    [
        ("", (MAX_LEN,)),
        ("auto", (8, 16, 24, 32, MAX_LEN)),
        ("10, 20,40", (10, 20, MAX_LEN)),
        ("40", (MAX_LEN,)),
    ],
)
def test_bucket_lists(spec, want):
    assert s2s_data.shape_buckets(spec, MAX_LEN) == want


@pytest.mark.parametrize(
    "spec,says",
    [
        ("8,16,32", "the largest bucket 32 cannot hold max_len=40; end the list with 40"),
        ("8,16,48", "the largest bucket 48 is longer than max_len=40"),
        ("16,8,40", "strictly increasing"),
        ("8,8,40", "strictly increasing"),
        ("0,40", "positive"),
        ("8;40", "not a comma-separated list"),
    ],
)
def test_bad_bucket_lists_name_the_fix(spec, says):
    with pytest.raises(s2s_data.DataError, match=says) as e:
        s2s_data.shape_buckets(spec, MAX_LEN)
    assert "\n" not in str(e.value)


def _longest(batch):
    real = batch["targets_len"] > 0
    return max(int(batch["inputs_len"][real].max()), int(batch["targets_len"][real].max()) - 1)


def test_every_batch_takes_the_smallest_bucket_that_holds_it(data):
    widths = set()
    for batch in itertools.islice(s2s_data.train_iterator(data, 16, seed=0), 40):
        width = batch["inputs"].shape[1]
        assert batch["targets"].shape[1] == width + 1 and width in data.buckets
        longest = _longest(batch)
        assert width >= longest
        assert width == min(b for b in data.buckets if b >= longest)
        widths.add(width)
    assert len(widths) >= 3  # sorted windows put short examples together: small buckets used


def test_hosts_pad_their_shards_of_a_step_to_one_shape(data):
    hosts = [
        s2s_data.train_iterator(data, 16, 2, process_index=i, process_count=2) for i in range(2)
    ]
    for a, b in itertools.islice(zip(*hosts), 20):
        assert a["inputs"].shape == b["inputs"].shape == (8, a["inputs"].shape[1])


def test_resume_replays_the_bucketed_batches(data):
    it = s2s_data.train_iterator(data, 16, seed=1)
    for _ in range(7):
        next(it)
    state = it.get_state()
    want = [next(it) for _ in range(5)]
    resumed = s2s_data.train_iterator(data, 16, seed=1)
    resumed.set_state(state)
    for a, b in zip(want, (next(resumed) for _ in range(5))):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])


def test_eval_batches_cover_every_example_once_in_small_buckets(data):
    batches = list(s2s_data.eval_batches(data, "test", 8))
    split = data.splits["test"]
    seen = sorted(
        i
        for k in range(len(batches))
        for i in s2s_data.eval_batches(data, "test", 8).indices[k]
        if i >= 0
    )
    assert seen == list(range(len(split)))
    widths = [b["inputs"].shape[1] for b in batches]
    assert widths == sorted(widths) and len(set(widths)) >= 2  # sorted by length
    for batch in batches:
        assert batch["inputs"].shape[1] == min(b for b in data.buckets if b >= _longest(batch))


def _net(data):
    cfg = model.ModelConfig.from_experiment(
        src_vocab=len(data.src_vocab),
        tgt_vocab=len(data.tgt_vocab),
        emb=8,
        hidden=8,
        bridge="attention",
        sample_from="argmax",
    )
    net = model.build(cfg)
    return net, net.init(jax.random.PRNGKey(0))


@pytest.mark.parametrize("probability", [0.0, 0.5])
def test_a_bucketed_batch_has_the_loss_of_the_same_examples_at_max_len(data, probability):
    """Padding is exact: the bucket's shorter scan gives the fixed shape's loss and gradient,
    with scheduled sampling too (a step's keys do not depend on the number of steps)."""
    net, params = _net(data)
    batch = next(s2s_data.train_iterator(data, 16, seed=0))
    assert batch["inputs"].shape[1] < MAX_LEN
    wide = s2s_data.pad_batch(batch, MAX_LEN)

    def loss(p, b):
        out = net.apply(p, b, jax.random.PRNGKey(3), probability)
        return losses.cross_entropy(out.logits, b["targets"], b["targets_len"])

    grad = jax.jit(jax.value_and_grad(loss))
    (short, g_short), (full, g_full) = (grad(params, b) for b in (batch, wide))
    np.testing.assert_allclose(short, full, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(g_short), jax.tree_util.tree_leaves(g_full)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_one_compile_per_bucket_and_none_after_each_bucket_was_seen(data):
    net, params = _net(data)
    traces = []

    @jax.jit
    def step(p, b):
        traces.append(b["inputs"].shape)
        out = net.apply(p, b, jax.random.PRNGKey(0), jnp.float32(0.25))
        return losses.cross_entropy(out.logits, b["targets"], b["targets_len"])

    it = s2s_data.train_iterator(data, 16, seed=0)
    per_epoch = len(data.splits["train"]) // 16
    first = [next(it) for _ in range(per_epoch)]
    for batch in first:
        step(params, batch)
    used = {b["inputs"].shape for b in first}
    assert sorted(traces) == sorted(used) and len(used) >= 3
    for _ in range(per_epoch):  # the second epoch: new batches, no new shapes, no compile
        step(params, next(it))
    assert len(traces) == len(used)


def test_prediction_inputs_take_the_bucket_of_their_longest_line(data):
    enc = s2s_data.encode_batch(data.src_vocab, ["w1 w2 w3", ""], "word", MAX_LEN, data.buckets)
    assert enc["inputs"].shape == (2, 8)
    fixed = s2s_data.encode_batch(data.src_vocab, ["w1 w2 w3", ""], "word", MAX_LEN)
    assert fixed["inputs"].shape == (2, MAX_LEN)


BUDGET = 400  # padded target positions a global batch may hold


def _token_batches(data, **kw):
    from s2s_jax.data import pipeline

    return pipeline._TrainBatches(
        data.splits["train"], MAX_LEN, 0, 1, 0, 8, data.buckets, tokens=BUDGET, **kw
    )


def test_token_batches_fill_a_budget_with_one_shape_per_bucket(data):
    shapes = {}
    for batch in itertools.islice(
        s2s_data.train_iterator(data, BUDGET, 0, batch_type="tokens", multiple=2), 60
    ):
        rows, width = batch["inputs"].shape
        assert rows * (width + 1) <= BUDGET and rows % 2 == 0
        assert shapes.setdefault(width, rows) == rows  # a bucket always has the same rows
        assert width == min(b for b in data.buckets if b >= _longest(batch))
    assert len(shapes) >= 3
    assert shapes[min(shapes)] > shapes[max(shapes)]  # short sentences: more of them a batch


def test_token_batches_use_every_example_once_an_epoch(data):
    plan = _token_batches(data).plan(0)
    used = np.concatenate(plan)
    real = used[used >= 0]
    assert sorted(real) == list(range(len(data.splits["train"])))  # nothing dropped
    assert len(used) - len(real) < len(plan) * max(b.size for b in plan)  # dummies only fill up


def test_token_batches_resume_across_epochs_of_different_lengths(data):
    it = s2s_data.train_iterator(data, BUDGET, 3, batch_type="tokens")
    skip = len(_token_batches(data).plan(0)) + 5  # into the second epoch
    for _ in range(skip):
        next(it)
    state = it.get_state()
    want = [next(it) for _ in range(4)]
    resumed = s2s_data.train_iterator(data, BUDGET, 3, batch_type="tokens")
    resumed.set_state(state)
    for a, b in zip(want, (next(resumed) for _ in range(4))):
        np.testing.assert_array_equal(a["inputs"], b["inputs"])
        np.testing.assert_array_equal(a["targets_len"], b["targets_len"])


def test_token_batches_split_over_hosts_into_disjoint_equal_shards(data):
    hosts = [
        s2s_data.train_iterator(
            data, BUDGET, 0, process_index=i, process_count=2, batch_type="tokens"
        )
        for i in range(2)
    ]
    whole = s2s_data.train_iterator(data, BUDGET, 0, batch_type="tokens", multiple=2)
    for a, b, both in itertools.islice(zip(*hosts, whole), 10):
        assert a["inputs"].shape == b["inputs"].shape
        np.testing.assert_array_equal(np.concatenate([a["inputs"], b["inputs"]]), both["inputs"])


def test_a_budget_below_one_longest_example_names_the_fix(data):
    with pytest.raises(s2s_data.DataError, match="raise batch_size to at least 82"):
        s2s_data.train_iterator(data, 60, 0, batch_type="tokens", multiple=2)
    with pytest.raises(s2s_data.DataError, match=r"choose one of \['sentences', 'tokens'\]"):
        s2s_data.train_iterator(data, 60, 0, batch_type="words")
