"""Tests for range-test mutants a mutation audit (91) found surviving. Expected values from
torch-lr-finder 0.2.2 (run side by side) and hand derivations."""

import contextlib
import io

import torch

from schedulers.range_test import lr_range_test


def _scripted(losses):
    it = iter(losses)
    return lambda outputs, targets: outputs.sum() * 0 + next(it)


def _model():
    torch.manual_seed(0)
    return torch.nn.Linear(1, 1)


def test_divergence_is_measured_from_the_best_loss_as_torch_lr_finder():
    """R07. Losses 1.0, 0.5, 0.9, 1.05, ... without smoothing, threshold 2: the best is 0.5 and
    1.05 > 2 * 0.5 stops the test at the 4th update, as torch-lr-finder (best = min so far)."""
    from torch_lr_finder import LRFinder

    script = [1.0, 0.5, 0.9, 1.05, 1.2, 1.3]
    model = _model()
    result = lr_range_test(
        model, torch.optim.SGD(model.parameters(), lr=0.1), _scripted(script),
        [(torch.ones(2, 1), torch.zeros(2, 1))], start_lr=1e-3, end_lr=1.0, num_iter=6,
        smoothing=0.0, diverge_threshold=2.0, curvature_batches=0,
    )  # fmt: skip
    model = _model()
    finder = LRFinder(model, torch.optim.SGD(model.parameters(), lr=1e-3), _scripted(script))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.ones(2, 1), torch.zeros(2, 1)), batch_size=2
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        finder.range_test(loader, end_lr=1.0, num_iter=6, smooth_f=0.0, diverge_th=2)
    assert len(result.lrs) == len(finder.history["lr"]) == 4
    assert result.diverged_lr == finder.history["lr"][-1] == result.lrs[3]
    assert result.lrs[3] == 1e-3 * 1000 ** (3 / 5)


def test_an_early_minimum_is_searched_over_exactly_the_two_points_before_it():
    """R10. Documented: "A minimum within s + 2 points of the start is searched over the two
    points before it". Minimum at index 4, skip_start 5 (no smoothing): the search covers
    indices 2 and 3 only. np.gradient's central slopes (in units of the log-step h, /2h) are
    index 1: 0.3 - 1.0 = -0.7, index 2: 0.29 - 0.9 = -0.61, index 3: 0.28 - 0.3 = -0.02, so
    the steepest of 2..3 is index 2 (index 1, steeper, lies outside the two points)."""
    import numpy as np

    from schedulers.range_test import suggest

    lrs = list(np.geomspace(1e-4, 1.0, 12))
    curve = [1.0, 0.9, 0.3, 0.29, 0.28, 0.5, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8]
    assert suggest(lrs, curve, skip_start=5)["steepest"].lr == lrs[2]


def test_a_non_finite_divergence_leaves_the_suggestions_of_the_finite_points():
    """R20. The suggestions read only the points recorded before the divergence: a test stopped
    by an infinite loss still suggests steepest and min/10 from the finite points."""
    import math

    import numpy as np

    from schedulers.range_test import read_curve

    lrs = [float(x) for x in np.geomspace(1e-4, 1.0, 20)]
    losses = [2.0 - 1.5 * math.exp(-((math.log10(lr) + 2) ** 2)) for lr in lrs[:-1]]
    losses.append(math.inf)
    suggestions, bounds = read_curve(lrs, losses, losses, lrs[-1], 20, skip_start=0)
    minimum = int(np.argmin(losses[:-1]))  # the bump's bottom, lr = 1e-2
    assert suggestions["min/10"].lr == lrs[minimum] / 10
    assert "steepest" in suggestions
    assert bounds is not None


def test_the_validation_loss_is_the_mean_over_examples():
    """R21. torch-lr-finder's _validate: sum of batch mean * batch size / examples. Batches of
    3 examples at loss 1 and 1 example at loss 5: (3 * 1 + 5) / 4 = 2."""
    from schedulers.range_test import _mean_loss_and_accuracy

    data = [(torch.tensor([1.0, 1.0, 1.0]), torch.zeros(3)), (torch.tensor([5.0]), torch.zeros(1))]
    loss, _ = _mean_loss_and_accuracy(
        torch.nn.Identity(), lambda out, y: (out - y).mean(), data, "cpu", False
    )
    assert loss == 2.0


def test_steepest_excludes_the_minimum_even_where_its_slope_is_the_steepest():
    """R12. Documented: steepest is searched "before the minimum m (m itself excluded)". Curve
    with a bump before a sharp minimum at index 8: central slopes (units of 2h) are index 7:
    0.1 - 0.5 = -0.4 and index 8: 0.11 - 1.0 = -0.89 (the minimum's, excluded); the others are
    at most -0.3 in size, so steepest is index 7."""
    import numpy as np

    from schedulers.range_test import suggest

    lrs = list(np.geomspace(1e-4, 1.0, 12))
    curve = [1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.5, 1.0, 0.1, 0.11, 0.5, 1.0]
    assert suggest(lrs, curve, skip_start=0)["steepest"].lr == lrs[7]


def test_clr_base_is_the_first_rate_whose_loss_has_fallen_by_exactly_ten_percent():
    """R15. base_lr is the first rate at which the loss is 10% of its fall below its start
    (fallen by at least 10%). Start 1.0, minimum 0.0: the threshold is 1.0 - 0.1 * 1.0 = 0.9,
    reached exactly at index 1, so base_lr = lrs[1] and max_lr = lrs[3]."""
    from schedulers.range_test import clr_bounds

    lrs = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    assert 1.0 - 0.1 * (1.0 - 0.0) == 0.9
    assert clr_bounds(lrs, [1.0, 0.9, 0.5, 0.0, 2.0]) == (1e-2, 1.0)
