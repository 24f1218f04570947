"""Reading a dataset's files in their published formats: where they are, IDX, CIFAR-10 binary.

- ``"mnist"`` and ``"fashion-mnist"``: the IDX files of LeCun et al.'s MNIST and of Xiao et al.'s
  Fashion-MNIST (same format, same file names), read from ``data_dir``, gzipped or not.
- ``"cifar10"``: the *binary* version of CIFAR-10 (Krizhevsky, 2009), read from ``data_dir``.
  The pickled "python version" is never loaded: unpickling a file runs code from it.

:func:`find_dataset_files` locates the files (:func:`expected_files` names them);
:func:`read_dataset_files` reads both splits, images scaled from bytes to [0, 1]
(``pixel / 255``) and laid out channels first: ``(1, 28, 28)`` for (Fashion-)MNIST,
``(3, 32, 32)`` for CIFAR-10. ``runs.data.load_dataset`` is the entry point.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

NUM_CLASSES = 10  # every dataset here has ten classes, labelled 0..9

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


def read_dataset_files(
    name: str, data_dir: str | os.PathLike | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """Both splits of a dataset read from ``data_dir``: ``(train_x, train_y, test_x, test_y,
    folder)``, float32 images in [0, 1] with a channel axis and int64 labels.

    Raises:
        ValueError: a malformed file, or splits of different image shapes.
        FileNotFoundError: see :func:`find_dataset_files`.
    """
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
    return train_x, train_y, test_x, test_y, str(folder)


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
            names the dataset, the folders searched and the expected file names, and the files
            missing from the folder that holds the most of them.
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
    closest: tuple[int, Path, list[str]] | None = None  # (files found, folder, files missing)
    for folder in folders:
        paths = [_existing_plain_or_gz(folder / file_name) for file_name in names]
        if all(path is not None for path in paths):
            return folder, paths  # type: ignore[return-value]
        found = sum(path is not None for path in paths)
        if found and (closest is None or found > closest[0]):
            lacking = [file_name for file_name, path in zip(names, paths) if path is None]
            closest = (found, folder, lacking)
    hint = ""
    if closest is not None:
        found, folder, lacking = closest
        hint = f"; {folder} holds {found} of the {len(names)} files but lacks {', '.join(lacking)}"
    if name == "cifar10" and any(
        (folder / "data_batch_1").exists() or (folder / "cifar-10-batches-py").exists()
        for folder in folders
    ):
        hint += (
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


def _bytes_to_unit_floats(images: np.ndarray) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1], ``pixel / 255``, with a channel axis for grey images."""
    x = torch.from_numpy(images).to(torch.float32).div_(255.0)
    return x.unsqueeze(1) if x.dim() == 3 else x
