"""How the runner takes a researcher's data and models (audit 87): a ``DatasetSplits`` built by
hand is checked as ``dataset_from`` checks what it builds; NaN and inf inputs are refused; NumPy
arrays in big-endian order are converted, object/str/longdouble ones refused naming the array;
factories may take options without a default; the MNIST-1D cache's labels and input dtypes are
checked; refusals name the split, value and index, the user's own exception and the missing file.
Tiny data; nothing trains except where a refusal must come before any file is written."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

import runs
from runs import mnist1d as runs_mnist1d
from runs.data import DatasetSplits, dataset_from, load_dataset, registered_datasets
from runs.models import build_model

pytestmark = pytest.mark.usefixtures("clean_registries")


def blobs(n=30, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n + 10,), generator=g)
    x = torch.randn(3, dim, generator=g)[y] + torch.randn(n + 10, dim, generator=g)
    return x[:n], y[:n], x[n:], y[n:]


def net(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], num_classes))


def experiment(dataset="fix-blobs", model="fix-net", options=None) -> runs.Experiment:
    return runs.Experiment(
        name="fixes",
        seeds=1,
        variants=(
            runs.Variant(
                name="v",
                dataset=runs.Dataset(dataset),
                model=runs.Model(model, options or {}),
                train=runs.Train(epochs=1, batch_size=10),
                optimizer=runs.Optimizer("torch.optim.SGD", {"lr": 0.1}),
            ),
        ),
    )


def splits(**changes) -> DatasetSplits:
    x, y, tx, ty = blobs()
    fields = {"train_x": x, "train_y": y, "test_x": tx, "test_y": ty}
    return DatasetSplits("direct", **{**fields, **changes}, num_classes=3, input_shape=(8,))


# ------------------------------------------------- F1: a DatasetSplits built by hand is checked
def _late_label() -> torch.Tensor:
    y = blobs()[1].clone()
    y[-1] = 5  # past the preflight's first examples
    return y


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train_y": _late_label()}, "train_y[29] is 5: labels must lie in 0..2"),
        ({"test_y": -blobs()[3] - 1}, "test_y[0] is -"),
        ({"train_y": blobs()[1][:20]}, "train_x has 30 examples and train_y 20"),
        ({"train_y": blobs()[1].float()}, "train_y must hold int64 class labels"),
        ({"train_x": blobs()[0].double()}, "train_x must hold float32 inputs"),
        ({"test_x": blobs()[2][:, :4]}, "train examples have shape (8,), test examples (4,)"),
        ({"train_y": blobs()[1][:, None]}, "train_y must have shape (N,)"),
        ({"train_x": blobs()[0][:0], "train_y": blobs()[1][:0]}, "must match and not be empty"),
        ({"train_x": blobs()[0].numpy()}, "train_x must be a torch.Tensor, got ndarray"),
    ],
    ids=[
        "label-too-large", "negative-label", "short-labels", "float-labels", "float64-inputs",
        "shapes-differ", "2d-labels", "empty", "numpy",
    ],
)  # fmt: skip
def test_hand_built_splits_are_refused_at_registration(changes, message):
    data = splits(**changes)
    with pytest.raises((ValueError, TypeError), match=re.escape(message)) as info:
        runs.register_dataset("direct", data)
    assert str(info.value).startswith("register_dataset('direct'): ")
    assert "direct" not in registered_datasets()


def test_hand_built_splits_with_a_wrong_input_shape_or_num_classes_are_refused():
    x, y, tx, ty = blobs()
    wrong_shape = DatasetSplits("d", x, y, tx, ty, num_classes=3, input_shape=(4,))
    with pytest.raises(ValueError, match=re.escape("input_shape is (4,), but the examples")):
        runs.register_dataset("direct", wrong_shape)
    few_classes = DatasetSplits("d", x, y, tx, ty, num_classes=2, input_shape=(8,))
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1 \(num_classes=2\)"):
        runs.register_dataset("direct", few_classes)
    no_classes = DatasetSplits("d", x, y, tx, ty, num_classes=0, input_shape=(8,))
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        runs.register_dataset("direct", no_classes)


def test_good_hand_built_splits_are_registered():
    data = splits()
    assert runs.register_dataset("direct", data) is data
    assert registered_datasets()["direct"] is data


def test_run_refuses_bad_hand_built_splits_before_writing_anything(tmp_path):
    # (the run wrote its lock, experiment.json and TensorBoard files, then died with
    # "IndexError: Target 5 is out of bounds")
    logdir = tmp_path / "logs"
    data = splits(train_y=_late_label())
    with pytest.raises(ValueError, match=re.escape("train_y[29] is 5")):
        runs.run(experiment(), logdir=logdir, models={"fix-net": net}, datasets={"fix-blobs": data})
    assert not logdir.exists()
    assert "fix-blobs" not in registered_datasets()


# ----------------------------------------------------------------- F2: NaN and inf are refused
@pytest.mark.parametrize(
    ("which", "index", "value", "shown"),
    [
        ("train_x", (5, 2), float("nan"), "train_x[5, 2] is nan"),
        ("test_x", (7, 0), float("inf"), "test_x[7, 0] is inf"),
        ("test_x", (0, 7), -float("inf"), "test_x[0, 7] is -inf"),
    ],
)
def test_non_finite_inputs_are_refused_naming_the_array_and_index(which, index, value, shown):
    # (one NaN made every standardised input NaN; the run "diverged at step 0")
    x, y, tx, ty = blobs()
    arrays = {"train_x": x.clone(), "train_y": y, "test_x": tx.clone(), "test_y": ty}
    arrays[which][index] = value
    arrays[which][index[0] + 1, 0] = float("nan")  # a later one is not the one named
    with pytest.raises(ValueError, match=re.escape(shown) + ": inputs must be finite"):
        dataset_from(**arrays)
    with pytest.raises(ValueError, match=re.escape(shown)):
        dataset_from(**{k: v.numpy() for k, v in arrays.items()})
    with pytest.raises(ValueError, match=re.escape(shown)):
        runs.register_dataset("direct", splits(**{which: arrays[which]}))


def test_non_finite_inputs_of_a_dataset_object_and_of_images_are_refused():
    x, y, tx, ty = blobs()
    x = x.clone()
    x[3, 1] = float("nan")
    train = torch.utils.data.TensorDataset(x, y)
    with pytest.raises(ValueError, match=re.escape("train_x[3, 1] is nan")):
        dataset_from(train=train, test=torch.utils.data.TensorDataset(tx, ty))
    images = torch.zeros(4, 1, 3, 3)
    images[2, 0, 1, 2] = float("inf")
    with pytest.raises(ValueError, match=re.escape("train_x[2, 0, 1, 2] is inf")):
        dataset_from(
            images, torch.zeros(4, dtype=torch.long), images[:1] * 0, torch.zeros(1).long()
        )


def test_a_float64_value_beyond_float32_is_refused_as_overflow():
    x, y, tx, ty = blobs()
    big = x.double().numpy()
    big[4, 3] = 1e300  # inf once converted to float32
    message = "train_x[4, 3] is 1e+300, beyond the range of torch.float32"
    with pytest.raises(ValueError, match=re.escape(message)):
        dataset_from(big, y, tx, ty)


def test_finite_check_covers_every_chunk(monkeypatch):
    from runs import data as runs_data

    # two examples of 8 values a chunk (raising=False: the same test runs on code without chunks)
    monkeypatch.setattr(runs_data, "_FINITE_CHUNK", 16, raising=False)
    x, y, tx, ty = blobs()
    x = x.clone()
    x[27, 6] = float("nan")
    with pytest.raises(ValueError, match=re.escape("train_x[27, 6] is nan")):
        dataset_from(x, y, tx, ty)
    assert torch.equal(dataset_from(x.nan_to_num(), y, tx, ty).train_x, x.nan_to_num())


# ---------------------------------------------------- F4: NumPy byte order and dtypes refused
def test_big_endian_numpy_arrays_are_converted():
    x, y, tx, ty = (t.numpy() for t in blobs())
    data = dataset_from(x.astype(">f4"), y.astype(">i4"), tx.astype(">f8"), ty.astype(">i8"))
    assert torch.equal(data.train_x, torch.from_numpy(x))
    assert torch.equal(data.train_y, torch.from_numpy(y))
    assert torch.equal(data.test_x, torch.from_numpy(tx))
    assert torch.equal(data.test_y, torch.from_numpy(ty))


@pytest.mark.parametrize(
    ("which", "dtype", "shown"),
    [("train_y", object, "object"), ("test_y", str, "<U"), ("train_x", np.longdouble, "float")],
)
def test_numpy_arrays_that_are_not_numbers_are_refused_naming_the_array(which, dtype, shown):
    arrays = dict(zip(("train_x", "train_y", "test_x", "test_y"), (t.numpy() for t in blobs())))
    arrays[which] = arrays[which].astype(dtype)
    pattern = rf"{which} must be a NumPy array of numbers \(.*float64\), got dtype {shown}"
    with pytest.raises(TypeError, match=pattern):
        dataset_from(**arrays)


# ----------------------------------------------------- F5: factory options without a default
class RequiredWidth(nn.Module):
    def __init__(self, input_shape, num_classes, *, hidden):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(input_shape[0], hidden), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.body(x)


def required_width(input_shape, num_classes, hidden):  # positional or keyword, no default
    return RequiredWidth(input_shape, num_classes, hidden=hidden)


@pytest.mark.parametrize("factory", [RequiredWidth, required_width])
def test_a_factory_whose_option_has_no_default_is_registered(factory):
    runs.register_model("fix-required", factory)
    model = build_model("fix-required", (8,), 3, hidden=5)
    assert model.body[0].out_features == 5
    message = "model 'fix-required': missing option(s) hidden"
    with pytest.raises(ValueError, match=re.escape(message)):
        build_model("fix-required", (8,), 3)


def test_factories_that_cannot_take_the_options_by_keyword_are_refused():
    def positional_only(input_shape, num_classes, hidden, /):
        return net(input_shape, num_classes)

    def keyword_shapes(*, input_shape, num_classes):
        return net(input_shape, num_classes)

    for factory in (positional_only, keyword_shapes):
        with pytest.raises(TypeError, match=r"cannot be called as factory\(input_shape"):
            runs.register_model("fix-bad", factory)


def test_a_missing_option_is_refused_before_anything_is_written(tmp_path):
    logdir = tmp_path / "logs"
    runs.register_dataset("fix-blobs", dataset_from(*blobs()))
    runs.register_model("fix-required", RequiredWidth)
    with pytest.raises(ValueError, match=r"model 'fix-required': missing option\(s\) hidden"):
        runs.run(experiment(model="fix-required"), logdir=logdir)
    assert not logdir.exists()
    summary = runs.run(experiment(model="fix-required", options={"hidden": 4}), logdir=logdir)
    assert summary["runs"][0]["status"] == "finished"


# --------------------------------------------------------------- F6: the MNIST-1D cache check
@pytest.mark.parametrize(
    ("key", "change", "message"),
    [
        ("y", lambda a: np.where(np.arange(len(a)) == len(a) - 1, 42, a), "y[19] is 42"),
        ("y_test", lambda a: np.where(np.arange(len(a)) == 0, -1, a), "y_test[0] is -1"),
        ("x_test", lambda a: (a * 100).astype(np.int64), "inputs of dtypes float64 and int64"),
    ],
    ids=["label-42", "label-minus-1", "integer-x_test"],
)
def test_a_cache_with_bad_labels_or_integer_inputs_is_refused(tmp_path, key, change, message):
    sizes = (20, 10)
    arrays = runs_mnist1d.generate_mnist1d(sizes)
    path = runs_mnist1d.mnist1d_cache_path(tmp_path, sizes)
    np.savez(path, **{**arrays, key: change(arrays[key])})
    pattern = f"malformed MNIST-1D cache: {re.escape(message)}.*delete it to regenerate"
    with pytest.raises(ValueError, match=pattern) as info:
        load_dataset("mnist1d", cache_dir=tmp_path, train_examples=20, test_examples=10)
    assert str(path) in str(info.value)
    path.unlink()  # deleted, it is regenerated
    data = load_dataset("mnist1d", cache_dir=tmp_path, train_examples=20, test_examples=10)
    assert int(data.train_y.max()) <= 9


# ------------------------------------------------------------------ F7: refusals that help
def test_the_label_range_error_names_the_split_value_and_index():
    x, y, tx, ty = blobs()
    ty = ty.clone()
    ty[4] = 7
    with pytest.raises(ValueError, match=re.escape("dataset_from: test_y[4] is 7: labels must")):
        dataset_from(x, y, tx, ty, num_classes=3)


def test_numpy_integers_are_accepted_as_num_classes_and_shapes():
    x, y, tx, ty = blobs()
    classes = y.numpy().max() + 2  # a NumPy integer
    assert not isinstance(classes, int)
    data = dataset_from(x, y, tx, ty, num_classes=classes)
    assert data.num_classes == 4
    assert type(data.num_classes) is int
    hand = DatasetSplits("d", x, y, tx, ty, num_classes=np.int64(3), input_shape=(np.int64(8),))
    assert type(hand.num_classes) is int
    assert type(hand.input_shape[0]) is int
    runs.register_dataset("direct", hand)
    model = build_model("logistic", (np.int64(8),), np.int64(3))
    assert model(x).shape == (30, 3)
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        dataset_from(x, y, tx, ty, num_classes=np.bool_(True))


class Files(torch.utils.data.Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, i):
        return np.load(f"/nonexistent/stepsize-x{i}.npy"), 0


def test_an_exception_of_the_users_dataset_propagates_as_itself():
    with pytest.raises(FileNotFoundError, match=re.escape("stepsize-x0.npy")) as info:
        dataset_from(train=Files(), test=Files())
    assert any("item 0 of the Dataset given as train=" in note for note in info.value.__notes__)


def test_an_item_that_is_not_a_pair_is_still_a_type_error():
    items = [(torch.zeros(2), 0, 1)] * 3
    with pytest.raises(TypeError, match=r"train: item 0 of the Dataset is not an \(x, y\) pair"):
        dataset_from(train=items, test=items)


def test_missing_mnist_files_are_named(tmp_path):
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        (tmp_path / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
        (tmp_path / "MNIST" / "raw" / name).write_bytes(b"")
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")  # one file: not the closest
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(info.value)
    lacks = f"{tmp_path / 'MNIST' / 'raw'} holds 3 of the 4 files but lacks t10k-labels-idx1-ubyte"
    assert lacks in message
    assert "searched" in message  # as before
    assert "expected files" in message


def test_an_empty_data_dir_names_no_closest_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar10", data_dir=tmp_path)
    assert "lacks" not in str(info.value)


# ------------------------------------- F3: dataset sizes are part of the file's validation
SIZES_TOML = """
name = "m1d"
[dataset]
name = "mnist1d"
train_examples = 33
test_examples = 5
[model]
name = "logistic"
[train]
steps = 1
batch_size = 8
[optimizer]
name = "sgd"
lr = 0.1
[[variants]]
name = "a"
[[variants]]
name = "b"
dataset = {name = "mnist1d", train_examples = 40, test_examples = 10}
"""


@pytest.mark.parametrize(
    ("text", "selected", "located"),
    [
        # a total that is not a multiple of 10, found even when only the other variant runs
        (SIZES_TOML, "a,b", "dataset.train_examples: train_examples + test_examples = 33 + 5"),
        (SIZES_TOML, "b", "dataset.train_examples: train_examples + test_examples = 33 + 5"),
        # a size for a dataset that is not generated, at the key the file wrote
        (
            SIZES_TOML.replace('name = "mnist1d"\ntrain', 'name = "fashion-mnist"\ntrain'),
            "b",
            "dataset.train_examples: train_examples=33: only dataset 'mnist1d'",
        ),
    ],
    ids=["total-all-variants", "total-other-variant", "size-of-a-dataset-not-generated"],
)
def test_dataset_sizes_are_refused_at_their_location_for_every_variant(
    tmp_path, capsys, monkeypatch, text, selected, located
):
    from runs.cli import main

    monkeypatch.setenv("STEPSIZE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "exp.toml"
    path.write_text(text)
    logs = tmp_path / "logs"
    code = main(["run", str(path), "--logdir", str(logs), "--quiet", "--variants", selected])
    error = capsys.readouterr().err
    assert code == 2, error
    assert str(path) in error
    assert located in error
    assert not logs.exists()
    assert not (tmp_path / "cache").exists()
