"""Fixtures of the runner's tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mnist1d_cache(_session_data_cache) -> Path:
    """The session's MNIST-1D cache (``STEPSIZE_CACHE``, set for all tests by the root conftest)."""
    return _session_data_cache
