"""The README's Results section, regenerated from full runs (``stepsize report --readme``).

For each experiment folder, a subsection ``### <name>``: its description, what it reproduces, how
it was run, its table (regenerated now from its runs by ``runs.summary``) and its figure (copied
beside the README, atomically: a figure replaced keeps its permissions, a new one gets those the
umask gives, as every file here). The section lies between :data:`RESULTS_BEGIN` and
:data:`RESULTS_END`, its subsections in the catalogue's order (``runs.catalog``). The experiments
named replace their own subsections; every other experiment's subsection is kept as it was.

Only full runs go there: a folder of a ``--quick`` run (its ``experiment.json`` says so, or its
name ends in ``-quick``), or of a run of some variants only (``--variants``), is refused, and so
are two folders of the same experiment. Every folder is read and checked before anything is
written, and so is the README (:func:`check_readme`): a Markdown file (``.md`` or ``.markdown``)
that can be rewritten, in a folder where it can be replaced. The *Run:* line names the command
that runs the experiment again (:func:`run_command`), with ``--seeds N`` and ``--threads T`` when
the run used other seeds or torch threads than that command's defaults (:func:`rerun_options`;
a run whose seeds no ``--seeds`` gives is refused).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runs.catalog import catalogue_order
from runs.checkpoint import save_text
from runs.results import load_meta, software_line
from runs.spec import Experiment
from runs.summary import prepare_report
from schedulers.files import atomic_copy, read_json, read_text, read_toml, write_target

RESULTS_BEGIN = "<!-- results:begin -->"
RESULTS_END = "<!-- results:end -->"
#: The suffixes ``--readme`` accepts (any case): the section written there is Markdown.
MARKDOWN_SUFFIXES = (".md", ".markdown")


def run_command(meta: dict[str, Any], readme_dir: Path | None = None) -> str:
    """The command that runs the experiment of ``meta`` (its ``experiment.json``) again:
    ``stepsize run NAME`` for a bundled experiment (its recorded ``source`` is in
    ``runs/experiments``), ``stepsize run PATH`` for one read from another TOML file (``PATH``
    as the run recorded it, the path given to ``stepsize run``; an absolute one inside
    ``readme_dir`` is made relative to it), and the recorded ``runs.run(...)`` call for one
    given from Python."""
    name, source = meta["name"], str(meta.get("source") or "")
    if source and not source.startswith("<"):
        path = Path(source)
        if path.parent.parts[-2:] == ("runs", "experiments"):
            return f"stepsize run {name}"
        if path.suffix == ".toml":
            if readme_dir is not None and path.is_absolute():
                folder = Path(os.path.abspath(readme_dir))
                if path.is_relative_to(folder):
                    path = path.relative_to(folder)
            return f"stepsize run {shlex.quote(path.as_posix())}"
    command = str(meta.get("command") or "")
    return command if command.startswith("runs.run(") else f"stepsize run {name}"


def default_seeds(meta: dict[str, Any]) -> list[int] | None:
    """The seeds that :func:`run_command`'s command runs without ``--seeds``: a study's
    ``SEEDS`` (``runs.study``), a TOML experiment's ``seeds`` (a count ``N``: seeds ``0 ..
    N - 1``; a bundled one read from the bundled file, as ``stepsize run NAME`` does); None when
    unknown (no TOML file to read, or a run from Python)."""
    name, source = meta.get("name"), str(meta.get("source") or "")
    if not source or source.startswith("<"):
        return None
    path = Path(source)
    try:
        if meta.get("kind") == "study":
            from runs.study import load_study

            return list(range(load_study(str(name)).SEEDS))
        if path.suffix != ".toml":
            return None
        if path.parent.parts[-2:] == ("runs", "experiments"):
            from runs.catalog import find_experiment

            path = find_experiment(str(name))
        value = read_toml(path).get("seeds", Experiment.seeds)
    except (ImportError, OSError, TypeError, ValueError):  # (gone, or no longer readable)
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return list(range(value))
    return list(value) if isinstance(value, list) else None


def rerun_options(meta: dict[str, Any]) -> list[str]:
    """The options :func:`run_command`'s command needs to run the seeds and torch threads that
    the run of ``meta`` used (both change the numbers): ``--seeds N`` when its seeds, ``0 ..
    N - 1``, are not the command's default (:func:`default_seeds`; given whenever that default
    is unknown), ``--threads T`` when ``T`` is not 1 (``stepsize run``'s default). No options for
    a run from Python whose command is its recorded ``runs.run(...)`` call: that call says it all.

    Raises:
        ValueError: the run's seeds are not the default and not ``0 .. N - 1`` (so no
            ``--seeds`` runs them again).
    """
    if run_command(meta).startswith("runs.run("):
        return []
    options = []
    seeds = list(meta.get("seeds") or [])
    default = default_seeds(meta)
    if seeds and seeds != default:
        if seeds != list(range(len(seeds))):
            own = "unknown" if default is None else ", ".join(map(str, default))
            raise ValueError(
                f"ran seeds {', '.join(map(str, seeds))}, neither {meta.get('name')}'s own "
                f"({own}) nor 0 to N - 1: no --seeds option runs them again"
            )
        options.append(f"--seeds {len(seeds)}")
    threads = meta.get("threads", 1)
    if threads != 1:
        options.append(f"--threads {threads}")
    return options


def _run_line(data: dict[str, Any], readme_dir: Path | None = None) -> str:
    """The command (with the options that run the same seeds and threads again), seeds, wall
    time, dataset and software of a summary, as one line."""
    meta, software = data["experiment"], data["software"]
    seeds = data.get("seeds") or meta.get("seeds") or []
    minutes = data.get("wall_time_s", 0.0) / 60
    datasets = sorted({v["dataset"]["name"] for v in meta.get("variants", [])})
    command = " ".join([run_command(meta, readme_dir), *rerun_options(meta)])
    parts = [
        f"`{command}`",
        f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}",
        f"{minutes:.1f} min wall time ({meta.get('jobs', 1)} job(s) x {meta.get('threads', 1)} "
        "torch thread(s))",
    ]
    if datasets:
        parts.append(
            "data: " + ", ".join(datasets) + (" (fallback)" if meta.get("fallback_used") else "")
        )
    parts.append(software_line(software))
    return "; ".join(parts)


def check_full_runs(dirs: Sequence[Path]) -> dict[str, Path]:
    """The experiment folders for the README by experiment name, each checked to hold a full
    run: not ``--quick``, every variant, seeds that a ``stepsize run`` command runs again
    (:func:`rerun_options`), and one folder per experiment. Reads only.

    Raises:
        ValueError: naming the folder and what is wrong with it.
    """
    by_name: dict[str, Path] = {}
    for directory in map(Path, dirs):
        meta = load_meta(directory)
        name = meta.get("name", directory.name)
        rerun = f"run `{run_command(meta)}` for the README's Results (full runs only)"
        if meta.get("quick") or directory.name.endswith("-quick"):
            raise ValueError(f"{str(directory)!r} holds a --quick run of {name}; {rerun}")
        if left_out := meta.get("variants_left_out"):
            raise ValueError(
                f"{str(directory)!r} holds a run of some variants of {name} only (--variants; "
                f"left out: {', '.join(left_out)}); {rerun}"
            )
        try:
            rerun_options(meta)
        except ValueError as err:
            raise ValueError(f"{str(directory)!r} {err}; {rerun}") from None
        if name in by_name:
            raise ValueError(
                f"{str(by_name[name])!r} and {str(directory)!r} both hold runs of {name}; the "
                "README has one subsection per experiment: name one of them"
            )
        by_name[name] = directory
    return by_name


def experiment_subsections(
    dirs: Sequence[Path], figures_dir: Path, readme_dir: Path
) -> dict[str, str]:
    """Each experiment folder's subsection of the Results section, by experiment name: its
    description, what it reproduces, how it was run, its table (regenerated now from its runs)
    and its figure (copied to ``figures_dir``)."""
    check_full_runs(dirs)
    writers = [prepare_report(directory) for directory in dirs]  # all checked before writing
    out = {}
    for directory, write in zip(dirs, writers):
        markdown, _ = write()
        data = read_json(directory / "summary.json", dict)
        meta = data["experiment"]
        name = meta["name"]
        figure = figures_dir / f"{name}.png"
        figures_dir.mkdir(parents=True, exist_ok=True)
        atomic_copy(directory / data["readme_figure"], figure)
        parts = [f"### {name}", meta.get("description", "")]
        if meta.get("reference"):
            parts.append(f"*Reproduces:* {meta['reference']}")
        parts += [f"*Run:* {_run_line(data, readme_dir)}.", markdown.strip()]
        parts.append(f"![{name}]({figure.relative_to(readme_dir).as_posix()})")
        out[name] = "\n\n".join(parts)
    return out


def readme_section(
    dirs: Sequence[Path],
    figures_dir: Path,
    readme_dir: Path,
    kept: dict[str, str] | None = None,
) -> str:
    """The README's Results section: the subsections of the experiment folders ``dirs``
    (:func:`experiment_subsections`) and, for every other experiment, its subsection in
    ``kept`` (by name), in the catalogue's order."""
    subsections = {**(kept or {}), **experiment_subsections(dirs, figures_dir, readme_dir)}
    parts = [
        RESULTS_BEGIN,
        "<!-- generated by `stepsize report --readme README.md DIR...` from full runs; "
        "do not edit by hand -->",
    ]
    parts += [subsections[name] for name in catalogue_order(subsections)]
    parts.append(RESULTS_END)
    return "\n\n".join(parts) + "\n"


