"""The learning-rate range test (Smith, 2017) beside the curvature estimate (1/L, 2/L).

The test trains for ``num_iter`` updates while the learning rate sweeps from ``start_lr`` to
``end_lr`` and records the loss at each rate. Conventions:

* Sweep. Update ``i`` (``i = 0 .. num_iter - 1``) uses
  ``lr_i = start_lr * (end_lr / start_lr) ** (i / (num_iter - 1))`` (``sweep="exp"``, the
  sweep of fastai's ``lr_find`` and torch-lr-finder, not Smith's; torch-lr-finder's
  ``ExponentialLR`` grid, which reaches ``end_lr`` at the last update; fastai's ``lr_find`` uses
  ``i / num_iter`` and stops a factor ``(end_lr / start_lr) ** (1 / num_iter)`` short of
  ``end_lr``) or ``lr_i = start_lr + (end_lr - start_lr) * i / (num_iter - 1)``
  (``sweep="linear"``, Smith's original CLR "LR range test", 2017, section 3.3). Every param group
  gets ``lr_i``.
* Loss recorded for ``lr_i``: the training loss of the batch the update ``i`` is computed on
  (before it), or, with ``val_data``, the mean validation loss after update ``i`` (slower, more
  reliable; torch-lr-finder's ``val_loader``).
* Smoothing: an exponential moving average with bias correction (Kingma & Ba's correction, as
  fastai does): ``avg_i = beta * avg_{i-1} + (1 - beta) * loss_i``,
  ``smoothed_i = avg_i / (1 - beta ** (i + 1))``. ``smoothing = beta = 0`` keeps the raw loss.
* Early stop: after update ``i`` the test stops when
  ``smoothed_i - best > (diverge_threshold - 1) * |best|`` (``best`` the smallest smoothed loss
  so far; for a positive ``best`` this is ``smoothed_i > diverge_threshold * best``, and it keeps
  its meaning for a negative loss such as a Gaussian negative log-likelihood) or the loss is not
  finite; ``diverged_lr`` is then ``lr_i``. On a quadratic with plain gradient descent and the
  training loss, a monotone decreasing loss keeps the bias-corrected average decreasing, so
  divergence is never reported at a rate below the stability edge 2/L (see
  ``tests/schedulers/test_range_test.py``).
* Nothing changes: the model's parameters, buffers (non-persistent ones too), gradients and
  extra state, the optimizer's state and param groups, the model's train/eval mode and the RNG
  states (Python, NumPy, torch CPU and CUDA) are restored exactly afterwards, also when the test
  raises. They are restored in place: the tensors (parameters, buffers, gradients, a tensor
  ``lr``, the optimizer's state tensors) are the objects they were before, holding their values.

Suggestions, each named by the rule that made it (computed on the smoothed loss, restricted to
the points recorded before any divergence):

* The bias warm-up. The smoothed loss at point ``i`` is the uncorrected average divided by
  ``1 - beta ** (i + 1)``, the share of the average's weight that the recorded losses carry (the
  rest is on its zero start). While that share is below 1/2 the correction more than doubles the
  average, and the point is a mean of so few batches (one at ``i = 0``) that batch-to-batch noise
  gives it a slope, or a "fall", larger than the loss's real descent: the first points of a
  noisy sweep won ``steepest`` and ``clr_bounds``' ``base_lr``. The rules that read the early
  curve therefore start at ``k`` (cut on a short sweep, below), the first index with
  ``1 - beta ** (k + 1) >= 1/2`` (:func:`bias_warmup`: about ``ln 2 / (1 - beta)``; 34 for the
  default ``beta = 0.98``, 13 for 0.95, 0 without smoothing), where the smoothed point's
  effective sample size
  ``(sum w)**2 / sum w**2`` (weights ``w_j = beta ** (i - j)``) is at least a third of the
  stationary average's ``(1 + beta) / (1 - beta)``. For comparison: fastai's
  ``Learner.lr_find`` (2.x, ``fastai.callback.schedule``), whose smoothed loss is bias-corrected
  the same way, drops a fixed ``num_it // 10`` first points (and the last 5) before every
  suggestion, 10 of its default 100, still inside its warm-up of 34. torch-lr-finder (0.2.2,
  ``LRFinder.range_test``) has no warm-up to skip: its average has no bias correction and is
  seeded with the first loss (``s_0 = loss_0``, ``s_i = f * loss_i + (1 - f) * s_{i-1}``,
  ``f = smooth_f``, our ``1 - beta``), so its early points stay near the first loss; its
  ``LRFinder.plot(suggest_lr=True)`` drops ``skip_start = 10`` and ``skip_end = 5`` points.
* ``steepest``: the rate with the most negative slope d(smoothed)/d(log lr) (central
  differences over the whole usable curve, ``np.gradient``), searched over the points before the
  minimum ``m`` of the smoothed loss (``m`` itself excluded: the loss turns up there) from index
  ``s = max(skip_start, min(k, m // 2))`` on: after the first ``skip_start`` points (an early
  spike of an unsmoothed curve) and after the warm-up, which is cut to half the points before
  the minimum when the minimum comes before ``2 k`` (a short sweep: otherwise the few points left
  between ``k`` and ``m`` would hide a fall that began earlier; the points searched still average
  at least ``m // 2`` batches). A minimum within ``s + 2`` points of the start is searched over
  the two points before it; none when ``m < 2``. torch-lr-finder's steepest-gradient suggestion
  (``LRFinder.plot(suggest_lr=True)``) takes the most negative ``np.gradient`` of its smoothed
  loss index by index (for an exponential sweep proportional to the slope in log lr, for a linear
  one to the slope in lr) over the whole trimmed curve, after the minimum too.
* ``min/10``: the rate at the minimum smoothed loss divided by 10 (fastai v1's rule of thumb).
* ``valley``: fastai's ``valley``, exactly as ``Learner.lr_find`` applies it: on the smoothed
  losses of every recorded update (the diverging one included, as fastai records it) without the
  first ``num_iter // 10`` and the last 5 points, the longest decreasing run and the rate two
  thirds of the way down it (fastai 2.x, ``fastai.callback.schedule.valley``).
* ``clr_bounds``: cyclical-learning-rate bounds read on the loss, the reading of Smith's rule that
  torch-lr-finder's README gives ("the point at which the loss starts descending and the point at
  which the loss stops descending"): ``base_lr`` where the loss starts to fall (the first rate,
  from ``min(k, m // 2)`` on, the warm-up cut as for ``steepest``, at which the smoothed loss is
  10% of its total fall below its starting value, its value there; the 10% is this module's
  threshold) and ``max_lr`` where it stops falling (the minimum ``m`` of the smoothed loss); none
  when ``m = 0`` or the loss does not fall after the starting point.
  Smith's own rule (2017, section 3.3) reads accuracy, not loss, over a linear sweep of a few
  epochs: ``base_lr`` where the accuracy starts to rise, ``max_lr`` where it slows, becomes ragged
  or falls.

The curvature side: ``curvature_batches`` batches of the training data (full batch on small
problems) give the top Hessian eigenvalue L at the starting parameters, of the model in train
mode as the sweep trains it (``theory.smoothness``), hence gradient descent's safe step 1/L and
stability edge 2/L, drawn on the same plot. They are thresholds for plain gradient descent;
adaptive methods rescale the step.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from schedulers.base import check_bool, check_float, check_int

if TYPE_CHECKING:  # (matplotlib is imported where a figure is drawn, not with this module)
    import matplotlib.axes
    import matplotlib.figure

#: The largest ``num_iter``: the sweep's rates are held in memory (80 MB at this size).
MAX_NUM_ITER = 10**7
#: The most ``curvature_batches``: they are read ahead and held in memory together for the
#: Hessian estimate (one batch of 128 CIFAR-10 images is 1.5 MB), which costs a few
#: Hessian-vector products over all of them per power iteration.
MAX_CURVATURE_BATCHES = 1000

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Suggestion:
    """A suggested learning rate and the rule that produced it."""

    rule: str
    lr: float
    explanation: str


@dataclass
class RangeTestResult:
    """What the range test recorded; ``plot()`` draws it."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    accuracies: list[float] | None
    diverged_lr: float | None
    suggestions: dict[str, Suggestion]
    clr_bounds: tuple[float, float] | None
    curvature: Any | None  # theory.smoothness.SmoothnessEstimate
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def safe_step(self) -> float | None:
        """Gradient descent's safe step 1/L at the starting parameters (None without curvature)."""
        return None if self.curvature is None else self.curvature.safe_step

    @property
    def edge_step(self) -> float | None:
        """Gradient descent's stability edge 2/L at the starting parameters."""
        return None if self.curvature is None else self.curvature.edge_step

    def summary(self) -> str:
        """Human-readable lines: the suggestions and the curvature numbers."""
        lines = [
            f"LR range test: {len(self.lrs)} updates, lr {self.lrs[0]:.3g} .. {self.lrs[-1]:.3g}"
        ]
        if self.diverged_lr is not None:
            lines.append(f"  diverged at lr = {self.diverged_lr:.4g}")
        for name, suggestion in self.suggestions.items():
            lines.append(f"  {name:>10}: lr = {suggestion.lr:.4g}  ({suggestion.explanation})")
        if self.clr_bounds is not None:
            base, top = self.clr_bounds
            lines.append(f"  clr bounds: base_lr = {base:.4g}, max_lr = {top:.4g} (Smith 2017)")
        if self.curvature is not None:
            c = self.curvature
            lines.append(
                f"  curvature: L = {c.eigenvalue:.4g} ({c.hvps} Hessian-vector products), "
                f"1/L = {c.safe_step:.4g}, 2/L = {c.edge_step:.4g}"
            )
        return "\n".join(lines)

    def y_limits(self) -> tuple[float, float]:
        """The loss axis' range: the useful part of the curve.

        The useful points are those recorded before the loss diverged or, after its minimum,
        climbed back above its starting value. The range goes from the lowest to the highest of
        the smoothed loss and the 2nd-98th percentiles of the raw loss over them, padded by 5%:
        the smoothed curve and at least 96% of the raw points are visible, and the blow-up at
        the end does not flatten the rest.
        """
        recorded = len(self.smoothed) - (1 if self.diverged_lr is not None else 0)
        smoothed = np.asarray(self.smoothed[: max(recorded, 1)], dtype=np.float64)
        if np.isfinite(smoothed).all() and smoothed.size > 2:
            lowest = int(np.argmin(smoothed))
            above = np.nonzero(smoothed[lowest:] > smoothed[0])[0]
            if above.size:
                smoothed = smoothed[: lowest + int(above[0])]
        raw = np.asarray(self.losses[: smoothed.size], dtype=np.float64)
        smoothed, raw = smoothed[np.isfinite(smoothed)], raw[np.isfinite(raw)]
        if not smoothed.size:
            return (0.0, 1.0)
        low, high = float(smoothed.min()), float(smoothed.max())
        if raw.size:
            low = min(low, float(np.percentile(raw, 2)))
            high = max(high, float(np.percentile(raw, 98)))
        pad = 0.05 * (high - low) or 0.05 * max(abs(high), 1e-12)
        return (low - pad, high + pad)

    def plot(
        self,
        path: str | os.PathLike | None = None,
        ax: matplotlib.axes.Axes | None = None,
        title: str | None = None,
    ) -> matplotlib.figure.Figure:
        """Loss (raw and smoothed) against lr on a log axis, with everything the test found.

        Drawn: the suggestions, Smith's CLR bounds (a shaded band), the divergence (a red
        line), and 1/L, 2/L, labelled as plain gradient descent's thresholds (and said not to
        apply as such when the optimizer has momentum or is adaptive). The title names what was
        tested (``label``) and the optimizer; the legend sits outside the data; the loss axis
        spans the curve's useful range (:meth:`y_limits`).

        Returns the matplotlib Figure; with ``path`` it is also saved there (atomically).
        """
        import matplotlib

        if ax is None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        rows = 2 if self.accuracies else 1
        if ax is None:
            figure, axes = plt.subplots(rows, 1, figsize=(11, 4.5 * rows), squeeze=False)
            ax = axes[0][0]
        else:
            figure, axes = ax.figure, [[ax]]
        ax.plot(self.lrs, self.losses, color="0.7", linewidth=1, label="loss")
        ax.plot(self.lrs, self.smoothed, color="C0", linewidth=2, label="smoothed loss")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        low, high = self.y_limits()
        ax.set_ylim(low, high)
        if self.clr_bounds is not None:
            base, top = self.clr_bounds
            ax.axvspan(base, top, color="C2", alpha=0.12,
                       label=f"CLR bounds (Smith): {base:.3g} to {top:.3g}")  # fmt: skip
        styles = ["--", "-.", (0, (5, 2, 1, 2)), (0, (3, 1))]
        for i, (name, suggestion) in enumerate(self.suggestions.items()):
            ax.axvline(suggestion.lr, color=f"C{i + 3}", linestyle=styles[i % len(styles)],
                       label=f"{name}: {suggestion.lr:.3g}")  # fmt: skip
        if self.curvature is not None:
            plain = self.settings.get("plain_gd", True)
            for value, label, meaning in (
                (self.safe_step, "1/L", "safe step"),
                (self.edge_step, "2/L", "stability edge"),
            ):
                text = f"{label} = {value:.3g}: {'GD' if plain else 'plain GD'}'s {meaning}"
                ax.axvline(value, color="k", linestyle=":" if label == "1/L" else (0, (8, 3)),
                           linewidth=1.2, label=text)  # fmt: skip
            if not plain:
                optimizer = self.settings.get("optimizer", "this optimizer")
                ax.annotate(
                    f"1/L and 2/L are thresholds for plain gradient descent; {optimizer} "
                    "rescales the step (momentum or adaptive), so they only indicate the scale.",
                    xy=(0.0, -0.2),
                    xycoords="axes fraction",
                    fontsize="small",
                    va="top",
                )
        if self.diverged_lr is not None:
            ax.axvline(self.diverged_lr, color="C3", linewidth=1.5,
                       label=f"diverged at lr = {self.diverged_lr:.3g}")  # fmt: skip
            ax.plot([self.diverged_lr], [high], marker="v", color="C3", clip_on=False)
        ax.grid(True, which="major", alpha=0.25)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                  borderaxespad=0.0)  # fmt: skip
        if title is None:
            label = self.settings.get("label")
            optimizer = self.settings.get("optimizer")
            what = ", ".join(x for x in (label, optimizer) if x)
            title = f"LR range test{': ' + what if what else ''} ({len(self.lrs)} updates)"
        ax.set_title(title)
        if self.accuracies:
            acc_ax = axes[1][0]
            acc_ax.plot(self.lrs, self.accuracies, color="C2")
            acc_ax.set_xscale("log")
            acc_ax.set_xlabel("learning rate")
            acc_ax.set_ylabel("accuracy")
        figure.tight_layout()
        if path is not None:
            from schedulers.plot import save_figure

            save_figure(figure, path, create_parent=True, dpi=120)
        return figure


