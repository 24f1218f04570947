"""Files written whole or not at all, and read with their name in every error.

The one home of the package's file handling, shared by ``schedulers`` (figures, the range test's
plot) and ``runs`` (every file of a run folder, figures, README sections), which imports it from
here because ``schedulers`` must not import ``runs``:

* :func:`atomic_write` writes to a temporary name in the target's folder, then renames it. A new
  file gets the permissions an ordinary ``open`` would give it (``0o666`` less the umask); a file
  that is replaced keeps its permission bits, as an editor saving it would (a README that is
  ``0o644`` stays so under any umask). A path that is a symbolic link is written through, as
  ``open`` writes: the file it points to is replaced (in that file's folder) and the link stays.
  An error names the path given, never the temporary name.
* :func:`atomic_copy` copies a file the same way.
* :func:`check_output_file` checks, before any work, that a path can be written as a figure.
* :func:`check_replaceable` refuses an existing target that is read-only. :func:`atomic_write`
  itself would replace it (a rename needs only the folder's write permission), so every output a
  user names, or a command rewrites (a figure, a report's ``summary.md``), is checked with it
  before anything is written: a file protected with ``chmod a-w`` is never replaced silently.
* :func:`read_text`, :func:`read_toml` and :func:`read_json` read UTF-8 text, TOML and JSON,
  naming the file when it is not valid.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def umask() -> int:
    """The process's umask (read from ``/proc`` where possible, which changes nothing)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, then put it back
    os.umask(mask)
    return mask


def _target_mode(path: Path) -> int:
    """The permission bits ``path`` gets: its own when it exists, else ``0o666`` less the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~umask()


TEMPORARY_SUFFIX = ".tmp"
TEMPORARY_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")
"""The name :func:`atomic_write` gives its temporary file while it writes ``<name>``:
``tempfile.mkstemp(prefix=".<name>.", suffix=TEMPORARY_SUFFIX)``, whose random part is 8
characters of lowercase letters, digits and ``_`` (``tempfile``'s name sequence); matched whole
(``TEMPORARY_NAME.fullmatch(file_name)``) by the cleanup of a write killed before its rename
(``runs.checkpoint.remove_leftover_temporaries``)."""


def savefig_once(figure: Any, file: Any, **savefig_options: Any) -> None:
    """``figure.savefig(file, **savefig_options)``, drawn once. After ``tight_layout`` a figure
    keeps a placeholder layout engine, which lays out nothing, yet makes ``savefig`` draw the
    whole figure once more beforehand (its layout pass: a report's figures took about a sixth
    longer); a figure with that placeholder is given no engine (which adds nothing under the
    default ``rcParams``), so it is drawn once. The output is the same bytes.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import io, matplotlib.pyplot as plt
        >>> figure, _ = plt.subplots()
        >>> figure.tight_layout()
        >>> type(figure.get_layout_engine()).__name__
        'PlaceHolderLayoutEngine'
        >>> savefig_once(figure, io.BytesIO(), format="png")
        >>> figure.get_layout_engine() is None
        True
        >>> plt.close(figure)
    """
    from matplotlib.layout_engine import PlaceHolderLayoutEngine

    if isinstance(figure.get_layout_engine(), PlaceHolderLayoutEngine):
        figure.set_layout_engine(None)
    figure.savefig(file, **savefig_options)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Writes through ``write(file)`` to a temporary file in ``path``'s folder (made if needed),
    then renames it to ``path``; see the module docstring for the permissions it gets. A ``path``
    that is a symbolic link is written through (:func:`write_target`): the file it points to is
    replaced, the link kept.

    Raises:
        IsADirectoryError: ``path`` is a folder (or a link to one).
        OSError: naming ``path`` (not the temporary file) when the folder cannot be written,
            when a write fails (``ENOSPC``: the error of ``write`` or ``fsync``, which names no
            file, is given ``path``), or a link that never ends (``ELOOP``, as ``open`` raises:
            see :func:`write_target`).
    """
    given = Path(path)
    if given.is_dir():
        raise IsADirectoryError(f"{str(given)!r} is a folder, not a file; give a file path")
    path = write_target(given)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _target_mode(path)
    try:
        prefix = f".{path.name}."
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=TEMPORARY_SUFFIX)
    except OSError as err:
        raise type(err)(err.errno, f"cannot write here ({err.strerror})", str(given)) from None
    try:
        os.chmod(tmp, mode)  # mkstemp creates 0o600
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        # an error of the write itself (ENOSPC from write or fsync) names no file: it is
        # given ``path`` as given, as one naming the temporary file or the target is
        if (
            isinstance(err, OSError)
            and (err.filename in (tmp, str(path)) or err.filename is None)
            and err.errno is not None
            and err.strerror
        ):
            raise type(err)(err.errno, err.strerror, str(given)) from None
        raise


def write_target(path: str | os.PathLike) -> Path:
    """The file that writing ``path`` changes: ``path`` itself, or, when it is a symbolic link
    (possibly to another link, or dangling), the file it finally points to, as ``open`` follows
    it. :func:`atomic_write` renames its temporary file onto this path, so that the link is
    written through rather than replaced by a regular file.

    Raises:
        OSError: ``ELOOP`` naming ``path``, as ``open`` raises it, for a link that never ends
            (a loop, or a chain past the system's limit): ``os.path.realpath`` would return
            the link itself, and the rename would replace it.
    """
    path = Path(path)
    if not path.is_symlink():
        return path
    try:
        os.stat(path)
    except OSError as err:  # (a dangling link is written through: its target is made)
        if err.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path)) from None
    return Path(os.path.realpath(path))


