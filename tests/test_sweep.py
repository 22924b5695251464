"""The sweep: its jobs, restart after a stop, failures, aggregation, and the command.

Most tests drive s2s_jax.studies.sweep in-process with a fake `start` that writes metrics.jsonl rows
instead of training; one test runs the real command (tiny runs through run.py and through the
vmapped multiseed program) and one checks bad input on the command line.
"""

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from s2s_jax.studies import grid, results, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BRIDGES_TINY = os.path.join(ROOT, "experiments", "bridges.py") + ":tiny"


# --- Jobs -----------------------------------------------------------------------------------
def test_jobs_run_every_seed_of_every_point_with_its_overrides():
    points = [
        grid.Point(
            f"bridge=dense,bidirectional={b}",
            (("model.bridge", "dense"), ("model.bidirectional", b == "true")),
            7,
        )
        for b in ("true", "false")
    ]
    fixed = (("train.steps", 7),)
    jobs = sweep.make_jobs("/w", "/e.py", "tiny", points, [0, 1], fixed)
    assert [(j.point.name, j.seeds) for j in jobs] == [
        ("bridge=dense,bidirectional=true", (0,)),
        ("bridge=dense,bidirectional=true", (1,)),
        ("bridge=dense,bidirectional=false", (0,)),
        ("bridge=dense,bidirectional=false", (1,)),
    ]
    assert jobs[1].command[2:] == (
        "--config=/e.py:tiny",
        "--workdir=/w/bridge=dense,bidirectional=true/seed1",
        "--config.train.steps=7",
        "--config.model.bridge=dense",
        "--config.model.bidirectional=true",
        "--config.train.seed=1",
    )
    vjobs = sweep.make_jobs("/w", "/e.py", "", points, [0, 1], fixed, vmap=True)
    assert [j.seeds for j in vjobs] == [(0, 1), (0, 1)] and "--seeds=0,1" in vjobs[0].command


# --- Restart and failures, with a fake runner -----------------------------------------------
class _Handle:
    def __init__(self, code):
        self.code = code

    def poll(self):
        return self.code

    def terminate(self):
        pass


class FakeRuns:
    """Stands in for run.py: writes rows as a finished, stopped or failed run would."""

    def __init__(self, sweep_dir, stop=None, stop_at=None, fail=()):
        self.sweep_dir, self.stop, self.stop_at, self.fail = sweep_dir, stop, stop_at, fail
        self.started = []

    def __call__(self, job):
        self.started.append((job.point.name, job.seeds, job.command))
        os.makedirs(os.path.dirname(job.log), exist_ok=True)
        if job.point.name in self.fail:
            with open(job.log, "a") as f:
                f.write("some log line\nerror: the loss became nan at step 3\n")
            return _Handle(2)
        status = 0
        for seed in job.seeds:
            workdir = results.seed_dir(self.sweep_dir, job.point.name, seed)
            os.makedirs(workdir, exist_ok=True)
            rows = [{"step": 10, "loss": 2.0 + seed}, {"step": 20, "loss": 1.0 + seed}]
            if job.point.name == self.stop_at:  # SIGTERM: checkpoint, exit 143, no test row
                self.stop.requested = True
                status = 143
            else:
                rows.append(
                    {
                        "step": job.point.steps,
                        "split": "test",
                        "loss": 0.5,
                        "exact_match": 0.1 * seed,
                        "token_accuracy": 0.9,
                        "bleu": 50.0,
                    }
                )
            with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
        return _Handle(status)


SWEEP = dict(axis_flags=("model.bridge=zero,dense,copy",), set_flags=("train.steps=20",))


