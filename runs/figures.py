"""Figures of an experiment, drawn from its runs (matplotlib, Agg backend).

- ``figures/*.png``: each evaluation metric and the training loss against the step (or the
  epoch, for experiments counted in epochs), every variant overlaid, the line the mean over seeds
  and the shaded band mean +- std; and ``figures/schedules.png``, the scheduled hyperparameters
  each variant used (a step function: each logged value held until the next, the last to the
  end of the run, or to the step where it diverged);
- ``figures/readme.png``: the figure the README shows, the one ``[report] figure`` names (one of
  :data:`README_FIGURES`).

:func:`save_figure` is the one way a figure is written (temporary name, then rename).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runs.results import (
    METRIC_LABELS,
    eval_series,
    group_by_variant,
    series_band,
    variant_prefix,
)
from runs.spec import EVAL_METRICS

if TYPE_CHECKING:  # (matplotlib is imported where a figure is drawn, not with this module)
    import matplotlib.figure

# What ``[report] figure`` may name: the figure the README shows for the experiment.
README_FIGURE = "readme.png"
FIGURE_FILES = (
    *(f"{name}.png" for name in (*EVAL_METRICS, "train_loss_per_step")),
    "schedules.png",
    README_FIGURE,
)
"""Every file of ``figures/`` that :func:`write_figures` and :func:`readme_figure` may write."""


def check_figure_files(out_dir: Path, option: str) -> None:
    """Raises ``ValueError`` naming ``option`` when a figure's path in ``out_dir`` is a folder
    (checked before anything is written: a run must not train first and then fail here)."""
    for name in FIGURE_FILES:
        path = out_dir / name
        if path.is_dir():
            raise ValueError(f"{option}: {str(path)!r} is a folder, not a file; remove it")


def _smooth(values: Sequence[float | None], window: int) -> list[float]:
    """Moving average over ``window`` values (``None``, a non-finite value in JSON, is NaN)."""
    if window <= 1:
        return [math.nan if v is None else v for v in values]
    arr = np.asarray([math.nan if v is None else v for v in values], dtype=float)
    kernel = np.ones(window) / window
    out = np.convolve(arr, kernel, mode="valid")
    return [float("nan")] * (window - 1) + out.tolist()


def _train_loss_series(r: dict[str, Any]):
    """The training loss per update, as a moving average over ~1% of the run."""
    h = r["history"]["train_loss"]
    window = max(1, len(h["value"]) // 100)
    return h["step"], _smooth(h["value"], window)


def _series(name: str):
    """``(getter, y label, log scale)`` of a figure name of :data:`README_FIGURES`; accuracies
    in %, as in the tables."""
    if name == "train_loss_per_step":
        return _train_loss_series, "train loss (moving average)", True
    if name.endswith("accuracy"):
        raw = eval_series(name)

        def percent(r):
            steps, values = raw(r)
            return steps, [None if v is None else 100 * v for v in values]

        return percent, f"{METRIC_LABELS[name]} (%)", False
    return eval_series(name), METRIC_LABELS[name], name.endswith("loss")


def steps_per_epoch(results: Sequence[dict[str, Any]]) -> int | None:
    """Updates per epoch when every run's training is counted in epochs (``train.epochs``),
    else None: such experiments are drawn against the epoch."""
    counts = set()
    for r in results:
        train = r.get("config", {}).get("train", {})
        epochs = train.get("epochs")
        if not epochs or train.get("steps") or not r.get("steps"):
            return None
        counts.add(r["steps"] / epochs)
    return int(counts.pop()) if len(counts) == 1 and next(iter(counts)) >= 1 else None


def _x_axis(results: Sequence[dict[str, Any]]):
    """``(scale, label)``: steps are divided by ``scale`` on the x-axis."""
    per_epoch = steps_per_epoch(results)
    if per_epoch is None:
        return 1, "step (updates)"
    return per_epoch, "epoch"


def _in_epochs(get, scale: int):
    if scale == 1:
        return get

    def scaled(r):
        steps, values = get(r)
        return [s / scale for s in steps], values

    return scaled


LINE_STYLES = ("-", "--", ":", "-.")
MAX_VARIANTS_PER_PANEL = 8


def _plot_bands(
    ax,
    by_variant: dict[str, list[dict[str, Any]]],
    get,
    label=lambda v: v,
    log_y: bool = False,
    percent: bool = False,
    nonnegative: bool = False,
) -> None:
    """Each variant's mean over seeds as a line, mean ± std shaded (on a log axis the band's
    lower edge is kept above a fifth of the mean, so that it does not fall to zero; a band of
    percentages is clipped to [0, 100], and one of a ``nonnegative`` metric, a loss, to
    [0, inf): where the values live).

    A curve that coincides with one drawn before it gets the next line style, so that both stay
    visible. When a variant with diverged runs would stretch the y-axis far beyond the range of
    the variants whose runs all finished (on a linear axis: beyond it by more than that range's
    own width, at either end; on a log axis: its top above 1.5 times theirs), the axis is cut at
    their range, with a margin, so that they stay readable, and the cut is said in the legend
    ("diverged runs cut off above", "below", or "above and below"). A band of percentages is
    never cut: [0, 100] is readable whole. The band has its own legend entry."""
    drawn: list[tuple[np.ndarray, np.ndarray]] = []
    banded = False
    clean_low, clean_top = math.inf, -math.inf  # the band's extent over the finished variants
    low_all, top = math.inf, -math.inf  # ... and over every variant
    for variant, runs in by_variant.items():
        steps, mean, std = series_band(runs, get)
        if len(steps) == 0:
            continue
        style = _next_style(drawn, steps, mean)
        (line,) = ax.plot(steps, mean, style, label=label(variant))
        low, upper = mean - std, mean + std
        if log_y:
            low = np.maximum(low, mean / 5)
        if percent:
            low, upper = np.clip(low, 0, 100), np.clip(upper, 0, 100)
        elif nonnegative:
            low = np.maximum(low, 0.0)
        if len(runs) > 1:
            ax.fill_between(steps, low, upper, color=line.get_color(), alpha=0.2)
            banded = True
        top, low_all = max(top, float(np.max(upper))), min(low_all, float(np.min(low)))
        if all(r["status"] == "finished" for r in runs):
            clean_top = max(clean_top, float(np.max(upper)))
            clean_low = min(clean_low, float(np.min(low)))
    if banded:
        ax.fill_between([], [], [], color="0.5", alpha=0.2, label="shaded: mean ± std over seeds")
    if not (math.isfinite(clean_top) and math.isfinite(clean_low)) or percent:
        return
    if log_y:
        if clean_top > 0 and top > 1.5 * clean_top:
            ax.set_ylim(top=clean_top * 3)
            ax.plot([], [], " ", label="diverged runs cut off above")
        return
    width = clean_top - clean_low or abs(clean_top) or 1.0
    above, below = top > clean_top + width, low_all < clean_low - width
    if above or below:
        margin = 0.15 * width
        bottom = clean_low - margin
        if nonnegative and clean_low >= 0:
            bottom = max(bottom, -0.02 * (clean_top + margin))  # (a loss stays above ~0)
        ax.set_ylim(bottom, clean_top + margin)
        where = " and ".join(w for w, cut in (("above", above), ("below", below)) if cut)
        ax.plot([], [], " ", label=f"diverged runs cut off {where}")


def _panels(by_variant: dict[str, list[dict[str, Any]]]) -> list[dict[str, list[dict[str, Any]]]]:
    """The variants in groups of at most :data:`MAX_VARIANTS_PER_PANEL`, in their order (one
    panel each), so that a figure with many variants stays readable."""
    names = list(by_variant)
    count = max(1, -(-len(names) // MAX_VARIANTS_PER_PANEL))
    per_panel = max(1, -(-len(names) // count))  # balanced: 9 variants are 5 + 4, not 8 + 1
    chunks = [names[i : i + per_panel] for i in range(0, len(names), per_panel)] or [[]]
    return [{n: by_variant[n] for n in chunk} for chunk in chunks]


def _legend(ax, entries: int) -> None:
    """A legend that stays readable with many variants (two columns, smaller type)."""
    if entries > 8:
        ax.legend(fontsize="xx-small", ncol=2)
    else:
        ax.legend(fontsize="small")


def save_figure(fig: matplotlib.figure.Figure, path: Path, *, layout: bool = True) -> Path:
    """Lays out (unless ``layout`` is False: the caller laid it out), writes (temporary name,
    then rename) and closes a matplotlib figure, also when writing fails."""
    import matplotlib.pyplot as plt

    from runs.checkpoint import atomic_write
    from schedulers.files import savefig_once

    try:
        if layout:
            fig.tight_layout()
        atomic_write(path, lambda file: savefig_once(fig, file, format="png", dpi=110))
    finally:
        plt.close(fig)
    return path


def _next_style(
    drawn: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, y: np.ndarray, offset: int = 0
) -> str:
    """The line style of the curve ``(x, y)``: one further along :data:`LINE_STYLES` for each
    curve in ``drawn`` that it coincides with (the same ``x``, ``y`` within rounding), so that
    both stay visible, ``offset`` further for a curve past the colour cycle; the curve is then
    added to ``drawn``."""
    same = sum(len(a) == len(x) and np.array_equal(a, x) and np.allclose(b, y) for a, b in drawn)
    drawn.append((x, y))
    return LINE_STYLES[(offset + same) % len(LINE_STYLES)]


def _held_to_end(r: dict[str, Any], series: dict[str, list]) -> tuple[list, list]:
    """A logged hyperparameter's ``(steps, values)`` with its last value held to the run's end:
    a value logged at step s is the one the updates from s on use, until the next one (so it is
    drawn as a step function, ``where="post"``), and the last one is used up to the run's last
    update: to ``steps`` for a finished run, to the step where it diverged for a diverged one
    (never beyond, so a diverged run does not look as if it ran on). A rate logged once, a
    variant without a schedule, is then a horizontal line, not a lone invisible point."""
    steps, values = list(series["step"]), list(series["value"])
    end = (r.get("diverged") or {}).get("step", r.get("steps"))
    if steps and isinstance(end, int | float) and end > steps[-1]:
        steps.append(end)
        values.append(values[-1])
    return steps, values


def write_figures(results: Sequence[dict[str, Any]], out_dir: Path, title: str) -> list[Path]:
    """PNG figures: each evaluation metric and the training loss against steps (or epochs, for
    experiments counted in epochs), the mean line and mean ± std band over seeds, every variant
    overlaid (one panel per eight variants); and the schedules used (log-y for a positive
    schedule spanning more than a factor of ten)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_variant = group_by_variant(results)
    scale, xlabel = _x_axis(results)
    panels = _panels(by_variant)
    written = []
    for name in (*EVAL_METRICS, "train_loss_per_step"):
        get, ylabel, log_y = _series(name)
        get = _in_epochs(get, scale)
        fig, axes = plt.subplots(
            1, len(panels), figsize=(7 + 5 * (len(panels) - 1), 4.5), squeeze=False
        )
        log_axis = log_y and name == "train_loss_per_step"
        for ax, panel in zip(axes[0], panels):
            if log_axis:
                ax.set_yscale("log")
            _plot_bands(
                ax,
                panel,
                get,
                log_y=log_axis,
                percent=name.endswith("accuracy"),
                nonnegative="loss" in name,
            )
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
            _legend(ax, len(panel))
        axes[0, 0].set_ylabel(ylabel)
        fig.suptitle(f"{title}: {ylabel}")
        written.append(save_figure(fig, out_dir / f"{name}.png"))

    keys = sorted({tag for r in results for tag in r["history"]["hyper"]})
    if keys:
        fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.6 * len(keys)), squeeze=False)
        for ax, tag in zip(axes[:, 0], keys):
            values, drawn = [], []
            for i, (variant, runs) in enumerate(by_variant.items()):
                series = runs[0]["history"]["hyper"].get(tag)
                if series:
                    steps, held = _held_to_end(runs[0], series)
                    xs = np.asarray(steps, dtype=float) / scale
                    style = _next_style(drawn, xs, np.asarray(held, dtype=float), i // 10)
                    ax.step(xs, held, style, where="post", label=variant)
                    values += series["value"]
            if values and min(values) > 0 and max(values) > 10 * min(values):
                ax.set_yscale("log")
            ax.set_ylabel(tag.removeprefix("hyper/"))
            ax.grid(alpha=0.3)
        axes[0, 0].set_title(f"{title}: schedules used")
        axes[-1, 0].set_xlabel(xlabel)
        _legend(axes[0, 0], len(by_variant))
        written.append(save_figure(fig, out_dir / "schedules.png"))
    return written


def readme_figure(
    results: Sequence[dict[str, Any]], out_dir: Path, title: str, report: dict[str, Any]
) -> Path:
    """``figures/readme.png``: the figure ``[report] figure`` names (default: test accuracy),
    one panel per ``[report] panels`` prefix, the x-axis cut at ``max_step``."""
    import matplotlib

    from schedulers.files import atomic_copy

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = report.get("figure", "test_accuracy")
    path = out_dir / README_FIGURE
    if name == "schedules":
        atomic_copy(out_dir / "schedules.png", path)
        return path
    get, ylabel, log_y = _series(name)
    scale, xlabel = _x_axis(results)
    get = _in_epochs(get, scale)
    by_variant = group_by_variant(results)
    panels = report.get("panels") or [None]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.6 * len(panels) + 2.4 * (len(panels) == 1), 4.5), squeeze=False
    )
    for ax, panel in zip(axes[0], panels):
        chosen = {
            v: runs for v, runs in by_variant.items() if panel is None or variant_prefix(v) == panel
        }
        label = (lambda v: v) if panel is None else (lambda v: v.split(".", 1)[-1])
        if log_y:
            ax.set_yscale("log")
        _plot_bands(
            ax,
            chosen,
            get,
            label,
            log_y=log_y,
            percent=name.endswith("accuracy"),
            nonnegative="loss" in name,
        )
        ax.set_title(f"{title}" if panel is None else f"{title}: {panel}")
        ax.set_xlabel(xlabel)
        if log_y:
            ax.set_yscale("log")
        if "max_step" in report:
            ax.set_xlim(0, report["max_step"] / scale)
        ax.grid(alpha=0.3)
        _legend(ax, len(chosen))
    axes[0, 0].set_ylabel(ylabel)
    return save_figure(fig, path)
