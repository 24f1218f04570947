"""Datasets held in memory as torch tensors, and deterministic mini-batches over them.

Four datasets, none downloaded:

- ``"mnist1d"``: MNIST-1D (Greydanus & Kobak, "Scaling down deep learning with MNIST-1D",
  ICML 2024), generated locally by the ``mnist1d`` package's own generator
  (``mnist1d.data.make_dataset``) with its default arguments: 5000 examples split 4000 train /
  1000 test, 40 features, seed 42. ``train_examples`` / ``test_examples`` change only the
  generator's ``num_samples`` and ``train_split`` (e.g. 60,000 / 10,000, Fashion-MNIST's sizes);
  every other argument stays the package's. The generated arrays are cached as a ``.npz`` file
  (no pickle) under ``cache_dir``, one per size; later loads read the cache.
- ``"mnist"`` and ``"fashion-mnist"``: the IDX files of LeCun et al.'s MNIST and of Xiao et al.'s
  Fashion-MNIST (same format, same file names), read from ``data_dir``, gzipped or not.
- ``"cifar10"``: the *binary* version of CIFAR-10 (Krizhevsky, 2009), read from ``data_dir``.
  The pickled "python version" is never loaded: unpickling a file runs code from it.

Your own data: :func:`dataset_from` builds a :class:`DatasetSplits` from tensors, NumPy arrays
or map-style torch ``Dataset`` objects, and :func:`register_dataset` names it for experiments.

Every split comes back as float32 inputs ``x`` of shape ``(N, *input_shape)`` and int64 labels
``y`` of shape ``(N,)``. Images are scaled from bytes to [0, 1] (``pixel / 255``), laid out
channels first: ``(1, 28, 28)`` for (Fashion-)MNIST, ``(3, 32, 32)`` for CIFAR-10.

With ``normalize=True`` (the default) the inputs are standardised per channel,
``x' = (x - mean_c) / std_c``, with ``mean_c`` and the population ``std_c`` computed on the
*training split only* and applied to both splits. A channel is axis 1 of an image batch; MNIST-1D
has one channel, so one scalar mean and std. (The ``mnist1d`` generator already standardises its
arrays over train and test together; re-standardising with training statistics changes them only
slightly.) With ``normalize=False`` images stay in [0, 1], as d2l's ``load_data_fashion_mnist``
gives them, and MNIST-1D stays as the package generated it.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import math
import os
import random
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from runs.checkpoint import atomic_write

DATASETS: tuple[str, ...] = ("mnist1d", "mnist", "fashion-mnist", "cifar10")

NUM_CLASSES = 10  # every dataset here has ten classes, labelled 0..9


@dataclass(frozen=True, eq=False)
class DatasetSplits:
    """A dataset's train and test splits, in memory.

    Attributes:
        name: the dataset's name, one of ``DATASETS``.
        train_x, test_x: float32 inputs of shape ``(N, *input_shape)``.
        train_y, test_y: int64 labels in ``0 .. num_classes - 1``, shape ``(N,)``.
        num_classes: the number of classes.
        input_shape: the shape of one example, e.g. ``(40,)``, ``(1, 28, 28)``, ``(3, 32, 32)``.
        mean, std: the per-channel training-split statistics that were applied
            (``x' = (x - mean) / std``); empty tuples when not normalised.
        source: where the arrays were read from (a directory or the cache file).
    """

    name: str
    train_x: torch.Tensor = field(repr=False)
    train_y: torch.Tensor = field(repr=False)
    test_x: torch.Tensor = field(repr=False)
    test_y: torch.Tensor = field(repr=False)
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    source: str = ""


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    normalize: bool = True,
    train_examples: int | None = None,
    test_examples: int | None = None,
) -> DatasetSplits:
    """Load a dataset's train and test splits into memory.

    Args:
        name: one of ``DATASETS``: ``"mnist1d"``, ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``;
            or a name given to :func:`register_dataset` (a standardised copy when ``normalize``).
        data_dir: the directory holding the files of ``"mnist"``, ``"fashion-mnist"`` or
            ``"cifar10"`` (see ``expected_files`` for names and accepted sub-folders). Not used for
            ``"mnist1d"``.
        cache_dir: where the generated MNIST-1D arrays are cached; default ``default_cache_dir()``
            (``$STEPSIZE_CACHE`` or ``~/.cache/stepsize``). Not used for the other datasets.
        normalize: standardise each input channel with the training split's mean and population
            standard deviation, applied to both splits.
        train_examples, test_examples: ``"mnist1d"`` only: the sizes of the generated splits
            (default 4000 and 1000, the package's); their sum must be a multiple of 10 (the
            generator makes the same number of examples of each digit).

    Raises:
        ValueError: unknown ``name``, or a malformed file (the message names the file and what is
            wrong).
        FileNotFoundError: the dataset's files are not in ``data_dir``; the message names the
            dataset, the directories searched and the expected file names.
    """
    sizes = {"train_examples": train_examples, "test_examples": test_examples}
    if name != "mnist1d" and any(v is not None for v in sizes.values()):
        given = next(key for key, value in sizes.items() if value is not None)
        raise ValueError(
            f"{given}: only dataset 'mnist1d' is generated at a chosen size, not {name!r}"
        )
    if name in _REGISTERED:
        return _registered_copy(_REGISTERED[name], normalize)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(dataset_names())}")
    if name == "mnist1d":
        arrays, source = _load_mnist1d_arrays(
            cache_dir, mnist1d_sizes(train_examples, test_examples)
        )
        train_x = torch.from_numpy(arrays["x"]).to(torch.float32)
        test_x = torch.from_numpy(arrays["x_test"]).to(torch.float32)
        train_y = torch.from_numpy(arrays["y"]).to(torch.int64)
        test_y = torch.from_numpy(arrays["y_test"]).to(torch.int64)
    else:
        folder, paths = find_dataset_files(name, data_dir)
        read = _read_cifar10_split if name == "cifar10" else _read_idx_split
        train_file_count = len(paths) - 1 if name == "cifar10" else 2  # the rest is the test split
        train_images, train_labels = read(paths[:train_file_count])
        test_images, test_labels = read(paths[train_file_count:])
        if train_images.shape[1:] != test_images.shape[1:]:
            raise ValueError(
                f"{folder}: training images have shape {train_images.shape[1:]} but test images "
                f"have shape {test_images.shape[1:]}; both splits must share one image shape"
            )
        train_x, test_x = _bytes_to_unit_floats(train_images), _bytes_to_unit_floats(test_images)
        train_y = torch.from_numpy(train_labels).to(torch.int64)
        test_y = torch.from_numpy(test_labels).to(torch.int64)
        source = str(folder)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    if normalize:
        mean, std = _standardize_in_place(train_x, test_x)
    return DatasetSplits(
        name=name,
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=NUM_CLASSES,
        input_shape=tuple(train_x.shape[1:]),
        mean=mean,
        std=std,
        source=source,
    )


# ----------------------------------------------------------------------------------------------
# Datasets of the user: in memory, registered by name

_REGISTERED: dict[str, DatasetSplits] = {}


_DIGESTS: dict[str, str] = {}  # name -> hash of the registered tensors


def registered_digest(name: object) -> str | None:
    """A hash of the tensors registered under ``name`` (None when it is not registered)."""
    return _DIGESTS.get(name) if isinstance(name, str) else None


def _digest(data: DatasetSplits) -> str:
    import hashlib

    hasher = hashlib.sha256(repr((data.num_classes, data.input_shape)).encode())
    for tensor in (data.train_x, data.train_y, data.test_x, data.test_y):
        hasher.update(repr((str(tensor.dtype), tuple(tensor.shape))).encode())
        hasher.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return hasher.hexdigest()[:16]


def dataset_names() -> tuple[str, ...]:
    """Every dataset name an experiment may use: the bundled ``DATASETS``, then registered ones."""
    return (*DATASETS, *_REGISTERED)


def registered_datasets() -> dict[str, DatasetSplits]:
    """The user-registered datasets by name (a copy of the registry)."""
    return dict(_REGISTERED)


def _as_tensor(label: str, value: object, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{label} must be a torch.Tensor or a NumPy array, got {type(value).__name__}"
        )
    if label.endswith("_y"):
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            raise ValueError(f"{label} must hold integer class labels, got dtype {value.dtype}")
        if value.dim() != 1:
            raise ValueError(f"{label} must have shape (N,), got {tuple(value.shape)}")
    elif value.dim() < 2:
        raise ValueError(f"{label} must have shape (N, *input_shape), got {tuple(value.shape)}")
    return value.detach().to("cpu", dtype).contiguous()


def _stack_dataset(label: str, dataset: object) -> tuple[torch.Tensor, torch.Tensor]:
    """A map-style torch ``Dataset`` of ``(x, y)`` pairs stacked into two tensors."""
    try:
        length = len(dataset)  # type: ignore[arg-type]
        pairs = [dataset[i] for i in range(length)]  # type: ignore[index]
        xs = [torch.as_tensor(x) for x, _ in pairs]
        ys = [int(y) for _, y in pairs]
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{label}: a torch Dataset must have len() and give (x, y) pairs with an integer "
            f"label y: {err}"
        ) from None
    if not xs:
        raise ValueError(f"{label}: the dataset is empty")
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)


def dataset_from(
    train_x: object = None,
    train_y: object = None,
    test_x: object = None,
    test_y: object = None,
    *,
    train: object = None,
    test: object = None,
    name: str = "custom",
    num_classes: int | None = None,
) -> DatasetSplits:
    """A dataset from tensors or NumPy arrays, or from map-style torch ``Dataset`` objects.

    Either ``dataset_from(train_x, train_y, test_x, test_y)`` (inputs of shape
    ``(N, *input_shape)``, integer labels of shape ``(N,)``), or
    ``dataset_from(train=ds, test=ds)`` where each ``ds[i]`` is an ``(x, y)`` pair. Inputs become
    float32 and labels int64 (copies on the CPU); ``num_classes`` defaults to the largest label
    plus one. Register it with :func:`register_dataset` to use it from an experiment.

    Raises:
        TypeError, ValueError: missing or malformed arrays, or labels outside ``0..num_classes-1``.
    """
    if train is not None or test is not None:
        given = [v is not None for v in (train_x, train_y, test_x, test_y)]
        if train is None or test is None or any(given):
            raise TypeError("dataset_from: give train= and test= together, without arrays")
        (tx, ty), (vx, vy) = _stack_dataset("train", train), _stack_dataset("test", test)
    else:
        arrays = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
        missing = [k for k, v in arrays.items() if v is None]
        if missing:
            raise TypeError(f"dataset_from: missing {', '.join(missing)}")
        tx = _as_tensor("train_x", train_x, torch.float32)
        ty = _as_tensor("train_y", train_y, torch.int64)
        vx = _as_tensor("test_x", test_x, torch.float32)
        vy = _as_tensor("test_y", test_y, torch.int64)
    for split, x, y in (("train", tx, ty), ("test", vx, vy)):
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(
                f"dataset_from: {split}_x has {len(x)} examples and {split}_y {len(y)}; "
                "they must match and not be empty"
            )
    if tx.shape[1:] != vx.shape[1:]:
        raise ValueError(
            f"dataset_from: train examples have shape {tuple(tx.shape[1:])}, test examples "
            f"{tuple(vx.shape[1:])}; they must match"
        )
    largest = int(max(ty.max(), vy.max()))
    if num_classes is None:
        num_classes = largest + 1
    check_positive_int("num_classes", num_classes)
    if int(min(ty.min(), vy.min())) < 0 or largest >= num_classes:
        raise ValueError(f"dataset_from: labels must lie in 0..{num_classes - 1}")
    return DatasetSplits(
        name=name, train_x=tx, train_y=ty, test_x=vx, test_y=vy, num_classes=num_classes,
        input_shape=tuple(tx.shape[1:]), source="in memory",
    )  # fmt: skip


def register_dataset(
    name: str, data: DatasetSplits | None = None, *, replace: bool = False, **arrays: object
) -> DatasetSplits:
    """Make a dataset available to experiments as ``[dataset] name = "<name>"``.

    ``data`` is a :class:`DatasetSplits` (e.g. from :func:`dataset_from`); or give the keyword
    arguments of :func:`dataset_from` instead (``train_x=..., train_y=..., test_x=..., test_y=...``
    or ``train=..., test=...``). ``[dataset] normalize`` (default true) standardises a copy with
    the training split's per-channel statistics, as for the bundled datasets; the registered
    tensors are never changed. Registering the same object again does nothing. Returns the
    registered splits.

    Raises:
        ValueError: a bad or bundled name, or another dataset registered under ``name`` (without
            ``replace=True``).
    """
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name):
        raise ValueError(
            f"register_dataset: name must be letters, digits and - _ . +, got name={name!r}"
        )
    if name in DATASETS:
        raise ValueError(
            f"register_dataset: {name!r} is a bundled dataset ({', '.join(DATASETS)}); "
            "choose another name"
        )
    if data is None:
        data = dataset_from(name=name, **arrays)  # type: ignore[arg-type]
    elif arrays:
        raise TypeError("register_dataset: give either a DatasetSplits or arrays, not both")
    elif not isinstance(data, DatasetSplits):
        raise TypeError(
            f"register_dataset({name!r}): data must be a DatasetSplits (see dataset_from), "
            f"got {type(data).__name__}"
        )
    known = _REGISTERED.get(name)
    if known is not None and known is not data and not replace:
        raise ValueError(
            f"register_dataset: {name!r} is already registered; pass replace=True to replace it"
        )
    if known is not data:
        _DIGESTS[name] = _digest(data)
    _REGISTERED[name] = data
    return data


def _registered_copy(data: DatasetSplits, normalize: bool) -> DatasetSplits:
    """A registered dataset as the runner uses it: copies, standardised when ``normalize``."""
    train_x, test_x = data.train_x.clone(), data.test_x.clone()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    if normalize:
        mean, std = _standardize_in_place(train_x, test_x)
    return DatasetSplits(
        name=data.name, train_x=train_x, train_y=data.train_y, test_x=test_x,
        test_y=data.test_y, num_classes=data.num_classes, input_shape=data.input_shape,
        mean=mean, std=std, source=data.source,
    )  # fmt: skip


def _bytes_to_unit_floats(images: np.ndarray) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1], ``pixel / 255``, with a channel axis for grey images."""
    x = torch.from_numpy(images).to(torch.float32).div_(255.0)
    return x.unsqueeze(1) if x.dim() == 3 else x


def _standardize_in_place(
    train_x: torch.Tensor, test_x: torch.Tensor
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Standardise both splits per channel with the training split's mean and population std.

    A channel is axis 1 when examples have two or more axes (``(N, C, H, W)``); a batch of
    vectors ``(N, L)`` is one channel. Returns the ``(mean, std)`` used, one value per channel. A
    channel with zero spread is only centred (its std is taken as 1).
    """
    if train_x.dim() >= 3:
        stats_shape = (1, train_x.shape[1]) + (1,) * (train_x.dim() - 2)
        reduce = [d for d in range(train_x.dim()) if d != 1]
    else:
        stats_shape = (1,) * train_x.dim()
        reduce = list(range(train_x.dim()))
    # On CPU, torch accumulates float32 reductions in float64; no float64 copy of x is made.
    var, mean = torch.var_mean(train_x, dim=reduce, correction=0)
    std = torch.where(var > 0, var.sqrt(), torch.ones_like(var))
    for x in (train_x, test_x):
        x.sub_(mean.view(stats_shape)).div_(std.view(stats_shape))
    return tuple(mean.reshape(-1).tolist()), tuple(std.reshape(-1).tolist())


# ----------------------------------------------------------------------------------------------
# Finding the files of a dataset read from disk

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR10_FILES = (*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin")

# Sub-folders of data_dir searched before data_dir itself, most specific first: our own names
# and torchvision's layout (root/MNIST/raw, root/FashionMNIST/raw, root/cifar-10-batches-bin).
_SUBFOLDERS: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist/raw", "mnist", "MNIST/raw", "MNIST"),
    "fashion-mnist": ("fashion-mnist/raw", "fashion-mnist", "FashionMNIST/raw", "FashionMNIST"),
    "cifar10": ("cifar-10-batches-bin", "cifar10/cifar-10-batches-bin", "cifar10"),
}


def expected_files(name: str) -> tuple[str, ...]:
    """The file names a dataset read from ``data_dir`` needs (each may also end in ``.gz``).

    ``"mnist"`` and ``"fashion-mnist"``: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``. ``"cifar10"``: ``data_batch_1.bin``
    .. ``data_batch_5.bin`` and ``test_batch.bin``.
    """
    if name not in _SUBFOLDERS:
        readable = ", ".join(_SUBFOLDERS)
        raise ValueError(
            f"dataset {name!r} is not read from files; datasets read from files: {readable}"
        )
    return _CIFAR10_FILES if name == "cifar10" else _IDX_FILES


def dataset_available(name: str, data_dir: str | os.PathLike | None) -> bool:
    """Whether ``load_dataset(name, data_dir=data_dir)`` would find its data: MNIST-1D is always
    available (generated locally); the others when ``data_dir`` holds their files. An unknown
    name counts as available, so that loading it reports the error."""
    if name == "mnist1d" or name not in DATASETS or name in _REGISTERED:
        return True
    try:
        find_dataset_files(name, data_dir)
    except FileNotFoundError:
        return False
    return True


def find_dataset_files(name: str, data_dir: str | os.PathLike | None) -> tuple[Path, list[Path]]:
    """Locate a dataset's files: returns the folder and the paths, in ``expected_files`` order.

    The folders searched, in order: ``data_dir/<sub>`` for each sub-folder in which the dataset's
    files are usually laid out (``mnist/raw``, ``mnist``, ``MNIST/raw``, ``MNIST``;
    ``fashion-mnist/raw``, ``fashion-mnist``, ``FashionMNIST/raw``, ``FashionMNIST``;
    ``cifar-10-batches-bin``, ``cifar10/cifar-10-batches-bin``, ``cifar10``), then ``data_dir``
    itself. The first folder that holds every expected file (plain or ``.gz``; the plain file when
    both exist) is used. Files directly in ``data_dir`` are taken as whichever dataset is asked
    for, so keep MNIST and Fashion-MNIST in their own sub-folders when both are present.

    Raises:
        FileNotFoundError: no folder holds all the files, or ``data_dir`` is None; the message
            names the dataset, the folders searched and the expected file names.
    """
    names = expected_files(name)
    wanted = f"expected files: {', '.join(names)} (each may also be gzipped, ending in .gz)"
    if data_dir is None:
        raise FileNotFoundError(
            f"dataset {name!r} is read from a data directory, but none was given "
            f"(pass data_dir, or --data-dir on the command line); {wanted}"
        )
    root = Path(data_dir).expanduser()
    folders = [root / sub for sub in _SUBFOLDERS[name]] + [root]
    for folder in folders:
        paths = [_existing_plain_or_gz(folder / file_name) for file_name in names]
        if all(path is not None for path in paths):
            return folder, paths  # type: ignore[return-value]
    hint = ""
    if name == "cifar10" and any(
        (folder / "data_batch_1").exists() or (folder / "cifar-10-batches-py").exists()
        for folder in folders
    ):
        hint = (
            "; found the pickled 'python version' of CIFAR-10, which is never loaded "
            "(unpickling runs code): use the binary version, cifar-10-binary.tar.gz"
        )
    searched = ", ".join(str(folder) for folder in folders)
    raise FileNotFoundError(f"dataset {name!r} not found; searched {searched}; {wanted}{hint}")


def _existing_plain_or_gz(path: Path) -> Path | None:
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    """A file's bytes, decompressed when its name ends in ``.gz``."""
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: not a valid gzip file ({err})") from None


# ----------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)

# The IDX type codes of LeCun's MNIST page; multi-byte values are big-endian.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped when the name ends in ``.gz``) into a native-order array.

    Format (LeCun, Cortes & Burges, the MNIST database page): a 4-byte magic number
    ``0x00 0x00 <type> <ndim>``, where ``<type>`` is 0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32 or 0x0E float64; then ``ndim`` big-endian uint32 sizes; then the
    values, big-endian, in row-major (C) order. The data must be exactly
    ``prod(sizes) * itemsize`` bytes long.

    Raises:
        ValueError: naming the file and what is wrong with its header or length.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(
            f"{path}: not an IDX file: {len(data)} bytes, shorter than the magic number"
        )
    if data[:2] != b"\x00\x00":
        raise ValueError(
            f"{path}: not an IDX file: magic number starts with bytes {data[:2].hex(' ')}, "
            "expected 00 00"
        )
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        allowed = ", ".join(f"0x{code:02X}" for code in _IDX_DTYPES)
        raise ValueError(f"{path}: unknown IDX type code 0x{type_code:02X}; valid codes: {allowed}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions; at least 1 is needed")
    header_length = 4 + 4 * ndim
    if len(data) < header_length:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_length} header bytes, "
            f"the file has {len(data)} bytes"
        )
    sizes = struct.unpack(f">{ndim}I", data[4:header_length])
    dtype = _IDX_DTYPES[type_code]
    expected = math.prod(sizes) * dtype.itemsize
    actual = len(data) - header_length
    if actual != expected:
        raise ValueError(
            f"{path}: IDX header declares sizes {sizes} of {dtype.name} ({expected} data bytes), "
            f"but the file holds {actual} data bytes"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_length).reshape(sizes)
    return array.astype(dtype.newbyteorder("="))


