"""The training loop against a plain loop written here, its event files, divergence and resume."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from runs.checkpoint import load_checkpoint
from runs.data import load_dataset
from runs.load import parse_experiment
from runs.models import build_model
from runs.spec import Optimizer
from runs.trainer import train_run
from tests.runs.helpers import (
    TINY,
    batch_norm_mlp,
    statistics_recomputed_at,
    write_toml,
)

STEPS, BATCH, EVAL_EVERY, STATS_EVERY = 24, 400, 10, 5
MILESTONES, BASE_LR, GAMMA = (1, 2), 0.2, 0.5


def _variant(**train):
    raw = {
        "dataset": {"name": "mnist1d"},
        "model": {"name": "mlp", "hidden": 8},
        "train": {
            "steps": STEPS,
            "batch_size": BATCH,
            "eval_every": EVAL_EVERY,
            "schedule_unit": "epoch",
            **train,
        },
        "logging": {"flush_every": 7, "stats_every": STATS_EVERY, "checkpoint_every": 10},
        "optimizer": {"name": "torch.sgd", "momentum": 0.5},
        "schedules": {
            "lr": {
                "name": "multistep",
                "base_lr": BASE_LR,
                "milestones": list(MILESTONES),
                "gamma": GAMMA,
            }
        },
        "variants": [{"name": "v"}],
    }
    return parse_experiment(raw, "test.toml").variants[0]


def _lr_of_epoch(epoch: int) -> float:
    """torch's MultiStepLR rule, written from its documentation."""
    return BASE_LR * GAMMA ** sum(epoch >= m for m in MILESTONES)


def _reference(data, seed: int):
    """The same training written as a plain loop: model seeded by ``seed``, epoch ``e``'s batches
    from ``randperm`` with a generator seeded by ``SeedSequence([seed, e])`` (the runner's
    documented convention), the learning rate set at the start of each epoch."""
    torch.manual_seed(seed)
    model = build_model("mlp", data.input_shape, data.num_classes, hidden=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=BASE_LR, momentum=0.5)
    n = len(data.train_x)
    per_epoch = math.ceil(n / BATCH)
    losses, grad_norms, ratios = [], [], []
    for step in range(STEPS):
        epoch, k = divmod(step, per_epoch)
        if k == 0:
            seed_e = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed_e))
            for group in optimizer.param_groups:
                group["lr"] = _lr_of_epoch(epoch)
        index = order[k * BATCH : (k + 1) * BATCH]
        loss = F.cross_entropy(model(data.train_x[index]), data.train_y[index])
        optimizer.zero_grad()
        loss.backward()
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        grad = torch.cat([p.grad.flatten() for p in model.parameters()])
        optimizer.step()
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        losses.append(loss.item())
        grad_norms.append(grad.norm().item())
        ratios.append(((after - before).norm() / before.norm()).item())
    with torch.no_grad():
        logits = model(data.test_x)
        test_accuracy = (logits.argmax(1) == data.test_y).double().mean().item()
        test_loss = F.cross_entropy(logits, data.test_y).item()
    return model, losses, grad_norms, ratios, test_accuracy, test_loss


@pytest.fixture(scope="module")
def data(mnist1d_cache):
    return load_dataset("mnist1d")


