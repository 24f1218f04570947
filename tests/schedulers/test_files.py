"""The one atomic writer (``schedulers.files``), shared by the schedulers' figures and every file
the runner writes: permissions, errors naming the real path, and readers naming the file."""

import os
import stat

import pytest

import schedulers as S
from schedulers import files, plot


@pytest.fixture
def umask():
    """Sets the umask for the test (``umask(0o077)``), restoring it after."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_there_is_one_atomic_writer():
    from runs import checkpoint

    assert checkpoint.atomic_write is files.atomic_write


def test_a_new_file_gets_the_umask_s_mode_and_a_replaced_one_keeps_its_own(tmp_path, umask):
    umask(0o027)
    files.atomic_write(tmp_path / "new.txt", lambda f: f.write(b"x"))
    assert _mode(tmp_path / "new.txt") == 0o640
    kept = tmp_path / "kept.txt"
    kept.write_text("old")
    kept.chmod(0o644)
    umask(0o077)
    files.atomic_write(kept, lambda f: f.write(b"new"))
    assert kept.read_text() == "new"
    assert _mode(kept) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt", "new.txt"]


def test_atomic_copy(tmp_path, umask):
    umask(0o022)
    (tmp_path / "a.bin").write_bytes(b"\x00\x01")
    files.atomic_copy(tmp_path / "a.bin", tmp_path / "sub" / "b.bin")
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"\x00\x01"
    assert _mode(tmp_path / "sub" / "b.bin") == 0o644


def test_errors_name_the_real_path_not_the_temporary_one(tmp_path, monkeypatch):
    # (the rename onto a folder failed naming ".o.png.XXXX.tmp")
    (tmp_path / "o.png").mkdir()
    with pytest.raises(IsADirectoryError, match=r"o\.png' is a folder, not a file"):
        files.atomic_write(tmp_path / "o.png", lambda f: f.write(b"x"))

    def unwritable(*, dir, prefix, suffix):  # as an immutable folder refuses the temporary file
        raise PermissionError(1, "Operation not permitted", f"{dir}/{prefix}abc{suffix}")

    monkeypatch.setattr(files.tempfile, "mkstemp", unwritable)
    with pytest.raises(PermissionError) as err:
        files.atomic_write(tmp_path / "x.txt", lambda f: f.write(b"x"))
    assert err.value.filename == str(tmp_path / "x.txt")
    monkeypatch.undo()

    def fail(_file):
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):  # a writer's own error passes unchanged
        files.atomic_write(tmp_path / "x.txt", fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]  # no temporary file left


def test_schedule_figures_get_the_mode_open_would_give(tmp_path, umask):
    # (save_figure wrote through mkstemp, 0o600, whatever the umask)
    umask(0o022)
    path = plot.plot_schedules({"cos": S.cosine_decay(0.1, 20)}, 20, tmp_path / "a.png")
    assert _mode(path) == 0o644


def test_save_figure_names_a_file_on_the_way(tmp_path):
    (tmp_path / "F").write_text("")
    with pytest.raises(ValueError, match=r"^path '.*a\.png': '.*F' is a file, not a folder"):
        plot.plot_schedules({"cos": S.cosine_decay(0.1, 20)}, 20, tmp_path / "F" / "a.png")


def test_readers_name_the_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_bytes(b'a = "caf\xe9"\n')
    with pytest.raises(ValueError, match=r"s\.toml: not valid UTF-8 text \(byte 0xe9 on line 1\)"):
        files.read_toml(path)
    path.write_text("a = [\n")
    with pytest.raises(ValueError, match=r"s\.toml: not valid TOML: "):
        files.read_toml(path)
    data = tmp_path / "d.json"
    data.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"d\.json: expected an object in JSON, got list \[1, 2\]"):
        files.read_json(data, dict)
    data.write_text("{")
    with pytest.raises(ValueError, match=r"d\.json: not valid JSON: "):
        files.read_json(data)


def test_check_output_file(tmp_path):
    (tmp_path / "F").write_text("")
    (tmp_path / "d.png").mkdir()
    for path, message in (
        (tmp_path / "o.xyz", "unknown image format 'xyz'; allowed: "),
        (tmp_path / "d.png", "is a folder, not a file"),
        (tmp_path / "F" / "o.png", "is a file, not a folder"),
        (tmp_path / "none" / "o.png", "does not exist"),
    ):
        with pytest.raises(ValueError, match=f"^--out '.*': .*{message}|^--out '.*' {message}"):
            files.check_output_file(path, "--out")
    assert files.check_output_file(tmp_path / "new" / "o.png", "--out", make_parent=True)
    assert files.check_output_file(tmp_path / "o.svg", "--out") == tmp_path / "o.svg"


def test_check_output_file_names_the_option_for_an_empty_path_and_an_unwritable_folder():
    """Before: '' became Path('.') ('--out '.' is a folder'), and a folder that os.access calls
    writable but where no file can be made (/proc for root) passed, to fail later without
    naming --out."""
    with pytest.raises(ValueError, match=r"^--out: an empty path"):
        files.check_output_file("", "--out")
    if os.path.isdir("/proc") and os.access("/proc", os.W_OK):
        with pytest.raises(ValueError, match=r"^--out '/proc/x.png': cannot write in .*'/proc'"):
            files.check_output_file("/proc/x.png", "--out")
