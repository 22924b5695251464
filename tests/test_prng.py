"""Every random stream of every seed is its own: no key of one purpose or seed is another's."""

import jax
import numpy as np
import optax
import pytest

from s2s_jax.studies import multiseed
from s2s_jax.training import prng, train

SEEDS = range(8)
STEPS = 4  # the first training steps
T = 3  # decoder steps whose per-step keys are checked


def _init_key(seed):
    """The key train.init_state hands to the model's init."""
    seen = []

    class Net:
        def init(self, rng):
            seen.append(rng)
            return {"w": jax.numpy.zeros(())}

    train.init_state(Net(), optax.sgd(0.1), seed)
    return seen[0]


def _descendants(key, splits):
    """The key and the keys the code derives from it by `jax.random.split(key, n)`."""
    return [key, *jax.random.split(key, splits)]


def _all_keys(seed, train_key):
    keys = {("init", seed): _init_key(seed)}
    for i, k in enumerate(jax.random.split(keys[("init", seed)], 3)):  # model.init's parts
        keys[("init part", seed, i)] = k
    keys[("data", seed)] = prng.key(seed, "data")
    keys[("train", seed)] = train_key
    for step in range(STEPS):
        step_key = jax.random.fold_in(train_key, step)  # train_step's fold
        keys[("step", seed, step)] = step_key
        k_enc, k_dec = jax.random.split(step_key)  # model.apply: encoder dropout, decoder
        keys[("encoder", seed, step)] = k_enc
        keys[("decoder", seed, step)] = k_dec
        for t, k in enumerate(jax.random.split(k_dec, T)):  # decoders: one key a step
            for j, part in enumerate(_descendants(k, 3)):  # choose, token, dropout
                keys[("decoder step", seed, step, t, j)] = part
    return keys


def test_keys_of_seeds_purposes_and_steps_are_distinct():
    train_keys = multiseed.step_keys(list(SEEDS))  # the vmapped program's; run.py's is the same
    keys = {}
    for seed in SEEDS:
        np.testing.assert_array_equal(train_keys[seed], prng.train_key(seed))
        keys.update(_all_keys(seed, train_keys[seed]))
    values = {tuple(np.asarray(k).tolist()) for k in keys.values()}
    assert len(values) == len(keys), "two streams share a key"


def test_data_seeds_differ_and_are_stable():
    data_seeds = [prng.data_seed(s) for s in SEEDS]
    assert len(set(data_seeds)) == len(data_seeds)
    assert data_seeds == [prng.data_seed(s) for s in SEEDS]  # a function of the seed alone
    assert all(0 <= s < 2**64 for s in data_seeds)


def test_traced_seed_gives_the_same_init_key():
    traced = jax.jit(prng.init_key)(jax.numpy.int32(5))
    np.testing.assert_array_equal(traced, prng.init_key(5))


def test_unknown_purpose_is_refused():
    with pytest.raises(ValueError, match="choose one of"):
        prng.key(0, "dropout")