def test_runner_equals_a_plain_loop_and_logs_what_it_did(data, tmp_path):
    variant = _variant()
    result = train_run(variant, 3, data, tmp_path)
    model, losses, grad_norms, ratios, test_accuracy, test_loss = _reference(data, 3)

    final = load_checkpoint(tmp_path)["model"]
    for name, value in model.state_dict().items():
        assert torch.equal(final[name], value), name
    assert result["status"] == "finished"
    assert result["final"]["test_accuracy"] == pytest.approx(test_accuracy, abs=1e-12)
    assert result["final"]["test_loss"] == pytest.approx(test_loss, rel=1e-5)

    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    events.Reload()
    scalars = {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}
    loss_events = scalars["train/loss"]
    assert [e.step for e in loss_events] == list(range(STEPS))
    np.testing.assert_allclose([e.value for e in loss_events], losses, rtol=1e-6)
    assert [e.step for e in scalars["eval/test_accuracy"]] == [0, 10, 20, 24]
    assert scalars["eval/test_accuracy"][-1].value == pytest.approx(test_accuracy, abs=1e-6)
    for tag in ("eval/train_loss", "eval/train_accuracy", "eval/test_loss"):
        assert len(scalars[tag]) == 4
    lr = scalars["hyper/lr/group0"]
    assert [e.step for e in lr] == [0, 10, 20]  # once per epoch of 10 updates
    np.testing.assert_allclose(
        [e.value for e in lr], [_lr_of_epoch(e) for e in range(3)], rtol=1e-6
    )
    stats_steps = list(range(STATS_EVERY - 1, STEPS, STATS_EVERY))
    assert [e.step for e in scalars["stats/grad_norm"]] == stats_steps
    np.testing.assert_allclose(
        [e.value for e in scalars["stats/grad_norm"]],
        [grad_norms[s] for s in stats_steps],
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        [e.value for e in scalars["stats/update_ratio"]],
        [ratios[s] for s in stats_steps],
        rtol=1e-4,
    )
    assert scalars["hparams/test_accuracy"][-1].value == pytest.approx(test_accuracy, abs=1e-6)
    hparams = events.PluginTagToContent("hparams")
    assert {"_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(hparams)
    assert "_hparams_/experiment" not in hparams  # one per experiment, in its own folder
    assert b"optimizer.momentum" in hparams["_hparams_/session_start_info"]


def test_same_seed_same_numbers_other_seed_other_numbers(data, tmp_path):
    variant = _variant(steps=12)
    first = train_run(variant, 0, data, tmp_path / "a")
    again = train_run(variant, 0, data, tmp_path / "b")
    other = train_run(variant, 1, data, tmp_path / "c")
    assert first["history"] == again["history"]
    assert first["history"]["train_loss"] != other["history"]["train_loss"]


def test_non_finite_loss_stops_the_run_and_reports_where(data, tmp_path):
    variant = dataclasses.replace(
        _variant(), schedules={}, optimizer=Optimizer("torch.sgd", {"lr": 1e6})
    )
    result = train_run(variant, 0, data, tmp_path)
    assert result["status"] == "diverged"
    step, value = result["diverged"]["step"], result["diverged"]["value"]
    losses = result["history"]["train_loss"]["value"]
    first_bad = next(i for i, v in enumerate(losses) if not math.isfinite(v))
    assert (step, math.isfinite(float(value))) == (first_bad, False)  # a string: "nan", "inf"
    assert len(losses) == first_bad + 1  # stopped there (on the CPU: at that update)
    assert all(v is None for v in result["final"].values())  # no numbers for a diverged run
    assert (tmp_path / "result.json").is_file()


def dropout_mlp(input_shape, num_classes):
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(input_shape[0], 16),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(16, num_classes),
    )


def _closure_reference(data, seed: int, make_optimizer, steps: int):
    """torch's documented ``step(closure)`` loop on the runner's batches (first epoch, seeded by
    ``SeedSequence([seed, 0])``), with the runner's stated convention that every evaluation of
    one step starts from the random state the step started from (one dropout mask per step)."""
    torch.manual_seed(seed)
    model = dropout_mlp(data.input_shape, data.num_classes)
    optimizer = make_optimizer(model.parameters())
    seed_0 = int(np.random.SeedSequence([seed, 0]).generate_state(1)[0])
    order = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(seed_0))
    losses = []
    for k in range(steps):
        index = order[k * BATCH : (k + 1) * BATCH]
        start = torch.get_rng_state()
        evaluations = []

        def closure(index=index, start=start, evaluations=evaluations):
            torch.set_rng_state(start)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(data.train_x[index]), data.train_y[index])
            loss.backward()
            evaluations.append(loss.item())
            return loss

        optimizer.step(closure)
        losses.append(evaluations[0])
        torch.set_rng_state(start)  # as after the step's first forward pass
        model(data.train_x[index])
    return model, losses


