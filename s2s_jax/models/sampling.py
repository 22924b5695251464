"""Scheduled sampling: probability schedules and the per-step Bernoulli mixing of inputs.

Schedules follow Bengio et al. 2015, "Scheduled Sampling for Sequence Prediction with Recurrent
Neural Networks", which decay eps_i, the probability of feeding the *gold* token at training step
i. We return the probability of feeding the model's own output, 1 - eps_i, capped at
`probability` (so a schedule can ramp up to, say, 0.25 and stay there). Each schedule has its
own parameters (config fields `sampling.<name>_<parameter>`), with defaults that reach a cap of
0.25 within the first few hundred steps:

- constant:         p_i = probability
- linear:           eps_i = max(linear_floor, linear_start - linear_slope * i)
- exponential:      eps_i = exponential_base ** i                      (base < 1)
- inverse_sigmoid:  eps_i = k / (k + exp(i / k)), k = inverse_sigmoid_k  (k >= 1)

Every schedule is a pure function of a traced step, so moving along it never recompiles.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from s2s_jax.models import precision
from s2s_jax.models.cells import dense, dense_init


class ScheduleParams(NamedTuple):
    probability: float = 0.25  # constant value, or the cap of the decaying schedules
    linear_start: float = 1.0  # linear: eps at step 0 (1: teacher forcing at the start)
    linear_slope: float = 1e-3  # linear: eps falls by this much a step (p = 0.25 at step 250)
    linear_floor: float = 0.0  # linear: eps never falls below this
    exponential_base: float = 0.999  # exponential: eps = base ** step (p = 0.25 at step 288)
    inverse_sigmoid_k: float = 150.0  # inverse sigmoid: its k (p = 0.25 at step 587)


def _constant(step, sp: ScheduleParams):
    return jnp.full_like(step, sp.probability, dtype=jnp.float32)


def _linear(step, sp: ScheduleParams):
    return 1.0 - jnp.maximum(sp.linear_floor, sp.linear_start - sp.linear_slope * step)


def _exponential(step, sp: ScheduleParams):
    return 1.0 - jnp.power(sp.exponential_base, step)


def _inverse_sigmoid(step, sp: ScheduleParams):
    k = sp.inverse_sigmoid_k
    return 1.0 - k / (k + jnp.exp(step / k))


SCHEDULES = {
    "constant": _constant,
    "linear": _linear,
    "exponential": _exponential,
    "inverse_sigmoid": _inverse_sigmoid,
}


def check_schedule(name: str, sp: ScheduleParams) -> None:
    """Rejects unknown names and parameters outside each schedule's domain (outside jit)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown sampling schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    if not 0.0 <= sp.probability <= 1.0:
        raise ValueError(f"--sampling_probability must lie in [0, 1], got {sp.probability}")
    if name == "exponential" and not 0.0 < sp.exponential_base < 1.0:
        raise ValueError(
            f"the exponential schedule needs 0 < --config.sampling.exponential_base "
            f"< 1 (eps = base**step), got {sp.exponential_base}"
        )
    if name == "inverse_sigmoid" and sp.inverse_sigmoid_k < 1.0:
        raise ValueError(
            f"the inverse_sigmoid schedule needs --config.sampling.inverse_sigmoid_k "
            f">= 1, got {sp.inverse_sigmoid_k}"
        )
    if name == "linear" and (sp.linear_slope < 0.0 or not 0.0 <= sp.linear_floor <= 1.0):
        raise ValueError(
            f"the linear schedule needs --config.sampling.linear_slope >= 0 (eps "
            f"falls by it a step) and 0 <= linear_floor <= 1 (its floor), got "
            f"linear_slope={sp.linear_slope}, linear_floor={sp.linear_floor}"
        )


