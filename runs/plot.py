"""``stepsize plot``: the schedule plotter of :mod:`schedulers.plot`, plus ``--bound D,G``.

With ``--bound D,G`` the figure has the schedules on the left and, on the right, the convex
last-iterate bound of SGD with each schedule (``theory.plot_schedule_bound``: Defazio et al.
2023, Thm 10, with D = ||x0 - x*|| and G a bound on the gradient norms); ``--tuned`` rescales
each schedule to its optimal base rate first, as Schaipp et al. (2025) compare schedules.

Both figures take their specs, steps, title and value axis the same way (:func:`collect`): the
steps from ``--steps``, else the largest ``steps`` of the specs, else 1000, at most
:data:`MAX_STEPS`; the title from ``--title``, else the specs' titles joined; a logarithmic
schedule axis with ``--log``, none with ``--no-log``, else as the specs' ``log`` says, else when
the values span more than two decades. ``--out`` is checked before anything is computed (its
suffix names the image format, none meaning PNG), and the figure is written by
:func:`schedulers.plot.save_figure` (a temporary file, then a rename) in both cases.
"""

from __future__ import annotations

import argparse
import math
import textwrap
from typing import Any

from schedulers import plot as schedule_plot
from schedulers.files import check_output_file

MAX_STEPS = 10**6
"""The most steps ``stepsize plot`` draws, with or without ``--bound``: each curve is evaluated
(and drawn) at every step, ~8 bytes per step and curve in each of several arrays, so 1e6 steps
stay within tens of MB per curve where 1e8 would need gigabytes."""


def _pair(text: str) -> tuple[float, float]:
    try:
        D, G = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--bound must be two numbers D,G (e.g. 1,1), got {text!r}"
        ) from None
    if not (D > 0 and G > 0):
        raise argparse.ArgumentTypeError(f"--bound needs D > 0 and G > 0, got D={D}, G={G}")
    if not (math.isfinite(D) and math.isfinite(G)):
        raise argparse.ArgumentTypeError(f"--bound needs finite D and G, got D={D}, G={G}")
    return D, G


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``schedulers.plot`` and ``--bound D,G``, ``--tuned``."""
    schedule_plot.add_arguments(parser)
    for action in parser._actions:  # (the limit is this command's: say it where --steps is)
        if "--steps" in action.option_strings:
            action.help = (
                f"steps to draw, 1 to {MAX_STEPS:,} (default: the largest of the specs' or "
                f"{schedule_plot.DEFAULT_STEPS})"
            )
    parser.add_argument(
        "--bound",
        type=_pair,
        default=None,
        metavar="D,G",
        help="draw each schedule beside its convex last-iterate bound (Defazio et al. 2023, "
        "Thm 10) with distance D = ||x0 - x*|| and gradient bound G (both finite and > 0); "
        "--title and --log apply to the schedule panel as without --bound",
    )
    parser.add_argument(
        "--tuned",
        action="store_true",
        help="with --bound: scale each schedule to the base rate that minimises its bound",
    )


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
    schedules: dict[str, Any] = {}
    titles, steps, logs = [], [], []
    for spec in args.specs:
        parsed = schedule_plot.parse_spec(spec)
        for label, schedule in parsed["schedules"].items():
            if label in schedules:
                raise ValueError(f"label {label!r} is used twice; label specs as LABEL={{...}}")
            schedules[label] = schedule
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
        n_steps = schedule_plot.DEFAULT_STEPS
    return {
        "schedules": schedules,
        "steps": n_steps,
        "title": args.title or (" / ".join(titles) if titles else None),
        "log": args.log if args.log is not None else (any(logs) if logs else None),
    }


def run(args: argparse.Namespace) -> int:
    """Draw the specs; with ``--bound`` beside their bound curves. Every option and spec is
    checked, and ``--out`` too, before anything is computed."""
    if args.tuned and args.bound is None:
        raise ValueError("--tuned needs --bound D,G")
    if args.list_presets:
        return schedule_plot.run(args)
    if not args.specs:
        raise ValueError(
            "give at least one SPEC (a preset, a TOML file or an inline dict); see --list-presets"
        )
    check_output_file(args.out, "--out")
    specs = collect(args)
    schedules, n_steps = specs["schedules"], specs["steps"]
    if args.bound is None:
        path = schedule_plot.plot_schedules(
            schedules, n_steps, args.out, title=specs["title"], log_scale=specs["log"]
        )
        print(f"wrote {path} ({len(schedules)} schedule(s), {n_steps} steps)")
        return 0
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    import theory

    D, G = args.bound
    figure = theory.plot_schedule_bound(
        schedules, n_steps, D, G, base_lr="optimal" if args.tuned else "given"
    )
    try:
        left = figure.axes[0]  # the schedules (the bounds are on a log axis of their own)
        log = specs["log"]
        if log is None:
            curves = {line.get_label(): np.asarray(line.get_ydata()) for line in left.lines}
            log = schedule_plot.spans_decades(curves)
        if log:
            left.set_yscale("log")
        if specs["title"]:
            figure.suptitle(textwrap.fill(specs["title"], 110), fontsize="medium")
        figure.tight_layout()
        path = schedule_plot.save_figure(figure, args.out, dpi=110)
    finally:
        plt.close(figure)
    print(f"wrote {path} ({len(schedules)} schedule(s) beside their bounds, {n_steps} steps)")
    return 0
