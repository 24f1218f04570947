"""The LR range test: the divergence band on known problems, restoration, suggestions, errors."""

import copy
import math
import random

import numpy as np
import pytest
import torch

import optim
from schedulers.range_test import clr_bounds, lr_range_test, smooth, suggest, valley_index
from theory import LeastSquares, Quadratic


class ProblemModel(torch.nn.Module):
    """A problem with a known answer as a model: forward ignores its input and returns f(x)."""

    def __init__(self, problem):
        super().__init__()
        self.problem = problem
        self.x = problem.parameter()

    def forward(self, _inputs):
        return self.problem.loss(self.x)


FULL_BATCH = [(torch.zeros(1), torch.zeros(1))]


def _value(output, _target):
    return output


def _problem(seed):
    rng = np.random.default_rng(seed)
    if seed % 2:
        dim, kappa = int(rng.integers(3, 30)), float(rng.uniform(1, 100))
        return Quadratic.from_condition_number(dim, kappa, L=float(rng.uniform(0.5, 5)), seed=seed)
    features = rng.standard_normal((40, int(rng.integers(3, 15))))
    return LeastSquares(features, rng.standard_normal(40), seed=seed)


@pytest.mark.parametrize("seed", range(20))
def test_divergence_is_detected_above_2_over_L_within_the_documented_band(seed):
    """Guaranteed: never below 2/L (GD's loss on a quadratic decreases monotonically below it).

    Upper side: passing 1/L annihilates the top eigencomponent of the error, which must regrow
    from rounding level at a factor (eta L - 1) per update before the loss turns up; with this
    sweep (5 decades in 300 updates), smoothing 0.9 and threshold 4, that takes the rate to at
    most 5 x 2/L (observed 3.8-4.6 x on these 20 problems).
    """
    problem = _problem(seed)
    model = ProblemModel(problem)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lr_range_test(
        model, optimizer, _value, FULL_BATCH, start_lr=1e-3 / problem.L, end_lr=1e2 / problem.L,
        num_iter=300, smoothing=0.9,
    )  # fmt: skip
    edge = 2 / problem.L
    assert result.diverged_lr is not None
    assert edge < result.diverged_lr <= 5 * edge
    assert result.curvature.eigenvalue == pytest.approx(problem.L, rel=1e-4)
    assert result.edge_step == pytest.approx(edge, rel=1e-4)


def _snapshot(model, optimizer):
    return (
        copy.deepcopy(model.state_dict()),
        copy.deepcopy(optimizer.state_dict()),
        [m.training for m in model.modules()],
        torch.get_rng_state(),
        np.random.get_state()[1].copy(),  # noqa: NPY002 (the legacy global state)
        random.getstate(),
    )


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b)
    else:
        assert a == b


def _network():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Dropout(0.2),
        torch.nn.Linear(16, 3),
    )  # fmt: skip


def _data(batches=3):
    generator = torch.Generator().manual_seed(5)
    return [
        (torch.randn(8, 6, generator=generator), torch.randint(0, 3, (8,), generator=generator))
        for _ in range(batches)
    ]


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda ps: optim.Adam(ps, lr=0.01, impl="flat"),
        lambda ps: optim.SGD(ps, lr=0.01, momentum=0.9, impl="foreach"),
        lambda ps: torch.optim.Adam(ps, lr=torch.tensor(0.01), amsgrad=True),
    ],
    ids=["ours-adam-flat", "ours-sgd-foreach", "torch-adam-tensor-lr"],
)
def test_everything_is_restored_bit_for_bit_and_training_continues_identically(make_optimizer):
    loss_fn = torch.nn.functional.cross_entropy
    data = _data()

    def train(model, optimizer, steps):
        for x, y in (data * steps)[:steps]:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()

    model = _network()
    optimizer = make_optimizer(model.parameters())
    train(model, optimizer, 3)  # some optimizer state exists before the test
    model.eval()
    random.seed(11)
    np.random.seed(11)  # noqa: NPY002 (the legacy global state)
    before = _snapshot(model, optimizer)
    result = lr_range_test(
        model, optimizer, loss_fn, data, start_lr=1e-4, end_lr=1.0, num_iter=10, accuracy=True,
    )  # fmt: skip
    assert len(result.lrs) == 10  # cycled over 3 batches
    _assert_same(before, _snapshot(model, optimizer))

    model.train()
    train(model, optimizer, 4)
    twin = _network()
    twin_optimizer = make_optimizer(twin.parameters())
    train(twin, twin_optimizer, 3)
    train(twin, twin_optimizer, 4)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_restored_even_when_the_test_raises():
    model = _network()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    before = _snapshot(model, optimizer)

    def exploding_loss(outputs, targets):
        if exploding_loss.calls == 3:
            raise RuntimeError("boom")
        exploding_loss.calls += 1
        return torch.nn.functional.cross_entropy(outputs, targets)

    exploding_loss.calls = 0
    with pytest.raises(RuntimeError, match="boom"):
        lr_range_test(model, optimizer, exploding_loss, _data(), num_iter=5, curvature_batches=0)
    _assert_same(before, _snapshot(model, optimizer))


