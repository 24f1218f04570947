"""Stop-91 mutation audit of runs.trainer: evaluation averaging, eval_train_examples, the
"epoch" evaluation cadence with a partial last batch, and the epoch schedule clock with an
eval_every that is not the epoch length. Every expected value comes from a plain loop or a
one-shot torch computation written here, not from the runner's output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runs.data import dataset_from
from runs.load import parse_experiment
from runs.models import build_model
from runs.trainer import evaluate, train_run

# (the tests register datasets or models: the registries are restored after each)
pytestmark = pytest.mark.usefixtures("clean_registries")

N_TRAIN, N_TEST, FEATURES, CLASSES = 250, 60, 6, 3
BASE_LR, GAMMA, MILESTONES = 0.2, 0.5, (1, 2)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN + N_TEST, FEATURES, generator=g)
    y = torch.randint(0, CLASSES, (N_TRAIN + N_TEST,), generator=g)
    x[:30] += 3.0  # the first 30 training examples differ from the rest
    y[:30] = 0
    return dataset_from(x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:], num_classes=CLASSES)


def _variant(train: dict, schedules: dict | None = None):
    raw = {
        "dataset": {"name": "mnist1d"},  # (the splits are passed to train_run directly)
        "model": {"name": "logistic"},
        "train": train,
        "logging": {"flush_every": 1000, "stats_every": 1000, "checkpoint_every": 1000},
        "optimizer": {"name": "torch.sgd", "lr": BASE_LR},
        "variants": [{"name": "v"}],
    }
    if schedules is not None:
        raw["optimizer"] = {"name": "torch.sgd"}
        raw["schedules"] = schedules
    return parse_experiment(raw, "test.toml").variants[0]


def test_evaluate_averages_over_examples_not_over_its_batches_of_1000():
    """2500 examples are evaluated in batches of 1000, 1000 and 500: the loss is the mean over
    the 2500 examples, (1/N) sum_i l_i, and the accuracy the fraction of the 2500, computed here
    in one shot (a mean of the three batch means would weigh the last 500 examples double)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    x, y = torch.randn(2500, 5), torch.randint(0, 3, (2500,))
    x[2000:] *= 10.0  # the last, short batch has much larger losses
    loss, accuracy = evaluate(model, x, y)
    with torch.no_grad():
        logits = model(x).double()
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert accuracy == pytest.approx((logits.argmax(1) == y).double().mean().item(), abs=1e-12)


def test_eval_train_examples_measures_the_first_n_training_examples(data, tmp_path):
    train = {"steps": 1, "batch_size": 50, "eval_every": 1, "eval_train_examples": 30}
    result = train_run(_variant(train), 4, data, tmp_path)
    torch.manual_seed(4)  # the runner's documented initialisation: the model after manual_seed
    model = build_model("logistic", (FEATURES,), CLASSES)
    with torch.no_grad():
        logits = model(data.train_x[:30]).double()
    evals = result["history"]["eval"]
    assert evals["step"][0] == 0
    assert evals["train_loss"][0] == pytest.approx(
        F.cross_entropy(logits, data.train_y[:30]).item(), rel=1e-6
    )
    assert evals["train_accuracy"][0] == pytest.approx(
        (logits.argmax(1) == data.train_y[:30]).double().mean().item(), abs=1e-12
    )


def test_eval_every_epoch_counts_the_partial_last_batch(data, tmp_path):
    """250 examples in batches of 100: ceil(250 / 100) = 3 updates per epoch (the last of 50),
    so two epochs evaluate at 0, 3 and 6."""
    train = {"epochs": 2, "batch_size": 100, "eval_every": "epoch"}
    result = train_run(_variant(train), 0, data, tmp_path)
    assert result["history"]["eval"]["step"] == [0, 3, 6]


def _plain_loop(data, seed: int, epochs: int, batch: int):
    """SGD written by hand: model after manual_seed(seed); epoch e's order from randperm with a
    generator seeded by SeedSequence([seed, e]); the rate of epoch e set before its first update
    by torch's MultiStepLR rule (base * gamma ** #milestones <= e)."""
    torch.manual_seed(seed)
    model = build_model("logistic", (FEATURES,), CLASSES)
    n = len(data.train_x)
    for e in range(epochs):
        lr = BASE_LR * GAMMA ** sum(e >= m for m in MILESTONES)
        seed_e = int(np.random.SeedSequence([seed, e]).generate_state(1)[0])
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed_e))
        for k in range(math.ceil(n / batch)):
            index = order[k * batch : (k + 1) * batch]
            loss = F.cross_entropy(model(data.train_x[index]), data.train_y[index])
            model.zero_grad()
            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= lr * p.grad
    return model


