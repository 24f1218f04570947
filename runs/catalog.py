"""``stepsize list``: the bundled experiments, one line each, with how long they take.

The catalogue (``runs/experiments``): TOML training comparisons and, for the experiments that are
not training runs, Python study modules (``runs.study``). :data:`CATALOGUE` is the order in which
``stepsize list`` and the README's Results section present them.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Iterable
from pathlib import Path

EXPERIMENTS_DIR = Path(__file__).resolve().parent / "experiments"

# The comparison `stepsize run` runs without a name.
DEFAULT_EXPERIMENT = "d2l-schedules"
CATALOGUE = (
    "d2l-schedules",
    "mnist1d-baselines",
    "optimizers",
    "clr",
    "warmup",
    "lr-sensitivity",
    "quadratic",
    "amsgrad-counterexample",
    "adaptive-generalization",
    "schedule-theory",
    "learning-rate-free",
)


def bundled_experiments() -> dict[str, Path]:
    """The experiments shipped in ``runs/experiments``, by name: TOML files by their stem, Python
    modules (experiments that are not training runs, see ``runs.study``) by their stem with
    ``-`` for ``_``."""
    found = {path.stem: path for path in EXPERIMENTS_DIR.glob("*.toml")}
    for path in EXPERIMENTS_DIR.glob("*.py"):
        if not path.stem.startswith("_"):
            found[path.stem.replace("_", "-")] = path
    return dict(sorted(found.items()))


def find_experiment(name_or_path: str) -> Path:
    """A bundled experiment's file by name, or a ``.toml`` path.

    Raises:
        FileNotFoundError: a ``.toml`` path that does not exist.
        ValueError: an unknown name, a folder, or a file that is not ``.toml`` (a Python file is
            not run as an experiment: ``runs.run`` takes your own models and data from Python).
    """
    bundled = bundled_experiments()
    if name_or_path in bundled:
        return bundled[name_or_path]
    if not name_or_path.strip():  # (Path("") is the current folder)
        raise ValueError(
            f"experiment: an empty name {name_or_path!r}; give a bundled experiment or a .toml file"
        )
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if path.is_dir():
            raise ValueError(f"experiment file {str(path)!r} is a folder, not a .toml file")
        if path.exists() and not path.is_file():
            raise ValueError(
                f"experiment file {str(path)!r} is not a file (a FIFO, socket or device); "
                "give a .toml file"
            )
        if not path.is_file():
            raise FileNotFoundError(f"experiment file {str(path)!r} does not exist")
        if path.suffix != ".toml":
            raise ValueError(
                f"experiment file {str(path)!r} is not a .toml file; give a bundled experiment "
                f"({', '.join(bundled) or 'none'}) or a .toml file (your own Python code runs "
                "through runs.run, see the README)"
            )
        return path
    raise ValueError(
        f"unknown experiment {name_or_path!r}; bundled: {', '.join(bundled) or '(none)'}, "
        "or give a path to a .toml file"
    )


def catalogue_order(names: Iterable[str]) -> list[str]:
    """``names`` in the catalogue's order, others after them alphabetically."""
    rank = {name: i for i, name in enumerate(CATALOGUE)}
    return sorted(names, key=lambda name: (rank.get(name, len(rank)), name))


def describe() -> list[tuple[str, str, str]]:
    """``(name, runtime, description)`` of each bundled experiment, read from its file."""
    found = bundled_experiments()
    rows = []
    for name in catalogue_order(found):
        path = found[name]
        if path.suffix == ".toml":
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
            rows.append((name, raw.get("runtime", ""), raw.get("description", "")))
        else:
            from runs.study import load_study

            module = load_study(name)
            rows.append((name, module.RUNTIME, module.DESCRIPTION))
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    del args
    for name, runtime, description in describe():
        marker = " (default)" if name == DEFAULT_EXPERIMENT else ""
        print(f"{name}{marker}\n    {description}\n    time: {runtime or 'not stated'}")
    print("\nrun one with: stepsize run NAME [--quick]")
    return 0
