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


def sample_tokens(rng, logits, sample_from: str, temperature: float):
    """Token ids from one step's logits [B, V]: argmax, or categorical at `temperature`."""
    if sample_from == "argmax":
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jax.random.categorical(rng, logits / temperature, axis=-1).astype(jnp.int32)


SAMPLE_FROM = ("argmax", "categorical")
SAMPLING_MODES = ("embedding", "output")


# --- next-input functions for `output` mode (ScheduledOutputTrainingHelper's next_inputs_fn) ---
class NextInputs(NamedTuple):
    init: Callable  # (rng, output_dim, emb) -> params
    apply: Callable  # (params, output [B, O], logits [B, V], embedding [V, E], temperature) -> [B, E]


def _soft_embedding(params, output, logits, embedding, temperature):
    # The expected embedding under the step's distribution: differentiable, no extra parameters.
    del params, output
    return jax.nn.softmax(logits / temperature, axis=-1) @ embedding  # [B, E]


def _dense_next(params, output, logits, embedding, temperature):
    del logits, embedding, temperature
    return jnp.tanh(dense(params["proj"], output))  # [B, E]


NEXT_INPUTS = {
    "softmax_embedding": NextInputs(lambda rng, o, e: {}, _soft_embedding),
    "dense": NextInputs(lambda rng, o, e: {"proj": dense_init(rng, o, e, True)}, _dense_next),
}
