"""Cyclical learning rates (Smith 2017) and the 1cycle policy (Smith & Topin 2017), each with the
inverse momentum schedule that goes with it.

Origins: Leslie N. Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017
(arXiv:1506.01186); Smith & Topin, "Super-Convergence: Very Fast Training of Neural Networks
Using Large Learning Rates" (arXiv:1708.07120); PyTorch ``CyclicLR`` and ``OneCycleLR``, whose
formulas (and floating-point order of operations) are reproduced here.
"""

from __future__ import annotations

from schedulers.base import (
    Ops,
    Schedule,
    check_bool,
    check_choice,
    check_float,
    check_int,
    hull,
    register,
)

CLR_MODES = ("triangular", "triangular2", "exp_range")
CLR_WINDOWS = ("triangular", "welch", "hann")
ANNEAL_STRATEGIES = ("cos", "linear")

# ----------------------------------------------------------------------------------------------
# Cyclical learning rates.
# ----------------------------------------------------------------------------------------------


class _CycleShape(Schedule):
    """The shape shared by :class:`Cyclic` and :class:`CyclicMomentum`: where ``t`` is in its
    cycle (``h`` in [0, 1]) and the amplitude scale of the mode."""

    def _init_shape(
        self,
        step_size_up: int,
        step_size_down: int | None,
        mode: str,
        gamma: float,
        window: str,
    ) -> None:
        self.step_size_up = check_int("step_size_up", step_size_up)
        self.step_size_down = (
            self.step_size_up
            if step_size_down is None
            else check_int("step_size_down", step_size_down)
        )
        self.mode = check_choice("mode", mode, CLR_MODES)
        self.gamma = check_float("gamma", gamma, 0.0, 1.0, low_open=True)
        self.window = check_choice("window", window, CLR_WINDOWS)
        self._total_size = float(self.step_size_up) + float(self.step_size_down)
        self._step_ratio = self.step_size_up / self._total_size

    def _height(self, t, amplitude: float, xp: Ops):
        """``amplitude * window(h) * scale``, rounded in torch's order (``(amplitude * h) *
        scale``): 0 at the start of a cycle, ``amplitude * scale`` at its peak.

        As in torch: ``cycle = floor(1 + t / (up + down))``, ``x = 1 + t / (up + down) - cycle``
        (the position in the cycle, in [0, 1)), ``h = x / r`` while rising and
        ``(x - 1) / (r - 1)`` while falling, with ``r = up / (up + down)``. Windows:
        triangular ``h``; Welch (parabolic) ``1 - (1 - h)**2``; Hann (sine) ``sin(pi h / 2)**2``.
        For equal up and down steps the Welch and Hann windows are exactly the windows of those
        names over the whole cycle (``1 - (2x - 1)**2`` and ``sin(pi x)**2``). Scales:
        triangular 1; triangular2 ``0.5 ** (cycle - 1)`` (amplitude halved every cycle);
        exp_range ``gamma ** t``.
        """
        cycle = xp.floor(1 + t / self._total_size)
        x = 1.0 + t / self._total_size - cycle
        ratio = self._step_ratio
        h = xp.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
        if self.window == "welch":
            h = 1.0 - (1.0 - h) * (1.0 - h)
        elif self.window == "hann":
            sine = xp.sin(xp.pi * h / 2)
            h = sine * sine
        height = amplitude * h
        if self.mode == "triangular":
            return height
        if self.mode == "triangular2":
            return height * xp.power(0.5, cycle - 1)
        return height * xp.power(self.gamma, t)

    def _shape_args(self) -> dict:
        return {
            "step_size_up": self.step_size_up,
            "step_size_down": self.step_size_down,
            "mode": self.mode,
            "gamma": self.gamma,
            "window": self.window,
        }


def _momentum_range(base_momentum: float, max_momentum: float) -> tuple[float, float]:
    """Validated ``(base_momentum, max_momentum)``: each in [0, 1], ``max >= base``."""
    base = check_float("base_momentum", base_momentum, 0.0, 1.0)
    top = check_float("max_momentum", max_momentum, 0.0, 1.0)
    if top < base:
        raise ValueError(
            f"max_momentum must be >= base_momentum={base_momentum!r}, "
            f"got max_momentum={max_momentum!r}"
        )
    return base, top


