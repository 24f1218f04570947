"""Audit 88 of the training loop: an empty data-parallel shard, a reduce-on-plateau on the epoch
clock, Schedule-Free batch-norm statistics over a shuffled order, NumPy scalars in a spec and
checkpoints that must read back, resume under other threads or another device type, and the
caller's torch thread count after ``runs.run``.

Expected values come from loops and formulas written here (torch's ``ReduceLROnPlateau``, the
gradient of the global batch's mean cross-entropy, the documented ``SeedSequence`` order), never
from the code under test."""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import runs
from runs.cli import main
from tests.runs.helpers import FASTEST

pytestmark = pytest.mark.usefixtures("clean_registries")

SEED = 0


def _blobs(n_train: int = 203, n_test: int = 77, dim: int = 8, classes: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=generator) * 1.5
    labels = torch.randint(0, classes, (n_train + n_test,), generator=generator)
    inputs = centers[labels] + torch.randn(n_train + n_test, dim, generator=generator)
    return runs.dataset_from(inputs[:n_train], labels[:n_train], inputs[n_train:], labels[n_train:])


class Net(nn.Module):
    """A small MLP, with batch norm when asked; its training forward passes (with gradients) are
    counted, and the ``armed``-th raises (an interrupted run)."""

    count = 0
    armed: int | None = None

    def __init__(self, input_shape, num_classes, hidden: int = 16, bn: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(), nn.Linear(input_shape[0], hidden)]
        if bn:
            layers.append(nn.BatchNorm1d(hidden))
        layers += [nn.ReLU(), nn.Linear(hidden, num_classes)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        if torch.is_grad_enabled():
            Net.count += 1
            if Net.armed is not None and Net.count >= Net.armed:
                raise RuntimeError("interrupted (a test)")
        return self.body(x)


@pytest.fixture(autouse=True)
def _disarmed():
    Net.count, Net.armed = 0, None
    yield
    Net.count, Net.armed = 0, None


def _variant(name="v", *, optimizer=None, model=None, dataset="blobs", **train):
    train = {"steps": 10, "batch_size": 32, "eval_every": 5, **train}
    return runs.Variant(
        name=name,
        dataset=runs.Dataset(dataset, normalize=False),
        model=model or runs.Model("net"),
        train=runs.Train(**train),
        optimizer=optimizer or runs.Optimizer("torch.optim.SGD", {"lr": 0.1}),
        logging=runs.Logging(checkpoint_every=3),
    )


def _run(variant, logdir, data=None, **options):
    """``runs.run`` of one variant and seed, the model ``net`` and the variant's dataset (``data``,
    else the blobs) registered first (again at each call: the fixture restores the registries)."""
    runs.register_model("net", Net, replace=True)
    runs.register_dataset(variant.dataset.name, data or _blobs(), replace=True)
    experiment = runs.Experiment(name="e", seeds=(SEED,), variants=(variant,))
    return runs.run(experiment, logdir=logdir, **options)


def _run_dir(logdir, variant="v") -> Path:
    return Path(logdir) / "e" / variant / f"seed{SEED}"


# ------------------------------------------------------------------ 1. an empty data-parallel shard
def _shards_by_hand(global_size: int):
    """Two ranks' losses of one global batch, as ``runs.trainer`` forms them (``batch[rank::2]``,
    scale ``len(local) * 2 / len(global)``), with each rank's gradients; and the reference: the
    global batch's mean cross-entropy and its gradient, on a copy of the model."""
    from runs.trainer import mini_batch_loss

    torch.manual_seed(1)
    model = Net((8,), 3)
    reference = Net((8,), 3)
    reference.load_state_dict(model.state_dict())
    data = _blobs()
    x, y = data.train_x[:global_size], data.train_y[:global_size]
    losses, grads = [], []
    for rank in range(2):
        local_x, local_y = x[rank::2], y[rank::2]
        model.zero_grad(set_to_none=True)
        loss = mini_batch_loss(model, local_x, local_y, len(local_y) * 2 / len(y))
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in model.parameters()])
    expected = F.cross_entropy(reference(x), y)
    expected.backward()
    return losses, grads, expected.detach(), [p.grad for p in reference.parameters()]


