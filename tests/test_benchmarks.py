"""The benchmark scripts run and print their JSON line (tiny sizes; nothing here is timed)."""

import ast
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

TINY = ["--batch=2", "--src_len=4", "--tgt_len=4", "--vocab=20", "--emb=8", "--hidden=8"]


def _run(script, *args):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


@pytest.mark.parametrize(
    "bridge,p,precision", [("dense", "0.25", "float32"), ("attention", "0", "bfloat16")]
)
def test_train_throughput_prints_its_json_line(bridge, p, precision):
    row = _run(
        "train_throughput.py",
        *TINY,
        "--steps=2",
        "--warmup=1",
        f"--bridge={bridge}",
        f"--sampling_prob={p}",
        f"--precision={precision}",
    )
    for key in (
        "tokens_per_s",
        "median_step_ms",
        "compile_s",
        "param_count",
        "gflop_per_step",
        "matmul_peak_gflops",
        "peak_fraction",
        "batch",
        "src_len",
        "tgt_len",
        "vocab",
        "emb",
        "hidden",
        "layers",
        "cell",
        "bridge",
        "sampling_prob",
        "steps",
        "warmup",
    ):
        assert key in row, key
    assert row["framework"] == "jax" and row["bridge"] == bridge
    assert row["precision"] == precision
    assert row["traces"] == 1  # one compilation serves every step
    assert row["cpu_model"] == common.cpu_model() and row["cpu_model"]  # which machine kind
    assert row["tokens_per_s"] > 0 and row["matmul_peak_gflops"] > 0 and row["param_count"] > 0


def test_decode_throughput_reports_greedy_and_beam():
    row = _run("decode_throughput.py", *TINY, "--calls=2", "--warmup=1", "--beam_size=2")
    assert row["greedy"]["sentences_per_s"] > 0
    assert row["beam"] is None or row["beam"]["sentences_per_s"] > 0


def test_flop_count_of_the_target_setting():
    sizes = dict(
        batch=64,
        src_len=30,
        tgt_len=30,
        vocab=8000,
        emb=256,
        hidden=512,
        dec_hidden=512,
        layers=1,
        cell="lstm",
    )
    # Encoder and decoder LSTMs (input + recurrent), the dense bridge, the output layer.
    lstm = 2 * 64 * 30 * (256 + 512) * 4 * 512
    want = 2 * lstm + 2 * 64 * 1024 * 1024 + 2 * 64 * 30 * 512 * 8000
    assert common.forward_matmul_flops(bridge="dense", **sizes) == want
    assert common.train_gflop_per_step(bridge="dense", **sizes) == pytest.approx(3 * want / 1e9)
    # Attention adds its projections and the context to the decoder input and output.
    assert common.forward_matmul_flops(bridge="attention", **sizes) > want


def test_hlo_summary_counts_the_loops_and_matmuls_of_a_compiled_step():
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    def loss(w, xs):
        def step(h, x):
            h = jnp.tanh(h @ w + x)  # [4, 8]
            return h, h

        return jax.lax.scan(step, jnp.zeros((4, 8)), xs)[1].sum()

    args = (jnp.ones((8, 8)), jnp.ones((5, 4, 8)))
    forward = common.hlo_summary(jax.jit(loss).lower(*args).compile().as_text())
    both = common.hlo_summary(jax.jit(jax.grad(loss)).lower(*args).compile().as_text())
    assert forward["hlo_while_loops"] == 1 and both["hlo_while_loops"] == 2  # the backward scan
    assert forward["hlo_dots"] >= 1 and both["hlo_dots"] > forward["hlo_dots"]
    assert both["hlo_lines"] > forward["hlo_lines"] > 0
    assert forward["hlo_cublas_calls"] == forward["hlo_triton_gemms"] == 0  # a CPU program


def test_compile_probe_compiles_each_variant_in_its_own_process():
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "compile_probe.py"),
            *TINY,
            "--steps=1",
            "--warmup=0",
            "--variants=default,autotune_0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    assert [r["variant"] for r in rows] == ["default", "autotune_0"]
    assert rows[1]["xla_flags"] == "--xla_gpu_autotune_level=0"
    for row in rows:
        assert "error" not in row, row
        assert row["compile_s"] > row["lower_s"] > 0 and row["traces"] == 1
        assert row["hlo_while_loops"] >= 2  # encoder and decoder scans, forward and backward
        assert row["bridge"] == "copy" and row["batch"] == 2


def test_compile_probe_reports_a_flag_xla_rejects():
    env = dict(os.environ, XLA_FLAGS="--xla_no_such_flag=1")
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "compile_probe.py"),
            *TINY,
            "--variants=default",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )
    assert proc.returncode == 1  # every variant failed
    (row,) = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    assert "--xla_no_such_flag" in row["error"]


def test_multiseed_benchmark_runs_each_side_in_its_own_process_with_its_malloc_mode():
    config = os.path.join(ROOT, "experiments", "bridges.py") + ":tiny"
    row = _run("multiseed.py", f"--config={config}", "--k=2", "--steps=3", "--repeats=1")
    assert row["sequential_malloc_tuning"] == "keep"  # run.py's default
    assert row["vmapped_malloc_tuning"] == "keep_one_arena"  # s2s_jax.studies.multiseed's default
    assert row["k"] == 2 and len(row["sequential_runs_s"]) == len(row["vmapped_runs_s"]) == 1
    assert row["sequential_s"] > 0 and row["vmapped_s"] > 0
    assert row["max_loss_diff"] < 1e-4  # both sides trained the same seeds on the same batches


