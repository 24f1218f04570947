"""``stepsize list``: the bundled experiments (``runs/experiments/*.toml``), one line each."""

from __future__ import annotations

import argparse

from runs.config import bundled_experiments

# The comparison `stepsize run` runs without a name (the catalogue's d2l comparison will take
# its place).
DEFAULT_EXPERIMENT = "mnist1d-schedules"


def describe() -> list[tuple[str, str, str]]:
    """``(name, runtime, description)`` of each bundled experiment, read from its file."""
    from runs.config import tomllib

    rows = []
    for name, path in bundled_experiments().items():
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        rows.append((name, raw.get("runtime", ""), raw.get("description", "")))
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    del args
    rows = describe()
    width = max((len(name) for name, _, _ in rows), default=0)
    for name, runtime, description in rows:
        marker = " (default)" if name == DEFAULT_EXPERIMENT else ""
        when = f" [{runtime}]" if runtime else ""
        print(f"{name:<{width}}  {description}{when}{marker}")
    print("\nrun one with: stepsize run NAME [--quick]")
    return 0
