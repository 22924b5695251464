import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax.models import sampling
from s2s_jax.models.sampling import ScheduleParams


@pytest.mark.parametrize(
    "name,sp,step,want",
    [
        ("constant", ScheduleParams(0.3), 12345, 0.3),
        ("linear", ScheduleParams(1.0, linear_slope=1e-3, linear_floor=0.2), 0, 0.0),
        ("linear", ScheduleParams(1.0, linear_slope=1e-3, linear_floor=0.2), 500, 0.5),
        ("linear", ScheduleParams(1.0, linear_slope=1e-3, linear_floor=0.2), 5000, 0.8),  # floor
        ("linear", ScheduleParams(1.0, linear_start=0.9, linear_slope=1e-3), 100, 0.2),  # start
        ("linear", ScheduleParams(0.25, linear_slope=1e-3), 500, 0.25),  # cap
        ("exponential", ScheduleParams(1.0, exponential_base=0.99), 100, 1 - 0.99**100),
        (
            "inverse_sigmoid",
            ScheduleParams(1.0, inverse_sigmoid_k=100.0),
            300,
            1 - 100 / (100 + math.exp(3.0)),
        ),
    ],
)
def test_schedules_follow_bengio_et_al(name, sp, step, want):
    np.testing.assert_allclose(sampling.probability_at(name, step, sp), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(sampling.SCHEDULES))
def test_schedules_are_monotone_bounded_and_traced(name):
    sp = ScheduleParams(0.6, inverse_sigmoid_k=200.0)
    traces = []

    @jax.jit
    def p_at(step):
        traces.append(1)
        return sampling.probability_at(name, step, sp)

    values = np.array([p_at(jnp.int32(s)) for s in range(0, 20000, 250)])
    assert len(traces) == 1  # the step is traced: walking the schedule never recompiles
    assert np.all((values >= 0) & (values <= 0.6)) and np.all(np.diff(values) >= -1e-7)


def test_bad_schedule_parameters_are_rejected():
    with pytest.raises(ValueError, match="0 < --config.sampling.exponential_base < 1"):
        sampling.check_schedule("exponential", ScheduleParams(1.0, exponential_base=2.0))
    with pytest.raises(ValueError, match="inverse_sigmoid_k >= 1"):
        sampling.check_schedule("inverse_sigmoid", ScheduleParams(1.0, inverse_sigmoid_k=0.5))
    with pytest.raises(ValueError, match=r"\['constant', 'exponential'"):
        sampling.check_schedule("cosine", ScheduleParams())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sampling.check_schedule("constant", ScheduleParams(1.5))
    for bad in (ScheduleParams(0.5, linear_slope=-1e-3), ScheduleParams(0.5, linear_floor=-0.1)):
        with pytest.raises(ValueError, match="linear_slope >= 0"):
            sampling.check_schedule("linear", bad)
    sampling.check_schedule("linear", ScheduleParams(0.5, linear_slope=0.0, linear_floor=1.0))


@pytest.mark.parametrize("name", ["linear", "exponential", "inverse_sigmoid"])
def test_default_parameters_ramp_each_schedule_to_its_cap_in_a_default_run(name):
    # One k served three schedules once; its default fitted only the inverse sigmoid, and
    # --sampling_schedule=linear alone ran teacher forcing for 149,000 steps.
    sp = ScheduleParams(0.25)
    assert float(sampling.probability_at(name, 0, sp)) < 0.25
    assert float(sampling.probability_at(name, 1499, sp)) == pytest.approx(0.25)  # the default run
    assert sampling.flat_schedule_warning(name, sp, 1500) is None


@pytest.mark.parametrize(
    "name,sp,steps,says",
    [
        ("linear", ScheduleParams(0.25, linear_slope=0.0), 1500, "stays below 1% of its cap 0.25"),
        (
            "linear",
            ScheduleParams(0.25, linear_start=150.0),
            1500,
            "p = 0 at the last one",
        ),  # k=150
        ("linear", ScheduleParams(0.25, linear_start=0.5), 1500, "at its cap 0.25 from step 0"),
        ("exponential", ScheduleParams(0.1, exponential_base=0.99999), 100, "stays below 1%"),
        ("inverse_sigmoid", ScheduleParams(0.25, inverse_sigmoid_k=1e6), 100, "stays below 1%"),
        ("inverse_sigmoid", ScheduleParams(0.25, inverse_sigmoid_k=1.0), 100, "at its cap 0.25"),
    ],
)
def test_a_schedule_that_never_moves_gets_one_warning_line(name, sp, steps, says):
    warning = sampling.flat_schedule_warning(name, sp, steps)
    assert says in warning and "\n" not in warning and "--config.sampling." in warning