def test_an_empty_shard_adds_an_exact_zero_and_the_average_is_the_global_mean():
    """A global batch of one example over two ranks: rank 1's share is empty. Its loss was the
    mean of nothing, NaN, and the all-reduced loss NaN (the run marked diverged); it is now an
    exact 0 with zero gradients, so the ranks' average loss and DDP's average gradient are the
    global batch's mean cross-entropy and its gradient."""
    losses, grads, expected, expected_grads = _shards_by_hand(1)
    assert losses[1].item() == 0.0
    assert torch.isfinite(sum(losses) / 2)
    torch.testing.assert_close(sum(losses) / 2, expected, rtol=1e-6, atol=0)
    for g0, g1, want in zip(*grads, expected_grads, strict=True):
        assert torch.count_nonzero(g1) == 0
        torch.testing.assert_close((g0 + g1) / 2, want, rtol=1e-5, atol=1e-7)


def test_a_non_empty_shard_keeps_its_arithmetic():
    """Shards of 2 and 1 examples: the loss is still ``scale * mean`` (its bits unchanged), and
    the ranks' averages are the global mean and its gradient."""
    from runs.trainer import mini_batch_loss

    losses, grads, expected, expected_grads = _shards_by_hand(3)
    torch.testing.assert_close(sum(losses) / 2, expected, rtol=1e-6, atol=0)
    for g0, g1, want in zip(*grads, expected_grads, strict=True):
        torch.testing.assert_close((g0 + g1) / 2, want, rtol=1e-5, atol=1e-7)
    torch.manual_seed(2)
    model, data = Net((8,), 3), _blobs()
    x, y = data.train_x[:5], data.train_y[:5]
    by_hand = F.cross_entropy(model(x), y) * (3 * 2 / 5)
    assert torch.equal(mini_batch_loss(model, x, y, 3 * 2 / 5), by_hand)


EMPTY_SHARD = """
name = "ddpshard"
seeds = 1
[dataset]
name = "mnist1d"
train_examples = 401
test_examples = 99
[model]
name = "mlp"
hidden = 8
[train]
epochs = 2
batch_size = 100
eval_every = 2
[optimizer]
name = "torch.sgd"
lr = 0.1
[[variants]]
name = "plain"
"""


@pytest.mark.slow
def test_torchrun_with_an_empty_shard_finishes_as_one_process(tmp_path):
    """401 training examples in batches of 100: each epoch's last batch holds one example, and
    rank 1 of 2 gets none. Under ``torchrun`` the run was reported diverged at step 4 (loss
    NaN); it now finishes with the numbers of one process."""
    toml = tmp_path / "shard.toml"
    toml.write_text(EMPTY_SHARD)
    import optim
    import schedulers

    # the packages this test imported, in both processes (not an installed copy elsewhere)
    roots = [str(Path(m.__file__).resolve().parents[1]) for m in (runs, schedulers, optim)]
    root = roots[0]
    path = os.pathsep.join(dict.fromkeys(p for p in (*roots, os.environ.get("PYTHONPATH")) if p))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path), "PYTHONPATH": path}
    common = ["-m", "runs", "run", str(toml), "--quiet", "--logdir"]
    ddp = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            *common, str(tmp_path / "ddp"),
        ],
        capture_output=True, text=True, timeout=300, env=env, cwd=root,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert main([*common[2:], str(tmp_path / "one")]) == 0  # (one process: this one)
    results = [
        json.loads((tmp_path / kind / "ddpshard" / "plain" / "seed0" / "result.json").read_text())
        for kind in ("ddp", "one")
    ]
    assert [r["status"] for r in results] == ["finished", "finished"]
    losses = [r["history"]["train_loss"]["value"] for r in results]
    assert len(losses[0]) == 10
    np.testing.assert_allclose(*losses, rtol=1e-5)
    for name in ("test_loss", "train_loss"):
        assert results[0]["final"][name] == pytest.approx(results[1]["final"][name], rel=1e-5)


