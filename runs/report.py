"""Tables and figures of an experiment, made from its run folders (``stepsize report``).

Everything here is computed from the ``result.json`` of each run (``<dir>/<variant>/seed<k>/``)
and the ``experiment.json`` written when the experiment started, so ``stepsize report DIR``
regenerates exactly what ``stepsize run`` wrote:

- ``summary.json``: the experiment, software versions, and every variant x seed with its status,
  final and best metrics, wall time, seed and resolved config (histories are left in the runs);
- ``summary.md``: per variant, mean +- standard deviation over seeds (sample standard deviation,
  ``ddof = 1``; none shown for one seed) of the final metrics; diverged seeds are named with the
  step and value of their first non-finite loss and left out of the means;
- ``figures/*.png`` (matplotlib, Agg backend): each evaluation metric and the training loss
  against the step, every variant overlaid, the line the mean over seeds and the shaded band
  mean +- std; and ``figures/schedules.png``, the scheduled hyperparameters each variant used.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runs.checkpoint import RESULT, save_json, save_text
from runs.tensorboard import EVAL_METRICS

TABLE_METRICS = ("test_accuracy", "test_loss", "train_loss", "train_accuracy")
METRIC_LABELS = {
    "test_accuracy": "test accuracy",
    "test_loss": "test loss",
    "train_loss": "train loss",
    "train_accuracy": "train accuracy",
}


def software_versions() -> dict[str, str]:
    """Versions of Python, the platform and the libraries that change the numbers."""
    import importlib.metadata

    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in ("stepsize", "torch", "numpy", "tensorboard", "mnist1d"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def collect_results(experiment_dir: str | Path) -> list[dict[str, Any]]:
    """Every finished run's result under ``experiment_dir`` (variant folders, then seeds)."""
    root = Path(experiment_dir)
    meta = load_meta(root)
    order = [v["name"] for v in meta.get("variants", [])]
    results = [json.loads(p.read_text()) for p in root.glob(f"*/seed*/{RESULT}")]
    rank = {name: i for i, name in enumerate(order)}
    results.sort(key=lambda r: (rank.get(r["variant"], len(rank)), r["variant"], r["seed"]))
    return results


def load_meta(experiment_dir: Path) -> dict[str, Any]:
    path = experiment_dir / "experiment.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else None


def _fmt(metric: str, mean: float, std: float | None) -> str:
    if metric.endswith("accuracy"):
        text = f"{100 * mean:.2f}"
        return text + (f" ± {100 * std:.2f}" if std is not None else "")
    text = f"{mean:.4f}"
    return text + (f" ± {std:.4f}" if std is not None else "")


def variant_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant (in first-appearance order): seeds, finished and diverged runs, the mean and
    std of each final metric over the finished seeds, and the mean wall time."""
    rows: dict[str, dict[str, Any]] = {}
    for r in results:
        row = rows.setdefault(r["variant"], {"variant": r["variant"], "runs": []})
        row["runs"].append(r)
    out = []
    for row in rows.values():
        finished = [r for r in row["runs"] if r["status"] == "finished"]
        stats = {}
        for m in TABLE_METRICS:
            mean, std = _mean_std([r["final"][m] for r in finished]) if finished else (None, None)
            stats[m] = {"mean": mean, "std": std}
        out.append({
            "variant": row["variant"],
            "seeds": [r["seed"] for r in row["runs"]],
            "finished": len(finished),
            "diverged": [{"seed": r["seed"], **r["diverged"]} for r in row["runs"]
                         if r["diverged"]],
            "final": stats,
            "wall_time_s": float(np.mean([r["wall_time_s"] for r in row["runs"]])),
        })  # fmt: skip
    return out


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """The results table: one row per variant, mean ± std over seeds (accuracies in %)."""
    header = ["variant", "seeds", *(f"final {METRIC_LABELS[m]}" for m in TABLE_METRICS)]
    lines = ["| " + " | ".join([*header, "time (s)", "status"]) + " |"]
    lines.append("|" + "---|" * (len(header) + 2))
    for row in variant_rows(results):
        cells = [row["variant"], str(len(row["seeds"]))]
        for m in TABLE_METRICS:
            stat = row["final"][m]
            cells.append(_fmt(m, stat["mean"], stat["std"]) if stat["mean"] is not None else "-")
        status = "ok"
        if row["diverged"]:
            status = "diverged: " + ", ".join(
                f"seed {d['seed']} at step {d['step']} (loss {d['value']})" for d in row["diverged"]
            )
        cells += [f"{row['wall_time_s']:.1f}", status]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary(results: Sequence[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """``summary.json``: the experiment, versions, per-variant aggregates and every run."""
    runs = [{k: v for k, v in r.items() if k != "history"} for r in results]
    return {
        "experiment": meta,
        "software": software_versions(),
        "variants": variant_rows(results),
        "runs": runs,
    }


def _series_band(runs: Sequence[dict[str, Any]], get) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps, mean and sample std (``ddof = 1``) over runs of a series, aligned on the step (runs
    that stopped early contribute to the steps they reached); non-finite values are ignored."""
    by_step: dict[int, list[float]] = {}
    for r in runs:
        steps, values = get(r)
        for s, v in zip(steps, values):
            if v is not None and math.isfinite(v):
                by_step.setdefault(s, []).append(v)
    steps = np.array(sorted(by_step))
    mean = np.array([np.mean(by_step[s]) for s in steps])
    std = np.array([np.std(by_step[s], ddof=1) if len(by_step[s]) > 1 else 0.0 for s in steps])
    return steps, mean, std