def existing_subsections(text: str) -> dict[str, str]:
    """The experiments' subsections (``### <name>`` up to the next one) of the Results section
    in the README text ``text``, by name (none when it has no such section)."""
    if RESULTS_BEGIN not in text or RESULTS_END not in text:
        return {}
    inner = text.split(RESULTS_BEGIN, 1)[1].split(RESULTS_END, 1)[0]
    pieces = re.split(r"^### (.+)$", inner, flags=re.MULTILINE)
    return {
        name.strip(): f"### {name.strip()}\n\n{body.strip()}".rstrip()
        for name, body in zip(pieces[1::2], pieces[2::2])
    }


def check_readme(readme: str) -> Path:
    """The ``--readme`` file of ``stepsize report`` and ``stepsize score``, checked before
    anything is written: an existing UTF-8 Markdown file (suffix ``.md`` or ``.markdown``, any
    case: a section is appended to a file without one, which would damage a TOML or Python
    file given by a slip), which may be rewritten (it is replaced by a new file in its folder,
    or, for a symbolic link, in its target's: that folder must be writable too), and beside
    which ``docs/results`` is, or can be made as, a writable folder.

    Raises:
        ValueError, FileNotFoundError: naming ``--readme``, the path and what is wrong.
    """
    from runs.checkpoint import check_writable_folder

    path = Path(readme)
    if path.is_dir():
        raise ValueError(f"--readme: {readme!r} is a folder, not a README file")
    if path.suffix.lower() not in MARKDOWN_SUFFIXES:
        raise ValueError(
            f"--readme: {readme!r} is not a Markdown file; give the README (suffix "
            f"{' or '.join(MARKDOWN_SUFFIXES)}), where a Markdown section is written"
        )
    if not path.is_file():
        raise FileNotFoundError(f"--readme: {readme!r} does not exist")
    try:
        read_text(path)
    except ValueError as err:
        raise ValueError(f"--readme: {err}") from None
    target = write_target(path)  # (the file a symbolic link points to is the one rewritten)
    check_writable_folder(target.parent, f"--readme {readme!r}")
    if not os.access(target, os.W_OK):
        raise ValueError(f"--readme: {readme!r} is read-only; make it writable to rewrite it")
    check_writable_folder(path.parent / "docs" / "results", "--readme")
    return path