@register
class Cyclic(_CycleShape):
    """``base_lr + (max_lr - base_lr) * window(h) * scale`` (cyclical learning rate).

    Origin: Smith 2017 and PyTorch ``CyclicLR`` (identical values for the triangular window;
    see :meth:`_CycleShape._height` for ``h``, the windows and the mode scales). The cycle is
    ``step_size_up`` rising steps then ``step_size_down`` falling steps and repeats forever.
    ``s(0) = base_lr``; the peak ``max_lr`` is reached at ``t = step_size_up`` of the first
    cycle (later peaks are lower in triangular2 and exp_range modes).

    Args:
        base_lr: lower boundary (>= 0).
        max_lr: upper boundary (>= base_lr).
        step_size_up: rising steps per cycle (int >= 1).
        step_size_down: falling steps (int >= 1; default ``step_size_up``).
        mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
        gamma: base of exp_range's ``gamma ** t``, in (0, 1].
        window: ``"triangular"`` (linear), ``"welch"`` (parabolic) or ``"hann"`` (sine).

    >>> s = cyclic(0.2, 1.0, step_size_up=2)
    >>> [round(s(t), 6) for t in range(7)]  # up to max_lr at t = 2, down to base_lr at 4, ...
    [0.2, 0.6, 1.0, 0.6, 0.2, 0.6, 1.0]
    >>> round(cyclic(0.2, 1.0, step_size_up=2, mode="triangular2")(6), 6)  # second peak: halved
    0.6
    """

    name = "cyclic"

    def __init__(
        self,
        base_lr: float,
        max_lr: float,
        step_size_up: int = 2000,
        step_size_down: int | None = None,
        mode: str = "triangular",
        gamma: float = 1.0,
        window: str = "triangular",
    ) -> None:
        self.base_lr = check_float("base_lr", base_lr)
        self.max_lr = check_float("max_lr", max_lr)
        if self.max_lr < self.base_lr:
            raise ValueError(f"max_lr must be >= base_lr={base_lr!r}, got max_lr={max_lr!r}")
        self._init_shape(step_size_up, step_size_down, mode, gamma, window)

    def _value(self, t, xp):
        return self.base_lr + self._height(t, self.max_lr - self.base_lr, xp)

    def bounds(self) -> tuple[float, float]:
        # the peak is base_lr + (max_lr - base_lr), which can round an ulp past max_lr
        return hull(self.base_lr, self.max_lr, self.base_lr + (self.max_lr - self.base_lr))

    def momentum(self, base_momentum: float = 0.8, max_momentum: float = 0.9) -> CyclicMomentum:
        """The inverse momentum schedule with this cycle (torch's ``cycle_momentum=True``)."""
        return CyclicMomentum(base_momentum, max_momentum, **self._shape_args())


@register
class CyclicMomentum(_CycleShape):
    """``max_momentum - (max_momentum - base_momentum) * window(h) * scale``.

    Origin: PyTorch ``CyclicLR(cycle_momentum=True)``: momentum cycles inversely to the
    learning rate of :class:`Cyclic` with the same shape arguments; it is ``max_momentum`` at
    the start of a cycle and ``base_momentum`` at the peak. Drive it on ``"momentum"`` for SGD
    or ``"betas[0]"`` for Adam-like optimizers.

    Args:
        base_momentum: momentum at the learning-rate peak, in [0, 1].
        max_momentum: momentum at the start of a cycle, in [base_momentum, 1].
        step_size_up, step_size_down, mode, gamma, window: as :class:`Cyclic`.

    >>> s = cyclic_momentum(0.8, 0.9, step_size_up=2)
    >>> [round(s(t), 6) for t in range(5)]  # max_momentum at the start, base_momentum at the peak
    [0.9, 0.85, 0.8, 0.85, 0.9]
    >>> cyclic(0.2, 1.0, step_size_up=2).momentum(0.8, 0.9) == s
    True
    """

    name = "cyclic_momentum"

    def __init__(
        self,
        base_momentum: float = 0.8,
        max_momentum: float = 0.9,
        step_size_up: int = 2000,
        step_size_down: int | None = None,
        mode: str = "triangular",
        gamma: float = 1.0,
        window: str = "triangular",
    ) -> None:
        self.base_momentum, self.max_momentum = _momentum_range(base_momentum, max_momentum)
        self._init_shape(step_size_up, step_size_down, mode, gamma, window)

    def _value(self, t, xp):
        return self.max_momentum - self._height(t, self.max_momentum - self.base_momentum, xp)

    def bounds(self) -> tuple[float, float]:
        low, top = self.base_momentum, self.max_momentum
        return hull(low, top, top - (top - low))  # (the trough, an ulp from base_momentum)


# ----------------------------------------------------------------------------------------------
# 1cycle.
# ----------------------------------------------------------------------------------------------


