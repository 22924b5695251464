"""Batches: the shape/padding contract, determinism, resume, host shards, eval coverage."""

import itertools

import numpy as np
import pytest

from s2s_jax import data as s2s_data

N, MAX_LEN = 48, 6


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """48 train examples 'u<i> ...' of lengths 1..6 whose targets are the reversed sources."""
    tmp = tmp_path_factory.mktemp("pipeline")
    rng = np.random.default_rng(0)

    def lines(prefix, n):
        out = []
        for i in range(n):
            words = [f"{prefix}{i}"] + [
                f"w{k}" for k in rng.integers(0, 5, rng.integers(0, MAX_LEN))
            ]
            out.append(" ".join(words) + "\t" + " ".join(words[::-1]) + "\n")
        return "".join(out)

    cfg = s2s_data.default_config()
    cfg.dataset, cfg.max_len = "parallel_text", MAX_LEN
    for split, n in (("train", N), ("valid", 7), ("test", 13)):
        (tmp / f"{split}.tsv").write_text(lines("u", N) if split == "train" else lines("u", n))
        cfg[f"{split}_file"] = str(tmp / f"{split}.tsv")
    return s2s_data.load_data(cfg, None)


def _example_ids(data, batch):
    """Which examples a batch holds: the index in 'u<i>' of each real row."""
    return [
        int(data.src_vocab.tokens[row[0]][1:])
        for row, n in zip(batch["inputs"], batch["targets_len"])
        if n > 0
    ]


def _check_contract(data, batch, rows):
    assert set(batch) == {"inputs", "targets", "inputs_len", "targets_len"}
    assert batch["inputs"].shape == (rows, MAX_LEN) and batch["targets"].shape == (
        rows,
        MAX_LEN + 1,
    )
    assert batch["inputs_len"].shape == batch["targets_len"].shape == (rows,)
    assert all(v.dtype == np.int32 for v in batch.values())
    for x, y, nx, ny in zip(
        batch["inputs"], batch["targets"], batch["inputs_len"], batch["targets_len"]
    ):
        if ny == 0:  # dummy row
            assert nx == 0 and not x.any() and not y.any()
            continue
        assert (x[nx:] == 0).all() and (x[:nx] >= 4).all()  # no pad/bos/eos inside the source
        assert y[ny - 1] == 2 and (y[ny:] == 0).all() and (y[: ny - 1] >= 4).all()
        assert data.tgt_vocab.decode(y) == data.src_vocab.decode(x)[::-1]


def test_train_batches_follow_the_contract(data):
    it = s2s_data.train_iterator(data, batch_size=8, seed=0)
    for batch in itertools.islice(it, 7):
        _check_contract(data, batch, 8)
        assert (batch["targets_len"] > 0).all()


