"""Refusals of the ``stepsize`` command: one line on stderr naming the option or file, the bad
value and what is allowed, exit status 2, no traceback, and nothing on disk changed (no lock file,
no generated data) before every check passed."""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
from pathlib import Path

import pytest

from runs.cli import build_parser, main
from tests.runs.helpers import FASTEST, one_error_line, refused

TINY = FASTEST  # (tests.runs.helpers: 5 updates of a logistic regression)


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file and folder under ``folder``: its mode and (files) bytes."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mode, p.read_bytes() if p.is_file() else b"")
        for p in sorted(folder.rglob("*"))
    }


_error, _refused = one_error_line, refused


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory, mnist1d_cache) -> Path:
    """A finished tiny experiment folder (``<logdir>/tiny``), copied by each test that uses it."""
    base = tmp_path_factory.mktemp("finished")
    (base / "tiny.toml").write_text(TINY)
    assert main(["run", str(base / "tiny.toml"), "--logdir", str(base / "L"), "--quiet"]) == 0
    return base / "L" / "tiny"


@pytest.fixture
def report_dir(finished, tmp_path) -> Path:
    """A private copy of the finished experiment folder."""
    return Path(shutil.copytree(finished, tmp_path / "tiny"))


# ------------------------------------------------------------------------------ argument parsing