def flat_schedule_warning(name: str, sp: ScheduleParams, steps: int) -> str | None:
    """A one-line warning when a decaying schedule does not move during `steps` training steps:
    below 1% of its cap throughout (teacher forcing in effect, though a cap above 0 asks for
    sampling) or at its cap from step 0. None when it ramps, for the constant schedule and for
    a cap of 0, which mean what they say. Schedules never decrease, so two points decide."""
    if name == "constant" or sp.probability == 0.0 or steps < 1:
        return None
    first, last = (float(probability_at(name, i, sp)) for i in (0, steps - 1))
    fields = {
        "linear": "--config.sampling.linear_slope (or linear_start)",
        "exponential": "--config.sampling.exponential_base",
        "inverse_sigmoid": "--config.sampling.inverse_sigmoid_k",
    }[name]
    if last < 0.01 * sp.probability:
        return (
            f"the {name} schedule stays below 1% of its cap {sp.probability} for all {steps} "
            f"steps (p = {last:.2g} at the last one: teacher forcing in effect); change "
            f"{fields} or --steps"
        )
    if first >= float(jnp.float32(sp.probability)):  # probability_at rounds to float32
        return (
            f"the {name} schedule is at its cap {sp.probability} from step 0 (a constant "
            f"schedule); change {fields} for a ramp, or use --sampling_schedule=constant"
        )
    return None


def probability_at(name: str, step, sp: ScheduleParams):
    """Sampling probability at `step` (a traced int scalar): float32 scalar in [0, probability]."""
    step = jnp.asarray(step, jnp.float32)
    p = SCHEDULES[name](step, sp)
    return jnp.clip(p, 0.0, sp.probability).astype(jnp.float32)


def choose_sampled(rng, probability, batch: int):
    """Independent Bernoulli draw per example: True where the model's own output is fed.

    probability: scalar or `[B]`. Returns `[B]` bool.
    """
    probability = jnp.broadcast_to(jnp.asarray(probability, jnp.float32), (batch,))
    return jax.random.uniform(rng, (batch,)) < probability


def argmax(x):
    """jnp.argmax over the last axis (the first maximum; NaN counts as the maximum), as two plain
    reductions: XLA:CPU runs the variadic (value, index) reduce of jnp.argmax several times
    slower, and the decoder takes one per step."""
    top = jnp.max(x, axis=-1, keepdims=True)
    hit = (x == top) | (jnp.isnan(top) & jnp.isnan(x))
    iota = jax.lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
    return jnp.min(jnp.where(hit, iota, x.shape[-1]), axis=-1).astype(jnp.int32)


def _block_size(vocab: int) -> int:
    """A divisor of `vocab` near sqrt(vocab) if there is one (no padding), else ceil(sqrt)."""
    root = math.isqrt(vocab - 1) + 1  # ceil(sqrt(vocab))
    for size in range(root, 2 * root + 1):
        if vocab % size == 0:
            return size
    return root


def categorical(rng, logits):
    """One draw per row from softmax(logits) [B, V]: token ids [B] int32.

    Inverse-CDF sampling with one uniform per row, in two levels so that no cumulative sum runs
    over the whole vocabulary: the rows' unnormalised probabilities exp(logits - max) are summed
    in blocks of about sqrt(V), the block whose running mass first exceeds u * total is chosen,
    then the token inside it the same way. A token of probability 0 (a -inf logit, or one that
    underflows) is never drawn. It is exact up to float32 rounding of the sums and costs one exp
    pass over [B, V], where jax.random.categorical's Gumbel-max needs V random words and two logs
    per row.
    """
    return inverse_cdf(jax.random.uniform(rng, logits.shape[:1]), logits)


