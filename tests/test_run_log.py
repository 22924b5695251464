"""run_log: metrics.jsonl survives a torn last row, a full disk is one line, a failed first
run's files are not reused, and a full disk during training keeps the last checkpoint."""

import errno
import json
import os
import threading

import pytest
import tensorboardX.record_writer

from s2s_jax import cli, config_files
from s2s_jax.data.datasets import SRC_VOCAB_FILE, TGT_VOCAB_FILE
from s2s_jax.training import run_log, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rows_text(*steps):
    return "".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in steps)


def test_a_torn_last_row_is_dropped_with_a_warning_when_resuming(tmp_path, caplog):
    path = tmp_path / run_log.METRICS_FILE
    path.write_text(_rows_text(10, 20, 30) + '{"step": 40, "lo')  # killed mid-write
    log = run_log.RunLog(str(tmp_path))
    log.truncate_after(30)
    log.close()
    assert path.read_text() == _rows_text(10, 20, 30)
    assert f"{path}:4 is a torn last row" in caplog.text


def test_a_whole_last_row_without_its_newline_gets_one(tmp_path):
    path = tmp_path / run_log.METRICS_FILE
    path.write_text(_rows_text(10) + json.dumps({"step": 20}))
    log = run_log.RunLog(str(tmp_path))
    log.truncate_after(20)
    log._append({"step": 30, "loss": 0.5})  # would otherwise join the unterminated row
    log.close()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [10, 20, 30]


def test_a_damaged_row_before_the_last_is_one_line_naming_the_file_and_the_fix(tmp_path):
    path = tmp_path / run_log.METRICS_FILE
    text = _rows_text(10) + "garbage\n" + _rows_text(20)
    path.write_text(text)
    log = run_log.RunLog(str(tmp_path))
    with pytest.raises(ValueError, match=rf"^{path}:2 is not a JSON row .*; delete that line"):
        log.truncate_after(10)
    log.close()
    assert path.read_text() == text  # nothing rewritten


def test_files_without_a_config_json_are_dropped_and_vouched_ones_kept(tmp_path):
    for name in (SRC_VOCAB_FILE, TGT_VOCAB_FILE):
        (tmp_path / name).write_text("<pad>\n<bos>\n<eos>\n<unk>\nleft\n")
    run_log.drop_unvouched(str(tmp_path), (SRC_VOCAB_FILE, TGT_VOCAB_FILE))
    assert not (tmp_path / SRC_VOCAB_FILE).exists() and not (tmp_path / TGT_VOCAB_FILE).exists()
    (tmp_path / SRC_VOCAB_FILE).write_text("kept\n")
    (tmp_path / run_log.CONFIG_FILE).write_text("{}")
    run_log.drop_unvouched(str(tmp_path), (SRC_VOCAB_FILE,))
    assert (tmp_path / SRC_VOCAB_FILE).read_text() == "kept\n"


class _FullFile:
    """A file on a full disk: every write raises ENOSPC, as the OS does."""

    def __init__(self, path):
        self.path = path

    def write(self, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _fill_disk_after(monkeypatch, step):
    """metrics.jsonl rows past `step` and the TensorBoard flush of the main thread fail with
    ENOSPC from then on (the events thread is left alone: it never writes during a test)."""
    real_open = open
    full = {"now": False}

    def fake_open(path, mode="r", *args, **kwargs):
        if str(path).endswith(run_log.METRICS_FILE) and "a" in mode:
            return _Rows(real_open(path, mode, *args, **kwargs), path)
        return real_open(path, mode, *args, **kwargs)

    class _Rows(_FullFile):
        def __init__(self, f, path):
            super().__init__(path)
            self.f = f

        def write(self, text):
            if json.loads(text)["step"] > step:
                full["now"] = True
            if full["now"]:
                self.f.close()
                super().write(text)
            self.f.write(text)

        def __exit__(self, *exc):
            self.f.close()
            return False

    real_flush = tensorboardX.record_writer.RecordWriter.flush

    def flush(self):
        if full["now"] and threading.current_thread() is threading.main_thread():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_flush(self)

    monkeypatch.setattr(run_log, "open", fake_open, raising=False)
    monkeypatch.setattr(tensorboardX.record_writer.RecordWriter, "flush", flush)


def test_a_full_disk_is_one_line_error_and_the_run_resumes_from_its_last_checkpoint(
    tmp_path, monkeypatch
):
    config = config_files.load_config_file(os.path.join(ROOT, "experiments", "default.py"), "tiny")
    config.train.update(steps=30, checkpoint_every=10, eval_every=1000)
    workdir = str(tmp_path / "run")
    with monkeypatch.context() as patch:
        _fill_disk_after(patch, 20)
        with pytest.raises(cli.user_errors()) as caught:
            train.train_and_evaluate(config, workdir)
    err = caught.value
    assert isinstance(err, run_log.WriteError)  # cli: `error: ...`, exit status 2
    message = str(err)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(
        f"cannot write metrics to {os.path.join(workdir, 'metrics.jsonl')} "
        "(No space left on device); free space there"
    )
    assert "rerun the same command" in message
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10", "20"]
    # With space again, the same call resumes from checkpoint 20 and ends with unique rows.
    result = train.train_and_evaluate(config, workdir)
    assert result["step"] == 30
    with open(os.path.join(workdir, run_log.METRICS_FILE)) as f:
        rows = [json.loads(line) for line in f]
    assert [(r["step"], r.get("split")) for r in rows] == [
        (10, None),
        (20, None),
        (30, None),
        (30, "valid"),
        (30, "test"),
    ]
