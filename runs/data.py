"""Datasets held in memory as torch tensors (mini-batches over them: ``runs.batches``).

Four datasets, none downloaded:

- ``"mnist1d"``: MNIST-1D, generated locally by the ``mnist1d`` package's own generator with its
  default arguments (4000 train / 1000 test examples, 40 features) or at chosen split sizes, and
  cached under ``cache_dir`` (``runs.mnist1d``).
- ``"mnist"`` and ``"fashion-mnist"``: their IDX files; ``"cifar10"``: the *binary* version of
  CIFAR-10; all read from ``data_dir`` (``runs.dataset_files``).

Your own data: :func:`dataset_from` builds a :class:`DatasetSplits` from tensors, NumPy arrays
or map-style torch ``Dataset`` objects, and :func:`register_dataset` names it for experiments.

Every split comes back as float32 inputs ``x`` of shape ``(N, *input_shape)`` and int64 labels
``y`` of shape ``(N,)``. Images are scaled from bytes to [0, 1] (``pixel / 255``), laid out
channels first: ``(1, 28, 28)`` for (Fashion-)MNIST, ``(3, 32, 32)`` for CIFAR-10.

With ``normalize=True`` (the default) the inputs are standardised, ``x' = (x - mean) / std``,
with ``mean`` and the population ``std`` computed on the *training split only* and applied to both
splits, over these axes (:func:`standardize_axes`):

- examples of two or more axes ``(N, C, ...)``: per channel, axis 1 (``(N, 1, 28, 28)``,
  ``(N, 3, 32, 32)``, a sequence ``(N, C, L)``). Channel-less images ``(N, H, W)`` cannot be told
  from ``(N, C, L)``: they would be standardised row by row, ``H`` "channels"; give them a channel
  axis (``x[:, None]``, shape ``(N, 1, H, W)``) to standardise them with one mean and std;
- a registered dataset's vectors ``(N, F)`` (:func:`register_dataset`): per feature, as
  scikit-learn's ``StandardScaler``, so features of different scales end up alike;
- MNIST-1D's vectors ``(N, 40)``: one scalar mean and std over every value, as the bundled
  experiments have always used (the ``mnist1d`` generator already standardises its arrays over
  train and test together; re-standardising with training statistics changes them only
  slightly).

A channel or feature with zero spread in the training split is only centred (its std taken as
1). With ``normalize=False`` images stay in [0, 1], as d2l's ``load_data_fashion_mnist`` gives
them, MNIST-1D stays as the package generated it, and registered data as registered.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from runs import mnist1d
from runs.checks import check_positive_int, check_registry_name, plain_int
from runs.dataset_files import NUM_CLASSES, find_dataset_files, read_dataset_files

DATASETS: tuple[str, ...] = ("mnist1d", "mnist", "fashion-mnist", "cifar10")
# The shape of one example of each bundled dataset, known before it is generated or read.
INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "mnist1d": (40,),
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
}


@dataclass(frozen=True, eq=False)
class DatasetSplits:
    """A dataset's train and test splits, in memory.

    Attributes:
        name: the dataset's name, one of ``DATASETS``.
        train_x, test_x: float32 inputs of shape ``(N, *input_shape)``.
        train_y, test_y: int64 labels in ``0 .. num_classes - 1``, shape ``(N,)``.
        num_classes: the number of classes.
        input_shape: the shape of one example, e.g. ``(40,)``, ``(1, 28, 28)``, ``(3, 32, 32)``.
        mean, std: the training-split statistics that were applied (``x' = (x - mean) / std``),
            one per channel, per feature (a registered dataset's vectors) or a single one
            (MNIST-1D; see the module doc); empty tuples when not normalised.
        source: where the arrays were read from (a directory or the cache file).

    >>> x, y = torch.zeros(4, 1, 3, 3), torch.tensor([0, 1, 0, 1])  # four 1 x 3 x 3 images
    >>> splits = DatasetSplits("tiny", x, y, x[:2], y[:2], num_classes=2, input_shape=(1, 3, 3))
    >>> splits.input_shape, splits.num_classes, splits.mean, splits.std  # nothing applied
    ((1, 3, 3), 2, (), ())
    >>> dataset_from(x, y, x[:2], y[:2]).input_shape  # dataset_from builds one from the arrays
    (1, 3, 3)
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

    def __post_init__(self) -> None:
        # NumPy integers (``y.max() + 1`` on an array) become ints, a list shape a tuple; whether
        # the values are allowed is checked where the splits are registered or built.
        object.__setattr__(self, "num_classes", plain_int(self.num_classes))
        if isinstance(self.input_shape, list | tuple):
            shape = tuple(plain_int(size) for size in self.input_shape)
            object.__setattr__(self, "input_shape", shape)


def dataset_size_problem(
    name: Any, train_examples: Any, test_examples: Any
) -> tuple[str, str] | None:
    """``(key, message)`` when ``train_examples`` / ``test_examples`` do not suit dataset
    ``name``, else None: only ``"mnist1d"`` is generated at a chosen size (any other dataset
    refuses both keys), and its sizes must be positive with a total that is a multiple of 10
    (:func:`runs.mnist1d.mnist1d_sizes`). Pure (no data is read), so an experiment file is checked
    with it for every variant before anything runs (``runs.load``), and :func:`load_dataset` too.
    """
    sizes = {"train_examples": train_examples, "test_examples": test_examples}
    given = [key for key, value in sizes.items() if value is not None]
    if not given:
        return None
    if name != "mnist1d":
        key = given[0]
        return key, (
            f"{key}={sizes[key]!r}: only dataset 'mnist1d' is generated at a chosen size, "
            f"not {name!r}; leave {key} out"
        )
    try:
        mnist1d.mnist1d_sizes(train_examples, test_examples)
    except (TypeError, ValueError) as error:
        key = next((k for k in given if str(error).startswith(k)), given[0])
        return key, str(error)
    return None


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
            ``"cifar10"`` (see ``runs.dataset_files.expected_files`` for names and accepted
            sub-folders). Not used for ``"mnist1d"``.
        cache_dir: where the generated MNIST-1D arrays are cached; default
            ``runs.mnist1d.default_cache_dir()`` (``$STEPSIZE_CACHE`` or ``~/.cache/stepsize``).
            Not used for the other datasets.
        normalize: standardise the inputs with the training split's mean and population
            standard deviation, applied to both splits: per channel (axis 1) for examples of two
            or more axes, per feature for a registered dataset's vectors, one mean and std for
            MNIST-1D (module doc).
        train_examples, test_examples: ``"mnist1d"`` only: the sizes of the generated splits
            (default 4000 and 1000, the package's); their sum must be a multiple of 10 (the
            generator makes the same number of examples of each digit).

    Raises:
        ValueError: unknown ``name``, or a malformed file (the message names the file and what is
            wrong).
        FileNotFoundError: the dataset's files are not in ``data_dir``; the message names the
            dataset, the directories searched and the expected file names.
    """
    problem = dataset_size_problem(name, train_examples, test_examples)
    if problem is not None:
        raise ValueError(problem[1])
    if name in _REGISTERED:
        return _registered_copy(_REGISTERED[name], normalize)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(dataset_names())}")
    if name == "mnist1d":
        arrays, source = mnist1d.load_mnist1d_arrays(
            cache_dir, mnist1d.mnist1d_sizes(train_examples, test_examples)
        )
        train_x = torch.from_numpy(arrays["x"]).to(torch.float32)
        test_x = torch.from_numpy(arrays["x_test"]).to(torch.float32)
        train_y = torch.from_numpy(arrays["y"]).to(torch.int64)
        test_y = torch.from_numpy(arrays["y_test"]).to(torch.int64)
    else:
        train_x, train_y, test_x, test_y, source = read_dataset_files(name, data_dir)
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


def known_shape(name: str) -> tuple[tuple[int, ...], int] | None:
    """``(input_shape, num_classes)`` of the dataset ``name`` without loading it (a bundled or
    registered one), or None when it is not known."""
    if name in _REGISTERED:
        return _REGISTERED[name].input_shape, _REGISTERED[name].num_classes
    if name in INPUT_SHAPES:
        return INPUT_SHAPES[name], NUM_CLASSES
    return None


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
    """``value`` (a tensor or a NumPy array) as a CPU copy of ``dtype``; a label array must hold
    integers (a float or bool label is refused, not truncated), an input array real numbers.
    Shapes and values are checked by :func:`_check_splits`."""
    if isinstance(value, np.ndarray):
        value = _numpy_as_tensor(label, value)
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{label} must be a torch.Tensor or a NumPy array, got {type(value).__name__}"
        )
    if label.endswith("_y"):
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            raise ValueError(f"{label} must hold integer class labels, got dtype {value.dtype}")
    elif value.dtype.is_complex:  # (torch casts it to real, dropping the imaginary part)
        raise ValueError(f"{label} must hold real numbers, got dtype {value.dtype}")
    # always a copy (of a CPU tensor of the right dtype too, and of a NumPy array, which
    # torch.from_numpy shares): later in-place edits of the caller's arrays change nothing here
    converted = value.detach().to("cpu", dtype, copy=True).contiguous()
    if dtype.is_floating_point and value.dtype.is_floating_point:
        _check_no_overflow(label, value, converted)
    return converted


def _check_no_overflow(label: str, value: torch.Tensor, converted: torch.Tensor) -> None:
    """Raises ``ValueError`` naming ``label`` and the index when a finite value of ``value``
    (float64) became infinite in ``converted`` (its float32 copy): beyond float32's range,
    about +-3.4e38. (A value that was NaN or inf already is named by :func:`_check_splits`.)"""
    if converted.dim() == 0 or torch.finfo(value.dtype).max <= torch.finfo(converted.dtype).max:
        return
    index = _first_non_finite(converted)
    if index is None:
        return
    original = value[index].item()
    if math.isfinite(original):
        limit = torch.finfo(converted.dtype).max
        raise ValueError(
            f"{label}[{', '.join(map(str, index))}] is {original!r}, beyond the range of "
            f"{converted.dtype} (+-{limit:.4g}), to which inputs are converted: it would "
            "overflow to inf; rescale the inputs"
        )


def _numpy_as_tensor(label: str, value: np.ndarray) -> torch.Tensor:
    """A NumPy array as a tensor (sharing its memory when it can): a big-endian array (``">f4"``,
    as ``np.frombuffer``, FITS and some HDF5 readers give) is converted to native byte order;
    an array of another kind than bool, integer or float (object, str, longdouble) is refused
    naming ``label``."""
    value = np.ascontiguousarray(value)
    if not value.dtype.isnative:
        value = value.astype(value.dtype.newbyteorder("="))
    try:
        return torch.from_numpy(value)
    except TypeError:
        raise TypeError(
            f"{label} must be a NumPy array of numbers (bool, integers, float16, float32 or "
            f"float64), got dtype {value.dtype}"
        ) from None


_FINITE_CHUNK = 1 << 22  # elements checked at a time by _first_non_finite (4 MiB of booleans)


def _first_non_finite(x: torch.Tensor) -> tuple[int, ...] | None:
    """The index of the first NaN or infinite value of ``x`` in row-major order, or None; one pass
    over ``x`` in chunks of examples, so the mask never takes more than a few MiB."""
    rows = max(1, _FINITE_CHUNK // max(1, x[0].numel())) if len(x) else 1
    for start in range(0, len(x), rows):
        bad = ~torch.isfinite(x[start : start + rows])
        if bad.any():
            index = bad.nonzero()[0].tolist()
            return (start + index[0], *index[1:])
    return None


def _check_splits(
    where: str, arrays: dict[str, object], num_classes: object, input_shape: object = None
) -> int:
    """Checks a dataset's four tensors, ``arrays = {"train_x": ..., "train_y": ...,
    "test_x": ..., "test_y": ...}``, each message starting with ``where``; returns
    ``num_classes`` as an ``int`` (``None``: the largest label plus one). One home for the checks
    of :func:`dataset_from` (on what it converted) and of :func:`register_dataset` (on a
    :class:`DatasetSplits` built by hand):

    - float32 inputs of shape ``(N, *input_shape)``, one shape in both splits (the declared
      ``input_shape`` when given), every value finite (the first NaN or inf is named);
    - int64 labels of shape ``(N,)``, one per input, in ``0..num_classes - 1`` (the first label
      outside is named with its split and index);
    - neither split empty; ``num_classes`` a positive integer (a NumPy integer too).

    Linear in the size of the data: one pass for the finite check, one comparison per label.
    """
    tensors: dict[str, torch.Tensor] = {}
    for label, value in arrays.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{where}: {label} must be a torch.Tensor, got {type(value).__name__}")
        labels = label.endswith("_y")
        if value.dtype != (torch.int64 if labels else torch.float32):
            what = "int64 class labels" if labels else "float32 inputs"
            raise ValueError(
                f"{where}: {label} must hold {what}, got dtype {value.dtype} "
                "(runs.dataset_from converts tensors and arrays)"
            )
        if labels and value.dim() != 1:
            raise ValueError(f"{where}: {label} must have shape (N,), got {tuple(value.shape)}")
        if not labels and value.dim() < 2:
            raise ValueError(
                f"{where}: {label} must have shape (N, *input_shape), got {tuple(value.shape)}"
            )
        tensors[label] = value
    for split in ("train", "test"):
        x, y = tensors[f"{split}_x"], tensors[f"{split}_y"]
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(
                f"{where}: {split}_x has {len(x)} examples and {split}_y {len(y)}; "
                "they must match and not be empty"
            )
    shape, test_shape = tuple(tensors["train_x"].shape[1:]), tuple(tensors["test_x"].shape[1:])
    if shape != test_shape:
        raise ValueError(
            f"{where}: train examples have shape {shape}, test examples {test_shape}; "
            "they must match"
        )
    if input_shape is not None and input_shape != shape:
        raise ValueError(
            f"{where}: input_shape is {input_shape!r}, but the examples have shape {shape}"
        )
    for label in ("train_x", "test_x"):
        if (index := _first_non_finite(tensors[label])) is not None:
            value = tensors[label][index].item()
            raise ValueError(
                f"{where}: {label}[{', '.join(map(str, index))}] is {value}: inputs must be "
                "finite (NaN and inf are refused: standardising would spread them to every "
                "input, and the runs would be reported as diverging)"
            )
    if num_classes is None:
        num_classes = int(max(tensors["train_y"].max(), tensors["test_y"].max())) + 1
    num_classes = plain_int(num_classes)
    try:
        check_positive_int("num_classes", num_classes)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    assert isinstance(num_classes, int)
    for label in ("train_y", "test_y"):
        y = tensors[label]
        outside = (y < 0) | (y >= num_classes)
        if outside.any():
            index = int(outside.nonzero()[0, 0])
            raise ValueError(
                f"{where}: {label}[{index}] is {int(y[index])}: labels must lie in "
                f"0..{num_classes - 1} (num_classes={num_classes})"
            )
    return num_classes


def _stack_dataset(label: str, dataset: object) -> tuple[torch.Tensor, torch.Tensor]:
    """A map-style torch ``Dataset`` of ``(x, y)`` pairs stacked into two tensors, checked as
    the tensors of ``dataset_from(train_x, train_y, ...)`` are (:func:`_as_tensor`): inputs of one
    shape, of at least one dimension; a label an integer (a float or bool label is refused,
    not truncated). A ``DataLoader`` and an ``IterableDataset`` are refused (``TypeError``)."""
    if isinstance(dataset, torch.utils.data.DataLoader):
        raise TypeError(
            f"{label}: got a DataLoader; give its map-style Dataset ({label}=loader.dataset): the "
            "runner makes its own mini-batches from the seed"
        )
    if isinstance(dataset, torch.utils.data.IterableDataset):
        raise TypeError(
            f"{label}: got an IterableDataset ({type(dataset).__name__}), which is not accepted "
            "(it has no dataset[i], even with a len()); give a map-style Dataset whose "
            "dataset[i] is an (x, y) pair, or the tensors: dataset_from(train_x, train_y, "
            "test_x, test_y)"
        )
    try:
        length = len(dataset)  # type: ignore[arg-type]
    except TypeError as err:
        raise TypeError(f"{label}: a torch Dataset must have len(): {err}") from None
    xs, ys = [], []
    for i in range(length):
        try:
            item = dataset[i]  # type: ignore[index]
        except Exception as err:  # the user's own error (a missing file, ...): raised as itself
            err.add_note(f"(raised by item {i} of the Dataset given as {label}= to dataset_from)")
            raise
        try:
            x, y = item
            xs.append(torch.as_tensor(x))
            ys.append(torch.as_tensor(y))
        except Exception as err:  # not a pair, or not arrays or numbers
            raise TypeError(
                f"{label}: item {i} of the Dataset is not an (x, y) pair of arrays or numbers "
                f"({type(err).__name__}: {err})"
            ) from None
    if not xs:
        raise ValueError(f"{label}: the dataset is empty")
    shapes = sorted({tuple(x.shape) for x in xs})
    if len(shapes) > 1:
        raise ValueError(
            f"{label}: every input x must have one shape, got {len(shapes)} shapes "
            f"({', '.join(map(str, shapes[:3]))}{', ...' if len(shapes) > 3 else ''})"
        )
    if ys[0].dim() != 0 or len({tuple(y.shape) for y in ys}) > 1:
        raise ValueError(
            f"{label}: each label y must be one integer, got shape {tuple(ys[0].shape)}"
        )
    return (
        _as_tensor(f"{label}_x", torch.stack(xs), torch.float32),
        _as_tensor(f"{label}_y", torch.stack(ys), torch.int64),
    )


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

    NumPy arrays in big-endian byte order are converted; ``num_classes`` may be a NumPy integer.

    Raises:
        TypeError, ValueError: missing or malformed arrays (an object, str or longdouble array,
            float or bool labels, mismatched lengths or shapes, an empty split), a NaN or infinite
            input (naming the array and the index of the first), or a label outside
            ``0..num_classes-1`` (naming the split, the value and its index). An exception
            raised by a ``Dataset``'s ``__getitem__`` propagates as itself.

    >>> x = np.array([[0.0, 10.0], [1.0, 20.0], [2.0, 30.0], [3.0, 40.0]])  # 4 examples, 2 features
    >>> splits = dataset_from(x[:3], np.array([0, 1, 2]), x[3:], np.array([1]))
    >>> splits.train_x.dtype, splits.train_y.dtype, splits.input_shape, splits.num_classes
    (torch.float32, torch.int64, (2,), 3)
    >>> pairs = [(torch.tensor([0.0, 1.0]), 0), (torch.tensor([1.0, 0.0]), 1)]  # (x, y) pairs
    >>> dataset_from(train=pairs, test=pairs).num_classes  # the largest label plus one
    2
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
    tensors = {"train_x": tx, "train_y": ty, "test_x": vx, "test_y": vy}
    num_classes = _check_splits("dataset_from", tensors, num_classes)
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
    the training split's statistics: per channel (axis 1) for examples of two or more axes, per
    feature for vectors ``(N, F)`` (module doc; give channel-less images ``(N, H, W)`` a channel
    axis, ``x[:, None]``); the registered tensors are never changed. Registering the same
    object again, or splits equal to the registered ones (the same arrays, as a notebook cell
    run twice gives: compared by their digest, dtypes, shapes and bytes), does nothing. Returns
    the registered splits.

    A ``DatasetSplits`` built by hand is checked as :func:`dataset_from` checks what it builds
    (float32 inputs, finite, of ``input_shape``; int64 labels, one per input, in
    ``0..num_classes-1``; no empty split), before it is registered.

    Raises:
        ValueError: a bad or bundled name, another dataset registered under ``name`` (without
            ``replace=True``), or malformed splits (see :func:`dataset_from`).
        TypeError: a name that is not a string; ``data`` not a ``DatasetSplits``, or given
            together with arrays.

    >>> x, y = torch.tensor([[0.0], [1.0], [2.0], [3.0]]), torch.tensor([0, 0, 1, 1])
    >>> splits = register_dataset("doc-line", train_x=x, train_y=y, test_x=x, test_y=y)
    >>> register_dataset("doc-line", train_x=x, train_y=y, test_x=x, test_y=y) is splits  # no-op
    True
    >>> used = load_dataset("doc-line")  # as [dataset] name = "doc-line" loads it: standardised
    >>> used.mean, round(used.std[0] ** 2, 6), splits.train_x[:, 0].tolist()  # population variance
    ((1.5,), 1.25, [0.0, 1.0, 2.0, 3.0])
    """
    check_registry_name("register_dataset", name)
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
    else:  # built by hand, perhaps: checked as dataset_from checks what it builds
        tensors = {k: getattr(data, k) for k in ("train_x", "train_y", "test_x", "test_y")}
        _check_splits(f"register_dataset({name!r})", tensors, data.num_classes, data.input_shape)
    known = _REGISTERED.get(name)
    if known is None or known is data:
        digest = _DIGESTS.get(name) if known is data else _digest(data)
    else:
        digest = _digest(data)
        if digest == _DIGESTS[name] and data.name == known.name:
            return known  # the same splits again (a notebook cell run twice): a no-op
        if not replace:
            raise ValueError(
                f"register_dataset: {name!r} is already registered with other splits; pass "
                "replace=True to replace it"
            )
    _DIGESTS[name] = digest
    _REGISTERED[name] = data
    return data


def _registered_copy(data: DatasetSplits, normalize: bool) -> DatasetSplits:
    """A registered dataset as the runner uses it: copies, standardised when ``normalize`` (per
    channel, or per feature for vectors ``(N, F)``: :func:`standardize_axes`)."""
    train_x, test_x = data.train_x.clone(), data.test_x.clone()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    if normalize:
        mean, std = _standardize_in_place(train_x, test_x, per_feature=True)
    return DatasetSplits(
        name=data.name, train_x=train_x, train_y=data.train_y, test_x=test_x,
        test_y=data.test_y, num_classes=data.num_classes, input_shape=data.input_shape,
        mean=mean, std=std, source=data.source,
    )  # fmt: skip


def standardize_axes(dims: int, *, per_feature: bool) -> tuple[int, ...]:
    """The axes a batch of ``dims`` axes ``(N, ...)`` is averaged over by ``normalize``: every
    axis but 1 (the channel) when examples have two or more axes, ``(N, C, ...)``; for vectors
    ``(N, F)``, axis 0 alone with ``per_feature`` (a registered dataset: one mean and std per
    feature), else both (MNIST-1D: one mean and std)."""
    if dims >= 3 or (dims == 2 and per_feature):
        return tuple(d for d in range(dims) if d != 1)
    return tuple(range(dims))


def _standardize_in_place(
    train_x: torch.Tensor, test_x: torch.Tensor, *, per_feature: bool = False
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Standardise both splits with the training split's mean and population std, over the
    axes of :func:`standardize_axes`: per channel (axis 1) when examples have two or more axes
    (``(N, C, H, W)``); a batch of vectors ``(N, F)`` per feature with ``per_feature``, else as
    one channel. Returns the ``(mean, std)`` used, one value per channel or feature. A channel
    with zero spread is only centred (its std is taken as 1).
    """
    reduce = list(standardize_axes(train_x.dim(), per_feature=per_feature))
    stats_shape = tuple(1 if d in reduce else size for d, size in enumerate(train_x.shape))
    # On CPU, torch accumulates float32 reductions in float64; no float64 copy of x is made.
    var, mean = torch.var_mean(train_x, dim=reduce, correction=0)
    std = torch.where(var > 0, var.sqrt(), torch.ones_like(var))
    for x in (train_x, test_x):
        x.sub_(mean.view(stats_shape)).div_(std.view(stats_shape))
    return tuple(mean.reshape(-1).tolist()), tuple(std.reshape(-1).tolist())


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
