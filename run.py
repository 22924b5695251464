"""s2s_jax command line: flags -> config -> train.train_and_evaluate(config, workdir).

  python run.py                                  # default experiment, embedded reverse task
  python run.py --bridge=dense --steps=1000 --workdir=runs/dense
  python run.py --config=experiments/default.py:tiny --config.model.hidden=32

Alias flags (--bridge, --steps, ...) overwrite fields of the --config file; `config.json` in the
workdir records the result. Bad input ends with one line on stderr and exit status 2; a run
stopped by SIGTERM or Ctrl-C (checkpointed, resumable) exits 143 or 130
(s2s_jax/training/stopping.py).
"""

import json
import os

from absl import flags
from ml_collections import config_flags

from s2s_jax import cli
from s2s_jax.models import attention, bridges, cells, model, precision, sampling
from s2s_jax.training import stopping

_HERE = os.path.dirname(os.path.abspath(__file__))
with cli.flag_errors():  # it applies the --config.FIELD overrides of sys.argv already
    config_flags.DEFINE_config_file(
        "config",
        os.path.join(_HERE, "experiments", "default.py"),
        "experiment config file (optionally FILE:variant)",
    )
flags.DEFINE_string(
    "workdir",
    os.path.join("runs", "default"),
    "run directory: config, metrics, vocabularies, checkpoints; resumes from it",
)
flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "eval", "predict"],
    "train (then test), eval (a checkpoint on test) or predict (--input to --output)",
)

# Alias flags: None means "keep the config file's value". Each maps to one config field.
# --bridge=attention means attention (--attention_type) over the initial state of the bridge
# --attention_init; any other --bridge has no attention (ModelConfig.from_experiment).
_ALIASES = {
    "bridge": ("model.bridge", flags.DEFINE_enum, model.BRIDGE_SPELLINGS),
    "attention_type": ("model.attention_type", flags.DEFINE_enum, sorted(attention.ATTENTION)),
    "attention_init": ("model.attention_init", flags.DEFINE_enum, sorted(bridges.BRIDGES)),
    "cell": ("model.cell", flags.DEFINE_enum, sorted(cells.CELLS)),
    "layers": ("model.layers", flags.DEFINE_integer, None),
    "hidden": ("model.hidden", flags.DEFINE_integer, None),
    "emb": ("model.emb", flags.DEFINE_integer, None),
    "bidirectional": ("model.bidirectional", flags.DEFINE_bool, None),
    "dropout": ("model.dropout", flags.DEFINE_float, None),
    "sampling_mode": ("model.sampling_mode", flags.DEFINE_enum, list(sampling.SAMPLING_MODES)),
    "sample_from": ("model.sample_from", flags.DEFINE_enum, list(sampling.SAMPLE_FROM)),
    "precision": ("model.precision", flags.DEFINE_enum, sorted(precision.PRECISIONS)),
    "sampling_schedule": ("sampling.schedule", flags.DEFINE_enum, sorted(sampling.SCHEDULES)),
    "sampling_probability": ("sampling.probability", flags.DEFINE_float, None),
    "dataset": ("data.dataset", flags.DEFINE_string, None),
    "data_dir": ("data.data_dir", flags.DEFINE_string, None),
    "train_file": ("data.train_file", flags.DEFINE_string, None),
    "valid_file": ("data.valid_file", flags.DEFINE_string, None),
    "test_file": ("data.test_file", flags.DEFINE_string, None),
    "tokenizer": ("data.tokenizer", flags.DEFINE_enum, ["char", "word"]),
    "max_len": ("data.max_len", flags.DEFINE_integer, None),
    "batch_size": ("train.batch_size", flags.DEFINE_integer, None),
    "steps": ("train.steps", flags.DEFINE_integer, None),
    "learning_rate": ("train.learning_rate", flags.DEFINE_float, None),
    "seed": ("train.seed", flags.DEFINE_integer, None),
    "eval_every": ("train.eval_every", flags.DEFINE_integer, None),
    "checkpoint_every": ("train.checkpoint_every", flags.DEFINE_integer, None),
    "beam_size": ("train.beam_size", flags.DEFINE_integer, None),
    "coordinator_address": ("parallel.coordinator_address", flags.DEFINE_string, None),
    "num_processes": ("parallel.num_processes", flags.DEFINE_integer, None),
    "process_id": ("parallel.process_id", flags.DEFINE_integer, None),
}
for _name, (_field, _define, _choices) in _ALIASES.items():
    _help = f"sets config.{_field}"
    if _choices is None:
        _define(_name, None, _help)
    else:
        _define(_name, None, _choices, _help)