@pytest.mark.parametrize(
    ("name", "options", "make_optimizer"),
    [
        (
            "torch.optim.LBFGS",
            {"lr": 0.5, "max_iter": 4},
            lambda ps: torch.optim.LBFGS(ps, lr=0.5, max_iter=4),
        ),
        ("optim.SPS", {}, lambda ps: __import__("optim").SPS(ps)),
        ("optim.SLS", {"n_batches_per_epoch": 5}, lambda ps: __import__("optim").SLS(ps, 5)),
    ],
    ids=["LBFGS", "SPS", "SLS"],
)
def test_optimizers_that_evaluate_the_loss_again_train_as_in_their_own_loop(
    data, tmp_path, name, options, make_optimizer
):
    from runs import models as runs_models

    saved = dict(runs_models._REGISTERED)
    runs_models.register_model("dropout-mlp", dropout_mlp)
    try:
        variant = dataclasses.replace(
            _variant(steps=5),
            model=dataclasses.replace(_variant().model, name="dropout-mlp", options={}),
            schedules={},
            optimizer=Optimizer(name, options),
        )
        result = train_run(variant, 2, data, tmp_path)
    finally:
        runs_models._REGISTERED.clear()
        runs_models._REGISTERED.update(saved)
    model, losses = _closure_reference(data, 2, make_optimizer, 5)

    assert result["status"] == "finished"
    final = load_checkpoint(tmp_path)["model"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(final[key], value, rtol=1e-6, atol=1e-7, msg=key)
    np.testing.assert_allclose(result["history"]["train_loss"]["value"], losses, rtol=1e-6)


SCHEDULE_FREE = pytest.mark.parametrize(
    ("name", "make_optimizer"),
    [
        ("optim.SGDScheduleFree", lambda ps, lr: __import__("optim").SGDScheduleFree(ps, lr=lr)),
        (
            "schedulefree.AdamWScheduleFree",
            lambda ps, lr: __import__("schedulefree").AdamWScheduleFree(ps, lr=lr),
        ),
    ],
    ids=["ours", "package"],
)


def _schedule_free_loop(model, optimizer, data, seed: int, steps: int, eval_every: int, evaluate):
    """The schedulefree README's loop on the runner's batches (epoch ``e`` from ``randperm``
    seeded by ``SeedSequence([seed, e])``): ``optimizer.train()`` before each training step,
    ``evaluate(step)`` at step 0, every ``eval_every`` updates and at the end (the callback
    switches to eval mode)."""
    per_epoch = math.ceil(len(data.train_x) / BATCH)
    optimizer.train()
    evaluate(0)
    for k in range(steps):
        optimizer.train()
        epoch, j = divmod(k, per_epoch)
        seed_e = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
        order = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(seed_e))
        index = order[j * BATCH : (j + 1) * BATCH]
        loss = F.cross_entropy(model(data.train_x[index]), data.train_y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (k + 1) % eval_every == 0 or k + 1 == steps:
            evaluate(k + 1)


@SCHEDULE_FREE
def test_schedule_free_trains_at_y_and_is_evaluated_and_saved_at_its_average(
    data, tmp_path, name, make_optimizer
):
    """The schedulefree README's loop: ``optimizer.train()`` before training steps,
    ``optimizer.eval()`` before each evaluation and before saving the final model."""
    steps, eval_every = 12, 5
    variant = dataclasses.replace(
        _variant(steps=steps, eval_every=eval_every),
        schedules={},
        optimizer=Optimizer(name, {"lr": 0.5}),
    )
    result = train_run(variant, 4, data, tmp_path)

    torch.manual_seed(4)
    model = build_model("mlp", data.input_shape, data.num_classes, hidden=8)
    optimizer = make_optimizer(model.parameters(), 0.5)
    test_losses = []

    def evaluate(step):
        optimizer.eval()
        with torch.no_grad():
            test_losses.append(F.cross_entropy(model(data.test_x), data.test_y).item())

    _schedule_free_loop(model, optimizer, data, 4, steps, eval_every, evaluate)

    assert result["history"]["eval"]["step"] == [0, 5, 10, 12]
    np.testing.assert_allclose(result["history"]["eval"]["test_loss"], test_losses, rtol=1e-5)
    final = load_checkpoint(tmp_path)
    for key, value in model.state_dict().items():  # the average x, as after optimizer.eval()
        torch.testing.assert_close(final["model"][key], value, rtol=1e-6, atol=1e-7, msg=key)


@SCHEDULE_FREE
def test_schedule_free_evaluates_batch_norm_with_statistics_of_its_average(
    data, tmp_path, name, make_optimizer
):
    """A model with batch norm under a Schedule-Free optimizer: each evaluation after training
    started uses running statistics recomputed at the averaged point x (collected in training
    at y, they belong to another point), training goes on as if no evaluation had happened,
    and the final checkpoint holds x with x's statistics. Before, the runner evaluated x with
    y's statistics. (The model has dropout: the recomputation must leave the random state of
    the training that follows as it was.)"""
    from runs import models as runs_models

    steps, eval_every, lr = 12, 5, 0.5 if name.startswith("optim") else 0.05
    saved = dict(runs_models._REGISTERED)
    runs_models.register_model("batch-norm-mlp", batch_norm_mlp)
    try:
        variant = dataclasses.replace(
            _variant(steps=steps, eval_every=eval_every),
            model=dataclasses.replace(_variant().model, name="batch-norm-mlp", options={}),
            schedules={},
            optimizer=Optimizer(name, {"lr": lr}),
        )
        result = train_run(variant, 4, data, tmp_path)
    finally:
        runs_models._REGISTERED.clear()
        runs_models._REGISTERED.update(saved)

    torch.manual_seed(4)
    model = batch_norm_mlp(data.input_shape, data.num_classes)
    optimizer = make_optimizer(model.parameters(), lr)
    test_losses, stale_losses, probes = [], [], [model]

    def loss_of(net):
        with torch.no_grad():
            return F.cross_entropy(net(data.test_x), data.test_y).item()

    def evaluate(step):
        optimizer.eval()
        if step > 0:  # (step 0: the initial statistics, as under any optimizer)
            probes.append(statistics_recomputed_at(model, data, BATCH, seed=4))
            model.eval()
            stale_losses.append(loss_of(model))
        probes[-1].eval()
        test_losses.append(loss_of(probes[-1]))
        model.train()

    _schedule_free_loop(model, optimizer, data, 4, steps, eval_every, evaluate)

    assert result["history"]["eval"]["step"] == [0, 5, 10, 12]
    logged = result["history"]["eval"]["test_loss"]
    np.testing.assert_allclose(logged, test_losses, rtol=1e-5)
    assert abs(stale_losses[-1] - test_losses[-1]) > 1e-3 * abs(test_losses[-1])  # (it matters)
    final = load_checkpoint(tmp_path)["model"]
    for key, value in probes[-1].state_dict().items():  # x, with the statistics recomputed there
        torch.testing.assert_close(final[key], value, rtol=1e-6, atol=1e-7, msg=key)


def test_an_evaluation_gives_back_the_batch_norm_statistics_collected_in_training(data):
    """``evaluation_mode`` with ``then_train``: inside, x's recomputed statistics; afterwards the
    parameters at y again and the running statistics of y exactly as before the evaluation;
    with an optimizer that has no eval mode, nothing is recomputed."""
    import optim
    from runs.build import evaluation_mode

    torch.manual_seed(0)
    model = batch_norm_mlp(data.input_shape, data.num_classes)
    optimizer = optim.SGDScheduleFree(model.parameters(), lr=0.5)
    optimizer.train()
    for start in range(0, 3 * BATCH, BATCH):
        optimizer.zero_grad()
        x, y = data.train_x[start : start + BATCH], data.train_y[start : start + BATCH]
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    before = copy.deepcopy(model.state_dict())

    def inputs():  # (the first two training batches)
        return iter([data.train_x[:BATCH], data.train_x[BATCH : 2 * BATCH]])

    with evaluation_mode(optimizer, model=model, inputs=inputs):
        inside = copy.deepcopy(model.state_dict())
    for key, value in model.state_dict().items():  # (y -> x -> y: to rounding, as the package)
        if key.startswith("2.") and not key.endswith(("weight", "bias")):
            assert torch.equal(value, before[key]), key
        else:
            torch.testing.assert_close(value, before[key], rtol=1e-6, atol=1e-7, msg=key)
    optimizer.eval()
    expected = statistics_recomputed_at(model, data, BATCH, batches=2)
    for key, value in expected.state_dict().items():
        torch.testing.assert_close(inside[key], value, rtol=1e-6, atol=1e-7, msg=key)
    assert not torch.equal(inside["2.running_mean"], before["2.running_mean"])

    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    kept = copy.deepcopy(model.state_dict())
    with evaluation_mode(sgd, model=model, inputs=inputs):
        for key, value in model.state_dict().items():
            assert torch.equal(value, kept[key]), key


def test_a_learning_rate_free_optimizers_step_size_is_logged_after_every_update(data, tmp_path):
    """Prodigy through the runner: ``hyper/step_size/group0`` after update t is d * lr as the
    ``prodigyopt`` package's own loop holds it after update t."""
    prodigyopt = pytest.importorskip("prodigyopt")
    steps = 8
    variant = dataclasses.replace(
        _variant(steps=steps), schedules={}, optimizer=Optimizer("optim.Prodigy", {})
    )
    result = train_run(variant, 5, data, tmp_path)

    torch.manual_seed(5)
    model = build_model("mlp", data.input_shape, data.num_classes, hidden=8)
    optimizer = prodigyopt.Prodigy(model.parameters())
    seed_0 = int(np.random.SeedSequence([5, 0]).generate_state(1)[0])
    order = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(seed_0))
    expected = []
    for k in range(steps):
        index = order[k * BATCH : (k + 1) * BATCH]
        optimizer.zero_grad()
        F.cross_entropy(model(data.train_x[index]), data.train_y[index]).backward()
        optimizer.step()
        expected.append(optimizer.param_groups[0]["d"] * optimizer.param_groups[0]["lr"])

    logged = result["history"]["hyper"]["hyper/step_size/group0"]
    assert logged["step"] == list(range(steps))
    np.testing.assert_allclose(logged["value"], expected, rtol=1e-6)
    assert expected[-1] > 2 * expected[0]  # d grew: the values say something
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    events.Reload()
    written = events.Scalars("hyper/step_size/group0")
    np.testing.assert_allclose([e.value for e in written], expected, rtol=1e-6)


