"""Checkpoints: the best one by the configured metric, in the metric's own direction."""
import jax.numpy as jnp
import pytest

from s2s_jax import checkpoint


def _save_all(tmp_path, best_metric, values):
    ckpt = checkpoint.Checkpoints(str(tmp_path), keep=1, best_metric=best_metric)
    for step, value in enumerate(values, start=1):
        ckpt.save(step, {"w": jnp.full((2,), float(step))}, {"position": step},
                  metrics={best_metric: value})
    ckpt.wait()
    best, steps = ckpt.best_step(), ckpt.steps()
    ckpt.close()
    # A resumed run reads the metrics back from disk: the same checkpoint is still the best.
    reopened = checkpoint.Checkpoints(str(tmp_path), keep=1, best_metric=best_metric)
    assert reopened.best_step() == best
    reopened.close()
    return best, steps


@pytest.mark.parametrize("metric,best", [("exact_match", 2), ("bleu", 2), ("loss", 3),
                                         ("perplexity", 3)])
def test_the_best_checkpoint_follows_the_metric_direction(tmp_path, metric, best):
    # Step 2 has the highest value and step 3 the lowest; step 4 is the latest.
    best_step, steps = _save_all(tmp_path, metric, [0.5, 0.9, 0.1, 0.4])
    assert best_step == best
    assert steps == sorted({best, 4})  # the best and the latest one are kept


def test_an_unknown_best_metric_is_rejected_before_anything_is_saved(tmp_path):
    with pytest.raises(ValueError, match="unknown --config.train.best_metric 'bogus'"):
        checkpoint.Checkpoints(str(tmp_path), keep=1, best_metric="bogus")
    assert not (tmp_path / "checkpoints").exists()
