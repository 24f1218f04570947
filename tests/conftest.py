"""Shared pytest configuration: deterministic torch, a hypothesis profile that suits torch code."""

import os

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


@pytest.fixture(autouse=True)
def _seeded_torch():
    """Each test starts from the same global RNG state and restores the default dtype."""
    torch.manual_seed(0)
    dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(dtype)