def _usage_error(capsys, argv: list[str]) -> str:
    """The line of a usage error: ``main`` returns 2 or argparse exits with 2."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors exit, as before
        code = exit_.code
    assert code == 2
    return _error(capsys).strip()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "--nope"], "stepsize run: error: unrecognized arguments: --nope"),
        (["bench"], "stepsize bench: error: the following arguments are required: BENCHMARK"),
        (["run", "--jobs", "x"], "stepsize run: error: argument --jobs: invalid int value: 'x'"),
    ],
)
def test_usage_errors_are_one_line_with_status_2(capsys, argv, expected):
    assert _usage_error(capsys, argv) == expected


def test_help_is_unchanged(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: stepsize run [-h]")
    assert "--seeds N" in out


def test_options_are_not_abbreviated(tmp_path, capsys):
    # `--seed 3` was taken as `--seeds 3`
    err = _refused(capsys, "run", "quadratic", "--seed", "3", "--logdir", str(tmp_path / "L"))
    assert "unrecognized arguments: --seed" in err
    assert not (tmp_path / "L").exists()


def test_bound_with_a_negative_number_reaches_its_check(capsys):
    # (it was taken for an option: "argument --bound: expected one argument")
    assert _usage_error(capsys, ["plot", "tf-decays", "--bound", "-1,1"]) == (
        "stepsize plot: error: argument --bound: --bound needs D > 0 and G > 0, got D=-1.0, G=1.0"
    )


def test_eval_steps_takes_the_default_its_help_shows():
    argv = ["bench", "schedulers", "--eval-steps", "1e6"]
    assert build_parser(argv).parse_args(argv).eval_steps == 10**6


# -------------------------------------------------------------------------------- stepsize run


def test_a_python_file_is_not_an_experiment(tmp_path, capsys):
    mine = tmp_path / "mine.py"
    mine.write_text("print('hello')\n")
    err = _refused(capsys, "run", str(mine), "--logdir", str(tmp_path / "L"))
    assert f"experiment file {str(mine)!r} is not a .toml file" in err
    assert not (tmp_path / "L").exists()


def test_a_folder_is_not_an_experiment_file(tmp_path, capsys):
    (tmp_path / "d.toml").mkdir()
    err = _refused(capsys, "run", str(tmp_path / "d.toml"), "--logdir", str(tmp_path / "L"))
    assert "is a folder, not a .toml file" in err


def test_invalid_utf8_names_the_file(tmp_path, capsys):
    path = tmp_path / "u.toml"
    path.write_bytes(b'name = "\xff"\n')
    err = _refused(capsys, "run", str(path), "--logdir", str(tmp_path / "L"))
    assert f"{path}: not valid UTF-8 text (byte 0xff on line 1)" in err


def test_a_table_given_as_a_value_is_located_without_a_stray_dot(tmp_path, capsys):
    path = tmp_path / "t.toml"
    path.write_text(
        TINY.replace('[model]\nname = "logistic"', "").replace("seeds = 1", 'model = "mlp"')
    )
    err = _refused(capsys, "run", str(path), "--logdir", str(tmp_path / "L"))
    assert "model: must be a table, got 'mlp'" in err
    assert "model.:" not in err


def test_study_seeds_are_checked_before_the_folder_is_made(tmp_path, capsys):
    err = _refused(capsys, "run", "quadratic", "--seeds", "0", "--logdir", str(tmp_path / "L"))
    assert not (tmp_path / "L").exists()
    assert "--seeds must be a positive integer (the seeds 0..N-1), got 0" in err


def test_an_empty_variants_list_is_refused(tiny, tmp_path, capsys):
    err = _refused(capsys, "run", str(tiny), "--variants", ",", "--logdir", str(tmp_path / "L"))
    assert not (tmp_path / "L").exists()
    assert "--variants: no variant named in ','; tiny has: a" in err


def test_an_empty_logdir_is_refused(tiny, capsys):
    assert "--logdir: an empty path ''" in _refused(capsys, "run", str(tiny), "--logdir", "")


@pytest.mark.parametrize("where", ["a", "a/seed0"])
def test_a_file_where_a_run_folder_goes_is_named_before_writing(tiny, tmp_path, capsys, where):
    root = tmp_path / "L" / "tiny"
    (root / where).parent.mkdir(parents=True, exist_ok=True)
    (root / where).write_text("")
    before = _snapshot(tmp_path / "L")
    err = _refused(capsys, "run", str(tiny), "--logdir", str(tmp_path / "L"), "--quiet")
    assert _snapshot(tmp_path / "L") == before  # experiment.json not written
    assert f"--logdir: {str(root / where)!r} is a file, not a folder" in err


def test_a_folder_where_experiment_json_goes_is_named(tiny, tmp_path, capsys):
    (tmp_path / "L" / "tiny" / "experiment.json").mkdir(parents=True)
    err = _refused(capsys, "run", str(tiny), "--logdir", str(tmp_path / "L"), "--quiet")
    assert "experiment.json' is a folder, not a file" in err
    assert ".tmp" not in err


def test_an_unwritable_run_folder_is_named_before_writing(tiny, tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "L" / "tiny" / "a" / "seed0"
    run_dir.mkdir(parents=True)
    access = os.access
    monkeypatch.setattr(  # as chattr +i makes it, even for root
        os, "access", lambda path, mode: access(path, mode) and Path(path) != run_dir
    )
    before = _snapshot(tmp_path / "L")
    err = _refused(capsys, "run", str(tiny), "--logdir", str(tmp_path / "L"), "--quiet")
    assert f"--logdir: the folder {str(run_dir)!r} is not writable" in err
    assert _snapshot(tmp_path / "L") == before


def test_an_error_in_a_thread_is_one_line(monkeypatch, capsys):
    import runs.catalog

    def run(args) -> int:  # a writer thread that cannot write its file
        def fail() -> None:
            raise PermissionError(1, "Operation not permitted", b"L/tiny/events.out")

        thread = threading.Thread(target=fail)
        thread.start()
        thread.join()
        return 0

    monkeypatch.setattr(runs.catalog, "run", run)
    assert main(["list"]) == 2
    assert _error(capsys) == "stepsize: error: L/tiny/events.out: Operation not permitted\n"


def test_models_are_checked_before_mnist1d_is_generated(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STEPSIZE_CACHE", str(tmp_path / "cache"))
    spec = TINY.replace("train_examples = 200", "train_examples = 230")  # (no cached copy)
    for model, expected in (
        ('name = "lenet"', "model 'lenet' takes images"),
        ('name = "mlp"\nhiddn = 4', "unknown option(s) hiddn for model 'mlp'"),
    ):
        path = tmp_path / "m.toml"
        path.write_text(spec.replace('name = "logistic"', model))
        assert main(["run", str(path), "--logdir", str(tmp_path / "L")]) == 2
        assert not (tmp_path / "cache").exists()  # MNIST-1D neither generated nor cached
        assert f"variant 'a', model: {expected}" in _error(capsys)
    err = _refused(capsys, "bench", "runner", "--model", "nosuch")
    assert not (tmp_path / "cache").exists()
    assert "--model nosuch: variant 'bench', model: unknown model 'nosuch'" in err
    assert not (tmp_path / "L").exists()


# ----------------------------------------------------------------------------- stepsize report


def test_report_of_a_json_array_is_one_line_without_a_lock(tmp_path, capsys):
    (tmp_path / "X").mkdir()
    (tmp_path / "X" / "experiment.json").write_text("[1, 2]")
    assert main(["report", str(tmp_path / "X")]) == 2
    assert sorted(p.name for p in (tmp_path / "X").iterdir()) == ["experiment.json"]
    err = _error(capsys)
    assert "experiment.json: expected an object in JSON, got list [1, 2]" in err


def test_report_writes_nothing_when_one_folder_is_broken(report_dir, tmp_path, capsys):
    logdir = tmp_path / "A"
    logdir.mkdir()
    good = Path(shutil.move(report_dir, logdir / "good"))
    bad = Path(shutil.copytree(good, logdir / "zbad"))
    (bad / "experiment.json").write_text('{"name":')
    before = _snapshot(logdir)
    assert main(["report", str(logdir)]) == 2
    assert _snapshot(logdir) == before
    assert f"{bad / 'experiment.json'}: not valid JSON" in _error(capsys)


def test_report_names_a_result_that_is_not_a_run_s(report_dir, capsys):
    path = report_dir / "a" / "seed0" / "result.json"
    result = json.loads(path.read_text())
    result["final"] = "x"
    path.write_text(json.dumps(result))
    before = _snapshot(report_dir)
    assert main(["report", str(report_dir)]) == 2
    assert _snapshot(report_dir) == before
    assert f"{path}: final must be an object of metrics, got 'x'" in _error(capsys)


@pytest.mark.parametrize("readme", ["missing", "folder", "latin1"])
def test_report_checks_readme_before_taking_locks(report_dir, tmp_path, capsys, readme):
    (report_dir / ".stepsize.lock").unlink()
    path = tmp_path / "README.md"
    if readme == "folder":
        path.mkdir()
    elif readme == "latin1":
        path.write_bytes(b"caf\xe9\n")
    before = _snapshot(tmp_path)
    assert main(["report", str(report_dir), "--readme", str(path)]) == 2
    assert _snapshot(tmp_path) == before  # no lock file
    err = _error(capsys)
    assert "--readme: " in err
    assert {
        "missing": "does not exist",
        "folder": "is a folder, not a README file",
        "latin1": "not valid UTF-8 text (byte 0xe9 on line 1)",
    }[readme] in err
    assert _snapshot(tmp_path) == before


def test_report_of_a_folder_without_runs_takes_no_lock(report_dir, capsys):
    shutil.rmtree(report_dir / "a")
    (report_dir / ".stepsize.lock").unlink()
    assert main(["report", str(report_dir)]) == 2
    assert not (report_dir / ".stepsize.lock").exists()
    assert "holds no finished runs" in _error(capsys)


def test_readme_keeps_its_mode_and_figures_are_copied_atomically(report_dir, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# project\n")
    readme.chmod(0o644)
    previous = os.umask(0o077)
    try:
        assert main(["report", str(report_dir), "--readme", str(readme)]) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE(readme.stat().st_mode) == 0o644
    assert "<!-- results:begin -->" in readme.read_text()
    figure = tmp_path / "docs" / "results" / "tiny.png"
    assert stat.S_IMODE(figure.stat().st_mode) == 0o600  # a new file: the umask's
    assert not list(figure.parent.glob(".*.tmp"))


# ------------------------------------------------------------------ score, lr-find, bench, plot


def test_score_seed_is_checked_first(tmp_path, capsys):
    assert main(["score", "--quick", "--seed", "-1", "--logdir", str(tmp_path / "L")]) == 2
    assert not (tmp_path / "L").exists()
    assert "--seed must be an integer >= 0, got --seed=-1" in _error(capsys)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--seed", "-1"], "--seed must be an integer in 0..4294967295, got --seed=-1"),
        (["--variant", "zz"], "--variant: unknown variant(s) zz; tiny has: a"),
        (["--logdir", "F"], "--logdir: 'F' is a file, not a folder"),
        (["--out", "F/o.png"], "--out 'F/o.png': 'F' is a file, not a folder"),
        (["--out", "o.xyz"], "--out 'o.xyz': unknown image format 'xyz'; allowed: "),
    ],
)
def test_lr_find_checks_its_options_before_the_work(
    tiny, tmp_path, capsys, monkeypatch, extra, expected
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STEPSIZE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "F").write_text("")
    tiny.write_text(TINY.replace("train_examples = 200", "train_examples = 240"))
    err = _refused(capsys, "lr-find", str(tiny), "--num-iter", "5", "--quiet", *extra)
    assert expected in err
    assert not (tmp_path / "cache").exists()  # refused before any work


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--models", "4x"], "--models: bad shape '4x'; allowed: 4x4M"),
        (["--models", ","], "--models: no shape in ','"),
        (["--threads", "-1"], "--threads must be a positive integer, got --threads=-1"),
        (["--threads", "0"], "--threads must be a positive integer, got --threads=0"),
        (["--lr-free", "--repeat", "0"], "--repeat must be a positive integer, got --repeat=0"),
        (["--lr-free", "--optimizers", "nonsense"], "unknown 'nonsense' with --lr-free; allowed"),
        (["--alone", "--device", "cuda"], "--alone: runs on the CPU only"),
        (["--alone", "--instances", "0"], "--instances must be a positive integer"),
    ],
)
def test_bench_optim_options(capsys, extra, expected):
    which = "Prodigy" if "--lr-free" in extra else "SGD"  # (a small run: before, it ran)
    small = ["--models", "1x10", "--optimizers", which, "--no-compile", "--repeat", "1"]
    assert expected in _refused(capsys, "bench", "optim", *small, *extra)


def test_figures_get_the_mode_open_would_give(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    previous = os.umask(0o022)
    try:
        assert main(["plot", "tf-decays", "--steps", "10", "--out", "a.png"]) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.png").stat().st_mode) == 0o644


@pytest.mark.parametrize("bound", [[], ["--bound", "1,1"]])
def test_plot_out_is_checked_first(tmp_path, capsys, monkeypatch, bound):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "o.png").mkdir()
    (tmp_path / "F").write_text("")
    for out, expected in (
        ("o.png", "--out 'o.png' is a folder, not a file"),
        ("F/o.png", "--out 'F/o.png': 'F' is a file, not a folder"),
        ("o.xyz", "--out 'o.xyz': unknown image format 'xyz'"),
    ):
        err = _refused(capsys, "plot", "tf-decays", "--steps", "10", "--out", out, *bound)
        assert expected in err
        assert ".tmp" not in err


def test_plot_names_a_bad_schedule_file(tmp_path, capsys):
    bad = tmp_path / "s.toml"
    bad.write_text("a = [\n")
    assert f"{bad}: not valid TOML: " in _refused(capsys, "plot", str(bad))
    bad.write_bytes(b'name = "\xff"\n')
    assert f"{bad}: not valid UTF-8 text" in _refused(capsys, "plot", str(bad))


# ------------------------------------------------------- out-of-range numbers, before any writing


@pytest.mark.parametrize(
    ("experiment", "extra", "expected"),
    [
        ("tiny", ["--jobs", "2147483647", "--seeds", "2"], "--jobs must be at most 1024, got"),
        ("tiny", ["--threads", "2147483648"], "--threads must be at most 1024, got"),
        ("quadratic", ["--quick", "--threads", "2147483648"], "--threads must be at most 1024"),
    ],
)
def test_huge_jobs_and_threads_are_refused_before_writing(
    tiny, tmp_path, capsys, experiment, extra, expected
):
    # (they failed with OverflowError or torch's "Overflow when unpacking long" after writing)
    which = str(tiny) if experiment == "tiny" else experiment
    err = _refused(capsys, "run", which, "--logdir", str(tmp_path / "L"), "--quiet", *extra)
    assert expected in err
    assert not (tmp_path / "L").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["score", "--quick", "--jobs", "2147483648"],
        ["bench", "runner", "--threads", "2147483648", "--steps", "1", "--repeats", "1"],
    ],
)
def test_score_jobs_and_bench_threads_are_bounded(tmp_path, capsys, argv):
    flag = argv[argv.index("--jobs") if "--jobs" in argv else argv.index("--threads")]
    err = _refused(capsys, *argv, *(["--logdir", str(tmp_path / "L")] if "score" in argv else []))
    assert f"{flag} must be at most 1024, got {flag}=2147483648" in err
    assert not (tmp_path / "L").exists()


def test_a_seed_of_2_to_the_32_is_refused_before_writing(tiny, tmp_path, capsys):
    """torch's CPU generator keeps a seed's low 32 bits: 2**32 would repeat seed 0's weights."""
    tiny.write_text(TINY.replace("seeds = 1", f"seeds = [{2**32}]"))
    err = _refused(capsys, "run", str(tiny), "--logdir", str(tmp_path / "L"), "--quiet")
    allowed = f"a list of distinct seeds in 0..{2**32 - 1}"
    count = "a positive integer N <= 100000 (seeds 0..N-1)"
    assert f"seeds: must be {count} or {allowed} (seed {2**32} is not: " in err
    assert err.rstrip().endswith(f"got [{2**32}]")
    assert not (tmp_path / "L").exists()
    tiny.write_text(TINY.replace("seeds = 1", f"seeds = [{2**32 - 1}]"))  # the largest
    assert main(["run", str(tiny), "--logdir", str(tmp_path / "L"), "--quiet"]) == 0