class _OneCyclePhases(Schedule):
    """The phases shared by :class:`OneCycle` and :class:`OneCycleMomentum` (torch's layout).

    Phase ends (torch's ``end_step``): ``pct_start * total_steps - 1``, then, with
    ``three_phase``, ``2 * pct_start * total_steps - 2``, and ``total_steps - 1``. Each phase
    starts where the previous one ended and anneals from its start value to its end value with
    ``pct = (t - start) / (end - start)``: ``cos``: ``end + (start - end) / 2 * (cos(pi pct) + 1)``;
    ``linear``: ``(end - start) * pct + start``. Values, from knots ``(a, b, c)``: two phases
    ``a -> b -> c``; three phases ``a -> b -> a -> c``. From ``t = total_steps - 1`` (the last of
    the ``total_steps`` updates) on, the value of that step, torch's, is held for every ``t``:
    with ``cos`` annealing it is ``c`` exactly (``c + (start - c) / 2 * 0``); with ``linear``
    it is ``(c - start) * 1 + start``, with ``start`` the last phase's start value (``b`` with
    two phases, ``a`` with three), which is ``c`` only to within an ulp of ``start``: for
    :class:`OneCycle` with ``max_lr=1, div_factor=25`` over two phases ``3.9968e-14`` instead
    of ``4e-14`` at ``final_div_factor=1e12`` (a relative error of ``8e-4``), ``1e-12``
    relative at the default ``1e4``. :meth:`bounds` includes that value.

    Difference from torch at ``t >= total_steps``: torch allows one more step, ``t = total_steps``
    (the value written by the ``total_steps``-th ``scheduler.step()``, used by no update of the
    cycle), where it extrapolates the last phase past its end
    (``pct = 1 + 1 / (total_steps - 1 - start)``): with ``linear`` annealing the value is
    ``c - (previous knot - c) / phase length``, negative for small ``c`` (e.g. ``-0.08`` for
    ``max_lr=0.4, total_steps=10, pct_start=0.5``), with ``cos`` it rises back towards the
    phase's start value; it raises ``ValueError`` from ``t = total_steps + 1`` on. Here
    ``s(total_steps)`` and every later step keep the value of ``t = total_steps - 1`` (a
    negative rate would be refused by :func:`schedulers.attach`). Every
    ``t <= total_steps - 1`` is torch's value, bit for bit.
    """

    def _init_phases(
        self, total_steps: int, pct_start: float, anneal_strategy: str, three_phase: bool
    ) -> None:
        self.total_steps = check_int("total_steps", total_steps, minimum=2)
        self.pct_start = check_float(
            "pct_start", pct_start, 0.0, 1.0, low_open=True, high_open=True
        )
        self.anneal_strategy = check_choice("anneal_strategy", anneal_strategy, ANNEAL_STRATEGIES)
        self.three_phase = check_bool("three_phase", three_phase)
        self._cos = self.anneal_strategy == "cos"
        warm = float(self.pct_start * self.total_steps)
        ends = [warm - 1, 2 * warm - 2] if self.three_phase else [warm - 1]
        ends.append(self.total_steps - 1)
        starts = [0.0, *ends[:-1]]
        if any(end <= start for start, end in zip(starts, ends)):
            raise ValueError(
                "pct_start * total_steps must leave every 1cycle phase at least one step long "
                f"(phase ends {ends}), got pct_start={pct_start!r}, total_steps={total_steps!r}"
            )
        self._inner_ends, self._last_step = ends[:-1], ends[-1]
        self._phase_steps = list(zip(starts, ends))

    def _phase_table(self, a: float, b: float, c: float) -> list[tuple[float, float, float, float]]:
        """One row per phase: ``(start_step, end_step - start_step, start_value, end_value)``."""
        values = [(a, b), (b, a), (a, c)] if self.three_phase else [(a, b), (b, c)]
        return [(s, e - s, *ends) for (s, e), ends in zip(self._phase_steps, values)]

    def _value(self, t, xp: Ops):
        """The value from the subclass's ``_table`` (its :meth:`_phase_table`)."""
        t = xp.minimum(t, self._last_step)
        # the phase is the first one whose end is >= t
        start_step, length, start, end = xp.take_rows(
            self._table, xp.count_below(self._inner_ends, t)
        )
        pct = (t - start_step) / length
        if self._cos:
            return end + (start - end) / 2.0 * (xp.cos(xp.pi * pct) + 1)
        return (end - start) * pct + start

    def bounds(self) -> tuple[float, float]:
        """The knots joined with each phase's ends by :meth:`_value`'s own arithmetic
        (``(c - b) * 1 + b`` at a linear phase's end, ``end + (start - end) / 2 * 2`` at a
        cos phase's start), which can lie an ulp past the knots."""
        values = []
        for _step, _length, start, end in self._table:
            if self._cos:  # pct = 0: cos(0) + 1 = 2; pct = 1: cos(pi) + 1 = 0
                values += [start, end, end + (start - end) / 2.0 * 2.0]
            else:  # pct = 0 gives start exactly
                values += [start, end, (end - start) * 1.0 + start]
        return hull(*values)

    def _phase_args(self) -> dict:
        return {
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "anneal_strategy": self.anneal_strategy,
            "three_phase": self.three_phase,
        }


