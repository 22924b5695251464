"""Shared fixtures: tiny models and batches so every test runs in seconds on a CPU."""

import os

import jax.numpy as jnp
import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def shared_compilation_cache(tmp_path_factory):
    """One persistent XLA compilation cache for the subprocesses this test worker starts.

    Most end-to-end tests run run.py (or a sweep, or a benchmark) with the same tiny model in a
    fresh workdir, and each compiled the same train, eval and decode steps again: two thirds of
    such a run. The environment variables reach only the subprocesses: this process imported
    JAX before the fixture runs, so its own compilations (and the tests that count them) are
    untouched. Tests about the workdir's own cache, and the compile-time benchmarks, drop them.
    """
    names = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("xla_cache"))
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # tiny steps compile fast
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def make_batch(seed=0, batch=4, src_len=7, tgt_len=6, src_vocab=11, tgt_vocab=13):
    """A padded batch in the data contract: ids >= 4 (specials below), EOS (2) ending targets."""
    rs = np.random.RandomState(seed)
    inputs_len = rs.randint(1, src_len + 1, size=batch)
    targets_len = rs.randint(2, tgt_len + 1, size=batch)
    inputs = rs.randint(4, src_vocab, size=(batch, src_len))
    targets = rs.randint(4, tgt_vocab, size=(batch, tgt_len))
    inputs[np.arange(src_len)[None, :] >= inputs_len[:, None]] = 0
    targets[np.arange(tgt_len)[None, :] == targets_len[:, None] - 1] = 2
    targets[np.arange(tgt_len)[None, :] >= targets_len[:, None]] = 0
    return {
        k: jnp.asarray(v, jnp.int32)
        for k, v in dict(
            inputs=inputs, inputs_len=inputs_len, targets=targets, targets_len=targets_len
        ).items()
    }


@pytest.fixture
def batch():
    return make_batch()
