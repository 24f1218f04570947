"""Audit 89 of the ``stepsize`` command line (clifuzz): upper bounds on counts of work, a
learning rate beyond the parameters' dtype, empty option values, options that would be ignored
and read-only output files. Each refusal is one line with exit status 2 and nothing written;
where the code before the fix would have started the work, the work is replaced by a sentinel
that fails the test instead of running it."""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from runs.cli import main
from tests.runs.helpers import FASTEST, copy_finished, one_error_line, refused

HUGE = "99999999999999999999"  # the fuzzer's huge integer (beyond int64)


class Sentinel(Exception):
    """Raised by a stand-in for the work a refused command must never start."""


def _stop(*args, **kwargs):
    raise Sentinel("the work started: the value was not refused")


_error, _refused = one_error_line, refused


@pytest.fixture
def tiny(tmp_path, monkeypatch) -> Path:
    """The fastest valid experiment file, in a fresh working folder."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tiny.toml"
    path.write_text(FASTEST)
    return path


def _entries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ------------------------------------------------------------------ F1: score --trials/--studies


@pytest.fixture
def no_training(monkeypatch):
    """``score`` fails the test with :class:`Sentinel` if it gets as far as training a trial."""
    import runs.score as S

    monkeypatch.setattr(S, "run_trials", _stop)
    return S


@pytest.mark.parametrize(
    ("flag", "value", "maximum"),
    [("--trials", HUGE, 10_000), ("--trials", "10001", 10_000), ("--studies", HUGE, 1000),
     ("--studies", "1001", 1000)],
)  # fmt: skip
def test_score_refuses_too_many_trials_or_studies_before_anything_is_written(
    tmp_path, capsys, monkeypatch, no_training, flag, value, maximum
):
    """Before: a huge --trials crashed with an OverflowError traceback after the lock was made,
    a huge --studies started scoring and never ended (here: the planning is the sentinel)."""
    monkeypatch.setattr(no_training, "plan", _stop)
    logdir = tmp_path / "out"
    err = _refused(capsys, "score", "--quick", "--workloads", "quadratic", "--logdir",
                   str(logdir), flag, value)  # fmt: skip
    assert f"{flag} must be at most {maximum}, got {flag}={value}" in err
    assert not logdir.exists()


@pytest.mark.parametrize(("name", "maximum"), [("studies", 1000), ("trials", 10_000)])
def test_score_api_refuses_too_many_and_plans_the_largest_allowed(no_training, name, maximum):
    """The Python ``score()`` has the command's bounds; at the bound itself it plans and goes on
    to train (the sentinel)."""
    quadratic = [w for w in no_training.WORKLOADS if w.name == "quadratic"]
    rulesets = ("self",) if name == "studies" else ("external",)
    with pytest.raises(ValueError, match=f"{name} must be at most {maximum}, got {name}="):
        no_training.score(workloads=quadratic, rulesets=rulesets, **{name: maximum + 1})
    with pytest.raises(Sentinel):
        no_training.score(workloads=quadratic, rulesets=rulesets, **{name: maximum})


# ----------------------------------------------------- F2: a learning rate beyond float32's range


def _torch_overflow_message() -> str:
    """torch.optim.SGD's own error for lr = 1e308 on float32 parameters: the reference."""
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    with pytest.raises(RuntimeError) as caught:
        torch.optim.SGD([p], lr=1e308).step()
    return str(caught.value)


def test_an_lr_beyond_float32_is_refused_by_the_preflight_before_anything_is_written(
    tiny, tmp_path, capsys
):
    """Before: a RuntimeError traceback at the first update, after experiment.json, the lock,
    the TensorBoard files and the run folder were written."""
    tiny.write_text(FASTEST.replace("lr = 0.1", "lr = 1e308"))
    err = _refused(capsys, "run", str(tiny), "--logdir", str(tmp_path / "out"), "--quiet")
    assert "variant 'a', optimizer 'sgd': one update" in err
    assert f"RuntimeError: {_torch_overflow_message()}" in err
    assert "the parameters are float32, whose largest value is 3.40282e+38" in err
    assert not (tmp_path / "out").exists()


