"""Datasets: MNIST-1D against the package's own generator and its cache; IDX and CIFAR-10 binary
files written here byte by byte in their published formats and read back exactly; error cases;
deterministic mini-batches."""

import dataclasses
import gzip
import itertools
import random
import shutil
import struct

import numpy as np
import pytest
import torch

from runs import mnist1d as runs_mnist1d
from runs.batches import batches, batches_per_epoch
from runs.data import DATASETS, load_dataset
from runs.dataset_files import expected_files, find_dataset_files, read_cifar10_batch, read_idx

# ---------------------------------------------------------------------------------------------
# MNIST-1D


@pytest.fixture(scope="module")
def mnist1d_reference():
    """The package's own generator with its default arguments, called directly."""
    from mnist1d.data import get_dataset_args, make_dataset

    state = np.random.get_state()  # noqa: NPY002
    dataset = make_dataset(get_dataset_args())
    np.random.set_state(state)  # noqa: NPY002
    return dataset


@pytest.fixture(scope="module")
def mnist1d_cache(tmp_path_factory):
    """A cache directory filled by a first load_dataset call."""
    cache = tmp_path_factory.mktemp("cache")
    load_dataset("mnist1d", cache_dir=cache, normalize=False)
    return cache


def test_mnist1d_is_the_package_generator_with_default_arguments(mnist1d_reference, mnist1d_cache):
    splits = load_dataset("mnist1d", cache_dir=mnist1d_cache, normalize=False)
    assert splits.name == "mnist1d"
    assert splits.num_classes == 10
    assert splits.input_shape == (40,)
    assert splits.train_x.shape == (4000, 40)
    assert splits.test_x.shape == (1000, 40)
    assert splits.train_x.dtype == torch.float32
    assert splits.train_y.dtype == torch.int64
    assert splits.mean == ()
    assert splits.std == ()
    expected = {
        "train_x": mnist1d_reference["x"],
        "train_y": mnist1d_reference["y"],
        "test_x": mnist1d_reference["x_test"],
        "test_y": mnist1d_reference["y_test"],
    }
    for field, array in expected.items():
        tensor = getattr(splits, field)
        assert np.array_equal(tensor.numpy(), array.astype(tensor.numpy().dtype)), field
    assert sorted(splits.train_y.unique().tolist()) == list(range(10))


def test_batched_mnist1d_generator_gives_the_packages_float64_arrays(mnist1d_reference):
    """``runs.mnist1d.make_mnist1d_batched`` (the package's random draws in its order, the
    arithmetic on all examples at once) against the package's ``make_dataset`` called directly:
    the same float64 bits at the default arguments, and at 1,230 examples split 1,000 / 230. It
    restores nothing itself: the caller (``generate_mnist1d``) does, as checked here."""
    from mnist1d.data import get_dataset_args, make_dataset

    state = np.random.get_state()  # noqa: NPY002
    batched = runs_mnist1d.make_mnist1d_batched(get_dataset_args())
    args = get_dataset_args()
    args.num_samples, args.train_split = 1230, 1000.5 / 1230
    other = runs_mnist1d.make_mnist1d_batched(args)
    args = get_dataset_args()
    args.num_samples, args.train_split = 1230, 1000.5 / 1230
    reference = make_dataset(args)
    np.random.set_state(state)  # noqa: NPY002
    for key in ("x", "y", "x_test", "y_test"):
        assert batched[key].dtype == mnist1d_reference[key].dtype, key
        assert np.array_equal(batched[key], mnist1d_reference[key]), key
        assert np.array_equal(other[key], reference[key]), key
    assert other["x"].shape == (1000, 40)
    generated = runs_mnist1d.generate_mnist1d((1000, 230))
    assert np.array_equal(generated["x_test"], reference["x_test"])
    assert np.array_equal(np.random.get_state()[1], state[1])  # noqa: NPY002