def test_a_stopped_sweep_restarted_runs_only_the_missing_points(tmp_path):
    stop = sweep.StopRequest()
    first = FakeRuns(str(tmp_path), stop, stop_at="bridge=dense")
    lines = []
    code = sweep.sweep(
        BRIDGES_TINY, str(tmp_path), seeds=1, start=first, stop=stop, report=lines.append, **SWEEP
    )
    assert code == 1  # stopped
    # run.py's exit status after SIGTERM (143) reads as stopped, not failed.
    assert any("bridge=dense seed 0: stopped" in line for line in lines), lines
    assert not any("failed" in line for line in lines), lines
    assert [s[0] for s in first.started] == ["bridge=zero", "bridge=dense"]  # copy never began
    with open(tmp_path / "results.csv") as f:
        assert [int(r["seeds"]) for r in csv.DictReader(f)] == [1, 0, 0]

    second = FakeRuns(str(tmp_path))
    code = sweep.sweep(
        BRIDGES_TINY, str(tmp_path), seeds=1, start=second, report=lambda line: None, **SWEEP
    )
    assert code == 0
    assert [s[0] for s in second.started] == ["bridge=dense", "bridge=copy"]
    assert second.started[0][2] == first.started[1][2]  # the same command: run.py resumes it
    with open(tmp_path / "results.csv") as f:
        assert [int(r["seeds"]) for r in csv.DictReader(f)] == [1, 1, 1]

    third = FakeRuns(str(tmp_path))  # everything finished: nothing runs, even with --vmap
    assert (
        sweep.sweep(
            BRIDGES_TINY,
            str(tmp_path),
            seeds=1,
            start=third,
            vmap=True,
            report=lambda line: None,
            **SWEEP,
        )
        == 0
    )
    assert third.started == []
    # One more seed: only the new seed runs, for every point.
    fourth = FakeRuns(str(tmp_path))
    sweep.sweep(
        BRIDGES_TINY,
        str(tmp_path),
        seeds=2,
        start=fourth,
        parallel=2,
        report=lambda line: None,
        **SWEEP,
    )
    assert sorted((s[0], s[1]) for s in fourth.started) == [
        ("bridge=copy", (1,)),
        ("bridge=dense", (1,)),
        ("bridge=zero", (1,)),
    ]


def test_a_failed_point_is_reported_and_the_others_still_run(tmp_path):
    lines = []
    runs = FakeRuns(str(tmp_path), fail=("bridge=dense",))
    code = sweep.sweep(
        BRIDGES_TINY, str(tmp_path), seeds=2, start=runs, parallel=2, report=lines.append, **SWEEP
    )
    assert code == 1
    assert len(runs.started) == 6
    failed = "bridge=dense seed 0: exit 2: error: the loss became nan at step 3"
    assert failed in (tmp_path / "results.md").read_text()
    assert any(failed.split(":")[0] in line and "failed" in line for line in lines)
    with open(tmp_path / "results.csv") as f:
        assert [int(r["seeds"]) for r in csv.DictReader(f)] == [2, 0, 2]


# --- Aggregation ----------------------------------------------------------------------------
def _write(path, rows, tail=""):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
        f.write(tail)


def test_results_csv_aggregates_exactly_the_final_test_rows(tmp_path):
    rs = np.random.RandomState(0)
    metrics = ["exact_match", "token_accuracy", "bleu", "loss"]
    expected = {}
    for point in ("bridge=zero", "bridge=attention"):
        finals = []
        for seed in range(3):
            final = {m: float(rs.rand()) for m in metrics}
            finals.append(final)
            _write(
                results.seed_dir(str(tmp_path), point, seed),
                [
                    {"step": 10, "loss": 3.0 + seed, "token_accuracy": 0.1},
                    {
                        "step": 20,
                        "split": "valid",
                        "loss": 9.0,
                        "exact_match": 9.0,
                        "bleu": 9.0,
                        "token_accuracy": 9.0,
                    },
                    {
                        "step": 20,
                        "split": "test",
                        "loss": 7.0,
                        "exact_match": 7.0,
                        "bleu": 7.0,
                        "token_accuracy": 7.0,
                    },  # an earlier test row (e.g. before --steps was raised)
                    {"step": 30, "loss": 1.0 + seed, "token_accuracy": 0.5},
                    {"step": 30, "split": "test", **final},
                ],
            )
        expected[point] = finals
    # A seed that has not finished (no test row at step 30; a half-written last line) is left out.
    _write(
        results.seed_dir(str(tmp_path), "bridge=zero", 3),
        [{"step": 10, "loss": 0.0}, {"step": 20, "split": "test", "loss": 0.0}],
        '{"step": 3',
    )
    points = [
        {"name": n, "settings": {"model.bridge": n.split("=")[1]}, "steps": 30} for n in expected
    ]
    collected = results.collect(str(tmp_path), points, [0, 1, 2, 3])
    results.write_all(str(tmp_path), collected, metrics)

    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["variant"] for r in table] == ["bridge=zero", "bridge=attention"]
    for row in table:
        finals = expected[row["variant"]]
        assert row["model.bridge"] == row["variant"].split("=")[1]
        assert int(row["seeds"]) == 3
        for m in metrics:
            values = [f[m] for f in finals]
            assert float(row[f"{m}_mean"]) == float(np.mean(values))
            assert float(row[f"{m}_std"]) == float(np.std(values, ddof=1))
    # Learning curves: the mean over the finished seeds' training rows.
    np.testing.assert_array_equal(collected[0].curve_steps, [10, 30])
    np.testing.assert_array_equal(collected[0].curve_loss, [[3, 1], [4, 2], [5, 3]])
    md = (tmp_path / "results.md").read_text()
    zero = expected["bridge=zero"]
    em = [f["exact_match"] for f in zero]
    assert f"| bridge=zero | 3 | {np.mean(em):.3f} ± {np.std(em, ddof=1):.3f} |" in md
    assert (tmp_path / results.CURVES_PNG).stat().st_size > 0
    assert (tmp_path / results.FINAL_PNG).stat().st_size > 0


