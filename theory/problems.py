"""Optimization problems whose answer is known exactly.

Every problem exposes the same small interface so that any ``torch.optim.Optimizer`` can run on it
and its run can be compared with a textbook bound:

* ``L``: the smoothness constant (largest Hessian eigenvalue; for Rosenbrock the local value at
  the minimiser, see its docstring), ``mu``: the strong-convexity constant (0 where there is none);
* ``x_star``: a minimiser (float64 tensor), ``f_star``: the minimum value (float);
* ``x0``: the starting point (drawn from ``seed`` unless given);
* ``loss(x)``: a 0-dim tensor, differentiable with autograd; ``grad(x)``: its gradient in closed
  form; ``parameter()``: a fresh ``torch.nn.Parameter`` at ``x0`` for an optimizer to update;
* ``loss_at(x, t)``: the loss seen at update ``t`` (the same as ``loss`` except for online
  problems), ``project(x)``: the projection onto the feasible set applied after every update
  (the identity except for constrained problems);
* ``x_star_tol``: a certified bound on the distance between ``x_star`` and the exact minimiser
  (0 where ``x_star`` is exact up to rounding);
* ``G``: a bound on the norm of every (stochastic) gradient the optimizer can be given (inf
  where there is none; finite for the Lipschitz problems ``LeastAbsoluteDeviations`` and
  ``HingeLoss``), ``pl_constant``: a Polyak-Łojasiewicz constant (``mu`` unless the problem
  knows a better one), ``L_is_global``: whether ``L`` bounds the curvature everywhere;
* ``stochastic``: whether ``loss_at`` samples (a finite sum with a seeded oracle:
  ``LeastSquares(..., batch_size=b)``, ``LeastAbsoluteDeviations``, ``HingeLoss``), and
  ``reseeded(seed)``: the same problem with another oracle seed (``certify(..., seeds=...)``);
* ``why_not_full_loss``: why an update is not a plain step on the full loss f ("" when it is:
  update t is given f itself and ``project`` is the identity), read by the bounds whose
  argument needs each gradient to be one of f at the iterate.

Everything is float64. Randomness comes from ``torch.Generator(seed)``, and the torch
arithmetic that builds a problem (the QR of a Haar rotation, the products that form A or X) runs
on one thread whatever ``torch.get_num_threads()`` is (a parallel reduction's order, and so its
rounding, depends on the thread count), so a problem is a pure function of its arguments: the
same arguments give bitwise the same problem in any process (with the same torch, numpy and
scipy builds).
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.sparse
import scipy.sparse.linalg
import scipy.special
import torch

DTYPE = torch.float64
_EPS = float(np.finfo(np.float64).eps)

__all__ = [
    "HingeLoss",
    "LeastAbsoluteDeviations",
    "LeastSquares",
    "LogisticRegression",
    "Problem",
    "Quadratic",
    "ReddiCounterexample",
    "Regret",
    "Rosenbrock",
    "WilsonSeparable",
]


# ----------------------------------------------------------------------------------------------
# small shared helpers
# ----------------------------------------------------------------------------------------------
def _integer(name: str, value: Any, minimum: int | None = None, allowed: str = "") -> int:
    """``value`` as an int: Python and numpy integers (``operator.index``), never a bool;
    TypeError for anything else, ValueError below ``minimum``, both naming ``name``, the value
    and ``allowed`` (default "an integer >= minimum")."""
    allowed = allowed or ("an integer" if minimum is None else f"an integer >= {minimum}")
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be {allowed}, got the bool {name}={value!r}")
    try:
        result = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be {allowed}, got {name}={value!r}") from None
    if minimum is not None and result < minimum:
        raise ValueError(f"{name} must be {allowed}, got {name}={value!r}")
    return result


SEED_LIMIT = 2**64 - 1
"""The largest seed: ``torch.Generator.manual_seed`` takes an unsigned 64-bit integer."""


def _check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` as an int from 0 to :data:`SEED_LIMIT`, or a TypeError/ValueError naming
    ``name`` (torch's own overflow error names nothing)."""
    allowed = "an integer from 0 to 2**64 - 1 (a torch generator's seed)"
    value = _integer(name, seed, 0, allowed)
    if value > SEED_LIMIT:
        raise ValueError(f"{name} must be {allowed}, got {name}={seed!r}")
    return value


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(_check_seed(seed))


def _real_array(name: str, value: Any) -> np.ndarray:
    """``value`` (array-like or tensor) as a new float64 numpy array, or a TypeError naming
    ``name``: complex, string, other non-numeric entries and scipy.sparse matrices (whose
    conversion numpy gets wrong or words obscurely) are refused, never cast."""
    if scipy.sparse.issparse(value):
        raise TypeError(
            f"{name} must be a dense array of real numbers, got a scipy.sparse "
            f"{type(value).__name__} (convert it with .toarray())"
        )
    if torch.is_tensor(value):
        value = value.detach().cpu()
        array = value.resolve_conj().numpy() if value.is_complex() else value.double().numpy()
    else:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as err:  # ragged nesting
            raise TypeError(
                f"{name} must be an array of real numbers, got {type(value).__name__} that "
                f"numpy cannot read as one ({err})"
            ) from err
    real = array.dtype.kind in "biuf" or (
        array.dtype.kind == "O"
        and all(isinstance(v, numbers.Real) and not torch.is_tensor(v) for v in array.flat)
    )
    if not real:
        raise TypeError(
            f"{name} must be an array of real numbers (float or integer entries), got "
            f"dtype {array.dtype} ({name}={value!r})"
            if array.size <= 16
            else f"{name} must be an array of real numbers (float or integer entries), got "
            f"dtype {array.dtype}"
        )
    return array.astype(np.float64)


def _vector(name: str, value: Any, dim: int) -> torch.Tensor:
    """``value`` as a finite float64 vector of length ``dim``, or a ValueError naming ``name``."""
    tensor = torch.as_tensor(_real_array(name, value), dtype=DTYPE)
    if tensor.shape != (dim,):
        raise ValueError(f"{name} must have shape ({dim},), got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} must be finite, got {name}={tensor.tolist()!r}")
    return tensor


