"""TrainState, the pure train step, the one restore path, and the ordinary run (train_and_evaluate).

A run is restartable at any point: it resumes from the newest readable checkpoint in the
workdir (parameters, optimizer state, step and data-iterator state), keys are folded with the
step, and metrics.jsonl is cut back to the restored step, so a run killed and started again with
the same command ends exactly where an uninterrupted run ends. The loop itself is loop.py's,
shared with the multi-seed program (studies/multiseed.py), which also uses `set_up`, `restore`
and `make_evaluate`; eval and predict (inference.py) restore through `restore` too.
"""
import errno
import os
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from s2s_jax import data
from s2s_jax.models import model, sampling
from s2s_jax.training import (checkpoint, evaluation, losses, loop, parallel, plots, prng,
                              run_log, workdir_lock)
from s2s_jax.data.datasets import SRC_VOCAB_FILE, TGT_VOCAB_FILE
from s2s_jax.data.vocab import SPECIALS
from s2s_jax.training.run_log import RunLog
from s2s_jax.training.stopping import StopRequest


class TrainState(NamedTuple):
    step: jax.Array  # int32 scalar
    params: dict
    opt_state: tuple


TrainingError = loop.TrainingError  # raised by the loop; cli.py and the seeds program name it here


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
        lr = optax.warmup_cosine_decay_schedule(0.0, t.learning_rate, warmup,
                                                max(t.steps, warmup + 1),
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
        # forcing, stated when tracing: the decoder then skips the sampling altogether.
        teacher_forcing = sp.probability == 0.0
        probability = sampling.probability_at(schedule, state.step, sp)

        def loss_fn(params):
            out = net.apply(params, batch, rng, probability, train=True,
                            teacher_forcing=teacher_forcing)
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


class Restored(NamedTuple):
    state: TrainState
    step: int
    iterator: dict  # the data iterator's state
    window: list  # (step, host metrics) since the last training row


def restore(ckpt: checkpoint.Checkpoints, net: model.Model, tx, sharding, step: int | None = None,
            candidates: list | None = None, set_aside: bool = True) -> Restored | None:
    """The one restore path of training, the seeds program, eval and predict: the train state
    `net` and `tx` build, placed with `sharding`, from checkpoint `step` or the first readable of
    `candidates` (default: newest first); see checkpoint.Checkpoints.restore.

    Returns:
      The restored state and step with the checkpoint's data record, or None when there is
      nothing to restore.
    """
    shapes = jax.eval_shape(lambda: init_state(net, tx, 0))  # the seed changes no shape
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)
    restored = ckpt.restore(abstract, step, candidates=candidates, set_aside=set_aside)
    if restored is None:
        return None
    state, record, got = restored
    return Restored(state, got, *loop.from_data_record(record))


class Setup(NamedTuple):
    ds: data.Data
    net: model.Model
    tx: optax.GradientTransformation
    step: Callable  # the pure train step, not jitted


def set_up(config, workdirs: list, configs: list) -> Setup:
    """What the ordinary run and the seeds program share before their loop: checks that each
    of `workdirs` can resume its run `configs[i]` and that `config` is whole, before the data
    writes anything (a refused run leaves no vocabularies behind), then the data, loaded into
    workdirs[0] with its vocabularies copied to the others, the model and the train step."""
    t = config.train
    for workdir, c in zip(workdirs, configs):
        run_log.check_resumes(workdir, c)
        check_optimizer_resumes(workdir, t)
    tx = make_optimizer(t)
    sp = schedule_params(config)
    smallest = len(SPECIALS) + 1  # stand-in vocabularies: the checks do not depend on them
    model.build(model_config(config, smallest, smallest))
    for workdir in workdirs:
        run_log.drop_unvouched(workdir, (SRC_VOCAB_FILE, TGT_VOCAB_FILE))
    ds = data.load_data(config.data, workdirs[0])
    for workdir in workdirs[1:]:  # the vocabularies every workdir holds, so each resumes alone
        for vocab, name in ((ds.src_vocab, SRC_VOCAB_FILE), (ds.tgt_vocab, TGT_VOCAB_FILE)):
            if not os.path.exists(os.path.join(workdir, name)):
                vocab.save(os.path.join(workdir, name))
    net = model.build(model_config(config, len(ds.src_vocab), len(ds.tgt_vocab)))
    return Setup(ds, net, tx, make_train_step(net, tx, config.sampling.schedule, sp,
                                              t.label_smoothing))