def update_readme(
    readme: Path, dirs: Sequence[Path], figures_dir: Path | None = None
) -> dict[str, list[str]]:
    """Rewrites the results section of ``readme`` (appends a ``## Results`` section when it has
    none) with :func:`readme_section`: the experiments of ``dirs`` written now, the other
    experiments' subsections kept. Returns ``{"written": names, "kept": names}``."""
    text = read_text(readme)
    figures_dir = figures_dir or readme.parent / "docs" / "results"
    written = check_full_runs(dirs)
    kept = {n: s for n, s in existing_subsections(text).items() if n not in written}
    section = readme_section(dirs, figures_dir, readme.parent, kept)
    save_text(readme, replace_section(text, RESULTS_BEGIN, RESULTS_END, section, "## Results"))
    return {"written": catalogue_order(written), "kept": catalogue_order(kept)}


def replace_section(text: str, begin: str, end: str, section: str, heading: str = "") -> str:
    """``text`` with everything from the marker ``begin`` to the marker ``end`` replaced by
    ``section`` (which starts and ends with them); appended, under ``heading``, when ``text``
    has no such markers."""
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        return before + section.rstrip("\n") + rest.split(end, 1)[1]
    return text.rstrip("\n") + "\n\n" + (heading + "\n\n" if heading else "") + section