flags.DEFINE_string("input", "-", "predict: source lines, one a line ('-' = stdin)")
flags.DEFINE_string("output", "-", "predict: hypotheses, one a line ('-' = stdout)")
flags.DEFINE_integer(
    "checkpoint_step",
    None,
    "eval / predict: the checkpoint to use (default: the best readable one)",
)
flags.DEFINE_integer("nbest", 1, "predict: hypotheses per line (INDEX<TAB>HYP<TAB>SCORE if > 1)")
flags.DEFINE_bool(
    "compilation_cache",
    True,
    "keep compiled steps in <workdir>/xla_cache (or $JAX_COMPILATION_CACHE_DIR), "
    "so a run restarted with the same command loads them instead of compiling "
    "again (tens of seconds per step function on a GPU)",
)
FLAGS = flags.FLAGS


def _set(config, field: str, value) -> None:
    node = config
    *parents, leaf = field.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value


def _apply_aliases(config):
    for name, (field, _, _) in _ALIASES.items():
        value = getattr(FLAGS, name)
        if value is not None:
            _set(config, field, value)
    return config


def _trained_config(workdir: str):
    """eval and predict: the run's own config.json, with this command's --config.FIELD and alias
    flags on top (decoding, evaluation data, devices), as long as they leave the model alone:
    its checkpoints hold that model's parameters."""
    from s2s_jax.training import inference, run_log

    saved = inference.load_config(workdir)
    config = saved.copy_and_resolve_references()
    for field, value in config_flags.get_override_values(FLAGS["config"]).items():
        _set(config, field, value)
    _apply_aliases(config)
    for name, value in config.model.items():
        # A field added since the run was trained has its default there.
        moves = f"model.{name}" in run_log.MAY_MOVE  # precision: same parameters
        if not moves and value != saved.model.get(name, value):
            raise ValueError(
                f"model.{name}={value!r} would change the trained model (it has "
                f"{saved.model[name]!r}); --mode={FLAGS.mode} uses the run's own "
                f"model: drop that flag"
            )
    return config


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    from s2s_jax.training import run_log

    run_log.quiet_libraries()
    with cli.flag_errors():  # a --config file that failed to load raises when first read
        config = _apply_aliases(FLAGS.config.copy_and_resolve_references())
    from s2s_jax.training import parallel  # JAX starts here, after the flags are parsed

    p = config.parallel
    parallel.initialize(p.coordinator_address, p.num_processes, p.process_id)
    import jax

    if FLAGS.compilation_cache and not jax.config.jax_compilation_cache_dir:
        # JAX writes entries from process 0 only, so a workdir shared by hosts is safe.
        jax.config.update(
            "jax_compilation_cache_dir", os.path.abspath(os.path.join(FLAGS.workdir, "xla_cache"))
        )
    from s2s_jax.training import inference, settings, train

    if FLAGS.mode != "train":
        config = _trained_config(FLAGS.workdir)
    settings.check_train(config.train)  # before data or a model is built (--beam_size=0, ...)
    if FLAGS.mode == "train":
        if FLAGS.checkpoint_step is not None:
            raise ValueError(
                "--checkpoint_step picks the checkpoint of --mode=eval or predict; "
                "training resumes from the newest one: drop the flag"
            )
        result = train.train_and_evaluate(config, FLAGS.workdir)
    elif FLAGS.mode == "eval":
        result = inference.evaluate_workdir(config, FLAGS.workdir, FLAGS.checkpoint_step)
    else:
        if FLAGS.nbest < 1:
            raise ValueError(f"--nbest must be at least 1, got {FLAGS.nbest}")
        result = inference.predict(
            config, FLAGS.workdir, FLAGS.input, FLAGS.output, FLAGS.nbest, FLAGS.checkpoint_step
        )
        if FLAGS.output == "-":
            return 0  # stdout holds the hypotheses only
    if jax.process_index() == 0:
        print(json.dumps(result), flush=True)
    return stopping.exit_status(result)


if __name__ == "__main__":
    cli.run(main)