def test_real_length_benchmark_prints_real_tokens_and_compiles_no_more_after_warmup(tmp_path):
    side = "tokens"  # buckets and token batches: the side that uses both
    lines = [" ".join(f"w{(i * j) % 9}" for j in range(1 + i % 17)) for i in range(80)]
    train = tmp_path / "train.tsv"
    train.write_text("".join(f"{x}\t{x}\n" for x in lines))
    row = _run(
        "real_length.py",
        f"--side={side}",
        "--steps=3",
        "--hidden=8",
        "--emb=8",
        "--batch_size=8",
        f"--train_file={train}",
        "--max_len=24",
        f"--data_dir={tmp_path / 'tfds'}",
    )
    assert row["side"] == side and row["steps"] == 3 and row["real_tokens_per_s"] > 0
    assert row["shapes_compiled"] >= 2 and row["compiles_after_warmup"] == 0
    assert 0 <= row["padded_share"] < 1 and row["cpu"] == common.cpu_model()


def test_ab_runs_each_checkout_alternately_and_names_both_commits():
    # This checkout against itself: both sides run the same step, so both report tokens/s.
    row = _run(
        "ab.py",
        f"--baseline={ROOT}",
        *TINY,
        "--steps=2",
        "--warmup=1",
        "--rounds=1",
        "--bridges=dense",
        "--sampling_probs=0.25",
    )
    assert row["bridge"] == "dense" and row["sampling_prob"] == 0.25
    assert len(row["baseline_runs"]) == len(row["this_runs"]) == 1 and "errors" not in row
    assert row["baseline_tokens_per_s"] > 0 and row["this_tokens_per_s"] > 0 and row["ratio"] > 0
    assert row["baseline_commit"] == row["this_commit"] != "unknown"


def _dict_keys(path, name):
    """The string keys of the literal dict `name = {...}` at the top of the file `path`, read
    without running it (torch_baseline.py imports torch)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == [name]:
            return {key.value for key in node.value.keys}
    raise AssertionError(f"{path} has no {name} = {{...}}")


def test_the_benchmarks_know_every_bridge_of_the_registry():
    from s2s_jax.models import bridges, model  # pylint: disable=import-outside-toplevel

    assert common.BRIDGE_NAMES == tuple(model.BRIDGE_SPELLINGS)
    assert set(common.BRIDGE_COSTS) == set(bridges.BRIDGES)
    torch_bridges = _dict_keys(os.path.join(ROOT, "benchmarks", "torch_baseline.py"), "BRIDGES")
    assert torch_bridges == set(bridges.BRIDGES)  # a PyTorch implementation of each
    for bridge in common.BRIDGE_NAMES:  # the decoder width the model gives it
        cfg = model.ModelConfig.from_experiment(
            src_vocab=20,
            tgt_vocab=20,
            hidden=8,
            bridge=bridge,
            attention_init=common.ATTENTION_INIT,
        )
        assert common.decoder_hidden(bridge, 8) == cfg.dec_hidden, bridge
        assert (common.initial_bridge(bridge), cfg.attention != "none") == (
            cfg.bridge,
            bridge == common.ATTENTION_BRIDGE,
        )


def test_subprocess_args_pass_every_size_flag_and_the_overrides():
    # In a subprocess: absl's flags are global, and the benchmarks define theirs at import.
    code = (
        "import json, common; from absl import flags; common.define_size_flags(); "
        "flags.FLAGS(['prog', '--batch=3']); "
        "print(json.dumps(common.subprocess_args('copy', 0.25, precision='bfloat16', "
        "sample_from='argmax')))\n"
        "try: common.subprocess_args('copy', 0.25, sampling_prob=0.5)\n"
        "except ValueError as e: print(e)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=os.path.join(ROOT, "benchmarks"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = proc.stdout.splitlines()
    args = json.loads(first)
    assert len(args) == len(common.SIZE_FLAGS) + 2
    for expected in ("--batch=3", "--precision=bfloat16", "--sample_from=argmax", "--bridge=copy"):
        assert expected in args
    assert "--sample_from=categorical" not in args and "--precision=float32" not in args
    assert second == "not size flags: ['sampling_prob']"


def test_compare_offers_every_pytorch_sampler_and_rejects_unknown_choices():
    def compare(*args):
        return subprocess.run(
            [sys.executable, os.path.join(ROOT, "benchmarks", "compare.py"), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    proc = compare("--precisions=float16")
    assert proc.returncode != 0
    assert proc.stderr.strip() == (
        "error: --precisions: unknown ['float16']; choose from ['bfloat16', 'float32']"
    )
    proc = compare("--torch_categoricals=gumbel,topk")
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1
    offered = ast.literal_eval(proc.stderr.split("choose from ")[1])
    samplers = _dict_keys(os.path.join(ROOT, "benchmarks", "torch_sampling.py"), "SAMPLERS")
    assert set(offered) == samplers == {"gumbel", "inverse_cdf", "multinomial"}
