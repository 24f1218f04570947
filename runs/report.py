"""``stepsize report``: regenerates the tables and figures of experiment folders from their runs.

``stepsize report DIR...`` rewrites each folder's ``summary.json``, ``summary.md`` and figures
(``runs.summary``, ``runs.figures``); with ``--readme README.md`` it rewrites the README's Results
section instead (``runs.readme``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from runs.readme import update_readme
from runs.summary import write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dirs",
        nargs="+",
        metavar="DIR",
        help="experiment folders (<logdir>/<experiment>), or a logdir for all its full runs",
    )
    parser.add_argument(
        "--readme",
        metavar="README.md",
        help="also write the Results section of this README (figures into docs/results/ beside it)",
    )


def experiment_dirs(dirs: Sequence[str | Path]) -> list[Path]:
    """The experiment folders named: a folder holding ``experiment.json`` is one; any other
    folder (a ``--logdir``) stands for the full runs inside it (``*-quick`` ones left out)."""
    found = []
    for directory in map(Path, dirs):
        if (directory / "experiment.json").is_file():
            found.append(directory)
            continue
        inside = sorted(
            d
            for d in directory.iterdir()
            if (d / "experiment.json").is_file() and not d.name.endswith("-quick")
        )
        if not inside:
            raise FileNotFoundError(f"{str(directory)!r} holds no experiment (no experiment.json)")
        found += inside
    return found


def run(args: argparse.Namespace) -> int:
    for directory in args.dirs:
        if not Path(directory).is_dir():
            raise FileNotFoundError(f"{directory!r} is not a folder")
    import contextlib

    from runs.checkpoint import folder_lock

    args.dirs = [str(d) for d in experiment_dirs(args.dirs)]
    with contextlib.ExitStack() as locks:  # no run may write a folder while it is reported
        for directory in args.dirs:
            locks.enter_context(folder_lock(directory, option="folder"))
        return _write_reports(args)


def _write_reports(args: argparse.Namespace) -> int:
    if args.readme:
        readme = Path(args.readme)
        if not readme.is_file():
            raise FileNotFoundError(f"--readme: {args.readme!r} does not exist")
        update_readme(readme, [Path(d) for d in args.dirs])
        print(f"wrote the Results section of {readme} from {len(args.dirs)} experiments")
        return 0
    for directory in args.dirs:
        table, figures = write_report(directory)
        print(f"{directory}:\n{table}")
        print(f"wrote summary.json, summary.md and {len(figures)} figures in {directory}")
    return 0