def test_an_lr_within_float32_still_trains_and_diverges_cleanly(tiny, tmp_path, capsys):
    """The preflight's update refuses only what cannot be applied: lr = 1e38 (< 3.4e38) is a
    run that diverges, as before."""
    tiny.write_text(FASTEST.replace("lr = 0.1", "lr = 1e38"))
    assert main(["run", str(tiny), "--logdir", str(tmp_path / "out"), "--quiet"]) == 0
    assert "diverged" in capsys.readouterr().out


def test_lr_find_refuses_a_rate_beyond_float32_naming_the_option(tiny, capsys, monkeypatch):
    import runs.lr_find as L

    monkeypatch.setattr(L, "load_dataset", _stop)
    largest = torch.finfo(torch.float32).max
    for args, flag in (
        (["--start-lr", "1e300", "--end-lr", "1e308"], "--start-lr"),
        (["--end-lr", "1e39"], "--end-lr"),
    ):
        err = _refused(capsys, "lr-find", str(tiny), "--out", "o.png", "--quiet", *args)
        assert f"{flag} must be at most {largest:.6g}, the largest float32 value" in err
    assert _entries(tiny.parent) == ["tiny.toml"]


def _linear(dtype: torch.dtype) -> tuple[torch.nn.Module, torch.optim.Optimizer, list]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).to(dtype)
    data = [(torch.randn(8, 3, dtype=dtype), torch.randint(0, 2, (8,))) for _ in range(3)]
    return model, torch.optim.SGD(model.parameters(), lr=0.1), data


