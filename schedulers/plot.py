"""Draw schedules before training with them: :func:`plot_schedules` and ``stepsize plot``.

``stepsize plot`` takes schedule specs from the command line; each spec is one of

* a preset name (``stepsize plot --list-presets``), e.g. ``tf-decays``;
* a TOML file: ``title = "..."``, ``steps = N`` and a ``[schedules]`` table of
  ``"label" = {name = "...", ...}`` entries, or a single schedule table with a ``name``;
* an inline dict in JSON or TOML syntax, optionally labelled:
  ``'warm cosine={name = "cosine_decay", learning_rate = 0.3, decay_steps = 20}'``.

Examples::

    stepsize plot tf-decays --out decays.png
    stepsize plot '{"name": "one_cycle", "max_lr": 0.1, "total_steps": 1000}' --steps 1200
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from schedulers.base import Schedule, from_dict

DEFAULT_STEPS = 1000


def plot_schedules(
    schedules: Mapping[str, Schedule],
    steps: int,
    path: str | os.PathLike,
    title: str | None = None,
    log_scale: bool = False,
) -> Path:
    """Draw ``{label: schedule}`` over steps ``0 .. steps - 1`` to an image file.

    The figure is rendered with matplotlib's Agg canvas (no display, no global backend change)
    and written atomically: to a temporary file in the target directory, then ``os.replace``d.
    The image format follows the suffix of ``path`` (PNG by default).

    Args:
        schedules: label -> schedule (at least one).
        steps: number of steps drawn (int >= 1).
        path: output file; its directory must exist.
        title: figure title.
        log_scale: logarithmic value axis (zero values are not drawn).

    Returns:
        The written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not schedules:
        raise ValueError("plot_schedules needs at least one schedule")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got steps={steps!r}")
    for label, schedule in schedules.items():
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule {label!r} must be a Schedule, got {schedule!r}")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output directory {str(path.parent)!r} does not exist")
    fmt = path.suffix.lstrip(".").lower() or "png"

    t = np.arange(steps)
    figure = Figure(figsize=(8, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, schedule in schedules.items():
        axes.plot(t, schedule(t), label=label, linewidth=1.4)
    axes.set_xlabel("step t (updates made)")
    axes.set_ylabel("value")
    if log_scale:
        axes.set_yscale("log")
    if title:
        axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            figure.savefig(handle, format=fmt)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# ----------------------------------------------------------------------------------------------
# Specs: presets, TOML files, inline dicts.
# ----------------------------------------------------------------------------------------------


def _presets_dir():
    return resources.files("schedulers") / "presets"


def preset_names() -> list[str]:
    """Names of the bundled presets (``schedulers/presets/<name>.toml``)."""
    return sorted(
        p.name[: -len(".toml")] for p in _presets_dir().iterdir() if p.name.endswith(".toml")
    )


def _parse_plot_document(document: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``{"title", "steps", "schedules": {label: Schedule}}`` from a parsed TOML document."""
    if "name" in document:
        schedule = from_dict(document)
        return {"title": None, "steps": None, "schedules": {_default_label(schedule): schedule}}
    table = document.get("schedules")
    if not isinstance(table, Mapping) or not table:
        raise ValueError(
            f"{source} must have a [schedules] table of label = {{name = ...}} entries "
            "or be a single schedule table with a 'name'"
        )
    steps = document.get("steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"{source}: steps must be a positive integer, got steps={steps!r}")
    return {
        "title": document.get("title"),
        "steps": steps,
        "schedules": {str(label): from_dict(spec) for label, spec in table.items()},
    }


def load_preset(name: str) -> dict[str, Any]:
    """A bundled preset as ``{"title", "steps", "schedules"}``."""
    names = preset_names()
    if name not in names:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(names)}")
    text = (_presets_dir() / f"{name}.toml").read_text(encoding="utf-8")
    return _parse_plot_document(tomllib.loads(text), f"preset {name!r}")


def _default_label(schedule: Schedule) -> str:
    text = repr(schedule)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_inline(text: str) -> dict[str, Any]:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return tomllib.loads(f"spec = {text}")["spec"]
    except tomllib.TOMLDecodeError as err:
        raise ValueError(
            f"cannot parse schedule spec {text!r} as JSON or a TOML inline table: {err}"
        ) from None


def parse_spec(spec: str) -> dict[str, Any]:
    """One command-line spec -> ``{"title", "steps", "schedules"}`` (see the module docstring)."""
    if spec in preset_names():
        return load_preset(spec)
    label = None
    body = spec
    brace = spec.find("{")
    if brace > 0 and "=" in spec[:brace] and spec[: spec.index("=")].strip():
        label, body = spec[: spec.index("=")].strip(), spec[spec.index("=") + 1 :].strip()
    if body.lstrip().startswith("{"):
        document = _parse_inline(body)
        if not isinstance(document, Mapping):
            raise ValueError(f"schedule spec {spec!r} must be a dict")
        schedule = from_dict(document)
        return {
            "title": None,
            "steps": None,
            "schedules": {label or _default_label(schedule): schedule},
        }
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"schedule file {spec!r} does not exist")
        with path.open("rb") as handle:
            return _parse_plot_document(tomllib.load(handle), f"file {spec!r}")
    raise ValueError(
        f"{spec!r} is not a preset, a TOML file or an inline dict; "
        f"presets: {', '.join(preset_names())}"
    )


# ----------------------------------------------------------------------------------------------
# CLI: stepsize plot.
# ----------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stepsize plot``."""
    parser.add_argument(
        "specs",
        nargs="*",
        metavar="SPEC",
        help="preset name, TOML file, or inline dict (JSON or TOML), optionally LABEL={...}",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"steps to draw (default: the preset's or {DEFAULT_STEPS})",
    )
    parser.add_argument(
        "--out", default="schedules.png", help="output image (default: schedules.png)"
    )
    parser.add_argument("--title", default=None, help="figure title (default: the preset's)")
    parser.add_argument("--log", action="store_true", help="logarithmic value axis")
    parser.add_argument(
        "--list-presets", action="store_true", help="list the bundled presets and exit"
    )


def run(args: argparse.Namespace) -> int:
    """Draw the specs of ``args`` to ``args.out``; print the written path."""
    if args.list_presets:
        for name in preset_names():
            print(f"{name:24s} {load_preset(name)['title'] or ''}")
        return 0
    if not args.specs:
        raise ValueError(
            "give at least one SPEC (a preset, a TOML file or an inline dict); see --list-presets"
        )
    schedules: dict[str, Schedule] = {}
    titles, steps = [], []
    for spec in args.specs:
        parsed = parse_spec(spec)
        for label, schedule in parsed["schedules"].items():
            if label in schedules:
                raise ValueError(f"label {label!r} is used twice; label specs as LABEL={{...}}")
            schedules[label] = schedule
        if parsed["title"]:
            titles.append(parsed["title"])
        if parsed["steps"]:
            steps.append(parsed["steps"])
    n_steps = args.steps if args.steps is not None else max(steps, default=DEFAULT_STEPS)
    if n_steps < 1 or n_steps > 10**8:
        raise ValueError(f"--steps must be in [1, 1e8], got {n_steps}")
    title = args.title or (" / ".join(titles) if titles else None)
    path = plot_schedules(schedules, n_steps, args.out, title=title, log_scale=args.log)
    print(f"wrote {path} ({len(schedules)} schedule(s), {n_steps} steps)")
    return 0