def atomic_copy(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Copies the file ``source`` to ``destination`` with :func:`atomic_write`."""
    with open(source, "rb") as handle:
        atomic_write(destination, lambda file: shutil.copyfileobj(handle, file))


def nearest_existing(path: str | os.PathLike) -> Path:
    """The nearest of ``path`` and its ancestors that exists (what a ``mkdir -p`` would start
    from): the one place the package walks up a path to check where it can write."""
    path = Path(path)
    return next((folder for folder in (path, *path.parents) if folder.exists()), Path("."))


def figure_formats() -> dict[str, str]:
    """The image formats matplotlib can write: suffix (no dot) -> description."""
    from matplotlib.backend_bases import FigureCanvasBase

    return FigureCanvasBase.get_supported_filetypes()


def check_output_file(path: str | os.PathLike, option: str, *, make_parent: bool = False) -> Path:
    """Checks, before any work, that ``path`` can be written as a figure; returns it as a Path.

    Its suffix must be an image format matplotlib writes (none: PNG); it must not be a folder;
    its folder must exist and be writable (with ``make_parent``, its nearest existing ancestor
    must be a writable folder, as the folder will be made); for a symbolic link, the folder of
    the file it points to (:func:`write_target`); an existing file must not be read-only
    (:func:`check_replaceable`).

    Raises:
        ValueError: naming ``option``, the path and what is allowed.
    """
    if not os.fspath(path):  # (before Path, which reads '' as '.')
        raise ValueError(f"{option}: an empty path; give an image file such as schedules.png")
    path = Path(path)
    suffix = path.suffix.lstrip(".").lower()
    formats = figure_formats()
    if suffix and suffix not in formats:
        raise ValueError(
            f"{option} {str(path)!r}: unknown image format {suffix!r}; allowed: "
            + ", ".join(f".{name}" for name in sorted(formats))
        )
    if path.is_dir():
        raise ValueError(f"{option} {str(path)!r} is a folder, not a file; give an image file")
    try:
        target = write_target(path)  # (a symbolic link is written through: its target's folder)
    except OSError as err:
        raise ValueError(f"{option} {str(path)!r}: {err.strerror}") from None
    folder = nearest_existing(target.parent)
    if not folder.is_dir():
        raise ValueError(f"{option} {str(path)!r}: {str(folder)!r} is a file, not a folder")
    if folder != target.parent and not make_parent:
        raise ValueError(
            f"{option} {str(path)!r}: the folder {str(target.parent)!r} does not exist"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {str(path)!r}: the folder {str(folder)!r} is not writable")
    check_replaceable(path, option)
    try:  # a file made and removed: os.access says yes where none can be made (/proc for root)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ValueError(
            f"{option} {str(path)!r}: cannot write in the folder {str(folder)!r} "
            f"({err.strerror or err})"
        ) from None
    return path


def check_replaceable(path: str | os.PathLike, option: str) -> None:
    """Refuses (``ValueError`` naming ``option`` and the path) an existing file that is read-only
    for this process (``os.access(..., W_OK)``; for a symbolic link, the file it points to,
    :func:`write_target`), as ``stepsize report --readme`` refuses a read-only README: the
    rename of :func:`atomic_write` would replace it although its permissions protect it. A path
    that does not exist, or is not a file, passes (its own checks judge it); a symbolic link
    that never ends (a loop) is refused, as ``open`` would fail on it."""
    try:
        target = write_target(path)
    except OSError as err:
        raise ValueError(f"{option}: {str(path)!r}: {err.strerror}") from None
    if target.is_file() and not os.access(target, os.W_OK):
        raise ValueError(f"{option}: {str(path)!r} is read-only; make it writable to rewrite it")


def read_text(path: str | os.PathLike) -> str:
    """The UTF-8 text of ``path``.

    Raises:
        ValueError: naming the file when it is not valid UTF-8.
        OSError: as ``open`` raises it (a missing file, a folder), naming the file.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{path}: not valid UTF-8 text (byte 0x{data[err.start]:02x} on line {line}); "
            "save it as UTF-8"
        ) from None


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """The TOML document of ``path`` (UTF-8).

    Raises:
        ValueError: naming the file when it is not valid UTF-8 or not valid TOML.
    """
    text = read_text(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML: {err}") from None


def read_json(path: str | os.PathLike, kind: type | None = None) -> Any:
    """The JSON document of ``path`` (UTF-8); with ``kind`` (``dict``, ``list``), it must be one.

    Raises:
        ValueError: naming the file when it is not valid UTF-8, not valid JSON or not a ``kind``.
    """
    import json

    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err}") from None
    if kind is not None and not isinstance(data, kind):
        names = {dict: "an object", list: "an array"}
        raise ValueError(
            f"{path}: expected {names.get(kind, kind.__name__)} in JSON, "
            f"got {type(data).__name__} {_short(data)}"
        )
    return data


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
