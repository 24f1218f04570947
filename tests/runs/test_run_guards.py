"""The runner's guards against silent wrong results: the schedule across evaluations, copies of
the user's data, an edited model, the preflight's forward pass and optimizer, divergence and
strict JSON. Tiny data, a few updates each."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from torch import nn

import runs
import schedulers as S
from runs import data as runs_data
from runs import models as runs_models
from runs.checkpoint import RESULT, load_result
from runs.data import dataset_from
from runs.spec import Dataset, Logging, Model, Optimizer, Train, Variant
from runs.trainer import train_run

USED_LRS: list[float] = []


class RecordingSGD(torch.optim.SGD):
    """SGD recording the learning rate of each update (group 0) in ``USED_LRS``."""

    def step(self, closure=None):
        USED_LRS.append(float(self.param_groups[0]["lr"]))
        return super().step(closure)


pytestmark = pytest.mark.usefixtures("clean_registries")


def blobs(n=100, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n + 20,), generator=g)
    x = torch.randn(3, dim, generator=g)[y] * 2 + torch.randn(n + 20, dim, generator=g)
    return x[:n], y[:n], x[n:], y[n:]


def variant(model="logistic", dataset="guard-blobs", lr=0.1, **train) -> Variant:
    return Variant(
        name="v",
        dataset=Dataset(dataset, normalize=False),
        model=Model(model),
        train=Train(**{"steps": 6, "batch_size": 25, "eval_every": 3, **train}),
        optimizer=Optimizer("sgd", {"lr": lr}),
    )


def experiment(*variants: Variant) -> runs.Experiment:
    return runs.Experiment(name="guards", variants=variants)


# -------------------------------------------------------------- 1. the schedule and evaluations
@pytest.mark.parametrize("unit", ["step", "epoch"])
def test_the_lrs_used_and_logged_follow_the_schedule_across_evaluations(unit, tmp_path):
    schedule = S.cosine_decay(learning_rate=0.1, decay_steps=12)
    v = dataclasses.replace(
        variant(steps=12, schedule_unit=unit, eval_every=4),
        optimizer=Optimizer(f"{__name__}:RecordingSGD", {"lr": 0.1}),
        schedules={"lr": schedule},
    )
    USED_LRS.clear()
    result = train_run(v, 0, dataset_from(*blobs()), tmp_path)  # 4 updates per epoch
    expected = [float(schedule(t if unit == "step" else t // 4)) for t in range(12)]
    assert pytest.approx(expected, rel=1e-12) == USED_LRS
    logged = result["history"]["hyper"]["hyper/lr/group0"]
    by_step = dict(zip(logged["step"], logged["value"]))
    assert {s: by_step[s] for s in by_step} == pytest.approx(
        {s: expected[s] for s in by_step}, rel=1e-6
    )
    assert len(by_step) == (12 if unit == "step" else 3)


# ------------------------------------------------------------------ 2. dataset_from copies
def test_dataset_from_copies_tensors_and_arrays_so_later_edits_change_nothing():
    tx, ty, vx, vy = blobs()
    for given in ((tx, ty, vx, vy), tuple(t.numpy() for t in (tx, ty, vx, vy))):
        data = dataset_from(*given)
        before = [t.clone() for t in (data.train_x, data.train_y, data.test_x, data.test_y)]
        given[0][:] *= -5
        given[1][:] = 0
        after = (data.train_x, data.train_y, data.test_x, data.test_y)
        assert all(torch.equal(a, b) for a, b in zip(before, after))
        tx, ty, vx, vy = blobs()


def test_registered_data_edited_in_place_is_still_the_registered_content(tmp_path):
    tx, ty, vx, vy = blobs()
    runs.register_dataset("guard-blobs", train_x=tx, train_y=ty, test_x=vx, test_y=vy)
    digest = runs_data.registered_digest("guard-blobs")
    tx.mul_(-5.0)
    assert runs_data._digest(runs_data.registered_datasets()["guard-blobs"]) == digest


# ----------------------------------------------------------------------- 3. an edited model
def _net(width: int):
    def factory(input_shape, num_classes):
        return nn.Sequential(
            nn.Linear(input_shape[0], width), nn.ReLU(), nn.Linear(width, num_classes)
        )

    return factory


def test_an_edited_model_changes_the_fingerprint_and_bundled_ones_do_not_build():
    runs.register_dataset("guard-blobs", dataset_from(*blobs()))
    runs.register_model("guard-net", _net(8))
    v = variant(model="guard-net")
    first = v.fingerprint(0)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    assert v.fingerprint(0) == first  # cached, the same; the random stream is untouched
    assert torch.equal(torch.get_rng_state(), state)
    runs.register_model("guard-net", _net(8), replace=True)  # another object, the same model
    assert v.fingerprint(0) == first
    runs.register_model("guard-net", _net(16), replace=True)
    assert v.fingerprint(0) != first
    assert runs_models.registered_model_digest("logistic", (4,), 3, {}) is None


def test_an_edited_model_is_refused_before_anything_is_written_even_mid_run(tmp_path):
    runs.register_dataset("guard-blobs", dataset_from(*blobs()))
    runs.register_model("guard-net", _net(8))
    exp = experiment(variant(model="guard-net"))
    runs.run(exp, logdir=tmp_path)
    run_dir = tmp_path / "guards" / "v" / "seed0"
    (run_dir / RESULT).unlink()  # as if interrupted after its last checkpoint

    def files() -> dict:  # (the folder's lock file holds the pid of its latest holder)
        return {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.name != ".stepsize.lock"}

    before = files()
    runs.register_model("guard-net", _net(16), replace=True)
    with pytest.raises(ValueError, match=r"holds a run of another configuration.*'guard-net'"):
        runs.run(exp, logdir=tmp_path)
    assert files() == before


# ------------------------------------------------------------------------- 4. the preflight
class NoParameters(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.register_buffer("w", torch.zeros(input_shape[0], num_classes))

    def forward(self, x):
        return x @ self.w


class WithBatchNorm(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.f = nn.Sequential(
            nn.Linear(input_shape[0], 8), nn.BatchNorm1d(8), nn.Linear(8, num_classes)
        )

    def forward(self, x):
        return self.f(x)


SHARED = nn.Linear(4, 3)
PREFLIGHT_CASES = {
    "input shape": (lambda s, k: nn.Linear(s[0] + 1, k), {}, "forward pass on 2 training"),
    "output shape": (lambda s, k: nn.Linear(s[0], k + 1), {}, r"\(batch, num_classes\) = \(2, 3\)"),
    "no parameters": (NoParameters, {}, "no trainable parameters"),
    "one instance": (lambda s, k: SHARED, {}, "returned the same Linear object twice"),
    "batch of one": (WithBatchNorm, {"batch_size": 33}, "last mini-batch of each epoch has 1"),
}


@pytest.mark.parametrize("case", PREFLIGHT_CASES)
def test_the_preflight_refuses_what_would_fail_in_training_before_writing(case, tmp_path):
    factory, train, message = PREFLIGHT_CASES[case]
    runs.register_dataset("guard-blobs", dataset_from(*blobs()))
    runs.register_model("guard-bad", factory)
    with pytest.raises(ValueError, match=f"variant 'v', .*{message}"):
        runs.run(experiment(variant(model="guard-bad", **train)), logdir=tmp_path / "logs")
    assert not (tmp_path / "logs").exists()


# ---------------------------------------------------------------- 5. and 6. divergence, JSON
def test_a_diverged_run_stops_at_its_first_non_finite_loss_whatever_flush_every(tmp_path):
    runs.register_model("guard-net", _net(8))
    data = dataset_from(*blobs())
    results = []
    for flush in (1, 50):
        v = dataclasses.replace(
            variant(model="guard-net", lr=1e3, steps=20), logging=Logging(flush_every=flush)
        )
        results.append(train_run(v, 0, data, tmp_path / str(flush)))
    first, other = results
    assert first["status"] == "diverged"
    for key in ("diverged", "final", "best", "history"):
        assert json.dumps(first[key]) == json.dumps(other[key]), key  # (NaN != NaN)
    losses = first["history"]["train_loss"]["value"]
    assert first["diverged"] == {"step": len(losses) - 1, "value": str(losses[-1])} != {}
    assert len(losses) < 20
    assert all(v == v and abs(v) != float("inf") for v in losses[:-1])  # only the last is not
    assert first["final"] == dict.fromkeys(first["final"])  # no numbers


def test_results_and_summary_are_strict_json_after_a_divergence(tmp_path):
    runs.register_dataset("guard-blobs", dataset_from(*blobs()))
    runs.register_model("guard-net", _net(8))
    boom = dataclasses.replace(variant(model="guard-net", lr=1e3, steps=20), name="boom")
    summary = runs.run(experiment(variant(), boom), logdir=tmp_path)

    def refuse(token):
        raise AssertionError(f"not strict JSON: {token}")

    root = tmp_path / "guards"
    for path in (root / "summary.json", root / "boom" / "seed0" / RESULT):
        json.loads(path.read_text(), parse_constant=refuse)
    result = load_result(root / "boom" / "seed0")
    assert result["final"]["test_loss"] is None
    assert result["diverged"]["value"] == "nan"
    assert None in result["history"]["train_loss"]["value"]
    statuses = {r["variant"]: r["status"] for r in summary["runs"]}
    assert statuses == {"v": "finished", "boom": "diverged"}


class _Items(torch.utils.data.Dataset):
    """A map-style Dataset of 10 items made by ``item(i)``."""

    def __init__(self, item):
        self.item = item

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return self.item(i)


def _raise(i):
    raise RuntimeError("file missing on disk")


@pytest.mark.parametrize(
    ("item", "error", "words"),
    [
        (lambda i: (torch.randn(4), 1.7 + i % 2), ValueError, "integer class labels"),
        (lambda i: (torch.randn(4), bool(i % 2)), ValueError, "integer class labels"),
        (lambda i: (torch.randn(4 + i % 2), i % 2), ValueError, "one shape"),
        (lambda i: (float(i), i % 2), ValueError, "(N, *input_shape)"),
        (lambda i: (torch.randn(4), torch.tensor([i % 2, 1])), ValueError, "one integer"),
        (_raise, RuntimeError, "file missing on disk"),  # the user's own error, as itself
    ],
    ids=["float-labels", "bool-labels", "ragged-x", "scalar-x", "vector-label", "item-raises"],
)
def test_a_dataset_is_checked_as_tensors_are(item, error, words):
    """``dataset_from(train=Dataset, ...)`` refuses what ``dataset_from(train_x, train_y, ...)``
    refuses (float labels 1.7 and 2.7 were truncated to 1 and 2; bool labels and scalar inputs
    were taken; ragged inputs gave torch's raw RuntimeError). An error the user's ``__getitem__``
    raises propagates as itself."""
    with pytest.raises(error, match=re.escape(words)):
        dataset_from(train=_Items(item), test=_Items(item))


def test_a_dataloader_is_refused_naming_its_dataset():
    x, y = torch.randn(10, 4), torch.arange(10) % 2
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=5)
    with pytest.raises(TypeError, match=re.escape("train=loader.dataset")):
        dataset_from(train=loader, test=loader)
    data = dataset_from(train=loader.dataset, test=loader.dataset)
    assert torch.equal(data.train_x, x)
    assert torch.equal(data.train_y, y)


# ------------------------------------------------- 8. what fails only in training, found before
class Detached(WithBatchNorm):
    def forward(self, x):
        return self.f(x).detach()


class FailsInTrainMode(WithBatchNorm):
    def forward(self, x):
        if self.training:
            raise RuntimeError("boom in train mode")
        return self.f(x)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (Detached, "RuntimeError: element 0 of tensors does not require grad"),
        (FailsInTrainMode, "RuntimeError: boom in train mode"),
    ],
    ids=["detached", "fails-in-train-mode"],
)
def test_a_model_that_cannot_train_is_refused_before_writing(tmp_path, factory, message):
    # (a RuntimeError after experiment.json and the TensorBoard files were written)
    runs.register_dataset("guard-blobs", dataset_from(*blobs()))
    runs.register_model("guard-bad", factory)
    pattern = f"variant 'v', model 'guard-bad': a training step .*{re.escape(message)}"
    with pytest.raises(ValueError, match=pattern):
        runs.run(experiment(variant(model="guard-bad")), logdir=tmp_path / "logs")
    assert not (tmp_path / "logs").exists()


def test_the_training_preflight_changes_no_number(tmp_path, monkeypatch):
    """The preflight's training step draws from a fork of the random state and leaves the
    parameters, buffers (BatchNorm's running statistics) and gradients of the models it builds
    untouched by the runs: the runs' numbers are those of a run without the preflight, bit for
    bit. (A factory sharing one module between its models is refused: test_own_model_audit89.)"""
    from runs import experiment as command

    runs.register_dataset("guard-blobs", dataset_from(*blobs()))
    runs.register_model(
        "guard-norm", lambda s, k: nn.Sequential(WithBatchNorm(s, k), nn.Dropout(0.3))
    )
    spec = experiment(variant(model="guard-norm"))
    checked = runs.run(spec, logdir=tmp_path / "checked")
    monkeypatch.setattr(command, "training_problem", lambda variant, data, **_: None)
    unchecked = runs.run(spec, logdir=tmp_path / "unchecked")
    assert [r["final"] for r in checked["runs"]] == [r["final"] for r in unchecked["runs"]]
    run_dirs = [tmp_path / which / "guards" / "v" / "seed0" for which in ("checked", "unchecked")]
    assert load_result(run_dirs[0])["history"] == load_result(run_dirs[1])["history"]


@pytest.mark.parametrize("which", ["train_x", "test_x"])
def test_complex_inputs_are_refused_naming_the_array(which):
    # (they were cast to real with only torch's warning)
    x, y, tx, ty = blobs()
    arrays = {"train_x": x, "train_y": y, "test_x": tx, "test_y": ty}
    arrays[which] = torch.complex(arrays[which], torch.ones_like(arrays[which]))
    message = f"{which} must hold real numbers, got dtype torch.complex64"
    with pytest.raises(ValueError, match=message):
        dataset_from(**arrays)
    numpy = {k: v.numpy() for k, v in arrays.items()}
    with pytest.raises(ValueError, match=f"{which} must hold real numbers"):
        dataset_from(**numpy)


@pytest.mark.parametrize(
    ("error", "ended"),
    [(KeyboardInterrupt(), True), (RuntimeError("a run failed"), False)],
    ids=["interrupt", "failure"],
)
def test_an_interrupt_ends_the_runs_in_flight_and_a_failure_lets_them_finish(error, ended):
    """A SIGINT to the parent alone (``timeout -s INT``, a scheduler, a notebook's interrupt)
    raises ``KeyboardInterrupt`` in ``--jobs N``'s loop: the runs in flight are ended there
    (each run's checkpoint is written atomically), where leaving the pool had waited for them
    to finish. After another error (a failed run) the runs in flight still finish."""
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor

    from runs.parallel import stop_pool

    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    future = pool.submit(time.sleep, 60)
    while not future.running():  # (handed to the worker)
        time.sleep(0.01)
    processes = list(pool._processes.values())
    stop_pool(pool, error)
    for process in processes:  # (ended: at once; left to finish: still sleeping after 1 s)
        process.join(timeout=20 if ended else 1)
    try:
        assert all(process.exitcode is not None for process in processes) is ended
    finally:
        for process in processes:
            process.kill()
        pool.shutdown(wait=True)
