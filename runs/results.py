"""The finished runs of an experiment folder, read back, and what every report of them shares.

Runs are read from the ``result.json`` of each run (``<dir>/<variant>/seed<k>/``) and the
``experiment.json`` written when the experiment started. Shared by the tables
(``runs.summary``), the figures (``runs.figures``) and the studies (``runs.study``): the metric
labels, runs grouped by variant, a series' mean +- std band over seeds, and the software
versions a summary records.
"""

from __future__ import annotations

import math
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runs.checkpoint import RESULT

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


def load_meta(experiment_dir: Path) -> dict[str, Any]:
    """The folder's ``experiment.json`` (``{}`` when there is none).

    Raises:
        ValueError: naming the file, when it is not a JSON object.
    """
    from schedulers.files import read_json

    path = experiment_dir / "experiment.json"
    return read_json(path, dict) if path.is_file() else {}


def collect_results(experiment_dir: str | Path) -> list[dict[str, Any]]:
    """The finished runs the experiment's last command asked for: the variants x seeds of its
    ``experiment.json`` (every finished run when it names none), variant order, then seeds."""
    return _partition_results(Path(experiment_dir))[0]


def other_runs(experiment_dir: str | Path) -> list[dict[str, Any]]:
    """Finished runs in the folder that the last command did not ask for (other variants or
    seeds, from earlier commands): left out of the summary, listed beside it."""
    return _partition_results(Path(experiment_dir))[1]


def _partition_results(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from runs.checkpoint import load_result

    meta = load_meta(root)
    order = [v["name"] for v in meta.get("variants", [])]
    seeds = meta.get("seeds")
    results = [load_result(p.parent) for p in root.glob(f"*/seed*/{RESULT}")]
    rank = {name: i for i, name in enumerate(order)}
    results.sort(key=lambda r: (rank.get(r["variant"], len(rank)), r["variant"], r["seed"]))
    if not order or seeds is None:
        return results, []
    asked = [r for r in results if r["variant"] in rank and r["seed"] in seeds]
    return asked, [r for r in results if not (r["variant"] in rank and r["seed"] in seeds)]


def group_by_variant(results: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The runs of each variant, the variants in first-appearance order."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_variant.setdefault(r["variant"], []).append(r)
    return by_variant


def variant_prefix(name: str) -> str:
    """The part of a variant's name before its first dot (a figure panel, a published row)."""
    return name.split(".", 1)[0]


def eval_series(metric: str):
    """A getter of a run's ``(steps, values)`` of the evaluation metric ``metric``."""
    return lambda r: (r["history"]["eval"]["step"], r["history"]["eval"][metric])


def series_band(runs: Sequence[dict[str, Any]], get) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
