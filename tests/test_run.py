"""End to end through run.py: devices, hosts, kill and resume, SIGTERM, NaN, corruption, errors.

Each run is a subprocess (simulated CPU devices must be configured before JAX starts) with the
`tiny` experiment, so one run takes seconds.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from s2s_jax.models import model
from s2s_jax.training import workdir_lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config=experiments/default.py:tiny"]


def _env(devices=1):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def start(workdir, *flags, devices=1):
    cmd = [sys.executable, "run.py", *TINY, f"--workdir={workdir}", *flags]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=_env(devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run(workdir, *flags, devices=1, timeout=240):
    proc = start(workdir, *flags, devices=devices)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    return proc.returncode, out, err


def final_json(out):
    return json.loads(out.strip().splitlines()[-1])


def rows(workdir, split=None):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        all_rows = [json.loads(line) for line in f]
    return [r for r in all_rows if r.get("split") == split]


def params_at(workdir, step):
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    ckptr = ocp.StandardCheckpointer()
    # Restore onto this process's one device, whatever topology wrote it.
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
        ckptr.metadata(path).item_metadata,
    )
    return ckptr.restore(path, abstract)["params"]


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    flat_a = {str(k): v for k, v in _flatten(a)}
    flat_b = {str(k): v for k, v in _flatten(b)}
    assert flat_a.keys() == flat_b.keys()
    for k in flat_a:
        np.testing.assert_allclose(flat_a[k], flat_b[k], rtol=rtol, atol=atol, err_msg=k)


def _flatten(tree, prefix=()):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _flatten(v, prefix + (k,))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            yield from _flatten(v, prefix + (i,))
    else:
        yield prefix, np.asarray(tree)


def _metric_close(a, b, keys=("loss", "token_accuracy", "exact_match", "bleu")):
    for k in keys:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_one_device_equals_four_devices(tmp_path):
    """With an evaluation batch that 4 does not divide: it is rounded up, not refused."""
    one, four = tmp_path / "one", tmp_path / "four"
    code1, out1, err1 = run(one, "--config.train.eval_batch_size=30")
    code4, out4, err4 = run(four, "--config.train.eval_batch_size=30", devices=4)
    assert code1 == 0, err1[-2000:]
    assert code4 == 0, err4[-2000:]
    assert "1 device(s)" in err1 and "4 device(s)" in err4
    assert "rounded up" not in err1
    assert "--config.train.eval_batch_size=30 rounded up to 32, a multiple of the 4 devices" in err4
    for r1, r4 in zip(rows(one), rows(four), strict=True):
        assert r1["step"] == r4["step"]
        _metric_close(r1, r4, ("loss", "token_accuracy", "sampled_fraction"))
    assert_trees_close(params_at(one, 40), params_at(four, 40))
    _metric_close(final_json(out1), final_json(out4))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process_with_two_devices(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    code, out, err = run(single, devices=2)
    assert code == 0, err[-2000:]
    port = _free_port()
    procs = [
        start(
            multi,
            f"--coordinator_address=127.0.0.1:{port}",
            "--num_processes=2",
            f"--process_id={i}",
        )
        for i in range(2)
    ]
    try:
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, perr) in zip(procs, results):
        assert p.returncode == 0, perr[-3000:]
    assert "2 process(es)" in results[0][1]
    # Only process 0 prints the result and writes logs (gloo may chat on stdout).
    assert not any(line.startswith("{") for line in results[1][0].splitlines())
    for r1, r2 in zip(rows(single), rows(multi), strict=True):
        _metric_close(r1, r2, ("loss", "token_accuracy"))
    assert_trees_close(params_at(single, 40), params_at(multi, 40))
    _metric_close(final_json(out), final_json(results[0][0]))


def _wait_for_row(workdir, step, proc, timeout=120):
    deadline = time.time() + timeout
    path = os.path.join(workdir, "metrics.jsonl")
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()[-2000:] if proc.stderr else proc.args
        if os.path.exists(path) and any(r["step"] >= step for r in rows(workdir)):
            return
        time.sleep(0.05)
    raise AssertionError(f"no metrics row for step {step} within {timeout}s")


LONG = ["--steps=120", "--checkpoint_every=20", "--eval_every=60"]


def test_sigkill_then_rerun_finishes_like_an_uninterrupted_run(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    code, out_whole, err = run(whole, *LONG)
    assert code == 0, err[-2000:]
    proc = start(killed, *LONG)
    _wait_for_row(killed, 70, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(killed / "checkpoints" / "120")
    # The killed run's lock file stays behind; the kernel released its flock, so it is stale.
    assert f"pid {proc.pid} " in (killed / ".lock").read_text()
    code, out_killed, err = run(killed, *LONG)
    assert code == 0, err[-2000:]
    assert "resumed from checkpoint" in err
    _metric_close(final_json(out_whole), final_json(out_killed))
    assert_trees_close(params_at(whole, 120), params_at(killed, 120), rtol=0, atol=0)
    # Rows are not duplicated by the replayed steps, and they match the uninterrupted run's.
    assert [r["step"] for r in rows(killed)] == [r["step"] for r in rows(whole)]
    for a, b in zip(rows(whole), rows(killed)):
        _metric_close(a, b, ("loss", "token_accuracy", "sampled_fraction"))


def test_a_restarted_run_loads_its_compiled_train_step_from_the_workdir_cache(tmp_path):
    env = _env()
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # however fast this machine compiles
    env["JAX_DEBUG_LOG_MODULES"] = "jax._src.compiler"  # logs each persistent-cache hit
    cmd = [
        sys.executable,
        "run.py",
        *TINY,
        f"--workdir={tmp_path}",
        "--steps=100000",
        "--checkpoint_every=100000",
        "--eval_every=100000",
    ]
    errs = []
    for attempt in range(2):  # a preempted run, then the same command again
        # A row this process wrote: the first run can log past any fixed step before it stops,
        # and a signal that came before the handler was installed would kill the second one.
        row = max((r["step"] for r in rows(tmp_path)), default=0) + 30 if attempt else 30
        log = tmp_path / f"stderr{attempt}.txt"  # a file: the debug log could fill a pipe
        with open(log, "w") as f:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=f, text=True
            )
            _wait_for_row(tmp_path, row, proc)
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
        errs.append(log.read_text())
        assert proc.returncode == 143, errs[-1][-2000:]
    hit = "Persistent compilation cache hit for 'jit_train_step'"
    assert hit not in errs[0] and hit in errs[1]
    assert "resumed from checkpoint" in errs[1]
    assert any(n.startswith("jit_train_step") for n in os.listdir(tmp_path / "xla_cache"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])  # SIGINT: Ctrl-C
def test_sigterm_or_ctrl_c_saves_the_current_step_and_exits_with_128_plus_the_signal(
    tmp_path, signum
):
    """Not 0: `python run.py && next-step` must not go on after a preemption."""
    proc = start(tmp_path, "--steps=100000", "--checkpoint_every=100000", "--eval_every=100000")
    _wait_for_row(tmp_path, 30, proc)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err[-2000:]  # 143, 130: what a shell reports
    assert "Traceback" not in err
    assert final_json(out)["signal"] == signal.Signals(signum).name
    stopped = final_json(out)["stopped_at"]
    assert stopped >= 30
    assert os.listdir(tmp_path / "checkpoints") == [str(stopped)]
    params_at(tmp_path, stopped)  # readable


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path):
    code, out, err = run(tmp_path, "--steps=20", "--checkpoint_every=5", "--eval_every=1000")
    assert code == 0
    # Continue the same run with an absurd learning rate: the loss blows up.
    code, out, err = run(
        tmp_path, "--steps=60", "--checkpoint_every=5", "--eval_every=1000", "--learning_rate=1e38"
    )
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: the loss became") and "--learning_rate" in last
    steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints"))
    assert 20 in steps
    for s in steps:
        for leaf in _flatten(params_at(tmp_path, s)):
            assert np.all(np.isfinite(leaf[1]))


def test_a_corrupted_latest_checkpoint_is_skipped_for_the_previous(tmp_path):
    code, _, err = run(tmp_path, "--steps=20", "--checkpoint_every=10", "--eval_every=1000")
    assert code == 0, err[-2000:]
    state_dir = tmp_path / "checkpoints" / "20" / "state"
    for root, _, files in os.walk(state_dir):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"garbage")
    code, out, err = run(tmp_path, "--steps=30", "--checkpoint_every=10", "--eval_every=1000")
    assert code == 0, err[-2000:]
    assert "checkpoint 20 is unreadable" in err and "resumed from checkpoint 10" in err
    assert os.path.isdir(tmp_path / "corrupt_checkpoints" / "20")  # set aside, not deleted
    assert final_json(out)["step"] == 30


@pytest.mark.parametrize(
    "flags,message",
    [
        (
            ["--bridge=bogus"],
            "error: flag --bridge=bogus: value should be one of "
            f"<{'|'.join(model.BRIDGE_SPELLINGS)}>",
        ),
        (["--bridg=copy"], "error: Unknown command line flag 'bridg'. Did you mean: bridge ?"),
        (["--layers=two"], "error: flag --layers=two: invalid literal for int()"),
        (
            ["--config=experiments/nope.py"],
            "error: --config: [Errno 2] No such file or directory: "
            "'experiments/nope.py'; give an existing FILE",
        ),
        (
            ["--config=experiments/default.py:huge"],
            "error: flag --config=experiments/default.py:huge: unknown variant 'huge'",
        ),
        (
            ["--config.model.layer=2"],
            "error: --config.model.layer: the --config file has no field "
            '\'layer\'; did you mean "layers" instead of "layer"?',
        ),
        (["extra"], "error: unexpected arguments ['extra']"),
        (["--batch_size=0"], "error: --config.train.batch_size must be at least 1"),
        (["--beam_size=-2"], "error: --config.train.beam_size must be at least 1, got -2"),
        (
            ["--bridge=copy", "--bidirectional=false", "--config.model.decoder_hidden=7"],
            "--bridge=dense",
        ),
        (["--dataset=nope"], "error: unknown dataset 'nope'"),
        (
            ["--sampling_schedule=exponential", "--config.sampling.exponential_base=3"],
            "0 < --config.sampling.exponential_base < 1",
        ),
        (
            ["--sampling_probability=1.5"],
            "error: --sampling_probability must lie in [0, 1], got 1.5",
        ),
        (
            ["--config.data.buckets=4,6"],
            "the largest bucket 6 cannot hold max_len=8; end the list with 8",
        ),
        (["--config.data.buckets=8,4,8"], "strictly increasing"),
        (["--config.train.batch_type=tokens", "--batch_size=5"], "raise batch_size to at least 9"),
        (["--config.train.batch_type=words"], "choose one of ['sentences', 'tokens']"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, flags, message):
    """Flags that do not parse too: absl alone would print two lines and exit 1, and
    ml_collections' --config a traceback."""
    code, out, err = run(tmp_path, *flags, timeout=120)
    assert code == 2, err[-1000:]
    assert "Traceback" not in err and "FATAL" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, err[-1000:]
    # Refused before anything was written: no vocabulary for a next run to take for its own.
    assert not any(n.startswith("vocab.") for n in os.listdir(tmp_path)), os.listdir(tmp_path)


