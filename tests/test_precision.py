"""--precision=bfloat16: bfloat16 matmul operands, float32 accumulation, everything else float32."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from s2s_jax.models import model, precision
from s2s_jax.training import losses

from conftest import make_batch


def _round(x):
    return x.astype(jnp.bfloat16).astype(jnp.float32)


def test_a_bfloat16_product_is_the_float32_product_of_rounded_operands_with_float32_gradients():
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 7))
    w = jax.random.normal(jax.random.PRNGKey(1), (7, 4))
    y = precision.dot(x, w, "bfloat16")
    assert y.dtype == jnp.float32 and y.shape == (3, 5, 4)
    np.testing.assert_allclose(y, _round(x) @ _round(w), rtol=1e-5, atol=1e-5)
    assert not np.allclose(y, x @ w, rtol=1e-5, atol=1e-5)  # the operands were rounded

    g = jax.random.normal(jax.random.PRNGKey(2), (3, 5, 4))
    f = lambda p: lambda a, b: jnp.sum(g * precision.dot(a, b, p))  # noqa: E731
    d_x, d_w = jax.grad(f("bfloat16"), (0, 1))(x, w)
    assert d_x.dtype == d_w.dtype == jnp.float32
    # The cotangent is rounded too, and both gradients accumulate in float32.
    np.testing.assert_allclose(d_x, _round(g) @ _round(w).T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        d_w, jnp.einsum("abi,abo->io", _round(x), _round(g)), rtol=1e-5, atol=1e-4
    )
    assert jax.grad(f("float32"), 1)(x, w) == pytest.approx(jnp.einsum("abi,abo->io", x, g))


def _dots(jaxpr):
    """Every dot_general of a jaxpr and of the jaxprs inside it (scan, cond, custom VJPs)."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _dots(inner)


CFG = model.ModelConfig(
    src_vocab=11, tgt_vocab=13, emb=8, hidden=8, bidirectional=True, bridge="dense",
    attention="bahdanau",
)  # fmt: skip


def _loss_fn(net, batch, probability):
    def loss(params, rng):
        out = net.apply(params, batch, rng, probability)
        return losses.cross_entropy(out.logits, batch["targets"], batch["targets_len"])

    return loss


def test_every_weight_matmul_of_a_bfloat16_train_step_multiplies_bfloat16_into_float32():
    batch, probability = make_batch(), 0.5  # a traced probability: the sampling loop
    grads = {}
    for name in ("float32", "bfloat16"):
        net = model.build(dataclasses.replace(CFG, precision=name))
        params = net.init(jax.random.PRNGKey(0))
        grad = jax.grad(_loss_fn(net, batch, probability))
        dots = list(_dots(jax.make_jaxpr(grad)(params, jax.random.PRNGKey(1)).jaxpr))
        operands = {str(v.aval.dtype) for d in dots for v in d.invars}
        results = {str(v.aval.dtype) for d in dots for v in d.outvars}
        assert results == {"float32"}, name  # never a bfloat16 result: CPUs' slow path
        low = [d for d in dots if {str(v.aval.dtype) for v in d.invars} == {"bfloat16"}]
        if name == "float32":
            assert operands == {"float32"}
        else:
            # Only attention's matrix-vector products (Bahdanau's v, batched scores and
            # contexts, and their gradients) stay float32: every matmul with a weight matrix is
            # bfloat16, forward and back.
            high = [d for d in dots if d not in low]
            assert len(low) >= 3 * len(high) > 0
            assert all(d.params["preferred_element_type"] == jnp.float32 for d in low)
            for d in high:
                batched = d.params["dimension_numbers"][1] != ((), ())
                vector = min(v.aval.ndim for v in [*d.invars, *d.outvars]) == 1
                assert batched or vector, [v.aval for v in d.invars]
        grads[name] = jax.jit(grad)(params, jax.random.PRNGKey(1))
        assert all(g.dtype == jnp.float32 for g in jax.tree_util.tree_leaves(grads[name]))
    # Same parameters, same draws: the gradients differ by bfloat16 rounding only.
    for a, b in zip(*map(jax.tree_util.tree_leaves, (grads["float32"], grads["bfloat16"]))):
        assert float(jnp.linalg.norm(a - b)) <= 0.03 * float(jnp.linalg.norm(a)) + 1e-6


def test_bfloat16_training_tracks_float32_within_two_percent_of_the_loss():
    """40 Adam steps of a tiny model on one batch with scheduled sampling, from the same initial
    parameters and draws: the bfloat16 run's loss stays within 2% (or 0.01) of the float32
    run's at every step while both fall by more than half."""
    batch = make_batch()
    curves = {}
    for name in ("float32", "bfloat16"):
        net = model.build(dataclasses.replace(CFG, precision=name))
        params = net.init(jax.random.PRNGKey(0))
        tx = optax.adam(1e-2)
        loss_fn = _loss_fn(net, batch, 0.25)

        @jax.jit
        def step(params, opt_state, i, loss_fn=loss_fn, tx=tx):
            loss, g = jax.value_and_grad(loss_fn)(params, jax.random.fold_in(jax.random.key(1), i))
            updates, opt_state = tx.update(g, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        opt_state, curve = tx.init(params), []
        for i in range(40):
            params, opt_state, loss = step(params, opt_state, i)
            curve.append(float(loss))
        assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(params))
        curves[name] = np.array(curve)
    f32, bf16 = curves["float32"], curves["bfloat16"]
    assert f32[-1] < 0.5 * f32[0] and bf16[-1] < 0.5 * bf16[0]
    np.testing.assert_allclose(bf16, f32, rtol=0.02, atol=0.01)


def test_greedy_and_beam_decoding_run_in_bfloat16_on_float32_parameters():
    batch = make_batch()
    nets = {p: model.build(dataclasses.replace(CFG, precision=p)) for p in precision.PRECISIONS}
    params = nets["float32"].init(jax.random.PRNGKey(0))
    out = {
        p: n.decode_greedy(params, batch["inputs"], batch["inputs_len"], 6) for p, n in nets.items()
    }
    assert out["bfloat16"].logits.dtype == jnp.float32
    np.testing.assert_allclose(out["bfloat16"].logits, out["float32"].logits, atol=0.05)
    assert not np.array_equal(out["bfloat16"].logits, out["float32"].logits)
    beams = {
        p: n.decode_beam(params, batch["inputs"], batch["inputs_len"], 6, 3)
        for p, n in nets.items()
    }
    assert beams["bfloat16"][1].dtype == jnp.float32
    np.testing.assert_allclose(beams["bfloat16"][1], beams["float32"][1], atol=0.05)


@pytest.mark.parametrize("name", ["float16", "bf16", ""])
def test_an_unknown_precision_names_the_choices(name):
    with pytest.raises(
        ValueError, match=r"unknown --precision .*choose one of \['bfloat16', 'float32'\]"
    ):
        model.build(dataclasses.replace(CFG, precision=name))