KILLER = """
import os, signal, sys
import runs.trainer as trainer
original, calls = trainer.eval_metrics, []
def eval_then_die(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:  # the evaluation at step 20: after the checkpoint of step 10
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)
trainer.eval_metrics = eval_then_die
from runs.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("name", ["optim.DoG", "optim.LDoG", "optim.Prodigy"])
def test_a_learning_rate_free_run_resumes_from_its_checkpoint(name, data, tmp_path):
    """A run's checkpoint holds the optimizer's state dict and is read back with
    ``torch.load(weights_only=True)``. DoG's and LDoG's ``state_dict()`` kept x_0 in a list
    subclass of the optimizer's, which that loader refuses, so a killed DoG run could not
    resume ("not a readable checkpoint"). The run resumed from its checkpoint ends where
    the run that was never stopped does (Prodigy: its estimate ``d`` lives in the param groups).
    The checkpoint is a finished 6-step run's, told to go on to step 12, which stands for a run
    killed at step 6 (a finished Schedule-Free run's checkpoint holds its averaged point, in eval
    mode, so it is not one that a killed run leaves)."""
    variant = dataclasses.replace(_variant(steps=6), schedules={}, optimizer=Optimizer(name, {}))
    train_run(variant, 3, data, tmp_path / "first")
    saved = load_checkpoint(tmp_path / "first")
    assert saved["step"] == 6
    longer = dataclasses.replace(variant, train=dataclasses.replace(variant.train, steps=12))
    never_stopped = train_run(longer, 3, data, tmp_path / "whole")
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    saved["fingerprint"] = longer.fingerprint(3)  # the same run, told to go on to step 12
    torch.save(saved, resumed_dir / "checkpoint.pt")
    resumed = train_run(longer, 3, data, resumed_dir)
    assert resumed["final"] == never_stopped["final"]
    a, b = load_checkpoint(resumed_dir)["model"], load_checkpoint(tmp_path / "whole")["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_killed_run_resumes_to_exactly_the_same_numbers(tmp_path, capsys):
    toml = write_toml(tmp_path / "tiny.toml")
    args = ["run", str(toml), "--variants", "plain", "--seeds", "1", "--quiet"]
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLER), *args, "--logdir", str(tmp_path / "k")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    run_dir = tmp_path / "k" / "tiny" / "plain" / "seed0"
    assert load_checkpoint(run_dir)["step"] == 10
    assert not (run_dir / "result.json").exists()

    from runs.cli import main

    assert main([*args, "--logdir", str(tmp_path / "k")]) == 0  # resumes
    assert "plain seed 0: resumed from step 10\n" in capsys.readouterr().out
    assert main([*args, "--logdir", str(tmp_path / "u")]) == 0  # never interrupted
    import json

    resumed = json.loads((run_dir / "result.json").read_text())
    clean = json.loads((tmp_path / "u" / "tiny" / "plain" / "seed0" / "result.json").read_text())
    assert resumed["final"] == clean["final"]
    assert resumed["history"] == clean["history"]
    a, b = load_checkpoint(run_dir), load_checkpoint(tmp_path / "u" / "tiny" / "plain" / "seed0")
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name])
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(24))


LOSS_READING = """
[[variants]]
name = "sps"
optimizer = {name = "optim.SPS"}

