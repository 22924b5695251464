import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax.models import beam, model

from conftest import make_batch

BOS, EOS, PAD = 1, 2, 0


def _first_eos_prefix(row):
    row = list(np.asarray(row))
    return row[: row.index(EOS) + 1] if EOS in row else row


def _model(**kw):
    base = dict(
        src_vocab=11,
        tgt_vocab=13,
        emb=6,
        hidden=8,
        bridge="attention",
        layers=2,
        bidirectional=True,
    )
    base.update(kw)
    m = model.build(model.ModelConfig.from_experiment(**base))
    return m, m.init(jax.random.PRNGKey(0))


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(bridge="concat_inputs", cell="gru"), dict(bridge="dense", attention_type="dot")],
)
def test_beam_width_one_equals_greedy(kw):
    m, params = _model(**kw)
    batch = make_batch(batch=6, tgt_len=8)
    greedy = np.argmax(
        np.asarray(m.decode_greedy(params, batch["inputs"], batch["inputs_len"], 8).logits), -1
    )
    tokens, scores = m.decode_beam(
        params, batch["inputs"], batch["inputs_len"], 8, 1, penalty="none"
    )
    for g, b in zip(greedy, np.asarray(tokens)[:, 0]):
        assert _first_eos_prefix(b) == _first_eos_prefix(g)
    # The raw score of beam 1 is the greedy path's summed log-probability.
    logp = jax.nn.log_softmax(
        m.decode_greedy(params, batch["inputs"], batch["inputs_len"], 8).logits
    )
    for row in range(6):
        path = _first_eos_prefix(greedy[row])
        want = sum(float(logp[row, t, tok]) for t, tok in enumerate(path))
        np.testing.assert_allclose(scores[row, 0], want, rtol=1e-5, atol=1e-5)


def _markov_step(table):
    """A hand-built model: log-probabilities depend only on the previous token."""
    table = jnp.log(jnp.asarray(table, jnp.float32) + 1e-12)

    def step(state, tokens):
        return state, table[tokens]

    return step


def test_beam_finds_the_better_sequence_greedy_misses():
    # From BOS: 'a'(3) 0.6, 'b'(4) 0.4. After 'a' the mass spreads over five tokens (0.2 each);
    # after 'b' EOS is certain. Greedy: a, then at best 0.6*0.2 = 0.12; beam: b EOS = 0.4.
    V = 10
    table = np.zeros((V, V))
    table[BOS, 3], table[BOS, 4] = 0.6, 0.4
    table[3, 5:10] = 0.2
    table[4, EOS] = 1.0
    table[5:10, EOS] = 1.0
    table[EOS, EOS] = table[PAD, PAD] = 1.0
    step = _markov_step(table)
    state = jnp.zeros((2 * 3, 1))
    tokens, scores = beam.search(step, state, 2, 3, 4, bos=BOS, eos=EOS, penalty="none")
    assert _first_eos_prefix(tokens[0, 0]) == [4, EOS]
    np.testing.assert_allclose(scores[0, 0], np.log(0.4), rtol=1e-5)
    assert list(np.asarray(tokens[0, 0, 2:])) == [PAD, PAD]  # padding after EOS
    greedy, _ = beam.search(step, jnp.zeros((2, 1)), 2, 1, 4, bos=BOS, eos=EOS, penalty="none")
    assert _first_eos_prefix(greedy[0, 0])[0] == 3  # greedy commits to 'a'
    np.testing.assert_allclose(scores[:, 1], np.log(0.12), rtol=1e-4)  # second best
    # min_len forbids the early EOS: 'b' then EOS is impossible, so 'a x EOS' wins.
    tokens, _ = beam.search(step, state, 2, 3, 4, bos=BOS, eos=EOS, penalty="none", min_len=2)
    assert _first_eos_prefix(tokens[0, 0])[0] == 3


def test_length_penalties():
    lengths = jnp.array([1, 4, 10])
    np.testing.assert_allclose(
        beam.length_penalty(lengths, "gnmt", 0.6),
        ((5 + np.array([1, 4, 10])) / 6) ** 0.6,
        rtol=1e-6,
    )
    np.testing.assert_allclose(beam.length_penalty(lengths, "average", 0.6), [1, 4, 10])
    with pytest.raises(ValueError, match="gnmt"):
        beam.length_penalty(lengths, "bogus", 0.6)


def test_results_do_not_depend_on_the_rest_of_the_batch():
    m, params = _model()
    batch = make_batch(batch=5, tgt_len=8)
    tokens, scores = m.decode_beam(params, batch["inputs"], batch["inputs_len"], 8, 3)
    for row in (0, 3):
        alone, alone_scores = m.decode_beam(
            params, batch["inputs"][row : row + 1], batch["inputs_len"][row : row + 1], 8, 3
        )
        np.testing.assert_array_equal(alone[0], tokens[row])
        np.testing.assert_allclose(alone_scores[0], scores[row], rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(np.asarray(scores), axis=1) <= 1e-6)  # best first