def test_a_workdir_resumes_only_its_own_model_and_data(tmp_path):
    code, _, err = run(tmp_path, "--steps=10", "--checkpoint_every=10", "--eval_every=1000")
    assert code == 0, err[-2000:]
    saved = {
        name: (tmp_path / name).read_bytes()
        for name in ("config.json", "vocab.src.txt", "metrics.jsonl")
    }
    for flag, field in (
        ("--hidden=24", "model.hidden=16"),
        ("--dataset=copy", "data.dataset="),
        # Clipping off: the optimizer state loses a part; its checkpoints would
        # all fail to restore, be taken for damaged and the run start at 0.
        ("--config.train.clip_norm=0", "train.clip_norm=1.0"),
    ):
        code, out, err = run(tmp_path, "--steps=20", flag)
        assert code == 2
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"error: {tmp_path} holds a run with {field}"), last
        assert "give a new --workdir, or drop the flag" in last
        # Nothing was touched: no checkpoint set aside as unreadable, no file rewritten.
        assert os.listdir(tmp_path / "checkpoints") == ["10"]
        assert not (tmp_path / "corrupt_checkpoints").exists()
        assert all((tmp_path / name).read_bytes() == data for name, data in saved.items())
    code, out, err = run(
        tmp_path,
        "--steps=20",
        "--learning_rate=0.002",  # train may change
        "--config.train.clip_norm=0.5",
    )  # the same state: clipping still on
    assert code == 0, err[-2000:]
    assert "resumed from checkpoint 10" in err and final_json(out)["step"] == 20