def _read_idx_split(paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check one split's images file ``(N, rows, cols)`` and labels file ``(N,)``."""
    images_path, labels_path = paths
    images, labels = read_idx(images_path), read_idx(labels_path)
    _require_uint8(images_path, images)
    _require_uint8(labels_path, labels)
    if images.ndim != 3:
        raise ValueError(
            f"{images_path}: an images file needs 3 dimensions (count, rows, columns), "
            f"the IDX header declares {images.ndim}: {images.shape}"
        )
    if labels.ndim != 1:
        raise ValueError(
            f"{labels_path}: a labels file needs 1 dimension (count), "
            f"the IDX header declares {labels.ndim}: {labels.shape}"
        )
    if len(images) == 0:
        raise ValueError(f"{images_path}: holds no images (the IDX header declares a count of 0)")
    if len(images) != len(labels):
        raise ValueError(
            f"{labels_path}: holds {len(labels)} labels but {images_path.name} holds "
            f"{len(images)} images; the counts must match"
        )
    _check_labels(labels_path, labels)
    return images, labels


def _require_uint8(path: Path, array: np.ndarray) -> None:
    if array.dtype != np.uint8:
        raise ValueError(
            f"{path}: IDX type is {array.dtype.name}, but this dataset's files hold unsigned "
            "bytes (type code 0x08)"
        )


def _check_labels(path: Path, labels: np.ndarray) -> None:
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        index = int(np.argmax(labels >= NUM_CLASSES))
        raise ValueError(
            f"{path}: label {int(labels[index])} at index {index} is outside 0..{NUM_CLASSES - 1}"
        )


# ----------------------------------------------------------------------------------------------
# CIFAR-10, binary version

_CIFAR10_IMAGE_SHAPE = (3, 32, 32)
_CIFAR10_RECORD_BYTES = 1 + math.prod(_CIFAR10_IMAGE_SHAPE)  # 3073


def read_cifar10_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one file of CIFAR-10's binary version: ``(images (N, 3, 32, 32) uint8, labels (N,))``.

    Format (Krizhevsky, the CIFAR-10 page, "binary version"): a sequence of 3073-byte records,
    each one label byte (0..9) followed by 3072 pixel bytes: the 1024 red values, then the 1024
    green, then the 1024 blue, each channel a 32 x 32 image in row-major order. The official
    files hold 10000 records; any positive number is accepted.

    Raises:
        ValueError: naming the file, when its length is not a positive multiple of 3073 bytes or
            a label is outside 0..9.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) == 0 or len(data) % _CIFAR10_RECORD_BYTES:
        raise ValueError(
            f"{path}: {len(data)} bytes is not a positive multiple of the "
            f"{_CIFAR10_RECORD_BYTES}-byte CIFAR-10 binary record (1 label byte + 3x32x32 pixels)"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _CIFAR10_RECORD_BYTES)
    labels = records[:, 0].copy()
    _check_labels(path, labels)
    images = records[:, 1:].reshape((-1, *_CIFAR10_IMAGE_SHAPE)).copy()
    return images, labels


