"""Scheduled sampling: probability schedules and the per-step Bernoulli mixing of inputs.

Schedules follow Bengio et al. 2015, "Scheduled Sampling for Sequence Prediction with Recurrent
Neural Networks", which decay eps_i, the probability of feeding the *gold* token at training step
i. We return the probability of feeding the model's own output, 1 - eps_i, capped at
`probability` (so a schedule can ramp up to, say, 0.25 and stay there):

- constant:         p_i = probability
- linear:           eps_i = max(epsilon, k - c * i)
- exponential:      eps_i = k ** i                      (k < 1)
- inverse_sigmoid:  eps_i = k / (k + exp(i / k))        (k >= 1)

Every schedule is a pure function of a traced step, so moving along it never recompiles.
"""
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from s2s_jax.cells import dense, dense_init


class ScheduleParams(NamedTuple):
    probability: float = 0.25  # constant value, or the cap of the decaying schedules
    k: float = 1.0  # linear: start of eps; exponential: decay base; inverse_sigmoid: its k
    c: float = 1e-4  # linear: slope of eps per step
    epsilon: float = 0.0  # linear: floor of eps


def _constant(step, sp: ScheduleParams):
    return jnp.full_like(step, sp.probability, dtype=jnp.float32)


def _linear(step, sp: ScheduleParams):
    return 1.0 - jnp.maximum(sp.epsilon, sp.k - sp.c * step)


def _exponential(step, sp: ScheduleParams):
    return 1.0 - jnp.power(sp.k, step)


def _inverse_sigmoid(step, sp: ScheduleParams):
    return 1.0 - sp.k / (sp.k + jnp.exp(step / sp.k))


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
    if name == "exponential" and not 0.0 < sp.k < 1.0:
        raise ValueError(f"the exponential schedule needs 0 < k < 1 (eps = k**step), got k={sp.k}")
    if name == "inverse_sigmoid" and sp.k < 1.0:
        raise ValueError(f"the inverse_sigmoid schedule needs k >= 1, got k={sp.k}")
    if name == "linear" and (sp.c < 0.0 or not 0.0 <= sp.epsilon <= 1.0):
        raise ValueError(f"the linear schedule needs c >= 0 (eps falls by c a step) and "
                         f"0 <= epsilon <= 1 (its floor), got c={sp.c}, epsilon={sp.epsilon}")


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
    pass over [B, V]: jax.random.categorical's Gumbel-max needs V random words and two logs per
    row, 4x the time of the decoder's sampling step on a CPU at V = 8000 (benchmarks/README.md).
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
    return jax.nn.softmax(logits / temperature, axis=-1) @ embedding  # [B, E]


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
            f"--config.model.next_inputs=softmax_embedding or dense")


NEXT_INPUTS = {
    "softmax_embedding": NextInputs(lambda rng, v, e: {}, _soft_embedding, _fits_any),
    "dense": NextInputs(lambda rng, v, e: {"proj": dense_init(rng, v, e, True)}, _dense_next,
                        _fits_any),
    "identity": NextInputs(lambda rng, v, e: {}, _identity, _logits_as_inputs),
}
