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