def test_another_mnist1d_version_runs_the_packages_own_generator(monkeypatch):
    """The batched generator is used only for the package versions it was checked against."""
    import mnist1d.data

    calls = []
    monkeypatch.setattr(runs_mnist1d, "BATCHED_VERSIONS", ())
    monkeypatch.setattr(mnist1d.data, "make_dataset", lambda args: calls.append(args) or {})
    monkeypatch.setattr(runs_mnist1d, "_MNIST1D_KEYS", ())
    runs_mnist1d.generate_mnist1d((90, 10))
    assert len(calls) == 1
    assert calls[0].num_samples == 100


def test_mnist1d_at_a_chosen_size_is_the_package_generator_with_those_sizes(tmp_path):
    # The reference: the package's generator called directly with num_samples and a split
    # fraction that gives 900 / 100 (the package's own default arguments otherwise).
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split = 1000, 0.9
    state = np.random.get_state()  # noqa: NPY002
    reference = make_dataset(args)
    np.random.set_state(state)  # noqa: NPY002
    splits = load_dataset(
        "mnist1d", cache_dir=tmp_path, normalize=False, train_examples=900, test_examples=100
    )
    assert splits.train_x.shape == (900, 40)
    assert splits.test_x.shape == (100, 40)
    assert np.array_equal(splits.train_x.numpy(), reference["x"].astype(np.float32))
    assert np.array_equal(splits.test_y.numpy(), reference["y_test"])
    assert [p.name.split("-")[-2:] for p in tmp_path.iterdir()] == [["900", "100.npz"]]
    again = load_dataset(
        "mnist1d", cache_dir=tmp_path, normalize=False, train_examples=900, test_examples=100
    )
    assert torch.equal(again.train_x, splits.train_x)


@pytest.mark.parametrize(
    ("name", "sizes", "message"),
    [
        ("mnist1d", {"train_examples": 900, "test_examples": 105}, "multiple of 10"),
        ("mnist1d", {"train_examples": 0}, "train_examples"),
        ("fashion-mnist", {"test_examples": 100}, "only dataset 'mnist1d'"),
    ],
)
def test_mnist1d_sizes_are_checked(tmp_path, name, sizes, message):
    with pytest.raises(ValueError, match=message):
        load_dataset(name, cache_dir=tmp_path, data_dir=tmp_path, **sizes)
    assert list(tmp_path.iterdir()) == []


def test_mnist1d_cache_of_another_size_is_refused(tmp_path):
    load_dataset("mnist1d", cache_dir=tmp_path, train_examples=90, test_examples=10)
    path = next(tmp_path.iterdir())
    path.rename(runs_mnist1d.mnist1d_cache_path(tmp_path, (80, 20)))
    with pytest.raises(ValueError, match="expected 80 and 20"):
        load_dataset("mnist1d", cache_dir=tmp_path, train_examples=80, test_examples=20)


def test_mnist1d_cache_file_is_written_once_and_reused(mnist1d_cache, monkeypatch):
    files = sorted(p.name for p in mnist1d_cache.iterdir())
    assert len(files) == 1  # no temporary file left behind
    assert files[0].startswith("mnist1d-")
    assert files[0].endswith(".npz")
    before = load_dataset("mnist1d", cache_dir=mnist1d_cache, normalize=False)

    def no_generation(*sizes):
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(runs_mnist1d, "generate_mnist1d", no_generation)
    after = load_dataset("mnist1d", cache_dir=mnist1d_cache, normalize=False)
    assert after.source == str(mnist1d_cache / files[0])
    for field in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(before, field), getattr(after, field))
    # The cache holds plain arrays: it loads without pickle support.
    with np.load(mnist1d_cache / files[0], allow_pickle=False) as stored:
        assert sorted(stored.files) == ["x", "x_test", "y", "y_test"]


def test_mnist1d_regeneration_is_deterministic(mnist1d_cache, tmp_path):
    first = load_dataset("mnist1d", cache_dir=mnist1d_cache, normalize=False)
    # The package's generator reseeds Python's and NumPy's global generators; ours restores them.
    random.seed(7)
    np.random.seed(7)  # noqa: NPY002
    expected_python, expected_numpy = random.random(), np.random.rand()  # noqa: NPY002
    random.seed(7)
    np.random.seed(7)  # noqa: NPY002
    second = load_dataset("mnist1d", cache_dir=tmp_path, normalize=False)  # generates afresh
    assert random.random() == expected_python
    assert np.random.rand() == expected_numpy  # noqa: NPY002
    assert second.source.startswith(str(tmp_path))
    for field in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, field), getattr(second, field))


