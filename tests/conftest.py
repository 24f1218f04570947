"""Shared pytest configuration: deterministic torch, a hypothesis profile that suits torch code."""

import math
import os
import sys

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "stepsize",
    deadline=None,  # torch's first call of an op can take long; speed lives in benchmarks
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "60")),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("stepsize")


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota
    (``cpu.max``), which a container limited by quota does not show in its affinity."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as limit:
            quota, period = limit.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n logical`` / ``-n auto``: one worker per usable core (``--maxprocesses`` caps it)."""
    return usable_cores()


def pytest_configure(config):
    """Under pytest-xdist, each worker takes its share of the cores for torch's threads, so that
    the workers together use the machine's cores instead of each spawning one thread per core."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, usable_cores() // workers))


@pytest.fixture(scope="session", autouse=True)
def _session_data_cache(tmp_path_factory):
    """Generated data (MNIST-1D) are cached in a folder of this session's own, never in the user's
    ``~/.cache/stepsize``: every run of the suite generates what it uses, as on a fresh machine,
    and leaves nothing behind. Subprocesses inherit it through ``STEPSIZE_CACHE``."""
    cache = tmp_path_factory.mktemp("stepsize-cache")
    previous = os.environ.get("STEPSIZE_CACHE")
    os.environ["STEPSIZE_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("STEPSIZE_CACHE", None)
    else:
        os.environ["STEPSIZE_CACHE"] = previous


@pytest.fixture(autouse=True)
def _seeded_torch():
    """Each test starts from the same global RNG state and restores the default dtype."""
    torch.manual_seed(0)
    dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(dtype)


@pytest.fixture(autouse=True)
def _figures_closed():
    """Figures a test leaves open are closed after it: the plotting helpers return theirs to
    the caller (``Certificate.plot``, ``plot_schedule_bound``, the range test's ``plot``), and a
    worker that kept every test's figures would hold them all (matplotlib warns past 20)."""
    yield
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")
