"""Every random stream of a run, derived from one root key per seed by named folds.

A run with seed s draws its parameter initialisation, its data order and its training keys
(dropout and scheduled sampling, folded with the step inside the train step) from
`fold_in(PRNGKey(s), purpose)`. The root key itself is never used: with JAX's partitionable
threefry `split(k, n)[i] == fold_in(k, i)`, so a purpose read straight off a root (or a root
offset by one, as `PRNGKey(s + 1)` for training once was) is another seed's or another purpose's
key. Folds of distinct roots by distinct purposes share no key (tests/test_prng.py).
"""

import jax
import numpy as np

# The purposes, each its own fold of the root. Never renumber: a run is a function of its seed.
PURPOSES = {"init": 0, "data": 1, "train": 2}


def key(seed, purpose: str) -> jax.Array:
    """The key of `purpose` for run seed `seed` (an int, or a traced int32 under jit/vmap)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown key purpose {purpose!r}; choose one of {sorted(PURPOSES)}")
    return jax.random.fold_in(jax.random.PRNGKey(seed), PURPOSES[purpose])


def init_key(seed) -> jax.Array:
    """The key that initialises the parameters (model.init splits it further)."""
    return key(seed, "init")


def train_key(seed) -> jax.Array:
    """The train step's key: the step folds into it, model.apply splits it into dropout and
    sampling keys."""
    return key(seed, "train")


def data_seed(seed: int) -> int:
    """The numpy seed of the training data order (data.train_iterator), from the `data` fold."""
    words = np.asarray(jax.random.key_data(key(seed, "data")), np.uint64)  # [2] uint32
    return int(words[0] << np.uint64(32) | words[1])