def test_epoch_clock_steps_the_schedule_at_epoch_ends_whatever_eval_every(data, tmp_path):
    """schedule_unit = "epoch", 3 updates per epoch, eval_every = 2 (not the epoch length): the
    rate changes after updates 3 and 6 only, as in the plain loop."""
    train = {"epochs": 3, "batch_size": 100, "eval_every": 2, "schedule_unit": "epoch"}
    schedules = {"lr": {"name": "multistep", "base_lr": BASE_LR,
                        "milestones": list(MILESTONES), "gamma": GAMMA}}  # fmt: skip
    result = train_run(_variant(train, schedules), 1, data, tmp_path)
    assert result["status"] == "finished"
    reference = _plain_loop(data, 1, epochs=3, batch=100)
    from runs.checkpoint import load_checkpoint

    final = load_checkpoint(tmp_path)["model"]
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(final[name], value, rtol=1e-5, atol=1e-6)


class _InfLoss(torch.nn.Module):
    """One input x in [2, 3]: logits z0 = 1e38 x, z1 = -1e38 x, both finite in float32 (max
    3.4e38); with label 1 the cross-entropy -log_softmax(z)_1 = (z0 - z1) + log(1 + e^(z1-z0))
    = 2e38 x >= 4e38 overflows float32 to +inf (not NaN) at the first update."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.lin = torch.nn.Linear(input_shape[0], 2, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[1.0] * input_shape[0], [-1.0] * input_shape[0]]))

    def forward(self, x):
        return self.lin(x) * 1e38


def test_an_infinite_mini_batch_loss_stops_the_cpu_run_at_that_update(tmp_path):
    from runs import models as runs_models

    runs_models.register_model("m91-inf", _InfLoss, replace=True)
    x = torch.rand(40, 1) + 2.0
    y = torch.ones(40, dtype=torch.int64)
    splits = dataset_from(x[:30], y[:30], x[30:], y[30:], num_classes=2)
    raw = {
        "dataset": {"name": "mnist1d"}, "model": {"name": "m91-inf"},
        "train": {"steps": 5, "batch_size": 10, "eval_every": 1},
        "logging": {"flush_every": 50, "stats_every": 50, "checkpoint_every": 50},
        "optimizer": {"name": "torch.sgd", "lr": 0.1}, "variants": [{"name": "v"}],
    }  # fmt: skip
    result = train_run(parse_experiment(raw, "t.toml").variants[0], 0, splits, tmp_path)
    assert result["status"] == "diverged"
    assert result["diverged"] == {"step": 0, "value": "inf"}
    # on the CPU the run stops at that update, before its parameters change (train_run's doc)
    assert result["history"]["train_loss"]["value"] == [math.inf]
    assert result["history"]["eval"]["step"] == [0]


def test_diverged_at_end_checks_the_training_loss_first():
    """train_run's doc: the last evaluation's training or test loss, checked in that order."""
    from runs.trainer import diverged_at_end

    step, value = diverged_at_end(
        {"step": [0, 5], "train_loss": [1.0, math.nan], "test_loss": [1.0, math.inf]}
    )
    assert step == 5
    assert math.isnan(value)


def test_best_is_the_lowest_loss_and_highest_accuracy_and_shuffle_false_keeps_the_order(
    data, tmp_path
):
    train = {"steps": 4, "batch_size": 100, "eval_every": 1, "shuffle": False}
    result = train_run(_variant(train), 2, data, tmp_path)
    evals = result["history"]["eval"]
    for name in ("train_loss", "test_loss"):
        assert result["best"][name] == min(evals[name])
    for name in ("train_accuracy", "test_accuracy"):
        assert result["best"][name] == max(evals[name])
    # shuffle = false: update 0 takes the first 100 examples in storage order (hand loss)
    torch.manual_seed(2)
    model = build_model("logistic", (FEATURES,), CLASSES)
    with torch.no_grad():
        first = F.cross_entropy(model(data.train_x[:100]), data.train_y[:100]).item()
    assert result["history"]["train_loss"]["value"][0] == pytest.approx(first, rel=1e-6)
