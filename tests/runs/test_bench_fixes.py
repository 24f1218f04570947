"""``stepsize bench optim``: refusals before anything runs (a missing reference package, shapes
and instances beyond the memory, classic names with ``--lr-free``), one-line errors where a
run or a child process fails, the thread handoff on one thread, the learning-rate-free
columns' gradients, and the README sentence on the GPU table's ratios. Every bench run here is
tiny (a few tensors of a few elements, one or two timed steps; no timing asserted)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from runs.bench import optim as bench
from runs.cli import main

TINY = ["--repeat", "1", "--instances", "1", "--no-compile"]
HUGE = "1x2000000000000000000"  # 8e18 bytes: beyond any address space, malloc fails at once
CLASSIC = ["SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta"]
LR_FREE = [
    "Prodigy",
    "DAdaptSGD",
    "DAdaptAdam",
    "DAdaptAdaGrad",
    "DoG",
    "LDoG",
    "SGDScheduleFree",
    "AdamWScheduleFree",
]


def _references() -> None:
    """Skip unless the reference packages (the ``reference`` extra) are installed."""
    for module in ("prodigyopt", "dadaptation", "dog", "schedulefree"):
        pytest.importorskip(module)


def _args(*options: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(options))


def _refused_in_process(capsys, *options: str) -> str:
    """``main(["bench", "optim", *options])`` must refuse: exit 2, nothing on stdout, one line on
    stderr (no traceback). Returns that line."""
    assert main(["bench", "optim", *options]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("stepsize: error: "), err
    assert err.count("\n") == 1, err
    return err


# ------------------------------------------------ F1: a reference package that is not installed


@pytest.mark.parametrize("alone", [False, True])
def test_lr_free_without_its_reference_package_is_refused_before_anything_runs(
    capsys, monkeypatch, alone
):
    """As without ``dog-optimizer`` (``import dog`` fails): one line naming ``--lr-free``, the
    class, the package and how to install it, exit 2, before any header is printed; with
    ``--alone`` too (where the child processes would import it)."""
    monkeypatch.setitem(sys.modules, "dog", None)  # import dog -> ModuleNotFoundError
    extra = ["--alone"] if alone else []
    err = _refused_in_process(
        capsys, "--lr-free", "--optimizers", "DoG", "--models", "2x10", *TINY, *extra
    )
    assert "--lr-free: DoG needs the reference package 'dog' (dog-optimizer)" in err
    assert 'pip install -e ".[reference]"' in err


def test_every_lr_free_class_of_a_missing_package_is_named(capsys, monkeypatch):
    """With the default --optimizers (all eight) and no ``schedulefree``: both of its classes
    are named in the one line."""
    _references()
    monkeypatch.setitem(sys.modules, "schedulefree", None)
    err = _refused_in_process(capsys, "--lr-free", "--models", "2x10", *TINY)
    assert "SGDScheduleFree, AdamWScheduleFree need the reference package 'schedulefree'" in err
    assert "DoG" not in err  # (installed here)


def test_lr_free_variants_says_which_package_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "dog", None)
    with pytest.raises(ValueError, match=r"LDoG needs the reference package 'dog'"):
        bench.lr_free_variants("LDoG")


# --------------------------------------------------- F2: shapes and instances beyond the memory


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--models", "1x100000000000"], "--models: '1x100000000000' would need about"),
        (["--models", "99999999999999999999x1"], "--models: '99999999999999999999x1' would"),
        (["--models", "4x4M", "--instances", "100000"], "--instances: 100000 of each variant"),
        (["--lr-free", "--models", "2g1x100000000000"], "--models: '2g1x100000000000' would"),
        (["--models", "1x100000000000", "--alone"], "--models: '1x100000000000' would"),
    ],
)
def test_shapes_and_instances_beyond_the_memory_are_refused(monkeypatch, options, expected):
    """With 16 GiB of memory, a run whose parameters alone take more (1e11 fp32 elements are
    400 GB; 1e20 tensors; 100000 instances of 4x4M are 6.4 TB) is refused by ``check_args``,
    naming the option, the value and the memory."""
    gib16 = (16 * 2**30, "of physical memory")
    monkeypatch.setattr(bench, "_available_bytes", lambda device: gib16, raising=False)
    with pytest.raises(ValueError, match=re.escape(expected)) as error:
        bench.check_args(
            _args("--optimizers", "DoG" if "--lr-free" in options else "SGD", *options)
        )
    message = str(error.value)
    assert "\n" not in message
    assert "16 GiB of physical memory" in message
    assert "allowed: at most about" in message


def test_the_memory_refusal_says_what_fits_and_that_fits(monkeypatch):
    """The most instances the refusal offers pass the same check, one more does not."""
    gib16 = (16 * 2**30, "of physical memory")
    monkeypatch.setattr(bench, "_available_bytes", lambda device: gib16, raising=False)
    args = _args("--optimizers", "Adam", "--models", "4x4M", "--instances", "100000")
    with pytest.raises(ValueError, match=r"allowed: at most about (\d+)") as error:
        bench.check_memory(["Adam"], ["4x4M"], args)
    most = int(re.search(r"at most about (\d+)", str(error.value)).group(1))
    args.instances = most
    bench.check_memory(["Adam"], ["4x4M"], args)
    args.instances = most + 1
    with pytest.raises(ValueError, match="--instances"):
        bench.check_memory(["Adam"], ["4x4M"], args)


def test_the_defaults_fit_in_the_memory_of_the_readme_machine(monkeypatch):
    """The README's runs used the defaults on this project's machine, 23.5 GiB."""
    _references()
    machine = (int(23.5 * 2**30), "of physical memory")
    monkeypatch.setattr(bench, "_available_bytes", lambda device: machine, raising=False)
    for options in ([], ["--new-grads"], ["--lr-free"], ["--lr-free", "--new-grads"]):
        _, models = bench.check_args(_args(*options))
        assert models == ["4x4M", "400x40k", "2000x1k"]


def test_the_estimate_counts_at_least_the_tensors_a_row_holds():
    """Independent lower bound: every variant's instances hold a parameter and a gradient (fp32)
    per element; Adam adds two state tensors. 7 variants x 3 instances (6 columns and the packed
    floor) of 4x4M Adam: 21 * 16M * 16 bytes."""
    need = bench.run_bytes("Adam", bench.parse_model("4x4M"), 3)
    assert need >= 21 * 16_000_000 * 16
    assert need < 4 * 21 * 16_000_000 * 16  # (and not absurdly above it)


def test_a_huge_shape_on_the_command_line_is_one_line_and_nothing_printed():
    proc = subprocess.run(
        [sys.executable, "-m", "runs", "bench", "optim", "--optimizers", "SGD",
         "--models", HUGE, *TINY],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert f"--models: '{HUGE}' would need about" in proc.stderr


@pytest.mark.parametrize("lr_free", [False, True])
def test_an_allocation_failure_while_running_is_one_line(capsys, monkeypatch, lr_free):
    """Where the estimate lets a shape through (here: memory reported as 2**80 bytes), torch's
    allocation RuntimeError is reported as one line naming --models, exit 2."""
    big = (2**80, "of physical memory")
    monkeypatch.setattr(bench, "_available_bytes", lambda device: big, raising=False)
    which = ["--lr-free", "--optimizers", "DoG"] if lr_free else ["--optimizers", "SGD"]
    if lr_free:
        pytest.importorskip("dog")  # (the reference extra)
    assert main(["bench", "optim", *which, "--models", HUGE, *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"--models: '{HUGE}' with --instances 1 ran out of memory while timing" in err
    assert "can't allocate memory" in err


def test_memory_errors_become_value_errors_and_other_errors_pass():
    refused = pytest.raises(ValueError, match="--models: '2x5' ran out of memory while timing SGD")
    with refused, bench._out_of_memory("SGD", "2x5", None):
        raise MemoryError
    with pytest.raises(RuntimeError, match="shape mismatch"), bench._out_of_memory("SGD", "2x5", 1):
        raise RuntimeError("shape mismatch")


# ----------------------------------------------------- F3: a child process that fails


def test_a_failing_alone_child_is_one_line_with_its_own_error(capsys, monkeypatch):
    """``--alone``: the child cannot allocate the shape (let through here by reporting 2**80
    bytes of memory in this process); the parent says which process failed and the child's
    own last error line, exit 2, no traceback."""
    big = (2**80, "of physical memory")
    monkeypatch.setattr(bench, "_available_bytes", lambda device: big, raising=False)
    assert main(["bench", "optim", "--alone", "--optimizers", "SGD", "--models", HUGE, *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert f"--alone: the process timing SGD torch single on {HUGE} failed: " in err
    assert "can't allocate memory" in err  # (the child's words)


def test_a_failing_first_compiled_step_is_one_line_with_its_error(monkeypatch):
    monkeypatch.setattr(bench, "_FIRST_STEP", "raise RuntimeError('no C++ compiler found')")
    with pytest.raises(ValueError, match="first compiled step") as error:
        bench.first_compiled_step_seconds(1)
    message = str(error.value)
    assert "first compiled step: the process timing it" in message
    assert message.endswith("RuntimeError: no C++ compiler found; allowed: --no-compile, which "
                            "leaves this line out")  # fmt: skip


def test_a_child_killed_by_a_signal_is_named():
    out = subprocess.run(
        [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bench._child_error(out) == "killed by signal 9 (SIGKILL), with no error message"


# ----------------------------------------------------- F4: the handoff on one thread


def test_the_thread_handoff_is_na_on_one_thread():
    """One thread: no thread reads what another wrote, so there is nothing to time."""
    proc = subprocess.run(
        [sys.executable, "-m", "runs", "bench", "optim", "--optimizers", "SGD",
         "--models", "20x5", "--threads", "1", *TINY],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| optimizer")).split(" | ")
    row = next(line for line in lines if line.startswith("| SGD")).split(" | ")
    assert row[header.index("thread handoff")] == "n/a"
    assert "n/a on one thread" in proc.stdout


# ---------------------------------- F5: the learning-rate-free columns step on the same gradients


def _spy(monkeypatch) -> tuple[dict[str, list], dict[str, list]]:
    """Wrap every learning-rate-free optimizer the bench builds: record, by column label, the
    gradients each step sees and the parameters."""
    seen: dict[str, list] = {}
    params: dict[str, list] = {}
    real = bench.lr_free_variants

    def variants(name):
        built = {}
        for label, make in real(name).items():

            def build(ps, make=make, label=label):
                optimizer = make(ps)
                step = optimizer.step
                params.setdefault(label, []).append(ps)

                def recorded(*args, **kwargs):
                    seen.setdefault(label, []).append([p.grad.clone() for p in ps])
                    return step(*args, **kwargs)

                optimizer.step = recorded
                return optimizer

            built[label] = build
        return built

    monkeypatch.setattr(bench, "lr_free_variants", variants)
    return seen, params


@pytest.mark.parametrize("new_grads", [False, True])
def test_lr_free_columns_step_on_the_same_gradients(monkeypatch, new_grads):
    """schedulefree's AdamWScheduleFree writes into ``p.grad``: every column must still see, at
    each step, the gradients the others see (the same values at every step, or the two sets
    in turn with ``--new-grads``), and so end at the package's parameters."""
    pytest.importorskip("schedulefree")  # (the reference extra)
    seen, params = _spy(monkeypatch)
    bench.measure_lr_free("AdamWScheduleFree", "2x5", repeat=2, new_grads=new_grads)
    assert set(seen) == {"reference", "ours default", "ours flat"}
    steps = seen["reference"]
    assert len(steps) == 5  # (3 warm-ups, 2 timed)
    for label, grads in seen.items():
        for i, step in enumerate(grads):
            again = steps[i % 2] if new_grads else steps[0]
            assert all(torch.equal(a, b) for a, b in zip(step, again)), (label, i)
            assert all(torch.equal(a, b) for a, b in zip(step, steps[i])), (label, i)
    for label in ("ours default", "ours flat"):
        for ours, theirs in zip(params[label][0], params["reference"][0]):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("new_grads", [False, True])
