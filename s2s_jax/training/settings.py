"""A config's sections read and checked: the ModelConfig, the schedule, the optimizer, and the
train settings a resumed run may not change (those that change the optimizer state's structure).
"""

import jax
import jax.numpy as jnp
import optax
from absl import logging

from s2s_jax import data
from s2s_jax.models import model, sampling
from s2s_jax.training import checkpoint, run_log


def model_config(config, src_vocab: int, tgt_vocab: int) -> model.ModelConfig:
    """The frozen model config from the experiment config's `model` section and the vocabularies
    (ModelConfig.from_experiment reads its spelling: `bridge="attention"` and the rest).

    Raises:
      ValueError: a model the data pipelines cannot feed (auxiliary decoder inputs).
    """
    fields = config.model.to_dict()
    if fields.get("aux_dim", 0):  # ModelConfig takes it; only the Python API can supply them
        raise ValueError(
            f"model.aux_dim={fields['aux_dim']}, but no data pipeline supplies "
            f"auxiliary decoder inputs, so the model would train and evaluate "
            f"without them; set --config.model.aux_dim=0 (the Python API, "
            f"model.build(...).apply with batch['aux_inputs'], takes them)"
        )
    return model.ModelConfig.from_experiment(src_vocab=src_vocab, tgt_vocab=tgt_vocab, **fields)


def schedule_params(config) -> sampling.ScheduleParams:
    """The checked schedule parameters; warns (one line) when the schedule never moves in
    config.train.steps, which a run would otherwise spend without saying so."""
    s = config.sampling
    sp = sampling.ScheduleParams(**{f: s[f] for f in sampling.ScheduleParams._fields})
    sampling.check_schedule(s.schedule, sp)
    warning = sampling.flat_schedule_warning(s.schedule, sp, config.train.steps)
    if warning:
        logging.warning("%s", warning)
    return sp


# Train-section fields that count something (steps, examples, checkpoints, beams).
_AT_LEAST_ONE = (
    "batch_size",
    "steps",
    "eval_every",
    "checkpoint_every",
    "log_every",
    "keep_checkpoints",
    "eval_batch_size",
    "beam_size",
)


def check_train(t) -> None:
    """Rejects a train section that would run but mean nothing (a negative beam decoding
    greedily, label smoothing past 1), as one-line ValueErrors, before anything is built."""
    for name in _AT_LEAST_ONE:
        if t[name] < 1:
            raise ValueError(f"--config.train.{name} must be at least 1, got {t[name]}")
    if t.get("batch_type", "sentences") not in data.BATCH_TYPES:
        raise ValueError(
            f"unknown --config.train.batch_type={t.batch_type!r}; choose one of "
            f"{sorted(data.BATCH_TYPES)}"
        )
    if t.seed < 0:
        raise ValueError(
            f"--seed must be at least 0 (numpy draws the data order from it), got {t.seed}"
        )
    if not t.learning_rate > 0:
        raise ValueError(f"--learning_rate must be positive, got {t.learning_rate}")
    if t.eval_max_examples < 0:
        raise ValueError(
            f"--config.train.eval_max_examples must be at least 0 (0: all), got "
            f"{t.eval_max_examples}"
        )
    if t.warmup_steps < 0 or t.clip_norm < 0:
        raise ValueError(
            f"--config.train.warmup_steps and clip_norm must be at least 0 (0: no "
            f"warm-up, no clipping), got {t.warmup_steps} and {t.clip_norm}"
        )
    if not 0 <= t.label_smoothing < 1:
        raise ValueError(
            f"--config.train.label_smoothing must lie in [0, 1), got {t.label_smoothing}"
        )
    checkpoint.check_best_metric(t.best_metric)


def make_optimizer(t) -> optax.GradientTransformation:
    """Adam with linear warm-up, then cosine decay to 10% of the peak (or constant)."""
    check_train(t)
    warmup = min(t.warmup_steps, max(t.steps - 1, 0))
    if t.decay == "cosine":
        lr = optax.warmup_cosine_decay_schedule(
            0.0, t.learning_rate, warmup, max(t.steps, warmup + 1), end_value=0.1 * t.learning_rate
        )
    elif t.decay == "constant":
        lr = optax.join_schedules(
            [
                optax.linear_schedule(0.0, t.learning_rate, warmup),
                optax.constant_schedule(t.learning_rate),
            ],
            [warmup],
        )
    else:
        raise ValueError(f"unknown decay {t.decay!r}; choose one of ['constant', 'cosine']")
    parts = [optax.clip_by_global_norm(t.clip_norm)] if t.clip_norm > 0 else []
    return optax.chain(*parts, optax.adam(lr))


def _optimizer_structure(t):
    """The tree structure of the optimizer state `t` builds (on a stand-in parameter tree)."""
    params = {"w": jax.ShapeDtypeStruct((1,), jnp.float32)}
    return jax.tree_util.tree_structure(jax.eval_shape(make_optimizer(t).init, params))


def saved_train(workdir: str, t):
    """The train section `workdir`'s run was built with (its config.json's, with fields added
    since taken from `t`), or None when the workdir holds no run."""
    saved = (run_log.read_config(workdir) or {}).get("train")
    if saved is None:
        return None
    old = t.copy_and_resolve_references()
    old.update({k: v for k, v in saved.items() if k in old})
    return old


def check_optimizer_resumes(workdir: str, t) -> None:
    """Raises ValueError when `t` builds an optimizer state of another structure than the
    train section in `workdir`'s config.json (e.g. clipping turned on or off).

    Its checkpoints hold that state: they could not restore into the new one, and the run would
    be lost. Other train settings (the learning rate, more steps, a clip_norm of another size)
    keep the structure and may change.
    """
    old = saved_train(workdir, t)
    if old is None or _optimizer_structure(old) == _optimizer_structure(t):
        return

    def structure_with(name):  # the saved settings with only `name` changed
        one = old.copy_and_resolve_references()
        one[name] = t[name]
        return _optimizer_structure(one)

    changed = [k for k in t if old[k] != t[k]]
    k = ([k for k in changed if structure_with(k) != _optimizer_structure(old)] or changed)[0]
    raise ValueError(
        f"{workdir} holds a run with train.{k}={old[k]!r}, and this command sets "
        f"{t[k]!r}, which changes the structure of the optimizer state its "
        f"checkpoints hold: give a new --workdir, or drop the flag to continue "
        f"that run"
    )