@pytest.mark.parametrize(
    "workdir,message",
    [
        ("file", "is a file; give a directory path"),
        (
            "file/sub",
            "cannot be created or written (Not a directory); give a writable directory path",
        ),
    ],
)
def test_a_workdir_that_cannot_hold_a_run_is_one_line(tmp_path, workdir, message):
    (tmp_path / "file").write_text("not a directory")
    code, out, err = run(tmp_path / workdir, timeout=120)
    assert code == 2
    assert err.strip().splitlines()[-1] == f"error: --workdir={tmp_path / workdir} {message}"


def test_a_config_file_that_fails_to_load_is_one_line_too(tmp_path):
    config = tmp_path / "broken.py"
    config.write_text("import no_such_module_here\n\ndef get_config():\n    return None\n")
    code, out, err = run(tmp_path, f"--config={config}", timeout=120)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "error: the --config file raised ModuleNotFoundError: No module named 'no_such_module_here'"
    )


@pytest.mark.parametrize("bridge", model.BRIDGE_SPELLINGS)
def test_every_bridge_trains_from_the_command_line(tmp_path, bridge):
    code, out, err = run(
        tmp_path, f"--bridge={bridge}", "--steps=60", "--eval_every=60", "--checkpoint_every=60"
    )
    assert code == 0, err[-2000:]
    train = rows(tmp_path)
    assert train[-1]["loss"] < train[0]["loss"] - 0.2
    assert json.loads((tmp_path / "config.json").read_text())["model"]["bridge"] == bridge
    assert 0.0 <= final_json(out)["exact_match"] <= 1.0


def test_a_second_run_on_a_busy_workdir_names_the_holder_and_touches_nothing(tmp_path):
    with workdir_lock.WorkdirLock(str(tmp_path)):  # this process stands in for a running run
        code, out, err = run(tmp_path, timeout=120)
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        f"error: --workdir={tmp_path} is in use by pid {os.getpid()} on host "
        f"{socket.gethostname()} since "
    ), last
    assert last.endswith("wait for that run to end (or stop it), or give another --workdir")
    assert os.listdir(tmp_path) == [".lock"]


def test_vocabularies_that_no_config_json_vouches_for_are_not_reused(tmp_path):
    """A run refused after its data was loaded used to leave them; the next run on other data
    encoded every token as unk with them."""
    for name in ("vocab.src.txt", "vocab.tgt.txt"):
        (tmp_path / name).write_text("<pad>\n<bos>\n<eos>\n<unk>\nzz\n")
    code, out, err = run(tmp_path, "--steps=10", "--eval_every=10", "--checkpoint_every=10")
    assert code == 0, err[-2000:]
    assert "reusing vocabularies" not in err and "removed" in err
    tokens = (tmp_path / "vocab.src.txt").read_text().split("\n")
    assert "zz" not in tokens and len(tokens) > 10
