"""What a run writes for people and tools: config.json, metrics.jsonl, TensorBoard, progress lines.

Only process 0 writes (`enabled`); the others keep the same calls as no-ops, so the train loop has
no branches on the process index. A write that fails (a full disk) is a one-line WriteError
naming the file and the fix; metrics.jsonl is appended a row at a time, so what a failure or a
kill leaves is at most a torn last line, which the resuming run drops.
"""

import errno
import json
import math
import os
import tempfile

import numpy as np
from absl import logging

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
# What a workdir's run is: its checkpoints hold this model's parameters, its vocabularies and
# data iterator state this data's. train, sampling and the rest may change when it resumes
# (more steps, another learning rate); data.data_dir is only where the prepared data lies, and
# model.precision only how the matmuls of the same float32 parameters are run.
RUN_DEFINING = ("model", "data")
MAY_MOVE = ("data.data_dir", "model.precision")


class WriteError(RuntimeError):
    """The workdir cannot take a file (a full disk, a quota); the message names path and fix."""


def write_error(err: OSError, path: str, what: str) -> WriteError:
    """A one-line WriteError for an OSError raised while writing `what` `path`."""
    reason = err.strerror or str(err) or type(err).__name__
    fix = (
        "free space there (or give a --workdir on another disk)"
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        else "make it writable"
    )
    return WriteError(
        f"cannot write {what} {path} ({reason}); {fix}, then rerun the same "
        f"command: it resumes from the last complete checkpoint"
    )


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def make_workdir(workdir: str) -> None:
    """Creates `workdir` (and its parents) and checks that files can be written there, so a bad
    --workdir stops before any data is prepared or compiled."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"--workdir={workdir} is a file; give a directory path")
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as err:
        raise ValueError(
            f"--workdir={workdir} cannot be created or written "
            f"({err.strerror or err}); give a writable directory path"
        ) from None


def read_config(workdir: str):
    """The config.json of `workdir` as plain JSON data, or None when it has none."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def check_resumes(workdir: str, config) -> None:
    """Raises ValueError when `workdir` holds a run whose model or data differ from `config`'s.

    Otherwise restoring its checkpoints fails on every one, which reads as corruption: each
    would be set aside and training would start again under the old run's name.
    """
    saved = read_config(workdir)
    if saved is None:
        return
    new = json.loads(config.to_json())  # both as JSON, so a tuple equals its saved list
    for section in RUN_DEFINING:
        for name, value in new.get(section, {}).items():
            field = f"{section}.{name}"
            old = saved.get(section, {}).get(name, value)  # a field added since: nothing to say
            if field not in MAY_MOVE and old != value:
                raise ValueError(
                    f"{workdir} holds a run with {field}={old!r}, and this command sets "
                    f"{value!r}; a run resumes only with its own model and data: give a new "
                    f"--workdir, or drop the flag to continue that run"
                )


def drop_unvouched(workdir: str, names) -> None:
    """Removes the files `names` from a workdir that has no config.json.

    A run writes config.json only once its data is loaded, so such files (vocabularies) were
    left by a run that stopped before it; reusing them would encode other data with them.
    """
    if read_config(workdir) is not None:
        return
    for name in names:
        path = os.path.join(workdir, name)
        try:
            os.remove(path)
        except FileNotFoundError:  # or another process of this run removed it first
            continue
        logging.info("removed %s: a run that stopped before writing %s left it", path, CONFIG_FILE)


def parse_metrics(path: str, lines: list) -> list:
    """Rows of metrics.jsonl `lines`; a torn last line (a kill or a full disk while it was
    written) is dropped with a warning: it is the row a resumed run writes again.

    Raises:
      ValueError: a line before the last does not parse.
    """
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):
                logging.warning("%s:%d is a torn last row (%s); dropping it", path, number, err)
                break
            raise ValueError(
                f"{path}:{number} is not a JSON row ({err}); delete that line (or "
                f"the file, to keep only the checkpoints' record) and rerun"
            ) from None
    return rows