def _finite_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {name}={value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {name}={value!r}")
    return value


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """torch's intra-op thread count set to 1 inside the block and restored after it: the
    rounding of a parallel reduction (a matrix product, a QR) depends on how many threads share
    it, and building a problem must not (the module docstring)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _haar_rotation(dim: int, generator: torch.Generator) -> torch.Tensor:
    """A rotation drawn from the Haar measure: Q of the QR of a Gaussian matrix, signs fixed so
    that diag(R) > 0 (Mezzadri, 2007, "How to generate random matrices from the classical compact
    groups"); computed on one thread (``_one_thread``)."""
    gaussian = torch.randn(dim, dim, generator=generator, dtype=DTYPE)
    with _one_thread():
        q, r = torch.linalg.qr(gaussian)
        return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


def _data_matrix(name: str, X: Any) -> np.ndarray | scipy.sparse.csr_matrix:
    """``X`` as a float64 numpy array or scipy CSR matrix of shape (n, d), n, d >= 1."""
    if scipy.sparse.issparse(X):
        matrix = scipy.sparse.csr_matrix(X, dtype=np.float64)
        values = matrix.data
    else:
        matrix = values = _real_array(name, X)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D matrix (n samples, d features), got shape "
            f"{tuple(matrix.shape)}"
        )
    if not np.isfinite(values).all():
        raise ValueError(f"{name} must contain only finite values")
    return matrix


def _row_norms(X: np.ndarray | scipy.sparse.csr_matrix) -> np.ndarray:
    """||x_i|| for every row of a dense or sparse X."""
    if scipy.sparse.issparse(X):
        return np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    return np.linalg.norm(X, axis=1)


def _rounding_floor(d: int, top: float) -> float:
    """100 d eps λ_max: below it, a computed eigenvalue of a d x d symmetric matrix with largest
    eigenvalue λ_max is indistinguishable from 0 (LAPACK's error is a small multiple of
    d eps λ_max)."""
    return 100 * d * _EPS * top


_DENSE_GRAM_UP_TO = 2048
"""Columns up to which a sparse X's Gram matrix is formed (32 MiB) for exact eigenvalues."""


def _gram_extreme_eigenvalues(X: np.ndarray | scipy.sparse.csr_matrix) -> tuple[float, float]:
    """Largest and smallest eigenvalues of X^T X / n.

    Dense X, and sparse X with at most ``_DENSE_GRAM_UP_TO`` columns: all eigenvalues of the
    d x d Gram matrix by LAPACK (``scipy.linalg.eigvalsh``). Wider sparse X: Lanczos
    (``scipy.sparse.linalg.eigsh``) on the operator v -> X^T (X v) / n, never forming X^T X
    (its smallest eigenvalue of an ill-conditioned Gram matrix may not converge: ARPACK's
    error then says so). The smallest eigenvalue is reported as 0 when d > n (the Gram matrix
    is singular) or when it is below the rounding floor 100 d eps lambda_max.
    """
    n, d = X.shape
    if scipy.sparse.issparse(X) and d <= _DENSE_GRAM_UP_TO:  # (exact; Lanczos failed at d = 60)
        X = X.toarray()
    if scipy.sparse.issparse(X):
        operator = scipy.sparse.linalg.LinearOperator(
            (d, d), matvec=lambda v: X.T @ (X @ v) / n, dtype=np.float64
        )
        v0 = np.ones(d) / math.sqrt(d)
        if d == 1:
            top = bottom = float((X.T @ (X @ np.ones(1)))[0] / n)
        else:
            top = float(
                scipy.sparse.linalg.eigsh(
                    operator, k=1, which="LA", v0=v0, return_eigenvectors=False
                )[0]
            )
            bottom = (
                0.0
                if d > n
                else float(
                    scipy.sparse.linalg.eigsh(
                        operator, k=1, which="SA", v0=v0, return_eigenvectors=False
                    )[0]
                )
            )
    else:
        eigenvalues = scipy.linalg.eigvalsh(X.T @ X / n)
        top, bottom = float(eigenvalues[-1]), float(eigenvalues[0])
    if d > n or bottom <= _rounding_floor(d, top):
        bottom = 0.0
    return top, bottom


def _torch_matrix(X: np.ndarray | scipy.sparse.csr_matrix) -> torch.Tensor:
    if scipy.sparse.issparse(X):
        coo = X.tocoo()
        indices = torch.as_tensor(np.vstack([coo.row, coo.col]), dtype=torch.long)
        return torch.sparse_coo_tensor(
            indices, torch.as_tensor(coo.data, dtype=DTYPE), coo.shape, check_invariants=True
        ).coalesce()
    return torch.as_tensor(X, dtype=DTYPE)


def _matvec(X: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if X.is_sparse:
        return torch.sparse.mm(X, w.unsqueeze(1)).squeeze(1)
    return X @ w


# ----------------------------------------------------------------------------------------------
# the interface
# ----------------------------------------------------------------------------------------------
class Problem:
    """Base class: a smooth function with known ``L``, ``mu``, ``x_star``, ``f_star`` and ``x0``.

    Subclasses set the attributes in ``__init__`` and implement ``loss`` (and, where there is a
    closed form, ``grad``). See the module docstring for the meaning of every attribute.

    Example::

        >>> class Parabola(Problem):  # f(x) = ||x||², minimiser 0: L = mu = 2
        ...     def __init__(self):
        ...         self.L, self.mu, self.f_star = 2.0, 2.0, 0.0
        ...         self.x_star, self.x0 = torch.zeros(1, dtype=DTYPE), torch.ones(1, dtype=DTYPE)
        ...     def loss(self, x):
        ...         return (x**2).sum()
        >>> problem = Parabola()
        >>> problem.kappa, problem.gap(problem.x0), problem.grad(problem.x0).tolist()  # ∇f = 2x
        (1.0, 1.0, [2.0])
    """

    L: float
    mu: float
    x_star: torch.Tensor
    f_star: float
    x0: torch.Tensor
    x_star_tol: float = 0.0
    is_convex: bool = True
    is_quadratic: bool = False
    G: float = math.inf
    L_is_global: bool = True
    stochastic: bool = False  # whether loss_at samples (a run then depends on an oracle seed)

    @property
    def dim(self) -> int:
        """Number of coordinates of x."""
        return int(self.x_star.numel())

    @property
    def kappa(self) -> float:
        """Condition number L / mu (inf when mu = 0)."""
        return self.L / self.mu if self.mu > 0 else math.inf

    @property
    def pl_constant(self) -> float:
        """A constant pl with ||∇f(x)||²/2 >= pl (f(x) - f*) for all x (Polyak-Łojasiewicz);
        strong convexity gives pl = mu, which is the default."""
        return self.mu

    @property
    def why_not_full_loss(self) -> str:
        """Why the updates of a run on this problem are not plain (sub)gradient steps on the
        full loss f: "" (empty) when update t is given f itself (``loss_at(x, t)`` = ``loss(x)``)
        and nothing moves x after it (``project`` is the identity); else the reason, e.g. a
        sampled loss (``stochastic``) or an online, projected problem. Bounds whose argument
        needs each gradient g_t to be a (sub)gradient of f at x_t (``theory.lr_free_bounds``)
        refuse a problem with a reason."""
        if self.stochastic:
            return "stochastic=True: update t is given a sampled (minibatch) loss, not f"
        return ""

    def reseeded(self, seed: int) -> Problem:
        """The same problem with oracle seed ``seed`` (sampled finite sums only)."""
        raise TypeError(
            f"{type(self).__name__} has no oracle seed to change (only sampled finite sums "
            f"such as LeastAbsoluteDeviations have one), got seed={seed!r}"
        )

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) as a 0-dim tensor (differentiable with autograd)."""
        raise NotImplementedError

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """∇f(x); the default differentiates ``loss`` with autograd."""
        x = x.detach().to(DTYPE).requires_grad_(True)
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(self.loss(x), x)
        return gradient

    def loss_at(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """The loss used for update ``t`` (t counts updates already made). Offline problems
        return ``loss(x)``; online problems (``ReddiCounterexample``) override it."""
        return self.loss(x)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Projection onto the feasible set, applied after every update (identity here)."""
        return x

    def parameter(self, dtype: torch.dtype = DTYPE) -> torch.nn.Parameter:
        """A fresh ``torch.nn.Parameter`` holding a copy of ``x0`` (float64 unless ``dtype``)."""
        return torch.nn.Parameter(self.x0.detach().clone().to(dtype))

    def gap(self, x: torch.Tensor) -> float:
        """f(x) - f* as a float."""
        with torch.no_grad():
            return float(self.loss(x.detach().to(DTYPE))) - self.f_star

    def distance(self, x: torch.Tensor) -> float:
        """||x - x*|| as a float."""
        return float(torch.linalg.vector_norm(x.detach().to(DTYPE) - self.x_star))

    def _start(self, x0: Any, seed: int) -> torch.Tensor:
        """The given ``x0`` (validated) or a standard normal vector drawn from ``seed``."""
        if x0 is not None:
            return _vector("x0", x0, self.dim)
        return torch.randn(self.dim, generator=_generator(seed), dtype=DTYPE)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dim={self.dim}, L={self.L:.6g}, mu={self.mu:.6g}, "
            f"f_star={self.f_star:.6g})"
        )


