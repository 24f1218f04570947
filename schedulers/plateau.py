"""Reduce-on-plateau as a multiplier on top of any schedule.

PyTorch's ``ReduceLROnPlateau`` rewrites ``param_group["lr"]`` in place, so it cannot be combined
with another schedule. Here it is a reactive schedule: ``s(t) = schedule(t) * multiplier``
(floored at ``min_lr``), and the multiplier is reduced by ``factor`` when the observed metric has
stopped improving, with exactly torch's decisions (patience, cooldown, thresholds, ``eps``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
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
    current multiplier. The multiplier, the number of reductions that made it (so a resumed
    plateau rounds as the uninterrupted one, see :meth:`_scaled`) and the counters are
    :meth:`state_dict`; they are part of the schedule's value: ``to_dict()`` holds them under
    ``state`` (once anything was observed), :func:`from_dict` restores them, and two plateaus
    are equal only if their states are.

    Composition: the driver (:func:`schedulers.attach`) finds a reduce-on-plateau nested
    anywhere (inside ``clamp``, a product, a warmup, a ``join`` piece...) and feeds it each
    metric at the step its own clock shows (a plateau in a ``join`` piece observes only while
    its piece runs).

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
        state: a :meth:`state_dict` to start from (``None``: nothing observed yet).

    >>> s = reduce_on_plateau(constant(1.0), patience=0, factor=0.5)
    >>> s.observe(1.0, t=0), s.observe(1.0, t=1), s(2)
    (False, True, 0.5)
    >>> from_dict(s.to_dict()) == s
    True
    """

    name = "reduce_on_plateau"
    reactive = True
    _reductions: int | None = None  # (an instance unpickled from before it was kept: as loaded)

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
        state: Mapping[str, Any] | None = None,
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
        if state is not None:
            self.load_state_dict(state)

    # --- state ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all observations: multiplier 1, no best value, no bad epochs, no cooldown."""
        self.multiplier = 1.0
        self._reductions = 0  # (see _scaled)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def state_dict(self) -> dict[str, Any]:
        """The reactive state: multiplier, ``reductions`` (how many reductions made it), best
        metric, bad-epoch and cooldown counters.

        ``reductions`` is left out only where it is unknown: after loading a state saved without
        it whose multiplier no count up to 2000 makes (see :meth:`load_state_dict`).
        """
        state = {
            "multiplier": self.multiplier,
            "reductions": self._reductions,
            "best": self.best,
            "num_bad_epochs": self.num_bad_epochs,
            "cooldown_counter": self.cooldown_counter,
        }
        if self._reductions is None:
            del state["reductions"]
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` (or the ``state`` of ``to_dict()``) holds; a missing
        ``best`` means none yet.

        ``reductions`` is the count whose successive reductions by ``factor`` make
        ``multiplier`` (a negative or non-integer count is refused). A state without it (saved
        before it was kept), or whose count does not make the multiplier with this plateau's
        ``factor`` (saved by a plateau with another factor), gets the count found by repeating
        the reductions, up to 2000; where none does, the value is ``schedule(t) * multiplier``,
        which may differ from the uninterrupted run in the last bits.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a mapping from state_dict(), got state={state!r}")
        keys = {"multiplier", "reductions", "best", "num_bad_epochs", "cooldown_counter"}
        unknown = sorted(set(state) - keys)
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in state={dict(state)!r}")
        try:  # (every value checked before any is set: a refused state changes nothing)
            multiplier = check_float("state['multiplier']", state["multiplier"], 0.0, 1.0)
            num_bad_epochs = check_int(
                "state['num_bad_epochs']", state["num_bad_epochs"], minimum=0
            )
            cooldown_counter = check_int(
                "state['cooldown_counter']", state["cooldown_counter"], minimum=0
            )
        except KeyError as err:
            raise ValueError(f"state is missing {err.args[0]!r}: state={dict(state)!r}") from None
        reductions = state.get("reductions")
        if reductions is not None:
            reductions = check_int("state['reductions']", reductions, minimum=0)
        if reductions is None or _multiplier_after(reductions, self.factor) != multiplier:
            # saved before the count was kept, or by a plateau with another factor (the
            # multiplier then scales as it is, see _scaled, as before the count was kept)
            reductions = _reductions_making(multiplier, self.factor)
        no_best = math.inf if self.mode == "min" else -math.inf
        best = state.get("best", no_best)
        best = no_best if best is None else _best_value(best)
        self.multiplier, self.num_bad_epochs = multiplier, num_bad_epochs
        self.cooldown_counter, self.best = cooldown_counter, best
        self._reductions = reductions

    @property
    def state(self) -> dict[str, Any] | None:
        """The state as ``to_dict()`` writes it (``None`` while nothing was observed).

        ``best`` is left out while nothing was observed (it is then ``inf`` in ``min`` mode,
        ``-inf`` in ``max`` mode); an observed infinite best (``-inf`` in ``min`` mode, ``inf``
        in ``max`` mode) is written as the string ``"-inf"`` or ``"inf"``, so the dict stays
        JSON and TOML friendly and :func:`from_dict` restores exactly the same decisions.
        """
        current = self.state_dict()
        no_best = math.inf if self.mode == "min" else -math.inf
        if current["best"] == no_best:
            del current["best"]
        elif math.isinf(current["best"]):
            current["best"] = "inf" if current["best"] > 0 else "-inf"
        fresh = {"multiplier": 1.0, "reductions": 0, "num_bad_epochs": 0, "cooldown_counter": 0}
        if current == fresh:
            return None
        return current

    def _state_token(self) -> float:
        return self.multiplier

    # --- decisions --------------------------------------------------------------------------
    def is_better(self, current: float, best: float) -> bool:
        """Whether ``current`` improves on ``best`` by more than the threshold."""
        threshold = self.threshold
        if self.threshold_mode == "abs":
            return current < best - threshold if self.mode == "min" else current > best + threshold
        if self.mode == "min":
            return current < best * (1.0 - threshold if best >= 0 else 1.0 + threshold)
        return current > best * (1.0 + threshold if best >= 0 else 1.0 - threshold)

    def observe(self, metric: SupportsFloat, t: float) -> bool:
        """Take one metric observed before step ``t`` (this schedule's own step); return whether
        the value was reduced."""
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
            count = None if self._reductions is None else self._reductions + 1
            old = self._floored(base, self._reductions, self.multiplier)
            new = self._floored(base, count, self.multiplier * self.factor)
            if old - new > self.eps:
                self.multiplier *= self.factor
                self._reductions = count
                reduced = True
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return reduced

    # --- value ------------------------------------------------------------------------------
    def _scaled(self, base: Any, reductions: int | None, multiplier: float) -> Any:
        """``base`` times the multiplier as torch's scheduler rounds it: multiplied by
        ``factor`` once per reduction, in turn (torch's ``lr * factor`` at each one, so
        ``((lr f) f) f``; ``lr (f f f)`` rounds differently, 0.0027 against torch's
        0.0026999999999999997 for lr 0.1, factor 0.3). A loaded multiplier that no count of
        reductions makes (another factor's) scales ``base`` as it is."""
        if reductions is None:
            return base * multiplier
        for _ in range(reductions):
            base = base * self.factor
        return base

    def _floored(self, base: float, reductions: int | None, multiplier: float) -> float:
        return max(self._scaled(base, reductions, multiplier), min(base, self.min_lr))

    def _value(self, t, xp):
        base = self.schedule._value(t, xp)
        scaled = self._scaled(base, self._reductions, self.multiplier)
        return xp.maximum(scaled, xp.minimum(base, self.min_lr))

    def bounds(self) -> tuple[float, float]:
        """Values are ``>= min(schedule(t), min_lr)``; the multiplier (in [0, 1]) moves a value
        towards 0, so a schedule below 0 can rise up to 0."""
        low, high = self.schedule.bounds()
        return (min(low, self.min_lr), max(high, 0.0))


def _multiplier_after(reductions: int, factor: float) -> float:
    """The multiplier ``reductions`` reductions by ``factor`` make from 1.0, each multiplying the
    last product (as :meth:`ReduceOnPlateau.observe` does); a product of 0 stays 0."""
    value = 1.0
    for _ in range(reductions):
        if value == 0.0:
            break
        value *= factor
    return value


def _reductions_making(multiplier: float, factor: float, most: int = 2000) -> int | None:
    """How many reductions by ``factor`` make ``multiplier`` from 1.0, each multiplying the last
    product (as :meth:`ReduceOnPlateau.observe` does); None if no count up to ``most`` does.
    Only for states saved without their count (:meth:`ReduceOnPlateau.load_state_dict`)."""
    value = 1.0
    for count in range(most + 1):
        if value == multiplier:
            return count
        if value < multiplier:
            return None
        value *= factor
    return None


def _best_value(best: Any) -> float:
    """A stored ``best``: a real number, or ``"inf"``/``"-inf"`` as :attr:`ReduceOnPlateau.state`
    writes an observed infinite best."""
    if isinstance(best, str) and best.strip().lower() in ("inf", "+inf", "-inf"):
        return float(best)
    if isinstance(best, bool) or not isinstance(best, numbers.Real):
        raise ValueError(
            f"state['best'] must be a number or 'inf'/'-inf' (an observed infinite best), "
            f"got best={best!r}"
        )
    return float(best)


reduce_on_plateau = ReduceOnPlateau