def sweep_lrs(start_lr: float, end_lr: float, num_iter: int, sweep: str) -> np.ndarray:
    """The learning rate of each update ``i = 0 .. num_iter - 1`` (see the module docstring)."""
    fraction = np.arange(num_iter, dtype=np.float64) / (num_iter - 1)
    if sweep == "exp":
        return start_lr * (end_lr / start_lr) ** fraction
    return start_lr + (end_lr - start_lr) * fraction


def smooth(losses: Iterable[float], beta: float) -> list[float]:
    """Bias-corrected exponential moving average (see the module docstring)."""
    average, smoothed = 0.0, []
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        smoothed.append(average / (1 - beta ** (i + 1)))
    return smoothed


def valley_index(losses: list[float]) -> int:
    """fastai's ``valley`` on ``losses``: the index two thirds of the way down the longest valley.

    Line for line fastai 2.x's ``fastai.callback.schedule.valley`` (from ESRI's suggester),
    including its quirks: ``max_end`` is updated inside the inner loop, so ``max_start`` can be
    taken from a run length that is still growing, and the valley is taken to start one point
    before its first point (``max_end - length``).
    """
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


def valley(lrs: list[float], smoothed: list[float], num_iter: int) -> Suggestion | None:
    """fastai's ``valley`` suggestion, as ``Learner.lr_find`` computes it: on the recorded
    (smoothed) losses without the first ``num_iter // 10`` and the last 5 points; ``None`` when
    nothing is left (fastai fails there)."""
    first = num_iter // 10
    losses = list(smoothed[first:-5])
    if not losses:
        return None
    index = first + valley_index(losses)
    return Suggestion(
        "valley",
        float(lrs[index]),
        "fastai's valley: 2/3 down the longest decreasing run (first 10% and last 5 trimmed)",
    )


