"""Shared fixtures: tiny models and batches so every test runs in seconds on a CPU."""

import jax.numpy as jnp
import numpy as np
import pytest


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