def test_smoothing_is_bias_corrected():
    losses = [4.0, 2.0, 3.0, 1.0]
    beta = 0.5
    # Written out: weights beta^(i-j)(1-beta) normalised by 1 - beta^(i+1).
    expected = [
        sum((1 - beta) * beta ** (i - j) * losses[j] for j in range(i + 1)) / (1 - beta ** (i + 1))
        for i in range(len(losses))
    ]
    assert smooth(losses, beta) == pytest.approx(expected, rel=1e-15)
    assert smooth(losses, 0.0) == losses


def test_suggestions_on_a_known_curve_ignore_an_early_spike():
    lrs = list(np.logspace(-5, 1, 121))
    centre = 1e-2  # the loss falls fastest (in log lr) at 1e-2 and is lowest near 1e-1
    curve = [
        2 - math.tanh(math.log10(lr / centre) * 1.5) + 0.5 * max(0.0, math.log10(lr / 1e-1)) ** 2
        for lr in lrs
    ]
    spiky = list(curve)
    spiky[1] += 5.0  # an early spike: its downstroke is steeper than the real fall
    suggestions = suggest(lrs, spiky)
    assert suggestions["steepest"].lr == pytest.approx(centre, rel=0.13)  # one grid step
    minimum = lrs[int(np.argmin(curve))]
    assert suggestions["min/10"].lr == pytest.approx(minimum / 10)
    assert all(lrs[0] <= s.lr <= lrs[-1] for s in suggestions.values())
    base, top = clr_bounds(lrs, curve)
    assert top == minimum
    fallen = curve[0] - 0.1 * (curve[0] - min(curve))
    assert curve[lrs.index(base)] <= fallen < curve[lrs.index(base) - 1]


def test_valley_on_a_hand_checked_sequence():
    # fastai's rule: the longest decreasing subsequence ends at `end` with length n; its start is
    # taken as end - n (one before the run, as fastai writes it); index start + int(n/3) + int(n/6).
    # (5, 4, 3, 2, 1) ends at 5 with n = 5: start 0, index 0 + 1 + 0 = 1.
    assert valley_index([5, 4, 6, 3, 2, 1, 7]) == 1
    # (3, 2, 1): end 2, n = 3, start -1: index -1 + 1 + 0 = 0.
    assert valley_index([3, 2, 1]) == 0
    # 10 decreasing values then a rise: end 9, n = 10, start -1: index -1 + 3 + 1 = 3.
    assert valley_index([*range(10, 0, -1), 20]) == 3