def make_evaluate(config, net: model.Model, ds: data.Data, mesh, batch_size: int) -> Callable:
    """`(params, split) -> metrics` of `split` decoded as config.train says (beam, length
    penalty, examples), the batches sharded over `mesh`."""
    t = config.train
    replicated = parallel.replicated(mesh)
    eval_step = jax.jit(evaluation.make_eval_step(net, t.beam_size, t.length_penalty,
                                                  t.length_alpha),
                        in_shardings=(replicated, parallel.batch_sharded(mesh)),
                        out_shardings=(replicated, replicated))
    pid, nproc = jax.process_index(), jax.process_count()
    return lambda params, split: evaluation.evaluate(
        eval_step, params, data.eval_batches(ds, split, batch_size, pid, nproc), ds.tgt_vocab,
        config.data.tokenizer, mesh, t.eval_max_examples)[0]


def write_pictures(workdir: str, net: model.Model, params, ds: data.Data,
                   batch_size: int) -> None:
    """The workdir's PNGs of a trained `params` (process 0 writes them): the learning curves,
    and attention on the first test batch."""
    if jax.process_index() == 0:
        first = data.eval_batches(ds, "test", batch_size, 0, jax.process_count())[0]
        plots.write_run_pictures(workdir, net, host_params(params), first, ds.src_vocab,
                                 ds.tgt_vocab)


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
    mesh = parallel.make_mesh()
    batch_type = t.get("batch_type", "sentences")
    if batch_type == "sentences":  # by tokens, each bucket's rows are a multiple of the devices
        parallel.check_batch_size(t.batch_size)
    else:
        data.check_token_budget(t.batch_size, config.data.max_len,
                                jax.local_device_count() * jax.process_count())
    eval_batch_size = parallel.eval_batch_size(t.eval_batch_size)
    ds, net, tx, step = set_up(config, [workdir], [config])
    pid, nproc = jax.process_index(), jax.process_count()
    replicated = parallel.replicated(mesh)
    batch_sharding = parallel.batch_sharded(mesh)
    train_step = jax.jit(step, in_shardings=(replicated, batch_sharding, replicated),
                         out_shardings=(replicated, replicated), donate_argnums=0)
    batches = data.train_iterator(ds, t.batch_size, prng.data_seed(t.seed), pid, nproc,
                                  batch_type=batch_type, multiple=jax.local_device_count())
    run = loop.Run(None, RunLog(workdir, enabled=(pid == 0)),
                   checkpoint.Checkpoints(workdir, t.keep_checkpoints, t.best_metric))
    with loop.closing([run]):
        restored = restore(run.ckpt, net, tx, replicated)
        run.log.write_config(config)  # after the restore: a checkpoint it refused keeps its config
        if restored is None:
            state = jax.jit(lambda: init_state(net, tx, t.seed), out_shardings=replicated)()
            start, window = 0, []
        else:
            state, start, data_state, window = restored
            batches.set_state(data_state)
            logging.info("resumed from checkpoint %d in %s", start, run.ckpt.directory)
        run.log.info(f"{sum(x.size for x in jax.tree_util.tree_leaves(state.params)):,} "
                     f"parameters, {jax.device_count()} device(s), {nproc} process(es), steps "
                     f"{start}..{t.steps}")
        program = loop.Program(
            step=train_step, keys=prng.train_key(t.seed),
            next_batch=lambda: parallel.global_batch(next(batches), mesh),
            data_state=lambda _: batches.get_state(), part=lambda tree, _: tree,
            evaluate=make_evaluate(config, net, ds, mesh, eval_batch_size))
        stop = StopRequest().install()
        try:
            (result,), state = loop.train_runs([run], program, state, start, [window], t, stop)
            if "step" in result:
                write_pictures(workdir, net, state.params, ds, eval_batch_size)
            return result
        finally:
            stop.restore()
