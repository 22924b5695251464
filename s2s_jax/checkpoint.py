"""Checkpoints with orbax: keep the latest N and the best, resume, skip a corrupted latest.

A checkpoint holds the train state (parameters, optimizer state, step) and the data iterator's
state, so a resumed run sees exactly the batches it would have seen.
"""
import os
import shutil

import jax
import orbax.checkpoint as ocp
from absl import logging


# Validation metrics that can pick the best checkpoint, and which way is better.
BEST_MODES = {"exact_match": "max", "token_accuracy": "max", "free_token_accuracy": "max",
              "bleu": "max", "loss": "min", "perplexity": "min"}


def check_best_metric(best_metric: str) -> None:
    if best_metric not in BEST_MODES:
        raise ValueError(f"unknown --config.train.best_metric {best_metric!r}; choose one of "
                         f"{sorted(BEST_MODES)}")


class Checkpoints:
    """A thin wrapper over `ocp.CheckpointManager` for the train loop."""

    def __init__(self, workdir: str, keep: int, best_metric: str):
        check_best_metric(best_metric)  # not at the first save, after the first evaluation
        best_mode = BEST_MODES[best_metric]
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self._corrupt_dir = os.path.abspath(os.path.join(workdir, "corrupt_checkpoints"))
        metric = lambda metrics: metrics[best_metric]  # noqa: E731
        policy = ocp.checkpoint_managers.AnyPreservationPolicy([
            ocp.checkpoint_managers.LatestN(n=keep),
            ocp.checkpoint_managers.BestN(get_metric_fn=metric, reverse=(best_mode == "min"),
                                          n=1, keep_checkpoints_without_metrics=False),
        ])
        # best_fn as well as the policy: without it orbax neither writes a checkpoint's metrics
        # (so a resumed run forgets which one was best) nor answers best_step() with anything
        # but the latest step.
        options = ocp.CheckpointManagerOptions(preservation_policy=policy, best_fn=metric,
                                               best_mode=best_mode, create=True,
                                               enable_async_checkpointing=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state, data_state: dict, metrics: dict | None = None) -> None:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  data=ocp.args.JsonSave(data_state))
        self._manager.save(step, args=args, metrics=metrics, force=True)

    def steps(self) -> list:
        return sorted(self._manager.all_steps())

    def best_step(self):
        return self._manager.best_step()

    def restore(self, abstract_state, step: int | None = None):
        """Restores `step`, or the newest readable checkpoint.

        A checkpoint that fails to load is moved to `corrupt_checkpoints/` (kept, never deleted)
        with a warning, and the next older one is tried. Returns (state, data_state, step), or
        None when there is nothing to restore.
        """
        candidates = [step] if step is not None else self.steps()[::-1]
        for s in candidates:
            args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                      data=ocp.args.JsonRestore())
            try:
                restored = self._manager.restore(s, args=args)
            except Exception as err:  # noqa: BLE001 - any unreadable checkpoint is skipped
                if step is not None:
                    raise ValueError(f"checkpoint {s} in {self.directory} cannot be read "
                                     f"({type(err).__name__}); pick another step") from err
                logging.warning("checkpoint %d is unreadable (%s: %s); moving it to %s and "
                                "trying the previous one", s, type(err).__name__,
                                str(err).splitlines()[0][:200], self._corrupt_dir)
                self._set_aside(s)
                continue
            return restored.state, restored.data, s
        return None

    def _set_aside(self, step: int) -> None:
        if jax.process_index() != 0:  # one mover; the others just skip to the previous step
            return
        os.makedirs(self._corrupt_dir, exist_ok=True)
        source = os.path.join(self.directory, str(step))
        target = os.path.join(self._corrupt_dir, str(step))
        if os.path.exists(target):
            shutil.rmtree(target)
        shutil.move(source, target)
        self._manager.reload()

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
