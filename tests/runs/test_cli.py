import subprocess
import sys


def _stepsize(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runs", *args], capture_output=True, text=True)


def test_help_lists_every_subcommand():
    proc = _stepsize("--help")
    assert proc.returncode == 0
    for name in ("list", "run", "report", "plot", "lr-find", "bench"):
        assert name in proc.stdout


def test_unknown_benchmark_exits_nonzero_without_traceback():
    proc = _stepsize("bench", "nonsense")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly():
    """``stepsize list | head -0``: the reader is gone before the first line is written; the
    command stops with a shell's status for SIGPIPE, 141, and writes no error line (it printed
    "stepsize: error: [Errno 32] Broken pipe" and exited with 2)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runs", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # (before the interpreter has even started: the first write fails)
    error = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait() == 141
    assert error == b""


def test_a_broken_pipe_that_is_not_stdouts_is_reported(monkeypatch, capsys):
    """A broken pipe elsewhere (a worker process's connection) is an error: its one line on
    stderr and status 2, not the quiet status 141 of a closed stdout."""
    import runs.catalog
    from runs.cli import main

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(runs.catalog, "run", broken)
    assert main(["list"]) == 2
    assert "Broken pipe" in capsys.readouterr().err