def test_cache_dir_defaults_to_env_var_then_home(monkeypatch, tmp_path, mnist1d_cache):
    monkeypatch.setenv("STEPSIZE_CACHE", str(tmp_path / "env-cache"))
    assert runs_mnist1d.default_cache_dir() == tmp_path / "env-cache"
    (tmp_path / "env-cache").mkdir()
    cached = next(mnist1d_cache.iterdir())
    shutil.copy(cached, tmp_path / "env-cache" / cached.name)
    monkeypatch.setattr(
        runs_mnist1d, "generate_mnist1d", lambda *sizes: pytest.fail("should read the cache")
    )
    splits = load_dataset("mnist1d", normalize=False)
    assert splits.source == str(tmp_path / "env-cache" / cached.name)
    monkeypatch.delenv("STEPSIZE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert runs_mnist1d.default_cache_dir() == tmp_path / "home" / ".cache" / "stepsize"


def test_malformed_mnist1d_cache_raises_value_error(tmp_path):
    path = runs_mnist1d.mnist1d_cache_path(tmp_path)
    path.write_bytes(b"not an npz file")
    with pytest.raises(ValueError, match="unreadable MNIST-1D cache") as info:
        load_dataset("mnist1d", cache_dir=tmp_path)
    assert str(path) in str(info.value)
    np.savez(path, x=np.zeros((3, 40)), y=np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="malformed MNIST-1D cache: holds arrays"):
        load_dataset("mnist1d", cache_dir=tmp_path)


def test_normalization_uses_training_statistics_only(mnist1d_cache):
    raw = load_dataset("mnist1d", cache_dir=mnist1d_cache, normalize=False)
    normalized = load_dataset("mnist1d", cache_dir=mnist1d_cache)
    train = raw.train_x.numpy().astype(np.float64)
    mean, std = train.mean(), train.std()  # one channel: scalar statistics
    assert normalized.mean == pytest.approx((mean,), rel=1e-6)
    assert normalized.std == pytest.approx((std,), rel=1e-6)
    expected_test = (raw.test_x.numpy().astype(np.float64) - mean) / std
    np.testing.assert_allclose(normalized.test_x.numpy(), expected_test, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(normalized.train_x.numpy(), (train - mean) / std, atol=1e-5)
    assert torch.equal(normalized.train_y, raw.train_y)


# ---------------------------------------------------------------------------------------------
# IDX files, written here following LeCun's format description


def write_idx(path, array, type_code=0x08, dtype=">u1", compress=False):
    """Magic 00 00 <type> <ndim>, ndim big-endian uint32 sizes, big-endian row-major values."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.asarray(array, dtype=dtype).tobytes(order="C")
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def make_idx_dataset(folder, rng, *, compress=False, train=5, test=3, rows=4, cols=3):
    """Random images (count, rows, cols) and labels; returns the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (train, rows, cols), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (test, rows, cols), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, test, dtype=np.uint8),
    }
    for file_name, array in arrays.items():
        write_idx(folder / file_name, array, compress=compress)
    return arrays


def unit_floats(pixels):
    return torch.from_numpy(pixels.astype(np.float32) / np.float32(255))


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_dataset_reads_back_exact_values(tmp_path, name, compress):
    arrays = make_idx_dataset(tmp_path, np.random.default_rng(1), compress=compress)
    splits = load_dataset(name, data_dir=tmp_path, normalize=False)
    assert splits.name == name
    assert splits.input_shape == (1, 4, 3)
    assert splits.num_classes == 10
    assert splits.source == str(tmp_path)
    assert splits.train_x.dtype == torch.float32
    assert splits.train_y.dtype == torch.int64
    assert torch.equal(splits.train_x[:, 0], unit_floats(arrays["train-images-idx3-ubyte"]))
    assert torch.equal(splits.test_x[:, 0], unit_floats(arrays["t10k-images-idx3-ubyte"]))
    assert splits.train_y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert splits.test_y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


