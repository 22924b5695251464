import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax.models import model, sampling
from s2s_jax.training import losses

import reference
from conftest import make_batch

TOL = dict(rtol=2e-5, atol=2e-5)


def _model(bridge="attention", **kw):
    base = dict(
        src_vocab=11,
        tgt_vocab=13,
        emb=6,
        hidden=8,
        bridge=bridge,
        attention_type="bahdanau",
        layers=2,
    )
    base.update(kw)
    m = model.build(model.ModelConfig.from_experiment(**base))
    return m, m.init(jax.random.PRNGKey(0))


VARIANTS = [dict(bridge=b) for b in model.BRIDGE_SPELLINGS if b != "concat"] + [
    dict(bridge="concat", decoder_hidden=40),
    dict(bridge="attention", attention_type="dot", bidirectional=True, cell="gru"),
    dict(bridge="attention", sampling_mode="output"),
    dict(bridge="dense", sampling_mode="output", next_inputs="dense"),
    dict(bridge="copy", sampling_mode="output", next_inputs="identity", emb=13),  # E == V
    dict(bridge="attention", sample_from="argmax"),
]


@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: "-".join(map(str, kw.values())))
@pytest.mark.parametrize("p", [0.0, 0.5])
def test_scan_equals_the_python_loop_reference(kw, p):
    m, params = _model(**kw)
    batch = make_batch()
    rng = jax.random.PRNGKey(7)
    out = m.apply(params, batch, rng, p, train=False)
    logits, ids, weights = reference.decode(m, params, batch, rng, p)
    np.testing.assert_allclose(out.logits, logits, **TOL)
    np.testing.assert_array_equal(out.sample_ids, ids)
    if weights is not None:
        np.testing.assert_allclose(out.attention, weights, **TOL)
        past = np.arange(batch["inputs"].shape[1]) >= np.asarray(batch["inputs_len"])[:, None]
        assert past.any() and np.all(np.asarray(out.attention).transpose(1, 0, 2)[:, past] == 0)
    if p == 0.0:
        assert np.all(np.asarray(out.sample_ids) == -1)
    else:
        assert np.any(np.asarray(out.sample_ids) >= 0)


def test_p0_is_teacher_forcing_and_ignores_the_draws():
    m, params = _model()
    batch = make_batch()
    a = m.apply(params, batch, jax.random.PRNGKey(1), 0.0, train=False)
    b = m.apply(params, batch, jax.random.PRNGKey(2), 0.0, train=False)
    np.testing.assert_array_equal(a.logits, b.logits)  # no randomness reaches the result
    # Teacher forcing: each step's logits depend only on gold prefixes, so changing a later
    # target token leaves every earlier step unchanged.
    targets = batch["targets"].at[:, 3].set(5)
    c = m.apply(params, dict(batch, targets=targets), jax.random.PRNGKey(1), 0.0, train=False)
    np.testing.assert_array_equal(a.logits[:, :4], c.logits[:, :4])
    assert float(a.sampled_fraction) == 0.0


@pytest.mark.parametrize("kw", [dict(bridge="attention"), dict(bridge="dense", cell="gru")])
def test_p1_argmax_equals_free_running_greedy(kw):
    m, params = _model(sample_from="argmax", **kw)
    batch = make_batch()
    out = m.apply(params, batch, jax.random.PRNGKey(3), 1.0, train=False)
    greedy = m.decode_greedy(params, batch["inputs"], batch["inputs_len"], 6)
    np.testing.assert_array_equal(out.logits, greedy.logits)
    tokens = np.argmax(np.asarray(greedy.logits), -1)
    np.testing.assert_array_equal(out.sample_ids[:, 1:], tokens[:, :-1])  # fed its own argmax
    _, ref_ids, _ = reference.decode(
        m, params, batch, jax.random.PRNGKey(3), 1.0, free_running=True
    )
    np.testing.assert_array_equal(greedy.sample_ids, ref_ids)
    np.testing.assert_allclose(out.sampled_fraction, 1.0)


def test_realised_fraction_is_counted_over_real_positions():
    m, params = _model(bridge="dense")
    batch = make_batch(batch=64, tgt_len=12, seed=3)
    out = m.apply(params, batch, jax.random.PRNGKey(4), 0.4, train=False)
    ids = np.asarray(out.sample_ids)
    lens = np.asarray(batch["targets_len"])
    eligible = (np.arange(12)[None] >= 1) & (np.arange(12)[None] < lens[:, None])
    np.testing.assert_allclose(out.sampled_fraction, (ids >= 0)[eligible].mean(), rtol=1e-6)
    assert abs(float(out.sampled_fraction) - 0.4) < 5 * np.sqrt(0.24 / eligible.sum())
    assert np.all(ids[:, 0] == -1)  # step 0 always reads BOS


