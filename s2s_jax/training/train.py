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
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from s2s_jax import data
from s2s_jax.data.datasets import SRC_VOCAB_FILE, TGT_VOCAB_FILE
from s2s_jax.data.vocab import SPECIALS
from s2s_jax.models import model, sampling
from s2s_jax.training import (
    checkpoint,
    evaluation,
    loop,
    losses,
    parallel,
    plots,
    prng,
    run_log,
    settings,
    workdir_lock,
)
from s2s_jax.training.run_log import RunLog
from s2s_jax.training.stopping import StopRequest


class TrainState(NamedTuple):
    step: jax.Array  # int32 scalar
    params: dict
    opt_state: tuple


TrainingError = loop.TrainingError  # raised by the loop; cli.py and the seeds program name it here


def make_train_step(
    net: model.Model, tx, schedule: str, sp: sampling.ScheduleParams, label_smoothing: float = 0.0
):
    """The pure train step `(state, batch, rng) -> (state, metrics)`."""

    def train_step(state: TrainState, batch, rng):
        rng = jax.random.fold_in(rng, state.step)  # a resumed run replays the same keys
        # Traced: moving along the schedule never recompiles. A schedule capped at 0 is teacher
        # forcing, stated when tracing: the decoder then skips the sampling altogether.
        teacher_forcing = sp.probability == 0.0
        probability = sampling.probability_at(schedule, state.step, sp)

        def loss_fn(params):
            out = net.apply(
                params, batch, rng, probability, train=True, teacher_forcing=teacher_forcing
            )
            loss = losses.cross_entropy(
                out.logits, batch["targets"], batch["targets_len"], label_smoothing
            )
            return loss, out

        (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": loss,
            "token_accuracy": losses.token_accuracy(
                out.logits, batch["targets"], batch["targets_len"]
            ),
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


def restore(
    ckpt: checkpoint.Checkpoints,
    net: model.Model,
    tx,
    sharding,
    step: int | None = None,
    candidates: list | None = None,
    set_aside: bool = True,
) -> Restored | None:
    """The one restore path of training, the seeds program, eval and predict: the train state
    `net` and `tx` build, placed with `sharding`, from checkpoint `step` or the first readable of
    `candidates` (default: newest first); see checkpoint.Checkpoints.restore.

    Returns:
      The restored state and step with the checkpoint's data record, or None when there is
      nothing to restore.
    """
    shapes = jax.eval_shape(lambda: init_state(net, tx, 0))  # the seed changes no shape
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes
    )
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
        settings.check_optimizer_resumes(workdir, t)
    tx = settings.make_optimizer(t)
    sp = settings.schedule_params(config)
    smallest = len(SPECIALS) + 1  # stand-in vocabularies: the checks do not depend on them
    model.build(settings.model_config(config, smallest, smallest))
    for workdir in workdirs:
        run_log.drop_unvouched(workdir, (SRC_VOCAB_FILE, TGT_VOCAB_FILE))
    ds = data.load_data(config.data, workdirs[0])
    for workdir in workdirs[1:]:  # the vocabularies every workdir holds, so each resumes alone
        for vocab, name in ((ds.src_vocab, SRC_VOCAB_FILE), (ds.tgt_vocab, TGT_VOCAB_FILE)):
            if not os.path.exists(os.path.join(workdir, name)):
                vocab.save(os.path.join(workdir, name))
    net = model.build(settings.model_config(config, len(ds.src_vocab), len(ds.tgt_vocab)))
    return Setup(
        ds, net, tx, make_train_step(net, tx, config.sampling.schedule, sp, t.label_smoothing)
    )


def make_evaluate(config, net: model.Model, ds: data.Data, mesh, batch_size: int) -> Callable:
    """`(params, split) -> metrics` of `split` decoded as config.train says (beam, length
    penalty, examples), the batches sharded over `mesh`."""
    t = config.train
    replicated = parallel.replicated(mesh)
    eval_step = jax.jit(
        evaluation.make_eval_step(net, t.beam_size, t.length_penalty, t.length_alpha),
        in_shardings=(replicated, parallel.batch_sharded(mesh)),
        out_shardings=(replicated, replicated),
    )
    pid, nproc = jax.process_index(), jax.process_count()
    return lambda params, split: evaluation.evaluate(
        eval_step,
        params,
        data.eval_batches(ds, split, batch_size, pid, nproc),
        ds.tgt_vocab,
        config.data.tokenizer,
        mesh,
        t.eval_max_examples,
    )[0]


def write_pictures(workdir: str, net: model.Model, params, ds: data.Data, batch_size: int) -> None:
    """The workdir's PNGs of a trained `params` (process 0 writes them): the learning curves,
    and attention on the first test batch."""
    if jax.process_index() == 0:
        first = data.eval_batches(ds, "test", batch_size, 0, jax.process_count())[0]
        plots.write_run_pictures(
            workdir, net, host_params(params), first, ds.src_vocab, ds.tgt_vocab
        )


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
        data.check_token_budget(
            t.batch_size, config.data.max_len, jax.local_device_count() * jax.process_count()
        )
    eval_batch_size = parallel.eval_batch_size(t.eval_batch_size)
    ds, net, tx, step = set_up(config, [workdir], [config])
    pid, nproc = jax.process_index(), jax.process_count()
    replicated = parallel.replicated(mesh)
    batch_sharding = parallel.batch_sharded(mesh)
    train_step = jax.jit(
        step,
        in_shardings=(replicated, batch_sharding, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    batches = data.train_iterator(
        ds,
        t.batch_size,
        prng.data_seed(t.seed),
        pid,
        nproc,
        batch_type=batch_type,
        multiple=jax.local_device_count(),
    )
    run = loop.Run(
        None,
        RunLog(workdir, enabled=(pid == 0)),
        checkpoint.Checkpoints(workdir, t.keep_checkpoints, t.best_metric),
    )
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
        run.log.info(
            f"{sum(x.size for x in jax.tree_util.tree_leaves(state.params)):,} "
            f"parameters, {jax.device_count()} device(s), {nproc} process(es), steps "
            f"{start}..{t.steps}"
        )
        program = loop.Program(
            step=train_step,
            keys=prng.train_key(t.seed),
            next_batch=lambda: parallel.global_batch(next(batches), mesh),
            data_state=lambda _: batches.get_state(),
            part=lambda tree, _: tree,
            evaluate=make_evaluate(config, net, ds, mesh, eval_batch_size),
        )
        stop = StopRequest().install()
        try:
            (result,), state = loop.train_runs([run], program, state, start, [window], t, stop)
            if "step" in result:
                write_pictures(workdir, net, state.params, ds, eval_batch_size)
            return result
        finally:
            stop.restore()
