"""train.train_and_evaluate's stop on SIGTERM, in-process (the signal itself is sent to run.py in
test_run.py; here its timing is made the worst case on purpose), and the train section's checks."""

import json
import os

import pytest

from s2s_jax import config_files
from s2s_jax.studies import multiseed
from s2s_jax.training import host_memory, settings, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _LateStop:
    """A stop flag whose SIGTERM lands just after the loop's first read of it: every later read
    sees it set. A loop that reads the flag twice in one step (once to decide the checkpoint,
    once to stop) then stops without saving that step."""

    signal_name = "SIGTERM"

    def __init__(self):
        self.reads = 0

    @property
    def requested(self):
        self.reads += 1
        return self.reads > 1

    def install(self):
        return self

    def restore(self):
        pass


def _tiny():
    c = config_files.load_config_file(os.path.join(ROOT, "experiments", "bridges.py"), "tiny")
    c.model.bridge = "dense"  # compiles faster than attention
    return c


def test_a_stop_between_two_reads_of_the_flag_still_saves_the_step(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "StopRequest", _LateStop)
    result = train.train_and_evaluate(_tiny(), str(tmp_path))
    # Step 1 read the flag unset, step 2 saw it; run.py then exits 143.
    assert result == {"stopped_at": 2, "signal": "SIGTERM"}
    assert os.listdir(tmp_path / "checkpoints") == ["2"]


def test_the_seeds_program_saves_the_step_it_stops_at_too(tmp_path, monkeypatch):
    monkeypatch.setattr(multiseed, "StopRequest", _LateStop)
    result = multiseed.train_and_evaluate_seeds(_tiny(), [0, 1], str(tmp_path))
    stopped = {"stopped_at": 2, "signal": "SIGTERM"}
    assert result == {0: stopped, 1: stopped}
    for seed in (0, 1):
        assert os.listdir(tmp_path / f"seed{seed}" / "checkpoints") == ["2"]


def test_a_step_whose_temporaries_glibc_cannot_keep_is_warned_about(tmp_path, monkeypatch):
    # Every real step's block fits in a thread heap at this size; a 1-byte heap makes it not fit.
    monkeypatch.setattr(host_memory, "THREAD_HEAP_BYTES", 1)
    monkeypatch.setattr(host_memory, "_applied", "keep")
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    warnings = []
    monkeypatch.setattr(train.logging, "warning", lambda fmt, *a: warnings.append(fmt % a))
    config = _tiny()
    config.train.steps = 2
    train.train_and_evaluate(config, str(tmp_path))
    (advice,) = [w for w in warnings if "glibc thread heap" in w]
    assert "--malloc_tuning=keep_one_arena" in advice


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("beam_size", 0, "--config.train.beam_size must be at least 1, got 0"),
        ("eval_batch_size", -4, "--config.train.eval_batch_size must be at least 1, got -4"),
        ("learning_rate", 0.0, "--learning_rate must be positive, got 0.0"),
        ("warmup_steps", -5, "warmup_steps and clip_norm must be at least 0"),
        ("clip_norm", -1.0, "warmup_steps and clip_norm must be at least 0"),
        ("label_smoothing", 1.0, "label_smoothing must lie in [0, 1), got 1.0"),
        ("best_metric", "bogus", "unknown --config.train.best_metric 'bogus'"),
        ("seed", -1, "--seed must be at least 0"),
        ("eval_max_examples", -1, "eval_max_examples must be at least 0 (0: all), got -1"),
    ],
)
def test_a_train_section_that_would_run_but_mean_nothing_is_rejected(field, value, message):
    t = _tiny().train
    settings.check_train(t)  # the tiny config itself passes
    t[field] = value
    with pytest.raises(ValueError) as err:
        settings.make_optimizer(t)  # every path that builds the optimizer checks the section
    assert message in str(err.value)


def test_aux_inputs_no_pipeline_supplies_are_rejected_with_the_fix():
    c = _tiny()
    c.model.aux_dim = 3
    with pytest.raises(ValueError) as err:
        settings.model_config(c, 24, 24)
    msg = str(err.value)
    assert msg.startswith("model.aux_dim=3, but no data pipeline supplies auxiliary decoder inputs")
    assert "--config.model.aux_dim=0" in msg and "\n" not in msg
    c.model.aux_dim = 0
    assert settings.model_config(c, 24, 24).aux_dim == 0


def _metric_rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]  # timing apart


def test_a_run_stopped_between_two_rows_writes_the_next_one_as_an_uninterrupted_run(
    tmp_path, monkeypatch
):
    """The checkpoint of a stop at step 2 keeps steps 1-2's metrics, so the row at the next log
    step still averages all of its steps (it used to average only those after the resume)."""
    config = _tiny()
    config.train.update(steps=20, log_every=10, eval_every=1000, checkpoint_every=1000)
    train.train_and_evaluate(config, str(tmp_path / "whole"))
    with monkeypatch.context() as patch:
        patch.setattr(train, "StopRequest", _LateStop)
        assert train.train_and_evaluate(config, str(tmp_path / "stopped"))["stopped_at"] == 2
    assert train.train_and_evaluate(config, str(tmp_path / "stopped"))["step"] == 20
    assert _metric_rows(tmp_path / "stopped") == _metric_rows(tmp_path / "whole")


def test_the_seeds_program_stopped_between_two_rows_writes_the_next_one_as_uninterrupted(
    tmp_path, monkeypatch
):
    """The same for the vmapped seeds, which run the same loop: each seed's checkpoint keeps its
    own metrics since the last row (they used to restart the averages at the resumed step)."""
    config = _tiny()
    config.train.update(steps=12, log_every=6, eval_every=1000, checkpoint_every=1000)
    multiseed.train_and_evaluate_seeds(config, [0, 1], str(tmp_path / "whole"))
    with monkeypatch.context() as patch:
        patch.setattr(multiseed, "StopRequest", _LateStop)
        stopped = multiseed.train_and_evaluate_seeds(config, [0, 1], str(tmp_path / "stopped"))
    assert stopped == {
        0: {"stopped_at": 2, "signal": "SIGTERM"},
        1: {"stopped_at": 2, "signal": "SIGTERM"},
    }
    result = multiseed.train_and_evaluate_seeds(config, [0, 1], str(tmp_path / "stopped"))
    assert {seed: r["step"] for seed, r in result.items()} == {0: 12, 1: 12}
    for seed in ("seed0", "seed1"):
        assert _metric_rows(tmp_path / "stopped" / seed) == _metric_rows(tmp_path / "whole" / seed)