def test_the_range_test_bounds_the_rates_by_the_parameters_dtype():
    """float32 parameters: a rate beyond torch.finfo(float32).max is refused before any update
    (the model unchanged); float64 parameters take 1e300 (their range)."""
    from schedulers.range_test import check_options, lr_range_test

    loss = torch.nn.functional.cross_entropy
    model, optimizer, data = _linear(torch.float32)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"end_lr must be at most 3\.40282e\+38, the largest fl"):
        lr_range_test(model, optimizer, loss, data, end_lr=1e308, num_iter=5, curvature_batches=0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    model, optimizer, data = _linear(torch.float64)
    result = lr_range_test(
        model, optimizer, loss, data, start_lr=1e290, end_lr=1e300, num_iter=5,
        curvature_batches=0,
    )  # fmt: skip
    assert result.lrs[0] == pytest.approx(1e290)
    largest = float(torch.finfo(torch.float32).max)
    options = {"num_iter": 5, "sweep": "exp", "smoothing": 0.9, "diverge_threshold": 4.0,
               "curvature_batches": 0}  # fmt: skip
    assert check_options(start_lr=1.0, end_lr=largest, **options)["end_lr"] == largest
    with pytest.raises(ValueError, match="end_lr must be at most"):
        check_options(start_lr=1.0, end_lr=math.nextafter(largest, math.inf), **options)


def test_a_range_test_table_beyond_float32_or_with_too_many_curvature_batches_is_refused():
    from runs.load import parse_experiment

    raw = tomllib.loads(FASTEST + "[range_test]\nend_lr = 1e308\ncurvature_batches = 1001\n")
    with pytest.raises(ValueError, match="2 problem") as caught:
        parse_experiment(raw, "x.toml")
    message = str(caught.value)
    assert "range_test.end_lr: must be at most 3.40282e+38, the largest float32 value" in message
    assert "range_test.curvature_batches: must be at most 1000" in message


@pytest.mark.parametrize(
    ("where", "table"),
    [
        ("search.lr", "[search]\nlr = [0.1, 1e39]\n"),
        ("variants[0].search.lr", "search = {lr = [1e39]}\n[search]\n"),
    ],
)
def test_a_search_grid_beyond_float32_is_refused_with_the_file(where, table):
    """A search run at such a rate would crash at its first update, after the comparison's
    files were written; float32's largest value (torch.finfo) is still allowed."""
    from runs.load import parse_experiment

    largest = float(torch.finfo(torch.float32).max)
    with pytest.raises(ValueError, match=re.escape(f"{where}: rates must be at most 3.40282e+38")):
        parse_experiment(tomllib.loads(FASTEST + table), "x.toml")
    parse_experiment(tomllib.loads(FASTEST + table.replace("1e39", repr(largest))), "x.toml")


# ---------------------------------------------------------------- F3: MNIST-1D sizes


@pytest.mark.parametrize("key", ["train_examples", "test_examples"])
def test_mnist1d_sizes_have_a_maximum_checked_with_the_file(key):
    """Before: 1e11 examples passed validation and crashed in the generator with numpy's
    _ArrayMemoryError traceback."""
    from runs.data import dataset_size_problem
    from runs.load import parse_experiment

    other = "test_examples" if key == "train_examples" else "train_examples"
    text = FASTEST.replace(f"{key} = ", f"{key} = 1000000000").replace(
        f"{other} = ", f"{other} = 1"
    )
    with pytest.raises(ValueError, match="problem") as caught:
        parse_experiment(tomllib.loads(text), "x.toml")
    assert f"dataset.{key}: {key} must be at most 1000000, got {key}=1000000000" in str(
        caught.value
    )
    sizes = {key: 1_000_000, other: 1000}
    assert dataset_size_problem("mnist1d", sizes["train_examples"], sizes["test_examples"]) is None
    sizes[key] = 1_000_010
    problem = dataset_size_problem("mnist1d", sizes["train_examples"], sizes["test_examples"])
    assert problem is not None
    assert problem[0] == key


# ---------------------------------------------------- F4, F5: benchmarks and other counts of work


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--steps", HUGE], f"--steps must be at most 10000000, got --steps={HUGE}"),
        (
            ["--steps", "10", "--repeats", HUGE],
            f"--repeats must be at most 10000, got --repeats={HUGE}",
        ),
    ],
)
def test_bench_schedulers_names_the_option_the_user_gave(capsys, argv, expected):
    """Before: ``total_steps must be an integer in [2, 2**53], got total_steps=1000...``."""
    err = _refused(capsys, "bench", "schedulers", *argv)
    assert expected in err
    assert "total_steps" not in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--steps", HUGE], f"--steps must be at most 1000000000, got --steps={HUGE}"),
        (["--repeats", HUGE], f"--repeats must be at most 10000, got --repeats={HUGE}"),
    ],
)
def test_bench_runner_bounds_steps_and_repeats(capsys, monkeypatch, argv, expected):
    """Before: both started measuring and never ended."""
    import runs.bench.runner as R

    monkeypatch.setattr(R, "dataset_on", _stop)
    threads = torch.get_num_threads()
    try:
        err = _refused(capsys, "bench", "runner", "--model", "logistic", *argv)
    finally:
        torch.set_num_threads(threads)
    assert expected in err


def test_bench_optim_bounds_repeat():
    from runs.bench import optim as B

    parser = argparse.ArgumentParser()
    B.add_arguments(parser)
    args = parser.parse_args(["--optimizers", "SGD", "--models", "1x10", "--repeat", HUGE])
    with pytest.raises(ValueError, match=f"--repeat must be at most 10000, got --repeat={HUGE}"):
        B.check_args(args)
    args.repeat = 10_000
    B.check_args(args)  # (the bound itself is allowed)