# --------------------------------------------------------------- 2. a plateau on the epoch clock
def _plateau(**train):
    import schedulers as S

    plateau = S.reduce_on_plateau(S.constant(0.5), factor=0.5, patience=0, threshold=0.0)
    variant = _variant(schedule_unit="epoch", **{"steps": 60, **train})
    return dataclasses.replace(variant, schedules={"lr": plateau})


def test_a_plateau_on_the_epoch_clock_that_no_evaluation_feeds_is_refused(tmp_path):
    """203 examples in batches of 32: 7 updates per epoch. With ``eval_every = 10`` the epoch
    ends (7, 14, ...) had no evaluation, so the plateau observed nothing and the rate never
    changed, silently. Refused now before anything is written, naming the keys and what is
    allowed."""
    with pytest.raises(ValueError, match="reduce_on_plateau") as err:
        _run(_plateau(eval_every=10), tmp_path)
    message = str(err.value)
    assert "train.eval_every = 10" in message
    assert 'schedule_unit = "epoch"' in message
    assert "7 updates per epoch" in message
    assert "a divisor of 7" in message
    assert "\n" not in message
    assert not (tmp_path / "e").exists()


def test_the_plateau_cadence_rule():
    """Allowed: ``"epoch"``, a divisor of the updates per epoch, the step clock, a schedule that
    observes nothing, a run too short to end an epoch before its last update."""
    from runs.trainer import plateau_cadence_problem

    def problem(**train):
        return plateau_cadence_problem(_plateau(**train), 203)

    assert problem(eval_every="epoch") is None
    assert problem(eval_every=7) is None
    assert problem(eval_every=1) is None
    assert problem(eval_every=14) is not None  # (every other epoch end)
    assert problem(eval_every=10) is not None
    assert problem(eval_every=10, steps=7) is None  # (its one epoch end is the last update)
    assert problem(eval_every=10, steps=6) is None
    assert problem(eval_every=10, steps=8) is not None
    step_clock = dataclasses.replace(
        _plateau(eval_every=10), train=runs.Train(steps=60, batch_size=32, eval_every=10)
    )
    assert plateau_cadence_problem(step_clock, 203) is None
    constant = dataclasses.replace(_plateau(eval_every=10), schedules={})
    assert plateau_cadence_problem(constant, 203) is None


