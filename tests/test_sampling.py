import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax import sampling
from s2s_jax.sampling import ScheduleParams


@pytest.mark.parametrize("name,sp,step,want", [
    ("constant", ScheduleParams(0.3), 12345, 0.3),
    ("linear", ScheduleParams(1.0, k=1.0, c=1e-3, epsilon=0.2), 0, 0.0),
    ("linear", ScheduleParams(1.0, k=1.0, c=1e-3, epsilon=0.2), 500, 0.5),
    ("linear", ScheduleParams(1.0, k=1.0, c=1e-3, epsilon=0.2), 5000, 0.8),  # eps floor
    ("linear", ScheduleParams(0.25, k=1.0, c=1e-3), 500, 0.25),  # cap
    ("exponential", ScheduleParams(1.0, k=0.99), 100, 1 - 0.99 ** 100),
    ("inverse_sigmoid", ScheduleParams(1.0, k=100.0), 300, 1 - 100 / (100 + math.exp(3.0))),
])
def test_schedules_follow_bengio_et_al(name, sp, step, want):
    np.testing.assert_allclose(sampling.probability_at(name, step, sp), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(sampling.SCHEDULES))
def test_schedules_are_monotone_bounded_and_traced(name):
    sp = ScheduleParams(0.6, k=0.999 if name == "exponential" else 200.0, c=1e-3)
    traces = []

    @jax.jit
    def p_at(step):
        traces.append(1)
        return sampling.probability_at(name, step, sp)

    values = np.array([p_at(jnp.int32(s)) for s in range(0, 20000, 250)])
    assert len(traces) == 1  # the step is traced: walking the schedule never recompiles
    assert np.all((values >= 0) & (values <= 0.6)) and np.all(np.diff(values) >= -1e-7)


def test_bad_schedule_parameters_are_rejected():
    with pytest.raises(ValueError, match="0 < k < 1"):
        sampling.check_schedule("exponential", ScheduleParams(1.0, k=2.0))
    with pytest.raises(ValueError, match=r"\['constant', 'exponential'"):
        sampling.check_schedule("cosine", ScheduleParams())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sampling.check_schedule("constant", ScheduleParams(1.5))


def test_draws_hit_p_within_bounds_and_are_independent():
    p, batch, steps = 0.3, 64, 400
    keys = jax.random.split(jax.random.PRNGKey(0), steps)
    draws = np.asarray(jax.vmap(lambda k: sampling.choose_sampled(k, p, batch))(keys), float)
    n = draws.size
    assert abs(draws.mean() - p) < 5 * math.sqrt(p * (1 - p) / n)
    # Independence: neighbouring steps and neighbouring examples are uncorrelated, and the
    # joint frequency of two draws is p^2.
    for a, b in ((draws[1:], draws[:-1]), (draws[:, 1:], draws[:, :-1])):
        corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        assert abs(corr) < 5 / math.sqrt(a.size)
        assert abs((a * b).mean() - p * p) < 5 * math.sqrt(p * p * (1 - p * p) / a.size)


def test_a_per_example_probability_vector_is_honoured():
    probs = jnp.array([0.0, 0.1, 0.5, 0.9, 1.0])
    keys = jax.random.split(jax.random.PRNGKey(1), 4000)
    draws = np.asarray(jax.vmap(lambda k: sampling.choose_sampled(k, probs, 5))(keys), float)
    rates = draws.mean(0)
    assert rates[0] == 0.0 and rates[-1] == 1.0
    for rate, p in zip(rates[1:4], [0.1, 0.5, 0.9]):
        assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / 4000)


def test_token_sampling():
    logits = jnp.log(jnp.array([[0.7, 0.2, 0.1]] * 20000))
    ids = sampling.sample_tokens(jax.random.PRNGKey(0), logits, "categorical", 1.0)
    freq = np.bincount(np.asarray(ids), minlength=3) / 20000
    np.testing.assert_allclose(freq, [0.7, 0.2, 0.1], atol=0.02)
    np.testing.assert_array_equal(sampling.sample_tokens(None, logits[:2], "argmax", 1.0), [0, 0])
    cold = sampling.sample_tokens(jax.random.PRNGKey(0), logits, "categorical", 0.05)
    assert np.mean(np.asarray(cold) == 0) > 0.999  # a low temperature approaches argmax