def _point(name, seeds, exact_match):
    finals = [{"exact_match": v, "loss": 1.0 - v} for v in exact_match]
    return results.PointResult(name, {}, list(seeds), finals, np.zeros(0), np.zeros((0, 0)))


def test_points_are_compared_with_the_baseline_seed_by_seed_over_their_common_seeds():
    base = _point("p=0", [0, 1, 2, 3], [0.50, 0.60, 0.70, 0.80])
    other = _point("p=0.1", [0, 1, 3, 4], [0.52, 0.59, 0.84, 0.99])  # seed 2 unfinished here
    got = results.paired(other, base, "exact_match")
    diffs = [0.52 - 0.50, 0.59 - 0.60, 0.84 - 0.80]  # seeds 0, 1, 3: the ones both finished
    assert got.seeds == 3 and got.higher == 2
    assert got.mean == pytest.approx(np.mean(diffs))
    assert got.std == pytest.approx(np.std(diffs, ddof=1))
    # Paired, the spread is that of the differences, far below either point's own.
    assert got.std < 0.5 * min(np.std([0.5, 0.6, 0.8], ddof=1), np.std([0.52, 0.59, 0.84], ddof=1))
    md = results.markdown([base, other], ["exact_match", "loss"], baseline="p=0")
    rows = [line for line in md.splitlines() if line.startswith("| p=0")]
    assert rows[-1] == (
        f"| p=0.1 | {np.mean(diffs):+.3f} ± {np.std(diffs, ddof=1):.3f} (2/3) | "
        f"{-np.mean(diffs):+.3f} ± {np.std(diffs, ddof=1):.3f} (1/3) |"
    )
    assert "Paired by seed against `p=0`" in md
    assert "Paired" not in results.markdown([base, other], ["exact_match"])  # no baseline
    lone = results.paired(_point("one", [1], [0.7]), base, "exact_match")
    assert (lone.seeds, lone.higher) == (1, 1) and math.isnan(lone.std)
    assert results._paired_cell(lone, "exact_match") == "+0.100 (1/1)"


def test_a_sweep_with_a_baseline_records_it_and_tabulates_the_paired_differences(tmp_path):
    runs = FakeRuns(str(tmp_path))
    assert (
        sweep.sweep(
            BRIDGES_TINY,
            str(tmp_path),
            seeds=2,
            start=runs,
            report=lambda line: None,
            baseline_flags=("model.bridge=zero",),
            **SWEEP,
        )
        == 0
    )
    with open(tmp_path / results.MANIFEST) as f:
        assert json.load(f)["baseline"] == "bridge=zero"
    md = (tmp_path / "results.md").read_text()
    assert "Paired by seed against `bridge=zero`" in md
    # The fake runs score every point alike, seed by seed: every difference is zero.
    assert "| bridge=dense | +0.000 ± 0.000 (0/2) |" in md
    assert "| bridge=copy | +0.000 ± 0.000 (0/2) |" in md
    # Rebuilding the tables from the manifest keeps the comparison.
    os.remove(tmp_path / "results.md")
    proc = subprocess.run(
        [sys.executable, "-m", "s2s_jax.studies.results", f"--workdir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "results.md").read_text() == md


def test_a_sweep_workdir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    code, out, err = _sweep(
        f"--config={BRIDGES_TINY}", f"--workdir={tmp_path / 'file'}", timeout=120
    )
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        f"error: --workdir={tmp_path / 'file'} is a file; give a directory path"
    )


def test_rebuilding_results_without_a_sweep_is_one_line_and_exit_status_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "s2s_jax.studies.results", f"--workdir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / results.MANIFEST} not found; pass the --workdir of a "
        "s2s_jax.studies.sweep run"
    ]


def test_mean_std_of_one_seed_has_no_std():
    assert results.mean_std([0.5])[0] == 0.5 and math.isnan(results.mean_std([0.5])[1])
    assert all(math.isnan(v) for v in results.mean_std([]))