@pytest.mark.parametrize(
    ("where", "text"),
    [
        ("train.steps", FASTEST.replace("steps = 5", f"steps = {2**100}")),
        ("train.epochs", FASTEST.replace("steps = 5", "epochs = 1000000001")),
        ("variants[0].train.steps", FASTEST + "train = {steps = 1000000001}\n"),
        ("search.train.steps", FASTEST + "[search]\nlr = [0.1]\ntrain = {steps = 1000000001}\n"),
    ],
)
def test_a_training_budget_beyond_the_maximum_is_refused_where_it_is_written(where, text):
    """Before: ``steps = 2**100`` was accepted and trained (tomllib takes any integer)."""
    from runs.load import parse_experiment

    with pytest.raises(ValueError, match=re.escape(f"{where}: must be at most 1000000000")):
        parse_experiment(tomllib.loads(text), "x.toml")
    at_bound = text.replace("1000000001", "1000000000").replace(str(2**100), "1000000000")
    parse_experiment(tomllib.loads(at_bound), "x.toml")


def test_epochs_times_the_updates_of_an_epoch_are_bounded_by_the_preflight(mnist1d_cache):
    """200 examples in batches of 50: 4 updates an epoch, so 250,000,000 epochs are 10**9
    updates (allowed) and one more epoch is too many."""
    from runs.data import load_dataset
    from runs.experiment import training_problem
    from runs.load import parse_experiment

    data = load_dataset("mnist1d", train_examples=200, test_examples=100)
    per_epoch = math.ceil(200 / 50)
    epochs = 10**9 // per_epoch
    for count, too_many in ((epochs, False), (epochs + 1, True)):
        text = FASTEST.replace("steps = 5", f"epochs = {count}")
        variant = parse_experiment(tomllib.loads(text), "x.toml").variants[0]
        problem = training_problem(variant, data)
        if too_many:
            assert problem is not None
            assert f"make {count * per_epoch} updates; allowed: at most 1000000000" in problem
        else:
            assert problem is None


def test_lr_find_bounds_curvature_batches(tiny, capsys, monkeypatch):
    """Before: 10**8 batches were read ahead into a list (memory growing without end)."""
    import runs.lr_find as L

    monkeypatch.setattr(L, "load_dataset", _stop)
    err = _refused(
        capsys, "lr-find", str(tiny), "--out", "o.png", "--curvature-batches", "100000000"
    )
    assert (
        "--curvature-batches must be an integer in [0, 1000], got --curvature-batches=100000000"
        in err
    )


# ---------------------------------------------------------------- F6: empty option values


@pytest.fixture
def finished(finished_tiny) -> Path:
    """A finished tiny experiment folder (copied by each test that changes it)."""
    return finished_tiny


_copy = copy_finished


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mode, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}  # fmt: skip


def test_report_refuses_an_empty_readme(finished, tmp_path, capsys):
    """Before: ``--readme ''`` was read as no --readme: the report ran, no README written."""
    folder = _copy(finished, tmp_path / "tiny")
    before = _snapshot(folder)
    err = _refused(capsys, "report", str(folder), "--readme", "")
    assert "--readme: an empty path ''; give a Markdown file (.md)" in err
    assert _snapshot(folder) == before


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--readme", ""], "--readme: an empty path ''; give a Markdown file"),
        (["--submissions", ""], "--submissions: an empty path ''; give a TOML file"),
        (["--submissions", " "], "--submissions: an empty path ' '; give a TOML file"),
        (["--workloads", ""], "--workloads: an empty list ''; give comma-separated workload"),
    ],
)
def test_score_refuses_empty_values(tmp_path, capsys, no_training, argv, expected):
    """Before: each was read as the option left out (``--workloads ''``: every workload)."""
    logdir = tmp_path / "out"
    args = ["score", "--quick", "--trials", "1", "--logdir", str(logdir)]
    if argv[0] != "--workloads":
        args += ["--workloads", "quadratic"]
    err = _refused(capsys, *args, *argv)
    assert expected in err
    assert not logdir.exists()


@pytest.mark.parametrize("spec", ["", " "])
def test_plot_refuses_an_empty_spec_as_empty(tmp_path, capsys, monkeypatch, spec):
    """Before: ``schedule file '' is a folder, not a TOML file`` (Path('') is '.')."""
    monkeypatch.chdir(tmp_path)
    err = _refused(capsys, "plot", spec, "--out", "p.png")
    assert f"SPEC: an empty spec {spec!r}; give a preset, a TOML file or an inline dict" in err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- F7: options that were ignored


