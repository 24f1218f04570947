"""``stepsize list``: the bundled experiments, one line each, with how long they take.

The catalogue (``runs/experiments``): TOML training comparisons and, for the experiments that are
not training runs, Python study modules (``runs.study``). :data:`CATALOGUE` is the order in which
``stepsize list`` and the README's Results section present them.
"""

from __future__ import annotations

import argparse

from runs.config import bundled_experiments

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


def catalogue_order(names) -> list[str]:
    """``names`` in the catalogue's order, others after them alphabetically."""
    rank = {name: i for i, name in enumerate(CATALOGUE)}
    return sorted(names, key=lambda name: (rank.get(name, len(rank)), name))


def describe() -> list[tuple[str, str, str]]:
    """``(name, runtime, description)`` of each bundled experiment, read from its file."""
    from runs.config import tomllib

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