# --- The command ----------------------------------------------------------------------------
def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _start_sweep(*flags):
    return subprocess.Popen(
        [sys.executable, "-m", "s2s_jax.studies.sweep", *flags],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _sweep(*flags, timeout=300):
    proc = _start_sweep(*flags)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    return proc.returncode, out, err


def test_real_sweeps_vmapped_seeds_match_run_py_and_a_rerun_does_nothing(tmp_path):
    common = [
        f"--config={BRIDGES_TINY}",
        "--axis=model.bridge=dense",
        "--set=train.steps=20",
        "--set=train.eval_every=10",
    ]
    runs, vmap = tmp_path / "runs", tmp_path / "vmap"
    # Both at once (two cores): seed 0 through run.py, seeds 0 and 1 in one vmapped program.
    procs = [
        _start_sweep(*common, "--seeds=1", f"--workdir={runs}"),
        _start_sweep(*common, "--seeds=2", f"--workdir={vmap}", "--vmap"),
    ]
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, out[-2000:] + err[-2000:]
    a = results.read_rows(results.seed_dir(str(runs), "bridge=dense", 0))
    b = results.read_rows(results.seed_dir(str(vmap), "bridge=dense", 0))
    assert [(r["step"], r.get("split")) for r in a] == [(r["step"], r.get("split")) for r in b]
    assert [r["step"] for r in a if r.get("split") == "test"] == [20]
    for ra, rb in zip(a, b):
        for key in ("loss", "token_accuracy", "sampled_fraction", "exact_match", "bleu"):
            if key in ra:
                np.testing.assert_allclose(ra[key], rb[key], rtol=1e-4, atol=1e-5, err_msg=key)
    for seed in (0, 1):
        seed_dir = vmap / "bridge=dense" / f"seed{seed}"
        config = json.loads((seed_dir / "config.json").read_text())
        assert config["train"]["seed"] == seed and config["train"]["steps"] == 20
        assert (seed_dir / "vocab.src.txt").exists() and (seed_dir / "checkpoints" / "20").is_dir()
    seed1 = results.read_rows(results.seed_dir(str(vmap), "bridge=dense", 1))
    assert seed1[0]["loss"] != b[0]["loss"]  # its own keys and batches
    for name in ("results.csv", "results.md", results.CURVES_PNG, results.FINAL_PNG):
        assert (vmap / name).exists(), name
    assert "| bridge=dense | 2 |" in outputs[1][0]
    with open(runs / "results.csv") as f:
        row = next(csv.DictReader(f))
    assert float(row["exact_match_mean"]) == a[-1]["exact_match"] and row["seeds"] == "1"

    code, out, err = _sweep(*common, "--seeds=1", f"--workdir={runs}")
    assert code == 0, err[-2000:]
    assert "1 finished, 0 to run" in out


def test_the_seeds_of_a_point_share_compiled_steps_through_the_sweep_cache(tmp_path):
    env = _env()
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["JAX_DEBUG_LOG_MODULES"] = "jax._src.compiler"  # logs each persistent-cache hit
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "s2s_jax.studies.sweep",
            f"--config={BRIDGES_TINY}",
            "--axis=model.bridge=copy",
            "--set=train.steps=4",
            "--set=train.eval_every=4",
            "--seeds=2",
            f"--workdir={tmp_path}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    cached = os.listdir(tmp_path / sweep.CACHE_DIR)
    assert any(name.startswith("jit_train_step") for name in cached), cached
    hit = "Persistent compilation cache hit for 'jit_train_step'"
    logs = [(tmp_path / "bridge=copy" / f"seed{k}" / "run.log").read_text() for k in (0, 1)]
    assert hit not in logs[0] and hit in logs[1]


@pytest.mark.parametrize(
    "flags,message",
    [
        (
            [f"--config={BRIDGES_TINY}", "--axis=model.bridgee=zero"],
            "error: unknown config field 'model.bridgee' (did you mean model.bridge?)",
        ),
        ([f"--config={BRIDGES_TINY}", "--axis=model.bridge="], "error: the grid is empty"),
        (["--config=experiments/nope.py"], "error: config file"),
        ([f"--config={BRIDGES_TINY[:-5]}:huge"], "error: unknown variant 'huge'"),
        (
            [f"--config={BRIDGES_TINY}", "--baseline=model.bridge=nope"],
            "error: baseline model.bridge=nope matches 0 grid points",
        ),
        (
            [f"--config={BRIDGES_TINY}", "--seeds=three"],
            "error: flag --seeds=three: invalid literal",
        ),
        (
            [f"--config={BRIDGES_TINY}", "--parralel=2"],
            "error: Unknown command line flag 'parralel'. Did you mean: parallel ?",
        ),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path, flags, message):
    code, out, err = _sweep(*flags, f"--workdir={tmp_path}", timeout=120)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith(message), err[-1000:]
    assert "Traceback" not in err
    assert not (tmp_path / "sweep.json").exists()