# ----------------------------------------------------------------------------------------------
# quadratics
# ----------------------------------------------------------------------------------------------
class Quadratic(Problem):
    r"""f(x) = 1/2 (x - x*)^T A (x - x*) + f*, with A symmetric positive semidefinite.

    ∇f(x) = A (x - x*), ∇²f = A, so ``L`` = λ_max(A) and ``mu`` = λ_min(A) (0 when A is
    singular). From a matrix, the eigenvalues are computed (LAPACK) and those <= 100 d eps λ_max
    (d the dimension), indistinguishable from rounding, count as 0 (for mu and
    ``pl_constant``); from a spectrum or a condition number, the given eigenvalues are used
    exactly. Gradient descent's error
    evolves as x_k - x* = (I - ηA)^k (x_0 - x*), which is what makes every rate of
    ``theory.bounds`` exact or tight here.

    Build it from a matrix (``Quadratic(A, ...)``), from a spectrum
    (``Quadratic.from_spectrum``) or from a condition number (``Quadratic.from_condition_number``);
    the last two rotate diag(spectrum) by a Haar-random orthogonal Q (seeded): A = Q diag(λ) Q^T.

    Parameters
    ----------
    A: symmetric positive semidefinite (d, d) matrix of real numbers (numpy, torch or nested
        lists; complex, non-numeric and scipy.sparse input raises TypeError). Symmetry is
        checked to 1e-12 relative and positive semidefiniteness to -1e-12 λ_max; violations
        raise ValueError.
    x_star: the minimiser; default drawn from ``seed`` (standard normal).
    f_star: the minimum value (default 0).
    x0: the start; default drawn from ``seed`` (standard normal, independent of ``x_star``).
    seed: seeds ``x_star`` and ``x0`` (and Q in the constructors).

    Attributes beyond the common interface: ``A``, ``eigenvalues`` (ascending) and
    ``eigenvectors`` (columns, same order), used by the divergence bound.

    Example::

        >>> problem = Quadratic([[4.0, 0.0], [0.0, 1.0]], x_star=[1.0, 1.0], x0=[0.0, 0.0])
        >>> problem.L, problem.mu, problem.kappa  # the largest and smallest diagonal entries
        (4.0, 1.0, 4.0)
        >>> float(problem.loss(problem.x0))  # (4 * 1² + 1 * 1²)/2
        2.5
        >>> Quadratic.from_spectrum([3.0, 1.0, 2.0], seed=0).L  # any seed: the largest value
        3.0
    """

    is_quadratic = True

    def __init__(
        self,
        A: Any,
        x_star: Any = None,
        f_star: float = 0.0,
        x0: Any = None,
        seed: int = 0,
        *,
        _spectrum: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        generator = _generator(seed)
        matrix = torch.as_tensor(_real_array("A", A), dtype=DTYPE)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
            raise ValueError(
                f"A must be a non-empty square matrix, got shape {tuple(matrix.shape)}"
            )
        if not torch.isfinite(matrix).all():
            raise ValueError("A must contain only finite values")
        scale = float(matrix.abs().max())
        asymmetry = float((matrix - matrix.T).abs().max())
        if asymmetry > 1e-12 * max(scale, 1e-300):
            raise ValueError(
                f"A must be symmetric for a Quadratic, got max |A - A^T| = "
                f"{asymmetry:.3g} (max |A| = {scale:.3g})"
            )
        matrix = (matrix + matrix.T) / 2
        if _spectrum is None:
            values, vectors = scipy.linalg.eigh(matrix.numpy())
            eigenvalues = torch.as_tensor(values, dtype=DTYPE)
            eigenvectors = torch.as_tensor(vectors, dtype=DTYPE)
        else:
            eigenvalues, eigenvectors = _spectrum
        top = float(eigenvalues[-1])
        if float(eigenvalues[0]) < -1e-12 * max(abs(top), 1e-300) or top <= 0:
            raise ValueError(
                f"A must be positive semidefinite and nonzero for a convex Quadratic, got "
                f"eigenvalues in [{float(eigenvalues[0]):.6g}, {top:.6g}]"
            )
        self.A = matrix
        self.eigenvalues = eigenvalues
        self.eigenvectors = eigenvectors
        self.L = top
        # computed eigenvalues at or below LAPACK's error, 100 d eps λ_max, are rounding noise of
        # a singular A (as LeastSquares reads them); given ones (from_spectrum) are exact
        self._zero_up_to = _rounding_floor(matrix.shape[0], top) if _spectrum is None else 0.0
        bottom = float(eigenvalues[0])
        self.mu = bottom if bottom > self._zero_up_to else 0.0
        dim = matrix.shape[0]
        self.x_star = (
            _vector("x_star", x_star, dim)
            if x_star is not None
            else torch.randn(dim, generator=generator, dtype=DTYPE)
        )
        self.f_star = _finite_float("f_star", f_star)
        self.x0 = (
            _vector("x0", x0, dim)
            if x0 is not None
            else torch.randn(dim, generator=generator, dtype=DTYPE)
        )

    @classmethod
    def from_spectrum(
        cls,
        eigenvalues: Sequence[float] | torch.Tensor,
        seed: int = 0,
        x_star: Any = None,
        f_star: float = 0.0,
        x0: Any = None,
    ) -> Quadratic:
        """A = Q diag(eigenvalues) Q^T with Q Haar-random from ``seed``; L and mu are the largest
        and smallest given eigenvalues exactly (not recomputed, however small: mu = 0 only when
        a given eigenvalue is 0), and so is ``pl_constant`` (the smallest positive one). The
        float64 A itself has eigenvalues within a few eps L of them."""
        seed = _check_seed(seed)
        values = torch.as_tensor(_real_array("eigenvalues", eigenvalues), dtype=DTYPE)
        if values.ndim != 1 or values.numel() == 0:
            raise ValueError(
                f"eigenvalues must be a non-empty 1-D sequence, got shape {tuple(values.shape)}"
            )
        if not torch.isfinite(values).all() or bool((values < 0).any()) or float(values.max()) <= 0:
            raise ValueError(
                f"eigenvalues must be finite, non-negative and not all zero for a "
                f"convex Quadratic, got eigenvalues={values.tolist()!r}"
            )
        values, _ = torch.sort(values)
        rotation = _haar_rotation(values.numel(), _generator(seed))
        with _one_thread():
            A = (rotation * values.unsqueeze(0)) @ rotation.T
        # x_star and x0 are drawn after Q from their own generator stream so that two problems
        # with the same seed and dimension share them whatever the spectrum.
        generator = torch.Generator().manual_seed((seed + 1_000_003) % 2**64)  # (uint64)
        dim = values.numel()
        x_star = (
            x_star if x_star is not None else torch.randn(dim, generator=generator, dtype=DTYPE)
        )
        x0 = x0 if x0 is not None else torch.randn(dim, generator=generator, dtype=DTYPE)
        return cls(
            (A + A.T) / 2,
            x_star=x_star,
            f_star=f_star,
            x0=x0,
            seed=seed,
            _spectrum=(values, rotation),
        )

    @classmethod
    def from_condition_number(
        cls,
        dim: int,
        kappa: float,
        L: float = 1.0,
        seed: int = 0,
        spacing: str = "linear",
        **kwargs: Any,
    ) -> Quadratic:
        """Spectrum from mu = L / kappa to L, ``dim`` values spaced ``"linear"``ly or
        ``"log"``arithmically (both ends included), rotated by a seeded Haar Q."""
        dim = _integer("dim", dim, 1, "a positive integer")
        if spacing not in ("linear", "log"):
            raise ValueError(f"spacing must be 'linear' or 'log', got spacing={spacing!r}")
        kappa = _finite_float("kappa", kappa)
        if kappa < 1:
            raise ValueError(f"kappa must be >= 1 (it is L / mu), got kappa={kappa!r}")
        L = _finite_float("L", L)
        if L <= 0:
            raise ValueError(f"L must be positive, got L={L!r}")
        mu = L / kappa
        if dim == 1 and kappa != 1:
            raise ValueError(
                f"a 1-dimensional quadratic has one eigenvalue, so kappa = 1: got dim=1 with "
                f"kappa={kappa!r}; use dim >= 2 for kappa > 1"
            )
        if dim == 1:
            values = np.array([L])
        elif spacing == "linear":
            values = np.linspace(mu, L, dim)
        else:
            values = np.geomspace(mu, L, dim)
        values[0], values[-1] = mu if dim > 1 else L, L
        return cls.from_spectrum(values, seed=seed, **kwargs)

    @property
    def pl_constant(self) -> float:
        """The smallest positive eigenvalue of A: f - f* = ½ rᵀAr <= ||Ar||²/(2 λ_min⁺), so PL
        holds with it even when A is singular (mu = 0). For an A given as a matrix, computed
        eigenvalues at or below 100 d eps λ_max (LAPACK's error) count as 0: give a smaller one
        exactly with ``from_spectrum``."""
        positive = self.eigenvalues[self.eigenvalues > self._zero_up_to]
        return float(positive.min())

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        r = x - self.x_star.to(x.dtype)
        return 0.5 * (r @ (self.A.to(x.dtype) @ r)) + self.f_star

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return self.A.to(x.dtype) @ (x.detach() - self.x_star.to(x.dtype))


# ----------------------------------------------------------------------------------------------
# finite sums with a seeded sampling oracle
# ----------------------------------------------------------------------------------------------
class _SampledFiniteSum:
    """f = (1/n) Σ_i f_i, and a seeded oracle: with ``batch_size`` b, update t sees the mean of
    f_i over b indices drawn uniformly with replacement; the draw is a pure function of
    (``oracle_seed``, t) (blocks of ``_BLOCK`` updates from ``numpy.random.default_rng([seed,
    block])``), so a run is reproducible and ``reseeded(s)`` gives an independent oracle.
    Subclasses define ``n``, ``sample_loss(x, indices)`` and call ``_init_oracle``."""

    _BLOCK = 1024
    n: int
    batch_size: int | None
    oracle_seed: int

    def _init_oracle(self, batch_size: int | None, oracle_seed: int) -> None:
        if batch_size is not None:
            batch_size = _integer(
                "batch_size", batch_size, 1, "a positive integer or None (full gradients)"
            )
        self.batch_size = batch_size
        self.oracle_seed = _check_seed(oracle_seed, "oracle_seed")
        self._batches: dict[int, np.ndarray] = {}

    @property
    def stochastic(self) -> bool:
        return self.batch_size is not None

    def batch(self, t: int) -> np.ndarray:
        """The indices of the terms update ``t`` samples (``batch_size`` of them)."""
        t = _integer("t", t, 0, "a non-negative integer")
        if self.batch_size is None:
            return np.arange(self.n)
        block, offset = divmod(int(t), self._BLOCK)
        if block not in self._batches:
            rng = np.random.default_rng([self.oracle_seed, block])
            self._batches[block] = rng.integers(0, self.n, (self._BLOCK, self.batch_size))
        return self._batches[block][offset]

    def loss_at(self, x: torch.Tensor, t: int) -> torch.Tensor:
        if self.batch_size is None:
            return self.loss(x)
        return self.sample_loss(x, self.batch(t))

    def reseeded(self, seed: int) -> Any:
        """A copy sharing data, x0, x* and f*, with oracle seed ``seed``."""
        if self.batch_size is None:
            raise TypeError(
                f"{type(self).__name__} with batch_size=None is deterministic: it has no "
                f"oracle seed to change, got seed={seed!r}"
            )
        twin = copy.copy(self)
        twin.oracle_seed = _check_seed(seed)
        twin._batches = {}
        return twin


# ----------------------------------------------------------------------------------------------
# least squares and logistic regression
# ----------------------------------------------------------------------------------------------
class LeastSquares(_SampledFiniteSum, Problem):
    r"""f(w) = ||X w - y||² / (2n).

    ∇f(w) = X^T (X w - y) / n, ∇²f = X^T X / n, so ``L`` = λ_max(X^T X)/n and
    ``mu`` = λ_min(X^T X)/n (0 when d > n or X is rank deficient), computed with scipy's
    eigen-solvers: LAPACK on the Gram matrix for dense X, Lanczos (``eigsh``) on the operator
    v -> X^T X v / n for scipy.sparse X.

    ``x_star`` is the minimum-norm least-squares solution from a stable solver:
    ``scipy.linalg.lstsq`` (SVD based, LAPACK gelsd) for dense X, ``scipy.sparse.linalg.lsqr``
    (tolerances 1e-14) for sparse X; ``f_star`` = f(x_star). It is the point gradient descent
    from x0 = 0 converges to.

    Parameters
    ----------
    X: (n, d) numpy array, torch tensor or scipy.sparse matrix, non-empty and finite.
    y: (n,) targets.
    x0: start; default standard normal from ``seed``.
    batch_size: None (default: ``loss_at`` is the full loss) or b: update t sees the mean of
        f_i(w) = (x_iᵀw - y_i)²/2 over b rows drawn uniformly with replacement, seeded by
        ``oracle_seed`` and t (dense X only). Then ``L_max`` = max_i ||x_i||² (the smoothness
        of the worst f_i) and ``sigma_star_sq`` = (1/n) Σ_i ||∇f_i(x*)||² (the gradient noise
        at the optimum) feed ``theory.sgd_noise_ball_bound``.

    ``pl_constant`` is the smallest positive eigenvalue of X^T X / n (dense X): the PL
    inequality holds with it even when mu = 0 (d > n or rank-deficient X).

    Example::

        >>> problem = LeastSquares([[1.0, 0.0], [0.0, 2.0]], [1.0, 2.0])  # X^T X/n = diag(1, 4)/2
        >>> problem.L, problem.mu, problem.x_star.tolist(), problem.f_star  # Xw = y at w = (1, 1)
        (2.0, 0.5, [1.0, 1.0], 0.0)
    """

    is_quadratic = True

    def __init__(
        self,
        X: Any,
        y: Any,
        x0: Any = None,
        seed: int = 0,
        *,
        batch_size: int | None = None,
        oracle_seed: int = 0,
    ):
        self.X_data = _data_matrix("X", X)
        n = self.X_data.shape[0]
        self.n = n
        self._init_oracle(batch_size, oracle_seed)
        if batch_size is not None and scipy.sparse.issparse(self.X_data):
            raise ValueError(
                "batch_size needs a dense X (sampling rows of a sparse X is not "
                "supported), got a scipy.sparse X"
            )
        self.y_data = _vector("y", y, n).numpy()
        self.L, self.mu = _gram_extreme_eigenvalues(self.X_data)
        if self.L <= 0:
            raise ValueError("X must not be all zeros (then L = 0 and the loss is constant)")
        self._X = _torch_matrix(self.X_data)
        self._y = torch.as_tensor(self.y_data, dtype=DTYPE)
        self.x_star = torch.as_tensor(self._solve(), dtype=DTYPE)
        self.f_star = float(self._numpy_loss(self.x_star.numpy()))
        if self.mu > 0:
            residual_grad = self.X_data.T @ (self.X_data @ self.x_star.numpy() - self.y_data) / n
            self.x_star_tol = float(np.linalg.norm(residual_grad)) / self.mu
        self.x0 = self._start(x0, seed)
        if not scipy.sparse.issparse(self.X_data):
            rows = self.X_data
            self.L_max = float(np.max(np.einsum("ij,ij->i", rows, rows)))
            residual = rows @ self.x_star.numpy() - self.y_data
            gradients = rows * residual[:, None]
            self.sigma_star_sq = float(np.mean(np.einsum("ij,ij->i", gradients, gradients)))

    @property
    def pl_constant(self) -> float:
        if scipy.sparse.issparse(self.X_data):
            return self.mu
        eigenvalues = scipy.linalg.eigvalsh(self.X_data.T @ self.X_data / self.n)
        positive = eigenvalues[eigenvalues > _rounding_floor(eigenvalues.size, self.L)]
        return float(positive.min())

    def sample_loss(self, x: torch.Tensor, indices: np.ndarray) -> torch.Tensor:
        """Mean of (x_iᵀw - y_i)²/2 over ``indices``."""
        index = torch.as_tensor(indices)
        residual = self._X.to(x.dtype)[index] @ x - self._y.to(x.dtype)[index]
        return (residual @ residual) / (2 * index.numel())

    def _solve(self) -> np.ndarray:
        if scipy.sparse.issparse(self.X_data):
            return scipy.sparse.linalg.lsqr(
                self.X_data,
                self.y_data,
                atol=1e-14,
                btol=1e-14,
                iter_lim=100 * self.X_data.shape[1],
            )[0]
        return scipy.linalg.lstsq(self.X_data, self.y_data)[0]

    def _numpy_loss(self, w: np.ndarray) -> float:
        residual = self.X_data @ w - self.y_data
        return float(residual @ residual) / (2 * self.n)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        residual = _matvec(self._X.to(x.dtype), x) - self._y.to(x.dtype)
        return (residual @ residual) / (2 * self.n)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        X = self._X.to(x.dtype)
        residual = _matvec(X, x.detach()) - self._y.to(x.dtype)
        return _matvec(X.t() if X.is_sparse else X.T, residual) / self.n


class LogisticRegression(Problem):
    r"""f(w) = (1/n) Σ_i log(1 + exp(-y_i x_i^T w)) + (l2/2) ||w||², labels y_i ∈ {-1, +1}.

    ∇f(w) = -(1/n) X^T (y ⊙ σ(-y ⊙ Xw)) + l2 w and ∇²f = (1/n) X^T D X + l2 I with
    D = diag(σ(m)(1 - σ(m))) ≤ 1/4, so ``L`` = λ_max(X^T X)/(4n) + l2 (scipy eigen-solvers as in
    ``LeastSquares``) and ``mu`` = l2.

    ``x_star`` is found by ``scipy.optimize.minimize`` (Newton-CG with the exact Hessian-vector
    product) followed by damped Newton polishing, and certified by a bound on ||w - w*|| that
    uses the data's curvature near w, not only mu = l2 (which alone would refuse every tiny l2):
    σ' = σ(1 - σ) has |(log σ')'| = |1 - 2σ| <= 1, so within the ball ||v - w|| <= r every
    weight σ'(y_i x_iᵀv) is at least e^{-R r} σ'(y_i x_iᵀw), R = max_i ||x_i||, and
    ∇²f(v) ⪰ m(r) I with m(r) = e^{-R r} λ + l2, λ = λ_min((1/n) X^T D(w) X) (LAPACK, less its
    rounding floor 100 d eps λ_max). Along every ray from w the directional derivative then
    exceeds -||∇f(w)|| + m(r) t, so with g = ||∇f(w)|| and r = 2g / (λ + l2):
    ||w - w*|| <= g / m(r) when g / m(r) <= r, and <= g / l2 (strong convexity) always; the
    smaller applicable one is ``x_star_tol``. g is the computed gradient norm: its own rounding
    error (about eps times the sum of the magnitudes of its terms) is not included. The solve is
    accepted only when ``x_star_tol`` <= 1e-10 max(1, ||w||) (1e-10 relative), else
    RuntimeError (the solver may not get there on separable data with a tiny l2, where w* is
    far out and the loss nearly flat: seen at l2 = 1e-10 on 100 separable points in 5-D).
    ``f_star`` = f(x_star); its error is at most L x_star_tol² / 2.

    Parameters
    ----------
    X: (n, d) data (numpy, torch or scipy.sparse), non-empty, finite.
    y: (n,) labels, each -1 or +1 (anything else raises ValueError).
    l2: the ridge coefficient, > 0 (it makes the minimiser exist even on separable data).
    x0: start; default standard normal from ``seed``.

    Example::

        >>> # x_1 = 1, x_2 = -1, both labels +1: f is even in w, so w* = 0 and f* = log 2
        >>> problem = LogisticRegression([[1.0], [-1.0]], [1.0, 1.0], l2=0.25)
        >>> problem.L, problem.mu  # λ_max(X^T X)/(4n) + l2 = 2/8 + 0.25, l2
        (0.5, 0.25)
        >>> problem.x_star.tolist(), math.isclose(problem.f_star, math.log(2))
        ([0.0], True)
    """

    def __init__(self, X: Any, y: Any, l2: float, x0: Any = None, seed: int = 0):
        self.X_data = _data_matrix("X", X)
        n, _ = self.X_data.shape
        self.n = n
        labels = _vector("y", y, n).numpy()
        bad = labels[(labels != 1.0) & (labels != -1.0)]
        if bad.size:
            raise ValueError(
                f"y must contain only the labels -1 and +1, got y values such as "
                f"{sorted(set(bad.tolist()))[:5]!r}"
            )
        self.y_data = labels
        l2 = _finite_float("l2", l2)
        if l2 <= 0:
            raise ValueError(
                f"l2 must be positive (it makes f strongly convex and the minimiser "
                f"exist), got l2={l2!r}"
            )
        self.l2 = l2
        top, _ = _gram_extreme_eigenvalues(self.X_data)
        self.L = top / 4 + l2
        self.mu = l2
        self._X = _torch_matrix(self.X_data)
        self._y = torch.as_tensor(labels, dtype=DTYPE)
        w = self._solve()
        self.x_star_tol = self._distance_bound(w)
        if self.x_star_tol > 1e-10 * max(1.0, float(np.linalg.norm(w))):
            raise RuntimeError(  # a failure of the solver, not of the user's input
                f"logistic regression solve could not be certified to 1e-10 relative accuracy: "
                f"the bound on ||w - w*|| is {self.x_star_tol:.3g} at ||w|| = "
                f"{float(np.linalg.norm(w)):.3g} (l2={l2!r}; on separable data a tiny l2 puts "
                f"w* far out, where the loss is nearly flat)"
            )
        self.x_star = torch.as_tensor(w, dtype=DTYPE)
        self.f_star = self._numpy_loss(w)
        self.x0 = self._start(x0, seed)

    # numpy closed forms used by the solver (independent of the torch loss below)
    def _numpy_loss(self, w: np.ndarray) -> float:
        margins = self.y_data * (self.X_data @ w)
        return float(np.mean(np.logaddexp(0.0, -margins)) + 0.5 * self.l2 * (w @ w))

    def _numpy_grad(self, w: np.ndarray) -> np.ndarray:
        margins = self.y_data * (self.X_data @ w)
        weights = -self.y_data * scipy.special.expit(-margins) / self.n
        return self.X_data.T @ weights + self.l2 * w

    def _numpy_hessp(self, w: np.ndarray, v: np.ndarray) -> np.ndarray:
        margins = self.y_data * (self.X_data @ w)
        curvature = scipy.special.expit(margins) * scipy.special.expit(-margins)
        return self.X_data.T @ (curvature * (self.X_data @ v)) / self.n + self.l2 * v

    def _distance_bound(self, w: np.ndarray) -> float:
        """A certified bound on ||w - w*|| (see the class docstring)."""
        d = self.X_data.shape[1]
        gradient = float(np.linalg.norm(self._numpy_grad(w)))
        margins = self.y_data * (self.X_data @ w)
        weights = np.sqrt(scipy.special.expit(margins) * scipy.special.expit(-margins))
        if scipy.sparse.issparse(self.X_data):
            weighted = scipy.sparse.diags(weights) @ self.X_data
        else:
            weighted = weights[:, None] * self.X_data
        top, bottom = _gram_extreme_eigenvalues(weighted)  # of (1/n) X^T D(w) X
        data = max(0.0, bottom - _rounding_floor(d, top))
        radius = 2 * gradient / (data + self.l2)
        local = math.exp(-float(np.max(_row_norms(self.X_data))) * radius) * data + self.l2
        if gradient <= local * radius:
            return gradient / local
        return gradient / self.l2

    def _solve(self) -> np.ndarray:
        d = self.X_data.shape[1]
        result = scipy.optimize.minimize(
            lambda w: (self._numpy_loss(w), self._numpy_grad(w)),
            np.zeros(d),
            jac=True,
            hessp=self._numpy_hessp,
            method="Newton-CG",
            options={"xtol": 1e-14, "maxiter": 500},
        )
        w = result.x
        hessian = scipy.sparse.linalg.LinearOperator(
            (d, d), dtype=np.float64, matvec=lambda v: self._numpy_hessp(w, v)
        )
        gradient = self._numpy_grad(w)
        for _ in range(20):  # Newton polishing: quadratic convergence from the solver's point
            norm = np.linalg.norm(gradient)
            if norm <= 1e-15 * max(1.0, np.linalg.norm(w)) * self.L:
                break
            step = scipy.sparse.linalg.cg(hessian, gradient, rtol=1e-15, atol=0.0, maxiter=10 * d)[
                0
            ]
            for _ in range(30):  # damped: halve the step until the gradient shrinks
                candidate = self._numpy_grad(w - step)
                if np.linalg.norm(candidate) < norm:
                    break
                step = step / 2
            else:
                break
            w, gradient = w - step, candidate
        return w

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        margins = self._y.to(x.dtype) * _matvec(self._X.to(x.dtype), x)
        # log(1 + exp(-m)) exactly at every margin (torch's softplus is linear past 20, 2e-9
        # off there, and its gradient then not grad's sigmoid); numpy's twin is np.logaddexp
        losses = torch.logaddexp(torch.zeros_like(margins), -margins)
        return losses.mean() + 0.5 * self.l2 * (x @ x)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        X, y = self._X.to(x.dtype), self._y.to(x.dtype)
        x = x.detach()
        weights = -y * torch.sigmoid(-y * _matvec(X, x)) / self.n
        return _matvec(X.t() if X.is_sparse else X.T, weights) + self.l2 * x


# ----------------------------------------------------------------------------------------------
# convex Lipschitz finite sums with a stochastic oracle: the setting of the schedule bounds
# ----------------------------------------------------------------------------------------------
class _PiecewiseLinear(_SampledFiniteSum, Problem):
    r"""f(w) = (1/n) Σ_i h_i(x_iᵀw) with each h_i convex, piecewise linear with one kink at c_i
    and slopes s_i⁻ <= s_i⁺ in [-1, 1]: h_i(z) = max(s_i⁻ (z - c_i), s_i⁺ (z - c_i)).

    Every (stochastic, minibatch) subgradient has norm at most ``G`` = max_i ||x_i||, so the
    problem is G-Lipschitz everywhere (no domain needed) and f is not smooth (``L`` = inf).
    X may be a numpy array, a torch tensor or a scipy.sparse matrix (stored dense in
    ``X_data``).

    The minimiser solves a linear program (scipy's HiGHS, on X and c scaled to max |entry| 1):
    min (1/n) Σ u_i subject to u_i >= s_i^± (x_iᵀw - c_i). The solver's point is then polished
    and certified. Polishing: the terms within 1e-7 (||x_i|| ||w|| + |c_i|) of their kink are put
    on it by the minimum-norm correction solving X_E w = c_E (at a vertex, X_E has rank d and
    this is the vertex itself); the unpolished point is tried next if that one fails.
    Certificate: with E = {i : |x_iᵀw - c_i| <= 1e-9 (||x_i|| ||w|| + |c_i|)} (at the kink up
    to rounding) and s_i the slope of every other term at w, multipliers u_E ∈ [s⁻, s⁺] are
    found by bounded-variable least squares (``lsq_linear(method="bvls")``, an exact active-set
    method) and g = (X_Eᵀ u_E + Σ_{i∉E} s_i x_i) / n must satisfy ||g|| <= 1e-9 Σ_i ||x_i|| / n.
    Since h_i(z) >= u (z - c_i) for every u ∈ [s_i⁻, s_i⁺], this proves
    f(v) >= f(w) + gᵀ(v - w) - ε for every v, with ε = (1/n) Σ_{i∈E} (s_i⁺ - s_i⁻) |x_iᵀw - c_i|
    <= 1e-9 (1/n) Σ_{i∈E} (||x_i|| ||w|| + |c_i|): w is a minimiser up to these relative
    1e-9 slacks. A point that cannot be certified raises RuntimeError. ``f_star`` = f(x_star)
    in float64.
    """

    L = math.inf
    mu = 0.0

    def _setup(
        self,
        X: Any,
        kinks: np.ndarray,
        low: np.ndarray,
        high: np.ndarray,
        x0: Any,
        seed: int,
        batch_size: int | None,
        oracle_seed: int,
    ) -> None:
        matrix = _data_matrix("X", X)
        # a scipy.sparse X is densified: the LP, its certificate and the oracle work on rows
        self.X_data = matrix.toarray() if scipy.sparse.issparse(matrix) else matrix
        self.n = self.X_data.shape[0]
        self._init_oracle(batch_size, oracle_seed)
        self._kinks, self._low, self._high = kinks, low, high
        self._X = torch.as_tensor(self.X_data, dtype=DTYPE)
        self._c = torch.as_tensor(kinks, dtype=DTYPE)
        self._lo = torch.as_tensor(low, dtype=DTYPE)
        self._hi = torch.as_tensor(high, dtype=DTYPE)
        self.G = float(np.max(_row_norms(self.X_data)))
        self.x_star = torch.as_tensor(self._solve(), dtype=DTYPE)
        self.f_star = self._numpy_loss(self.x_star.numpy())
        self.x0 = self._start(x0, seed)

    def _numpy_loss(self, w: np.ndarray) -> float:
        z = self.X_data @ w - self._kinks
        return float(np.mean(np.maximum(self._low * z, self._high * z)))

    def _terms(self, z: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        c, lo, hi = self._c, self._lo, self._hi
        if index is not None:
            c, lo, hi = c[index], lo[index], hi[index]
        r = z - c.to(z.dtype)
        return torch.maximum(lo.to(z.dtype) * r, hi.to(z.dtype) * r)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return self._terms(self._X.to(x.dtype) @ x, None).mean()

    def sample_loss(self, x: torch.Tensor, indices: np.ndarray) -> torch.Tensor:
        """Mean of h_i(x_iᵀw) over ``indices``."""
        index = torch.as_tensor(indices)
        return self._terms(self._X.to(x.dtype)[index] @ x, index).mean()

    def _solve(self) -> np.ndarray:
        X, c, lo, hi = self.X_data, self._kinks, self._low, self._high
        n, d = X.shape
        # HiGHS' tolerances are absolute (1e-7): solve for v = w x_scale / c_scale with X and c
        # scaled to max |entry| 1, so that tiny or huge data are solved to the same accuracy
        x_scale = float(np.abs(X).max()) or 1.0
        c_scale = float(np.abs(c).max()) or 1.0
        X, c = X / x_scale, c / c_scale
        # variables (v, u): minimise Σ u / n subject to s (X v - c) - u <= 0 for s = lo, hi
        rows = [np.hstack([s[:, None] * X, -np.eye(n)]) for s in (lo, hi)]
        result = scipy.optimize.linprog(
            np.concatenate([np.zeros(d), np.full(n, 1.0 / n)]),
            A_ub=np.vstack(rows),
            b_ub=np.concatenate([lo * c, hi * c]),
            bounds=[(None, None)] * d + [(None, None)] * n,
            method="highs",
        )
        if result.status != 0:  # a failure of the solver, not of the user's input
            raise RuntimeError(f"the linear program for x* failed: {result.message}")
        return self._certify(result.x[:d] * (c_scale / x_scale))

    def _certify(self, w: np.ndarray) -> np.ndarray:
        """``w`` moved onto its kinks and certified optimal (see the class docstring), or a
        RuntimeError when no subgradient of norm <= 1e-9 Σ_i ||x_i|| / n is found there."""
        X, c = self.X_data, self._kinks
        tolerance = 1e-9 * float(_row_norms(X).sum())
        # candidates: w moved onto the kinks it (nearly) sits on, by the minimum-norm
        # correction of X_E v = c_E (the vertex itself when X_E has rank d), then w as given
        near = np.abs(X @ w - c) <= 1e-7 * self._kink_scale(w)
        correction = np.zeros_like(w)
        if near.any():
            correction = np.linalg.lstsq(X[near], c[near] - X[near] @ w, rcond=None)[0]
        best = math.inf
        for candidate in (w + correction, w):
            residual = self._subgradient_residual(candidate)
            if residual <= tolerance:
                return candidate
            best = min(best, residual)
        raise RuntimeError(  # a failure of the solver, not of the user's input
            f"could not certify the minimiser: min over subgradients of ||grad|| = "
            f"{best / X.shape[0]:.3g} (expected 0)"
        )

    def _kink_scale(self, w: np.ndarray) -> np.ndarray:
        """||x_i|| ||w|| + |c_i|: the size of the numbers x_iᵀw - c_i is computed from (its
        rounding error is a multiple of eps times this)."""
        return _row_norms(self.X_data) * np.linalg.norm(w) + np.abs(self._kinks)

    def _subgradient_residual(self, w: np.ndarray) -> float:
        """n min ||g|| over the ε-subgradients g at ``w`` that the certificate considers: terms
        with |x_iᵀw - c_i| <= 1e-9 (||x_i|| ||w|| + |c_i|) (E: at the kink up to rounding of
        the numbers z_i is computed from) contribute u_i x_i, u_i ∈ [s_i⁻, s_i⁺], the others
        their slope; the u_E are found by bounded-variable least squares (exact, active set)."""
        X, c, lo, hi = self.X_data, self._kinks, self._low, self._high
        z = X @ w - c
        kink = np.abs(z) <= 1e-9 * self._kink_scale(w)
        outside = X[~kink].T @ np.where(z > 0, hi, lo)[~kink]
        if not kink.any():
            return float(np.linalg.norm(outside))
        fit = scipy.optimize.lsq_linear(
            X[kink].T, -outside, bounds=(lo[kink], hi[kink]), method="bvls"
        )
        return float(np.linalg.norm(X[kink].T @ fit.x + outside))


def _synthetic_shape(n: Any, dim: Any) -> tuple[int, int]:
    return _integer("n", n, 1, "a positive integer"), _integer("dim", dim, 1, "a positive integer")


class LeastAbsoluteDeviations(_PiecewiseLinear):
    r"""f(w) = (1/n) Σ_i |x_iᵀw - y_i|: least absolute deviations (robust regression).

    Convex, not smooth, G-Lipschitz with ``G`` = max_i ||x_i|| for every sampled subgradient
    sign(x_iᵀw - y_i) x_i and their minibatch means: the setting of the schedule bounds
    (``theory.sgd_last_iterate_bound``). ``loss_at(w, t)`` samples ``batch_size`` rows (default
    1) uniformly with replacement from a generator seeded by (``oracle_seed``, t). ``x_star``,
    ``f_star``: the certified LP solution (see ``_PiecewiseLinear``).

    ``synthetic(n, dim, seed)`` draws a standard instance: rows x_i uniform on the unit sphere
    (so G = 1), y = X w_true + Laplace noise.

    Example::

        >>> problem = LeastAbsoluteDeviations([[1.0], [1.0], [1.0]], [0.0, 1.0, 5.0])
        >>> problem.x_star.tolist(), round(problem.f_star, 6), problem.G  # median; (1 + 0 + 4)/3
        ([1.0], 1.666667, 1.0)
    """

    def __init__(
        self,
        X: Any,
        y: Any,
        x0: Any = None,
        seed: int = 0,
        *,
        batch_size: int | None = 1,
        oracle_seed: int = 0,
    ):
        matrix = _data_matrix("X", X)
        targets = _vector("y", y, matrix.shape[0]).numpy()
        n = targets.size
        self.y_data = targets
        self._setup(matrix, targets, -np.ones(n), np.ones(n), x0, seed, batch_size, oracle_seed)

    @classmethod
    def synthetic(
        cls, n: int = 200, dim: int = 10, seed: int = 0, noise: float = 0.5, **kwargs: Any
    ) -> LeastAbsoluteDeviations:
        """Rows uniform on the unit sphere (G = 1), y = X w_true + Laplace(``noise``) noise,
        w_true standard normal; everything drawn from ``seed``; x0 = 0 unless given. ``n``,
        ``dim``: positive integers; ``noise``: the Laplace scale, finite and >= 0."""
        n, dim = _synthetic_shape(n, dim)
        noise = _finite_float("noise", noise)
        if noise < 0:
            raise ValueError(f"noise must be >= 0 (a Laplace scale), got noise={noise!r}")
        rng = np.random.default_rng(_check_seed(seed))
        X = rng.standard_normal((n, dim))
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        y = X @ rng.standard_normal(dim) + rng.laplace(scale=noise, size=n)
        kwargs.setdefault("x0", np.zeros(dim))
        return cls(X, y, seed=seed, **kwargs)


class HingeLoss(_PiecewiseLinear):
    r"""f(w) = (1/n) Σ_i max(0, 1 - y_i x_iᵀw), labels y_i ∈ {-1, +1}: the SVM's hinge loss
    without regulariser.

    Convex, not smooth, G-Lipschitz with ``G`` = max_i ||x_i||; on non-separable data its
    minimum is attained (``x_star`` by a certified LP, see ``_PiecewiseLinear``). Sampling as
    ``LeastAbsoluteDeviations``. ``synthetic`` flips a fraction of the labels of a linear rule
    so that the data are not separable.

    Example::

        >>> # f(w) = (2 max(0, 1 - w) + max(0, 1 + w))/3: slope -1/3 on [-1, 1], +1/3 above 1
        >>> problem = HingeLoss([[1.0], [1.0], [1.0]], [1.0, 1.0, -1.0])
        >>> problem.x_star.tolist(), round(problem.f_star, 6), problem.G  # f(1) = 2/3
        ([1.0], 0.666667, 1.0)
    """

    def __init__(
        self,
        X: Any,
        y: Any,
        x0: Any = None,
        seed: int = 0,
        *,
        batch_size: int | None = 1,
        oracle_seed: int = 0,
    ):
        matrix = _data_matrix("X", X)
        labels = _vector("y", y, matrix.shape[0]).numpy()
        bad = labels[(labels != 1.0) & (labels != -1.0)]
        if bad.size:
            raise ValueError(
                f"y must contain only the labels -1 and +1, got y values such as "
                f"{sorted(set(bad.tolist()))[:5]!r}"
            )
        self.y_data = labels
        # max(0, 1 - y z): kink at z = y; slope -1 below it (y = +1) or +1 above it (y = -1)
        low = np.where(labels > 0, -1.0, 0.0)
        high = np.where(labels > 0, 0.0, 1.0)
        self._setup(matrix, labels, low, high, x0, seed, batch_size, oracle_seed)

    @classmethod
    def synthetic(
        cls, n: int = 200, dim: int = 10, seed: int = 0, flip: float = 0.1, **kwargs: Any
    ) -> HingeLoss:
        """Rows uniform on the unit sphere scaled by 2 (G = 2), labels sign(x_iᵀw_true), each
        flipped with probability ``flip`` ∈ [0, 1] (0: separable data, f* = 0); drawn from
        ``seed``; x0 = 0 unless given. ``n``, ``dim``: positive integers."""
        n, dim = _synthetic_shape(n, dim)
        flip = _finite_float("flip", flip)
        if not 0 <= flip <= 1:
            raise ValueError(
                f"flip must lie in [0, 1] (the probability of flipping a label), got flip={flip!r}"
            )
        rng = np.random.default_rng(_check_seed(seed))
        X = rng.standard_normal((n, dim))
        X *= 2 / np.linalg.norm(X, axis=1, keepdims=True)
        labels = np.sign(X @ rng.standard_normal(dim))
        labels[labels == 0] = 1.0
        labels[rng.random(n) < flip] *= -1
        kwargs.setdefault("x0", np.zeros(dim))
        return cls(X, labels, seed=seed, **kwargs)


# ----------------------------------------------------------------------------------------------
# non-convex sanity problem
# ----------------------------------------------------------------------------------------------
class Rosenbrock(Problem):
    r"""f(x) = Σ_{i<d-1} [ b (x_{i+1} - x_i²)² + (1 - x_i)² ] (Rosenbrock, 1960; the chained
    d-dimensional form of Dixon & Szegő, 1978), minimiser x* = (1, ..., 1), f* = 0.

    Non-convex and not globally L-smooth (the Hessian grows like x²), so ``L`` here is the
    *local* smoothness λ_max(∇²f(x*)) (the exact Hessian at x*, by autograd) and ``mu`` = 0
    (``is_convex`` is False): it is a sanity problem for convergence, not for the convex bounds.
    For d = 2, b = 100: ∇²f(x*) = [[802, -400], [-400, 200]], L ≈ 1001.6.

    Parameters: ``dim`` >= 2, ``b`` > 0 (100 classically), ``x0`` (default x* plus a standard
    normal draw from ``seed`` scaled by 0.5).

    Example::

        >>> problem = Rosenbrock()  # d = 2, b = 100
        >>> problem.x_star.tolist(), problem.f_star, float(problem.loss(torch.zeros(2)))
        ([1.0, 1.0], 0.0, 1.0)
        >>> # λ_max of [[802, -400], [-400, 200]]: trace 1002, determinant 400
        >>> math.isclose(problem.L, (1002 + math.sqrt(1002**2 - 4 * 400)) / 2)
        True
    """

    is_convex = False
    L_is_global = False

    def __init__(self, dim: int = 2, b: float = 100.0, x0: Any = None, seed: int = 0):
        dim = _integer("dim", dim, 2)
        b = _finite_float("b", b)
        if b <= 0:
            raise ValueError(f"b must be positive, got b={b!r}")
        self.b = b
        self.x_star = torch.ones(dim, dtype=DTYPE)
        self.f_star = 0.0
        self.mu = 0.0
        hessian = torch.autograd.functional.hessian(self.loss, self.x_star)
        self.L = float(scipy.linalg.eigvalsh(hessian.numpy())[-1])
        if x0 is not None:
            self.x0 = _vector("x0", x0, dim)
        else:
            self.x0 = self.x_star + 0.5 * torch.randn(dim, generator=_generator(seed), dtype=DTYPE)

    def sublevel_smoothness(self, level: float | None = None, margin: float = 0.1) -> float:
        """An upper bound on λ_max(∇²f) over a box containing the sublevel set
        {f <= ``level``} (default f(x0)) in its interior: the L that the non-convex gradient
        bound needs here (gradient descent with lr < 2/L started in the sublevel set never
        leaves it, by the descent lemma on the box).

        The box: f <= c forces (1 - x_i)² <= c for i < d-1, so x_i ∈ [1 - √c, 1 + √c], and
        b (x_{d-1} - x_{d-2}²)² <= c, so x_{d-1} ∈ [min x_{d-2}² - √(c/b), max x_{d-2}² +
        √(c/b)]; each side is widened by ``margin`` (finite, >= 0: a negative one would cut
        the box inside the sublevel set) times its width, and by 1e-3. On it the
        tridiagonal Hessian (H_ii = 2[i<d-1] + 12 b x_i² [i<d-1] - 4 b x_{i+1} [i<d-1] +
        2 b [i>0], H_{i,i+1} = -4 b x_i) is bounded by Gershgorin's theorem with interval
        arithmetic: a certified, not a sampled, bound.

        >>> round(Rosenbrock(x0=[1.0, 1.0]).sublevel_smoothness(level=1e-12), 1)
        1205.2
        """
        c = float(self.loss(self.x0)) if level is None else _finite_float("level", level)
        if c < 0:
            raise ValueError(f"level must be >= 0 (f >= 0), got level={c!r}")
        margin = _finite_float("margin", margin)
        if margin < 0:
            raise ValueError(
                f"margin must be >= 0 (the box must contain the sublevel set), got "
                f"margin={margin!r}"
            )
        d, b = self.dim, self.b
        lo, hi = np.full(d, 1 - math.sqrt(c)), np.full(d, 1 + math.sqrt(c))
        square_lo = 0.0 if lo[d - 2] <= 0 <= hi[d - 2] else min(lo[d - 2] ** 2, hi[d - 2] ** 2)
        square_hi = max(lo[d - 2] ** 2, hi[d - 2] ** 2)
        lo[d - 1] = square_lo - math.sqrt(c / b)
        hi[d - 1] = square_hi + math.sqrt(c / b)
        widen = margin * (hi - lo) + 1e-3
        lo, hi = lo - widen, hi + widen
        absolute = np.maximum(np.abs(lo), np.abs(hi))
        radius = np.zeros(d)
        diagonal = np.zeros(d)
        head = np.arange(d - 1)
        diagonal[head] += 2 + 12 * b * absolute[head] ** 2 - 4 * b * lo[head + 1]
        diagonal[1:] += 2 * b
        radius[head] += 4 * b * absolute[head]  # |H_{i,i+1}| in row i
        radius[head + 1] += 4 * b * absolute[head]  # and in row i + 1
        return float(np.max(diagonal + radius))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        head, tail = x[:-1], x[1:]
        return (self.b * (tail - head**2) ** 2 + (1 - head) ** 2).sum()

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        head, tail = x[:-1], x[1:]
        inner = tail - head**2
        gradient = torch.zeros_like(x)
        gradient[:-1] += -4 * self.b * head * inner - 2 * (1 - head)
        gradient[1:] += 2 * self.b * inner
        return gradient


# ----------------------------------------------------------------------------------------------
# Reddi, Kale and Kumar (2018): Adam's non-convergence
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Regret:
    """Regret of an online run: ``regret[t-1]`` = R_t and ``average[t-1]`` = R_t / t for
    t = 1..T, with R_t = Σ_{s<t} f_s(x_s) - min_{x∈[-1,1]} Σ_{s<t} f_s(x).

    Example::

        >>> result = ReddiCounterexample().regret([1.0, 1.0])  # c_0 = 1010, c_1 = -10
        >>> result.regret.tolist()  # 1010 - (-1010), 1000 - (-1000)
        [2020.0, 2000.0]
        >>> result.average.tolist()  # R_t / t
        [2020.0, 1000.0]
    """

    regret: np.ndarray
    average: np.ndarray


class ReddiCounterexample(Problem):
    r"""The online convex problem on which Adam fails to converge (Reddi, Kale and Kumar, "On the
    Convergence of Adam and Beyond", ICLR 2018, section 5, synthetic experiments).

    Deterministic version: f_t(x) = 1010 x when t mod 101 = 1, and f_t(x) = -10 x otherwise,
    with the paper's time t = 1, 2, ...; in this package's convention (``t`` counts updates
    already made, starting at 0) the large gradient is seen at updates t = 0, 101, 202, ...
    Stochastic version: f_t(x) = 1010 x with probability 0.01, else -10 x, independently per t
    (the draw for update t is a pure function of (seed, t), see ``coefficient``).

    Feasible set F = [-1, 1]: ``project`` clips after every update. Over a period the
    coefficients sum to 1010 - 100·10 = 10 > 0 (in expectation 0.01·1010 - 0.99·10 = 0.2 > 0),
    so the optimum is x* = -1. Adam (β1 = 0.9, β2 = 0.99) drifts to the worst point x = +1 because
    the rare large gradient is forgotten by its moving average; AMSGrad converges to -1.

    ``loss(x)`` is the average loss (10/101) x (deterministic) or 0.2 x (stochastic), so
    ``f_star`` = -10/101 or -0.2; ``L`` = ``mu`` = 0 (linear). ``regret(iterates)`` returns
    R_t and R_t / t for the points x_0, x_1, ... an optimizer played.

    Example::

        >>> problem = ReddiCounterexample()
        >>> problem.coefficients(3).tolist(), problem.x_star.tolist()
        ([1010.0, -10.0, -10.0], [-1.0])
        >>> math.isclose(problem.f_star, -(1010 - 100 * 10) / 101)  # -(mean coefficient)
        True
    """

    period = 101
    large = 1010.0
    small = -10.0
    probability = 0.01

    def __init__(self, stochastic: bool = False, x0: Any = None, seed: int = 0):
        if not isinstance(stochastic, bool):
            raise TypeError(f"stochastic must be a bool, got stochastic={stochastic!r}")
        self.stochastic = stochastic
        self.seed = _check_seed(seed)
        if stochastic:
            self.mean_coefficient = (
                self.probability * self.large + (1 - self.probability) * self.small
            )
        else:
            self.mean_coefficient = (self.large + (self.period - 1) * self.small) / self.period
        self.L = 0.0
        self.mu = 0.0
        self.x_star = torch.tensor([-1.0], dtype=DTYPE)
        self.f_star = -self.mean_coefficient
        if x0 is not None:
            self.x0 = _vector("x0", x0, 1)
            if not -1 <= float(self.x0[0]) <= 1:
                raise ValueError(f"x0 must lie in the feasible set [-1, 1], got x0={x0!r}")
        else:
            self.x0 = 2 * torch.rand(1, generator=_generator(seed), dtype=DTYPE) - 1

    _BLOCK = 4096

    def coefficient(self, t: int) -> float:
        """c_t, so that f_t(x) = c_t x (t counts updates already made, from 0)."""
        t = _integer("t", t, 0, "a non-negative integer")
        if self.stochastic:
            block, offset = divmod(int(t), self._BLOCK)
            return float(self._stochastic_block(block)[offset])
        return self.large if t % self.period == 0 else self.small

    def _stochastic_block(self, block: int) -> np.ndarray:
        """Coefficients of updates [block B, (block + 1) B), B = 4096: uniform draws from
        ``numpy.random.default_rng([seed, block])``, so each c_t depends only on (seed, t)."""
        cache = self.__dict__.setdefault("_blocks", {})
        if block not in cache:
            draws = np.random.default_rng([self.seed, block]).random(self._BLOCK)
            cache[block] = np.where(draws < self.probability, self.large, self.small)
        return cache[block]

    def coefficients(self, steps: int) -> np.ndarray:
        """c_0, ..., c_{steps-1} (``steps``: a non-negative integer)."""
        steps = _integer("steps", steps, 0, "a non-negative integer")
        if not self.stochastic:
            return np.where(np.arange(steps) % self.period == 0, self.large, self.small)
        blocks = [self._stochastic_block(b) for b in range(-(-steps // self._BLOCK))]
        return np.concatenate(blocks)[:steps] if blocks else np.zeros(0)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return (self.mean_coefficient * x).sum()

    def loss_at(self, x: torch.Tensor, t: int) -> torch.Tensor:
        return (self.coefficient(t) * x).sum()

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(-1.0, 1.0)

    @property
    def why_not_full_loss(self) -> str:
        """Online and constrained: update t is given f_t(x) = c_t x, not f, and every update is
        followed by the projection onto [-1, 1] (see ``Problem.why_not_full_loss``)."""
        sampled = "stochastic=True, " if self.stochastic else ""
        return (
            f"an online problem ({sampled}update t is given f_t(x) = c_t x with c_t in "
            f"{{{self.large:g}, {self.small:g}}}, not f(x) = {self.mean_coefficient:.6g} x) "
            "with a projection onto [-1, 1] after every update"
        )

    def regret(self, iterates: Any) -> Regret:
        """R_t and R_t / t, t = 1..T, for the played points x_0..x_{T-1} (a sequence, a (T,) or
        (T, 1) tensor/array); the comparator is the best fixed point in hindsight,
        min_{x∈[-1,1]} Σ c_s x = -|Σ c_s| (x = -1 whenever the sum is positive). The points
        must be finite and lie in the feasible set [-1, 1] (``project`` keeps them there; the
        regret of an infeasible point is not the online-learning regret), else ValueError."""
        points = _real_array("iterates", iterates).reshape(-1)
        if not np.isfinite(points).all():
            index = int(np.argmax(~np.isfinite(points)))
            raise ValueError(
                f"iterates must be finite, got iterates[{index}]={float(points[index])!r}"
            )
        if (np.abs(points) > 1).any():
            index = int(np.argmax(np.abs(points) > 1))
            raise ValueError(
                f"iterates must lie in the feasible set [-1, 1], got "
                f"iterates[{index}]={float(points[index])!r}"
            )
        c = self.coefficients(points.size)
        played = np.cumsum(c * points)
        best = -np.abs(np.cumsum(c))
        regret = played - best
        return Regret(regret=regret, average=regret / np.arange(1, points.size + 1))


# ----------------------------------------------------------------------------------------------
# Wilson et al. (2017): adaptive methods can overfit
# ----------------------------------------------------------------------------------------------
class WilsonSeparable(LeastSquares):
    r"""The linearly separable least-squares problem of Wilson, Roelofs, Stern, Srebro and Recht,
    "The Marginal Value of Adaptive Gradient Methods in Machine Learning" (NeurIPS 2017,
    section 3.3, "Adaptivity can overfit").

    Construction (paper, 1-based feature index j): labels y_i ∈ {-1, +1} with P(y_i = 1) = p > 1/2,
    and

        x_ij = y_i   for j = 1,
               1     for j = 2, 3,
               1     for j = 4 + 5(i-1), ..., 4 + 5(i-1) + 2(1 - y_i),
               0     otherwise.

    Feature 1 is the label itself (the only useful feature), features 2 and 3 are always 1, and
    each example owns a private block of 5 columns of which it switches on 1 (y_i = +1) or 5
    (y_i = -1). Features are "infinite dimensional"; the n training points use the first 3 + 5n
    columns, and a test point's private features lie beyond them, where every method started at
    w = 0 keeps weight 0 (those coordinates never receive gradient), so a test point is scored by
    <w, x> = w_1 y + w_2 + w_3.

    The loss is the least-squares loss of ``LeastSquares`` on (X, y): the paper minimises
    ||Xw - y||²; the factor 1/(2n) changes neither the minimisers nor the direction of an
    AdaGrad/RMSProp/Adam step (they are invariant to a constant scaling of the gradient up to
    eps). x0 = 0 (the paper's initialisation; the lemma below needs it).

    What the paper proves: with b = Σ y_i > 0, X sign(X^T y) = 4y (a positive example scores
    1 + 2 + 1, a negative one -1 + 2 - 5), so by its Lemma 3.1 AdaGrad, RMSProp and Adam from 0
    converge to w_ada = sign(X^T y) / 4 (``adaptive_solution``), which scores (y + 2)/4 > 0 on
    every test point: all are classified +1, test error P(y = -1) = 1 - p. Gradient descent
    converges to the minimum-norm interpolant w = X^T (X X^T)^{-1} y (``x_star``).

    When that interpolant classifies every test point correctly (zero test error) is derived
    here, not taken from b > 0: X X^T = y yᵀ + 2·11ᵀ + diag(1 or 5), so by symmetry w =
    X^T α with α_i depending only on y_i, and a test point scores y s + 2 t with s = yᵀα,
    t = 1ᵀα. With n₊ and n₋ training labels +1 and -1, P = n₊, M = n₋/5, A = P + M,
    B = P - M: s = (A + 2A² - 2B²)/Δ, t = B/Δ, Δ = (1 + A)(1 + 2A) - 2B² > 0, and every
    test point is right iff s > 2|t|, i.e. P + M + 8PM > 2|P - M|: true whenever both labels
    occur in training (n₊, n₋ >= 1), false when one is missing. So with all training labels
    +1 (b = n > 0, possible for small n) x_star scores every test point positive and errs on
    the negative ones, test error 1 - p like the adaptive methods.

    Parameters: ``n`` training points (>= 1), ``p`` ∈ (1/2, 1), ``seed`` for the labels.
    ``label_sum`` = b; the paper's analysis assumes b > 0 (probable for p > 1/2, not forced).

    Example::

        >>> WilsonSeparable.features([1.0, -1.0]).astype(int).tolist()  # private blocks from col 3
        [[1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], [-1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]]
        >>> problem = WilsonSeparable(n=10, seed=0)
        >>> problem.dim, problem.label_sum > 0, problem.test_error(problem.x_star)  # 3 + 5n
        (53, True, 0.0)
        >>> negatives = float(np.mean(problem.test_set(1000)[1] == -1))  # all scored positive
        >>> problem.test_error(problem.adaptive_solution()) == negatives
        True
    """

    def __init__(self, n: int = 40, p: float = 0.7, seed: int = 0):
        n = _integer("n", n, 1, "a positive integer")
        p = _finite_float("p", p)
        if not 0.5 < p < 1:
            raise ValueError(f"p must lie in (1/2, 1) (the probability of label +1), got p={p!r}")
        self.p = p
        self.seed = _check_seed(seed)
        labels = self._labels(n, _generator(seed))
        self.label_sum = int(labels.sum())
        super().__init__(self.features(labels), labels, x0=np.zeros(3 + 5 * n), seed=seed)

    def _labels(self, count: int, generator: torch.Generator) -> np.ndarray:
        positive = torch.rand(count, generator=generator, dtype=DTYPE) < self.p
        return np.where(positive.numpy(), 1.0, -1.0)

    @staticmethod
    def features(labels: np.ndarray, first_index: int = 0, dim: int | None = None) -> np.ndarray:
        """The paper's feature vectors for ``labels``, the k-th of them being example number
        ``first_index + k`` (0-based here: its block starts at column 3 + 5 i), as a
        (len(labels), dim) matrix (``dim`` defaults to 3 + 5 (first_index + len(labels)))."""
        labels = np.asarray(labels, dtype=np.float64)
        count = labels.size
        dim = 3 + 5 * (first_index + count) if dim is None else dim
        X = np.zeros((count, dim))
        X[:, 0] = labels
        X[:, 1:3] = 1.0
        for k, label in enumerate(labels):
            start = 3 + 5 * (first_index + k)
            X[k, start : start + 1 + int(2 * (1 - label))] = 1.0
        return X

    def adaptive_solution(self) -> torch.Tensor:
        """sign(X^T y) / 4: the limit of AdaGrad, RMSProp and Adam from 0 (Lemma 3.1, b > 0)."""
        direction = np.sign(self.X_data.T @ self.y_data)
        return torch.as_tensor(direction / 4.0, dtype=DTYPE)

    def test_set(self, count: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``count`` fresh test points (labels drawn with probability p from ``seed``) whose
        private features follow the training ones; returns (X_test restricted to the first
        3 + 5n columns, which is all a trained w can see, y_test)."""
        count = _integer("count", count, 1, "a positive integer")
        labels = self._labels(count, _generator(seed))
        X = self.features(labels, first_index=self.n, dim=self.X_data.shape[1])
        return X, labels

    def test_error(self, w: torch.Tensor, count: int = 1000, seed: int = 1) -> float:
        """Fraction of ``count`` fresh test points misclassified by sign(<w, x>) (a score of 0
        counts as an error); ``w`` has the problem's dimension 3 + 5n."""
        w = _vector("w", w, self.dim)
        X, labels = self.test_set(count, seed)
        scores = X @ w.numpy()
        return float(np.mean(np.sign(scores) != labels))
