"""Beam search: a generic batched search over any step function (decoders.token_step).

The search runs a fixed number of steps in one `lax.scan` (so it jits to one program for a given
shape). Every example keeps `K` hypotheses; a finished hypothesis (it emitted EOS) can only be
extended by padding at no cost, so it keeps its score and stays comparable with the live ones.
As in TF's BeamSearchDecoder, every step's top-K ranks the candidates by their length-normalised
score, so a longer hypothesis can survive pruning that its raw log-probability would lose:
- `gnmt`: score / ((5 + length) / 6) ** alpha (Wu et al. 2016);
- `average`: score / max(length, 1);
- `none`: the raw score (summed log-probability).
The length counts the tokens before EOS, as TF's does (EOS and the padding after it add none).
Each example is searched independently of the others in its batch.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

PENALTIES = ("gnmt", "average", "none")
_NEG = -1e9  # "impossible" score; finite, so sums of two never become NaN


def length_penalty(lengths, kind: str, alpha: float):
    """The divisor of a summed log-probability for hypotheses of `lengths` tokens (EOS not
    counted): TF's ((5 + length) / 6) ** alpha for `gnmt`."""
    lengths = jnp.asarray(lengths).astype(jnp.float32)
    if kind == "gnmt":
        return ((5.0 + lengths) / 6.0) ** alpha
    if kind == "average":
        return jnp.maximum(lengths, 1.0)
    if kind == "none":
        return jnp.ones_like(lengths)
    raise ValueError(f"unknown length penalty {kind!r}; choose one of {sorted(PENALTIES)}")


def search(
    step_fn: Callable,
    state,
    batch: int,
    beam: int,
    steps: int,
    *,
    bos: int,
    eos: int,
    pad: int = 0,
    penalty: str = "gnmt",
    alpha: float = 0.6,
    min_len: int = 0,
):
    """Beam search.

    Args:
      step_fn: `(state, tokens [B*K]) -> (state, log_probs [B*K, V])`; every leaf of `state` has
        a leading `B*K` axis (hypothesis k of example b at row b*K + k).
      state: the initial state, already repeated K times per example.
      batch, beam, steps: B, K and the number of output positions T.
      bos, eos, pad: token ids.
      penalty, alpha: the length normalisation every step's ranking uses (module docstring).
      min_len: EOS is forbidden before this many tokens.

    Returns:
      (tokens [B, K, T], scores [B, K] normalised, best first). Positions after EOS hold `pad`.
      A hypothesis without EOS is T tokens long.
    """
    length_penalty(jnp.ones(()), penalty, alpha)  # validates the name before tracing the loop
    scores = jnp.where(jnp.arange(beam) == 0, 0.0, _NEG)  # only one live copy at the start
    scores = jnp.broadcast_to(scores, (batch, beam))  # [B, K]
    carry = (
        state,
        jnp.full((batch, beam), bos, jnp.int32),
        scores,
        jnp.zeros((batch, beam), bool),
        jnp.zeros((batch, beam), jnp.int32),
        jnp.full((batch, beam, steps), pad, jnp.int32),
    )

    def body(carry, t):
        state, prev, scores, finished, lengths, history = carry
        state, log_probs = step_fn(state, prev.reshape(-1))
        vocab = log_probs.shape[-1]
        log_probs = log_probs.reshape(batch, beam, vocab)  # [B, K, V]
        is_eos = jnp.arange(vocab) == eos
        log_probs = jnp.where(is_eos & (t < min_len), _NEG, log_probs)
        pad_only = jnp.where(jnp.arange(vocab) == pad, 0.0, _NEG)  # [V]
        log_probs = jnp.where(finished[..., None], pad_only, log_probs)
        candidates = scores[..., None] + log_probs  # [B, K, V] summed log-probabilities
        # A live hypothesis grows by one token unless it emits EOS; a finished one never does.
        grows = (~finished[..., None]) & ~is_eos  # [B, K, V]
        ranked = candidates / length_penalty(lengths[..., None] + grows, penalty, alpha)
        _, flat = jax.lax.top_k(ranked.reshape(batch, beam * vocab), beam)  # [B, K]
        scores = jnp.take_along_axis(candidates.reshape(batch, beam * vocab), flat, axis=1)
        origin, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        was_finished = jnp.take_along_axis(finished, origin, axis=1)
        lengths = jnp.take_along_axis(lengths, origin, axis=1) + (~was_finished & (token != eos))
        history = jnp.take_along_axis(history, origin[..., None], axis=1).at[:, :, t].set(token)
        rows = (jnp.arange(batch)[:, None] * beam + origin).reshape(-1)  # [B*K]
        state = jax.tree_util.tree_map(lambda x: x[rows], state)
        return (state, token, scores, was_finished | (token == eos), lengths, history), None

    carry, _ = jax.lax.scan(body, carry, jnp.arange(steps))
    _, _, scores, _, lengths, history = carry
    normalised = scores / length_penalty(lengths, penalty, alpha)  # [B, K]
    order = jnp.argsort(-normalised, axis=1)
    return (
        jnp.take_along_axis(history, order[..., None], axis=1),
        jnp.take_along_axis(normalised, order, axis=1),
    )
