"""The schedules of large-model training: warmup-stable-decay (WSD), the Transformer's inverse
square root, and REX.

Conventions (as everywhere in :mod:`schedulers`): ``t`` counts updates already made, so ``s(0)`` is
the value of the first update; every phase length is a number of updates.
"""

from __future__ import annotations

from schedulers.base import Schedule, check_choice, check_float, check_int, register
from schedulers.cosine import half_cosine

COOLDOWNS = ("linear", "1-sqrt", "cosine")


@register
class WSD(Schedule):
    """Warmup-stable-decay: a linear warmup, a long constant phase, then a short cooldown.

    With ``W = warmup_steps``, ``S = stable_steps``, ``D = decay_steps``,
    ``peak = peak_lr`` and ``final = final_lr``::

        s(t) = peak * t / W                          0 <= t < W       (warmup, from 0)
        s(t) = peak                                  W <= t < W + S   (stable)
        s(t) = final + (peak - final) * c(u)         W + S <= t       (cooldown)

    with ``u = min((t - W - S + 1) / D, 1)`` and the cooldown shape ``c``:

    * ``"linear"``: ``c(u) = 1 - u``;
    * ``"1-sqrt"`` (default): ``c(u) = 1 - sqrt(u)`` (Hägele et al.'s best cooldown);
    * ``"cosine"``: ``c(u) = (1 + cos(pi u)) / 2``.

    The first cooldown update already uses ``u = 1 / D`` and the last of the ``D`` cooldown
    updates (``t = W + S + D - 1``) uses ``final_lr``, so a run of ``W + S + D`` updates ends at
    ``final_lr``; afterwards the value stays ``final_lr``.

    Origin: Hu et al., "MiniCPM: Unveiling the Potential of Small Language Models with Scalable
    Training Strategies", 2024 (arXiv:2404.06395), and Hägele et al., "Scaling Laws and
    Compute-Optimal Training Beyond Fixed Training Durations", NeurIPS 2024 (arXiv:2405.18392),
    which introduces the ``1 - sqrt`` cooldown.

    Args:
        peak_lr: value of the stable phase (>= 0).
        warmup_steps: updates of the linear warmup (int >= 0; 0: start at the peak).
        stable_steps: updates at ``peak_lr`` (int >= 0).
        decay_steps: updates of the cooldown (int >= 1).
        cooldown: ``"linear"``, ``"1-sqrt"`` or ``"cosine"``.
        final_lr: value at the end of the cooldown and afterwards, in [0, peak_lr].

    >>> s = wsd(1.0, warmup_steps=2, stable_steps=3, decay_steps=4, cooldown="linear")
    >>> [s(t) for t in range(10)]
    [0.0, 0.5, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """

    name = "wsd"

    def __init__(
        self,
        peak_lr: float,
        warmup_steps: int,
        stable_steps: int,
        decay_steps: int,
        *,
        cooldown: str = "1-sqrt",
        final_lr: float = 0.0,
    ) -> None:
        self.peak_lr = check_float("peak_lr", peak_lr)
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
        self.stable_steps = check_int("stable_steps", stable_steps, minimum=0)
        self.decay_steps = check_int("decay_steps", decay_steps)
        self.cooldown = check_choice("cooldown", cooldown, COOLDOWNS)
        self.final_lr = check_float("final_lr", final_lr, 0.0, self.peak_lr)

    def _shape(self, u, xp):
        if self.cooldown == "linear":
            return 1.0 - u
        if self.cooldown == "1-sqrt":
            return 1.0 - xp.sqrt(u)
        return half_cosine(u, xp)

    def _value(self, t, xp):
        warmup, decay_start = self.warmup_steps, self.warmup_steps + self.stable_steps
        peak, final = self.peak_lr, self.final_lr
        u = xp.minimum(xp.maximum(t - decay_start + 1.0, 0.0) / self.decay_steps, 1.0)
        cooled = final + (peak - final) * self._shape(u, xp)
        ramp = peak * t / warmup if warmup else peak + 0.0 * t
        return xp.where(t < warmup, ramp, xp.where(t < decay_start, peak + 0.0 * t, cooled))

    def bounds(self) -> tuple[float, float]:
        # by the formula's own arithmetic: the warmup's ramp towards peak * W / W and the
        # cooldown's start, final + (peak - final) * c(u) with c(u) rounding to 1 for a long
        # cosine cooldown, can lie an ulp above peak_lr
        peak, final, warmup = self.peak_lr, self.final_lr, self.warmup_steps
        low = 0.0 if warmup else final
        ramp_end = peak * warmup / warmup if warmup else peak
        return (low, max(peak, ramp_end, final + (peak - final) * 1.0))


@register
class InverseSqrt(Schedule):
    """``peak_lr * min((t + 1) / warmup_steps, sqrt(warmup_steps / (t + 1)))``.

    The Transformer schedule normalised to its peak: a linear warmup reaching ``peak_lr`` at the
    update ``t = warmup_steps - 1``, then decay as ``1 / sqrt(t + 1)`` forever (towards 0).

    Origin: Vaswani et al., "Attention Is All You Need", NeurIPS 2017, eq. (3):
    ``lrate = d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)`` with ``step = t + 1``
    (the paper counts from 1); that is this schedule with
    ``peak_lr = (d_model * warmup_steps)**-0.5``. For a cooldown at the end, join it with a decay:
    ``join([inverse_sqrt(lr, W), linear(...)], [T])``. transformers'
    ``get_inverse_sqrt_schedule(optimizer, W)`` is this schedule one step later: its ramp is
    ``t / W`` (0 at the first update), its peak at ``t = W`` and its decay ``sqrt(W / t)``
    (to rounding, measured against transformers 5.25).

    Args:
        peak_lr: the largest value, at ``t = warmup_steps - 1`` (>= 0).
        warmup_steps: updates of the warmup (int >= 1).

    >>> s = inverse_sqrt(1.0, warmup_steps=4)
    >>> [s(t) for t in (0, 3, 15)]
    [0.25, 1.0, 0.5]
    """

    name = "inverse_sqrt"

    def __init__(self, peak_lr: float, warmup_steps: int) -> None:
        self.peak_lr = check_float("peak_lr", peak_lr)
        self.warmup_steps = check_int("warmup_steps", warmup_steps)

    def _value(self, t, xp):
        step = t + 1.0
        warmup = self.warmup_steps
        return self.peak_lr * xp.minimum(step / warmup, xp.sqrt(warmup / step))

    def bounds(self) -> tuple[float, float]:
        return (0.0, self.peak_lr)


wsd = WSD
inverse_sqrt = InverseSqrt