def test_epochs_cover_the_data_and_reshuffle(data):
    it = s2s_data.train_iterator(data, batch_size=8, seed=3)
    epochs = [[_example_ids(data, next(it)) for _ in range(N // 8)] for _ in range(2)]
    for epoch in epochs:
        assert sorted(sum(epoch, [])) == list(range(N))
    assert epochs[0] != epochs[1]


def test_remainder_is_dropped(data):
    it = s2s_data.train_iterator(data, batch_size=10, seed=0)
    epoch = sum((_example_ids(data, next(it)) for _ in range(N // 10)), [])
    assert len(epoch) == len(set(epoch)) == 40


def test_same_seed_same_batches_other_seed_other_batches(data):
    def first(seed):
        return [
            _example_ids(data, b)
            for b in itertools.islice(s2s_data.train_iterator(data, 8, seed), 4)
        ]

    assert first(5) == first(5)
    assert first(5) != first(6)


@pytest.mark.parametrize("skip", [2, 5])  # 5: the resumed batches cross an epoch boundary
def test_restored_iterator_yields_the_same_next_batches(data, skip):
    it = s2s_data.train_iterator(data, batch_size=8, seed=1)
    for _ in range(skip):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(4)]
    resumed = s2s_data.train_iterator(data, batch_size=8, seed=1)
    resumed.set_state(state)
    for want, got in zip(expected, [next(resumed) for _ in range(4)]):
        for key in want:
            np.testing.assert_array_equal(want[key], got[key])


def test_bucketing_groups_similar_lengths(data):
    def spread(window):
        it = s2s_data.train_iterator(data, batch_size=8, seed=0, bucket_window=window)
        return np.mean([np.ptp(next(it)["inputs_len"]) for _ in range(4 * N // 8)])

    assert spread(6) < 0.5 * spread(1)


def test_two_hosts_get_disjoint_shards_that_cover_the_data(data):
    hosts = [
        s2s_data.train_iterator(data, 16, seed=2, process_index=i, process_count=2)
        for i in range(2)
    ]
    seen = [[], []]
    for _ in range(N // 16):
        for i, it in enumerate(hosts):
            batch = next(it)
            _check_contract(data, batch, 8)
            seen[i] += _example_ids(data, batch)
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(N))


@pytest.mark.parametrize("batch_size, hosts", [(4, 1), (5, 1), (16, 1), (4, 2), (6, 3)])
def test_eval_batches_cover_each_example_once(data, batch_size, hosts):
    split = data.splits["test"]  # 13 examples: always a padded last batch
    per_host = [s2s_data.eval_batches(data, "test", batch_size, i, hosts) for i in range(hosts)]
    assert len({len(b) for b in per_host}) == 1  # same step count on every host
    ids = []
    for batches in per_host:
        for batch in batches:
            _check_contract(data, batch, batch_size // hosts)
            ids += _example_ids(data, batch)
    assert sorted(ids) == sorted(_example_ids(data, split.batch(np.arange(len(split)), MAX_LEN)))
    assert len(ids) == len(split)
    if hosts == 1:  # in order
        assert ids == _example_ids(data, split.batch(np.arange(len(split)), MAX_LEN))
        assert list(per_host[0])[-1]["targets_len"][-1] == 0 or len(split) % batch_size == 0


def test_eval_batches_are_reiterable(data):
    batches = s2s_data.eval_batches(data, "valid", 4)
    first, second = list(batches), list(batches)
    assert len(first) == len(batches) == 2
    np.testing.assert_array_equal(first[1]["inputs"], second[1]["inputs"])


def test_split_is_a_random_access_source(data):
    split = data.splits["train"]
    ex = split[-1]
    assert len(split) == N and ex["inputs"].dtype == np.int32
    assert list(ex["targets"]) == list(ex["inputs"])[::-1]
    with pytest.raises(IndexError):
        split[N]


def test_encode_batch_for_predict(data):
    out = s2s_data.encode_batch(
        data.src_vocab, ["u1 w0 never_seen", "", "w1 " * 9], "word", MAX_LEN
    )
    assert out["inputs"].shape == (3, MAX_LEN) and out["inputs"].dtype == np.int32
    assert list(out["inputs_len"]) == [3, 0, MAX_LEN]
    assert data.src_vocab.decode(out["inputs"][0]) == ["u1", "w0", "<unk>"]
    assert (
        not out["inputs"][1].any() and (out["inputs"][2] == data.src_vocab.encode(["w1"])[0]).all()
    )


@pytest.mark.parametrize(
    "batch_size, process_count, match",
    [(1, 2, "smaller than process_count"), (64, 1, "fewer than one global batch")],
)
def test_bad_batch_sizes(data, batch_size, process_count, match):
    with pytest.raises(s2s_data.DataError, match=match):
        s2s_data.train_iterator(data, batch_size, 0, 0, process_count)


def test_unknown_eval_split(data):
    with pytest.raises(s2s_data.DataError, match=r"\['test', 'train', 'valid'\]"):
        s2s_data.eval_batches(data, "dev", 4)
