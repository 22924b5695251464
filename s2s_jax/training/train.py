"""TrainState, the pure jitted train step, and the train-and-evaluate loop.

The loop is restartable at any point: it resumes from the newest readable checkpoint in the
workdir (parameters, optimizer state, step and data-iterator state), keys are folded with the
step, and metrics.jsonl is cut back to the restored step, so a run killed and started again with
the same command ends exactly where an uninterrupted run ends.
"""
import errno
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from s2s_jax import data
from s2s_jax.models import model, sampling
from s2s_jax.training import (checkpoint, evaluation, host_memory, losses, parallel, plots, prng,
                              run_log, workdir_lock)
from s2s_jax.data.datasets import SRC_VOCAB_FILE, TGT_VOCAB_FILE
from s2s_jax.data.vocab import SPECIALS
from s2s_jax.training.run_log import RunLog
from s2s_jax.training.stopping import StopRequest


class TrainState(NamedTuple):
    step: jax.Array  # int32 scalar
    params: dict
    opt_state: tuple


class TrainingError(RuntimeError):
    """The run cannot go on (e.g. a non-finite loss); the message says what was kept."""


def model_config(config, src_vocab: int, tgt_vocab: int) -> model.ModelConfig:
    """The frozen model config from the experiment config's `model` section and the vocabularies
    (ModelConfig.from_experiment reads its spelling: `bridge="attention"` and the rest).

    Raises:
      ValueError: a model the data pipelines cannot feed (auxiliary decoder inputs).
    """
    fields = config.model.to_dict()
    if fields.get("aux_dim", 0):  # ModelConfig takes it; only the Python API can supply them
        raise ValueError(f"model.aux_dim={fields['aux_dim']}, but no data pipeline supplies "
                         f"auxiliary decoder inputs, so the model would train and evaluate "
                         f"without them; set --config.model.aux_dim=0 (the Python API, "
                         f"model.build(...).apply with batch['aux_inputs'], takes them)")
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
_AT_LEAST_ONE = ("batch_size", "steps", "eval_every", "checkpoint_every", "log_every",
                 "keep_checkpoints", "eval_batch_size", "beam_size")


def check_train(t) -> None:
    """Rejects a train section that would run but mean nothing (a negative beam decoding
    greedily, label smoothing past 1), as one-line ValueErrors, before anything is built."""
    for name in _AT_LEAST_ONE:
        if t[name] < 1:
            raise ValueError(f"--config.train.{name} must be at least 1, got {t[name]}")
    if t.get("batch_type", "sentences") not in data.BATCH_TYPES:
        raise ValueError(f"unknown --config.train.batch_type={t.batch_type!r}; choose one of "
                         f"{sorted(data.BATCH_TYPES)}")
    if t.seed < 0:
        raise ValueError(f"--seed must be at least 0 (numpy draws the data order from it), got "
                         f"{t.seed}")
    if not t.learning_rate > 0:
        raise ValueError(f"--learning_rate must be positive, got {t.learning_rate}")
    if t.eval_max_examples < 0:
        raise ValueError(f"--config.train.eval_max_examples must be at least 0 (0: all), got "
                         f"{t.eval_max_examples}")
    if t.warmup_steps < 0 or t.clip_norm < 0:
        raise ValueError(f"--config.train.warmup_steps and clip_norm must be at least 0 (0: no "
                         f"warm-up, no clipping), got {t.warmup_steps} and {t.clip_norm}")
    if not 0 <= t.label_smoothing < 1:
        raise ValueError(f"--config.train.label_smoothing must lie in [0, 1), got "
                         f"{t.label_smoothing}")
    checkpoint.check_best_metric(t.best_metric)


def make_optimizer(t) -> optax.GradientTransformation:
    """Adam with linear warm-up, then cosine decay to 10% of the peak (or constant)."""
    check_train(t)
    warmup = min(t.warmup_steps, max(t.steps - 1, 0))
    if t.decay == "cosine":
        lr = optax.warmup_cosine_decay_schedule(0.0, t.learning_rate, warmup, max(t.steps, warmup + 1),
                                                end_value=0.1 * t.learning_rate)
    elif t.decay == "constant":
        lr = optax.join_schedules([optax.linear_schedule(0.0, t.learning_rate, warmup),
                                   optax.constant_schedule(t.learning_rate)], [warmup])
    else:
        raise ValueError(f"unknown decay {t.decay!r}; choose one of ['constant', 'cosine']")
    parts = [optax.clip_by_global_norm(t.clip_norm)] if t.clip_norm > 0 else []
    return optax.chain(*parts, optax.adam(lr))


