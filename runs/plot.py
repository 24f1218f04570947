"""``stepsize plot``: the schedule plotter of :mod:`schedulers.plot`, plus ``--bound D,G``.

With ``--bound D,G`` the figure has the schedules on the left and, on the right, the convex
last-iterate bound of SGD with each schedule (``theory.plot_schedule_bound``: Defazio et al.
2023, Thm 10, with D = ||x0 - x*|| and G a bound on the gradient norms); ``--tuned`` rescales
each schedule to its optimal base rate first, as Schaipp et al. (2025) compare schedules.

Both figures take their specs, steps, title and value axis the same way
(:func:`schedulers.plot.collect`): the steps from ``--steps``, else the largest ``steps`` of the
specs, else 1000, at most :data:`schedulers.plot.MAX_STEPS`; the title from ``--title``, else
the specs' titles joined; a logarithmic schedule axis with ``--log``, none with ``--no-log``,
else as the specs' ``log`` says, else when the values span more than two decades. ``--out`` is
checked before anything is computed (its suffix names the image format, none meaning PNG), and
the figure is written by :func:`schedulers.plot.save_figure` (a temporary file, then a rename)
in both cases (``stepsize plot`` without ``--bound`` is :func:`schedulers.plot.run`); an existing
``--out`` that is read-only is refused (``schedulers.files.check_replaceable``). An empty SPEC
is refused (it is not the current folder), and ``--list-presets`` takes no SPEC and no other
option (:func:`check_list_presets`): it lists and draws nothing, so they would be ignored."""

from __future__ import annotations

import argparse
import math
import textwrap

from schedulers import plot as schedule_plot
from schedulers.files import check_output_file


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
    # (None: not given, so that --list-presets can refuse it; else schedulers.plot.DEFAULT_OUT)
    parser.set_defaults(out=None)


def check_list_presets(args: argparse.Namespace) -> None:
    """Refuses (``ValueError``, one line naming them) the SPECs and options given together with
    ``--list-presets``, which lists the presets and draws nothing: they would be ignored."""
    given = [f"SPEC {spec!r}" for spec in args.specs]
    options = (("steps", "--steps"), ("out", "--out"), ("title", "--title"), ("bound", "--bound"))
    given += [flag for name, flag in options if getattr(args, name) is not None]
    if args.log is not None:
        given.append("--log" if args.log else "--no-log")
    if args.tuned:
        given.append("--tuned")
    if given:
        raise ValueError(
            f"--list-presets lists the presets and draws nothing; it takes no SPEC or other "
            f"option, got {', '.join(given)}"
        )


def check_specs(specs: list[str]) -> None:
    """Refuses (``ValueError``) an empty or blank SPEC: ``Path('')`` is the current folder, which
    would be reported as a folder given for a TOML file."""
    for spec in specs:
        if not spec.strip():
            raise ValueError(
                f"SPEC: an empty spec {spec!r}; give a preset, a TOML file or an inline dict "
                "(see --list-presets)"
            )


def run(args: argparse.Namespace) -> int:
    """Draw the specs; with ``--bound`` beside their bound curves. Every option and spec is
    checked, and ``--out`` too, before anything is computed."""
    if args.list_presets:
        check_list_presets(args)
        return schedule_plot.run(args)
    if args.tuned and args.bound is None:
        raise ValueError("--tuned needs --bound D,G")
    check_specs(args.specs)
    if args.out is None:
        args.out = schedule_plot.DEFAULT_OUT
    if args.bound is None:
        return schedule_plot.run(args)
    if not args.specs:
        raise ValueError(
            "give at least one SPEC (a preset, a TOML file or an inline dict); see --list-presets"
        )
    check_output_file(args.out, "--out")
    specs = schedule_plot.collect(args)
    schedules, n_steps = specs["schedules"], specs["steps"]
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
