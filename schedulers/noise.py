"""Noise that is a pure function of ``(seed, t)``, and timm's bounded noise on any schedule.

A schedule with noise must give every rank and every resume the same value at step ``t``, so its
noise is not drawn from a generator's state but computed from the step: SplitMix64 (Steele, Lea &
Flood 2014) of the counter ``t`` offset by a hash of the seed gives 64 random bits per step.
Fractional steps use their whole part.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from schedulers.base import (
    Ops,
    Schedule,
    check_choice,
    check_float,
    check_int,
    check_schedule,
    product_bounds,
    register,
)

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MAX_SEED = 2**63 - 1
#: Largest ``|z|`` :func:`standard_normal` can return: ``sqrt(-2 ln 2**-32)``, about 6.66.
MAX_ABS_NORMAL = math.sqrt(-2.0 * math.log(2.0**-32))


def _splitmix64_int(x: int) -> int:
    """The SplitMix64 finaliser on one Python int (the seed's hash)."""
    z = (x + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser on a uint64 array (numpy's uint64 arithmetic wraps mod 2**64)."""
    z = x + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def random_bits(seed: int, t: np.ndarray) -> np.ndarray:
    """64 random bits per step: ``splitmix64(floor(t) + splitmix64(seed))`` (mod 2**64)."""
    counter = np.asarray(t, dtype=np.float64).astype(np.uint64)
    return _splitmix64(counter + np.uint64(_splitmix64_int(seed)))


def standard_normal(seed: int, t: np.ndarray, xp: Ops) -> np.ndarray:
    """A standard normal draw that is a pure function of ``(seed, t)``.

    The high and low 32 bits of :func:`random_bits` are two uniforms ``u1, u2`` in [0, 1) and
    Box–Muller gives ``sqrt(-2 log(1 - u1)) cos(2 pi u2)``, so ``|z| <= MAX_ABS_NORMAL``.
    """
    bits = random_bits(seed, t)
    u1 = (bits >> np.uint64(32)).astype(np.float64) * 2.0**-32
    u2 = (bits & np.uint64(0xFFFFFFFF)).astype(np.float64) * 2.0**-32
    return xp.sqrt(-2.0 * xp.log1p(-u1)) * xp.cos(2.0 * xp.pi * u2)


def open_uniform(seed: int, t: np.ndarray) -> np.ndarray:
    """A uniform draw in the open interval (0, 1), 53-bit resolution, from ``(seed, t)``."""
    return ((random_bits(seed, t) >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


@register
class Noisy(Schedule):
    """``schedule(t) * (1 + n_t)``: timm's bounded multiplicative noise on any schedule.

    Origin: timm's ``Scheduler`` (``noise_range_t``, ``noise_type``, ``noise_pct``,
    ``noise_std``, ``noise_seed``; ``timm/scheduler/scheduler.py``), with timm's names and rules:

    * noise is applied at the steps ``noise_range_t <= t`` (an int) or
      ``noise_range_t[0] <= t < noise_range_t[1]`` (a pair); elsewhere ``n_t = 0``;
    * ``noise_type="normal"``: ``n_t`` is normal with standard deviation ``noise_std``,
      conditioned on ``|n_t| < noise_pct`` (timm resamples until the draw is inside);
    * ``noise_type="uniform"``: ``n_t`` is uniform on ``(-noise_pct, noise_pct)``.

    Like timm's, the noise is a function of ``t`` and the seed only (timm seeds a generator with
    ``noise_seed + t``): every rank and every resume sees the same value. Deliberate
    differences: the draws come from :func:`open_uniform` instead of torch's generator (the same
    distribution, other numbers), the truncated normal is drawn by inverting its CDF instead of
    by rejection, and ``noise_std`` is honoured, as in timm 1.0.31 (older timm releases stored it
    but their normal draw ignored it: with the default ``noise_std=1`` all agree).
    ``noise_pct < 1`` keeps the value ``>= 0``.

    Args:
        schedule: the schedule the noise multiplies.
        noise_pct: bound of ``|n_t|``, in [0, 1) (timm's default 0.67).
        noise_std: standard deviation of the normal noise before truncation (> 0).
        noise_type: ``"normal"`` or ``"uniform"``.
        noise_range_t: first noisy step (int >= 0) or ``[first, end)``.
        noise_seed: seed (int >= 0; timm's default 42).

    >>> s = noisy(constant(1.0), noise_pct=0.1, noise_range_t=[5, 10])
    >>> s(0), 0.9 < s(7) < 1.1, s(7) == s(7), s(12)
    (1.0, True, True, 1.0)
    """

    name = "noisy"

    def __init__(
        self,
        schedule: Schedule,
        noise_pct: float = 0.67,
        noise_std: float = 1.0,
        noise_type: str = "normal",
        noise_range_t: int | list[int] = 0,
        noise_seed: int = 42,
    ) -> None:
        self.schedule = check_schedule("schedule", schedule)
        self.noise_pct = check_float("noise_pct", noise_pct, 0.0, 1.0, high_open=True)
        self.noise_std = check_float("noise_std", noise_std, low_open=True)
        self.noise_type = check_choice("noise_type", noise_type, ("normal", "uniform"))
        if isinstance(noise_range_t, (list, tuple)):
            if len(noise_range_t) != 2:
                raise ValueError(
                    f"noise_range_t must be a step or a pair [first, end), got "
                    f"noise_range_t={noise_range_t!r}"
                )
            first = check_int("noise_range_t[0]", noise_range_t[0], minimum=0)
            end = check_int("noise_range_t[1]", noise_range_t[1], minimum=first + 1)
            self.noise_range_t: int | list[int] = [first, end]
            self._range = (float(first), float(end))
        else:
            self.noise_range_t = check_int("noise_range_t", noise_range_t, minimum=0)
            self._range = (float(self.noise_range_t), math.inf)
        self.noise_seed = check_int("noise_seed", noise_seed, minimum=0, maximum=_MAX_SEED)

    def noise(self, t: np.ndarray) -> np.ndarray:
        """``n_t`` at an array of steps (0 outside ``noise_range_t``)."""
        u = open_uniform(self.noise_seed, t)
        pct = self.noise_pct
        if self.noise_type == "uniform":
            draw = (2.0 * u - 1.0) * pct
        else:  # the normal CDF inverted on [Phi(-a), Phi(a)]: a normal conditioned on |z| < a
            a = pct / self.noise_std
            low, high = special.ndtr(-a), special.ndtr(a)
            draw = self.noise_std * np.clip(special.ndtri(low + u * (high - low)), -a, a)
        first, end = self._range
        return np.where((t >= first) & (t < end), draw, 0.0)

    def _value(self, t, xp):
        return self.schedule._value(t, xp) * (1.0 + self.noise(t))

    def bounds(self) -> tuple[float, float]:
        """The schedule's range times the factor's, ``1 + n_t`` in ``[1 - m, 1 + m]``: every
        product of the ends (an enclosure also where the schedule can be negative). ``m`` is
        ``noise_pct``, or the largest normal draw, ``noise_std * (noise_pct / noise_std)``,
        which can round an ulp above it."""
        pct = self.noise_pct
        if self.noise_type == "normal":
            pct = max(pct, self.noise_std * (pct / self.noise_std))
        return product_bounds((1.0 - pct, 1.0 + pct), self.schedule.bounds())


noisy = Noisy