def _optimizer_structure(t):
    """The tree structure of the optimizer state `t` builds (on a stand-in parameter tree)."""
    params = {"w": jax.ShapeDtypeStruct((1,), jnp.float32)}
    return jax.tree_util.tree_structure(jax.eval_shape(make_optimizer(t).init, params))


def check_optimizer_resumes(workdir: str, t) -> None:
    """Raises ValueError when `t` builds an optimizer state of another structure than the
    train section in `workdir`'s config.json (e.g. clipping turned on or off).

    Its checkpoints hold that state: they could not restore into the new one, and the run would
    be lost. Other train settings (the learning rate, more steps, a clip_norm of another size)
    keep the structure and may change.
    """
    saved = (run_log.read_config(workdir) or {}).get("train")
    if saved is None:
        return
    old = t.copy_and_resolve_references()
    old.update({k: v for k, v in saved.items() if k in old})  # a field added since: unchanged
    if _optimizer_structure(old) == _optimizer_structure(t):
        return

    def structure_with(name):  # the saved settings with only `name` changed
        one = old.copy_and_resolve_references()
        one[name] = t[name]
        return _optimizer_structure(one)

    changed = [k for k in t if old[k] != t[k]]
    k = ([k for k in changed if structure_with(k) != _optimizer_structure(old)] or changed)[0]
    raise ValueError(f"{workdir} holds a run with train.{k}={old[k]!r}, and this command sets "
                     f"{t[k]!r}, which changes the structure of the optimizer state its "
                     f"checkpoints hold: give a new --workdir, or drop the flag to continue "
                     f"that run")


def make_train_step(net: model.Model, tx, schedule: str, sp: sampling.ScheduleParams,
                    label_smoothing: float = 0.0):
    """The pure train step `(state, batch, rng) -> (state, metrics)`."""

    def train_step(state: TrainState, batch, rng):
        rng = jax.random.fold_in(rng, state.step)  # a resumed run replays the same keys
        # Traced: moving along the schedule never recompiles. A schedule capped at 0 is teacher
        # forcing: a Python 0 tells the decoder when tracing, and it then skips the sampling.
        probability = (0.0 if sp.probability == 0.0
                       else sampling.probability_at(schedule, state.step, sp))

        def loss_fn(params):
            out = net.apply(params, batch, rng, probability, train=True)
            loss = losses.cross_entropy(out.logits, batch["targets"], batch["targets_len"],
                                        label_smoothing)
            return loss, out

        (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": loss,
            "token_accuracy": losses.token_accuracy(out.logits, batch["targets"],
                                                    batch["targets_len"]),
            "sampling_probability": jnp.asarray(probability, jnp.float32),
            "sampled_fraction": out.sampled_fraction,
            "grad_norm": optax.tree.norm(grads),
            "tokens": jnp.sum(batch["targets_len"]),
        }
        return TrainState(state.step + 1, params, opt_state), metrics

    return train_step


def host_params(params):
    """This process's copy of replicated parameters as numpy arrays (for eager decoding)."""
    return jax.tree_util.tree_map(lambda x: np.asarray(x.addressable_data(0)), params)


def init_state(net: model.Model, tx, seed: int) -> TrainState:
    params = net.init(prng.init_key(seed))
    return TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params))


def _read_finite(pending, ckpt: checkpoint.Checkpoints) -> list:
    """Reads pending per-step metrics on the host; raises TrainingError on a non-finite loss."""
    values = jax.device_get([m for _, m in pending])
    for (step, _), m in zip(pending, values):
        if not np.isfinite(m["loss"]):
            raise TrainingError(
                f"the loss became {float(m['loss'])} at step {step}; stopped without saving it. "
                f"Kept checkpoints: {ckpt.steps() or 'none'}. Lower --learning_rate or set "
                f"--config.train.clip_norm, then rerun the same command to resume")
    return [(step, m) for (step, _), m in zip(pending, values)]


