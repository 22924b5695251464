"""Checkpoints: the best one by the configured metric, in the metric's own direction; damaged
checkpoints against checkpoints of another state structure."""

import os
import pathlib

import jax
import jax.numpy as jnp
import optax
import pytest

from s2s_jax.training import checkpoint, train


def _save_all(tmp_path, best_metric, values):
    ckpt = checkpoint.Checkpoints(str(tmp_path), keep=1, best_metric=best_metric)
    for step, value in enumerate(values, start=1):
        ckpt.save(
            step,
            {"w": jnp.full((2,), float(step))},
            {"position": step},
            metrics={best_metric: value},
        )
    ckpt.wait()
    best, steps = ckpt.best_step(), ckpt.steps()
    ckpt.close()
    # A resumed run reads the metrics back from disk: the same checkpoint is still the best.
    reopened = checkpoint.Checkpoints(str(tmp_path), keep=1, best_metric=best_metric)
    assert reopened.best_step() == best
    reopened.close()
    return best, steps


@pytest.mark.parametrize(
    "metric,best", [("exact_match", 2), ("bleu", 2), ("loss", 3), ("perplexity", 3)]
)
def test_the_best_checkpoint_follows_the_metric_direction(tmp_path, metric, best):
    # Step 2 has the highest value and step 3 the lowest; step 4 is the latest.
    best_step, steps = _save_all(tmp_path, metric, [0.5, 0.9, 0.1, 0.4])
    assert best_step == best
    assert steps == sorted({best, 4})  # the best and the latest one are kept


def test_an_unknown_best_metric_is_rejected_before_anything_is_saved(tmp_path):
    with pytest.raises(ValueError, match="unknown --config.train.best_metric 'bogus'"):
        checkpoint.Checkpoints(str(tmp_path), keep=1, best_metric="bogus")
    assert not (tmp_path / "checkpoints").exists()


def _train_state(clip: bool):
    params = {"w": jnp.ones((3,))}
    parts = [optax.clip_by_global_norm(1.0)] if clip else []
    tx = optax.chain(*parts, optax.adam(1e-3))
    return train.TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params))


def _abstract(state):
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), state
    )


def test_a_checkpoint_of_another_state_structure_is_an_error_and_stays_in_place(tmp_path):
    """Clipping on at save time, off at restore: the optimizer state has another tree. That is
    not damage, so the checkpoint must not be set aside (a resume would then start at 0)."""
    ckpt = checkpoint.Checkpoints(str(tmp_path), keep=3, best_metric="loss")
    ckpt.save(5, _train_state(clip=True), {"position": 5})
    ckpt.wait()
    ckpt.close()
    reopened = checkpoint.Checkpoints(str(tmp_path), keep=3, best_metric="loss")
    with pytest.raises(checkpoint.StateMismatch, match="checkpoint 5 .* another structure"):
        reopened.restore(_abstract(_train_state(clip=False)))
    assert reopened.steps() == [5]
    assert not (tmp_path / "corrupt_checkpoints").exists()
    state, data_state, step = reopened.restore(_abstract(_train_state(clip=True)))
    assert (step, data_state) == (5, {"position": 5})
    reopened.close()


def test_a_damaged_checkpoint_is_skipped_and_set_aside_only_when_asked(tmp_path):
    ckpt = checkpoint.Checkpoints(str(tmp_path), keep=3, best_metric="loss")
    for step in (1, 2):
        ckpt.save(step, _train_state(clip=True), {"position": step})
    ckpt.wait()
    for root, _, files in os.walk(tmp_path / "checkpoints" / "2" / "state"):
        for name in files:
            (pathlib.Path(root) / name).write_bytes(b"garbage")
    abstract = _abstract(_train_state(clip=True))
    with pytest.raises(ValueError, match=r"checkpoint 2 .* cannot be read .* of \[1\]"):
        ckpt.restore(abstract, step=2)
    with pytest.raises(ValueError, match=r"no checkpoint 7 .* choose one of \[1, 2\]"):
        ckpt.restore(abstract, step=7)
    assert ckpt.restore(abstract, set_aside=False)[2] == 1
    assert ckpt.steps() == [1, 2]  # eval reads; only training sets a damaged one aside
    assert ckpt.restore(abstract)[2] == 1
    assert ckpt.steps() == [1] and (tmp_path / "corrupt_checkpoints" / "2").is_dir()
    ckpt.close()


def test_ranked_steps_go_from_the_best_metric_to_the_worst_then_unscored_newest_first(tmp_path):
    ckpt = checkpoint.Checkpoints(str(tmp_path), keep=10, best_metric="loss")
    for step, loss in ((1, 0.5), (2, None), (3, 0.2), (4, 0.9), (5, None)):
        ckpt.save(
            step,
            {"w": jnp.zeros((1,))},
            {"position": step},
            metrics=None if loss is None else {"loss": loss},
        )
    ckpt.wait()
    assert ckpt.ranked_steps() == [3, 1, 4, 5, 2]
    ckpt.close()
