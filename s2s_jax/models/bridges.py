"""Bridges: how the encoder's final state conditions the decoder.

A bridge turns the encoder final state (per layer, a tuple of `[B, D*H_enc]` arrays) into a
`Conditioning`: the decoder's initial state (per layer, a tuple of `[B, H_dec]` arrays) and,
optionally, a vector concatenated to the decoder input at every step. Attention over the encoder
outputs is a separate axis of the model (`ModelConfig.attention`, attention.py) that composes with
every bridge. Entries of `BRIDGES`:

- `zero`: zeros; the decoder sees the source only through attention, if at all (baseline).
- `copy`: the encoder final state as it is; needs identical structures.
- `dense`: tanh(Dense(all encoder state tensors concatenated)), split over the decoder tensors.
- `concat`: layer by layer and tensor by tensor, [x ; tanh(Dense(x))] for each encoder state
  tensor x (an LSTM's c and h, a GRU's h), the projection as wide as the decoder tensor minus
  the encoder's. Each raw tensor reaches the decoder unchanged in the same layer and slot (c into
  c, the top h, the attention query, into the top h), the projection adds learned features. It
  needs the same layers and state tensors on both sides and a wider decoder: its default
  decoder width (`decoder_hidden=0`) is twice the encoder's, a projection as wide as the state.
- `concat_inputs`: zero initial state; the flattened encoder state is concatenated to the decoder
  input at every step.

A new bridge is an `init`/`apply` pair and one `BRIDGES` line; it declares the decoder width it
needs (`decoder_width`, the encoder's by default) and the width of its per-step vector
(`step_input_dim`, none by default). Tests, studies, benchmarks and flag choices read `BRIDGES`.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from s2s_jax.models.cells import dense, dense_init


class StateSpec(NamedTuple):
    """A recurrent state's structure: `layers` carries of `names` tensors, each `[B, width]`."""

    cell: str
    layers: int
    width: int
    names: tuple

    @property
    def total(self) -> int:
        return self.layers * len(self.names) * self.width

    def describe(self) -> str:
        tensors = ", ".join(f"{n}[{self.width}]" for n in self.names)
        return f"{self.cell} with {self.layers} layer(s) of ({tensors})"


class Conditioning(NamedTuple):
    state: list  # decoder initial state: per layer, a tuple of [B, H_dec]
    step_inputs: jax.Array | None  # [B, D] concatenated to every decoder input, or None


def _encoder_width(enc: StateSpec) -> int:
    return enc.width


def _no_step_inputs(enc: StateSpec) -> int:
    del enc
    return 0


class Bridge(NamedTuple):
    init: Callable  # (rng, enc: StateSpec, dec: StateSpec) -> params; raises if they don't fit
    apply: Callable  # (params, enc_state, dec: StateSpec) -> Conditioning
    # (enc: StateSpec) -> the decoder width used when --config.model.decoder_hidden is 0
    decoder_width: Callable = _encoder_width
    step_input_dim: Callable = _no_step_inputs  # (enc: StateSpec) -> width of step_inputs (0: none)


def flatten(state) -> jax.Array:
    """All tensors of a state concatenated: [B, layers * tensors * width]."""
    return jnp.concatenate([t for carry in state for t in carry], axis=-1)


def split(flat, spec: StateSpec) -> list:
    """Inverse of `flatten` for `spec`: [B, spec.total] -> per layer, a tuple of [B, width]."""
    n = len(spec.names)
    parts = jnp.split(flat, spec.layers * n, axis=-1)
    return [tuple(parts[l * n : (l + 1) * n]) for l in range(spec.layers)]


def zeros(batch: int, spec: StateSpec, dtype=jnp.float32) -> list:
    return split(jnp.zeros((batch, spec.total), dtype), spec)


def _no_params(rng, enc, dec):
    del rng, enc, dec
    return {}


# --- zero ------------------------------------------------------------------------------------
def _zero_apply(params, enc_state, dec):
    del params
    return Conditioning(zeros(enc_state[0][0].shape[0], dec, enc_state[0][0].dtype), None)


# --- copy ------------------------------------------------------------------------------------
def _copy_init(rng, enc, dec):
    del rng
    if enc != dec:
        raise ValueError(
            f"bridge 'copy' needs the encoder final state to match the decoder state, but the "
            f"encoder is {enc.describe()} and the decoder is {dec.describe()}; use --bridge=dense "
            f"(a learned projection) or make cell, layers and sizes match"
        )
    return {}


def _copy_apply(params, enc_state, dec):
    del params, dec
    return Conditioning(list(enc_state), None)


# --- dense -----------------------------------------------------------------------------------
def _dense_init(rng, enc, dec):
    return {"proj": dense_init(rng, enc.total, dec.total, use_bias=True)}


def _dense_apply(params, enc_state, dec):
    projected = jnp.tanh(dense(params["proj"], flatten(enc_state)))  # [B, dec.total]
    return Conditioning(split(projected, dec), None)


# --- concat ----------------------------------------------------------------------------------
def _concat_init(rng, enc, dec):
    if (enc.layers, enc.names) != (dec.layers, dec.names):
        raise ValueError(
            f"bridge 'concat' joins every encoder state tensor with a projection of it in the same "
            f"layer and slot, so both need the same layers and state tensors, but the encoder is "
            f"{enc.describe()} and the decoder is {dec.describe()}; use --bridge=dense "
            f"(--attention_init=dense under attention), or make the cells and "
            f"--config.model.decoder_layers match"
        )
    extra = dec.width - enc.width
    if extra <= 0:
        raise ValueError(
            f"bridge 'concat' keeps each encoder state tensor ({enc.describe()}) and adds a "
            f"projection, so the decoder's must be wider, but it is {dec.describe()}; use "
            f"--bridge=dense (--attention_init=dense under attention), or leave "
            f"--config.model.decoder_hidden at 0, which sizes the decoder for concat"
        )
    keys = iter(jax.random.split(rng, enc.layers * len(enc.names)))
    return {
        "proj": [
            {name: dense_init(next(keys), enc.width, extra, use_bias=True) for name in enc.names}
            for _ in range(enc.layers)
        ]
    }


def _concat_apply(params, enc_state, dec):
    state = []
    for layer_params, carry in zip(params["proj"], enc_state):
        state.append(
            tuple(  # each [B, dec.width]: this tensor, then its own projection
                jnp.concatenate([x, jnp.tanh(dense(layer_params[name], x))], axis=-1)
                for name, x in zip(dec.names, carry)
            )
        )
    return Conditioning(state, None)


def _twice_the_encoder_width(enc):
    # Each decoder state tensor holds its encoder tensor and a projection of the same size.
    return 2 * enc.width


# --- concat_inputs ---------------------------------------------------------------------------
def _concat_inputs_apply(params, enc_state, dec):
    del params
    flat = flatten(enc_state)  # [B, enc.total]
    return Conditioning(zeros(flat.shape[0], dec, flat.dtype), flat)


def _concat_inputs_dim(enc):
    return enc.total


BRIDGES = {
    "zero": Bridge(_no_params, _zero_apply),
    "copy": Bridge(_copy_init, _copy_apply),
    "dense": Bridge(_dense_init, _dense_apply),
    "concat": Bridge(_concat_init, _concat_apply, decoder_width=_twice_the_encoder_width),
    "concat_inputs": Bridge(_no_params, _concat_inputs_apply, step_input_dim=_concat_inputs_dim),
}


def get_bridge(name: str) -> Bridge:
    if name not in BRIDGES:
        raise ValueError(f"unknown bridge {name!r}; choose one of {sorted(BRIDGES)}")
    return BRIDGES[name]