@pytest.mark.parametrize("where", ["toml", "flag"])
def test_a_seed_count_beyond_100000_is_refused_before_writing(tiny, tmp_path, capsys, where):
    """A count of seeds lists one run per seed: ``--seeds 10**9`` had built a billion-entry
    tuple (and 2**64 an OverflowError traceback) after the checks passed it."""
    argv = ["run", str(tiny), "--logdir", str(tmp_path / "L"), "--quiet"]
    if where == "toml":
        tiny.write_text(TINY.replace("seeds = 1", f"seeds = {2**64}"))
    else:
        argv += ["--seeds", str(10**9)]
    err = _refused(capsys, *argv)
    assert "100000" in err
    assert not (tmp_path / "L").exists()


# ------------------------------------------------------------ checks that came after the training


def test_a_folder_where_a_figure_goes_is_named_before_training(report_dir, tmp_path, capsys):
    figure = report_dir / "figures" / "train_loss.png"
    figure.unlink()
    figure.mkdir()
    before = _snapshot(report_dir)
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(TINY)
    err = _refused(capsys, "run", str(tiny), "--logdir", str(tmp_path), "--seeds", "2", "--quiet")
    assert f"--logdir: {str(figure)!r} is a folder, not a file; remove it" in err
    assert _snapshot(report_dir) == before  # seed 1 not trained, nothing rewritten


