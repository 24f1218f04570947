"""Experiments that are not training runs: Python modules in ``runs/experiments``.

A study module (``runs/experiments/<name with _ for ->.py``) defines::

    DESCRIPTION: str     # one line for `stepsize list`
    RUNTIME: str         # measured on 2 CPU cores, full and --quick
    REFERENCE: str       # the paper / framework it reproduces (markdown)
    SEEDS: int           # seeds of a full run (0..SEEDS-1)
    QUICK_SEEDS: int     # seeds of --quick
    def compute(*, quick: bool, seeds: tuple[int, ...]) -> dict   # every number, JSON-ready
    def report(results: dict, figures_dir: Path) -> tuple[str, list[Path]]
        # markdown and figures from ``results`` alone; the first figure is the README's
    def curves(results: dict) -> Iterable[tuple[str, str, list[int], list[float]]]
        # optional: (run, tag, steps, values) for TensorBoard, written by run_study

:func:`run_study` times ``compute``, writes ``results.json`` and ``experiment.json`` (seeds,
command, threads, wall time) and the module's ``curves`` as TensorBoard event files
(``<root>/<run>/``, tags ``study/<tag>``, replacing an earlier run's), then
:func:`write_study_report` writes ``summary.md``,
``summary.json`` (experiment, software versions, seeds, wall time) and the figures; ``stepsize
report DIR`` calls the latter again, so tables and figures are always regenerated from
``results.json``.
"""

from __future__ import annotations

import functools
import importlib
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from runs.checkpoint import save_json, save_text
from runs.checks import check_seeds
from runs.results import experiment_and_software, software_versions

