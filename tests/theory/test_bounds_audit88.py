"""Audit of stop 88: a matrix Quadratic's PL constant, two distance bounds outside their
theorems' steps, and the k = 0 guard's overflow warning."""

import warnings

import numpy as np
import pytest
import torch

from theory import Quadratic
from theory.bounds import (
    gd_convex_gap,
    gd_nonconvex_grad_sq_min,
    gd_strongly_convex_distance_sq,
    sgd_noise_ball_distance_sq,
)


def _matrix(eigenvalues, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return q @ np.diag(eigenvalues) @ q.T


def test_a_small_positive_eigenvalue_above_rounding_is_the_pl_constant():
    """A = Q diag(5e-13, 0.5, 1) Q^T: LAPACK's error is about d eps L = 7e-16, so 5e-13 is a
    real eigenvalue and the PL constant (and mu) is it, not 0.5 (which made pl_bound fail a
    correct run of gradient descent); from_spectrum gives the same."""
    exact = Quadratic.from_spectrum([5e-13, 0.5, 1.0])
    problem = Quadratic(torch.as_tensor(_matrix([5e-13, 0.5, 1.0])))
    assert exact.pl_constant == 5e-13
    assert problem.pl_constant == pytest.approx(5e-13, rel=1e-2)
    assert problem.mu == pytest.approx(5e-13, rel=1e-2)


def test_rounding_noise_of_a_singular_matrix_still_counts_as_zero():
    """A guard: a singular A's computed zero eigenvalue (about eps L) is not taken as positive."""
    problem = Quadratic(torch.as_tensor(_matrix([0.0, 0.5, 1.0])))
    assert problem.mu == 0.0
    assert problem.pl_constant == pytest.approx(0.5, rel=1e-12)


@pytest.mark.parametrize(
    ("bound", "kwargs", "limit"),
    [
        (gd_strongly_convex_distance_sq, {"lr": 3.0, "mu": 1.0, "dist0_sq": 1.0}, "at most 1 "),
        (
            sgd_noise_ball_distance_sq,
            {"lr": 0.6, "mu": 1.0, "dist0_sq": 1.0, "sigma_sq": 0.1},
            "at most 1/2",
        ),
    ],
)
def test_a_distance_bound_outside_its_theorems_step_is_refused(bound, kwargs, limit):
    """(1 - lr mu)^k with lr mu > 1 alternates in sign ([1, -2, 4, -8] for lr mu = 3): an upper
    bound on a squared distance cannot be negative. The theorems need lr <= 1/L (GG 3.6) and
    lr <= 1/(2 L_max) (GLQ19 3.1), with mu <= L."""
    with pytest.raises(ValueError, match=f"lr \\* mu must be {limit}"):
        bound(np.arange(4), **kwargs)
    edge = {**kwargs, "lr": 1.0 if limit == "at most 1 " else 0.5}
    assert np.all(bound(np.arange(4), **edge) >= 0)


@pytest.mark.parametrize(
    ("bound", "kwargs"),
    [
        (gd_convex_gap, {"lr": 1e-10, "dist0_sq": 1.0}),
        (gd_nonconvex_grad_sq_min, {"lr": 1e-10, "L": 1.0, "gap0": 1.0}),
    ],
)
def test_the_k0_guard_raises_no_warning(bound, kwargs):
    """At k = 0 these bounds are inf (no claim); the guard divided by 1e-300 and overflowed,
    so a run under -W error (certify evaluates k = 0) raised where the value was right."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = bound(np.arange(3), **kwargs)
    assert values[0] == np.inf
    assert np.isfinite(values[1:]).all()


def test_a_certificate_plot_is_written_as_the_project_writes_files(tmp_path):
    """``Certificate.plot(path)`` made its file 0600 whatever the umask, turned an existing
    0644 file into 0600 and replaced a symbolic link by a file; ``open`` (and the project's
    ``schedulers.files.atomic_write``) gives 0666 less the umask, keeps a file's mode and
    writes through a link."""
    import os
    import stat

    import optim
    from theory import certify, gd_bound

    problem = Quadratic.from_condition_number(dim=3, kappa=10.0, seed=0)
    lr = 1 / problem.L
    cert = certify(problem, lambda ps: optim.SGD(ps, lr=lr), 5, gd_bound(problem, lr))
    mask = os.umask(0o027)
    try:
        cert.plot(tmp_path / "new.png")
        existing = tmp_path / "existing.png"
        existing.write_bytes(b"x")
        existing.chmod(0o644)
        cert.plot(existing)
        target = tmp_path / "target.png"
        target.write_bytes(b"x")
        (tmp_path / "link.png").symlink_to(target)
        cert.plot(tmp_path / "link.png")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "new.png").stat().st_mode) == 0o640
    assert stat.S_IMODE(existing.stat().st_mode) == 0o644
    assert existing.read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "link.png").is_symlink()
    assert target.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "existing.png", "link.png", "new.png", "target.png"
    ]  # fmt: skip
