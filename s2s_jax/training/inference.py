"""Using a trained workdir: restore its best (or latest) checkpoint, evaluate, predict.

The workdir's own `config.json` and vocabularies describe the model, so `--mode=eval` and
`--mode=predict` need nothing but `--workdir`; run.py applies the command's other flags on top
(decoding flags such as `--beam_size`), and rejects those that would change the model.

They use the best readable checkpoint: a damaged one is skipped (and left where it is) for the
next best, with a warning naming both; `--checkpoint_step` picks one.
"""

import os
import sys

import jax
import ml_collections
from absl import logging

from s2s_jax import data
from s2s_jax.data import datasets
from s2s_jax.models import model
from s2s_jax.training import (
    checkpoint,
    evaluation,
    parallel,
    run_log,
    settings,
    train,
    workdir_lock,
)


def load_config(workdir: str) -> ml_collections.ConfigDict:
    saved = run_log.read_config(workdir)
    if saved is None:
        path = os.path.join(workdir, run_log.CONFIG_FILE)
        raise ValueError(
            f"{path} does not exist: --workdir must be a trained run directory "
            f"(train one with: python run.py --workdir={workdir})"
        )
    return ml_collections.ConfigDict(saved)


def _vocabs(workdir: str):
    paths = [os.path.join(workdir, f) for f in (datasets.SRC_VOCAB_FILE, datasets.TGT_VOCAB_FILE)]
    for p in paths:
        if not os.path.exists(p):
            raise ValueError(f"{p} is missing: the workdir holds no trained vocabulary")
    return data.Vocab.load(paths[0]), data.Vocab.load(paths[1])


def restore(config, workdir: str, mesh, step: int | None = None):
    """(model, replicated params, step) from checkpoint `step`, or else the best readable one
    (by validation train.best_metric; the latest when none has metrics)."""
    src_vocab, tgt_vocab = _vocabs(workdir)
    net = model.build(settings.model_config(config, len(src_vocab), len(tgt_vocab)))
    # The optimizer state of the checkpoints is the one their run built: an optimizer flag on
    # this command (which decoding never uses) must not make them look unreadable.
    load_config(workdir)  # a workdir that holds no run: its one-line error
    tx = settings.make_optimizer(settings.saved_train(workdir, config.train))
    t = config.train
    ckpt = checkpoint.Checkpoints(workdir, t.keep_checkpoints, t.best_metric)
    try:
        ranked = ckpt.ranked_steps()
        restored = train.restore(
            ckpt, net, tx, parallel.replicated(mesh), step, candidates=ranked, set_aside=False
        )
    finally:
        ckpt.close()
    if restored is None:
        what = "no readable checkpoint" if ranked else "no checkpoint"
        raise ValueError(
            f"{what} in {ckpt.directory}; train first: python run.py --workdir={workdir}"
        )
    if step is None and restored.step != ranked[0]:
        logging.warning(
            "using checkpoint %d instead of the best one, %d, which cannot be read "
            "(--checkpoint_step picks another)",
            restored.step,
            ranked[0],
        )
    logging.info("restored checkpoint %d from %s", restored.step, ckpt.directory)
    return net, restored.state.params, restored.step


def evaluate_workdir(config, workdir: str, step: int | None = None) -> dict:
    """Test-split metrics of checkpoint `step` or the best readable one (`--mode=eval`); writes
    the pictures too, so it holds the workdir's lock (workdir_lock)."""
    load_config(workdir)  # a workdir that holds no run: that message, not one about a lock
    with workdir_lock.WorkdirLock(workdir, enabled=jax.process_index() == 0):
        return _evaluate_workdir(config, workdir, step)


def _evaluate_workdir(config, workdir: str, step: int | None) -> dict:
    mesh = parallel.make_mesh()
    t = config.train
    eval_batch_size = parallel.eval_batch_size(t.eval_batch_size)
    net, params, step = restore(config, workdir, mesh, step)
    ds = data.load_data(config.data, workdir)
    metrics = train.make_evaluate(config, net, ds, mesh, eval_batch_size)(params, "test")
    train.write_pictures(workdir, net, params, ds, eval_batch_size)
    return {"step": step, "split": "test", "beam_size": t.beam_size, **metrics}


