"""Embedding + recurrent encoders unrolled with `jax.lax.scan`.

Layers run one after another, each as a whole scan over time, so every layer's input projection
is one big matmul outside the scan. Variable lengths are handled by freezing the carry past each
example's length: the final state is the state at the true length, and appending padding to a
source changes nothing. A bidirectional layer runs the backward direction over each sequence
reversed *within its length*, so the backward final state has read the real tokens only. An
LSTM's recurrent-kernel gradient is one matmul after the loop rather than a product added up at
every step (`_lstm_scan`).
"""

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from s2s_jax.models import cells, precision


class Encoded(NamedTuple):
    outputs: jax.Array  # [B, S, D*H], zeros past each length (D = 2 if bidirectional)
    state: list  # per layer, a carry tuple of [B, D*H] (directions concatenated)
    mask: jax.Array  # [B, S] bool, True on real source tokens


def embed_init(rng, vocab: int, dim: int):
    return nn.Embed(vocab, dim).init(rng, jnp.zeros((1,), jnp.int32))["params"]


def embed(params, ids):
    vocab, dim = params["embedding"].shape
    return nn.Embed(vocab, dim).apply({"params": params}, ids)


def init(
    rng, cell: cells.Cell, vocab: int, emb: int, hidden: int, layers: int, bidirectional: bool
) -> dict:
    """Encoder parameters: embedding plus per-layer, per-direction cells."""
    k_emb, k_layers = jax.random.split(rng)
    directions = 2 if bidirectional else 1
    layer_params = []
    for layer, k in enumerate(jax.random.split(k_layers, layers)):
        in_dim = emb if layer == 0 else directions * hidden
        dir_keys = jax.random.split(k, directions)
        layer_params.append([cell.init(dk, in_dim, hidden) for dk in dir_keys])
    return {"embed": embed_init(k_emb, vocab, emb), "layers": layer_params}


def _reverse_within_length(x, lengths):
    """Reverses each sequence's first `length` steps and leaves padding in place. x: [S, B, ...]."""
    steps = jnp.arange(x.shape[0])[:, None]  # [S, 1]
    idx = jnp.where(steps < lengths[None, :], lengths[None, :] - 1 - steps, steps)  # [S, B]
    return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=0)


def _masked_scan(cell, params, x_proj, mask):
    """The cell over time-major projections with the carry frozen past each length.

    x_proj: [S, B, G*H]; mask: [S, B]. Returns (final carry, outputs [S, B, H] zero on padding).
    """
    batch = x_proj.shape[1]
    hidden = params["recurrent"]["kernel"].shape[0]

    def step(carry, inputs):
        xp, m = inputs  # [B, G*H], [B]
        new_carry, h = cell.step(params, carry, xp)
        keep = m[:, None]
        new_carry = tuple(jnp.where(keep, n, o) for n, o in zip(new_carry, carry))
        return new_carry, jnp.where(keep, h, 0.0)

    carry0 = cells.zero_carry(cell, batch, hidden, x_proj.dtype)
    return jax.lax.scan(step, carry0, (x_proj, mask))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _lstm_scan(cell, mode, kernel, x_proj, mask):
    """`_masked_scan` of an LSTM whose recurrent-kernel gradient is one matmul after the loop.

    An LSTM's gates are x_proj + h_prev @ kernel, so the loop's gradient with respect to x_proj
    is the gradient of the gates, and the kernel's is sum_t h_prev_t^T d_gates_t: one
    [H, S*B] x [S*B, 4H] matmul instead of a [H, B] x [B, 4H] product added up every step.
    `mode` is the matmul precision (the backward pass is traced outside the forward's
    `precision.matmuls`).
    """
    del mode
    return _masked_scan(cell, {"recurrent": {"kernel": kernel}}, x_proj, mask)


def _lstm_scan_fwd(cell, mode, kernel, x_proj, mask):
    params = {"recurrent": {"kernel": kernel}}  # a constant inside: no per-step gradient
    out, vjp_fn = jax.vjp(lambda xp: _masked_scan(cell, params, xp, mask), x_proj)
    return out, (vjp_fn, out[1])


def _lstm_scan_bwd(cell, mode, res, ct):
    del cell
    vjp_fn, outs = res
    (d_gates,) = vjp_fn(ct)  # [S, B, 4H]
    # h_prev at step t is outs[t - 1] wherever step t is real; elsewhere d_gates is 0.
    h_prev = jnp.concatenate([jnp.zeros_like(outs[:1]), outs[:-1]])  # [S, B, H]
    return precision.einsum("sbh,sbg->hg", h_prev, d_gates, mode), d_gates, None


_lstm_scan.defvjp(_lstm_scan_fwd, _lstm_scan_bwd)


def _scan_direction(cell, params, x, mask):
    """Runs one cell over time with the carry frozen past each length.

    x: [S, B, I] time-major; mask: [S, B]. Returns (outputs [S, B, H] zero on padding, final
    carry).
    """
    x_proj = cell.project(params, x)  # [S, B, G*H], hoisted out of the scan
    if cell.linear_recurrence:
        final, outs = _lstm_scan(
            cell, precision.current(), params["recurrent"]["kernel"], x_proj, mask
        )
    else:
        final, outs = _masked_scan(cell, params, x_proj, mask)
    return outs, final


def encode(
    params, cell: cells.Cell, inputs, lengths, *, dropout_rate: float = 0.0, rng=None
) -> Encoded:
    """Encodes a padded batch of source ids.

    Args:
      params: from `init`.
      cell: the cell of every layer and direction.
      inputs: `[B, S]` int token ids, padded past `lengths`.
      lengths: `[B]` true lengths.
      dropout_rate: dropout on every layer's input except the embedding.
      rng: key for dropout; None disables it.

    Returns:
      Encoded outputs, final state per layer and the source mask.
    """
    mask = jnp.arange(inputs.shape[1])[None, :] < lengths[:, None]  # [B, S]
    # Time-major throughout: the scans read and write [S, B, ...], so neither the input
    # projections nor their gradients need a transpose; only the outputs are turned to [B, S].
    x = embed(params["embed"], inputs.T)  # [S, B, E]
    n_layers = len(params["layers"])
    keys = jax.random.split(rng, n_layers) if rng is not None else [None] * n_layers
    state = []
    for layer, dir_params in enumerate(params["layers"]):
        if layer > 0:
            x = cells.dropout(x, dropout_rate, keys[layer])
        out_fw, carry_fw = _scan_direction(cell, dir_params[0], x, mask.T)
        if len(dir_params) == 1:
            x, carry = out_fw, carry_fw
        else:
            x_bw = _reverse_within_length(x, lengths)
            out_bw, carry_bw = _scan_direction(cell, dir_params[1], x_bw, mask.T)
            out_bw = _reverse_within_length(out_bw, lengths)
            x = jnp.concatenate([out_fw, out_bw], axis=-1)  # [S, B, 2H]
            carry = tuple(jnp.concatenate([f, b], axis=-1) for f, b in zip(carry_fw, carry_bw))
        state.append(carry)
    return Encoded(outputs=jnp.swapaxes(x, 0, 1), state=state, mask=mask)