def test_the_length_penalty_ranks_every_step_so_a_longer_hypothesis_survives_pruning():
    # From BOS: EOS 0.55, 'a'(3) 0.45, and after 'a' EOS is certain. Raw, [EOS] (-0.60) beats
    # [a EOS] (-0.80); with gnmt at alpha = 2 the empty hypothesis (length 0: EOS is not
    # counted) scores -0.60 / (5/6)^2 = -0.86 and [a EOS] (length 1) -0.80. Ranking by raw
    # log-probability at step 0 keeps only [EOS] with one beam; TF's per-step ranking keeps 'a'.
    V = 6
    table = np.zeros((V, V))
    table[BOS, EOS], table[BOS, 3] = 0.55, 0.45
    table[3, EOS] = 1.0
    table[EOS, EOS] = table[PAD, PAD] = 1.0
    step = _markov_step(table)
    tokens, scores = beam.search(
        step, jnp.zeros((1, 1)), 1, 1, 3, bos=BOS, eos=EOS, penalty="gnmt", alpha=2.0
    )
    assert _first_eos_prefix(tokens[0, 0]) == [3, EOS]
    np.testing.assert_allclose(scores[0, 0], np.log(0.45), rtol=1e-5)
    raw, _ = beam.search(step, jnp.zeros((1, 1)), 1, 1, 3, bos=BOS, eos=EOS, penalty="none")
    assert _first_eos_prefix(raw[0, 0]) == [EOS]


def _exhaustive(m, params, inputs, inputs_len, steps, penalty, alpha):
    """Every hypothesis of `steps` tokens over the whole target vocabulary (PAD after the first
    EOS, as beam search writes them), scored by the teacher-forced model: per example, a list
    of (normalised score, tokens) best first."""
    vocab = m.config.tgt_vocab
    seqs = [
        s
        for s in itertools.product(range(vocab), repeat=steps)
        if EOS not in s or all(x == PAD for x in s[s.index(EOS) + 1 :])
    ]
    targets = jnp.asarray(seqs, jnp.int32)  # [N, T]
    n = len(seqs)
    ends = np.array([s.index(EOS) if EOS in s else steps for s in seqs])  # tokens before EOS
    read = np.arange(steps)[None] <= np.minimum(ends, steps - 1)[:, None]  # EOS is scored
    results = []
    for row in range(inputs.shape[0]):
        batch = {
            "inputs": jnp.repeat(inputs[row : row + 1], n, 0),
            "inputs_len": jnp.repeat(inputs_len[row : row + 1], n, 0),
            "targets": targets,
            "targets_len": jnp.asarray(ends + 1, jnp.int32),
        }
        logits = m.apply(params, batch, jax.random.PRNGKey(0), 0.0, train=False).logits
        logp = np.take_along_axis(
            np.asarray(jax.nn.log_softmax(logits), np.float64), np.asarray(targets)[..., None], -1
        )[..., 0]  # [N, T]
        raw = np.sum(np.where(read, logp, 0.0), axis=1)
        score = raw / np.asarray(beam.length_penalty(ends, penalty, alpha), np.float64)
        order = np.argsort(-score, kind="stable")
        results.append([(score[i], seqs[i]) for i in order])
    return results


@pytest.mark.parametrize(
    "penalty,alpha,beam_size",
    [
        ("none", 0.0, 16),
        ("gnmt", 1.0, 16),
        ("average", 0.0, 16),
        ("none", 0.0, 64),
        ("gnmt", 1.0, 64),
    ],
)
def test_beam_search_equals_exhaustive_search(penalty, alpha, beam_size):
    """V = 4 (PAD, BOS, EOS and one word) and T = 3: 40 hypotheses. K = 64 holds every prefix
    at every step; K = 16 = V^(T-1) still holds every prefix of T - 1 tokens, so its last
    step ranks every complete hypothesis: either way the K best (by the normalised score, as
    every step ranks them) are exactly exhaustive search's K best."""
    m, params = _model(tgt_vocab=4, bidirectional=False, layers=1)
    # Sharper distributions than a fresh model's near-uniform ones: scores far from ties.
    out = params["decoder"]["out"]
    params["decoder"]["out"] = dict(out, kernel=6.0 * out["kernel"], bias=out["bias"] + 1.0)
    batch = make_batch(batch=2, tgt_len=3)
    steps = 3
    tokens, scores = m.decode_beam(
        params, batch["inputs"], batch["inputs_len"], steps, beam_size, penalty=penalty, alpha=alpha
    )
    for row, best in enumerate(
        _exhaustive(m, params, batch["inputs"], batch["inputs_len"], steps, penalty, alpha)
    ):
        real = min(beam_size, len(best))  # beyond the 40 real ones: impossible fillers
        want_scores = np.array([sc for sc, _ in best[:real]])
        np.testing.assert_allclose(
            np.asarray(scores[row, :real]), want_scores, rtol=1e-4, atol=1e-4
        )
        assert np.all(np.asarray(scores[row, real:]) < -1e6)
        gaps = np.diff(want_scores)
        for k in range(real):
            clear = (k == 0 or -gaps[k - 1] > 1e-3) and (k == real - 1 or -gaps[k] > 1e-3)
            if clear:  # not within rounding of a neighbour: the same hypothesis, exactly
                assert tuple(np.asarray(tokens[row, k])) == best[k][1], (k, best[:real])