[[variants]]
name = "sls"
optimizer = {name = "optim.SLS", n_batches_per_epoch = 10}

[[variants]]
name = "lbfgs"
optimizer = {name = "torch.optim.LBFGS", lr = 0.5, max_iter = 4}
"""


REPORT = """
import json, sys
import torch.distributed as dist


def report(data):  # one JSON line to this rank's own file
    with open(f"{sys.argv[-1]}/rank{dist.get_rank()}.jsonl", "a") as file:
        file.write(json.dumps(data) + "\\n")
"""


def _torchrun_reports(tmp_path, script_text: str, *tomls) -> list[dict]:
    """``script_text`` run by ``torchrun`` on two CPU ranks with ``(*tomls, tmp_path / "logs",
    reports)`` as its arguments; the JSON lines the ranks wrote, each to its own file
    ``reports/rank{r}.jsonl`` (on one shared stdout, two ranks' lines could interleave)."""
    script = tmp_path / "script.py"
    script.write_text(REPORT + script_text)
    reports = tmp_path / "reports"
    reports.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}  # (torchrun's logs)
    ddp = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            str(script), *map(str, tomls), str(tmp_path / "logs"), str(reports),
        ],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    return [
        json.loads(line)
        for path in sorted(reports.glob("rank*.jsonl"))
        for line in path.read_text().splitlines()
    ]