class RunLog:
    def __init__(self, workdir: str, enabled: bool = True):
        self.workdir = workdir
        self.enabled = enabled
        self._tb = None
        if enabled:
            os.makedirs(workdir, exist_ok=True)
            from tensorboardX import SummaryWriter  # imported late: it is slow and optional

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    @property
    def metrics_path(self) -> str:
        return os.path.join(self.workdir, METRICS_FILE)

    def write_config(self, config) -> None:
        if not self.enabled:
            return
        path = os.path.join(self.workdir, CONFIG_FILE)
        tmp = path + ".tmp"
        try:  # a full disk leaves the old config.json whole, never a truncated one
            with open(tmp, "w") as f:
                f.write(config.to_json(indent=2, sort_keys=True) + "\n")
            os.replace(tmp, path)
        except OSError as err:
            raise write_error(err, path, "the run's config") from None

    def truncate_after(self, step: int) -> None:
        """Drops rows past `step`, and a torn last row: a resumed run rewrites them, so none
        appear twice."""
        if not self.enabled or not os.path.exists(self.metrics_path):
            return
        with open(self.metrics_path) as f:
            lines = f.readlines()
        rows = parse_metrics(self.metrics_path, lines)
        kept = [json.dumps(r) + "\n" for r in rows if r["step"] <= step]
        whole = not lines or lines[-1].endswith("\n")  # else the next row would join it
        if len(kept) != len([line for line in lines if line.strip()]) or not whole:
            tmp = self.metrics_path + ".tmp"
            try:
                with open(tmp, "w") as f:
                    f.writelines(kept)
                os.replace(tmp, self.metrics_path)
            except OSError as err:
                raise write_error(err, self.metrics_path, "metrics to") from None

    def _append(self, row: dict) -> None:
        try:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")
        except OSError as err:
            raise write_error(err, self.metrics_path, "metrics to") from None
        for key, value in row.items():
            if key not in ("step", "split") and isinstance(value, (int, float)):
                tag = f"{row.get('split', 'train')}/{key}"
                self._tb.add_scalar(tag, value, row["step"])

    def train_row(
        self, step: int, pending: list, seconds: float, steps_done: int, total_steps: int
    ) -> None:
        """Averages the pending per-step metrics into one row and prints a progress line."""
        if not self.enabled:
            return
        values = {k: np.mean([float(m[k]) for _, m in pending]) for k in pending[-1][1]}
        tokens = sum(float(m["tokens"]) for _, m in pending)
        rate = steps_done / seconds if seconds > 0 else math.nan
        row = {
            "step": step,
            "loss": float(values["loss"]),
            "token_accuracy": float(values["token_accuracy"]),
            "sampling_probability": float(values["sampling_probability"]),
            "sampled_fraction": float(values["sampled_fraction"]),
            "grad_norm": float(values["grad_norm"]),
            "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        }
        self._append(row)
        eta = (total_steps - step) / rate if rate > 0 else math.nan
        logging.info(
            "step %d/%d loss %.4f acc %.3f p %.3f | %.1f steps/s %.0f tok/s ETA %s",
            step,
            total_steps,
            row["loss"],
            row["token_accuracy"],
            row["sampling_probability"],
            rate,
            row["tokens_per_s"],
            _fmt_duration(eta) if math.isfinite(eta) else "?",
        )

    def eval_row(self, step: int, split: str, metrics: dict) -> None:
        if not self.enabled:
            return
        self._append({"step": step, "split": split, **metrics})
        logging.info(
            "eval %s at step %d: %s",
            split,
            step,
            " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float)),
        )

    def info(self, message: str) -> None:
        if self.enabled:
            logging.info("%s", message)

    def close(self) -> None:
        if self._tb is not None:
            tb, self._tb = self._tb, None  # closed once, even when the flush fails
            try:
                tb.close()
            except OSError as err:
                raise write_error(
                    err, os.path.join(self.workdir, "tensorboard"), "TensorBoard events to"
                ) from None


class _LibraryInfoFilter:
    """Drops INFO records from libraries (orbax logs every checkpoint step in detail), and
    orbax's warning that a checkpoint has no metrics: one saved between two evaluations has
    none, by design."""

    def filter(self, record) -> bool:
        if "/orbax/" in record.pathname and "did not provide metrics" in record.getMessage():
            return False
        noisy = ("/orbax/", "/tensorflow_datasets/", "/grain/", "/etils/")
        return record.levelno >= 30 or not any(p in record.pathname for p in noisy)


def quiet_libraries() -> None:
    logging.get_absl_handler().addFilter(_LibraryInfoFilter())