def test_per_example_probability_vector():
    m, params = _model(bridge="dense")
    batch = make_batch(batch=4, tgt_len=12)
    out = m.apply(params, batch, jax.random.PRNGKey(5), jnp.array([0.0, 1.0, 0.0, 1.0]))
    ids = np.asarray(out.sample_ids)
    assert np.all(ids[[0, 2]] == -1) and np.all(ids[[1, 3], 1:] >= 0)


def test_output_mode_gradient_flag_controls_the_feedback_gradient():
    batch = make_batch()

    def grad_norm(output_gradient):
        m, params = _model(bridge="dense", sampling_mode="output", output_gradient=output_gradient)

        def loss(out_params):
            p = dict(params, decoder=dict(params["decoder"], out=out_params))
            out = m.apply(p, batch, jax.random.PRNGKey(0), 1.0, train=False)
            # Only the last step's loss: its dependence on earlier outputs is via the feedback.
            return jnp.sum(out.logits[:, -1, 0])

        # d(last logits)/d(out bias) is 1 per example without feedback gradient, more with it.
        g = jax.grad(loss)(params["decoder"]["out"])
        return np.asarray(g["bias"])

    without, with_ = grad_norm(False), grad_norm(True)
    np.testing.assert_allclose(without, np.eye(13)[0] * 4, atol=1e-6)
    assert not np.allclose(with_, without, atol=1e-4)


def _output_mode(next_inputs, **kw):
    """An output-mode model whose next-inputs function can run (identity needs E == V)."""
    emb = 13 if next_inputs == "identity" else 6
    return _model(bridge="dense", sampling_mode="output", next_inputs=next_inputs, emb=emb, **kw)


@pytest.mark.parametrize("output_gradient", [False, True])
def test_dense_next_inputs_learn_also_without_the_feedback_gradient(output_gradient):
    """The stop-gradient covers the previous step's logits, not the next-inputs function: its
    parameters get gradient either way, and every gradient is that of the Python-loop
    reference, which states the stop where the issue puts it."""
    grads, want = _gradients_and_reference(
        0.5,
        bridge="dense",
        sampling_mode="output",
        next_inputs="dense",
        output_gradient=output_gradient,
    )
    proj = grads["decoder"]["next_inputs"]["proj"]
    assert float(jnp.max(jnp.abs(proj["kernel"]))) > 1e-4
    assert float(jnp.max(jnp.abs(proj["bias"]))) > 1e-4
    for got, ref in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)


def test_the_soft_token_trains_the_embedding_it_reads():
    """softmax_embedding's fed-back vector is softmax(logits) @ embedding: with the logits a
    constant, the embedding still learns from it, so a target row no gold input reads gets
    gradient only through the fed-back vectors."""
    batch = make_batch()
    m, params = _output_mode("softmax_embedding")
    unread = sorted(set(range(13)) - set(np.asarray(batch["targets"]).ravel()) - {1})
    assert unread

    def loss(q, p):
        out = m.apply(q, batch, jax.random.PRNGKey(0), p, train=False)
        return losses.cross_entropy(out.logits, batch["targets"], batch["targets_len"])

    rows = lambda g: np.asarray(g["decoder"]["embed"]["embedding"])[unread]  # noqa: E731
    np.testing.assert_array_equal(rows(jax.grad(loss)(params, 0.0)), 0.0)
    assert np.max(np.abs(rows(jax.grad(loss)(params, 1.0)))) > 1e-6


@pytest.mark.parametrize("next_inputs", sorted(sampling.NEXT_INPUTS))
def test_output_mode_decodes_free_running_through_the_path_it_trained_on(next_inputs):
    """Greedy (free-running) decoding of an output-mode model feeds every step the next-inputs
    vector of the previous logits, exactly what training at p = 1 feeds, not the argmax
    token's embedding."""
    m, params = _output_mode(next_inputs)
    batch = make_batch()
    greedy = m.decode_greedy(params, batch["inputs"], batch["inputs_len"], 6)
    trained = m.apply(params, batch, jax.random.PRNGKey(3), 1.0, train=False)
    np.testing.assert_allclose(greedy.logits, trained.logits, **TOL)
    ref_logits, ref_ids, _ = reference.decode(
        m, params, batch, jax.random.PRNGKey(3), 1.0, free_running=True
    )
    np.testing.assert_allclose(greedy.logits, ref_logits, **TOL)
    np.testing.assert_array_equal(greedy.sample_ids, ref_ids)
    # The argmax token's embedding would be another path: its logits differ after step 0.
    emb_model = model.build(dataclasses.replace(m.config, sampling_mode="embedding"))
    tokens_fed = emb_model.decode_greedy(params, batch["inputs"], batch["inputs_len"], 6)
    np.testing.assert_allclose(tokens_fed.logits[:, 0], greedy.logits[:, 0], **TOL)
    assert not np.allclose(tokens_fed.logits[:, 1:], greedy.logits[:, 1:], atol=1e-4)


