"""Draw schedules before training with them: :func:`plot_schedules` and ``stepsize plot``.

``stepsize plot`` takes schedule specs from the command line; each spec is one of

* a preset name (``stepsize plot --list-presets``), e.g. ``tf-decays``;
* a TOML file: ``title = "..."``, ``steps = N``, optionally ``log = true|false``, and a
  ``[schedules]`` table of ``"label" = {name = "...", ...}`` entries (no other top-level key),
  or a single schedule table with a ``name``;
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
import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from schedulers.base import Schedule, from_dict
from schedulers.files import atomic_write, check_output_file, read_toml, savefig_once

if TYPE_CHECKING:  # (matplotlib is imported where a figure is drawn, not with this module)
    import matplotlib.figure

DEFAULT_STEPS = 1000
DEFAULT_OUT = "schedules.png"  # --out when it is not given
MAX_STEPS = 10**6
"""The most steps ``stepsize plot`` draws, with or without ``--bound``: each curve is evaluated
(and drawn) at every step, ~8 bytes per step and curve in each of several arrays, so 1e6 steps
stay within tens of MB per curve where 1e8 would need gigabytes."""


#: The top-level keys of a plot file with a ``[schedules]`` table.
PLOT_FILE_KEYS = ("title", "steps", "log", "schedules")


#: Line styles cycled with the colours, so that curves that meet stay distinguishable.
LINE_STYLES = ["-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 2)), (0, (8, 2))]
#: Two curves *coincide* when they are within this fraction of the value axis on more than
#: :data:`COINCIDENT_FRACTION` of the steps; then every curve gets its own panel.
COINCIDENT_TOLERANCE = 0.006
COINCIDENT_FRACTION = 0.1
#: The most curves drawn as one panel each; more are overlaid.
MAX_PANELS = 12
#: Values whose 90th percentile exceeds their 25th by this ratio (two decades) are drawn on a log
#: axis by default: long geometric decays, not a cosine's last steps towards 0 (a preset can
#: also say ``log = true``).
LOG_RATIO = 100.0


def _axis_coordinates(values: np.ndarray, log_scale: bool) -> np.ndarray:
    if not log_scale:
        return values
    with np.errstate(divide="ignore"):
        return np.where(values > 0, np.log10(np.maximum(values, 1e-300)), np.nan)


def spans_decades(curves: Mapping[str, np.ndarray]) -> bool:
    """Whether most of the values span decades: the 90th percentile of the positive values over
    their 25th exceeds :data:`LOG_RATIO` (the default for log-y)."""
    values = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in curves.values()])
    if not values.size:
        return False
    low, high = np.percentile(values, [25, 90])
    return bool(high > LOG_RATIO * low)


def coincident_pairs(curves: Mapping[str, np.ndarray], log_scale: bool) -> list[tuple[str, str]]:
    """Pairs of curves that would hide one another on one axis (see the constants above)."""
    coordinates = {k: _axis_coordinates(v, log_scale) for k, v in curves.items()}
    stacked = np.concatenate([c[np.isfinite(c)] for c in coordinates.values()])
    span = float(stacked.max() - stacked.min()) if stacked.size else 0.0
    tolerance = COINCIDENT_TOLERANCE * (span or 1.0)
    labels, pairs = list(curves), []
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            close = np.abs(coordinates[a] - coordinates[b]) <= tolerance
            if np.mean(close) > COINCIDENT_FRACTION:
                pairs.append((a, b))
    return pairs


def draw_schedules(
    schedules: Mapping[str, Schedule],
    steps: int,
    title: str | None = None,
    log_scale: bool | None = None,
) -> matplotlib.figure.Figure:
    """A matplotlib Figure of ``{label: schedule}`` over steps ``0 .. steps - 1``.

    Nothing is hidden: each curve has its own colour and line style, and when two curves would
    coincide (:func:`coincident_pairs`) every curve gets its own panel, drawn over the others in
    grey for reference. The legend sits outside the data; the value axis is logarithmic when the
    values span more than two decades (``log_scale=None``) or when asked. The title is wrapped.
    Rendered with matplotlib's Agg canvas (no display, no global backend change).
    """
    import textwrap

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not schedules:
        raise ValueError("plot_schedules needs at least one schedule")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got steps={steps!r}")
    for label, schedule in schedules.items():
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule {label!r} must be a Schedule, got {schedule!r}")
    t = np.arange(steps)
    curves = {label: schedule(t) for label, schedule in schedules.items()}
    log = spans_decades(curves) if log_scale is None else bool(log_scale)
    style = {
        label: {"color": f"C{i % 10}", "linestyle": LINE_STYLES[i % len(LINE_STYLES)]}
        for i, label in enumerate(curves)
    }
    # panels when curves coincide; past MAX_PANELS curves one overlay (styles still differ)
    panels = 1 < len(curves) <= MAX_PANELS and bool(coincident_pairs(curves, log))
    figure = Figure(dpi=120)
    FigureCanvasAgg(figure)
    if panels:
        columns = 2 if len(curves) > 3 else 1
        rows = -(-len(curves) // columns)
        figure.set_size_inches(6.0 * columns, 1.9 * rows + 0.8)
        grid = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
        for ax, (label, values) in zip(grid.flat, curves.items()):
            for other, other_values in curves.items():
                if other != label:  # the others, in grey, for reference
                    ax.plot(t, other_values, color="0.85", linewidth=0.8, zorder=1)
            ax.plot(t, values, linewidth=1.6, zorder=3, **{**style[label], "linestyle": "-"})
            ax.set_title(label, fontsize="small", color=style[label]["color"])
        for ax in grid.flat[len(curves) :]:
            ax.set_visible(False)
        axes = list(grid.flat[: len(curves)])
        for column in range(columns):  # the lowest panel of each column carries the step axis
            lowest = axes[max(i for i in range(len(axes)) if i % columns == column)]
            lowest.xaxis.set_tick_params(labelbottom=True)
            lowest.set_xlabel("step t (updates made)")
        for ax in grid[:, 0]:
            ax.set_ylabel("value")
    else:
        figure.set_size_inches(10.0, 4.5)
        ax = figure.add_subplot()
        for label, values in curves.items():
            ax.plot(t, values, label=label, linewidth=1.5, **style[label])
        ax.set_xlabel("step t (updates made)")
        ax.set_ylabel("value")
        ax.legend(
            fontsize="small",
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0,
            ncols=1 + len(curves) // 16,
        )
        axes = [ax]
    for ax in axes:
        if log:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    if title:
        figure.suptitle(textwrap.fill(title, 110), fontsize="medium")
    figure.tight_layout()
    return figure


def save_figure(
    figure: matplotlib.figure.Figure,
    path: str | os.PathLike,
    create_parent: bool = False,
    dpi: float | None = None,
) -> Path:
    """Write ``figure`` to ``path`` atomically (:func:`schedulers.files.atomic_write`: a
    temporary file in the same directory, then ``os.replace``; the permissions an ``open`` would
    give); the format follows the suffix (PNG by default). The one place the schedulers package
    writes a figure (the range test's included). ``path`` is checked before the figure is
    rendered (:func:`schedulers.files.check_output_file`).

    Raises:
        ValueError: naming ``path``: empty, an unknown image format, a folder, a folder on the
            way that is a file, a folder that does not exist (and ``create_parent`` is false) or
            cannot be written.
    """
    path = check_output_file(path, "path", make_parent=create_parent)
    fmt = path.suffix.lstrip(".").lower() or "png"
    atomic_write(path, lambda handle: savefig_once(figure, handle, format=fmt, dpi=dpi or "figure"))
    return path


def plot_schedules(
    schedules: Mapping[str, Schedule],
    steps: int,
    path: str | os.PathLike,
    title: str | None = None,
    log_scale: bool | None = None,
) -> Path:
    """Draw ``{label: schedule}`` (:func:`draw_schedules`) to an image file, atomically.

    Args:
        schedules: label -> schedule (at least one).
        steps: number of steps drawn (int >= 1).
        path: output file, an image format matplotlib writes (by suffix; none: PNG); its
            directory must exist. Checked before anything is drawn.
        title: figure title.
        log_scale: logarithmic value axis (zero values are not drawn); ``None``: when the
            values span more than two decades.

    Returns:
        The written path.

    Raises:
        ValueError: a ``path`` that cannot be written as a figure, naming it (see
            :func:`save_figure`).
    """
    check_output_file(path, "path")
    return save_figure(draw_schedules(schedules, steps, title, log_scale), path)


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
    """``{"title", "steps", "log", "schedules": {label: Schedule}}`` from a parsed TOML document.

    A document with a ``name`` is one schedule table (:func:`from_dict` checks it, its errors
    starting with ``source``); else its top-level keys must be among :data:`PLOT_FILE_KEYS`:
    ``title`` a string, ``steps`` an int >= 1, ``log`` a boolean, ``schedules`` a table.
    Errors name ``source`` and the key.
    """
    if "name" in document:
        schedule = _entry(source, document)
        return {
            "title": None, "steps": None, "log": None,
            "schedules": {_default_label(schedule): schedule},
        }  # fmt: skip
    unknown = [key for key in document if key not in PLOT_FILE_KEYS]
    if unknown:
        raise ValueError(
            f"{source}: unknown top-level key {unknown[0]!r}; allowed: {', '.join(PLOT_FILE_KEYS)}"
        )
    table = document.get("schedules")
    if not isinstance(table, Mapping) or not table:
        raise ValueError(
            f"{source} must have a [schedules] table of label = {{name = ...}} entries "
            "or be a single schedule table with a 'name'"
        )
    steps = document.get("steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"{source}: steps must be a positive integer, got steps={steps!r}")
    title, log = document.get("title"), document.get("log")
    if title is not None and not isinstance(title, str):
        raise ValueError(f"{source}: title must be a string, got title={title!r}")
    if log is not None and not isinstance(log, bool):
        raise ValueError(f"{source}: log must be a boolean (true or false), got log={log!r}")
    return {
        "title": title,
        "steps": steps,
        "log": log,
        "schedules": {
            str(label): _entry(f"{source}: schedules.{str(label)!r}", spec)
            for label, spec in table.items()
        },
    }


def _entry(where: str, spec: Any) -> Schedule:
    """:func:`from_dict` of one spec, its error starting with ``where``: a file's entry and its
    label (a file's entries may differ only in one argument, as the warmup preset's three
    ``beta2``), or an inline spec as written, with its ``LABEL=``."""
    try:
        return from_dict(spec)
    except (TypeError, ValueError) as err:
        if type(err) not in (TypeError, ValueError):
            raise
        raise type(err)(f"{where}: {err}") from None


def load_preset(name: str) -> dict[str, Any]:
    """A bundled preset as ``{"title", "steps", "schedules"}``."""
    names = preset_names()
    if name not in names:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(names)}")
    text = (_presets_dir() / f"{name}.toml").read_text(encoding="utf-8")
    return _parse_plot_document(tomllib.loads(text), f"preset {name!r}")


def _default_label(schedule: Schedule) -> str:
    """The label of an unlabelled spec: its repr, cut at 60 characters (see
    :func:`distinct_labels` for two that are cut alike)."""
    return _shortened(repr(schedule))


def distinct_labels(entries: Sequence[tuple[str, Schedule]]) -> list[str]:
    """The labels of ``(label, schedule)`` pairs, with default labels (:func:`_default_label`,
    a repr cut at 60 characters) that two different schedules share made distinct: each shows
    the schedule's name and only the arguments that differ within the group, e.g.
    ``cosine_decay(..., exponent=2.0)`` (cut at 80 characters); where those are cut alike
    too, ``#1``, ``#2``, ... are appended. A label given by the user is kept, and the same
    schedule given twice keeps its one label (:func:`collect` refuses a label used twice)."""
    labels = [label for label, _ in entries]
    groups: dict[str, list[int]] = {}
    for k, (label, schedule) in enumerate(entries):
        if label == _default_label(schedule):
            groups.setdefault(label, []).append(k)
    for members in groups.values():
        group = [entries[k][1] for k in members]
        if len({repr(schedule) for schedule in group}) < 2:
            continue  # (one schedule, or the same one repeated)
        relabelled = [_shortened(text, 80) for text in _differences(group)]
        if len(set(relabelled)) < len({repr(schedule) for schedule in group}):
            relabelled = [f"{label} #{i}" for i, label in enumerate(relabelled, 1)]
        for k, label in zip(members, relabelled):
            labels[k] = label
    return labels


def _differences(group: Sequence[Schedule]) -> list[str]:
    """``name(..., argument=value)`` for each schedule of ``group`` (one name), showing only the
    arguments whose values differ within it; a differing nested schedule of one name shown the
    same way (``linear_warmup(..., schedule=cosine_decay(..., alpha=0.5))``)."""
    arguments = [_flat_arguments(schedule) for schedule in group]
    keys = list(dict.fromkeys(key for values in arguments for key in values))
    shown: list[list[str]] = [[] for _ in group]
    for key in keys:
        values = [given.get(key) for given in arguments]
        if len({repr(v) for v in values}) < 2:
            continue
        nested = all(isinstance(v, Schedule) for v in values)
        if nested and len({v.name for v in values}) == 1:
            texts = _differences(values)
        else:
            texts = [repr(v) for v in values]
        for parts, value, text in zip(shown, values, texts):
            if value is not None:
                parts.append(f"{key}={text}")
    return [f"{s.name}(..., {', '.join(parts)})" for s, parts in zip(group, shown)]


def _flat_arguments(schedule: Schedule) -> dict[str, Any]:
    """A schedule's arguments, a list's entries each under ``name[i]`` (``None`` left out)."""
    out: dict[str, Any] = {}
    for key, value in schedule._arguments().items():
        if isinstance(value, (list, tuple)):
            out.update((f"{key}[{i}]", v) for i, v in enumerate(value))
        elif value is not None:
            out[key] = value
    return out


def _shortened(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
        schedule = _entry(f"schedule spec {spec!r}", document)
        return {
            "title": None,
            "steps": None,
            "log": None,
            "schedules": {label or _default_label(schedule): schedule},
        }
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        if path.is_dir():
            raise ValueError(f"schedule file {spec!r} is a folder, not a TOML file")
        if not path.is_file():
            raise FileNotFoundError(f"schedule file {spec!r} does not exist")
        return _parse_plot_document(read_toml(path), f"file {spec!r}")
    raise ValueError(
        f"{spec!r} is not a preset, a TOML file or an inline dict; "
        f"presets: {', '.join(preset_names())}"
    )


# ----------------------------------------------------------------------------------------------
# CLI: stepsize plot.
# ----------------------------------------------------------------------------------------------


def check_steps(steps: Any, source: str | None = None) -> None:
    """Raises ``ValueError`` naming ``--steps``, the value and the allowed range unless ``steps``
    is an integer from 1 to :data:`MAX_STEPS`; ``source``: the spec the value came from (then
    the message says so and that ``--steps`` chooses fewer)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        got = f"{steps!r}" if source is None else f"steps = {steps!r} from {source!r}"
        hint = "" if source is None else "; give --steps N to draw fewer"
        raise ValueError(f"--steps must be an integer from 1 to {MAX_STEPS:,}, got {got}{hint}")


def collect(args: argparse.Namespace) -> dict[str, Any]:
    """The specs of ``args`` as ``{"schedules", "steps", "title", "log"}`` (see the module
    docstring; ``log`` is None when it is to follow the values).

    Raises:
        ValueError: a spec that cannot be read, a label used twice, or steps out of range (an
            explicit ``--steps``, or the largest ``steps`` of the specs, naming that spec).
    """
    if args.steps is not None:
        check_steps(args.steps)
    entries: list[tuple[str, Schedule]] = []
    titles, steps, logs = [], [], []
    for spec in args.specs:
        parsed = parse_spec(spec)
        entries.extend(parsed["schedules"].items())
        if parsed["title"]:
            titles.append(parsed["title"])
        if parsed["steps"]:
            steps.append((parsed["steps"], spec))
        if parsed.get("log") is not None:
            logs.append(parsed["log"])
    if args.steps is not None:
        n_steps = args.steps
    elif steps:
        n_steps, spec = max(steps, key=lambda item: item[0])
        check_steps(n_steps, spec)
    else:
        n_steps = DEFAULT_STEPS
    schedules: dict[str, Schedule] = {}
    for label, schedule in zip(distinct_labels(entries), (s for _, s in entries)):
        if label in schedules:
            raise ValueError(f"label {label!r} is used twice; label specs as LABEL={{...}}")
        schedules[label] = schedule
    return {
        "schedules": schedules,
        "steps": n_steps,
        "title": args.title or (" / ".join(titles) if titles else None),
        "log": args.log if args.log is not None else (any(logs) if logs else None),
    }


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
        help=f"steps to draw, 1 to {MAX_STEPS:,} (default: the largest of the specs' or "
        f"{DEFAULT_STEPS})",
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output image (default: {DEFAULT_OUT})")
    parser.add_argument("--title", default=None, help="figure title (default: the preset's)")
    parser.add_argument(
        "--log",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="logarithmic value axis (default: when the values span more than two decades)",
    )
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
    check_output_file(args.out, "--out")
    specs = collect(args)
    schedules, n_steps = specs["schedules"], specs["steps"]
    path = plot_schedules(
        schedules, n_steps, args.out, title=specs["title"], log_scale=specs["log"]
    )
    print(f"wrote {path} ({len(schedules)} schedule(s), {n_steps} steps)")
    return 0