SEARCH_THEN_TWO_CALLS = """
import json, sys, time
import torch.distributed as dist
import runs
from runs import checkpoint, tuning

save_json = checkpoint.save_json


def slow_save_json(path, data):  # rank 0 writes each run's result.json 1 s late
    if path.name == checkpoint.RESULT and dist.get_rank() == 0:
        time.sleep(1)
    save_json(path, data)


checkpoint.save_json = slow_save_json
choose = tuning._choose


def choose_and_report(experiment, by_variant):
    chosen, grid = choose(experiment, by_variant)
    report({"rank": dist.get_rank(), "chosen": chosen, "grid": grid})
    return chosen, grid


tuning._choose = choose_and_report
toml, searched, logdir = sys.argv[1], sys.argv[2], sys.argv[3]
runs.run(searched, logdir=logdir + "/searched", variants="plain", seeds=1)
first = runs.run(toml, logdir=logdir + "/first", variants="plain", seeds=1)
second = runs.run(toml, logdir=logdir + "/second", variants="momentum", seeds=1)
report({
    "rank": dist.get_rank(),
    "kept": dist.is_initialized(),
    "accuracies": [run["final"]["test_accuracy"] for run in first["runs"] + second["runs"]],
})
"""


@pytest.mark.slow
def test_under_torchrun_a_search_chooses_alike_and_runs_run_returns_on_every_rank(tmp_path):
    """One ``torchrun`` script (two CPU ranks), rank 0 writing each ``result.json`` 1 s late:

    - a learning-rate search's choice is made from every search run's result on every rank.
      Only rank 0 writes ``result.json``; with it slow to write, rank 1 read a grid whose last
      run was missing and chose another rate than rank 0, so the final runs trained each replica
      at its own rate. A run now ends on every rank only once its result is on disk.
    - ``runs.run`` called twice more: every rank returns the summary rank 0 wrote (each waits at
      a barrier until it is written; before, rank 1 read it at once and failed with
      ``FileNotFoundError``), the later calls use the process group the first made, and the
      script exits cleanly (the group is destroyed as the interpreter exits, see
      ``runs.parallel._leave_at_exit``).

    (Two tests before, each paying for a ``torchrun`` of its own.)"""
    search = '\n[search]\nlr = [0.05, 0.2]\nmetric = "train_loss"\nseed = 3\ntrain = {steps = 6}\n'
    searched = write_toml(
        tmp_path / "tinysearch.toml",
        TINY.replace('name = "tiny"', 'name = "tinysearch"') + search,
    )
    toml = write_toml(tmp_path / "tiny.toml", TINY)
    reports = _torchrun_reports(tmp_path, SEARCH_THEN_TWO_CALLS, toml, searched)
    searches = {report["rank"]: report for report in reports if "grid" in report}
    assert sorted(searches) == [0, 1]
    assert all(row["status"] != "missing" for row in searches[0]["grid"]["plain"])
    assert searches[1]["grid"] == searches[0]["grid"]
    assert searches[1]["chosen"] == searches[0]["chosen"]
    finals = [report for report in reports if "accuracies" in report]
    assert sorted(report["rank"] for report in finals) == [0, 1]
    assert all(report["kept"] for report in finals)
    written = [
        json.loads((tmp_path / "logs" / call / "tiny" / "summary.json").read_text())
        for call in ("first", "second")
    ]
    expected = [run["final"]["test_accuracy"] for summary in written for run in summary["runs"]]
    assert len(expected) == 2
    assert all(report["accuracies"] == expected for report in finals)