def test_identity_next_inputs_need_the_embedding_as_wide_as_the_vocabulary():
    with pytest.raises(ValueError) as err:
        _model(bridge="dense", sampling_mode="output", next_inputs="identity", emb=6)
    msg = str(err.value)
    assert "logits [13]" in msg and "embedding [6]" in msg and "--emb=13" in msg
    assert "\n" not in msg
    _model(bridge="dense", sampling_mode="embedding", next_inputs="identity", emb=6)  # unused


def test_aux_inputs_are_concatenated_to_every_input():
    m, params = _model(bridge="dense", aux_dim=3)
    batch = make_batch()
    aux = jnp.ones((4, 6, 3))
    a = m.apply(params, dict(batch, aux_inputs=aux), jax.random.PRNGKey(0), 0.0)
    b = m.apply(params, dict(batch, aux_inputs=2 * aux), jax.random.PRNGKey(0), 0.0)
    assert a.logits.shape == (4, 6, 13)
    assert not np.allclose(a.logits[:, 0], b.logits[:, 0])  # step 0 reads them too
    logits, _, _ = reference.decode(
        m, params, dict(batch, aux_inputs=aux), jax.random.PRNGKey(0), 0.0
    )
    np.testing.assert_allclose(a.logits, logits, **TOL)


@pytest.mark.parametrize("mode", ["embedding", "output"])
def test_free_running_decoding_reads_the_aux_inputs(mode):
    m, params = _model(bridge="dense", aux_dim=3, sampling_mode=mode)
    batch = make_batch()
    aux = jax.random.normal(jax.random.PRNGKey(1), (4, 6, 3))
    greedy = m.decode_greedy(params, batch["inputs"], batch["inputs_len"], 6, aux_inputs=aux)
    logits, ids, _ = reference.decode(
        m, params, dict(batch, aux_inputs=aux), jax.random.PRNGKey(0), 1.0, free_running=True
    )
    np.testing.assert_allclose(greedy.logits, logits, **TOL)
    np.testing.assert_array_equal(greedy.sample_ids, ids)


def test_missing_or_misshapen_aux_inputs_are_errors_not_silently_dropped():
    m, params = _model(bridge="dense", aux_dim=3)
    batch = make_batch()
    with pytest.raises(ValueError, match=r"aux_dim=3 but was given no aux_inputs"):
        m.apply(params, batch, jax.random.PRNGKey(0), 0.0)
    with pytest.raises(ValueError, match=r"aux_dim=3 but was given no aux_inputs"):
        m.decode_greedy(params, batch["inputs"], batch["inputs_len"], 6)
    with pytest.raises(ValueError, match=r"shape \(4, 6, 2\) but the model reads \(4, 6, 3\)"):
        m.apply(params, dict(batch, aux_inputs=jnp.ones((4, 6, 2))), jax.random.PRNGKey(0), 0.0)
    plain, plain_params = _model(bridge="dense")
    with pytest.raises(ValueError, match=r"aux_dim=0\); .*aux_dim=3"):
        plain.apply(
            plain_params, dict(batch, aux_inputs=jnp.ones((4, 6, 3))), jax.random.PRNGKey(0), 0.0
        )
    with pytest.raises(ValueError, match="beam search does not read auxiliary"):
        m.decode_beam(params, batch["inputs"], batch["inputs_len"], 6, 2)


def test_padding_the_source_changes_no_decoder_output():
    m, params = _model(bidirectional=True)
    batch = make_batch()
    padded = dict(batch, inputs=jnp.pad(batch["inputs"], ((0, 0), (0, 4))))
    a = m.apply(params, batch, jax.random.PRNGKey(0), 0.5, train=False)
    b = m.apply(params, padded, jax.random.PRNGKey(0), 0.5, train=False)
    np.testing.assert_allclose(a.logits, b.logits, **TOL)
    np.testing.assert_array_equal(b.attention[:, :, 7:], 0.0)
    lens = np.asarray(batch["inputs_len"])
    for row, n in enumerate(lens):
        assert np.all(np.asarray(a.attention)[row, :, n:] == 0.0)


