"""Attention over encoder outputs: score functions, masked softmax and the context vector.

Each entry splits into `prepare` (everything that depends on the encoder outputs only, computed
once before the decoder scan), `project` (the query's own projection) and `score` (the per-step
part that needs both), so the key projection of Bahdanau and `general` attention is never
recomputed inside the loop, and the decoder can compute the query projection's gradient for all
steps at once after it (fast_unroll).

Attention is its own axis of the model (`ModelConfig.attention`): "none" (`NONE`), or a key of
`ATTENTION`, over the initial state of any bridge.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from s2s_jax.models.cells import dense, dense_init


class Attention(NamedTuple):
    init: Callable  # (rng, query_dim, key_dim, attn_dim, normalize) -> params
    prepare: Callable  # (params, keys [B, S, Dk]) -> prepared keys [B, S, A]
    project: Callable  # (params, query [B, Dq]) -> projected query [B, Aq]
    score: Callable  # (params, projected query [B, Aq], prepared [B, S, A]) -> scores [B, S]


# --- Bahdanau (additive) ---------------------------------------------------------------------
def _additive_init(rng, query_dim, key_dim, attn_dim, normalize):
    k_q, k_k, k_v = jax.random.split(rng, 3)
    params = {
        "query": dense_init(k_q, query_dim, attn_dim, use_bias=False),
        "key": dense_init(k_k, key_dim, attn_dim, use_bias=True),
        "v": nn.initializers.lecun_normal()(k_v, (attn_dim, 1))[:, 0],
    }
    if normalize:
        # Weight normalisation of v (Salimans & Kingma 2016), as in TF's BahdanauAttention.
        params["g"] = jnp.asarray(math.sqrt(1.0 / attn_dim), jnp.float32)
    return params


def _additive_prepare(params, keys):
    return dense(params["key"], keys)  # [B, S, A]


def _additive_project(params, query):
    # Outside the rematerialised part below: its matmul is then not run a second time in the
    # backward pass.
    return dense(params["query"], query)  # [B, A]


def _additive_score(params, projected_query, prepared):
    v = params["v"]
    if "g" in params:
        v = params["g"] * v / jnp.linalg.norm(v)
    return _additive_hidden_score(v, projected_query, prepared)


@jax.checkpoint
def _additive_hidden_score(v, projected_query, prepared):
    # Rematerialised: inside the decoder loop, keeping the [B, S, A] tanh for the backward pass
    # costs more memory traffic (two [T, B, S, A] buffers) than recomputing it there.
    hidden = jnp.tanh(prepared + projected_query[:, None, :])  # [B, S, A]
    return hidden @ v  # [B, S]


# --- Luong (multiplicative) ------------------------------------------------------------------
def _check_dot_sizes(query_dim, key_dim):
    if query_dim != key_dim:
        raise ValueError(
            f"dot attention needs the decoder hidden size ({query_dim}) to equal the encoder "
            f"output size ({key_dim}); use --attention_type=general or bahdanau instead (an "
            f"--attention_init=concat or a --config.model.decoder_hidden makes them differ)"
        )


def _dot_init(rng, query_dim, key_dim, attn_dim, normalize):
    del rng, attn_dim, normalize
    _check_dot_sizes(query_dim, key_dim)
    return {}


def _identity_prepare(params, keys):
    del params
    return keys


def _identity_project(params, query):
    del params
    return query


def _dot_score(params, query, prepared):
    del params
    return jnp.einsum("bd,bsd->bs", query, prepared)


def _scaled_dot_score(params, query, prepared):
    return _dot_score(params, query, prepared) / math.sqrt(query.shape[-1])


def _general_init(rng, query_dim, key_dim, attn_dim, normalize):
    del attn_dim, normalize
    return {"key": dense_init(rng, key_dim, query_dim, use_bias=False)}


def _general_prepare(params, keys):
    return dense(params["key"], keys)  # [B, S, Dq]: W k, so the score is q . (W k)


ATTENTION = {
    "bahdanau": Attention(_additive_init, _additive_prepare, _additive_project, _additive_score),
    "dot": Attention(_dot_init, _identity_prepare, _identity_project, _dot_score),
    "general": Attention(_general_init, _general_prepare, _identity_project, _dot_score),
    "scaled_dot": Attention(_dot_init, _identity_prepare, _identity_project, _scaled_dot_score),
}


NONE = "none"  # ModelConfig.attention of a decoder that attends to nothing
CHOICES = [NONE, *sorted(ATTENTION)]  # every value of ModelConfig.attention


def get_attention(name: str) -> Attention | None:
    """The entry named `name`, or None for `NONE` (no attention)."""
    if name == NONE:
        return None
    if name not in ATTENTION:
        raise ValueError(f"unknown attention type {name!r}; choose one of {CHOICES}")
    return ATTENTION[name]


def masked_softmax(scores, mask):
    """Softmax over the source axis with padded positions exactly 0.

    scores: [B, S]; mask: [B, S] bool. A row with no real position gives all zeros (the dummy
    examples that pad an evaluation batch), never NaN.
    """
    scores = jnp.where(mask, scores, -jnp.inf)
    peak = jnp.max(scores, axis=-1, keepdims=True)
    peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
    weights = jnp.where(mask, jnp.exp(scores - peak), 0.0)  # [B, S]
    total = jnp.sum(weights, axis=-1, keepdims=True)
    return weights / jnp.where(total > 0, total, 1.0)


def attend(attn: Attention, params, query, keys, prepared, mask):
    """Context vector and weights for one decoder step.

    Args:
      query: [B, Dq] decoder state; keys: [B, S, Dk] encoder outputs; prepared: `attn.prepare`
        of the keys; mask: [B, S] source mask.

    Returns:
      (context [B, Dk], weights [B, S]).
    """
    return attend_projected(attn, params, attn.project(params, query), keys, prepared, mask)


def attend_projected(attn: Attention, params, projected_query, keys, prepared, mask):
    """`attend` from the query's projection `attn.project(params, query)` [B, Aq]."""
    weights = masked_softmax(attn.score(params, projected_query, prepared), mask)  # [B, S]
    context = jnp.einsum("bs,bsd->bd", weights, keys)  # [B, Dk]
    return context, weights