def bias_warmup(smoothing: float) -> int:
    """The bias warm-up's end ``k`` for the average's ``beta = smoothing``: the first index with
    ``1 - beta ** (k + 1) >= 1/2``, where the bias correction at most doubles the average (see
    the module docstring; 0 for ``smoothing = 0``, 34 for 0.98).

    >>> bias_warmup(0.98), bias_warmup(0.95), bias_warmup(0.5), bias_warmup(0.0)
    (34, 13, 0, 0)
    """
    beta = check_float("smoothing", smoothing, 0.0, 1.0, high_open=True)
    if beta == 0.0:
        return 0
    k = max(math.ceil(math.log(0.5) / math.log(beta)) - 1, 0)
    while 1 - beta ** (k + 1) < 0.5:  # the logarithms' rounding, either way
        k += 1
    while k > 0 and 1 - beta**k >= 0.5:
        k -= 1
    return k


def suggest(
    lrs: list[float], losses: list[float], skip_start: int = 5, *, smoothing: float = 0.0
) -> dict[str, Suggestion]:
    """The suggestions of the module docstring (``steepest``, ``min/10``, ``valley``) from the
    recorded ``losses`` at the rates ``lrs`` (the points before any divergence, all finite).

    ``losses`` are the raw losses; they are smoothed here with ``smoothing`` (the test's
    ``beta``; :func:`smooth`), which also sets the bias warm-up the ``steepest`` search starts
    after, so the curve and its warm-up cannot disagree. With ``smoothing = 0`` (the default)
    ``losses`` are taken as they are (an already smoothed curve then has no warm-up beyond
    ``skip_start``). A result's ``steepest`` and ``min/10`` are those of
    ``suggest(r.lrs[:n], r.losses[:n], skip_start, smoothing=r.settings["smoothing"])``, ``n``
    the points recorded before the divergence (its ``valley`` is fastai's, on every point).
    """
    skip_start = check_int("skip_start", skip_start, 0)
    warmup = bias_warmup(smoothing)
    if len(lrs) < 3:
        return {}
    curve = np.asarray(smooth(losses, smoothing), dtype=np.float64)
    minimum = int(np.nanargmin(curve))
    suggestions = {
        "min/10": Suggestion(
            "min/10", lrs[minimum] / 10, f"minimum smoothed loss at lr = {lrs[minimum]:.3g}, / 10"
        )
    }
    # after skip_start and the warm-up, the warm-up cut at half the points before the minimum;
    # at least the two points before the minimum
    first = max(min(max(skip_start, min(warmup, minimum // 2)), minimum - 2), 0)
    if minimum - first >= 2:
        slopes = np.gradient(curve, np.log(np.asarray(lrs, dtype=np.float64)))
        steepest = first + int(np.argmin(slopes[first:minimum]))  # the minimum itself excluded
        suggestions["steepest"] = Suggestion(
            "steepest", lrs[steepest], "most negative slope of the smoothed loss before its minimum"
        )
    found = valley(lrs, list(curve), len(lrs))
    if found is not None:
        suggestions["valley"] = found
    return suggestions


def clr_bounds(
    lrs: list[float], losses: list[float], fall: float = 0.1, *, smoothing: float = 0.0
) -> tuple[float, float] | None:
    """(base_lr, max_lr) for cyclical learning rates, read on the loss (torch-lr-finder's reading
    of Smith's accuracy rule): where the loss starts to fall and where it stops falling.

    ``losses`` are the raw losses at ``lrs``, smoothed here with ``smoothing`` as in
    :func:`suggest`. The starting point is the bias warm-up's end ``k`` (:func:`bias_warmup`),
    cut to ``m // 2`` for a minimum ``m`` before ``2 k``: ``min(k, m // 2)``; ``base_lr`` is the
    first rate from there on at which the smoothed loss is ``fall`` of its fall to the minimum
    below its starting value, ``max_lr`` the rate at the minimum. None when ``m = 0`` or the loss
    does not fall after the starting point.
    """
    warmup = bias_warmup(smoothing)
    curve = np.asarray(smooth(losses, smoothing), dtype=np.float64)
    minimum = int(np.nanargmin(curve))
    start = min(warmup, minimum // 2)
    drop = curve[start] - curve[minimum]
    if minimum == 0 or not drop > 0:
        return None
    started = start + int(np.argmax(curve[start : minimum + 1] <= curve[start] - fall * drop))
    return float(lrs[started]), float(lrs[minimum])


def _cycle(data: Iterable[Batch]) -> Iterator[Batch]:
    """Batches forever: the iterable is iterated again when exhausted (a loader reshuffles). A
    one-shot iterator (a generator: ``iter(data) is data``) cannot be iterated again: the
    batches of its first pass are kept and cycled."""
    if isinstance(data, Iterator):
        kept: list[Batch] = []
        for batch in data:
            kept.append(batch)
            yield batch
        data = kept
    while True:
        empty = True
        for batch in data:
            empty = False
            yield batch
        if empty:
            raise ValueError("train_data is empty: the range test needs at least one batch")


def check_options(
    *,
    start_lr: float,
    end_lr: float,
    num_iter: int,
    sweep: str,
    smoothing: float,
    diverge_threshold: float,
    curvature_batches: int,
    skip_start: int = 5,
    dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Raise ``ValueError`` (a value out of range) or ``TypeError`` (not a number) naming the
    first of :func:`lr_range_test`'s options that is wrong, so that a caller can check them
    before it loads any data; return them as Python numbers (NumPy scalars are taken).

    ``start_lr`` and ``end_lr`` must be at most the largest finite value of ``dtype``, the
    parameters' floating-point type (:func:`narrowest_float_dtype`; None: torch's default dtype,
    float32 unless changed): :func:`rate_limit_problem`. ``curvature_batches`` is at most
    :data:`MAX_CURVATURE_BATCHES`.

    >>> check_options(start_lr=1e-6, end_lr=10.0, num_iter=1, sweep="exp", smoothing=0.98,
    ...               diverge_threshold=4.0, curvature_batches=1)
    Traceback (most recent call last):
    ...
    ValueError: num_iter must be an integer in [2, 10000000], got num_iter=1
    """
    start_lr = check_float("start_lr", start_lr, 0.0, low_open=True)
    end_lr = check_float("end_lr", end_lr, start_lr, low_open=True)
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
        if (problem := rate_limit_problem(value, dtype)) is not None:
            raise ValueError(f"{name} {problem}, got {name}={value!r}")
    num_iter = check_int("num_iter", num_iter, 2, MAX_NUM_ITER)
    if sweep not in ("exp", "linear"):
        raise ValueError(f"sweep must be 'exp' or 'linear', got sweep={sweep!r}")
    smoothing = check_float("smoothing", smoothing, 0.0, 1.0, high_open=True)
    diverge_threshold = check_float("diverge_threshold", diverge_threshold, 1.0, low_open=True)
    curvature_batches = check_int("curvature_batches", curvature_batches, 0, MAX_CURVATURE_BATCHES)
    skip_start = check_int("skip_start", skip_start, 0)
    return {
        "start_lr": start_lr, "end_lr": end_lr, "num_iter": num_iter, "sweep": sweep,
        "smoothing": smoothing, "diverge_threshold": diverge_threshold,
        "curvature_batches": curvature_batches, "skip_start": skip_start,
    }  # fmt: skip


def rate_limit_problem(rate: float, dtype: torch.dtype | None = None) -> str | None:
    """Why ``rate`` cannot be applied to parameters of ``dtype`` (None: torch's default dtype,
    float32 unless changed, the type of the models ``runs`` builds), as the phrase "must be at
    most ..." naming the bound, or None: torch's update raises ``value cannot be converted to
    type float without overflow`` for a rate above the dtype's largest finite value."""
    dtype = torch.get_default_dtype() if dtype is None else dtype
    largest = torch.finfo(dtype).max
    if rate <= largest:
        return None
    kind = str(dtype).removeprefix("torch.")
    return (
        f"must be at most {largest:.6g}, the largest {kind} value (a larger rate cannot be "
        f"applied to {kind} parameters)"
    )


def narrowest_float_dtype(optimizer: torch.optim.Optimizer) -> torch.dtype | None:
    """The floating-point dtype of ``optimizer``'s parameters with the smallest largest value
    (the one whose range bounds the rates that can be applied to all of them: float16 before
    bfloat16 before float32 before float64), or None when it has no floating-point parameter."""
    dtypes = {
        p.dtype
        for group in optimizer.param_groups
        for p in group["params"]
        if isinstance(p, Tensor) and p.dtype.is_floating_point
    }
    return min(dtypes, key=lambda dtype: torch.finfo(dtype).max, default=None)


def _snap(value: Any) -> tuple:
    """A snapshot of ``value`` that :func:`_put_back` restores in place: a tensor's values, a
    list's or tuple's items (the same objects, each snapshotted), any other value as a copy."""
    if isinstance(value, Tensor):
        return ("tensor", value, value.detach().clone())
    if isinstance(value, list) or type(value) is tuple:
        return (type(value).__name__, value, [_snap(item) for item in value])
    return ("other", value, copy.deepcopy(value))


def _put_back(saved: tuple) -> Any:
    """The snapshotted object holding its snapshotted values (see :func:`_snap`)."""
    kind, original, content = saved
    if kind == "tensor":
        with torch.no_grad():
            if original.shape == content.shape and original.dtype == content.dtype:
                original.copy_(content)
            else:  # (resized or cast meanwhile)
                original.data = content.clone()
        return original
    if kind == "other":
        immutable = isinstance(original, (int, float, complex, str, bytes, type(None)))
        return original if immutable else copy.deepcopy(content)
    items = [_put_back(item) for item in content]
    if kind == "tuple":
        return tuple(items)
    if len(original) != len(items) or any(a is not b for a, b in zip(original, items)):
        original[:] = items
    return original


def _snapshot_dict(source: dict, skip: tuple = ()) -> dict[Any, tuple]:
    return {key: _snap(value) for key, value in source.items() if key not in skip}


def _restore_dict(target: dict, saved: dict[Any, tuple], keep: tuple = ()) -> None:
    """``target``'s entries as snapshotted, in place: the keys added since are removed, each
    original object put back holding its values."""
    for key in [k for k in target if k not in saved and k not in keep]:
        del target[key]
    for key, snapshot in saved.items():
        value = _put_back(snapshot)
        if key not in target or target[key] is not value:
            target[key] = value


class _Restorer:
    """Snapshots everything the test may change and puts it back, in place, on exit.

    In place: the optimizer's param group dicts, its state entries and their tensors (a tensor
    ``lr`` included), the model's parameters, buffers (persistent or not) and gradients are the
    same objects afterwards, holding their former values, so whatever else holds them (a
    captured CUDA graph, a flat buffer's views, a user's reference) sees the restored values.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model, optimizer

    def __enter__(self) -> _Restorer:
        optimizer = self.optimizer
        groups = optimizer.param_groups
        self.groups = [(group, _snapshot_dict(group, ("params",))) for group in groups]
        self.group_list = list(optimizer.param_groups)
        self.state = {p: (entry, _snapshot_dict(entry)) for p, entry in optimizer.state.items()}
        self.modules = []
        for module in self.model.modules():
            parameters = {
                name: (p, _snap(p), None if p.grad is None else _snap(p.grad))
                for name, p in module._parameters.items()
                if p is not None
            }
            buffers = _snapshot_dict({k: b for k, b in module._buffers.items() if b is not None})
            extra = None
            if type(module).get_extra_state is not torch.nn.Module.get_extra_state:
                extra = copy.deepcopy(module.get_extra_state())
            self.modules.append((module, module.training, parameters, buffers, extra))
        self.rng = _rng_state()
        return self

    def __exit__(self, *exc_info) -> None:
        self.restore_optimizer()
        self.restore_model()
        _set_rng_state(self.rng)

    def restore_optimizer(self) -> None:
        optimizer = self.optimizer
        optimizer.param_groups[:] = self.group_list
        for group, saved in self.groups:
            _restore_dict(group, saved, keep=("params",))
        state = optimizer.state
        for p in [p for p in state if p not in self.state]:
            del state[p]
        for p, (entry, saved) in self.state.items():
            _restore_dict(entry, saved)
            if p not in state or state[p] is not entry:
                state[p] = entry

    def restore_model(self) -> None:
        """Put back the model as snapshotted (the snapshot stays, for the exit)."""
        for module, training, parameters, buffers, extra in self.modules:
            for name, (p, value, grad) in parameters.items():
                module._parameters[name] = _put_back(value)
                p.grad = None if grad is None else _put_back(grad)
            for name, snapshot in buffers.items():
                module._buffers[name] = _put_back(snapshot)
            if extra is not None:
                module.set_extra_state(copy.deepcopy(extra))
            module.train(training)


def _rng_state() -> tuple:
    """The global random states: Python, NumPy, torch CPU and CUDA."""
    return (
        random.getstate(),
        np.random.get_state(),  # noqa: NPY002 (restoring the legacy global state)
        torch.get_rng_state(),
        torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    )


def _set_rng_state(state: tuple) -> None:
    python_state, numpy_state, torch_state, cuda_state = state
    random.setstate(python_state)
    np.random.set_state(numpy_state)  # noqa: NPY002
    torch.set_rng_state(torch_state)
    if cuda_state is not None:
        torch.cuda.set_rng_state_all(cuda_state)


def _mean_loss_and_accuracy(model, loss_fn, data, device, accuracy) -> tuple[float, float]:
    total_loss, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for inputs, targets in data:
            inputs, targets = inputs.to(device), targets.to(device)
            outputs = model(inputs)
            total_loss += float(loss_fn(outputs, targets)) * len(targets)
            correct += _correct(outputs, targets) if accuracy else 0
            count += len(targets)
    if count == 0:
        raise ValueError("val_data is empty: it needs at least one batch")
    return total_loss / count, correct / count


def _correct(outputs: Any, targets: Tensor) -> int:
    if not isinstance(outputs, Tensor):
        raise TypeError(
            "accuracy=True needs the model's output to be a Tensor of scores (argmax over its "
            f"last dimension), got a {type(outputs).__name__}; pass accuracy=False"
        )
    outputs = outputs.detach()
    if outputs.ndim < 2 or targets.dtype.is_floating_point:
        return 0
    return int((outputs.argmax(dim=-1) == targets).sum())


def describe_optimizer(optimizer: torch.optim.Optimizer) -> str:
    """``"SGD(momentum=0.9)"``, ``"Adam"``: the class and what decides how it uses the rate."""
    name = type(optimizer).__name__
    group = optimizer.param_groups[0]
    details = []
    momentum = group.get("momentum")
    if momentum is not None and not isinstance(momentum, Tensor) and momentum:
        details.append(f"momentum={momentum:g}")
    if group.get("nesterov"):
        details.append("nesterov")
    return f"{name}({', '.join(details)})" if details else name


def is_plain_gd(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer is plain gradient descent (SGD without momentum), the method the
    1/L and 2/L thresholds are about."""
    if "SGD" not in type(optimizer).__name__:
        return False
    return all(not group.get("momentum") for group in optimizer.param_groups)


def read_curve(
    lrs: list[float],
    losses: list[float],
    smoothed: list[float],
    diverged_lr: float | None,
    num_iter: int,
    skip_start: int = 5,
    *,
    smoothing: float = 0.0,
) -> tuple[dict[str, Suggestion], tuple[float, float] | None]:
    """The suggestions and CLR bounds of a recorded sweep, as :func:`lr_range_test` reads them
    (the module docstring's rules): ``steepest``, ``min/10`` and :func:`clr_bounds` on the points
    recorded before any divergence (the raw ``losses``, smoothed with ``smoothing``), fastai's
    ``valley`` on every point's ``smoothed`` loss, the diverging one included. A record saved
    with its ``lrs``, ``losses``, ``smoothed`` and ``diverged_lr`` is read again by the rules of
    this version (``runs.tuning`` compares them with a range test saved by an earlier one)."""
    recorded = len(smoothed) - (1 if diverged_lr is not None else 0)
    usable_lrs, usable = lrs[: max(recorded, 1)], smoothed[: max(recorded, 1)]
    usable_losses = losses[: len(usable)]  # the raw losses, which suggest and clr_bounds smooth
    suggestions = {}
    if all(map(math.isfinite, usable)):
        suggestions = suggest(usable_lrs, usable_losses, skip_start, smoothing=smoothing)
    fastai_valley = valley(lrs, smoothed, num_iter)
    suggestions.pop("valley", None)
    if fastai_valley is not None:
        suggestions["valley"] = fastai_valley
    bounds = clr_bounds(usable_lrs, usable_losses, smoothing=smoothing) if len(usable) > 1 else None
    return suggestions, bounds


def lr_range_test(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    train_data: Iterable[Batch],
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    sweep: str = "exp",
    smoothing: float = 0.98,
    diverge_threshold: float = 4.0,
    val_data: Iterable[Batch] | None = None,
    accuracy: bool = False,
    curvature_batches: int = 1,
    skip_start: int = 5,
    device: torch.device | str | None = None,
    label: str | None = None,
) -> RangeTestResult:
    """Run the LR range test; the model, optimizer and RNG are left exactly as they were.

    Args:
        model: any ``nn.Module``; called as ``model(inputs)``.
        optimizer: any torch optimizer over ``model``'s parameters (ours or torch.optim's); its
            param groups' ``lr`` is overwritten during the test and restored afterwards.
        loss_fn: ``loss_fn(model(inputs), targets)``, a scalar.
        train_data: an iterable of ``(inputs, targets)``; cycled when shorter than ``num_iter``
            (a one-shot iterator, e.g. a generator, by keeping the batches of its first pass).
        start_lr, end_lr: the sweep's first and last rates (``0 < start_lr < end_lr``, both at
            most the largest value of the parameters' dtype: :func:`check_options`).
        num_iter: number of updates (2 to ``MAX_NUM_ITER`` = 10**7).
        sweep: ``"exp"`` (geometric) or ``"linear"``.
        smoothing: beta of the bias-corrected moving average, in [0, 1) (0: no smoothing); it
            also sets the bias warm-up that ``steepest`` and ``clr_bounds`` start after.
        diverge_threshold: stop when the smoothed loss rises above the best by more than
            ``(diverge_threshold - 1) * |best|`` (> 1; for a positive loss: exceeds this
            multiple of the best).
        val_data: optional validation batches, evaluated after every update (recorded instead of
            the training loss).
        accuracy: also record accuracy (argmax over the last dimension; on ``val_data`` when
            given, else on the training batch) for Smith's accuracy-versus-rate plot; only
            then must the model's output be a Tensor (``TypeError`` otherwise).
        curvature_batches: batches for the Hessian estimate at the starting parameters
            (``theory.smoothness``, in train mode, the mode the sweep trains in, whatever the
            model's mode on entry); 0 to skip it, at most ``MAX_CURVATURE_BATCHES`` = 1000.
            They are the sweep's own first batches, read ahead from the same pass over
            ``train_data``; the model, the optimizer and the RNG are restored after the
            estimate, so the sweep sees exactly the batches and random draws it would see
            without it (for a loader that reshuffles from the global RNG, as long as
            ``curvature_batches`` does not exceed one pass).
        skip_start: points ignored at the start by the ``steepest`` rule (an int >= 0), which
            starts at ``max(skip_start, min(k, m // 2))``, ``k`` the smoothing's bias warm-up
            (:func:`bias_warmup`: 34 for the default 0.98), ``m`` the minimum's index (see the
            module docstring, also for a minimum that comes earlier).
        device: where batches are moved (default: the model's parameters' device).
        label: what is tested (e.g. the experiment's name), for the figure's title.

    Returns:
        a :class:`RangeTestResult` (see the module docstring for every rule).
    """
    options = check_options(
        start_lr=start_lr,
        end_lr=end_lr,
        num_iter=num_iter,
        sweep=sweep,
        smoothing=smoothing,
        diverge_threshold=diverge_threshold,
        curvature_batches=curvature_batches,
        skip_start=skip_start,
        dtype=narrowest_float_dtype(optimizer),
    )
    start_lr, end_lr, num_iter = options["start_lr"], options["end_lr"], options["num_iter"]
    smoothing, diverge_threshold = options["smoothing"], options["diverge_threshold"]
    curvature_batches, skip_start = options["curvature_batches"], options["skip_start"]
    accuracy = check_bool("accuracy", accuracy)
    without_lr = [i for i, group in enumerate(optimizer.param_groups) if "lr" not in group]
    if without_lr:
        raise ValueError(
            f"optimizer: {type(optimizer).__name__}'s param groups {without_lr} have no 'lr' "
            "(it chooses its own step size); the range test sweeps 'lr', so it needs an "
            "optimizer with one (SGD, Adam, ...)"
        )
    device = torch.device(device) if device is not None else next(model.parameters()).device
    batches: Iterator[Batch] = _cycle(train_data)
    rates = sweep_lrs(float(start_lr), float(end_lr), num_iter, sweep)
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    accuracies: list[float] | None = [] if accuracy else None
    diverged_lr = None
    curvature = None
    with _Restorer(model, optimizer) as restorer:
        if curvature_batches:
            from theory.smoothness import smoothness  # the curvature side lives in theory

            ahead = [next(batches) for _ in range(curvature_batches)]  # the sweep's first batches
            rng = _rng_state()  # after the read-ahead, which may have drawn a shuffle
            model.train()  # the mode the sweep trains in (BatchNorm's batch statistics, dropout)
            curvature = smoothness(model, loss_fn, [(x.to(device), y.to(device)) for x, y in ahead])
            restorer.restore_model()  # whatever the estimate touched is put back, modes included
            _set_rng_state(rng)
            batches = itertools.chain(ahead, batches)  # the sweep starts with the same batches
        model.train()
        average, best = 0.0, math.inf
        for i, lr in enumerate(rates):
            for group in optimizer.param_groups:
                if isinstance(group["lr"], Tensor):
                    group["lr"].fill_(float(lr))
                else:
                    group["lr"] = float(lr)
            inputs, targets = next(batches)
            inputs, targets = inputs.to(device), targets.to(device)
            optimizer.zero_grad()
            outputs = model(inputs)
            loss = loss_fn(outputs, targets)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            correct = 0.0
            if accuracy and val_data is None:
                correct = _correct(outputs, targets) / max(len(targets), 1)
            if val_data is not None:
                model.eval()
                value, correct = _mean_loss_and_accuracy(model, loss_fn, val_data, device, accuracy)
                model.train()
            lrs.append(float(lr))
            losses.append(value)
            if accuracies is not None:
                accuracies.append(correct)
            average = smoothing * average + (1 - smoothing) * value
            current = average / (1 - smoothing ** (i + 1))
            smoothed.append(current)
            if not math.isfinite(current) or (
                i > 0 and current - best > (diverge_threshold - 1) * abs(best)
            ):
                diverged_lr = float(lr)
                break
            best = min(best, current)
    settings = {
        "start_lr": start_lr, "end_lr": end_lr, "num_iter": num_iter, "sweep": sweep,
        "smoothing": smoothing, "diverge_threshold": diverge_threshold,
        "validation": val_data is not None, "curvature_batches": curvature_batches,
        "label": label, "optimizer": describe_optimizer(optimizer),
        "plain_gd": is_plain_gd(optimizer),
    }  # fmt: skip
    suggestions, bounds = read_curve(
        lrs, losses, smoothed, diverged_lr, num_iter, skip_start, smoothing=smoothing
    )
    return RangeTestResult(
        lrs=lrs,
        losses=losses,
        smoothed=smoothed,
        accuracies=accuracies,
        diverged_lr=diverged_lr,
        suggestions=suggestions,
        clr_bounds=bounds,
        curvature=curvature,
        settings=settings,
    )