def fastai_valley(lrs, losses, num_it):
    """fastai 2.x, fastai/callback/schedule.py: ``valley`` (verbatim but for names), applied as
    ``Learner.lr_find`` applies it: ``lrs[num_it//10:-5]``, ``losses[num_it//10:-5]``."""
    lrs, losses = lrs[num_it // 10 : -5], losses[num_it // 10 : -5]
    return float(lrs[fastai_valley_index(losses)])


def fastai_valley_index(losses):
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


def test_valley_is_fastais_rule_exactly_on_real_range_tests():
    """Before: the valley ran over every point (no trimming of the first tenth and last five)
    and updated the run's end after the inner loop: 30-50% off fastai's on real curves."""
    for seed, make in [(0, lambda ps: optim.Adam(ps, lr=0.01)), (1, lambda ps: optim.SGD(ps))]:
        model = _network()
        torch.manual_seed(seed)
        data = _data(batches=6)
        result = lr_range_test(
            model, make(model.parameters()), torch.nn.functional.cross_entropy, data,
            start_lr=1e-5, end_lr=10.0, num_iter=60, curvature_batches=0,
        )  # fmt: skip
        expected = fastai_valley(result.lrs, result.smoothed, 60)
        assert result.suggestions["valley"].lr == expected
    rng = np.random.default_rng(0)
    for _ in range(200):
        losses = list(rng.standard_normal(int(rng.integers(1, 40))).cumsum())
        assert valley_index(losses) == fastai_valley_index(losses)


def _shuffling_loader(generator=None):
    generator_kw = {} if generator is None else {"generator": generator}
    features = torch.randn(64, 6, generator=torch.Generator().manual_seed(1))
    targets = torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(2))
    dataset = torch.utils.data.TensorDataset(features, targets)
    return torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=True, **generator_kw)


@pytest.mark.parametrize("own_generator", [False, True])
def test_the_curvature_estimate_does_not_change_the_batches_the_sweep_sees(own_generator):
    """Before: the estimate consumed a pass of a shuffling loader, so the sweep saw other batches
    and its result changed (on the default experiment: diverged at lr 8.70 without it, never
    with it)."""

    def run(curvature_batches):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 3)
        )
        generator = torch.Generator().manual_seed(3) if own_generator else None
        return lr_range_test(
            model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
            torch.nn.functional.cross_entropy, _shuffling_loader(generator),
            start_lr=1e-4, end_lr=10.0, num_iter=30, curvature_batches=curvature_batches,
        )  # fmt: skip

    without, with_curvature = run(0), run(1)
    assert with_curvature.curvature is not None
    assert with_curvature.losses == without.losses
    assert with_curvature.lrs == without.lrs
    assert with_curvature.diverged_lr == without.diverged_lr


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"start_lr": 1e-2, "end_lr": 1e-3}, "end_lr"),
        ({"start_lr": 1e-2, "end_lr": 1e-2}, "end_lr"),
        ({"start_lr": 0.0}, "start_lr"),
        ({"num_iter": 1}, "num_iter"),
        ({"smoothing": 1.0}, "smoothing"),
        ({"smoothing": -0.1}, "smoothing"),
        ({"sweep": "log"}, "sweep"),
        ({"diverge_threshold": 1.0}, "diverge_threshold"),
        ({"curvature_batches": -1}, "curvature_batches"),
        ({"skip_start": -1}, "skip_start"),
    ],
)
def test_bad_input_names_the_argument(kwargs, argument):
    model = _network()
    with pytest.raises(ValueError, match=argument):
        lr_range_test(model, optim.SGD(model.parameters()), _value, _data(), **kwargs)


def test_an_optimizer_without_a_learning_rate_is_an_error_naming_it():
    model = _network()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"optimizer: SPS's param groups \[0\] have no 'lr'"):
        lr_range_test(model, optim.SPS(model.parameters()), _value, _data())
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_empty_data_is_an_error_naming_it():
    model = _network()
    with pytest.raises(ValueError, match="train_data is empty"):
        lr_range_test(model, optim.SGD(model.parameters()), _value, [], curvature_batches=0)


def test_plot_draws_suggestions_and_curvature(tmp_path):
    problem = _problem(1)
    model = ProblemModel(problem)
    result = lr_range_test(
        model, torch.optim.SGD(model.parameters()), _value, FULL_BATCH,
        start_lr=1e-3 / problem.L, end_lr=1e2 / problem.L, num_iter=60, label="quadratic",
    )  # fmt: skip
    figure = result.plot(tmp_path / "lr.png")
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert any(label.startswith("2/L") and "stability edge" in label for label in labels)
    assert not any("plain GD" in label for label in labels)  # it is plain GD
    assert any(label.startswith("steepest") for label in labels)
    assert any(label.startswith("diverged at") for label in labels)
    assert figure.axes[0].get_title().startswith("LR range test: quadratic, SGD")
    assert (tmp_path / "lr.png").stat().st_size > 0
    assert not list(tmp_path.glob("*.tmp"))
    assert "2/L" in result.summary()