@pytest.mark.parametrize(
    ("name", "subfolder"),
    [
        ("mnist", "mnist"),
        ("mnist", "mnist/raw"),
        ("mnist", "MNIST/raw"),
        ("fashion-mnist", "fashion-mnist"),
        ("fashion-mnist", "FashionMNIST/raw"),
    ],
)
def test_idx_dataset_found_in_usual_subfolders(tmp_path, name, subfolder):
    arrays = make_idx_dataset(tmp_path / subfolder, np.random.default_rng(2))
    splits = load_dataset(name, data_dir=tmp_path, normalize=False)
    assert splits.source == str(tmp_path / subfolder)
    assert splits.train_y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()


def test_mnist_and_fashion_mnist_side_by_side_are_told_apart(tmp_path):
    digits = make_idx_dataset(tmp_path / "MNIST" / "raw", np.random.default_rng(3), train=6)
    clothes = make_idx_dataset(tmp_path / "FashionMNIST" / "raw", np.random.default_rng(4), train=7)
    mnist = load_dataset("mnist", data_dir=tmp_path, normalize=False)
    fashion = load_dataset("fashion-mnist", data_dir=tmp_path, normalize=False)
    assert mnist.train_y.tolist() == digits["train-labels-idx1-ubyte"].tolist()
    assert fashion.train_y.tolist() == clothes["train-labels-idx1-ubyte"].tolist()


def test_plain_file_preferred_over_gzipped_copy(tmp_path):
    arrays = make_idx_dataset(tmp_path, np.random.default_rng(5))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8), compress=True)
    _, paths = find_dataset_files("mnist", tmp_path)
    assert [p.name for p in paths] == list(arrays)


def test_idx_normalization_per_channel_from_training_split(tmp_path):
    arrays = make_idx_dataset(tmp_path, np.random.default_rng(6), train=50, test=20)
    splits = load_dataset("mnist", data_dir=tmp_path)
    train = arrays["train-images-idx3-ubyte"].astype(np.float64) / 255
    test = arrays["t10k-images-idx3-ubyte"].astype(np.float64) / 255
    mean, std = train.mean(), train.std()
    assert splits.mean == pytest.approx((mean,), rel=1e-6)
    assert splits.std == pytest.approx((std,), rel=1e-6)
    np.testing.assert_allclose(splits.test_x[:, 0].numpy(), (test - mean) / std, atol=1e-5)


@pytest.mark.parametrize(
    ("type_code", "dtype"),
    [(0x08, ">u1"), (0x09, ">i1"), (0x0B, ">i2"), (0x0C, ">i4"), (0x0D, ">f4"), (0x0E, ">f8")],
)
def test_read_idx_every_type_code(tmp_path, type_code, dtype):
    values = np.arange(-3, 21).reshape(2, 3, 4) * (1 if dtype.endswith("1") else 1000)
    if dtype == ">u1":
        values = values + 3
    if dtype.startswith(">f"):
        values = values / 7
    path = write_idx(tmp_path / "values-idx", values, type_code=type_code, dtype=dtype)
    result = read_idx(path)
    assert result.shape == (2, 3, 4)
    assert result.dtype.isnative
    assert np.array_equal(result, np.asarray(values, dtype=dtype))


def test_missing_dataset_names_dataset_folders_and_files(tmp_path):
    make_idx_dataset(tmp_path, np.random.default_rng(7))
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    message = str(info.value)
    assert "'fashion-mnist'" in message
    assert str(tmp_path) in message
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    for file_name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        assert file_name in message
    assert "t10k-images-idx3-ubyte" in message
    assert "t10k-labels-idx1-ubyte" in message
    assert ".gz" in message