@pytest.mark.parametrize("second", ["same/", "logdir"])
def test_report_of_one_folder_named_twice_reports_it_once(report_dir, capsys, second):
    # (its own lock was reported as "another stepsize process (pid <its own pid>)")
    other = str(report_dir) + "/" if second == "same/" else str(report_dir.parent)
    assert main(["report", str(report_dir), other]) == 0
    assert capsys.readouterr().out.count("wrote summary.json") == 1


# ------------------------------------------------------------------- messages naming the option


def test_lr_find_names_its_flags(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STEPSIZE_CACHE", str(tmp_path / "cache"))
    for extra, expected in (
        (["--out", ""], "--out: an empty path ''; give an image file"),
        (
            ["--start-lr", "-1"],
            "--start-lr must be a finite number in (0, inf), got --start-lr=-1.0",
        ),
        (["--num-iter", "1"], "--num-iter must be an integer in [2, 10000000], got --num-iter=1"),
        (["--variant", "a,a"], "--variant: name one variant, got 'a,a'"),
        (["--seed", str(2**32)], f"--seed must be an integer in 0..{2**32 - 1} (torch's CPU"),
        (["--data-dir", ""], "--data-dir: an empty path ''; give a folder"),
    ):
        err = _refused(capsys, "lr-find", str(tiny), "--num-iter", "5", "--quiet", *extra)
        assert expected in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]


