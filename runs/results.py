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
from collections.abc import Callable, Sequence
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
    """Versions of Python, the platform and the libraries that change the numbers, and the CPU
    that ran them (``cpu``: its model name; ``cpu_kernels``: the vector instruction set torch's
    own CPU kernels dispatch to, ``torch.backends.cpu.get_cpu_capability()``).

    The CPU changes the numbers too: a matrix product or a convolution sums in another order on
    another processor (MKL's and oneDNN's kernels, and torch's, are chosen by instruction set and
    cache sizes), and a non-convex model trained for thousands of steps carries such a last-bit
    difference to another end. The same ``stepsize run`` of the ``learning-rate-free``
    experiment gave DoG on the MNIST-1D CNN 93.3 +- 0.8 % on the machine of the README's
    results and 77.2 +- 26.9 % on an AMD EPYC with AVX2 kernels (one seed stalled at 46 %),
    while its convex problems' rows agreed to every printed digit.
    """
    import importlib.metadata

    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in ("stepsize", "torch", "numpy", "tensorboard", "mnist1d"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions["cpu"] = cpu_model()
    versions["cpu_kernels"] = torch_cpu_kernels()
    return versions


def experiment_and_software(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """An experiment's ``experiment.json`` (``meta``) split into the experiment and the versions
    and CPU recorded when it ran (``stepsize run`` writes :func:`software_versions` there, on
    the machine that runs it), so that a report written later, or on another machine, keeps
    them; this process's for a folder from before they were recorded."""
    experiment = {key: value for key, value in meta.items() if key != "software"}
    return experiment, meta.get("software") or software_versions()


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name: the first ``model name`` of ``cpuinfo`` (Linux), else
    ``platform.processor()``, else ``"unknown"``."""
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def torch_cpu_kernels() -> str:
    """The instruction set torch's CPU kernels run here (``"AVX2"``, ``"AVX512"``, ...), or
    ``"unknown"`` where this torch cannot say."""
    import torch

    capability = getattr(torch.backends.cpu, "get_cpu_capability", None)
    return capability() if capability is not None else "unknown"


def software_line(software: dict[str, str]) -> str:
    """The software and CPU of a summary as the README's *Run:* lines give them: ``torch 2.13.0,
    Python 3.11.7; CPU: AMD EPYC (torch's AVX2 kernels)``. (Summaries written before the CPU was
    recorded give the versions alone.)"""
    line = f"torch {software['torch']}, Python {software['python']}"
    if "cpu" in software:
        line += f"; {cpu_text(software['cpu'], software.get('cpu_kernels', 'unknown'))}"
    return line


def cpu_text(cpu: str, kernels: str) -> str:
    """A CPU as the *Run:* lines and the bench's header name it: ``CPU: AMD EPYC (torch's AVX2
    kernels)``, from :func:`cpu_model` and :func:`torch_cpu_kernels` (or a summary's record)."""
    return f"CPU: {cpu} (torch's {kernels} kernels)"


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


# A run's ``(steps, values)`` of one series (a value None where the run had none).
_SeriesGetter = Callable[[dict[str, Any]], tuple[Sequence[int], Sequence[float | None]]]


def eval_series(metric: str) -> _SeriesGetter:
    """A getter of a run's ``(steps, values)`` of the evaluation metric ``metric``."""
    return lambda r: (r["history"]["eval"]["step"], r["history"]["eval"][metric])


def series_band(
    runs: Sequence[dict[str, Any]], get: _SeriesGetter
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