@pytest.mark.slow
def test_two_process_data_parallel_equals_one_process(tmp_path):
    """Also for optimizers that decide on the loss (SPS's step, SLS's line search, LBFGS): the
    closure gives them the global batch's loss on every rank. Before, SLS's ranks took different
    numbers of trials and their collectives stopped matching (gloo aborted), and SPS's replicas
    took different steps."""
    toml = write_toml(tmp_path / "tiny.toml", TINY + LOSS_READING)  # (a new name starts afresh)
    variants = ["momentum", "sps", "sls", "lbfgs"]
    common = ["run", str(toml), "--variants", ",".join(variants), "--seeds", "1", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}  # (torchrun's logs)
    ddp = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "runs", *common, "--logdir", str(tmp_path / "ddp"),
        ],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    from runs.cli import main

    assert main([*common, "--logdir", str(tmp_path / "one")]) == 0  # (one process: this one)
    for variant in variants:
        a = load_checkpoint(tmp_path / "ddp" / "tiny" / variant / "seed0")
        b = load_checkpoint(tmp_path / "one" / "tiny" / variant / "seed0")
        assert a["step"] == b["step"] == 24
        if variant == "lbfgs":  # chaotic on mini-batches: the averaged gradient's last bits
            losses = [run["history"]["train_loss"]["value"][:8] for run in (a, b)]
            np.testing.assert_allclose(*losses, rtol=1e-5)  # grow to 1e-4 by step 12
            continue
        for name in b["model"]:
            torch.testing.assert_close(
                a["model"][name], b["model"][name], rtol=1e-5, atol=1e-6, msg=variant
            )
    a = load_checkpoint(tmp_path / "ddp" / "tiny" / "momentum" / "seed0")
    b = load_checkpoint(tmp_path / "one" / "tiny" / "momentum" / "seed0")
    run_dir = tmp_path / "ddp" / "tiny" / "momentum" / "seed0"
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # only rank 0 writes events
    np.testing.assert_allclose(
        a["history"]["train_loss"]["value"], b["history"]["train_loss"]["value"], rtol=1e-5
    )