def _check_step_memory(train_step, state, batch, rng) -> None:
    """Warns when the step's temporaries are too big for the process's malloc mode to keep.
    Compiling here costs nothing extra: the step's first call reuses this executable."""
    analysis = train_step.lower(state, batch, rng).compile().memory_analysis()
    advice = host_memory.step_block_advice(getattr(analysis, "temp_size_in_bytes", 0))
    if advice:
        logging.warning("%s", advice)


def data_record(iterator_state: dict, window: list) -> dict:
    """What a checkpoint keeps beside the train state: the data iterator's state, and the
    per-step metrics read since the last training row. A run stopped between two rows (SIGTERM
    saves the step in flight) thus writes the next row over the same steps, with the same values,
    as an uninterrupted run."""
    return {"iterator": iterator_state,
            "window": [[step, {k: float(v) for k, v in m.items()}] for step, m in window]}


def from_data_record(record: dict) -> tuple:
    """(iterator state, window) of a checkpoint's data record; a checkpoint saved before the
    record held a window holds the iterator state alone."""
    if set(record) == {"iterator", "window"}:
        return record["iterator"], [(step, m) for step, m in record["window"]]
    return record, []


def _finish(closers, quiet: bool) -> None:
    """Runs the clean-up calls; with `quiet` (an error is on its way out already) a failing one
    is a warning, so that error stays the one line the command prints (a full disk fails the
    TensorBoard flush and the checkpoint wait too)."""
    for close in closers:
        try:
            close()
        except Exception as err:  # noqa: BLE001 - reported, and the first error goes on
            if not quiet:
                raise
            logging.warning("while stopping: %s: %s", type(err).__name__,
                            (str(err).splitlines() or [""])[0][:200])


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains `config` in `workdir` (resuming if it holds checkpoints), then evaluates on test.

    The workdir is locked for the run (workdir_lock); a full disk is a run_log.WriteError
    naming the path, and the checkpoints already complete stay restorable.

    Returns the final test metrics (also printed by run.py as one JSON line), or
    {'stopped_at': step, 'signal': name} after SIGTERM or Ctrl-C.
    """
    run_log.make_workdir(workdir)
    with workdir_lock.WorkdirLock(workdir, enabled=jax.process_index() == 0):
        try:
            return _train_and_evaluate(config, workdir)
        except OSError as err:  # one not raised by a writer that names its own path
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise run_log.write_error(err, err.filename or workdir, "into") from None


def _train_and_evaluate(config, workdir: str) -> dict:
    t = config.train
    run_log.check_resumes(workdir, config)  # before the data writes its vocabularies there
    check_optimizer_resumes(workdir, t)
    mesh = parallel.make_mesh()
    batch_type = t.get("batch_type", "sentences")
    if batch_type == "sentences":  # by tokens, each bucket's rows are a multiple of the devices
        parallel.check_batch_size(t.batch_size)
    else:
        data.check_token_budget(t.batch_size, config.data.max_len,
                                jax.local_device_count() * jax.process_count())
    eval_batch_size = parallel.eval_batch_size(t.eval_batch_size)
    # The rest of the config is checked before the data writes anything: a run refused here
    # must leave no vocabularies behind.
    tx = make_optimizer(t)
    sp = schedule_params(config)
    smallest = len(SPECIALS) + 1  # stand-in vocabularies: the checks do not depend on them
    model.build(model_config(config, smallest, smallest))
    pid, nproc = jax.process_index(), jax.process_count()
    run_log.drop_unvouched(workdir, (SRC_VOCAB_FILE, TGT_VOCAB_FILE))
    ds = data.load_data(config.data, workdir)
    net = model.build(model_config(config, len(ds.src_vocab), len(ds.tgt_vocab)))
    log = RunLog(workdir, enabled=(pid == 0))

    replicated = parallel.replicated(mesh)
    batch_sharding = parallel.batch_sharded(mesh)
    state = jax.jit(lambda: init_state(net, tx, t.seed), out_shardings=replicated)()
    train_step = jax.jit(make_train_step(net, tx, config.sampling.schedule, sp,
                                         t.label_smoothing),
                         in_shardings=(replicated, batch_sharding, replicated),
                         out_shardings=(replicated, replicated), donate_argnums=0)
    eval_step = jax.jit(evaluation.make_eval_step(net, t.beam_size, t.length_penalty,
                                                  t.length_alpha),
                        in_shardings=(replicated, batch_sharding),
                        out_shardings=(replicated, replicated))

    ckpt = checkpoint.Checkpoints(workdir, t.keep_checkpoints, t.best_metric)
    batches = data.train_iterator(ds, t.batch_size, prng.data_seed(t.seed), pid, nproc,
                                  batch_type=batch_type, multiple=jax.local_device_count())
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    try:
        restored = ckpt.restore(abstract)
    except BaseException:
        _finish((ckpt.close, log.close), quiet=True)
        raise
    log.write_config(config)  # after the restore: a checkpoint it refused keeps its config
    start, restored_window = 0, []
    if restored is not None:
        state, record, start = restored
        data_state, restored_window = from_data_record(record)
        batches.set_state(data_state)
        logging.info("resumed from checkpoint %d in %s", start, ckpt.directory)
    log.truncate_after(start)
    log.info(f"{sum(x.size for x in jax.tree_util.tree_leaves(state.params)):,} parameters, "
             f"{jax.device_count()} device(s), {nproc} process(es), steps {start}..{t.steps}")

    rng = prng.train_key(t.seed)
    evaluate = lambda split: evaluation.evaluate(  # noqa: E731
        eval_step, state.params, data.eval_batches(ds, split, eval_batch_size, pid, nproc),
        ds.tgt_vocab, config.data.tokenizer, mesh, t.eval_max_examples)[0]
    stop = StopRequest().install()
    pending = []  # (step, device metrics) not yet read on the host
    window = restored_window  # (step, host metrics) since the last training row
    sync_every = max(1, min(t.log_every, 16))  # a host read at least every 16 steps (STACK_NOTES)
    clock, clock_step = time.time(), start
    failing = False
    try:
        step = start
        while step < t.steps:
            batch = parallel.global_batch(next(batches), mesh)
            first = step == start
            if first and jax.default_backend() == "cpu":
                _check_step_memory(train_step, state, batch, rng)
            state, metrics = train_step(state, batch, rng)
            step += 1
            if first:  # compile time matters on accelerators (tens of seconds there): report it
                jax.block_until_ready(metrics["loss"])
                log.info(f"first step (trace, compile, run) took {time.time() - clock:.1f} s")
            pending.append((step, metrics))
            # The flag is read once: SIGTERM can set it at any moment, and a stop decided after
            # due_ckpt was computed would exit without saving this step.
            stopping = stop.requested
            due_eval = step % t.eval_every == 0 or step == t.steps
            due_ckpt = step % t.checkpoint_every == 0 or step == t.steps or stopping
            due_log = step % t.log_every == 0 or step == t.steps
            if step % sync_every == 0 or due_log or due_eval or due_ckpt:
                window += _read_finite(pending, ckpt)
                pending = []
            if due_log:
                now = time.time()
                log.train_row(step, window, now - clock, step - clock_step, t.steps)
                clock, clock_step, window = now, step, []
            eval_metrics = None
            if due_eval:
                eval_start = time.time()
                eval_metrics = evaluate("valid")
                log.eval_row(step, "valid", eval_metrics)
                clock += time.time() - eval_start  # steps/s and ETA count training time only
            if due_ckpt:
                ckpt.save(step, state, data_record(batches.get_state(), window), eval_metrics)
            if stopping:
                ckpt.wait()
                log.info(f"stopped: saved checkpoint {step}; rerun the same command to resume")
                return {"stopped_at": step, "signal": stop.signal_name}
        ckpt.wait()
        best = ckpt.best_step()
        if best is not None and best != t.steps:
            log.info(f"final step {t.steps}; best validation {t.best_metric} at step {best}")
        test = evaluate("test")
        log.eval_row(t.steps, "test", test)
        if pid == 0:
            first = data.eval_batches(ds, "test", eval_batch_size, pid, nproc)[0]
            plots.write_run_pictures(workdir, net, host_params(state.params), first,
                                     ds.src_vocab, ds.tgt_vocab)
        return {"step": t.steps, **test}
    except BaseException:
        failing = True
        raise
    finally:
        stop.restore()
        _finish((ckpt.wait, ckpt.close, log.close), quiet=failing)
