"""Sweep results: final test metrics over seeds as results.csv / results.md, and PNG plots.

A sweep directory holds one folder per grid point and, inside it, one run.py workdir per seed
(`<point>/seed<k>/metrics.jsonl`). A seed counts once its metrics.jsonl has the test row of the
run's last step: the row train_and_evaluate writes just before it returns. Only those rows are
aggregated, so a sweep that is still running (or was stopped) gives tables over the seeds that
have finished, with their number in the `seeds` column.

With a baseline point (the sweep's --baseline or its config's `sweep.baseline`), results.md also
compares every other point with it seed by seed. The same seed gives both runs the same data
order and sampling keys (and the same initial parameters where the model is the same), so the
per-seed difference leaves out what the two runs of a seed share, and "+0.011 ± 0.013, higher
in 7 of 8 seeds" tells how consistent a difference is where two overlapping means do not.

  # rebuild the tables and plots from sweep.json:
  python -m s2s_jax.studies.results --workdir=runs/bridges

Nothing here imports JAX: it only reads JSON lines.
"""

import csv
import json
import math
import os
from typing import NamedTuple

import numpy as np

from s2s_jax.training.run_log import METRICS_FILE

MANIFEST = "sweep.json"  # written by s2s_jax.studies.sweep: config, command, points, seeds, metrics
RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
CURVES_PNG = "learning_curves.png"
FINAL_PNG = "final_metrics.png"


def seed_dir(sweep_dir: str, point: str, seed: int) -> str:
    """The run.py workdir of one seed of one grid point."""
    return os.path.join(sweep_dir, point, f"seed{seed}")


def read_rows(run_dir: str) -> list:
    """The rows of a run's metrics.jsonl ([] when there is none).

    A line that does not parse (a run killed while appending it) is skipped: run.py cuts such
    rows back when it resumes.
    """
    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def final_test_row(rows: list, steps: int):
    """The test evaluation at the run's last step, or None while the run is unfinished."""
    tests = [r for r in rows if r.get("split") == "test" and r.get("step") == steps]
    return tests[-1] if tests else None


class PointResult(NamedTuple):
    """One grid point: its finished seeds' final test rows and training-loss curves."""

    name: str
    settings: dict  # dotted config field -> value of this point
    seeds: list  # seeds with a final test row, ascending
    finals: list  # their final test rows, in the order of `seeds`
    curve_steps: np.ndarray  # [N] steps with a training row in every finished seed
    curve_loss: np.ndarray  # [len(seeds), N] training loss at those steps


def collect(sweep_dir: str, points: list, seeds: list) -> list:
    """Reads every point's seeds from the sweep directory.

    Args:
      sweep_dir: the sweep's workdir.
      points: dicts with `name`, `settings` (field -> value) and `steps` (the runs' last step),
        in the order the tables list them.
      seeds: the seeds of the sweep.

    Returns:
      One PointResult per point.
    """
    results = []
    for point in points:
        done, finals, curves = [], [], []
        for seed in seeds:
            rows = read_rows(seed_dir(sweep_dir, point["name"], seed))
            final = final_test_row(rows, point["steps"])
            if final is None:
                continue
            done.append(seed)
            finals.append(final)
            curves.append({r["step"]: r["loss"] for r in rows if "split" not in r})
        common = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
        loss = np.array([[c[s] for s in common] for c in curves], np.float64)
        results.append(
            PointResult(
                point["name"],
                dict(point["settings"]),
                done,
                finals,
                np.array(common, np.int64),
                loss.reshape(len(curves), len(common)),
            )
        )
    return results


def mean_std(values: list) -> tuple:
    """Mean and sample standard deviation (ddof=1) over seeds; std is NaN for one seed, both
    are NaN for none."""
    x = np.asarray(values, np.float64)
    if x.size == 0:
        return math.nan, math.nan
    return float(np.mean(x)), float(np.std(x, ddof=1)) if x.size > 1 else math.nan


def table(results: list, metrics: list) -> list:
    """Rows of the results table: variant, settings, seeds, then mean and std per metric."""
    rows = []
    for r in results:
        row = {"variant": r.name, **r.settings, "seeds": len(r.seeds)}
        for m in metrics:
            row[f"{m}_mean"], row[f"{m}_std"] = mean_std([f[m] for f in r.finals if m in f])
        rows.append(row)
    return rows


def write_csv(path: str, results: list, metrics: list) -> None:
    """One line per variant; floats as Python's repr, so they read back exactly."""
    rows = table(results, metrics)
    fields = list(dict.fromkeys(k for row in rows for k in row))  # first-seen order
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _digits(metric: str) -> int:
    return 1 if metric == "bleu" else 3  # BLEU is on a 0-100 scale, the others 0-1 (or nats)


def _cell(mean: float, std: float, metric: str) -> str:
    if math.isnan(mean):
        return "-"
    digits = _digits(metric)
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


class Paired(NamedTuple):
    """One metric of one point against the baseline, over the seeds both have finished."""

    seeds: int  # seeds finished in both
    mean: float  # mean of (point - baseline) over those seeds
    std: float  # its sample standard deviation (NaN for one seed)
    higher: int  # seeds where the point's value is above the baseline's


def paired(result: PointResult, base: PointResult, metric: str) -> Paired:
    """`result` minus `base`, seed by seed, over their common finished seeds."""
    mine = {s: f[metric] for s, f in zip(result.seeds, result.finals) if metric in f}
    theirs = {s: f[metric] for s, f in zip(base.seeds, base.finals) if metric in f}
    diffs = [mine[s] - theirs[s] for s in sorted(set(mine) & set(theirs))]
    mean, std = mean_std(diffs)
    return Paired(len(diffs), mean, std, sum(d > 0 for d in diffs))