def test_missing_data_dir_raises_file_not_found():
    with pytest.raises(FileNotFoundError, match=r"'mnist' is read from a data directory.*t10k"):
        load_dataset("mnist")
    with pytest.raises(FileNotFoundError, match=r"'cifar10' not found.*data_batch_1\.bin"):
        load_dataset("cifar10", data_dir="/nonexistent/stepsize-data")


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="unknown dataset 'svhn'") as info:
        load_dataset("svhn")
    for name in DATASETS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="datasets read from files: mnist, fashion-mnist"):
        expected_files("mnist1d")


def malformed_idx_cases():
    """(file to corrupt, bytes written, expected message)."""
    labels_header = bytes([0, 0, 0x08, 1]) + struct.pack(">I", 5)
    images_header = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 5, 4, 3)
    return [
        ("train-labels-idx1-ubyte", b"\x00\x00", "shorter than the magic number"),
        ("train-labels-idx1-ubyte", b"\x01\x00\x08\x01" + bytes(9), "magic number starts with"),
        ("train-labels-idx1-ubyte", b"\x00\x00\x07\x01" + bytes(9), "unknown IDX type code 0x07"),
        ("train-labels-idx1-ubyte", b"\x00\x00\x08\x00", "declares 0 dimensions"),
        ("train-images-idx3-ubyte", images_header[:10], "truncated IDX header"),
        ("train-labels-idx1-ubyte", labels_header + bytes(4), "holds 4 data bytes"),
        ("train-labels-idx1-ubyte", labels_header + bytes(6), "holds 6 data bytes"),
        ("train-images-idx3-ubyte", images_header + bytes(59), "holds 59 data bytes"),
        (
            "train-images-idx3-ubyte",
            bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 0, 4, 3),
            "holds no images",
        ),
        ("train-labels-idx1-ubyte", labels_header + bytes([0, 1, 2, 10, 3]), "label 10 at index 3"),
        (
            "train-labels-idx1-ubyte",
            bytes([0, 0, 0x08, 1]) + struct.pack(">I", 4) + bytes(4),
            "holds 4 labels but train-images-idx3-ubyte holds 5 images",
        ),
        (
            "train-labels-idx1-ubyte",
            bytes([0, 0, 0x08, 2]) + struct.pack(">2I", 5, 1) + bytes(5),
            "a labels file needs 1 dimension",
        ),
        (
            "train-images-idx3-ubyte",
            bytes([0, 0, 0x08, 2]) + struct.pack(">2I", 5, 12) + bytes(60),
            "an images file needs 3 dimensions",
        ),
        (
            "train-images-idx3-ubyte",
            bytes([0, 0, 0x0C, 3]) + struct.pack(">3I", 5, 4, 3) + bytes(240),
            "IDX type is int32",
        ),
        (
            "t10k-images-idx3-ubyte",
            bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 3, 3, 4) + bytes(36),
            "share one image shape",
        ),
    ]


@pytest.mark.parametrize(("file_name", "content", "message"), malformed_idx_cases())
def test_malformed_idx_file_raises_value_error_naming_it(tmp_path, file_name, content, message):
    make_idx_dataset(tmp_path, np.random.default_rng(8))
    (tmp_path / file_name).write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        load_dataset("mnist", data_dir=tmp_path)
    named = tmp_path if message == "share one image shape" else tmp_path / file_name
    assert str(named) in str(info.value)


def test_corrupt_gzip_raises_value_error_naming_it(tmp_path):
    make_idx_dataset(tmp_path, np.random.default_rng(9), compress=True)
    broken = tmp_path / "t10k-images-idx3-ubyte.gz"
    broken.write_bytes(broken.read_bytes()[:15])
    with pytest.raises(ValueError, match="not a valid gzip file") as info:
        load_dataset("mnist", data_dir=tmp_path)
    assert str(broken) in str(info.value)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 binary version, written here following Krizhevsky's format description