def _read_cifar10_split(paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Read and concatenate CIFAR-10 batch files, in the order given."""
    parts = [read_cifar10_batch(path) for path in paths]
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    return images, labels


# ----------------------------------------------------------------------------------------------
# MNIST-1D, generated and cached

_MNIST1D_KEYS = ("x", "y", "x_test", "y_test")


def default_cache_dir() -> Path:
    """Where generated data are cached: ``$STEPSIZE_CACHE`` if set, else ``~/.cache/stepsize``."""
    return Path(os.environ.get("STEPSIZE_CACHE") or "~/.cache/stepsize").expanduser()


MNIST1D_DEFAULT_SIZES = (4000, 1000)  # the package's num_samples = 5000, train_split = 0.8


def mnist1d_sizes(train_examples: int | None, test_examples: int | None) -> tuple[int, int]:
    """``(train, test)`` sizes of generated MNIST-1D, the package's defaults where ``None``.

    Raises:
        ValueError: a size that is not a positive integer, or a total that is not a multiple of
            10 (``make_dataset`` makes ``num_samples // 10`` examples of each digit).
    """
    default_train, default_test = MNIST1D_DEFAULT_SIZES
    train = default_train if train_examples is None else train_examples
    test = default_test if test_examples is None else test_examples
    check_positive_int("train_examples", train)
    check_positive_int("test_examples", test)
    if (train + test) % 10:
        raise ValueError(
            f"train_examples + test_examples = {train} + {test} = {train + test}: MNIST-1D makes "
            "the same number of each of its 10 digits, so the total must be a multiple of 10"
        )
    return train, test


def mnist1d_cache_path(
    cache_dir: str | os.PathLike | None = None,
    sizes: tuple[int, int] = MNIST1D_DEFAULT_SIZES,
) -> Path:
    """The cache file of MNIST-1D generated by the installed ``mnist1d`` with ``sizes``.

    The name carries the package's version, since another version may generate other data, and
    the sizes when they are not the package's defaults.
    """
    folder = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    version = importlib.metadata.version("mnist1d")
    tag = "default" if sizes == MNIST1D_DEFAULT_SIZES else "{}-{}".format(*sizes)
    return folder / f"mnist1d-{version}-{tag}.npz"


def generate_mnist1d(sizes: tuple[int, int] = MNIST1D_DEFAULT_SIZES) -> dict[str, np.ndarray]:
    """Generate MNIST-1D with the ``mnist1d`` package's generator and its default arguments.

    Calls ``mnist1d.data.make_dataset(args)`` with ``args = mnist1d.data.get_dataset_args()``
    (never ``get_dataset``, which downloads); for ``sizes = (train, test)`` other than the
    defaults only ``num_samples = train + test`` and ``train_split`` change (the split index is
    ``int(num_samples * train_split)``; ``(train + 1/2) / num_samples`` makes it exactly
    ``train``). Returns ``x`` (train, 40) float64, ``y`` (train,) int64, ``x_test`` (test, 40) and
    ``y_test`` (test,). The generator seeds Python's and NumPy's global random number generators
    with the arguments' seed (42); their states are restored afterwards, so calling this disturbs
    no other random stream. Deterministic.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    if sizes != MNIST1D_DEFAULT_SIZES:
        train, test = mnist1d_sizes(*sizes)
        args.num_samples, args.train_split = train + test, (train + 0.5) / (train + test)
    # The package seeds NumPy's legacy global generator, so that is the state to save.
    python_state, numpy_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    try:
        dataset = make_dataset(args)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)  # noqa: NPY002
    return {key: np.ascontiguousarray(dataset[key]) for key in _MNIST1D_KEYS}


def _load_mnist1d_arrays(
    cache_dir: str | os.PathLike | None, sizes: tuple[int, int]
) -> tuple[dict[str, np.ndarray], str]:
    """MNIST-1D's arrays from the cache, generating and caching them the first time."""
    path = mnist1d_cache_path(cache_dir, sizes)
    if path.is_file():
        arrays = _read_mnist1d_cache(path)
        found = (len(arrays["y"]), len(arrays["y_test"]))
        if found != sizes:
            raise ValueError(
                f"{path}: malformed MNIST-1D cache: splits of {found[0]} and {found[1]} examples, "
                f"expected {sizes[0]} and {sizes[1]}; delete it to regenerate"
            )
        return arrays, str(path)
    arrays = generate_mnist1d(sizes)
    # Written to a temporary file beside the cache, then os.replace'd: readers never see part.
    atomic_write(path, lambda handle: np.savez(handle, **arrays))
    return arrays, str(path)


def _read_mnist1d_cache(path: Path) -> dict[str, np.ndarray]:
    """Read and check a cached MNIST-1D file (no pickles allowed)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except Exception as err:
        raise ValueError(
            f"{path}: unreadable MNIST-1D cache ({err}); delete it to regenerate"
        ) from None
    problem = None
    if sorted(arrays) != sorted(_MNIST1D_KEYS):
        problem = f"holds arrays {sorted(arrays)}, expected {sorted(_MNIST1D_KEYS)}"
    else:
        x, y, x_test, y_test = (arrays[key] for key in _MNIST1D_KEYS)
        if x.ndim != 2 or x_test.ndim != 2 or x.shape[1] != x_test.shape[1]:
            problem = f"inputs have shapes {x.shape} and {x_test.shape}, expected (N, L) and (M, L)"
        elif y.shape != x.shape[:1] or y_test.shape != x_test.shape[:1]:
            problem = f"labels have shapes {y.shape} and {y_test.shape}, not one per input"
        elif x.dtype.kind != "f" or y.dtype.kind not in "iu" or y_test.dtype.kind not in "iu":
            problem = f"dtypes {x.dtype}, {y.dtype}: expected float inputs and integer labels"
    if problem:
        raise ValueError(f"{path}: malformed MNIST-1D cache: {problem}; delete it to regenerate")
    return arrays


# ----------------------------------------------------------------------------------------------
# Mini-batches


def batches_per_epoch(num_examples: int, batch_size: int, *, drop_last: bool = False) -> int:
    """The number of mini-batches ``batches`` yields in one epoch:
    ``floor(N / B)`` with ``drop_last``, else ``ceil(N / B)``."""
    check_positive_int("batch_size", batch_size)
    if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 0:
        raise ValueError(
            f"num_examples must be a non-negative integer, got num_examples={num_examples!r}"
        )
    return num_examples // batch_size if drop_last else -(-num_examples // batch_size)


def batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield one epoch of mini-batches ``(x[i], y[i])``.

    Without ``shuffle`` the batches are consecutive slices in order, ``x[k*B : (k+1)*B]`` (views,
    no copy), as the MNIST-1D paper's training loop takes them. With ``shuffle`` one permutation
    ``torch.randperm(N, generator=generator)`` is drawn when this function is called, and batch
    ``k`` gathers the examples at positions ``perm[k*B : (k+1)*B]``: the same generator state
    gives the same batches (``generator=None`` draws from torch's global generator). The last
    batch holds the ``N mod B`` remaining examples unless ``drop_last``. Skipping the first ``j``
    batches (``itertools.islice``) resumes an epoch mid-way.

    Arguments are checked when this is called, before the first batch.
    """
    check_positive_int("batch_size", batch_size)
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(
            f"x and y must be torch tensors, got {type(x).__name__} and {type(y).__name__}"
        )
    if x.dim() == 0 or y.dim() == 0 or len(x) != len(y):
        raise ValueError(
            f"x and y must hold the same number of examples along axis 0, got shapes "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {generator!r}")
    count = batches_per_epoch(len(x), batch_size, drop_last=drop_last)
    order = None
    if shuffle:
        device = generator.device if generator is not None else torch.device("cpu")
        order = torch.randperm(len(x), generator=generator, device=device).to(x.device)
    return _epoch(x, y, batch_size, count, order)


def _epoch(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, count: int, order: torch.Tensor | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for k in range(count):
        window = slice(k * batch_size, (k + 1) * batch_size)
        if order is None:
            yield x[window], y[window]
        else:
            index = order[window]
            yield x[index], y[index.to(y.device)]


def is_positive_int(value: object) -> bool:
    """True for an ``int`` (not a ``bool``) >= 1."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_positive_int(name: str, value: object) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a positive integer."""
    if not is_positive_int(value):
        raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")
