import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax.models import cells, encoders


def _setup(cell_name, bidirectional, layers=2):
    cell = cells.CELLS[cell_name]
    params = encoders.init(jax.random.PRNGKey(0), cell, 11, 6, 5, layers, bidirectional)
    return cell, params


@pytest.mark.parametrize("cell_name", sorted(cells.CELLS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_appending_padding_changes_nothing(cell_name, bidirectional, batch):
    cell, params = _setup(cell_name, bidirectional)
    enc = encoders.encode(params, cell, batch["inputs"], batch["inputs_len"])
    padded = jnp.pad(batch["inputs"], ((0, 0), (0, 5)))
    enc_pad = encoders.encode(params, cell, padded, batch["inputs_len"])
    for carry, carry_pad in zip(enc.state, enc_pad.state):
        for a, b in zip(carry, carry_pad):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(enc_pad.outputs[:, :7], enc.outputs, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(enc_pad.outputs[:, 7:], 0.0)
    # Outputs are zero past each length; padding tokens that are not id 0 are ignored too.
    garbage = jnp.where(enc.mask, batch["inputs"], 9)
    enc_garbage = encoders.encode(params, cell, garbage, batch["inputs_len"])
    np.testing.assert_allclose(enc_garbage.outputs, enc.outputs, rtol=1e-6, atol=1e-6)
    assert not np.any(np.asarray(enc.outputs)[~np.asarray(enc.mask)])


@pytest.mark.parametrize("cell_name", sorted(cells.CELLS))
def test_bidirectional_matches_a_python_loop(cell_name, batch):
    cell, params = _setup(cell_name, True, layers=1)
    enc = encoders.encode(params, cell, batch["inputs"], batch["inputs_len"])
    emb = params["embed"]["embedding"]
    fw_params, bw_params = params["layers"][0]
    for b in range(batch["inputs"].shape[0]):
        n = int(batch["inputs_len"][b])
        tokens = batch["inputs"][b, :n]
        for direction, p, order in (("fw", fw_params, range(n)), ("bw", bw_params, range(n)[::-1])):
            carry = cells.zero_carry(cell, 1, 5)
            outs = {}
            for t in order:
                carry, h = cell.step(p, carry, cell.project(p, emb[tokens[t]][None]))
                outs[t] = h[0]
            half = slice(0, 5) if direction == "fw" else slice(5, 10)
            for t in range(n):
                np.testing.assert_allclose(enc.outputs[b, t, half], outs[t], rtol=1e-5, atol=1e-5)
            final = enc.state[0][-1][b, half]  # the 'h' of the single layer
            np.testing.assert_allclose(final, carry[-1][0], rtol=1e-5, atol=1e-5)


def test_shapes_of_a_deep_bidirectional_encoder(batch):
    cell, params = _setup("lstm", True, layers=3)
    enc = encoders.encode(
        params,
        cell,
        batch["inputs"],
        batch["inputs_len"],
        dropout_rate=0.3,
        rng=jax.random.PRNGKey(1),
    )
    assert enc.outputs.shape == (4, 7, 10)
    assert len(enc.state) == 3 and all(t.shape == (4, 10) for c in enc.state for t in c)
    assert np.all(np.isfinite(enc.outputs))