def write_cifar_batch(path, images, labels, compress=False):
    """Each record: 1 label byte, then 1024 red, 1024 green, 1024 blue bytes, rows in order."""
    records = []
    for image, label in zip(images, labels):
        red, green, blue = image[0], image[1], image[2]
        planes = b"".join(bytes(row.tolist()) for plane in (red, green, blue) for row in plane)
        records.append(bytes([int(label)]) + planes)
    payload = b"".join(records)
    if compress:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def make_cifar(folder, rng, *, per_batch=2, test=3, compress=False):
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for file_name in names:
        count = test if file_name == "test_batch.bin" else per_batch
        images = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        write_cifar_batch(folder / file_name, images, labels, compress=compress)
        written[file_name] = (images, labels)
    return written


@pytest.mark.parametrize(("subfolder", "compress"), [("", False), ("cifar-10-batches-bin", True)])
def test_cifar10_reads_back_exact_values(tmp_path, subfolder, compress):
    written = make_cifar(tmp_path / subfolder, np.random.default_rng(10), compress=compress)
    splits = load_dataset("cifar10", data_dir=tmp_path, normalize=False)
    assert splits.input_shape == (3, 32, 32)
    assert splits.source == str(tmp_path / subfolder)
    train_images = np.concatenate([written[f"data_batch_{i}.bin"][0] for i in range(1, 6)])
    train_labels = np.concatenate([written[f"data_batch_{i}.bin"][1] for i in range(1, 6)])
    assert torch.equal(splits.train_x, unit_floats(train_images))
    assert splits.train_y.tolist() == train_labels.tolist()
    assert torch.equal(splits.test_x, unit_floats(written["test_batch.bin"][0]))
    assert splits.test_y.tolist() == written["test_batch.bin"][1].tolist()
    # The first byte after the label is the top-left red pixel.
    first = (tmp_path / subfolder / "data_batch_1.bin").with_suffix(
        ".bin.gz" if compress else ".bin"
    )
    raw = gzip.decompress(first.read_bytes()) if compress else first.read_bytes()
    assert splits.train_x[0, 0, 0, 0].item() == np.float32(raw[1]) / np.float32(255)
    assert splits.train_x[0, 2, 31, 31].item() == np.float32(raw[3072]) / np.float32(255)


def test_cifar10_normalization_is_per_channel(tmp_path):
    written = make_cifar(tmp_path, np.random.default_rng(11))
    splits = load_dataset("cifar10", data_dir=tmp_path)
    train = np.concatenate([written[f"data_batch_{i}.bin"][0] for i in range(1, 6)]) / 255
    mean, std = train.mean(axis=(0, 2, 3)), train.std(axis=(0, 2, 3))
    assert splits.mean == pytest.approx(tuple(mean), rel=1e-6)
    assert splits.std == pytest.approx(tuple(std), rel=1e-6)
    test = written["test_batch.bin"][0] / 255
    expected = (test - mean[None, :, None, None]) / std[None, :, None, None]
    np.testing.assert_allclose(splits.test_x.numpy(), expected, atol=1e-5)