def test_a_jitted_loss_compiles_once_across_sampling_probabilities():
    m, params = _model()
    batch = make_batch()
    traces = []

    @jax.jit
    def loss(params, p, rng):
        traces.append(1)
        out = m.apply(params, batch, rng, p)
        return losses.cross_entropy(out.logits, batch["targets"], batch["targets_len"])

    values = [
        float(loss(params, jnp.float32(p), jax.random.PRNGKey(0))) for p in (0.0, 0.25, 0.5, 1.0)
    ]
    assert len(traces) == 1
    assert len(set(values)) > 1  # the probability really reaches the computation


def _gradients_and_reference(p, **kw):
    """The loss gradients of the scan's model and of the Python-loop reference (same params,
    batch and key), at sampling probability p."""
    m, params = _model(**kw)
    batch = make_batch()
    rng = jax.random.PRNGKey(7)

    def loss(logits):
        return losses.cross_entropy(logits, batch["targets"], batch["targets_len"])

    grads = jax.grad(lambda q: loss(m.apply(q, batch, rng, p, train=False).logits))(params)
    want = jax.grad(lambda q: loss(reference.decode(m, q, batch, rng, p)[0]))(params)
    return grads, want


@pytest.mark.parametrize(
    "kw,p",
    [
        (dict(bridge="attention"), 0.5),
        (dict(bridge="attention", cell="gru"), 0.0),
        (dict(bridge="attention", attention_type="general"), 0.5),
        (dict(bridge="concat_inputs", cell="gru"), 0.5),
        (dict(bridge="dense", sample_from="argmax"), 0.0),
    ],
)
def test_gradients_equal_those_of_the_python_loop_reference(kw, p):
    """The scan's custom gradients (input projections and output layer after the loop) are the
    gradients of the straightforward loop, fed-back tokens included."""
    grads, want = _gradients_and_reference(p, **kw)
    for got, ref in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(bridge="attention"), dict(bridge="copy", cell="gru")])
def test_stated_teacher_forcing_drops_the_sampling_machinery_and_changes_nothing(kw):
    """`teacher_forcing=True` is teacher forcing known when tracing: the loop then holds no
    `lax.cond` for in-loop logits (nor their [B, T, V] buffer), with the same results and
    gradients as a traced zero."""
    m, params = _model(**kw)
    batch = make_batch()
    rng = jax.random.PRNGKey(3)

    def run(q, p, teacher_forcing=False):
        out = m.apply(q, batch, rng, p, train=True, teacher_forcing=teacher_forcing)
        loss = losses.cross_entropy(out.logits, batch["targets"], batch["targets_len"])
        return loss, out

    static = jax.jit(jax.value_and_grad(lambda q: run(q, 0.0, True), has_aux=True))
    traced = jax.jit(jax.value_and_grad(run, has_aux=True))
    (loss_s, out_s), grads_s = static(params)
    (loss_t, out_t), grads_t = traced(params, jnp.float32(0.0))
    np.testing.assert_allclose(loss_s, loss_t, rtol=1e-6)
    np.testing.assert_allclose(out_s.logits, out_t.logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out_s.sample_ids, out_t.sample_ids)
    assert float(out_s.sampled_fraction) == float(out_t.sampled_fraction) == 0.0
    for got, want in zip(jax.tree_util.tree_leaves(grads_s), jax.tree_util.tree_leaves(grads_t)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert "conditional" not in static.lower(params).as_text(dialect="hlo")
    assert "conditional" in traced.lower(params, jnp.float32(0.0)).as_text(dialect="hlo")


def _close_at_scale(got, ref):
    scale = float(np.max(np.abs(ref)))
    assert scale > 0
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("p", [0.0, 0.5])
def test_attention_gradients_match_the_reference_at_their_own_scale(p):
    """The gradients computed after the loop (query projection; keys, which reach the encoder)
    are small at this size (the query kernel's about 1e-6), so each is compared relative to its
    own largest entry."""
    grads, want = _gradients_and_reference(p)
    for got, ref in zip(
        jax.tree_util.tree_leaves(grads["decoder"]["attention"]),
        jax.tree_util.tree_leaves(want["decoder"]["attention"]),
    ):
        _close_at_scale(got, ref)
    top_encoder = lambda g: g["encoder"]["layers"][-1][0]["input"]["kernel"]  # noqa: E731
    _close_at_scale(top_encoder(grads), top_encoder(want))