def test_the_figure_names_the_test_shows_the_useful_range_and_labels_the_thresholds(tmp_path):
    """Before: a generic title; y-limits from the first and lowest smoothed values, which on a
    flat start zoomed into noise (27 of 100 points outside); no divergence or CLR bounds drawn;
    1/L and 2/L unlabelled as plain-GD thresholds under momentum."""
    problem = _problem(3)
    model = ProblemModel(problem)
    generator = torch.Generator().manual_seed(0)

    def noisy_value(output, _target):  # a stochastic loss: raw points scatter around the curve
        return output * (1 + 0.3 * torch.randn((), generator=generator, dtype=output.dtype))

    result = lr_range_test(
        model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), noisy_value,
        FULL_BATCH, start_lr=1e-4 / problem.L, end_lr=1e2 / problem.L, num_iter=100,
        label="quadratic-demo",
    )  # fmt: skip
    assert result.diverged_lr is not None
    assert result.clr_bounds is not None
    figure = result.plot(tmp_path / "range.png")
    ax = figure.axes[0]
    assert ax.get_title().startswith("LR range test: quadratic-demo, SGD(momentum=0.9)")
    low, high = ax.get_ylim()
    lowest = int(np.argmin(result.smoothed))  # the useful part: up to the loss's minimum
    raw = np.asarray(result.losses[: lowest + 1])
    assert np.mean((raw >= low) & (raw <= high)) >= 0.95
    smoothed = np.asarray(result.smoothed[: lowest + 1])
    assert smoothed.min() >= low
    assert smoothed.max() <= high
    labels = [artist.get_label() for artist in [*ax.get_lines(), *ax.patches]]
    assert any(label.startswith("diverged at") for label in labels)
    assert any(label.startswith("CLR bounds") for label in labels)
    thresholds = [label for label in labels if label.startswith(("1/L", "2/L"))]
    assert len(thresholds) == 2
    assert all("plain GD" in label for label in thresholds)
    notes = " ".join(text.get_text() for text in ax.texts)
    assert "plain gradient descent" in notes
    assert "SGD(momentum=0.9)" in notes
    legend = ax.get_legend().get_window_extent(figure.canvas.get_renderer())
    assert legend.x0 >= ax.get_window_extent().x1  # outside the data


@pytest.mark.slow
def test_mnist1d_mlp_suggestions_train_better_than_a_tenth_and_ten_times(tmp_path):
    from runs.batches import batches
    from runs.data import load_dataset
    from runs.models import build_model

    data = load_dataset("mnist1d", cache_dir=tmp_path)
    loss_fn = torch.nn.functional.cross_entropy

    def loader(seed):
        generator = torch.Generator().manual_seed(seed)
        return list(batches(data.train_x, data.train_y, 100, shuffle=True, generator=generator))

    def make():
        torch.manual_seed(0)
        model = build_model("mlp", data.input_shape, data.num_classes)
        return model, optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    model, optimizer = make()
    start, end = 1e-5, 10.0
    result = lr_range_test(model, optimizer, loss_fn, loader(0), start_lr=start, end_lr=end)
    assert result.diverged_lr is not None

    def final_loss(lr, steps=300):
        model, optimizer = make()
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses = []
        for x, y in (loader(1) * 10)[:steps]:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        mean = sum(losses[-30:]) / 30
        return mean if math.isfinite(mean) else math.inf  # diverged: lowered nothing

    for suggestion in result.suggestions.values():
        assert math.isfinite(suggestion.lr)
        assert start <= suggestion.lr <= end
    for rule in ("steepest", "min/10"):
        lr = result.suggestions[rule].lr
        at_lr = final_loss(lr)
        assert at_lr < final_loss(lr / 10), rule
        assert at_lr < final_loss(lr * 10), rule


# --- audit 86: the rules, the inputs and the restore --------------------------------------------


