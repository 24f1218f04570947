"""``stepsize plot``: the schedule plotter of :mod:`schedulers.plot`, plus ``--bound D,G``.

With ``--bound D,G`` the figure has the schedules on the left and, on the right, the convex
last-iterate bound of SGD with each schedule (``theory.plot_schedule_bound``: Defazio et al.
2023, Thm 10, with D = ||x0 - x*|| and G a bound on the gradient norms); ``--tuned`` rescales
each schedule to its optimal base rate first, as Schaipp et al. (2025) compare schedules. Without
``--bound`` this is exactly ``schedulers.plot``. The figure is written by the runner's atomic
file helper.
"""

from __future__ import annotations

import argparse
from pathlib import Path

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
        "Thm 10) with distance D = ||x0 - x*|| and gradient bound G",
    )
    parser.add_argument(
        "--tuned",
        action="store_true",
        help="with --bound: scale each schedule to the base rate that minimises its bound",
    )


def run(args: argparse.Namespace) -> int:
    """Draw the specs; with ``--bound`` beside their bound curves."""
    if args.bound is None or args.list_presets:
        if args.tuned:
            raise ValueError("--tuned needs --bound D,G")
        return schedule_plot.run(args)
    if not args.specs:
        raise ValueError("give at least one SPEC (a preset, a TOML file or an inline dict)")
    check_output_file(args.out, "--out")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    import theory
    from runs.checkpoint import atomic_write

    schedules, steps = {}, []
    for spec in args.specs:
        parsed = schedule_plot.parse_spec(spec)
        for label, schedule in parsed["schedules"].items():
            if label in schedules:
                raise ValueError(f"label {label!r} is used twice; label specs as LABEL={{...}}")
            schedules[label] = schedule
        if parsed["steps"]:
            steps.append(parsed["steps"])
    n_steps = args.steps if args.steps is not None else max(steps, default=1000)
    if n_steps < 1 or n_steps > 10**6:
        raise ValueError(f"--steps must be in [1, 1e6] with --bound, got {n_steps}")
    D, G = args.bound
    figure = theory.plot_schedule_bound(
        schedules, n_steps, D, G, base_lr="optimal" if args.tuned else "given"
    )
    if args.title:
        figure.suptitle(args.title)
    figure.tight_layout()
    fmt = args.out.rsplit(".", 1)[-1].lower() if "." in args.out else "png"
    try:
        atomic_write(Path(args.out), lambda handle: figure.savefig(handle, format=fmt, dpi=110))
    finally:
        plt.close(figure)
    print(f"wrote {args.out} ({len(schedules)} schedule(s) beside their bounds, {n_steps} steps)")
    return 0
