import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax.models import cells


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_lstm_step_matches_the_textbook_equations():
    cell = cells.CELLS["lstm"]
    params = cell.init(jax.random.PRNGKey(0), 3, 5)
    rs = np.random.RandomState(0)
    x, c, h = rs.randn(2, 3), rs.randn(2, 5), rs.randn(2, 5)
    (c1, h1), out = cell.step(params, (jnp.asarray(c), jnp.asarray(h)), cell.project(params, x))
    gates = (
        x @ np.asarray(params["input"]["kernel"])
        + np.asarray(params["input"]["bias"])
        + h @ np.asarray(params["recurrent"]["kernel"])
    )
    i, f, g, o = np.split(gates, 4, axis=-1)
    c_ref = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    np.testing.assert_allclose(c1, c_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h1, _sigmoid(o) * np.tanh(c_ref), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out, h1)
    # Forget-gate bias starts at 1.
    np.testing.assert_array_equal(params["input"]["bias"][5:10], np.ones(5))


def test_gru_step_matches_the_cudnn_formulation():
    cell = cells.CELLS["gru"]
    params = cell.init(jax.random.PRNGKey(1), 3, 4)
    rs = np.random.RandomState(1)
    x, h = rs.randn(2, 3), rs.randn(2, 4)
    (h1,), _ = cell.step(params, (jnp.asarray(h),), cell.project(params, x))
    xp = x @ np.asarray(params["input"]["kernel"]) + np.asarray(params["input"]["bias"])
    hp = h @ np.asarray(params["recurrent"]["kernel"]) + np.asarray(params["recurrent"]["bias"])
    r = _sigmoid(xp[:, :4] + hp[:, :4])
    z = _sigmoid(xp[:, 4:8] + hp[:, 4:8])
    n = np.tanh(xp[:, 8:] + r * hp[:, 8:])
    np.testing.assert_allclose(h1, (1 - z) * n + z * h, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(cells.CELLS))
@pytest.mark.parametrize("layers", [1, 3])
def test_stack_shapes_and_dropout(name, layers):
    cell = cells.CELLS[name]
    params = cells.stack_init(cell, jax.random.PRNGKey(0), 6, 8, layers)
    state = [cells.zero_carry(cell, 2, 8) for _ in range(layers)]
    x = jnp.ones((2, 6))
    new_state, h = cells.stack_step(cell, params, state, x)
    assert h.shape == (2, 8) and len(new_state) == layers
    assert all(len(c) == len(cell.state_names) and c[0].shape == (2, 8) for c in new_state)
    assert np.all(np.isfinite(h))
    dropped, h_drop = cells.stack_step(
        cell, params, state, x, dropout_rate=0.5, rng=jax.random.PRNGKey(3)
    )
    same, h_again = cells.stack_step(
        cell, params, state, x, dropout_rate=0.5, rng=jax.random.PRNGKey(3)
    )
    np.testing.assert_array_equal(h_drop, h_again)  # explicit keys: reproducible
    if layers > 1:
        assert not np.allclose(h_drop, h)  # dropout acts between layers
    else:
        np.testing.assert_array_equal(h_drop, h)  # ...and never on the top output


def test_unknown_cell_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"\['gru', 'lstm'\]"):
        cells.get_cell("rnn")