def test_cifar10_malformed_batches_raise_value_error(tmp_path):
    make_cifar(tmp_path, np.random.default_rng(12))
    path = tmp_path / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(
        ValueError, match="6145 bytes is not a positive multiple of the 3073"
    ) as info:
        load_dataset("cifar10", data_dir=tmp_path)
    assert str(path) in str(info.value)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="0 bytes"):
        read_cifar10_batch(path)
    path.write_bytes(bytes([11]) + bytes(3072))
    with pytest.raises(ValueError, match=r"label 11 at index 0 is outside 0\.\.9"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar10_pickled_version_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for file_name in ["data_batch_1", "data_batch_2", "test_batch", "batches.meta"]:
        (folder / file_name).write_bytes(b"\x80\x04 a pickle")
    with pytest.raises(FileNotFoundError, match="pickled 'python version'") as info:
        load_dataset("cifar10", data_dir=tmp_path)
    assert "test_batch.bin" in str(info.value)


def test_splits_are_frozen(tmp_path):
    make_idx_dataset(tmp_path, np.random.default_rng(13))
    splits = load_dataset("mnist", data_dir=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        splits.train_x = splits.test_x
    assert "train_x" not in repr(splits)


# ---------------------------------------------------------------------------------------------
# Mini-batches


def test_batches_in_order_are_consecutive_slices():
    x, y = torch.arange(23.0).reshape(23, 1), torch.arange(23)
    got = list(batches(x, y, 5, shuffle=False, generator=None))
    assert [len(xb) for xb, _ in got] == [5, 5, 5, 5, 3]
    assert [yb.tolist() for _, yb in got][1] == [5, 6, 7, 8, 9]
    assert torch.equal(torch.cat([xb for xb, _ in got]), x)
    assert torch.equal(torch.cat([yb for _, yb in got]), y)
    dropped = list(batches(x, y, 5, shuffle=False, generator=None, drop_last=True))
    assert [len(xb) for xb, _ in dropped] == [5, 5, 5, 5]
    assert batches_per_epoch(23, 5) == 5
    assert batches_per_epoch(23, 5, drop_last=True) == 4
    assert batches_per_epoch(20, 5) == 4
    assert batches_per_epoch(0, 5) == 0


def test_mnist1d_paper_order_batch_100():
    # The paper's loop takes x_train[(step * 100) % 4000 :][:100]: batch k is rows 100k..100k+99.
    x, y = torch.randn(4000, 40), torch.randint(0, 10, (4000,))
    for k, (xb, yb) in enumerate(batches(x, y, 100, shuffle=False, generator=None)):
        start = (k * 100) % 4000
        assert torch.equal(xb, x[start : start + 100])
        assert torch.equal(yb, y[start : start + 100])
    assert k == 39


def test_shuffled_batches_are_a_seeded_permutation():
    x, y = torch.arange(50.0) * 10, torch.arange(50)
    one = list(batches(x, y, 8, shuffle=True, generator=torch.Generator().manual_seed(4)))
    two = list(batches(x, y, 8, shuffle=True, generator=torch.Generator().manual_seed(4)))
    other = list(batches(x, y, 8, shuffle=True, generator=torch.Generator().manual_seed(5)))
    order = torch.cat([yb for _, yb in one])
    assert sorted(order.tolist()) == list(range(50))
    assert order.tolist() != list(range(50))
    assert torch.equal(torch.cat([xb for xb, _ in one]), order * 10.0)  # x and y stay paired
    assert torch.equal(order, torch.cat([yb for _, yb in two]))
    assert not torch.equal(order, torch.cat([yb for _, yb in other]))
    # The order is torch.randperm with the same generator state.
    assert torch.equal(order, torch.randperm(50, generator=torch.Generator().manual_seed(4)))


def test_shuffled_epoch_resumes_with_islice():
    x, y = torch.randn(30, 2), torch.arange(30)
    full = list(batches(x, y, 4, shuffle=True, generator=torch.Generator().manual_seed(1)))
    resumed = itertools.islice(
        batches(x, y, 4, shuffle=True, generator=torch.Generator().manual_seed(1)), 3, None
    )
    for (xa, ya), (xb, yb) in zip(full[3:], resumed, strict=True):
        assert torch.equal(xa, xb)
        assert torch.equal(ya, yb)


def test_shuffle_without_generator_uses_global_rng():
    x, y = torch.randn(10, 2), torch.arange(10)
    torch.manual_seed(9)
    first = torch.cat([yb for _, yb in batches(x, y, 3, shuffle=True, generator=None)])
    torch.manual_seed(9)
    assert torch.equal(first, torch.randperm(10))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be a positive integer, got batch_size=0"),
        ({"batch_size": 2.0}, ValueError, "batch_size=2.0"),
        ({"y": torch.arange(9)}, ValueError, r"same number of examples .* \(10, 2\) and \(9,\)"),
        ({"x": [[1.0]] * 10}, TypeError, "x and y must be torch tensors, got list"),
        ({"generator": 3}, TypeError, "generator must be a torch.Generator or None, got 3"),
    ],
)
def test_batches_bad_arguments_raise_on_call(kwargs, error, message):
    arguments = {"x": torch.randn(10, 2), "y": torch.arange(10), "batch_size": 4}
    arguments.update({"shuffle": True, "generator": None, **kwargs})
    with pytest.raises(error, match=message):
        batches(**arguments)  # raises before the first batch is asked for
