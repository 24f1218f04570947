"""The schedules of modern training against formulas written here from the papers and the issue.

WSD: Hu et al. 2024 (MiniCPM) and Hägele et al. 2024; the convention (t counts updates made,
``u = (t - W - S + 1) / D``) is issue 14's. Inverse square root: Vaswani et al. 2017, eq. (3).
REX: Chen, Wolfe & Kyrillidis 2022, eq. (1).
"""

import math

import numpy as np
import pytest

import schedulers as S


def _wsd_reference(t, peak, W, S_, D, cooldown, final):
    if t < W:
        return peak * t / W
    if t < W + S_:
        return peak
    u = min((t - W - S_ + 1) / D, 1.0)
    shape = {
        "linear": 1 - u,
        "1-sqrt": 1 - math.sqrt(u),
        "cosine": (1 + math.cos(math.pi * u)) / 2,
    }[cooldown]
    return final + (peak - final) * shape


@pytest.mark.parametrize("cooldown", ["linear", "1-sqrt", "cosine"])
@pytest.mark.parametrize(
    ("W", "S_", "D", "final"), [(10, 50, 20, 0.0), (0, 7, 1, 0.01), (3, 0, 9, 0.2)]
)
def test_wsd_against_the_issue_formula(cooldown, W, S_, D, final):
    s = S.wsd(0.5, W, S_, D, cooldown=cooldown, final_lr=final)
    steps = range(W + S_ + D + 5)
    expected = [_wsd_reference(t, 0.5, W, S_, D, cooldown, final) for t in steps]
    assert [s(t) for t in steps] == pytest.approx(expected, rel=1e-14, abs=1e-16)
    assert s(W + S_ + D - 1) == final  # the last cooldown update is at final_lr
    assert s(10**12) == final
    if W:
        assert s(0) == 0.0
    if S_:
        assert s(W) == 0.5  # the stable phase is at the peak


def test_wsd_round_trips_and_rejects_bad_arguments():
    s = S.wsd(1.0, 5, 10, 5, cooldown="cosine", final_lr=0.1)
    assert S.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match=r"cooldown.*'sqrt'"):
        S.wsd(1.0, 5, 10, 5, cooldown="sqrt")
    with pytest.raises(ValueError, match="decay_steps"):
        S.wsd(1.0, 5, 10, 0)
    with pytest.raises(ValueError, match=r"final_lr.*2\.0"):
        S.wsd(1.0, 5, 10, 5, final_lr=2.0)
    with pytest.raises(TypeError):
        S.wsd(1.0, 5, 10, 5, "linear")  # cooldown is keyword-only


@pytest.mark.parametrize("d_model", [512, 1024])
@pytest.mark.parametrize("warmup", [1, 4000])
def test_inverse_sqrt_is_vaswani_normalised_to_its_peak(d_model, warmup):
    s = S.inverse_sqrt((d_model * warmup) ** -0.5, warmup)
    for t in [0, 1, warmup - 2, warmup - 1, warmup, 2 * warmup, 10**6, 10**12]:
        if t < 0:
            continue
        step = t + 1  # the paper counts from 1
        vaswani = d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)
        assert s(t) == pytest.approx(vaswani, rel=1e-14)
    assert s(warmup - 1) == pytest.approx(s.peak_lr, rel=1e-15)
    assert s.bounds() == (0.0, s.peak_lr)
    values = s(np.arange(3 * warmup + 3))
    assert values.max() == pytest.approx(s.peak_lr, rel=1e-15)