def test_run_names_what_is_wrong_with_its_paths(tmp_path, tiny, capsys):
    os.mkfifo(tmp_path / "fifo")
    for experiment, extra, expected in (
        (str(tmp_path / "fifo"), [], f"experiment file {str(tmp_path / 'fifo')!r} is not a file"),
        ("", [], "experiment: an empty name ''; give a bundled experiment or a .toml file"),
        (str(tiny), ["--data-dir", ""], "--data-dir: an empty path ''; give a folder"),
    ):
        argv = ["run", experiment, "--logdir", str(tmp_path / "L"), "--quiet", *extra]
        assert expected in _refused(capsys, *argv)
    assert not (tmp_path / "L").exists()


def test_a_logdir_that_cannot_be_made_is_named(tiny, capsys, monkeypatch, tmp_path):
    import pathlib

    mkdir = pathlib.Path.mkdir

    def refuse(self, *args, **kwargs):  # as in /proc, which root may "write" but not mkdir in
        if "L" in self.parts:
            raise FileNotFoundError(2, "No such file or directory", str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", refuse)
    err = _refused(capsys, "run", str(tiny), "--logdir", str(tmp_path / "L"), "--quiet")
    assert f"--logdir: cannot make the folder {str(tmp_path / 'L' / 'tiny')!r}" in err


def test_study_experiments_refuse_jobs(tmp_path, capsys):
    err = _refused(capsys, "run", "quadratic", "--quick", "--jobs", "2", "--logdir", str(tmp_path))
    assert "--jobs does not apply to quadratic" in err


def test_bench_schedulers_eval_steps_is_bounded(capsys):
    err = _refused(capsys, "bench", "schedulers", "--eval-steps", "1e30", "--steps", "1")
    assert "--eval-steps must be at most 100000000, got --eval-steps=1" in err