def _paired_cell(p: Paired, metric: str) -> str:
    if not p.seeds:
        return "-"
    digits = _digits(metric)
    spread = "" if math.isnan(p.std) else f" ± {p.std:.{digits}f}"
    return f"{p.mean:+.{digits}f}{spread} ({p.higher}/{p.seeds})"


def paired_markdown(results: list, metrics: list, baseline: str) -> list:
    """Lines of the table of every point minus the baseline point, seed by seed."""
    base = next(r for r in results if r.name == baseline)
    lines = [
        f"Paired by seed against `{baseline}`: mean ± sample standard deviation of each "
        "seed's difference from the baseline run with the same seed, and (in brackets) "
        "the seeds where it is higher / the seeds both finished.",
        "",
        "| variant | " + " | ".join(metrics) + " |",
        "| --- | " + " | ".join("---:" for _ in metrics) + " |",
    ]
    for r in results:
        if r.name != baseline:
            cells = [_paired_cell(paired(r, base, m), m) for m in metrics]
            lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return lines


def markdown(
    results: list, metrics: list, command: str = "", failures: tuple = (), baseline: str = ""
) -> str:
    """The results table as markdown: mean ± sample std over seeds of each final test metric,
    then, given the name of a `baseline` point, every other point's paired differences."""
    lines = []
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [
        "| variant | seeds | " + " | ".join(metrics) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in metrics) + " |",
    ]
    for row in table(results, metrics):
        cells = [_cell(row[f"{m}_mean"], row[f"{m}_std"], m) for m in metrics]
        lines.append(f"| {row['variant']} | {row['seeds']} | " + " | ".join(cells) + " |")
    lines += ["", "Mean ± sample standard deviation over seeds of the final test evaluation."]
    if baseline:
        lines += [""] + paired_markdown(results, metrics, baseline)
    if failures:
        lines += ["", "Failed runs:", ""] + [f"- {f}" for f in failures]
    return "\n".join(lines) + "\n"


def plot_learning_curves(path: str, results: list) -> None:
    """Training loss against step per variant: mean over seeds, shaded from the lowest to the
    highest seed (on a log axis, mean ± std would dip below zero)."""
    import matplotlib  # imported late: plotting is the slow, optional end of a sweep

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in results:
        if not r.seeds or not r.curve_steps.size:
            continue
        mean = r.curve_loss.mean(axis=0)  # [N]
        (line,) = ax.plot(r.curve_steps, mean, label=f"{r.name} ({len(r.seeds)} seeds)")
        if len(r.seeds) > 1:
            ax.fill_between(
                r.curve_steps,
                r.curve_loss.min(axis=0),
                r.curve_loss.max(axis=0),
                color=line.get_color(),
                alpha=0.2,
            )
    ax.set(
        xlabel="step",
        ylabel="training loss",
        yscale="log",
        title="training loss (mean over seeds; shaded: lowest to highest seed)",
    )
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_final_metrics(path: str, results: list, metrics: list) -> None:
    """One panel per metric: the final test value per variant, error bars ± one std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table(results, metrics)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 4), squeeze=False)
    x = np.arange(len(rows))
    for ax, m in zip(axes[0], metrics):
        means = [row[f"{m}_mean"] for row in rows]
        stds = [0.0 if math.isnan(row[f"{m}_std"]) else row[f"{m}_std"] for row in rows]
        ax.bar(x, means, yerr=stds, capsize=3, color="tab:blue", alpha=0.8)
        ax.set_xticks(
            x, [row["variant"] for row in rows], rotation=60, ha="right", fontsize="small"
        )
        ax.set_title(m)
    fig.suptitle("final test metrics (mean over seeds, ± 1 std)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_all(
    sweep_dir: str,
    results: list,
    metrics: list,
    command: str = "",
    failures: tuple = (),
    baseline: str = "",
) -> str:
    """Writes results.csv, results.md and the two PNGs into the sweep directory.

    Returns:
      The markdown tables (also in results.md).
    """
    write_csv(os.path.join(sweep_dir, RESULTS_CSV), results, metrics)
    text = markdown(results, metrics, command, failures, baseline)
    with open(os.path.join(sweep_dir, RESULTS_MD), "w") as f:
        f.write(text)
    if any(r.seeds for r in results):
        plot_learning_curves(os.path.join(sweep_dir, CURVES_PNG), results)
        plot_final_metrics(os.path.join(sweep_dir, FINAL_PNG), results, metrics)
    return text


def main(argv):
    from absl import flags  # the command line only; library users need no flags

    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    workdir = flags.FLAGS.workdir
    path = os.path.join(workdir, MANIFEST)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found; pass the --workdir of a s2s_jax.studies.sweep run"
        )
    with open(path) as f:
        manifest = json.load(f)
    results = collect(workdir, manifest["points"], manifest["seeds"])
    print(
        write_all(
            workdir,
            results,
            manifest["metrics"],
            manifest["command"],
            baseline=manifest.get("baseline") or "",
        ),
        end="",
    )


if __name__ == "__main__":
    from absl import flags

    from s2s_jax import cli

    flags.DEFINE_string("workdir", None, "the sweep's workdir (holding sweep.json)", required=True)
    cli.run(main, malloc_default=None)
