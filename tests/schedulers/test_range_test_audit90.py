"""Audit 90 (peers), F1: the range test's ``steepest`` and ``clr_bounds``' ``base_lr`` start after
the bias warm-up of the smoothed loss, and the sweep matches torch-lr-finder 0.2.2's.

Before the fix, with the default smoothing 0.98 and ``skip_start = 5``, both read the sweep's
first points, where the bias-corrected average is a mean of a few batches and batch noise made
the steepest "fall" (the audit: point 6 of 82, where the full-data loss had not moved). Expected
values here come from independent computations: the noise-free curve is the full-data loss of a
hand-written training loop with the same rates and batches, the smoothed curves are written out
as weighted sums, and the parity test runs torch-lr-finder itself.
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import schedulers.range_test as rt


def _bias_corrected(losses: list[float], beta: float) -> list[float]:
    """sum_j (1 - beta) beta^(i-j) loss_j / (1 - beta^(i+1)), written out."""
    return [
        sum((1 - beta) * beta ** (i - j) * losses[j] for j in range(i + 1)) / (1 - beta ** (i + 1))
        for i in range(len(losses))
    ]


def _central_slopes(curve: list[float], lrs: list[float]) -> list[float]:
    """d(curve)/d(log lr) by central differences inside, one-sided at the ends (a uniform grid)."""
    x = [math.log(lr) for lr in lrs]
    n = len(curve)
    slopes = [(curve[1] - curve[0]) / (x[1] - x[0])]
    slopes += [(curve[i + 1] - curve[i - 1]) / (x[i + 1] - x[i - 1]) for i in range(1, n - 1)]
    return [*slopes, (curve[-1] - curve[-2]) / (x[-1] - x[-2])]


# --- the warm-up index ------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 0.9, 0.95, 0.98, 0.99, 0.999])
def test_bias_warmup_is_the_first_index_where_the_correction_at_most_doubles(beta):
    expected = next(k for k in range(100_000) if 1 - beta ** (k + 1) >= 0.5)
    assert rt.bias_warmup(beta) == expected
    # the docstring's reading: from k on, the smoothed point's effective sample size
    # (sum w)^2 / sum w^2 (w_j = beta^(i-j)) is at least a third of the stationary (1+b)/(1-b),
    # and before k it is less
    if beta > 0:

        def ratio(i):
            weights = [beta ** (i - j) for j in range(i + 1)]
            ess = sum(weights) ** 2 / sum(w * w for w in weights)
            return ess / ((1 + beta) / (1 - beta))

        assert ratio(expected) >= 1 / 3 - 1e-12
        if expected > 0:
            assert ratio(expected - 1) < 1 / 3


def test_bias_warmup_values_quoted_in_the_docstring():
    assert [rt.bias_warmup(b) for b in (0.98, 0.95, 0.0)] == [34, 13, 0]
    # about ln 2 / (1 - beta)
    assert abs(rt.bias_warmup(0.999) - math.log(2) / 0.001) < 2


@pytest.mark.parametrize("value", [1.0, -0.1, float("nan")])
def test_bias_warmup_refuses_a_smoothing_outside_0_1(value):
    with pytest.raises(ValueError, match="smoothing"):
        rt.bias_warmup(value)


# --- a noisy sweep: the old rule read its first points --------------------------------------------

# (model seed, data seed, batch size, sweep length)
CASES = [(0, 3, 32, 100), (1, 2, 32, 100), (0, 1, 16, 100), (0, 3, 16, 60)]


def _problem(seed: int, data_seed: int, batch_size: int):
    generator = torch.Generator().manual_seed(data_seed)
    x = torch.randn(256, 10, generator=generator)
    w = torch.randn(10, 1, generator=generator)
    y = x @ w + 0.1 * torch.randn(256, 1, generator=generator)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)
    return model, optimizer, loader, (x, y)


def _noise_free_curve(seed, data_seed, batch_size, lrs):
    """The full-data loss after each update of the same sweep, by a plain training loop, up to
    its divergence: the first loss above 4 times the lowest so far (the test's default
    threshold), which is left out."""
    model, optimizer, loader, (x, y) = _problem(seed, data_seed, batch_size)
    batches = list(loader)
    losses = []
    for i, lr in enumerate(lrs):
        for group in optimizer.param_groups:
            group["lr"] = lr
        inputs, targets = batches[i % len(batches)]
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(inputs), targets).backward()
        optimizer.step()
        with torch.no_grad():
            loss = float(torch.nn.functional.mse_loss(model(x), y))
        if losses and loss > 4.0 * min(losses):
            break
        losses.append(loss)
    return losses


@pytest.mark.parametrize(("seed", "data_seed", "batch_size", "num_iter"), CASES)
def test_steepest_and_clr_base_read_the_real_fall_not_the_first_batches(
    seed, data_seed, batch_size, num_iter
):
    """Before: steepest fell on points 5-9 (lr 2e-5 to 4e-5, where the full-data loss had not
    moved) and base_lr on point 1; the noise-free curve falls fastest near 5e-3. With 60 points
    the smoothed minimum comes at 38, before twice the warm-up (68): the search starts at 19, half
    the points before it (from the warm-up's 34 it would read only 34-37, after the fall)."""
    model, optimizer, loader, _ = _problem(seed, data_seed, batch_size)
    # the documented defaults otherwise: smoothing 0.98, skip_start 5
    result = rt.lr_range_test(
        model, optimizer, torch.nn.functional.mse_loss, loader, start_lr=1e-5, end_lr=10.0,
        num_iter=num_iter, curvature_batches=0,
    )  # fmt: skip
    lrs = [1e-5 * (10.0 / 1e-5) ** (i / (num_iter - 1)) for i in range(num_iter)]
    full = _noise_free_curve(seed, data_seed, batch_size, lrs)
    lowest = int(np.argmin(full))
    slopes = _central_slopes(full, lrs[: len(full)])
    true_steepest = lrs[min(range(1, lowest), key=lambda i: slopes[i])]

    steepest = result.suggestions["steepest"].lr
    assert true_steepest / 2 <= steepest <= true_steepest * 2, (steepest, true_steepest)
    # the full-data loss at the suggestion has made real progress (before: under 0.1 %)
    index = min(range(len(full)), key=lambda i: abs(math.log(lrs[i] / steepest)))
    assert full[0] - full[index] > 0.3 * (full[0] - full[lowest])

    base, top = result.clr_bounds
    # "where the loss starts to fall": the noise-free loss has made at least 1 % of its fall by
    # base_lr (before: base_lr was the sweep's second rate, where it had made none) and has not
    # finished falling
    at_base = min(range(len(full)), key=lambda i: abs(math.log(lrs[i] / base)))
    fallen = (full[0] - full[at_base]) / (full[0] - full[lowest])
    assert 0.01 < fallen < 0.9, (base, fallen)
    assert base < top


def test_a_result_suggestions_are_suggest_on_its_raw_losses_and_its_own_smoothing():
    """suggest and clr_bounds smooth the raw losses themselves with the result's smoothing, so
    the curve and its warm-up cannot disagree."""
    model, optimizer, loader, _ = _problem(0, 3, 32)
    result = rt.lr_range_test(
        model, optimizer, torch.nn.functional.mse_loss, loader, start_lr=1e-5, end_lr=10.0,
        num_iter=100, curvature_batches=0, smoothing=0.95,
    )  # fmt: skip
    n = len(result.losses) - (1 if result.diverged_lr is not None else 0)
    beta = result.settings["smoothing"]
    again = rt.suggest(result.lrs[:n], result.losses[:n], 5, smoothing=beta)
    assert again["steepest"] == result.suggestions["steepest"]
    assert again["min/10"] == result.suggestions["min/10"]
    assert rt.clr_bounds(result.lrs[:n], result.losses[:n], smoothing=beta) == result.clr_bounds
    assert result.smoothed == pytest.approx(_bias_corrected(result.losses, beta), rel=1e-12)
    # the search started after the warm-up of 0.95 (13 points)
    assert result.lrs.index(result.suggestions["steepest"].lr) >= 13
    assert result.lrs.index(result.clr_bounds[0]) >= 13


# --- the fallbacks and smoothing = 0 ----------------------------------------------------------


def _short_sweep():
    """30 raw losses: flat at 2, a one-batch spike at 2, a fall at 12, a rise at 20."""
    lrs = list(np.geomspace(1e-4, 1.0, 30))
    raw = [2.0] * 12 + [0.5] * 8 + [6.0] * 10
    raw[2] = 12.0
    return lrs, raw


def test_short_sweep_searches_the_later_half_before_the_minimum():
    """With beta 0.98 (warm-up 34) a 30-point sweep never leaves the warm-up: the minimum m
    comes before 2 x 34, so steepest is searched over [m // 2, m) and base_lr from m // 2 on.
    Before: from skip_start = 5 and from point 0, where the spike's downstroke is steeper than
    the fall (the smoothed value at 2 averages three batches)."""
    lrs, raw = _short_sweep()
    smoothed = _bias_corrected(raw, 0.98)
    minimum = int(np.argmin(smoothed))
    assert minimum == 19  # the last point of the low stretch
    slopes = _central_slopes(smoothed, lrs)
    first = minimum // 2  # 9
    expected = min(range(first, minimum), key=lambda i: slopes[i])
    assert expected == 12  # the real fall
    spike_side = min(range(5, minimum), key=lambda i: slopes[i])
    assert spike_side < first  # what a search from skip_start would pick: the spike's downstroke
    suggestions = rt.suggest(lrs, raw, skip_start=5, smoothing=0.98)
    assert suggestions["steepest"].lr == lrs[expected]

    # base_lr: the first point from m // 2 on where the smoothed loss has made 10 % of its fall
    start = smoothed[first]
    threshold = start - 0.1 * (start - smoothed[minimum])
    base_index = next(i for i in range(first, minimum + 1) if smoothed[i] <= threshold)
    assert rt.clr_bounds(lrs, raw, smoothing=0.98) == (lrs[base_index], lrs[minimum])
    assert base_index > 2  # not the spike's downstroke


def test_short_sweep_with_the_minimum_at_2_or_3_still_searches_two_points():
    lrs = list(np.geomspace(1e-3, 1.0, 10))
    curve = [1.0, 0.6, 0.2, 0.9, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0]  # minimum at 2
    assert rt.suggest(lrs, curve, smoothing=0.0, skip_start=5)["steepest"].lr in lrs[0:2]
    assert "steepest" not in rt.suggest(lrs, [1.0, 0.2, *curve[2:]], skip_start=5)  # minimum 1
    assert rt.clr_bounds(lrs, [0.1, *curve[1:]]) is None  # minimum at 0


def test_smoothing_zero_has_no_warmup_and_keeps_the_raw_curve():
    """smoothing = 0: the curve is the raw loss and the search starts at skip_start itself."""
    lrs = list(np.geomspace(1e-4, 1.0, 40))
    raw = [3.0 - 2.0 * math.tanh((i - 20) / 3) for i in range(30)] + [0.9 + i for i in range(10)]
    raw[4] = 9.0  # a spike just before skip_start: its downstroke at 5 is the steepest point
    slopes = _central_slopes(raw, lrs)
    minimum = int(np.argmin(raw))
    expected = min(range(5, minimum), key=lambda i: slopes[i])
    assert expected == 5  # a warm-up of 0 adds nothing to skip_start
    assert rt.suggest(lrs, raw, skip_start=5, smoothing=0.0)["steepest"].lr == lrs[5]
    after_spike = min(range(6, minimum), key=lambda i: slopes[i])
    assert after_spike == 20  # the tanh's centre
    assert rt.suggest(lrs, raw, skip_start=6, smoothing=0.0)["steepest"].lr == lrs[20]
    assert rt.clr_bounds(lrs, raw, smoothing=0.0)[1] == lrs[minimum]
    assert rt.smooth(raw, 0.0) == raw


# --- parity with torch-lr-finder 0.2.2 ----------------------------------------------------------


def _tiny():
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(64, 4, generator=generator)
    y = torch.sin(x.sum(dim=1, keepdim=True))
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    return model, DataLoader(TensorDataset(x, y), batch_size=8, shuffle=False)


def _first_stop(curve: list[float], threshold: float) -> int | None:
    """torch-lr-finder's stop: the first i with curve_i > threshold * min(curve_0..i)."""
    best = curve[0]
    for i, value in enumerate(curve):
        best = min(best, value)
        if value > threshold * best:
            return i
    return None


def _their_run(model, loader, mode, start_lr, end_lr, num_iter, smooth_f, threshold):
    lr_finder = pytest.importorskip("torch_lr_finder")
    optimizer = torch.optim.SGD(model.parameters(), lr=start_lr, momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's get_lr() warning, tqdm's notebook warning
        finder = lr_finder.LRFinder(model, optimizer, torch.nn.functional.mse_loss)
        finder.range_test(
            loader, start_lr=start_lr, end_lr=end_lr, num_iter=num_iter, step_mode=mode,
            smooth_f=smooth_f, diverge_th=threshold,
        )  # fmt: skip
        history = dict(finder.history)
        finder.reset()
    return history, optimizer


@pytest.mark.parametrize(
    ("mode", "start_lr", "end_lr", "num_iter"), [("exp", 1e-3, 30.0, 60), ("linear", 1e-3, 4.0, 80)]
)
def test_sweep_matches_torch_lr_finder(mode, start_lr, end_lr, num_iter):
    pytest.importorskip("torch_lr_finder")
    threshold, beta = 4.0, 0.9
    model, loader = _tiny()
    initial = copy.deepcopy(model.state_dict())

    # raw losses on both sides (smooth_f = 0, smoothing = 0): same rates, bit-equal losses,
    # the same stop (a high threshold: the raw losses must outlast the smoothed runs below)
    raw_threshold = 1000.0
    their_model = copy.deepcopy(model)
    theirs_raw, _ = _their_run(
        their_model, loader, mode, start_lr, end_lr, num_iter, 0.0, raw_threshold
    )
    for name, value in their_model.state_dict().items():  # after its reset()
        assert torch.equal(value, initial[name]), name
    optimizer = torch.optim.SGD(model.parameters(), lr=0.123, momentum=0.9)
    state = copy.deepcopy(optimizer.state_dict())
    ours_raw = rt.lr_range_test(
        model, optimizer, torch.nn.functional.mse_loss, loader, start_lr=start_lr, end_lr=end_lr,
        num_iter=num_iter, sweep=mode, smoothing=0.0, diverge_threshold=raw_threshold,
        curvature_batches=0,
    )  # fmt: skip
    assert ours_raw.diverged_lr is not None  # the sweep reaches the divergence
    assert len(ours_raw.lrs) < num_iter
    assert ours_raw.lrs == pytest.approx(theirs_raw["lr"], rel=1e-14, abs=0)
    assert ours_raw.losses == theirs_raw["loss"]  # bit for bit
    assert len(ours_raw.losses) - 1 == _first_stop(theirs_raw["loss"], raw_threshold)

    # smoothed: theirs is the plain EMA seeded with the first loss (f = 1 - beta), ours the
    # bias-corrected one; each stops where its own curve crosses the threshold
    theirs, _ = _their_run(
        copy.deepcopy(model), loader, mode, start_lr, end_lr, num_iter, 1 - beta, threshold
    )
    ours = rt.lr_range_test(
        model, optimizer, torch.nn.functional.mse_loss, loader, start_lr=start_lr, end_lr=end_lr,
        num_iter=num_iter, sweep=mode, smoothing=beta, diverge_threshold=threshold,
        curvature_batches=0,
    )  # fmt: skip
    raw = ours_raw.losses
    count = min(len(ours.losses), len(theirs["loss"]))
    assert max(len(ours.losses), len(theirs["loss"])) < len(raw)
    assert ours.losses == raw[: len(ours.losses)]  # the same raw losses, bit for bit
    plain = [raw[0]]
    for loss in raw[1:]:
        plain.append((1 - beta) * loss + beta * plain[-1])
    assert theirs["loss"] == pytest.approx(plain[: len(theirs["loss"])], rel=1e-12)
    corrected = _bias_corrected(raw[: len(ours.losses)], beta)
    assert ours.smoothed == pytest.approx(corrected, rel=1e-12)
    assert not np.allclose(ours.smoothed[1:count], theirs["loss"][1:count], rtol=1e-3)
    assert len(theirs["loss"]) - 1 == _first_stop(plain, threshold)
    assert len(ours.smoothed) - 1 == _first_stop(corrected, threshold)

    # restored: ours by itself, exactly; the optimizer as it was (its lr too)
    for name, value in model.state_dict().items():
        assert torch.equal(value, initial[name]), name
    assert optimizer.param_groups[0]["lr"] == 0.123
    assert optimizer.state_dict() == state