def test_steepest_is_never_the_minimum_itself():
    """Before: the slopes were taken on the slice ending at the minimum, so the minimum got a
    backward difference (its steep fall from the point before) and won, though the loss turns up
    there; the central slope puts the steepest fall one point before it."""
    lrs = list(np.geomspace(1e-5, 1.0, 16))
    curve = [2.30, 2.30, 2.30, 2.29, 2.28, 2.26, 2.22, 2.15, 2.05, 1.95, 1.85, 1.80, 1.20, 1.90,
             3.0, 5.0]  # fmt: skip
    # central differences in log lr (uniform spacing h): (curve[i+1] - curve[i-1]) / 2h; the
    # largest fall among indices 5..11 is at 11: 1.20 - 1.85 = -0.65
    assert suggest(lrs, curve, skip_start=5)["steepest"].lr == lrs[11]


def test_a_negative_loss_is_not_reported_as_diverged():
    """Before: 'smoothed > threshold * best' inverts for best < 0 (a Gaussian NLL of a good fit):
    a constant loss of -3 diverged at the second update."""
    model = torch.nn.Linear(6, 3)

    def negative(outputs, _targets):
        return 0.0 * outputs.sum() - 3.0

    result = lr_range_test(
        model, torch.optim.SGD(model.parameters()), negative, _data(), num_iter=12,
        curvature_batches=0,
    )  # fmt: skip
    assert result.diverged_lr is None
    assert len(result.lrs) == 12


def test_divergence_of_a_negative_loss_is_measured_by_its_size():
    """best = -1, threshold 4: stop once the smoothed loss is more than 3 * |best| above it."""
    values = iter([-1.0, -1.0, 1.5, 2.5, 9.0, 9.0])  # smoothing 0: the raw values
    model = torch.nn.Linear(6, 3)

    def scripted(outputs, _targets):
        return 0.0 * outputs.sum() + next(values)

    result = lr_range_test(
        model, torch.optim.SGD(model.parameters()), scripted, _data(), num_iter=6, smoothing=0.0,
        curvature_batches=0,
    )  # fmt: skip
    assert result.losses == [-1.0, -1.0, 1.5, 2.5]  # 2.5 - (-1) = 3.5 > 3: stopped there
    assert result.diverged_lr == result.lrs[3]


class _TwoHeads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(6, 3), torch.nn.Linear(6, 3)

    def forward(self, x):
        return self.a(x), self.b(x)


def _two_heads_loss(outputs, targets):
    return sum(torch.nn.functional.cross_entropy(out, targets) for out in outputs)


@pytest.mark.parametrize("validation", [False, True])
def test_a_model_whose_output_is_not_a_tensor_runs_without_accuracy(validation):
    """Before: the accuracy was computed whatever ``accuracy`` said: AttributeError on a tuple."""
    torch.manual_seed(0)
    model = _TwoHeads()
    result = lr_range_test(
        model, torch.optim.SGD(model.parameters()), _two_heads_loss, _data(), num_iter=5,
        val_data=_data() if validation else None,
    )  # fmt: skip
    assert len(result.lrs) == 5
    assert result.accuracies is None


def test_accuracy_of_a_model_whose_output_is_not_a_tensor_is_an_error_naming_it():
    model = _TwoHeads()
    with pytest.raises(TypeError, match=r"accuracy=True.*tuple"):
        lr_range_test(
            model, torch.optim.SGD(model.parameters()), _two_heads_loss, _data(), num_iter=5,
            accuracy=True, curvature_batches=0,
        )  # fmt: skip


