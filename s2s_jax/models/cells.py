"""Recurrent cells as pure step functions, and stacks of them.

A cell is split into two parts so that callers can hoist work out of `lax.scan`:
`project(params, x)` maps inputs to gate pre-activations (one fused matmul for all gates, and for
all time steps at once when the inputs are known ahead), and `step(params, carry, x_proj)` does the
recurrent part only. The carry is always a tuple of `[B, H]` arrays named by `Cell.state_names`
(LSTM `(c, h)`, GRU `(h,)`), so bridges can treat every cell's state the same way.
"""

from collections.abc import Callable, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from s2s_jax.models import precision

Carry = tuple  # tuple of [B, H] arrays, names in Cell.state_names
State = list  # list over layers of Carry


class Cell(NamedTuple):
    """A recurrent cell: parameter creation and pure application."""

    init: Callable  # (rng, input_dim, hidden) -> params
    project: Callable  # (params, x [..., I]) -> gate pre-activations [..., G*H]
    step: Callable  # (params, carry, x_proj [B, G*H]) -> (carry, h [B, H])
    state_names: tuple  # names of the carry's arrays
    # Gates = x_proj + h @ params["recurrent"]["kernel"] (an LSTM): the recurrent kernel's
    # gradient is then one matmul over all steps (encoders._lstm_scan, fast_unroll).
    linear_recurrence: bool = False


def dense_init(rng, in_dim, out_dim, use_bias):
    return nn.Dense(out_dim, use_bias=use_bias).init(rng, jnp.zeros((1, in_dim)))["params"]


def dense(params, x):
    """Applies a linen Dense created by `dense_init`, its matmul in the current precision."""
    y = precision.dot(x, params["kernel"])
    return y + params["bias"] if "bias" in params else y


# --- LSTM ------------------------------------------------------------------------------------
def _lstm_init(rng, input_dim, hidden):
    k_in, k_rec = jax.random.split(rng)
    params = {
        "input": dense_init(k_in, input_dim, 4 * hidden, use_bias=True),
        "recurrent": {"kernel": nn.initializers.orthogonal()(k_rec, (hidden, 4 * hidden))},
    }
    # Forget-gate bias 1 (Jozefowicz et al. 2015): gradients flow through c early in training.
    bias = params["input"]["bias"].at[hidden : 2 * hidden].set(1.0)
    params["input"]["bias"] = bias
    return params


def _lstm_step(params, carry, x_proj):
    c, h = carry
    gates = x_proj + precision.dot(h, params["recurrent"]["kernel"])  # [B, 4H]
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h


# --- GRU -------------------------------------------------------------------------------------
def _gru_init(rng, input_dim, hidden):
    k_in, k_rec = jax.random.split(rng)
    # The recurrent side has its own bias because the candidate gate multiplies it by r
    # (the cuDNN / PyTorch GRU formulation), which keeps the input projection hoistable.
    recurrent = dense_init(k_rec, hidden, 3 * hidden, use_bias=True)
    recurrent["kernel"] = nn.initializers.orthogonal()(k_rec, (hidden, 3 * hidden))
    return {"input": dense_init(k_in, input_dim, 3 * hidden, use_bias=True), "recurrent": recurrent}


def _gru_step(params, carry, x_proj):
    (h,) = carry
    h_proj = dense(params["recurrent"], h)  # [B, 3H]
    x_r, x_z, x_n = jnp.split(x_proj, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(h_proj, 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)
    z = jax.nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * h_n)
    h = (1.0 - z) * n + z * h
    return (h,), h


def _project(params, x):
    return dense(params["input"], x)


CELLS = {
    "lstm": Cell(_lstm_init, _project, _lstm_step, ("c", "h"), linear_recurrence=True),
    "gru": Cell(_gru_init, _project, _gru_step, ("h",)),
}


def get_cell(name: str) -> Cell:
    """Looks up a cell by name; unknown names raise a ValueError listing the known ones."""
    if name not in CELLS:
        raise ValueError(f"unknown cell {name!r}; choose one of {sorted(CELLS)}")
    return CELLS[name]


def zero_carry(cell: Cell, batch: int, hidden: int, dtype=jnp.float32) -> Carry:
    return tuple(jnp.zeros((batch, hidden), dtype) for _ in cell.state_names)


# --- Stacks ----------------------------------------------------------------------------------
def stack_init(cell: Cell, rng, input_dim: int, hidden: int, layers: int) -> list:
    """Parameters of `layers` cells; layer 0 reads `input_dim` features, the others `hidden`."""
    keys = jax.random.split(rng, layers)
    return [cell.init(k, input_dim if l == 0 else hidden, hidden) for l, k in enumerate(keys)]


def dropout(x, rate: float, rng):
    """Inverted dropout with an explicit key; identity when rate is 0 or rng is None."""
    if rate <= 0.0 or rng is None:
        return x
    keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def stack_step(
    cell: Cell,
    params: Sequence,
    state: State,
    x,
    *,
    x_proj0=None,
    dropout_rate: float = 0.0,
    rng=None,
):
    """One time step through every layer of a stack.

    Args:
      cell: the cell of every layer.
      params: per-layer parameters from `stack_init`.
      state: per-layer carries.
      x: layer-0 input `[B, I]`; ignored when `x_proj0` is given.
      x_proj0: optional precomputed layer-0 gate pre-activations `[B, G*H]` (hoisted input).
      dropout_rate: dropout between layers (not on the top output).
      rng: key for the dropout masks; None disables dropout.

    Returns:
      (new state, top-layer output `[B, H]`).
    """
    new_state = []
    keys = jax.random.split(rng, len(params)) if rng is not None else [None] * len(params)
    h = x
    for layer, (p, carry) in enumerate(zip(params, state)):
        if layer > 0:
            h = dropout(h, dropout_rate, keys[layer])
        proj = x_proj0 if (layer == 0 and x_proj0 is not None) else cell.project(p, h)
        carry, h = cell.step(p, carry, proj)
        new_state.append(carry)
    return new_state, h
