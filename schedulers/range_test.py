"""The learning-rate range test (Smith, 2017) beside the curvature estimate (1/L, 2/L).

The test trains for ``num_iter`` updates while the learning rate sweeps from ``start_lr`` to
``end_lr`` and records the loss at each rate. Conventions:

* Sweep. Update ``i`` (``i = 0 .. num_iter - 1``) uses
  ``lr_i = start_lr * (end_lr / start_lr) ** (i / (num_iter - 1))`` (``sweep="exp"``, Smith 2017,
  fastai's ``lr_find``) or ``lr_i = start_lr + (end_lr - start_lr) * i / (num_iter - 1)``
  (``sweep="linear"``, Smith's original CLR "LR range test"). Every param group gets ``lr_i``.
* Loss recorded for ``lr_i``: the training loss of the batch the update ``i`` is computed on
  (before it), or, with ``val_data``, the mean validation loss after update ``i`` (slower, more
  reliable; torch-lr-finder's ``val_loader``).
* Smoothing: an exponential moving average with bias correction (Kingma & Ba's correction, as
  fastai does): ``avg_i = beta * avg_{i-1} + (1 - beta) * loss_i``,
  ``smoothed_i = avg_i / (1 - beta ** (i + 1))``. ``smoothing = beta = 0`` keeps the raw loss.
* Early stop: after update ``i`` the test stops when ``smoothed_i > diverge_threshold * best``
  (``best`` the smallest smoothed loss so far) or the loss is not finite; ``diverged_lr`` is then
  ``lr_i``. On a quadratic with plain gradient descent and the training loss, a monotone
  decreasing loss keeps the bias-corrected average decreasing, so divergence is never reported
  at a rate below the stability edge 2/L (see ``tests/schedulers/test_range_test.py``).
* Nothing changes: the model's parameters and buffers, the optimizer's state and param groups,
  the model's train/eval mode and the RNG states (Python, NumPy, torch CPU and CUDA) are restored
  exactly afterwards, also when the test raises.

Suggestions, each named by the rule that made it (computed on the smoothed loss, restricted to
the points recorded before any divergence):

* ``steepest``: the rate with the most negative slope d(smoothed)/d(log lr), searched only up to
  the minimum of the smoothed loss and after the first ``skip_start`` points, so an early spike
  cannot win (torch-lr-finder's ``suggestion``, made robust).
* ``min/10``: the rate at the minimum smoothed loss divided by 10 (fastai v1's rule of thumb).
* ``valley``: fastai's ``valley``: the longest decreasing run of the loss; the rate two thirds of
  the way down it (fastai 2.x, ``fastai.callback.schedule.valley``).
* ``clr_bounds`` (Smith 2017, section 3.3): ``base_lr`` where the loss starts to fall (the first
  rate at which the smoothed loss is 10% of its total fall below its starting value) and
  ``max_lr`` where it stops falling (the minimum of the smoothed loss).

The curvature side: ``curvature_batches`` batches of the training data (full batch on small
problems) give the top Hessian eigenvalue L at the starting parameters
(``theory.smoothness``), hence gradient descent's safe step 1/L and stability edge 2/L, drawn on
the same plot. They are thresholds for plain gradient descent; adaptive methods rescale the step.
"""

from __future__ import annotations

import copy
import math
import os
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

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

    def plot(self, path: str | os.PathLike | None = None, ax=None):
        """Loss (raw and smoothed) against lr on a log axis, suggestions and 1/L, 2/L marked.

        Returns the matplotlib Figure; with ``path`` it is also saved there (atomically).
        """
        import matplotlib

        if ax is None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        rows = 2 if self.accuracies else 1
        if ax is None:
            figure, axes = plt.subplots(rows, 1, figsize=(7, 4 * rows), squeeze=False)
            ax = axes[0][0]
        else:
            figure, axes = ax.figure, [[ax]]
        ax.plot(self.lrs, self.losses, color="0.75", linewidth=1, label="loss")
        ax.plot(self.lrs, self.smoothed, color="C0", linewidth=2, label="smoothed loss")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        finite = [s for s in self.smoothed if math.isfinite(s)]
        if finite:
            low, high = min(finite), finite[0]
            ax.set_ylim(low - 0.1 * abs(high - low) - 1e-12, high + 0.5 * abs(high - low) + 1e-12)
        for i, (name, suggestion) in enumerate(self.suggestions.items()):
            ax.axvline(
                suggestion.lr,
                color=f"C{i + 1}",
                linestyle="--",
                label=f"{name}: {suggestion.lr:.3g}",
            )
        if self.curvature is not None:
            for value, label in ((self.safe_step, "1/L"), (self.edge_step, "2/L")):
                ax.axvline(
                    value,
                    color="k",
                    linestyle=":" if label == "1/L" else "-.",
                    label=f"{label} = {value:.3g}",
                )
        ax.legend(fontsize="small")
        ax.set_title("LR range test")
        if self.accuracies:
            acc_ax = axes[1][0]
            acc_ax.plot(self.lrs, self.accuracies, color="C2")
            acc_ax.set_xscale("log")
            acc_ax.set_xlabel("learning rate")
            acc_ax.set_ylabel("accuracy")
        figure.tight_layout()
        if path is not None:
            _save_figure_atomically(figure, Path(path))
        return figure