def _read_lines(path: str) -> list:
    """Source lines, split on "\n" only, as the training reader splits them (bytes.splitlines
    also splits on a lone "\r", str.splitlines on form feeds and other separators too, and the
    hypotheses would stop lining up with the sources); a "\r" before the "\n" is dropped.
    Undecodable bytes are replaced (with a warning naming the line)."""
    raw = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    pieces = raw.split(b"\n")
    if pieces[-1] == b"":  # the last line's newline ends it, it does not start another
        pieces.pop()
    lines = []
    for number, line in enumerate((p.removesuffix(b"\r") for p in pieces), 1):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            logging.warning("%s:%d is not valid UTF-8; bad bytes replaced", path, number)
            lines.append(line.decode("utf-8", errors="replace"))
    return lines


def predict(
    config, workdir: str, input_path: str, output_path: str, nbest: int = 1, step: int | None = None
) -> dict:
    """Decodes every source line of `input_path` into `output_path` (`--mode=predict`).

    One hypothesis a line, or with `nbest > 1` the lines `INDEX<TAB>HYPOTHESIS<TAB>SCORE`, best
    first. An empty input line gives an empty hypothesis; unknown tokens read as unk; a line
    longer than max_len is cut (with a warning) rather than stopping the others.
    """
    if input_path != "-" and not os.path.isfile(input_path):
        what = "is a directory" if os.path.isdir(input_path) else "does not exist"
        raise ValueError(f"--input={input_path} {what}; give a file or '-' for stdin")
    if output_path != "-":  # checked before decoding, which may take long
        if os.path.isdir(output_path):
            raise ValueError(
                f"--output={output_path} is a directory; give a file path or '-' for stdout"
            )
        os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    t = config.train
    beam_size = max(t.beam_size, nbest)
    mesh = parallel.make_mesh()
    net, params, _ = restore(config, workdir, mesh, step)
    src_vocab, tgt_vocab = _vocabs(workdir)
    lines = _read_lines(input_path)
    max_len, tokenizer = config.data.max_len, config.data.tokenizer
    for number, line in enumerate(lines, 1):
        if len(data.tokenize(line, tokenizer)) > max_len:
            logging.warning(
                "%s:%d has more than %d tokens; only the first %d are read",
                input_path,
                number,
                max_len,
                max_len,
            )
    steps = max_len + 1
    buckets = data.shape_buckets(config.data.get("buckets", ""), max_len)  # one compile each
    params = train.host_params(params)
    if beam_size == 1:  # greedy, as evaluation decodes: through the input path training fed
        decode = jax.jit(
            lambda p, x, n: (
                jax.numpy.argmax(net.decode_greedy(p, x, n, steps).logits, -1)[
                    :, None
                ],  # [B, 1, T]
                jax.numpy.zeros((x.shape[0], 1)),
            )
        )  # no score is written for one hypothesis
    else:
        decode = jax.jit(
            lambda p, x, n: net.decode_beam(
                p, x, n, steps, beam_size, t.length_penalty, t.length_alpha
            )
        )
    chunk = t.eval_batch_size
    results = []
    for start in range(0, len(lines), chunk):
        part = lines[start : start + chunk]
        enc = data.encode_batch(
            src_vocab, part + [""] * (chunk - len(part)), tokenizer, max_len, buckets
        )
        tokens, scores = jax.device_get(decode(params, enc["inputs"], enc["inputs_len"]))
        for row in range(len(part)):
            empty = enc["inputs_len"][row] == 0
            hyps = [
                (
                    "" if empty else evaluation.detokenize(tgt_vocab, tokens[row, k], tokenizer),
                    float(scores[row, k]),
                )
                for k in range(nbest)
            ]
            results.append(hyps)
    out = sys.stdout if output_path == "-" else open(output_path, "w", encoding="utf-8")
    try:
        for index, hyps in enumerate(results):
            if nbest == 1:
                out.write(hyps[0][0] + "\n")
            else:
                out.writelines(f"{index}\t{h}\t{s:.4f}\n" for h, s in hyps)
    finally:
        if out is not sys.stdout:
            out.close()
    return {"lines": len(lines), "output": output_path, "beam_size": beam_size}