def test_no_warning_for_what_means_what_it_says():
    assert sampling.flat_schedule_warning("constant", ScheduleParams(0.25), 100) is None
    assert sampling.flat_schedule_warning("linear", ScheduleParams(0.0), 100) is None  # forcing


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


def test_argmax_equals_jnp_argmax_with_ties_nan_and_inf():
    x = jnp.round(jax.random.normal(jax.random.PRNGKey(0), (50, 33)))  # many ties
    x = x.at[3, 7].set(jnp.nan).at[4, 2].set(jnp.inf).at[5].set(-jnp.inf)
    np.testing.assert_array_equal(sampling.argmax(x), jnp.argmax(x, axis=-1))
    np.testing.assert_array_equal(jax.jit(sampling.argmax)(x), jnp.argmax(x, axis=-1))


def _draws(logits, count, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), count)
    return np.asarray(jax.jit(jax.vmap(sampling.categorical, (0, None)))(keys, logits))  # [N, B]


@pytest.mark.parametrize("vocab,dtype", [(70, jnp.float32), (97, jnp.float32), (97, jnp.bfloat16)])
def test_categorical_frequencies_follow_the_softmax(vocab, dtype):
    # 70: blocks of 10 (a divisor); 97: blocks of 10 with padding; bfloat16 logits (a model's
    # compute dtype) must be drawn from as exactly as float32 ones.
    logits = (2.0 * jax.random.normal(jax.random.PRNGKey(vocab), (2, vocab))).astype(dtype)
    count = 40000
    ids = _draws(logits, count)
    for row in range(2):
        expected = count * np.asarray(jax.nn.softmax(logits[row].astype(jnp.float32)), np.float64)
        observed = np.bincount(ids[:, row], minlength=vocab)
        chi2 = np.sum((observed - expected) ** 2 / expected)
        # chi-square with vocab - 1 degrees of freedom: mean vocab - 1, sd sqrt(2 (vocab - 1)).
        assert chi2 < vocab - 1 + 6 * math.sqrt(2 * (vocab - 1)), chi2


def test_categorical_never_draws_an_impossible_token():
    vocab = 97  # padded to 10 blocks of 10
    logits = np.full((4, vocab), -np.inf, np.float32)
    logits[0, [0, 9, 10, 96]] = [0.0, 1.0, 2.0, 0.5]  # the first and last of blocks, and the last
    logits[1, 96] = 3.0  # one possible token, in the padded block
    logits[2, 0] = 0.0
    logits[3] = 0.0
    logits[3, 40:] = -200.0  # exp underflows to 0 against the others
    ids = _draws(jnp.asarray(logits), 20000, seed=1)
    assert set(np.unique(ids[:, 0])) == {0, 9, 10, 96}
    assert np.all(ids[:, 1] == 96) and np.all(ids[:, 2] == 0)
    assert ids[:, 3].max() < 40 and len(np.unique(ids[:, 3])) == 40
    np.testing.assert_array_equal(
        sampling.categorical(jax.random.PRNGKey(0), jnp.zeros((3, 1))), [0, 0, 0]
    )


def test_inverse_cdf_ends_at_the_first_and_last_possible_tokens():
    vocab = 97
    rs = np.random.RandomState(0)
    logits = rs.randn(64, vocab).astype(np.float32)
    logits[:, :3] = -np.inf  # the first possible token is 3
    logits[48:, :13] = -np.inf  # ... or 13, after a first block of nothing possible
    first = np.array([3] * 48 + [13] * 16)
    logits[:32, 90:] = -np.inf  # the last is 89, or 96 in the padded last block
    logits[32:48, 80:] = -np.inf  # ... or 79, with a last block of nothing possible
    last = np.array([89] * 32 + [79] * 16 + [96] * 16)
    below_one = np.nextafter(np.float32(1), np.float32(0))
    for fn in (sampling.inverse_cdf, jax.jit(sampling.inverse_cdf)):
        np.testing.assert_array_equal(fn(jnp.zeros(64), jnp.asarray(logits)), first)
        np.testing.assert_array_equal(fn(jnp.full(64, below_one), jnp.asarray(logits)), last)
        # u = 1 puts the target at the total, where float rounding of u * total can put it.
        np.testing.assert_array_equal(fn(jnp.ones(64), jnp.asarray(logits)), last)
