"""Fixtures of the runner's tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mnist1d_cache(tmp_path_factory) -> Path:
    """MNIST-1D generated once for the session into a temporary cache (``STEPSIZE_CACHE``)."""
    cache = tmp_path_factory.mktemp("stepsize-cache")
    previous = os.environ.get("STEPSIZE_CACHE")
    os.environ["STEPSIZE_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("STEPSIZE_CACHE", None)
    else:
        os.environ["STEPSIZE_CACHE"] = previous