def _save_figure_atomically(figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        figure.savefig(temporary, format=path.suffix.lstrip(".") or "png", dpi=120)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


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
    """fastai's ``valley``: two thirds of the way down the longest decreasing run of ``losses``."""
    n = len(losses)
    run_length = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run_length[i] < run_length[j] + 1:
                run_length[i] = run_length[j] + 1
        if run_length[end] < run_length[i]:
            end = i
            start = end - run_length[end]
    sections = (end - start) / 3
    return start + int(sections) + int(sections / 2)


def suggest(lrs: list[float], smoothed: list[float], skip_start: int = 5) -> dict[str, Suggestion]:
    """The suggestions of the module docstring from a recorded (smoothed) curve."""
    if len(lrs) < 3:
        return {}
    losses = np.asarray(smoothed)
    minimum = int(np.nanargmin(losses))
    suggestions = {
        "min/10": Suggestion(
            "min/10", lrs[minimum] / 10, f"minimum smoothed loss at lr = {lrs[minimum]:.3g}, / 10"
        )
    }
    first = min(skip_start, max(minimum - 2, 0))
    if minimum - first >= 2:
        slopes = np.gradient(losses[first : minimum + 1], np.log(lrs[first : minimum + 1]))
        steepest = first + int(np.argmin(slopes))
        suggestions["steepest"] = Suggestion(
            "steepest", lrs[steepest], "most negative slope of the smoothed loss before its minimum"
        )
    valley = valley_index(list(losses))
    suggestions["valley"] = Suggestion(
        "valley", lrs[valley], "fastai's valley: 2/3 down the longest decreasing run"
    )
    return suggestions


def clr_bounds(
    lrs: list[float], smoothed: list[float], fall: float = 0.1
) -> tuple[float, float] | None:
    """Smith's (base_lr, max_lr): where the loss starts to fall and where it stops falling."""
    losses = np.asarray(smoothed)
    minimum = int(np.nanargmin(losses))
    drop = losses[0] - losses[minimum]
    if minimum == 0 or not drop > 0:
        return None
    started = int(np.argmax(losses[: minimum + 1] <= losses[0] - fall * drop))
    return float(lrs[started]), float(lrs[minimum])


def _cycle(data: Iterable[Batch]) -> Iterator[Batch]:
    """Batches forever: the iterable is iterated again when exhausted (a loader reshuffles)."""
    while True:
        empty = True
        for batch in data:
            empty = False
            yield batch
        if empty:
            raise ValueError("train_data is empty: the range test needs at least one batch")


def _validate(start_lr, end_lr, num_iter, sweep, smoothing, diverge_threshold) -> None:
    if not (isinstance(start_lr, (int, float)) and start_lr > 0 and math.isfinite(start_lr)):
        raise ValueError(f"start_lr must be a finite number > 0, got start_lr={start_lr!r}")
    if not (isinstance(end_lr, (int, float)) and math.isfinite(end_lr) and end_lr > start_lr):
        raise ValueError(
            f"end_lr must be a finite number > start_lr={start_lr!r}, got end_lr={end_lr!r}"
        )
    if isinstance(num_iter, bool) or not isinstance(num_iter, int) or num_iter < 2:
        raise ValueError(f"num_iter must be an integer >= 2, got num_iter={num_iter!r}")
    if sweep not in ("exp", "linear"):
        raise ValueError(f"sweep must be 'exp' or 'linear', got sweep={sweep!r}")
    if not (isinstance(smoothing, (int, float)) and 0 <= smoothing < 1):
        raise ValueError(f"smoothing must be in [0, 1), got smoothing={smoothing!r}")
    if not (isinstance(diverge_threshold, (int, float)) and diverge_threshold > 1):
        raise ValueError(
            f"diverge_threshold must be a number > 1, got diverge_threshold={diverge_threshold!r}"
        )


class _Restorer:
    """Snapshots everything the test may change and puts it back on exit."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model, optimizer

    def __enter__(self) -> _Restorer:
        self.model_state = copy.deepcopy(self.model.state_dict())
        self.optimizer_state = copy.deepcopy(self.optimizer.state_dict())
        self.training = {name: m.training for name, m in self.model.named_modules()}
        self.rng = (
            random.getstate(),
            np.random.get_state(),  # noqa: NPY002 (restoring the legacy global state)
            torch.get_rng_state(),
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        )
        return self

    def __exit__(self, *exc_info) -> None:
        self.model.load_state_dict(self.model_state)
        self.optimizer.load_state_dict(self.optimizer_state)
        for p in self.model.parameters():
            p.grad = None
        for name, module in self.model.named_modules():
            module.train(self.training[name])
        python_state, numpy_state, torch_state, cuda_state = self.rng
        random.setstate(python_state)
        np.random.set_state(numpy_state)  # noqa: NPY002
        torch.set_rng_state(torch_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)


def _mean_loss_and_accuracy(model, loss_fn, data, device) -> tuple[float, float]:
    total_loss, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for inputs, targets in data:
            inputs, targets = inputs.to(device), targets.to(device)
            outputs = model(inputs)
            total_loss += float(loss_fn(outputs, targets)) * len(targets)
            correct += _correct(outputs, targets)
            count += len(targets)
    if count == 0:
        raise ValueError("val_data is empty: it needs at least one batch")
    return total_loss / count, correct / count


def _correct(outputs: Tensor, targets: Tensor) -> int:
    if outputs.ndim < 2 or targets.dtype.is_floating_point:
        return 0
    return int((outputs.argmax(dim=-1) == targets).sum())


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
) -> RangeTestResult:
    """Run the LR range test; the model, optimizer and RNG are left exactly as they were.

    Args:
        model: any ``nn.Module``; called as ``model(inputs)``.
        optimizer: any torch optimizer over ``model``'s parameters (ours or torch.optim's); its
            param groups' ``lr`` is overwritten during the test and restored afterwards.
        loss_fn: ``loss_fn(model(inputs), targets)``, a scalar.
        train_data: an iterable of ``(inputs, targets)``; cycled when shorter than ``num_iter``.
        start_lr, end_lr: the sweep's first and last rates (``0 < start_lr < end_lr``).
        num_iter: number of updates (>= 2).
        sweep: ``"exp"`` (geometric) or ``"linear"``.
        smoothing: beta of the bias-corrected moving average, in [0, 1) (0: no smoothing).
        diverge_threshold: stop when the smoothed loss exceeds this multiple (> 1) of the best.
        val_data: optional validation batches, evaluated after every update (recorded instead of
            the training loss).
        accuracy: also record accuracy (argmax over the last dimension; on ``val_data`` when
            given, else on the training batch) for Smith's accuracy-versus-rate plot.
        curvature_batches: batches for the Hessian estimate at the starting parameters
            (``theory.smoothness``); 0 to skip it.
        skip_start: points ignored at the start by the ``steepest`` rule.
        device: where batches are moved (default: the model's parameters' device).

    Returns:
        a :class:`RangeTestResult` (see the module docstring for every rule).
    """
    _validate(start_lr, end_lr, num_iter, sweep, smoothing, diverge_threshold)
    if (
        isinstance(curvature_batches, bool)
        or not isinstance(curvature_batches, int)
        or curvature_batches < 0
    ):
        raise ValueError(f"curvature_batches must be an integer >= 0, got {curvature_batches!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    batches = _cycle(train_data)
    rates = sweep_lrs(float(start_lr), float(end_lr), num_iter, sweep)
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    accuracies: list[float] | None = [] if accuracy else None
    diverged_lr = None
    curvature = None
    with _Restorer(model, optimizer):
        if curvature_batches:
            from theory.smoothness import smoothness  # the curvature side lives in theory

            first = [next(batches) for _ in range(curvature_batches)]
            first = [(x.to(device), y.to(device)) for x, y in first]
            curvature = smoothness(model, loss_fn, first)
            batches = _cycle(train_data)  # the sweep starts from the first batch again
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
            correct = _correct(outputs.detach(), targets) / max(len(targets), 1)
            if val_data is not None:
                model.eval()
                value, correct = _mean_loss_and_accuracy(model, loss_fn, val_data, device)
                model.train()
            lrs.append(float(lr))
            losses.append(value)
            if accuracies is not None:
                accuracies.append(correct)
            average = smoothing * average + (1 - smoothing) * value
            current = average / (1 - smoothing ** (i + 1))
            smoothed.append(current)
            if not math.isfinite(current) or (i > 0 and current > diverge_threshold * best):
                diverged_lr = float(lr)
                break
            best = min(best, current)
    recorded = len(smoothed) - (1 if diverged_lr is not None else 0)
    usable_lrs, usable = lrs[: max(recorded, 1)], smoothed[: max(recorded, 1)]
    settings = {
        "start_lr": start_lr, "end_lr": end_lr, "num_iter": num_iter, "sweep": sweep,
        "smoothing": smoothing, "diverge_threshold": diverge_threshold,
        "validation": val_data is not None, "curvature_batches": curvature_batches,
    }  # fmt: skip
    return RangeTestResult(
        lrs=lrs,
        losses=losses,
        smoothed=smoothed,
        accuracies=accuracies,
        diverged_lr=diverged_lr,
        suggestions=suggest(usable_lrs, usable, skip_start)
        if all(map(math.isfinite, usable))
        else {},
        clr_bounds=clr_bounds(usable_lrs, usable) if len(usable) > 1 else None,
        curvature=curvature,
        settings=settings,
    )
