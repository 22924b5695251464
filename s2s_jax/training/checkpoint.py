"""Checkpoints with orbax: keep the latest N and the best, resume, skip a corrupted latest.

A checkpoint holds the train state (parameters, optimizer state, step) and the data iterator's
state, so a resumed run sees exactly the batches it would have seen.

A checkpoint that cannot be read is one of two things, told apart before restoring: damaged
(its files are missing or do not parse), which is set aside and skipped, or whole but of another
shape than the state this config builds (other optimizer settings, another model), which is an
error that touches nothing: setting it aside would throw the run away.
"""

import os
import shutil

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from s2s_jax.training.run_log import write_error

# Validation metrics that can pick the best checkpoint, and which way is better.
BEST_MODES = {
    "exact_match": "max",
    "token_accuracy": "max",
    "free_token_accuracy": "max",
    "bleu": "max",
    "loss": "min",
    "perplexity": "min",
}


class StateMismatch(ValueError):
    """A readable checkpoint holds a train state of another structure than the one restored."""


def _leaf_shapes(tree) -> dict:
    """{'opt_state.1.0.mu.w': shape} for a pytree of arrays, orbax's metadata tree or a state:
    the same names for both, since orbax saves NamedTuples as dicts and tuples as lists."""

    def name(key):
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                return str(getattr(key, attr))
        return str(key)

    return {
        ".".join(name(k) for k in path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def check_best_metric(best_metric: str) -> None:
    if best_metric not in BEST_MODES:
        raise ValueError(
            f"unknown --config.train.best_metric {best_metric!r}; choose one of "
            f"{sorted(BEST_MODES)}"
        )


class Checkpoints:
    """A thin wrapper over `ocp.CheckpointManager` for the train loop."""

    def __init__(self, workdir: str, keep: int, best_metric: str):
        check_best_metric(best_metric)  # not at the first save, after the first evaluation
        best_mode = BEST_MODES[best_metric]
        self._best_metric, self._best_mode = best_metric, best_mode
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self._corrupt_dir = os.path.abspath(os.path.join(workdir, "corrupt_checkpoints"))
        metric = lambda metrics: metrics[best_metric]  # noqa: E731
        policy = ocp.checkpoint_managers.AnyPreservationPolicy(
            [
                ocp.checkpoint_managers.LatestN(n=keep),
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=metric,
                    reverse=(best_mode == "min"),
                    n=1,
                    keep_checkpoints_without_metrics=False,
                ),
            ]
        )
        # best_fn as well as the policy: without it orbax neither writes a checkpoint's metrics
        # (so a resumed run forgets which one was best) nor answers best_step() with anything
        # but the latest step.
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy,
            best_fn=metric,
            best_mode=best_mode,
            create=True,
            enable_async_checkpointing=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state, data_state: dict, metrics: dict | None = None) -> None:
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
        )
        try:  # an asynchronous save that failed raises here, at the next one, or in wait()
            self._manager.save(step, args=args, metrics=metrics, force=True)
        except OSError as err:
            raise write_error(err, self.directory, "checkpoints to") from None

    def steps(self) -> list:
        return sorted(self._manager.all_steps())

    def best_step(self):
        return self._manager.best_step()

    def ranked_steps(self) -> list:
        """Every step, best first: the best one, those with validation metrics from better to
        worse (ties: the newer first), then those without metrics, newest first."""
        scored, unscored = [], []
        for s in self.steps():
            try:
                metrics = self._manager.metrics(s)
            except Exception:  # noqa: BLE001 - damaged metrics rank a step as having none
                metrics = None
            value = metrics.get(self._best_metric) if isinstance(metrics, dict) else None
            (unscored if value is None else scored).append((value, s))
        worst_first = sorted(scored, reverse=(self._best_mode == "min"))
        ranked = [s for _, s in worst_first[::-1]] + [s for _, s in sorted(unscored)[::-1]]
        best = self.best_step()
        return ([best] if best in ranked else []) + [s for s in ranked if s != best]

    def _check_structure(self, step: int, abstract_state) -> None:
        """Raises StateMismatch when checkpoint `step` is whole but holds another state tree;
        any other failure (its metadata unreadable) propagates, and reads as damage."""
        # The handler, not the manager: a manager that has not saved yet knows no item types.
        handler = ocp.StandardCheckpointHandler()
        try:
            saved = _leaf_shapes(
                handler.metadata(epath.Path(self.directory) / str(step) / "state").tree
            )
        finally:
            handler.close()
        wanted = _leaf_shapes(abstract_state)
        if saved != wanted:
            differ = sorted(set(saved.items()) ^ set(wanted.items()))
            raise StateMismatch(
                f"checkpoint {step} in {self.directory} holds a train state of another "
                f"structure than this config builds ({len(differ)} arrays differ, e.g. "
                f"{differ[0][0]}): it was written with other optimizer or model settings; use "
                f"the run's own settings (its config.json), or give a new --workdir"
            )

    def restore(
        self,
        abstract_state,
        step: int | None = None,
        candidates: list | None = None,
        set_aside: bool = True,
    ):
        """Restores `step`, or the first readable checkpoint of `candidates` (default: newest
        first).

        A damaged checkpoint is skipped with a warning naming it, and with `set_aside` moved to
        `corrupt_checkpoints/` (kept, never deleted). A whole checkpoint of another state
        structure raises StateMismatch and stays where it is.

        Returns:
          (state, data_state, step), or None when there is nothing to restore.

        Raises:
          ValueError: `step` does not exist or is damaged; StateMismatch.
        """
        if step is not None and step not in self.steps():
            raise ValueError(
                f"no checkpoint {step} in {self.directory}; choose one of {self.steps()}"
            )
        if step is not None:
            candidates = [step]
        elif candidates is None:
            candidates = self.steps()[::-1]
        for s in candidates:
            args = ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
            )
            try:
                self._check_structure(s, abstract_state)
                restored = self._manager.restore(s, args=args)
            except StateMismatch:
                raise
            except Exception as err:  # noqa: BLE001 - any other unreadable checkpoint is damaged
                first_line = str(err).splitlines()[0][:200] if str(err) else ""
                reason = f"{type(err).__name__}: {first_line}"
                if step is not None:
                    raise ValueError(
                        f"checkpoint {s} in {self.directory} cannot be read "
                        f"({reason}); pick another --checkpoint_step of "
                        f"{[c for c in self.steps() if c != s]}"
                    ) from None
                logging.warning(
                    "checkpoint %d is unreadable (%s); %s",
                    s,
                    reason,
                    f"moving it to {self._corrupt_dir} and trying the next one"
                    if set_aside
                    else "trying the next one",
                )
                if set_aside:
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
        try:
            self._manager.wait_until_finished()
        except OSError as err:
            raise write_error(err, self.directory, "checkpoints to") from None

    def close(self) -> None:
        self._manager.close()