def test_lr_free_alone_steps_on_the_same_gradients(monkeypatch, new_grads):
    """The same in ``time_alone`` (``--lr-free --alone``'s child), run in this process."""
    pytest.importorskip("schedulefree")  # (the reference extra)
    seen, params = _spy(monkeypatch)
    for label in ("reference", "ours default"):
        bench.time_alone("lr-free", "AdamWScheduleFree", label, "2x5", 2, new_grads)
    for i, step in enumerate(seen["reference"]):
        again = seen["reference"][i % 2] if new_grads else seen["reference"][0]
        assert all(torch.equal(a, b) for a, b in zip(step, again)), i
        assert all(torch.equal(a, b) for a, b in zip(step, seen["ours default"][i])), i
    for ours, theirs in zip(params["ours default"][0], params["reference"][0]):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


# ----------------------------------------------------- F6: the README's GPU memory paragraph

README = Path(__file__).resolve().parents[2] / "README.md"
SENTENCE = re.compile(
    r"AdamW's (\d+\.\d+)x over torch foreach on 400x40k, against\s+Adam's (\d+\.\d+)x unpacked"
)


def readme_ratio_problems(text: str) -> list[str]:
    """Where the sentence's two ratios differ from the table right above it: torch foreach's
    time over ours default for the 400x40k rows, within the rounding of the printed times, and
    equal to the row's printed default / eager (torch foreach being the faster eager path)."""
    match = SENTENCE.search(text)
    assert match, "the sentence is not in the README"
    before = text[: match.start()].splitlines()
    header = next(line for line in reversed(before) if line.startswith("| optimizer |"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    problems = []
    for name, quoted in (("AdamW", match.group(1)), ("Adam", match.group(2))):
        line = next(line for line in reversed(before) if line.startswith(f"| {name} | 400x40k |"))
        cells = dict(zip(columns, (cell.strip() for cell in line.strip("|").split("|"))))
        single, foreach = float(cells["torch single"]), float(cells["torch foreach"])
        default = float(cells["ours default"])
        low, high = (foreach - 0.005) / (default + 0.005), (foreach + 0.005) / (default - 0.005)
        if not (foreach <= single and low <= float(quoted) <= high):
            problems.append(f"{name}: {quoted}x, the table gives {low:.3f}-{high:.3f}x")
        if cells["default / eager"] != f"{quoted}x":
            problems.append(f"{name}: {quoted}x, the table prints {cells['default / eager']}")
    return problems


def test_the_readme_ratios_are_the_tables():
    assert readme_ratio_problems(README.read_text()) == []


# ----------------------------------------- F7: --lr-free with the classic names typed out


def test_lr_free_with_the_classic_list_typed_out_is_refused():
    args = _args("--lr-free", "--optimizers", ",".join(CLASSIC))
    with pytest.raises(ValueError, match=r"--optimizers: unknown 'SGD', 'Adam'.* with --lr-free"):
        bench.check_args(args)


def test_without_optimizers_each_mode_runs_all_of_its_own():
    _references()
    assert bench.check_args(_args("--models", "2x5"))[0] == CLASSIC
    assert bench.check_args(_args("--lr-free", "--models", "2x5"))[0] == LR_FREE
    assert bench.check_args(_args("--optimizers", ",".join(CLASSIC), "--models", "2x5"))[0] == (
        CLASSIC
    )