@pytest.mark.parametrize("logdir", ["file.txt", "", "stepsize-logs"])
def test_lr_find_refuses_logdir_with_out(tiny, capsys, monkeypatch, logdir):
    """Before: --logdir was ignored whenever --out was given (a file, '', anything)."""
    import runs.lr_find as L

    monkeypatch.setattr(L, "load_dataset", _stop)
    (tiny.parent / "file.txt").write_text("not a folder")
    err = _refused(capsys, "lr-find", str(tiny), "--out", "o.png", "--logdir", logdir, "--quiet")
    assert f"--logdir {logdir!r} does not apply with --out 'o.png'" in err
    assert _entries(tiny.parent) == ["file.txt", "tiny.toml"]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["nosuch-preset"], "SPEC 'nosuch-preset'"),
        (["--steps", "-5"], "--steps"),
        (["--out", "x.bogus"], "--out"),
        (["--out", "schedules.png"], "--out"),
        (["--bound", "1,1", "--tuned"], "--bound, --tuned"),
        (["--title", "t"], "--title"),
        (["--no-log"], "--no-log"),
    ],
)
def test_plot_list_presets_refuses_other_options(tmp_path, capsys, monkeypatch, extra, named):
    """Before: rc 0, the presets listed and every other option unchecked and ignored."""
    monkeypatch.chdir(tmp_path)
    err = _refused(capsys, "plot", "--list-presets", *extra)
    assert "--list-presets lists the presets and draws nothing; it takes no SPEC or other" in err
    assert named in err
    assert list(tmp_path.iterdir()) == []


def test_plot_list_presets_alone_still_lists(capsys):
    from schedulers.plot import preset_names

    assert main(["plot", "--list-presets"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(preset_names())


# ---------------------------------------------------------------- F8: read-only output files


def _as_a_user(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python -m runs ARGV`` with file permissions applying (root: without the capabilities
    that override them, as the audit ran it; chmod does not stop root otherwise)."""
    command = [sys.executable, "-m", "runs", *argv]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("root without setpriv: permissions do not apply")
        caps = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *command]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd)


def _one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


def test_plot_refuses_a_read_only_out(tmp_path):
    """Before: the file was replaced (the rename needs only the folder's permission)."""
    out = tmp_path / "p.png"
    out.write_bytes(b"old")
    out.chmod(0o444)
    proc = _as_a_user(["plot", "warmup", "--steps", "50", "--out", "p.png"], tmp_path)
    assert "--out: 'p.png' is read-only; make it writable to rewrite it" in _one_line(proc)
    assert out.read_bytes() == b"old"


@pytest.mark.parametrize("name", ["summary.md", "figures/schedules.png"])
def test_report_refuses_a_read_only_file_it_would_rewrite(finished, tmp_path, name):
    """Before: a read-only summary.md or figure was rewritten, while a read-only --readme is
    refused; now every file of the report is checked, and nothing is written."""
    folder = _copy(finished, tmp_path / "tiny")
    (folder / name).chmod(0o444)
    before = _snapshot(folder)
    proc = _as_a_user(["report", "tiny"], tmp_path)
    assert f"DIR: 'tiny/{name}' is read-only; make it writable to rewrite it" in _one_line(proc)
    assert _snapshot(folder) == before


def test_score_refuses_a_read_only_score_file(tmp_path):
    folder = tmp_path / "out" / "score-quick"
    folder.mkdir(parents=True)
    (folder / "score.md").write_text("mine\n")
    (folder / "score.md").chmod(0o444)
    argv = ["score", "--quick", "--workloads", "quadratic", "--trials", "1", "--logdir", "out"]
    proc = _as_a_user(argv, tmp_path)
    expected = "--logdir: 'out/score-quick/score.md' is read-only; make it writable to rewrite it"
    assert expected in _one_line(proc)
    assert _entries(tmp_path / "out") == ["score-quick", "score-quick/score.md"]
