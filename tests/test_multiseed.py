"""K seeds in one vmapped program give the per-seed results of K separate runs.

The separate runs are built here from the same pieces train_and_evaluate uses (jitted
train.init_state, train.make_train_step with prng.train_key(seed), and the seed's own
data.train_iterator with prng.data_seed(seed)), in-process. The command-line path (per-seed
workdirs equal to run.py's) is checked end to end in test_sweep.py.
"""

import importlib.util
import os

import jax
import numpy as np
import pytest

from s2s_jax import data
from s2s_jax.models import model
from s2s_jax.studies import multiseed
from s2s_jax.training import prng, settings, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = [0, 3]  # not 0..K-1, so a seed mixed up with its index would show
STEPS = 12


def _tiny_config():
    spec = importlib.util.spec_from_file_location(
        "bridges_config", os.path.join(ROOT, "experiments", "bridges.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config("tiny")
    c.sampling.update(schedule="constant", probability=0.5)  # sampling (and its keys) matter
    c.model.bridge = "dense"  # compiles faster than the attention default; every bridge vmaps
    return c


def _separate_run(c, ds, net, tx, step, seed):
    state = jax.jit(lambda: train.init_state(net, tx, seed))()
    batches = data.train_iterator(ds, c.train.batch_size, prng.data_seed(seed))
    rng = prng.train_key(seed)
    losses = []
    for _ in range(STEPS):
        state, metrics = step(state, next(batches), rng)
        losses.append(float(metrics["loss"]))
    return state, np.array(losses)


def test_vmapped_seeds_equal_separate_runs():
    c = _tiny_config()
    ds = data.load_data(c.data, None)
    together = multiseed.train_seeds(c, SEEDS, STEPS, ds)
    assert together.losses.shape == (STEPS, len(SEEDS))

    net = model.build(settings.model_config(c, len(ds.src_vocab), len(ds.tgt_vocab)))
    tx = settings.make_optimizer(c.train)
    step = jax.jit(train.make_train_step(net, tx, c.sampling.schedule, settings.schedule_params(c)))
    for k, seed in enumerate(SEEDS):
        state, losses = _separate_run(c, ds, net, tx, step, seed)
        np.testing.assert_allclose(together.losses[:, k], losses, rtol=1e-5, atol=1e-6)
        mine = jax.tree_util.tree_leaves_with_path(multiseed.unstack(together.state, k))
        for (path, a), b in zip(mine, jax.tree_util.tree_leaves(state), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=str(path))
        assert int(multiseed.unstack(together.state, k).step) == STEPS
    # The seeds really differ: a mix-up of keys or batches could not pass the checks above.
    assert not np.allclose(together.losses[:, 0], together.losses[:, 1])


def test_stack_and_unstack_are_inverse():
    trees = [{"a": np.full((2,), i, np.float32), "b": (np.int32(i),)} for i in range(3)]
    stacked = multiseed.stack(trees)
    assert stacked["a"].shape == (3, 2) and stacked["b"][0].shape == (3,)
    for i, tree in enumerate(trees):
        back = multiseed.unstack(stacked, i)
        np.testing.assert_array_equal(back["a"], tree["a"])
        assert int(back["b"][0]) == i


def test_a_multi_host_config_is_refused(tmp_path):
    c = _tiny_config()
    c.parallel.num_processes = 2
    with pytest.raises(ValueError, match="one device"):
        multiseed.train_and_evaluate_seeds(c, [0, 1], str(tmp_path))