def _smooth(values: Sequence[float], window: int) -> list[float]:
    if window <= 1:
        return list(values)
    arr = np.asarray(values, dtype=float)
    kernel = np.ones(window) / window
    out = np.convolve(arr, kernel, mode="valid")
    return [float("nan")] * (window - 1) + out.tolist()


def write_figures(results: Sequence[dict[str, Any]], out_dir: Path, title: str) -> list[Path]:
    """PNG figures: each evaluation metric and the training loss against steps (mean line and
    mean ± std band over seeds, every variant overlaid), and the schedules used."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_variant.setdefault(r["variant"], []).append(r)
    written = []

    def one_figure(name: str, ylabel: str, get, log_y: bool = False) -> None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for variant, runs in by_variant.items():
            steps, mean, std = _series_band(runs, get)
            if len(steps) == 0:
                continue
            (line,) = ax.plot(steps, mean, label=variant)
            if len(runs) > 1:
                ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_xlabel("step (updates)")
        ax.set_ylabel(ylabel)
        if log_y:
            ax.set_yscale("log")
        ax.set_title(f"{title}: {ylabel}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    for metric in EVAL_METRICS:
        one_figure(
            metric,
            METRIC_LABELS[metric],
            lambda r, m=metric: (r["history"]["eval"]["step"], r["history"]["eval"][m]),
        )

    def train_loss(r):
        h = r["history"]["train_loss"]
        window = max(1, len(h["value"]) // 100)
        return h["step"], _smooth(h["value"], window)

    one_figure("train_loss_per_step", "train loss (moving average)", train_loss, log_y=True)

    keys = sorted({tag for r in results for tag in r["history"]["hyper"]})
    if keys:
        fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.6 * len(keys)), squeeze=False)
        for ax, tag in zip(axes[:, 0], keys):
            for variant, runs in by_variant.items():
                series = runs[0]["history"]["hyper"].get(tag)
                if series:
                    ax.step(series["step"], series["value"], where="post", label=variant)
            ax.set_ylabel(tag.removeprefix("hyper/"))
            ax.grid(alpha=0.3)
        axes[0, 0].set_title(f"{title}: schedules used")
        axes[-1, 0].set_xlabel("step (updates)")
        axes[0, 0].legend(fontsize="small")
        fig.tight_layout()
        path = out_dir / "schedules.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_report(experiment_dir: str | Path) -> tuple[str, list[Path]]:
    """Writes ``summary.json``, ``summary.md`` and the figures of an experiment folder from its
    runs; returns the markdown table and the figure paths."""
    root = Path(experiment_dir)
    results = collect_results(root)
    if not results:
        raise FileNotFoundError(f"{root} holds no finished runs (no */seed*/{RESULT})")
    meta = load_meta(root)
    title = meta.get("name", root.name)
    table = markdown_table(results)
    save_json(root / "summary.json", summary(results, meta))
    header = f"# {title}\n\n{meta.get('description', '')}\n\n"
    save_text(root / "summary.md", header + table)
    figures = write_figures(results, root / "figures", title)
    return table, figures


# ---------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dirs", nargs="+", metavar="DIR", help="experiment folders (<logdir>/<experiment>)"
    )


def run(args: argparse.Namespace) -> int:
    for directory in args.dirs:
        if not Path(directory).is_dir():
            raise FileNotFoundError(f"{directory!r} is not a folder")
    for directory in args.dirs:
        table, figures = write_report(directory)
        print(f"{directory}:\n{table}")
        print(f"wrote summary.json, summary.md and {len(figures)} figures in {directory}")
    return 0