def test_an_allowed_epoch_clock_plateau_follows_torchs_loop(tmp_path):
    """``eval_every = 7`` (every epoch end): the rates equal those of torch's
    ``ReduceLROnPlateau`` fed the test split's loss at each epoch end of a loop written here."""
    data = _blobs()
    _run(_plateau(eval_every=7), tmp_path, data)
    result = json.loads((_run_dir(tmp_path) / "result.json").read_text())
    logged = result["history"]["hyper"]["hyper/lr/group0"]
    by_step = dict(zip(logged["step"], logged["value"], strict=True))
    runner, rate = [], None
    for t in range(60):
        rate = by_step.get(t, rate)
        runner.append(rate)

    torch.manual_seed(SEED)
    model = Net((8,), 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=0.5, patience=0, threshold=0.0
    )
    expected, step, epoch = [], 0, 0
    while step < 60:
        word = int(np.random.SeedSequence([SEED, epoch]).generate_state(1)[0])
        order = torch.randperm(203, generator=torch.Generator().manual_seed(word))
        for k in range(7):
            index = order[k * 32 : (k + 1) * 32]
            expected.append(optimizer.param_groups[0]["lr"])
            loss = F.cross_entropy(model(data.train_x[index]), data.train_y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % 7 == 0:
                with torch.no_grad():
                    plateau.step(F.cross_entropy(model(data.test_x), data.test_y).item())
            if step == 60:
                break
        epoch += 1
    assert len(set(expected)) > 2  # (the rate did change)
    assert runner == expected


# ------------------------------------------------------- 3. Schedule-Free batch-norm statistics
def _sorted_blobs():
    """4 classes, 1200 training examples stored class by class (as ``ImageFolder`` gives them):
    the first 50 batches of 20 in storage order are mostly of the first three classes."""
    data = _blobs(n_train=1600, n_test=200, classes=4, seed=3)
    order = torch.argsort(data.train_y[:1200], stable=True)
    x, y = data.train_x[:1200][order], data.train_y[:1200][order]
    return runs.dataset_from(x, y, data.test_x[:200], data.test_y[:200])


def _schedule_free_bn(**train):
    return _variant(
        model=runs.Model("net", {"bn": True}),
        optimizer=runs.Optimizer("optim.AdamWScheduleFree", {"lr": 0.01}),
        dataset="sorted",
        **{"steps": 12, "batch_size": 20, "eval_every": 6, **train},
    )


def test_schedule_free_batch_norm_statistics_come_from_a_shuffled_order(tmp_path):
    """The final checkpoint holds the averaged point x with batch-norm statistics recomputed at
    x over the first 50 batches of the shuffled order ``SeedSequence([seed, 0])`` documents,
    not the first 50 in storage order (which, on class-sorted data, are statistics of three of
    the four classes)."""
    from tests.runs.helpers import statistics_recomputed_at

    data = _sorted_blobs()
    summary = _run(_schedule_free_bn(), tmp_path, data)
    state = torch.load(_run_dir(tmp_path) / "checkpoint.pt", weights_only=True)
    model = Net((8,), 4, bn=True)
    model.load_state_dict(state["model"])
    shuffled = statistics_recomputed_at(model, data, 20, seed=SEED)
    in_order = statistics_recomputed_at(model, data, 20)
    stats = ("body.2.running_mean", "body.2.running_var")
    for key in stats:
        torch.testing.assert_close(state["model"][key], shuffled.state_dict()[key], rtol=1e-5,
                                   atol=1e-6)  # fmt: skip
    gap = in_order.state_dict()[stats[1]] - shuffled.state_dict()[stats[1]]
    assert gap.abs().max() > 0.1 * shuffled.state_dict()[stats[1]].abs().max()  # (it matters)
    with torch.no_grad():
        test_loss = F.cross_entropy(shuffled(data.test_x), data.test_y).item()
    assert summary["runs"][0]["final"]["test_loss"] == pytest.approx(test_loss, rel=1e-5)


def test_schedule_free_batch_norm_resumes_bit_for_bit(tmp_path):
    """The statistics' batches are a pure function of the seed: a run interrupted after its
    checkpoint at step 6 and resumed equals the uninterrupted run, bit for bit."""
    data = _sorted_blobs()
    _run(_schedule_free_bn(), tmp_path / "whole", data)
    Net.count, Net.armed = 0, 1 + 8  # (the preflight's training step, then the 8th update's)
    with pytest.raises(RuntimeError, match="interrupted"):
        _run(_schedule_free_bn(), tmp_path / "resumed", data)
    Net.armed = None
    assert torch.load(_run_dir(tmp_path / "resumed") / "checkpoint.pt")["step"] == 6
    _run(_schedule_free_bn(), tmp_path / "resumed", data)
    whole, resumed = (
        torch.load(_run_dir(tmp_path / kind) / "checkpoint.pt", weights_only=True)
        for kind in ("whole", "resumed")
    )
    for key, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert whole["history"]["eval"] == resumed["history"]["eval"]
    assert whole["history"]["train_loss"] == resumed["history"]["train_loss"]


# -------------------------------------------------------------------- 4. NumPy scalars in a spec
FLOAT32_TENTH = struct.unpack("f", struct.pack("f", 0.1))[0]  # float32's 0.1, exactly


@pytest.mark.parametrize(
    ("hyperparameters", "hidden", "expected"),
    [
        (
            {"lr": np.float32(0.1), "momentum": np.float64(0.5), "nesterov": np.bool_(False)},
            np.int64(8),
            {"lr": FLOAT32_TENTH, "momentum": 0.5, "nesterov": False},
        ),
        ({"lr": np.float64(0.1), "momentum": 0.9}, 8, {"lr": 0.1, "momentum": 0.9}),
    ],
    ids=["float32-float64-bool-int64", "float64"],
)
def test_numpy_scalars_are_taken_as_the_python_numbers_they_equal(
    tmp_path, hyperparameters, hidden, expected
):
    """``np.float32``, ``np.int64`` and ``np.bool_`` failed with a bare JSON error after every
    check; ``np.float64`` trained, but its checkpoint could not be read back to resume. Now each
    is the Python number it equals exactly, in ``experiment.json`` and the checkpoint, and an
    unfinished run resumes."""
    optimizer = runs.Optimizer("torch.optim.SGD", hyperparameters)
    variant = _variant(optimizer=optimizer, model=runs.Model("net", {"hidden": hidden}))
    _run(variant, tmp_path)
    written = json.loads((tmp_path / "e" / "experiment.json").read_text())["variants"][0]
    assert written["model"]["hidden"] == 8
    for key, value in expected.items():
        assert written["optimizer"][key] == value
    run_dir = _run_dir(tmp_path)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    group = state["optimizer"]["param_groups"][0]
    for key, value in expected.items():
        assert type(group[key]) is type(value), key
        assert group[key] == value, key
    (run_dir / "result.json").unlink()  # (an unfinished run: it resumes from the checkpoint)
    summary = _run(variant, tmp_path)
    assert summary["runs"][0]["status"] == "finished"


@pytest.mark.parametrize(
    "value",
    [np.complex64(1), np.longdouble(1) / np.longdouble(3), np.datetime64("2020-01-01")],
    ids=["complex", "longdouble", "datetime"],
)
def test_a_numpy_scalar_with_no_equal_python_number_is_refused_by_its_key(tmp_path, value):
    if isinstance(value, np.longdouble) and np.finfo(np.longdouble).nmant <= 52:
        pytest.skip("longdouble is a double here")
    variant = _variant(optimizer=runs.Optimizer("torch.optim.SGD", {"lr": 0.1, "momentum": value}))
    with pytest.raises(ValueError, match=r"variants\[0\]\.optimizer\.momentum: must be a bool"):
        _run(variant, tmp_path)
    assert not (tmp_path / "e").exists()


def test_a_checkpoint_that_would_not_read_back_is_refused_and_the_previous_one_kept(tmp_path):
    """``save_checkpoint`` checks with the weights-only unpickler before replacing anything."""
    from runs.checkpoint import CHECKPOINT, save_checkpoint

    save_checkpoint(tmp_path, {"step": 1, "optimizer": {"param_groups": [{"lr": 0.1}]}})
    before = (tmp_path / CHECKPOINT).read_bytes()
    bad = {"step": 2, "w": torch.ones(3), "optimizer": {"param_groups": [{"lr": np.float64(0.1)}]}}
    with pytest.raises(ValueError, match="weights_only") as err:
        save_checkpoint(tmp_path, bad)
    assert "optimizer.param_groups[0].lr" in str(err.value)
    assert "numpy.float64" in str(err.value)
    assert str(tmp_path / CHECKPOINT) in str(err.value)
    assert (tmp_path / CHECKPOINT).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT]  # (no temporary left)