def test_the_optimizers_own_tensors_are_restored_in_place():
    """Before: the optimizer's state dict was loaded back, so a tensor lr (and every state
    tensor) became a copy, and the tensor the optimizer was built with kept the sweep's last
    rate (1.0)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    lr = torch.tensor(0.01)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = _data()[0]
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    state = {p: dict(entry) for p, entry in optimizer.state.items()}
    saved = {p: {k: v.clone() for k, v in entry.items()} for p, entry in state.items()}
    lr_range_test(
        model, optimizer, torch.nn.functional.cross_entropy, _data(), start_lr=1e-4, end_lr=1.0,
        num_iter=8, curvature_batches=0,
    )  # fmt: skip
    assert optimizer.param_groups[0]["lr"] is lr
    assert lr.item() == pytest.approx(0.01)
    for p, entry in state.items():
        assert optimizer.state[p].keys() == entry.keys()
        for key, tensor in entry.items():
            assert optimizer.state[p][key] is tensor
            assert torch.equal(tensor, saved[p][key])


class _Counting(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(6, 3)
        self.register_buffer("calls", torch.zeros(()), persistent=False)

    def forward(self, x):
        self.calls += 1
        return self.linear(x)


def test_non_persistent_buffers_and_gradients_are_restored():
    """Before: the model's state dict was loaded back: a non-persistent buffer kept the sweep's
    count, and the gradients the model held were dropped."""
    torch.manual_seed(0)
    model = _Counting()
    x, y = _data()[0]
    torch.nn.functional.cross_entropy(model(x), y).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    saved = {name: g.clone() for name, g in grads.items()}
    lr_range_test(
        model, torch.optim.SGD(model.parameters()), torch.nn.functional.cross_entropy, _data(),
        num_iter=6, curvature_batches=1,
    )  # fmt: skip
    assert model.calls.item() == 1.0
    for name, p in model.named_parameters():
        assert p.grad is grads[name]
        assert torch.equal(p.grad, saved[name])


def test_a_one_shot_iterator_is_cycled_over_its_first_pass():
    """Before: a generator of 4 batches was reported 'empty' when the sweep came back to it."""
    data = _data(batches=4)
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    from_list = lr_range_test(
        model, torch.optim.SGD(model.parameters()), torch.nn.functional.cross_entropy, data,
        num_iter=10, curvature_batches=0,
    )  # fmt: skip
    from_generator = lr_range_test(
        model, torch.optim.SGD(model.parameters()), torch.nn.functional.cross_entropy,
        (batch for batch in data), num_iter=10, curvature_batches=0,
    )  # fmt: skip
    assert from_generator.losses == from_list.losses


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("num_iter", np.int64(12)),
        ("curvature_batches", np.int64(1)),
        ("smoothing", np.float32(0.5)),
        ("start_lr", np.float32(1e-4)),
        ("end_lr", np.float64(1.0)),
        ("diverge_threshold", np.float32(4.0)),
        ("skip_start", np.int64(2)),
    ],
)
def test_numpy_scalars_are_taken(key, value):
    """Before: np.int64 / np.float32 values in range were refused as out of range."""
    model = _network()
    options = {"start_lr": 1e-4, "end_lr": 1.0, "num_iter": 12, "curvature_batches": 0}
    result = lr_range_test(
        model, optim.SGD(model.parameters()), torch.nn.functional.cross_entropy, _data(),
        **{**options, key: value},
    )  # fmt: skip
    assert len(result.lrs) == 12


@pytest.mark.parametrize(
    ("value", "error"),
    [(-1, ValueError), (2.5, ValueError), ("5", TypeError), (None, TypeError)],
)
def test_skip_start_is_checked_before_the_sweep(value, error):
    """Before: never checked; -3 gave an IndexError after the sweep, '5' a TypeError from a
    comparison, 2.5 silently no 'steepest'."""
    model = _network()

    def never_called(*_):
        raise AssertionError("the sweep ran")

    with pytest.raises(error, match=r"skip_start must be an integer in \[0, .*skip_start="):
        lr_range_test(model, optim.SGD(model.parameters()), never_called, _data(), skip_start=value)


def test_num_iter_has_an_upper_bound():
    """Before: num_iter=10**12 passed the checks and failed allocating 7 TiB (MemoryError)."""
    model = _network()
    with pytest.raises(ValueError, match=r"num_iter must be an integer in \[2, 10000000\]"):
        lr_range_test(model, optim.SGD(model.parameters()), _value, _data(), num_iter=10**12)


def test_steepest_near_the_start_searches_the_two_points_before_the_minimum():
    """The documented shrink: with the minimum at index 4 < skip_start + 2, the search runs over
    indices 2 and 3 (the two points before the minimum)."""
    lrs = list(np.geomspace(1e-4, 1, 12))
    curve = [1.0, 0.99, 0.7, 0.3, 0.2, 0.5, 0.9, 1.2, 1.5, 2.0, 2.5, 3.0]
    # central differences: index 2: 0.3 - 0.99 = -0.69; index 3: 0.2 - 0.7 = -0.5
    assert suggest(lrs, curve, skip_start=5)["steepest"].lr == lrs[2]
    assert "steepest" not in suggest(lrs, [1.0, 0.2, *curve[5:]], skip_start=5)  # minimum at 1
