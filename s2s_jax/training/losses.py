"""Masked token cross-entropy, token accuracy and sequence exact match.

Every quantity is a sum over real target tokens (or real examples) divided by their global
count, so a loss does not depend on how the batch is split across devices, nor on padding.
Examples with `targets_len == 0` are batch filler (see data.eval_batches) and count nowhere.
"""

import jax
import jax.numpy as jnp


def target_mask(targets, lengths):
    """[B, T] float32: 1 on real target tokens (EOS included), 0 on padding."""
    return (jnp.arange(targets.shape[1])[None, :] < lengths[:, None]).astype(jnp.float32)


@jax.custom_vjp
def _lse_and_target(x, targets):
    """(logsumexp(x), x at `targets`) over the last axis: x [..., V] float32, targets [...].

    The forward pass picks the target's logit with a gather and the backward pass makes the
    whole gradient, softmax(x) * d_lse + one_hot(targets) * d_target, in one fused pass over
    [..., V] that compares an iota with the targets. Autodiff of a one-hot product or of a
    gather instead writes a [..., V] one-hot or zero array and reads it again, one more pass
    over the biggest array of the step.
    """
    return _lse_and_target_fwd(x, targets)[0]


def _lse_and_target_fwd(x, targets):
    top = jnp.max(x, axis=-1, keepdims=True)  # no stop_gradient needed: the VJP is ours
    top = jnp.where(jnp.isfinite(top), top, 0.0)  # an all -inf row gives lse -inf, not NaN
    shifted = jnp.exp(x - top)  # [..., V], kept for the backward pass as autodiff would
    total = jnp.sum(shifted, axis=-1, keepdims=True)
    lse = (jnp.log(total) + top)[..., 0]
    picked = jnp.take_along_axis(x, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return (lse, picked), (shifted, total, targets)


def _lse_and_target_bwd(res, cts):
    shifted, total, targets = res
    d_lse, d_picked = cts  # [...] each
    hit = jnp.arange(shifted.shape[-1]) == targets[..., None]  # [..., V], fused, never stored
    d_x = shifted * (d_lse[..., None] / total) + jnp.where(hit, d_picked[..., None], 0.0)
    return d_x, None


_lse_and_target.defvjp(_lse_and_target_fwd, _lse_and_target_bwd)


def cross_entropy(logits, targets, lengths, label_smoothing: float = 0.0):
    """Mean token cross-entropy over real tokens, with optional label smoothing.

    logits: [B, T, V]; targets: [B, T]; lengths: [B]. Returns a float32 scalar.
    """
    mask = target_mask(targets, lengths)  # [B, T]
    x = logits.astype(jnp.float32)
    lse, picked = _lse_and_target(x, targets)  # [B, T] each
    nll = lse - picked
    if label_smoothing > 0.0:
        # Smoothing mass spread uniformly over the vocabulary (Szegedy et al. 2016).
        uniform = lse - jnp.mean(x, axis=-1)  # [B, T]
        nll = (1.0 - label_smoothing) * nll + label_smoothing * uniform
    return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def token_accuracy(logits, targets, lengths):
    """Fraction of real target tokens whose argmax prediction is right."""
    mask = target_mask(targets, lengths)
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    return jnp.sum(correct * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def exact_match(predictions, targets, lengths):
    """Fraction of real examples whose prediction equals the target on every real position.

    predictions: [B, T] token ids (argmax or decoded). The target includes its EOS, so a
    prediction that stops early or runs on past it does not match.
    """
    mask = target_mask(targets, lengths)
    wrong = jnp.sum((predictions != targets) * mask, axis=-1)  # [B]
    real = (lengths > 0).astype(jnp.float32)
    return jnp.sum((wrong == 0) * real) / jnp.maximum(jnp.sum(real), 1.0)