# ------------------------------------------------------- 5. resume under other threads or device
def _unfinished(tmp_path, **options) -> Path:
    """A run trained to its end under ``options``, its ``result.json`` removed: it resumes from
    its last checkpoint."""
    _run(_variant(), tmp_path, **options)
    run_dir = _run_dir(tmp_path)
    (run_dir / "result.json").unlink()
    return run_dir


def test_a_resume_under_other_threads_is_refused_before_anything_is_written(tmp_path):
    run_dir = _unfinished(tmp_path, threads=1)
    assert torch.load(run_dir / "checkpoint.pt")["session"] == {"threads": 1, "device": "cpu"}
    files = {p: p.read_bytes() for p in (tmp_path / "e").rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="unfinished run") as err:
        _run(_variant(), tmp_path, threads=2)
    message = str(err.value)
    assert "trained with threads=1" in message
    assert "gives threads=2" in message
    assert str(run_dir) in message
    assert "\n" not in message
    assert {p: p.read_bytes() for p in (tmp_path / "e").rglob("*") if p.is_file()} == files
    assert _run(_variant(), tmp_path, threads=1)["runs"][0]["status"] == "finished"


def test_a_resume_on_another_device_type_is_refused(tmp_path):
    """(No accelerator here: the record of a run begun on CUDA is written into its checkpoint.)"""
    run_dir = _unfinished(tmp_path)
    state = torch.load(run_dir / "checkpoint.pt")
    state["session"]["device"] = "cuda"
    torch.save(state, run_dir / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"device='cuda'.*device='cpu'"):
        _run(_variant(), tmp_path)


