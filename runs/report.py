"""``stepsize report``: regenerates the tables and figures of experiment folders from their runs.

``stepsize report DIR...`` rewrites each folder's ``summary.json``, ``summary.md`` and figures
(``runs.summary``, ``runs.figures``). With ``--readme README.md`` it does that too and also
rewrites, in the README's Results section, the subsection of each experiment named (its table,
figure and *Run:* line; ``runs.readme``), keeping every other experiment's subsection as it was;
it refuses a ``--quick`` run, a run of some variants only and two folders of one experiment
there, since that section is written from full runs. Every folder, its files and ``--readme`` are
checked before anything is written, the lock files included: one broken folder leaves the others
as they were. An empty ``--readme`` and a read-only file the report would rewrite (``summary.md``,
a figure) are refused, as a read-only README is.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from runs.readme import check_full_runs, check_readme, update_readme


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
        help="also rewrite these experiments' subsections of this README's Results section "
        "(a Markdown file, .md; figures into docs/results/ beside it; full runs only, the other "
        "experiments kept)",
    )


def experiment_dirs(dirs: Sequence[str | Path]) -> list[Path]:
    """The experiment folders named: a folder holding ``experiment.json`` is one; any other
    folder (a ``--logdir``) stands for the full runs inside it (``*-quick`` ones left out). A
    folder named twice (``X`` and ``X/``, or a logdir and one of its experiments) is reported
    once, where it is first named."""
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
    unique: dict[Path, Path] = {}
    for directory in found:
        unique.setdefault(directory.resolve(), directory)
    return list(unique.values())


def run(args: argparse.Namespace) -> int:
    """Every check first (the folders, their files, ``--readme``), then, holding each folder's
    lock, the reports."""
    import contextlib

    from runs.checkpoint import folder_lock
    from runs.summary import prepare_report

    for directory in args.dirs:
        if not directory.strip():  # (Path("") is the current folder: never by accident)
            raise ValueError(
                f"DIR: an empty path {directory!r}; give an experiment folder or a logdir"
            )
        if Path(directory).exists() and not Path(directory).is_dir():
            raise ValueError(f"{directory!r} is a file, not an experiment folder")
        if not Path(directory).is_dir():
            raise FileNotFoundError(f"{directory!r} is not a folder")
    if args.readme is not None and not args.readme.strip():  # (not read as --readme left out)
        raise ValueError(f"--readme: an empty path {args.readme!r}; give a Markdown file (.md)")
    args.dirs = [str(d) for d in experiment_dirs(args.dirs)]
    if args.readme is not None:
        check_readme(args.readme)
        check_full_runs([Path(d) for d in args.dirs])
    for directory in args.dirs:  # every folder read and checked before any is written
        prepare_report(directory)
        check_report_files(Path(directory))
    with contextlib.ExitStack() as locks:  # no run may write a folder while it is reported
        for directory in args.dirs:
            locks.enter_context(folder_lock(directory, option="folder"))
        return _write_reports(args)


def check_report_files(directory: Path) -> None:
    """Refuses (``ValueError`` naming ``DIR`` and the file) a file the report of ``directory``
    rewrites that is read-only: ``summary.json``, ``summary.md`` and the figures of
    ``runs.figures.FIGURE_FILES`` (a study's own figures are not listed there), as ``--readme``
    refuses a read-only README (``schedulers.files.check_replaceable``)."""
    from runs.figures import FIGURE_FILES
    from schedulers.files import check_replaceable

    targets = ["summary.json", "summary.md", *(f"figures/{name}" for name in FIGURE_FILES)]
    for name in targets:
        check_replaceable(directory / name, "DIR")


def _write_reports(args: argparse.Namespace) -> int:
    from runs.summary import prepare_report

    if args.readme is not None:
        readme = Path(args.readme)
        names = update_readme(readme, [Path(d) for d in args.dirs])
        kept = f"; kept {', '.join(names['kept'])}" if names["kept"] else ""
        print(f"wrote {', '.join(names['written'])} in the Results section of {readme}{kept}")
        return 0
    writers = [prepare_report(directory) for directory in args.dirs]  # read again, locked
    for directory, write in zip(args.dirs, writers):
        table, figures = write()
        print(f"{directory}:\n{table}")
        print(f"wrote summary.json, summary.md and {len(figures)} figures in {directory}")
    return 0
