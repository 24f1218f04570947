"""Reduce-on-plateau as a multiplier on top of any schedule.

PyTorch's ``ReduceLROnPlateau`` rewrites ``param_group["lr"]`` in place, so it cannot be combined
with another schedule. Here it is a reactive schedule: ``s(t) = schedule(t) * multiplier``
(floored at ``min_lr``), and the multiplier is reduced by ``factor`` when the observed metric has
stopped improving, with exactly torch's decisions (patience, cooldown, thresholds, ``eps``).
"""

from __future__ import annotations

import math
from typing import Any, SupportsFloat

from schedulers.base import (
    Schedule,
    check_choice,
    check_float,
    check_int,
    check_schedule,
    register,
)


@register
class ReduceOnPlateau(Schedule):
    """``max(schedule(t) * multiplier, min(schedule(t), min_lr))``; plateaus reduce the multiplier.

    Origin: PyTorch ``ReduceLROnPlateau``; :meth:`observe` makes the same decisions, in the same
    order, for every metric sequence where torch's are sound:

    1. ``current`` is *better* than ``best`` if, in ``min`` mode,
       ``current < best * (1 - threshold)`` (``rel``) or ``current < best - threshold``
       (``abs``); in ``max`` mode ``current > best * (1 + threshold)`` or
       ``current > best + threshold``. Better: ``best = current`` and the bad-epoch count
       resets; otherwise it grows by one.
    2. During cooldown the cooldown counter decreases and bad epochs are ignored.
    3. More than ``patience`` bad epochs: reduce, start the cooldown, reset the count. The reduction
       is skipped (as torch skips it) when it would lower the current value by ``eps`` or less,
       e.g. once ``min_lr`` is reached.

    Deliberate difference: with ``threshold_mode="rel"`` and a *negative* ``best``, torch's
    ``best * (1 - threshold)`` lies on the wrong side of ``best`` (a worse metric counts as an
    improvement, so the rate is never reduced). Here the relative margin is taken from ``|best|``:
    ``best - threshold * |best|`` in ``min`` mode and ``best + threshold * |best|`` in ``max``
    mode, which is torch's expression whenever ``best >= 0``.

    The floor ``min_lr`` bounds the reductions only: a wrapped schedule that is itself below
    ``min_lr`` is left as it is (torch likewise never raises a rate). Calling ``s(t)`` uses the
    current multiplier; the multiplier and counters are saved by :meth:`state_dict` (the driver
    saves them with its step count).

    Args:
        schedule: the schedule to scale (``constant(lr)`` reproduces torch's scheduler).
        mode: ``"min"`` or ``"max"``.
        factor: multiplier per reduction, in [0, 1).
        patience: bad observations tolerated before a reduction (int >= 0).
        threshold: minimal improvement (>= 0; < 1 in ``rel`` mode).
        threshold_mode: ``"rel"`` or ``"abs"``.
        cooldown: observations to wait after a reduction (int >= 0).
        min_lr: floor of the reduced value (>= 0).
        eps: smallest reduction that is applied (>= 0).
    """

    name = "reduce_on_plateau"
    reactive = True

    def __init__(
        self,
        schedule: Schedule,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ) -> None:
        self.schedule = check_schedule("schedule", schedule)
        self.mode = check_choice("mode", mode, ("min", "max"))
        self.factor = check_float("factor", factor, 0.0, 1.0, high_open=True)
        self.patience = check_int("patience", patience, minimum=0)
        self.threshold_mode = check_choice("threshold_mode", threshold_mode, ("rel", "abs"))
        high = 1.0 if self.threshold_mode == "rel" else math.inf
        self.threshold = check_float("threshold", threshold, 0.0, high, high_open=high == 1.0)
        self.cooldown = check_int("cooldown", cooldown, minimum=0)
        self.min_lr = check_float("min_lr", min_lr)
        self.eps = check_float("eps", eps)
        self.reset()

    # --- state ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all observations: multiplier 1, no best value, no bad epochs, no cooldown."""
        self.multiplier = 1.0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def state_dict(self) -> dict[str, Any]:
        """The reactive state: multiplier, best metric, bad-epoch and cooldown counters."""
        return {
            "multiplier": self.multiplier,
            "best": self.best,
            "num_bad_epochs": self.num_bad_epochs,
            "cooldown_counter": self.cooldown_counter,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.multiplier = float(state["multiplier"])
        self.best = float(state["best"])
        self.num_bad_epochs = int(state["num_bad_epochs"])
        self.cooldown_counter = int(state["cooldown_counter"])

    # --- decisions --------------------------------------------------------------------------
    def is_better(self, current: float, best: float) -> bool:
        """Whether ``current`` improves on ``best`` by more than the threshold."""
        threshold = self.threshold
        if self.threshold_mode == "abs":
            return current < best - threshold if self.mode == "min" else current > best + threshold
        if self.mode == "min":
            return current < best * (1.0 - threshold if best >= 0 else 1.0 + threshold)
        return current > best * (1.0 + threshold if best >= 0 else 1.0 - threshold)

    def observe(self, metric: SupportsFloat, t: int) -> bool:
        """Take one metric observed before step ``t``; return whether the value was reduced."""
        current = float(metric)
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        reduced = False
        if self.num_bad_epochs > self.patience:
            base = self.schedule(t)
            old = self._floored(base, self.multiplier)
            new = self._floored(base, self.multiplier * self.factor)
            if old - new > self.eps:
                self.multiplier *= self.factor
                reduced = True
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return reduced

    # --- value ------------------------------------------------------------------------------
    def _floored(self, base: float, multiplier: float) -> float:
        return max(base * multiplier, min(base, self.min_lr))

    def _value(self, t, xp):
        base = self.schedule._value(t, xp)
        return xp.maximum(base * self.multiplier, xp.minimum(base, self.min_lr))

    def bounds(self):
        low, high = self.schedule.bounds()
        return (min(low, self.min_lr), high)


reduce_on_plateau = ReduceOnPlateau
