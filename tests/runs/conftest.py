"""Fixtures of the runner's tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mnist1d_cache(_session_data_cache) -> Path:
    """The session's MNIST-1D cache (``STEPSIZE_CACHE``, set for all tests by the root conftest)."""
    return _session_data_cache


@pytest.fixture(scope="session")
def quick_logdir(tmp_path_factory) -> Path:
    """The session's folder of quick runs of the bundled experiments (``stepsize run NAME
    --quick``), shared by the tests that read them: each runs once per session."""
    return tmp_path_factory.mktemp("catalogue")


@pytest.fixture(scope="session")
def quick_run(quick_logdir) -> Callable[[str], Path]:
    """``quick_run(name)``: the folder of bundled experiment ``name``'s quick run, run now if no
    test has run it yet this session."""
    from runs.cli import main

    def folder(name: str) -> Path:
        root = quick_logdir / f"{name}-quick"
        if not (root / "summary.json").is_file():
            assert main(["run", name, "--quick", "--logdir", str(quick_logdir), "--quiet"]) == 0
        return root

    return folder


@pytest.fixture(scope="session")
def finished_tiny(tmp_path_factory, mnist1d_cache) -> Path:
    """A finished experiment folder of ``tests.runs.helpers.FASTEST`` (5 updates of a logistic
    regression), run once per session; a test that changes it works on a copy
    (``tests.runs.helpers.copy_finished``)."""
    from runs.cli import main
    from tests.runs.helpers import FASTEST

    base = tmp_path_factory.mktemp("finished")
    (base / "tiny.toml").write_text(FASTEST)
    assert main(["run", str(base / "tiny.toml"), "--logdir", str(base / "L"), "--quiet"]) == 0
    return base / "L" / "tiny"


@pytest.fixture
def clean_registries():
    """The test starts and ends with the model and dataset registries it found (a module that
    registers its own uses it with ``pytestmark = pytest.mark.usefixtures(...)``)."""
    from runs import data as runs_data
    from runs import models as runs_models

    saved = [
        (registry, dict(registry))
        for registry in (runs_models._REGISTERED, runs_data._REGISTERED, runs_data._DIGESTS)
    ]
    yield
    for registry, content in saved:
        registry.clear()
        registry.update(content)