def test_a_checkpoint_without_the_record_still_resumes(tmp_path):
    run_dir = _unfinished(tmp_path, threads=1)
    state = torch.load(run_dir / "checkpoint.pt")
    del state["session"]  # (written before the record existed)
    torch.save(state, run_dir / "checkpoint.pt")
    assert _run(_variant(), tmp_path, threads=2)["runs"][0]["status"] == "finished"


CLI_TINY = FASTEST.replace('name = "a"', 'name = "plain"')


def test_the_command_names_threads_in_one_line(tmp_path, capsys):
    toml = tmp_path / "tiny.toml"
    toml.write_text(CLI_TINY)
    logdir = tmp_path / "logs"
    assert main(["run", str(toml), "--logdir", str(logdir), "--quiet"]) == 0
    (logdir / "tiny" / "plain" / "seed0" / "result.json").unlink()
    capsys.readouterr()
    assert main(["run", str(toml), "--logdir", str(logdir), "--quiet", "--threads", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert "trained with --threads 1" in err
    assert "gives --threads 2" in err


# ---------------------------------------------------------------- 6. the caller's thread count
def test_runs_run_gives_back_the_callers_thread_count(tmp_path):
    """``runs.run`` trains with ``threads`` torch threads and restores the caller's count, also
    when a run fails."""
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        _run(_variant(), tmp_path / "a", threads=1)
        assert torch.get_num_threads() == 3
        Net.count, Net.armed = 0, 1 + 4  # (the preflight's training step, then the 4th update)
        with pytest.raises(RuntimeError, match="interrupted"):
            _run(_variant(), tmp_path / "b", threads=2)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(saved)


def test_the_range_test_computes_with_the_runs_thread_count(tmp_path, monkeypatch):
    """An experiment's range test derives the rates its runs train with, so it computes with
    ``--threads`` as the runs do: it ran with the process's own count (the machine's cores),
    which made the derived rates depend on the machine (CPU kernels reduce by thread)."""
    from runs import tuning
    from runs.cli import main
    from tests.runs.helpers import TINY, write_toml

    seen = []
    original = tuning.range_test_on_variant

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(tuning, "range_test_on_variant", spy)
    text = TINY.replace('name = "tiny"', 'name = "threads"').replace("seeds = 2", "seeds = 1")
    text += "\n[range_test]\nstart_lr = 1e-3\nend_lr = 1.0\nnum_iter = 10\n"
    toml = write_toml(tmp_path / "threads.toml", text)
    caller = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        code = main(["run", str(toml), "--logdir", str(tmp_path), "--quiet", "--threads", "1"])
        assert code == 0
        assert seen == [1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(caller)