RESULTS = "results.json"
REQUIRED = ("DESCRIPTION", "RUNTIME", "REFERENCE", "SEEDS", "QUICK_SEEDS", "compute", "report")


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (``ddof = 1``; 0 for a single value) of ``values``,
    as the JSON-ready ``{"mean": ..., "std": ...}`` of study results.

    Non-finite values (NaN, ±inf) are left out and counted, as the runner's tables and curves
    do (``runs.summary`` averages finished runs only, ``runs.results.series_band`` skips
    non-finite values): the dict then has ``"dropped": k``, and when no value is finite, mean
    and std are None (JSON null). :func:`format_mean_std` shows both.
    """
    import numpy as np

    array = np.asarray(values, dtype=np.float64).ravel()
    finite = array[np.isfinite(array)]
    out: dict[str, Any] = {"mean": None, "std": None}
    if finite.size:
        std = float(finite.std(ddof=1)) if finite.size > 1 and np.ptp(finite) > 0 else 0.0
        out = {"mean": float(finite.mean()), "std": std}
    if finite.size < array.size:
        out["dropped"] = int(array.size - finite.size)
    return out


def ranked_mean(stat: dict[str, Any]) -> float:
    """The mean of a :func:`mean_std` result for choosing or ranking settings: +inf when a value
    was left out (a diverged seed, recorded as inf or NaN) or none was finite, so a setting with
    a diverged seed never beats one whose every seed finished (its survivors' mean would)."""
    if stat["mean"] is None or stat.get("dropped"):
        return float("inf")
    return float(stat["mean"])


def format_mean_std(stat: dict[str, Any], spec: str = ".3f") -> str:
    """``"mean ± std"`` in the format ``spec`` (the mean alone when std is 0; ``-`` when no value
    was finite), followed by ``(k non-finite left out)`` when :func:`mean_std` left values out."""
    if stat["mean"] is None:
        text = "-"
    elif stat["std"] == 0:
        text = format(stat["mean"], spec)
    else:
        text = f"{format(stat['mean'], spec)} ± {format(stat['std'], spec)}"
    if stat.get("dropped"):
        text += f" ({stat['dropped']} non-finite left out)"
    return text


def load_study(name: str) -> ModuleType:
    """The study module of a bundled experiment name (``amsgrad-counterexample`` is
    ``runs.experiments.amsgrad_counterexample``)."""
    module = importlib.import_module(f"runs.experiments.{name.replace('-', '_')}")
    missing = [attr for attr in REQUIRED if not hasattr(module, attr)]
    if missing:
        raise TypeError(f"study {name!r} lacks {', '.join(missing)}")
    return module


def run_study(
    name: str, *, quick: bool, seeds: int | None, logdir: str | Path, threads: int = 1
) -> Path:
    """Runs the study ``name`` into ``<logdir>/<name>`` (``-quick`` with ``quick``) and writes its
    report; returns that folder. ``seeds`` overrides the module's seed count; the module computes
    with ``threads`` torch threads (the caller's count is restored afterwards)."""
    from runs.parallel import torch_threads

    module = load_study(name)
    check_seeds(seeds)
    count = seeds if seeds is not None else module.QUICK_SEEDS if quick else module.SEEDS
    root = Path(logdir) / (name + ("-quick" if quick else ""))
    with torch_threads(threads):
        started = time.perf_counter()
        results = module.compute(quick=quick, seeds=tuple(range(count)))
        wall_time = time.perf_counter() - started
    meta = {
        "name": name,
        "kind": "study",
        "description": module.DESCRIPTION,
        "runtime": module.RUNTIME,
        "reference": module.REFERENCE,
        "source": module.__file__,
        "quick": quick,
        "seeds": list(range(count)),
        "command": shlex.join(sys.argv),
        "threads": threads,
        "wall_time_s": wall_time,
        "software": software_versions(),  # (this machine's: a later report keeps them)
    }
    save_json(root / RESULTS, results)
    save_json(root / "experiment.json", meta)
    if hasattr(module, "curves"):
        from runs.tensorboard import write_curves

        write_curves(root, module.curves(results))
    write_study_report(root)
    return root


def prepare_study_report(root: Path) -> Callable[[], tuple[str, list[Path]]]:
    """Reads and checks a study folder's ``experiment.json`` and ``results.json``, writing
    nothing; returns the function that writes its report (:func:`write_study_report`).

    Raises:
        ValueError: naming the file, when it is not valid JSON or lacks what a study writes.
    """
    from schedulers.files import read_json

    meta: dict[str, Any] = read_json(root / "experiment.json", dict)
    missing = [key for key in ("name", "description", "seeds", "wall_time_s") if key not in meta]
    if missing:
        raise ValueError(f"{root / 'experiment.json'}: lacks {', '.join(missing)}")
    if not (root / RESULTS).is_file():
        raise FileNotFoundError(f"{root} holds no {RESULTS}; run the study again")
    results = read_json(root / RESULTS)
    name = meta["name"]
    if not isinstance(name, str) or name.replace("-", "_") not in _study_modules():
        raise ValueError(f"{root / 'experiment.json'}: {name!r} is not a bundled study")
    module = load_study(name)
    return functools.partial(_write_study_report, root, meta, results, module)


def _study_modules() -> set[str]:
    """The module names of the bundled studies (``runs/experiments/*.py``)."""
    folder = Path(__file__).resolve().parent / "experiments"
    return {path.stem for path in folder.glob("*.py") if not path.stem.startswith("_")}


def write_study_report(root: Path) -> tuple[str, list[Path]]:
    """``summary.md``, ``summary.json`` and the figures of a study folder, from its files."""
    return prepare_study_report(root)()


def _write_study_report(
    root: Path, meta: dict[str, Any], results: Any, module: ModuleType
) -> tuple[str, list[Path]]:
    markdown, figures = module.report(results, root / "figures")
    experiment, software = experiment_and_software(meta)
    summary = {
        "experiment": experiment,
        "software": software,
        "seeds": meta["seeds"],
        "wall_time_s": meta["wall_time_s"],
        "readme_figure": str(figures[0].relative_to(root)) if figures else None,
        "results": RESULTS,
    }
    save_json(root / "summary.json", summary)
    save_text(root / "summary.md", f"# {meta['name']}\n\n{meta['description']}\n\n{markdown}")
    return markdown, figures