@register
class OneCycle(_OneCyclePhases):
    """The 1cycle learning rate: ``initial_lr -> max_lr -> initial_lr / final_div_factor``.

    ``initial_lr = max_lr / div_factor``.

    Origin: Smith & Topin 2017 and PyTorch ``OneCycleLR`` (same phases and annealing formulas,
    see :class:`_OneCyclePhases`; knots ``a = max_lr / div_factor``, ``b = max_lr``,
    ``c = a / final_div_factor``). Two phases by default (fastai); ``three_phase=True`` gives the
    paper's symmetric rise and fall followed by the annihilation phase. ``s(0) = a``; from
    ``t = total_steps - 1`` on the value stays at torch's value of that step: ``c`` with
    ``anneal_strategy="cos"``; with ``"linear"``, ``(c - start) * 1 + start`` (``start`` is
    ``max_lr``, or ``initial_lr`` with ``three_phase``), which is ``c`` only to within an ulp
    of ``start`` (relative error ``1e-12`` at the default factors, more for a larger
    ``final_div_factor``). torch extrapolates the last phase one step further, to
    ``t = total_steps``, and raises after it: see :class:`_OneCyclePhases`.

    Args:
        max_lr: peak (>= 0).
        total_steps: length of the cycle (int >= 2).
        pct_start: fraction of the cycle spent rising, in (0, 1).
        anneal_strategy: ``"cos"`` or ``"linear"``.
        div_factor: ``initial_lr = max_lr / div_factor`` (> 0).
        final_div_factor: ``min_lr = initial_lr / final_div_factor`` (> 0).
        three_phase: use the three-phase layout.

    >>> s = one_cycle(1.0, total_steps=10, pct_start=0.3)  # phases end at 0.3 * 10 - 1 = 2 and 9
    >>> [round(s(t), 6) for t in (0, 1, 2, 9, 50)]  # 1 / 25, the mean, max_lr, 1 / 25 / 1e4
    [0.04, 0.52, 1.0, 4e-06, 4e-06]
    """

    name = "one_cycle"

    def __init__(
        self,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
    ) -> None:
        self.max_lr = check_float("max_lr", max_lr)
        self.div_factor = check_float("div_factor", div_factor, low_open=True)
        self.final_div_factor = check_float("final_div_factor", final_div_factor, low_open=True)
        self._init_phases(total_steps, pct_start, anneal_strategy, three_phase)
        self._initial_lr = self.max_lr / self.div_factor
        self._min_lr = self._initial_lr / self.final_div_factor
        self._table = self._phase_table(self._initial_lr, self.max_lr, self._min_lr)

    def momentum(self, base_momentum: float = 0.85, max_momentum: float = 0.95) -> OneCycleMomentum:
        """The inverse momentum schedule of this cycle (torch's ``cycle_momentum=True``)."""
        return OneCycleMomentum(
            base_momentum=base_momentum, max_momentum=max_momentum, **self._phase_args()
        )


@register
class OneCycleMomentum(_OneCyclePhases):
    """1cycle momentum: ``max_momentum -> base_momentum -> max_momentum`` (inverse to the lr).

    Origin: PyTorch ``OneCycleLR(cycle_momentum=True)``: knots ``a = max_momentum``,
    ``b = base_momentum``, ``c = max_momentum`` in the layout of :class:`_OneCyclePhases`. Drive
    it on ``"momentum"`` (SGD) or ``"betas[0]"`` (Adam-like).

    Args:
        total_steps, pct_start, anneal_strategy, three_phase: as :class:`OneCycle`.
        base_momentum: momentum at the learning-rate peak, in [0, 1].
        max_momentum: momentum at the start and end, in [base_momentum, 1].

    >>> s = one_cycle_momentum(total_steps=10, pct_start=0.3)
    >>> [round(s(t), 6) for t in (0, 1, 2, 9, 50)]  # inverse to one_cycle's learning rate
    [0.95, 0.9, 0.85, 0.95, 0.95]
    >>> one_cycle(1.0, total_steps=10, pct_start=0.3).momentum() == s
    True
    """

    name = "one_cycle_momentum"

    def __init__(
        self,
        total_steps: int,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        three_phase: bool = False,
    ) -> None:
        self.base_momentum, self.max_momentum = _momentum_range(base_momentum, max_momentum)
        self._init_phases(total_steps, pct_start, anneal_strategy, three_phase)
        self._table = self._phase_table(self.max_momentum, self.base_momentum, self.max_momentum)


cyclic = Cyclic
cyclic_momentum = CyclicMomentum
one_cycle = OneCycle
one_cycle_momentum = OneCycleMomentum
