"""Audit 89 of the Python API with your own model and data: a factory whose models share a module,
lazy modules, values a TOML file cannot hold (tensors, arrays, classes), fingerprints that see an
edited model, what ``normalize`` does to each input shape, NumPy integers in the typed classes,
the caller's random state after ``runs.run``, and two messages of ``dataset_from``.

Expected values come from loops, formulas and NumPy computations written here (a hand-written
SGD loop, NumPy's column statistics, the fingerprint formula of the earlier version frozen
below), never from the code under test."""

from __future__ import annotations

import copy
import hashlib
import json
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import runs
from runs import data as runs_data
from runs.models import describe_model, registered_model_digest

pytestmark = pytest.mark.usefixtures("clean_registries")


def _blobs(n_train: int = 100, n_test: int = 40, dim: int = 8, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(2, dim, generator=generator) * 2
    labels = torch.randint(0, 2, (n_train + n_test,), generator=generator)
    inputs = centers[labels] + torch.randn(n_train + n_test, dim, generator=generator)
    return inputs[:n_train], labels[:n_train], inputs[n_train:], labels[n_train:]


def _register_blobs(name: str = "blobs89") -> tuple[torch.Tensor, ...]:
    arrays = _blobs()
    runs.register_dataset(name, runs.dataset_from(*arrays))
    return arrays


def _experiment(model: str | runs.Model, *, optimizer=None, seeds=1, normalize=True, **train):
    train = {"steps": 6, "batch_size": 20, "eval_every": 3, **train}
    return runs.Experiment(
        name="e",
        seeds=seeds,
        variants=(
            runs.Variant(
                name="v",
                dataset=runs.Dataset("blobs89", normalize=normalize),
                model=model if isinstance(model, runs.Model) else runs.Model(model),
                train=runs.Train(**train),
                optimizer=optimizer or runs.Optimizer("torch.optim.SGD", {"lr": 0.1}),
            ),
        ),
    )


# ------------------------------------------------------------------ 1. models sharing a module
BACKBONE = nn.Linear(8, 16)  # a "pretrained" module the factories below close over
SHARED_NORM = nn.BatchNorm1d(8)


def finetune(input_shape, num_classes):
    return nn.Sequential(BACKBONE, nn.ReLU(), nn.Linear(16, num_classes))


def shared_norm(input_shape, num_classes):
    return nn.Sequential(SHARED_NORM, nn.Linear(8, num_classes))


def finetune_copy(input_shape, num_classes):
    return nn.Sequential(copy.deepcopy(BACKBONE), nn.ReLU(), nn.Linear(16, num_classes))


def test_a_factory_sharing_a_backbone_is_refused_before_anything_is_written(tmp_path):
    _register_blobs()
    before = copy.deepcopy(BACKBONE.state_dict())
    with pytest.raises(ValueError, match="share the storage") as refused:
        runs.run(_experiment("ft"), logdir=tmp_path, models={"ft": finetune})
    message = str(refused.value)
    assert "finetune" in message  # the factory
    assert "'0.weight'" in message  # the shared parameter
    assert "deepcopy" in message
    assert list(tmp_path.iterdir()) == []
    assert all(torch.equal(BACKBONE.state_dict()[k], v) for k, v in before.items())


def test_a_factory_sharing_a_buffer_is_refused_naming_it(tmp_path):
    _register_blobs()
    with pytest.raises(ValueError, match=r"shared_norm .*'0\.(weight|running_mean)'"):
        runs.run(_experiment("sn"), logdir=tmp_path, models={"sn": shared_norm})
    assert list(tmp_path.iterdir()) == []


def test_a_factory_copying_the_backbone_trains_and_leaves_it_alone(tmp_path):
    _register_blobs()
    before = copy.deepcopy(BACKBONE.state_dict())
    summary = runs.run(_experiment("ftc", seeds=2), logdir=tmp_path, models={"ftc": finetune_copy})
    assert [r["status"] for r in summary["runs"]] == ["finished", "finished"]
    assert all(torch.equal(BACKBONE.state_dict()[k], v) for k, v in before.items())


# ------------------------------------------------------------------------------ 2. lazy modules
def lazy_net(input_shape, num_classes):
    return nn.Sequential(nn.LazyLinear(6), nn.ReLU(), nn.LazyLinear(num_classes))


def test_describe_model_takes_an_unmaterialised_lazy_module():
    lazy = describe_model(nn.Sequential(nn.LazyLinear(3)))
    materialised = nn.Sequential(nn.LazyLinear(3))
    materialised(torch.zeros(2, 5))
    assert lazy != describe_model(materialised)


def test_a_lazy_model_trains_as_a_hand_loop_and_reads_back(tmp_path):
    tx, ty, vx, _ = _register_blobs()
    experiment = _experiment("lazy", normalize=False, shuffle=False, steps=7)
    summary = runs.run(experiment, logdir=tmp_path, models={"lazy": lazy_net})
    assert summary["runs"][0]["status"] == "finished"
    # the hand loop: seed, build, optimizer, the step-0 evaluation (materialises), 7 SGD steps
    torch.manual_seed(0)
    model = lazy_net((8,), 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with torch.no_grad():
        model.eval()
        model(vx)
    model.train()
    for step in range(7):
        start = (step % 5) * 20
        loss = F.cross_entropy(model(tx[start : start + 20]), ty[start : start + 20])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    saved = torch.load(tmp_path / "e" / "v" / "seed0" / "checkpoint.pt", weights_only=True)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(saved["model"][name], value, rtol=0, atol=1e-6)
    again = runs.run(experiment, logdir=tmp_path)  # the same model: read back, not refused
    assert again["runs"][0]["final"] == summary["runs"][0]["final"]


# -------------------------------------------------------- 3. values a TOML file could not hold
def scaled(input_shape, num_classes, scale=1.0, act=None):
    return nn.Sequential(nn.Linear(input_shape[0], num_classes))


def test_a_tensor_lr_and_a_0d_array_momentum_are_taken_as_their_numbers(tmp_path):
    _register_blobs()
    hyper = {"lr": torch.tensor(0.1), "momentum": np.array(0.5)}
    model = runs.Model("scaled", {"scale": torch.tensor(2, dtype=torch.int32)})
    experiment = _experiment(model, optimizer=runs.Optimizer("torch.optim.SGD", hyper))
    runs.run(experiment, logdir=tmp_path, models={"scaled": scaled})
    recorded = json.loads((tmp_path / "e" / "experiment.json").read_text())["variants"][0]
    float32_of_0_1 = struct.unpack("f", struct.pack("f", 0.1))[0]
    assert recorded["optimizer"]["lr"] == float32_of_0_1
    assert recorded["optimizer"]["momentum"] == 0.5
    assert recorded["model"]["scale"] == 2
    assert type(recorded["model"]["scale"]) is int


def test_a_class_as_a_model_option_is_refused_at_its_location(tmp_path):
    _register_blobs()
    experiment = _experiment(runs.Model("scaled", {"act": nn.Tanh}))
    with pytest.raises(ValueError, match=r"variants\[0\]\.model\.act: .*Tanh.*as a string"):
        runs.run(experiment, logdir=tmp_path, models={"scaled": scaled})
    assert list(tmp_path.iterdir()) == []


def test_an_array_hyperparameter_is_refused_at_its_location_in_a_dict(tmp_path):
    _register_blobs()
    document = {
        "name": "e",
        "dataset": {"name": "blobs89"},
        "model": {"name": "scaled"},
        "train": {"steps": 2, "batch_size": 20},
        "optimizer": {"name": "torch.optim.Adam", "lr": 0.01, "betas": np.array([0.9, 0.99])},
        "variants": [{"name": "v"}],
    }
    with pytest.raises(ValueError, match=r"optimizer\.betas: .*tolist"):
        runs.run(document, logdir=tmp_path, models={"scaled": scaled})
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------ 4. fingerprints of edited models
def head_default(input_shape, num_classes):
    return nn.Sequential(nn.Linear(input_shape[0], 4), nn.ReLU(), nn.Linear(4, num_classes))


def head_zeroed(input_shape, num_classes):
    model = head_default(input_shape, num_classes)
    nn.init.zeros_(model[2].weight)
    return model


CFG = {"hidden": 4}


def from_settings(input_shape, num_classes):
    hidden = CFG["hidden"]
    return nn.Sequential(
        nn.Linear(input_shape[0], hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
    )


def test_an_edited_initialisation_is_not_read_back_as_the_old_models_results(tmp_path):
    _register_blobs()
    runs.run(_experiment("net"), logdir=tmp_path, models={"net": head_default})
    runs.register_model("net", head_zeroed, replace=True)
    with pytest.raises(ValueError, match="another configuration"):
        runs.run(_experiment("net"), logdir=tmp_path)
    fresh = runs.run(_experiment("net"), logdir=tmp_path / "fresh")
    assert fresh["runs"][0]["status"] == "finished"


def test_a_width_read_from_a_setting_is_seen_by_the_next_run_in_the_process(tmp_path):
    _register_blobs()
    CFG["hidden"] = 4
    try:
        runs.run(_experiment("cfg"), logdir=tmp_path, models={"cfg": from_settings})
        CFG["hidden"] = 32
        with pytest.raises(ValueError, match="another configuration"):
            runs.run(_experiment("cfg"), logdir=tmp_path)
    finally:
        CFG["hidden"] = 4


def test_an_unchanged_model_is_read_back_and_resumes(tmp_path):
    _register_blobs()
    first = runs.run(_experiment("net"), logdir=tmp_path, models={"net": head_default})
    again = runs.run(_experiment("net"), logdir=tmp_path)
    assert again["runs"] == first["runs"]


def _old_fingerprint(variant: dict, seed: int, data: str, model: nn.Module) -> str:
    """The fingerprint stepsize computed before this audit (frozen here as the reference): the
    model described by its repr, shapes, dtypes and requires_grad only."""
    entries = [repr(model)]
    for name, tensor in model.named_parameters(remove_duplicate=False):
        entries.append(f"p {name} {tuple(tensor.shape)} {tensor.dtype} {tensor.requires_grad}")
    for name, tensor in model.named_buffers(remove_duplicate=False):
        entries.append(f"b {name} {tuple(tensor.shape)} {tensor.dtype}")
    digest = hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]
    numeric = {k: v for k, v in variant.items() if k != "logging"}
    payload = {"variant": numeric, "seed": seed, "data": data, "model": digest}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def test_a_folder_of_the_earlier_fingerprint_is_refused_saying_so(tmp_path):
    _register_blobs()
    runs.run(_experiment("net"), logdir=tmp_path, models={"net": head_default})
    recorded = json.loads((tmp_path / "e" / "experiment.json").read_text())["variants"][0]
    old = _old_fingerprint(
        recorded, 0, runs_data.registered_digest("blobs89"), head_default((8,), 2)
    )
    result_file = tmp_path / "e" / "v" / "seed0" / "result.json"
    result = json.loads(result_file.read_text())
    result["fingerprint"] = old  # as the earlier version wrote it
    result_file.write_text(json.dumps(result))
    with pytest.raises(ValueError, match="earlier version of stepsize"):
        runs.run(_experiment("net"), logdir=tmp_path)


def test_every_folder_of_the_earlier_fingerprint_is_named_at_once(tmp_path):
    """(Review of stop 89: the refusal named one folder per command, so deleting the old runs
    took as many commands as runs.)"""
    _register_blobs()
    runs.run(_experiment("net", seeds=3), logdir=tmp_path, models={"net": head_default})
    recorded = json.loads((tmp_path / "e" / "experiment.json").read_text())["variants"][0]
    for seed in range(3):
        old = _old_fingerprint(
            recorded, seed, runs_data.registered_digest("blobs89"), head_default((8,), 2)
        )
        result_file = tmp_path / "e" / "v" / f"seed{seed}" / "result.json"
        result = json.loads(result_file.read_text())
        result["fingerprint"] = old  # as the earlier version wrote it
        result_file.write_text(json.dumps(result))
    with pytest.raises(ValueError, match="earlier version of stepsize") as refused:
        runs.run(_experiment("net", seeds=3), logdir=tmp_path)
    message = str(refused.value)
    assert message.startswith("3 run folder(s)")
    for seed in range(3):
        assert str(tmp_path / "e" / "v" / f"seed{seed}") in message


def numpy_drawing(input_shape, num_classes):
    np.random.rand()  # noqa: NPY002 (a factory using NumPy's global generator)
    return nn.Linear(input_shape[0], num_classes)


def test_the_model_digest_leaves_every_global_random_stream_alone():
    runs.register_model("npd", numpy_drawing)
    np.random.seed(5)  # noqa: NPY002
    torch.manual_seed(5)
    expected = (np.random.rand(), torch.rand(1))  # noqa: NPY002
    np.random.seed(5)  # noqa: NPY002
    torch.manual_seed(5)
    first = registered_model_digest("npd", (8,), 2, {})
    assert (np.random.rand(), torch.rand(1)) == expected  # noqa: NPY002
    from runs.models import forget_model_digests

    forget_model_digests()
    assert registered_model_digest("npd", (8,), 2, {}) == first  # (a fixed seed: reproducible)


# ------------------------------------------------------------------------------- 5. normalize
def test_registered_vectors_are_standardised_per_feature():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(300, 2, generator=generator) * torch.tensor([1.0, 1000.0])
    x += torch.tensor([5.0, -300.0])
    y = torch.randint(0, 2, (300,), generator=generator)
    runs.register_dataset("tab89", train_x=x[:200], train_y=y[:200], test_x=x[200:], test_y=y[200:])
    loaded = runs_data.load_dataset("tab89")
    train = x[:200].double().numpy()
    mean, std = train.mean(axis=0), train.std(axis=0)  # StandardScaler's (population std)
    np.testing.assert_allclose(loaded.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(loaded.std, std, rtol=1e-6)
    np.testing.assert_allclose(loaded.train_x.numpy(), (train - mean) / std, atol=2e-5)
    expected_test = (x[200:].double().numpy() - mean) / std
    np.testing.assert_allclose(loaded.test_x.numpy(), expected_test, atol=2e-5)


def test_registered_images_with_a_channel_axis_get_one_mean_and_std_per_channel():
    generator = torch.Generator().manual_seed(2)
    images = torch.rand(50, 6, 6, generator=generator)
    images[:, 0] *= 0.01  # a nearly empty first row
    y = torch.randint(0, 2, (50,), generator=generator)
    x = images[:, None]  # (N, 1, H, W), as the docs say to give channel-less images
    runs.register_dataset("img89", train_x=x[:40], train_y=y[:40], test_x=x[40:], test_y=y[40:])
    loaded = runs_data.load_dataset("img89")
    train = images[:40].double().numpy()
    assert loaded.mean == pytest.approx((train.mean(),), rel=1e-6)
    assert loaded.std == pytest.approx((train.std(),), rel=1e-6)


# ------------------------------------------------------------ 6. NumPy numbers in typed classes
def test_the_typed_classes_take_numpy_numbers_as_python_numbers():
    train = runs.Train(
        epochs=np.int64(2), batch_size=np.int32(50), eval_every=np.int64(5), shuffle=np.bool_(0)
    )
    assert (train.epochs, train.batch_size, train.eval_every, train.shuffle) == (2, 50, 5, False)
    assert [type(v) for v in (train.epochs, train.batch_size, train.eval_every)] == [int] * 3
    assert type(train.shuffle) is bool
    logging = runs.Logging(checkpoint_every=np.int64(5))
    assert type(logging.checkpoint_every) is int
    assert logging.checkpoint_every == 5
    variant = _experiment("logistic").variants[0]
    assert type(runs.Experiment(name="e", variants=(variant,), seeds=np.int64(2)).seeds) is int
    listed = runs.Experiment(name="e", variants=(variant,), seeds=(np.int64(0), np.uint8(7)))
    assert listed.seeds == (0, 7)
    assert all(type(s) is int for s in listed.seeds)
    assert runs.Search(lr=[np.float32(0.5)]).lr == [0.5]


@pytest.mark.parametrize("value", [np.float64(2.0), np.float64(2.5), np.bool_(True)])
def test_the_typed_classes_still_refuse_a_non_integer_epochs(value):
    with pytest.raises(TypeError, match="Train: epochs must be"):
        runs.Train(epochs=value, batch_size=10)


# ------------------------------------------------------------ 7. the caller's random state
class Failing(nn.Module):
    calls = 0

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.linear = nn.Linear(input_shape[0], num_classes)

    def forward(self, x):
        if torch.is_grad_enabled() and x.shape[0] == 20:
            Failing.calls += 1
            if Failing.calls == 3:
                raise RuntimeError("a user's error (a test)")
        return self.linear(x)


def test_runs_run_leaves_the_callers_torch_random_state_alone(tmp_path):
    _register_blobs()
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    runs.run(_experiment("net", seeds=2), logdir=tmp_path, models={"net": head_default})
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(1234)
    Failing.calls = 0
    with pytest.raises(RuntimeError, match="a user's error"):
        runs.run(_experiment("failing"), logdir=tmp_path / "f", models={"failing": Failing})
    assert torch.equal(torch.rand(3), expected)


# ------------------------------------------------------------------ 8. messages of dataset_from
class Stream(torch.utils.data.IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter((torch.zeros(3), 0) for _ in range(self.n))

    def __len__(self):
        return self.n


def test_an_iterable_dataset_with_a_len_is_refused_by_name():
    with pytest.raises(TypeError, match=r"train: got an IterableDataset .*map-style"):
        runs.dataset_from(train=Stream(4), test=Stream(2))


def test_a_finite_float64_input_beyond_float32_says_it_overflows():
    x = np.ones((4, 3))
    x[1, 2] = 1e39
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"train_x\[1, 2\] is 1e\+39") as refused:
        runs.dataset_from(x, y, np.ones((2, 3)), y[:2])
    message = str(refused.value)
    assert "float32" in message
    assert "overflow" in message
    assert "is inf" not in message


def test_a_real_inf_input_is_still_named_as_inf():
    x = np.ones((4, 3))
    x[2, 0] = np.inf
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"train_x\[2, 0\] is inf"):
        runs.dataset_from(x, y, np.ones((2, 3)), y[:2])