def inverse_cdf(uniform, logits):
    """The token of each row of softmax(logits) [B, V] at which the cumulative probability
    first exceeds `uniform` [B] in [0, 1): the first possible token at 0, the last one near 1."""
    # In float32 whatever the compute dtype: bfloat16 sums (8-bit mantissas) over a row skew the
    # draws far beyond sampling noise (a chi-square 90-300 standard deviations off).
    logits = logits.astype(jnp.float32)
    batch, vocab = logits.shape
    size = _block_size(vocab)
    blocks = -(-vocab // size)
    top = jnp.max(logits, axis=-1, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    weight = jnp.exp(logits - top)  # [B, V], the largest is 1
    weight = jnp.pad(weight, ((0, 0), (0, blocks * size - vocab))).reshape(batch, blocks, size)
    mass = jnp.sum(weight, axis=-1)  # [B, nb]
    running = jnp.cumsum(mass, axis=-1)
    target = uniform * running[:, -1]  # [B], in [0, total)
    # Rounding can leave `target` at the total, and `rest` below at or past the block's own sum:
    # then the last block, and the last token, that can be drawn at all.
    last_block = blocks - 1 - argmax((mass > 0)[:, ::-1])
    block = jnp.minimum(jnp.sum(running <= target[:, None], axis=-1), last_block)  # [B]
    before = jnp.take_along_axis(running, jnp.maximum(block - 1, 0)[:, None], axis=1)[:, 0]
    rest = target - jnp.where(block > 0, before, 0.0)  # [B] mass left inside the block
    inside = jnp.take_along_axis(weight, block[:, None, None], axis=1)[:, 0]  # [B, size]
    offset = jnp.sum(jnp.cumsum(inside, axis=-1) <= rest[:, None], axis=-1)  # [B]
    last = size - 1 - argmax((inside > 0)[:, ::-1])
    return (block * size + jnp.minimum(offset, last)).astype(jnp.int32)


def sample_tokens(rng, logits, sample_from: str, temperature: float):
    """Token ids from one step's logits [B, V]: argmax, or categorical at `temperature`."""
    if sample_from == "argmax":
        return argmax(logits)
    return categorical(rng, logits / temperature)


SAMPLE_FROM = ("argmax", "categorical")
SAMPLING_MODES = ("embedding", "output")


# --- next-input functions for `output` mode (ScheduledOutputTrainingHelper's next_inputs_fn) ---
# As in TF's BasicDecoder, the function reads the step's output after the output layer: the
# logits. Whether gradient reaches those logits is the decoder's choice (`output_gradient`); the
# function's own parameters (and the embedding it reads) always learn.
class NextInputs(NamedTuple):
    init: Callable  # (rng, vocab, emb) -> params
    apply: Callable  # (params, logits [B, V], embedding [V, E], temperature) -> [B, E]
    check: Callable  # (vocab, emb) -> None; raises ValueError naming the fix where it cannot fit


def _fits_any(vocab, emb):
    del vocab, emb


def _soft_embedding(params, logits, embedding, temperature):
    # The expected embedding under the step's distribution: differentiable, no extra parameters.
    del params
    return precision.dot(jax.nn.softmax(logits / temperature, axis=-1), embedding)  # [B, E]


def _dense_next(params, logits, embedding, temperature):
    # TF users' usual next_inputs_fn: a learned tanh layer on the logits.
    del embedding, temperature
    return jnp.tanh(dense(params["proj"], logits))  # [B, E]


def _identity(params, logits, embedding, temperature):
    # TF's next_inputs_fn=None: the outputs themselves are the next inputs.
    del params, embedding, temperature
    return logits  # [B, V] with V == E


def _logits_as_inputs(vocab, emb):
    if vocab != emb:
        raise ValueError(
            f"next_inputs 'identity' feeds the logits [{vocab}] back where the token embedding "
            f"[{emb}] goes (TF's next_inputs_fn=None), so the embedding size must equal the "
            f"target vocabulary size; set --emb={vocab}, or "
            f"--config.model.next_inputs=softmax_embedding or dense"
        )


NEXT_INPUTS = {
    "softmax_embedding": NextInputs(lambda rng, v, e: {}, _soft_embedding, _fits_any),
    "dense": NextInputs(
        lambda rng, v, e: {"proj": dense_init(rng, v, e, True)}, _dense_next, _fits_any
    ),
    "identity": NextInputs(lambda rng, v, e: {}, _identity, _logits_as_inputs),
}
