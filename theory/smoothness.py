"""The local smoothness of any model: the top Hessian eigenvalue of its loss, by Hessian-vector
products.

For a twice-differentiable loss the local smoothness constant at the current parameters θ is
L = λ_max(∇²ℓ(θ)); gradient descent is stable near θ for steps below 2/L and monotone for steps
below 1/L (see ``theory.bounds.step_size_limits``). The Hessian is never formed: a Hessian-vector
product (HVP) H v = ∇_θ <∇_θ ℓ(θ), v> costs one extra backward pass through the gradient's graph
("double backward", Pearlmutter, 1994, "Fast exact multiplication by the Hessian").

Two eigen-solvers on the HVP:
* ``"lanczos"`` (default): ``scipy.sparse.linalg.eigsh`` (ARPACK's implicitly restarted Lanczos)
  on a ``LinearOperator`` whose matvec is the HVP; ``which="LA"`` gives the largest algebraic
  eigenvalue (the "sharpness" that governs GD's stability), ``which="LM"`` the largest magnitude.
* ``"power"``: power iteration on H², v <- H² v / ||H² v||, with a Rayleigh-Ritz step on
  span{v, H v} each round; it finds the eigenvalue of largest magnitude (Golub & Van Loan,
  "Matrix Computations", section 7.3.1, need it strictly dominant for plain power iteration on
  H; on H² the pair +λ, -λ of a saddle is one dominant eigenvalue λ², and the Ritz step splits
  it, returning +λ). It stops when the eigen-residual ||H y - θ y|| <= ``tol`` |θ| (ARPACK's
  rule), see ``_power_iteration``.

The step limits 1/λ_max and 2/λ_max need the largest *algebraic* eigenvalue λ_max. When the
largest-magnitude eigenvalue (``"power"``, ``which="LM"``) is negative it is λ_min, not λ_max, so
a second solve finds λ_max: Lanczos with ``which="LA"``, or power iteration on the shifted
operator H + |λ_min| I (positive semidefinite, so its largest magnitude is λ_max + |λ_min|),
stopped by the same relative rule on λ_max (a λ_max of about 0 may so end unconverged). Both
solves share ``max_hvps``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse.linalg
import torch

from theory.problems import _check_seed, _finite_float, _integer

__all__ = ["SmoothnessEstimate", "hessian_vector_product", "smoothness"]

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SmoothnessEstimate:
    """Result of ``smoothness``.

    ``eigenvalue``: the estimated top Hessian eigenvalue L (largest algebraic for Lanczos with
    ``which="LA"``, largest magnitude otherwise); ``largest_eigenvalue``: the largest algebraic
    eigenvalue λ_max, which limits gradient descent's step: the same number as ``eigenvalue``
    for ``which="LA"`` and whenever ``eigenvalue`` > 0, found by a second solve when a
    largest-magnitude ``eigenvalue`` is negative (then it is λ_min), nan when ``max_hvps`` left
    no product for that solve; ``safe_step`` = 1/λ_max and ``edge_step`` = 2/λ_max (inf when
    λ_max <= 0: no curvature limit; nan when λ_max is nan); ``hvps``: the number of
    Hessian-vector products used, both solves together (each is one double-backward pass per
    batch), never more than ``max_hvps``; ``method``; ``converged``: whether every solve met its
    tolerance within ``max_hvps`` products and ``tol`` is not below the precision floor of the
    parameters' dtype (see ``smoothness``); otherwise the numbers are the best estimates at the
    last product; ``eigenvector``: the unit eigenvector estimate of ``eigenvalue`` (flattened
    over the parameters, in ``model.parameters()`` order).

    Example::

        >>> model = torch.nn.Linear(2, 1, bias=False).double()  # loss w^T diag(4, 1) w / 2
        >>> x = torch.diag(torch.tensor([2.0, 1.0], dtype=torch.float64))  # H = 2 X^T X / 2
        >>> y = torch.zeros(2, 1, dtype=torch.float64)
        >>> estimate = smoothness(model, torch.nn.functional.mse_loss, (x, y))
        >>> round(estimate.L, 6), round(estimate.safe_step, 6), round(estimate.edge_step, 6)
        (4.0, 0.25, 0.5)
    """

    eigenvalue: float
    safe_step: float
    edge_step: float
    hvps: int
    method: str
    converged: bool
    eigenvector: torch.Tensor
    largest_eigenvalue: float

    @property
    def L(self) -> float:
        return self.eigenvalue


def _batches(batch: Any) -> list[Batch]:
    """``batch`` as a list of (x, y) pairs, each with at least one sample."""
    if (
        isinstance(batch, (tuple, list))
        and len(batch) == 2
        and all(torch.is_tensor(part) for part in batch)
    ):
        return _non_empty([(batch[0], batch[1])], "batch")
    if isinstance(batch, Iterable) and not torch.is_tensor(batch):
        batches = list(batch)
        if not batches:
            raise ValueError(
                "batch must be an (x, y) pair or a non-empty iterable of them, got "
                "an empty iterable"
            )
        for index, item in enumerate(batches):
            if not (
                isinstance(item, (tuple, list))
                and len(item) == 2
                and all(torch.is_tensor(part) for part in item)
            ):
                raise TypeError(
                    f"batch[{index}] must be an (x, y) pair of tensors, got {type(item).__name__}"
                )
        return _non_empty([(x, y) for x, y in batches], "batch[{index}]")
    raise TypeError(
        f"batch must be an (x, y) pair of tensors or an iterable of them, got "
        f"{type(batch).__name__}"
    )


def _non_empty(batches: list[Batch], name: str) -> list[Batch]:
    for index, (x, _) in enumerate(batches):
        if x.ndim == 0 or len(x) == 0:
            raise ValueError(
                f"{name.format(index=index)} has no samples: x has shape {tuple(x.shape)} (a "
                f"batch needs at least one sample for its loss and its weight)"
            )
    return batches


def hessian_vector_product(
    model: torch.nn.Module, loss_fn: LossFn, batch: Any
) -> tuple[Callable[[torch.Tensor], torch.Tensor], int]:
    """A function v -> H v for the Hessian of the loss at the model's current parameters, and
    the number of parameters. With several batches the loss is their sample-weighted mean,
    Σ_b n_b ℓ_b / Σ_b n_b (n_b = len(x_b)), which equals the loss on their union for a
    mean-reduced ``loss_fn``. The gradient graphs of all batches are kept between products.
    Parameters the loss does not depend on (an unused head), losses whose gradient does not
    depend on the parameters (linear), and a loss that depends on no parameter requiring grad
    (a frozen trunk whose trainable head the loss does not use) contribute exact zeros to H v.
    A non-finite loss raises ValueError.

    Example::

        >>> model = torch.nn.Linear(2, 1, bias=False).double()  # mean of (w^T x_i)² over 2 rows
        >>> x = torch.diag(torch.tensor([2.0, 1.0], dtype=torch.float64))  # H = 2 X^T X / 2
        >>> y = torch.zeros(2, 1, dtype=torch.float64)
        >>> product, count = hessian_vector_product(model, torch.nn.functional.mse_loss, (x, y))
        >>> count, product(torch.ones(2, dtype=torch.float64)).tolist()  # diag(4, 1) (1, 1)
        (2, [4.0, 1.0])
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameters that require grad")
    batches = _batches(batch)
    sizes = [len(x) for x, _ in batches]
    total = float(sum(sizes))
    gradients = []
    with torch.enable_grad():
        for (x, y), size in zip(batches, sizes):
            loss = loss_fn(model(x), y)
            if not torch.is_tensor(loss) or loss.numel() != 1:
                raise ValueError("loss_fn(model(x), y) must return a scalar tensor")
            if not bool(torch.isfinite(loss.detach()).all()):
                value = float(loss.detach())
                raise ValueError(
                    f"the loss is not finite: loss_fn(model(x), y) = {value:g} on batch "
                    f"number {len(gradients)}, so its Hessian is undefined"
                )
            if not loss.requires_grad:  # no parameter requiring grad reaches it: H = 0
                gradients.append([])
                continue
            grads = torch.autograd.grad(
                loss * (size / total), params, create_graph=True, allow_unused=True
            )
            # only the gradient entries that depend on the parameters have a Hessian part
            gradients.append(
                [(g, i) for i, g in enumerate(grads) if g is not None and g.requires_grad]
            )
    numel = sum(p.numel() for p in params)

    def product(vector: torch.Tensor) -> torch.Tensor:
        pieces = []
        offset = 0
        for p in params:
            pieces.append(vector[offset : offset + p.numel()].view_as(p).to(p.dtype))
            offset += p.numel()
        result = torch.zeros(numel, dtype=torch.float64, device=vector.device)
        with torch.enable_grad():
            for pairs in gradients:
                if not pairs:  # the gradient is constant: this batch's Hessian is 0
                    continue
                hv = torch.autograd.grad(
                    [g for g, _ in pairs],
                    params,
                    grad_outputs=[pieces[i] for _, i in pairs],
                    retain_graph=True,
                    allow_unused=True,
                )
                result += torch.cat(
                    [
                        (h if h is not None else torch.zeros_like(p)).reshape(-1).to(torch.float64)
                        for h, p in zip(hv, params)
                    ]
                )
        return result

    return product, numel


def smoothness(
    model: torch.nn.Module,
    loss_fn: LossFn,
    batch: Any,
    *,
    method: str = "lanczos",
    which: str = "LA",
    tol: float = 1e-6,
    max_hvps: int = 500,
    seed: int = 0,
) -> SmoothnessEstimate:
    """Top eigenvalue of the Hessian of ``loss_fn(model(x), y)`` at the current parameters.

    Parameters
    ----------
    model: any ``nn.Module``; all parameters with ``requires_grad`` are included (those the
        loss does not use have zero rows and columns in the Hessian). Its mode is
        left as it is: in train mode BatchNorm uses batch statistics and dropout draws its
        masks (once, for every Hessian-vector product: the Hessian of one fixed sub-network);
        use ``model.eval()`` for the Hessian of the deterministic model. Either way the model
        and the caller's random state come back unchanged: buffers (BatchNorm's running
        statistics and batch counter) are restored, and the masks are drawn from private
        generator states seeded by ``seed`` (``torch.random.fork_rng`` saves and restores the
        CPU generator and, for a model on an accelerator, that device's generator, and only
        those two are seeded), so no global generator is advanced or reseeded and the result
        is a deterministic function of ``seed``.
    loss_fn: called as ``loss_fn(model(x), y)``, returning a scalar.
    batch: an ``(x, y)`` pair or an iterable of them (see ``hessian_vector_product``), each
        with at least one sample (an empty one raises ValueError naming it), on which the loss
        is finite (else ValueError).
    method: ``"lanczos"`` (scipy ``eigsh``) or ``"power"`` (power iteration).
    which: for Lanczos, ``"LA"`` (largest algebraic, default) or ``"LM"`` (largest magnitude);
        power iteration always finds the largest magnitude (+λ when +λ and -λ share it). When
        the largest magnitude is negative, a second solve finds the largest algebraic
        eigenvalue for ``largest_eigenvalue`` and the steps (see the module docstring).
    tol: relative tolerance on the eigen-residual, ||H v - λ v|| <= tol |λ| for the unit v
        returned (eigsh's ``tol``; the same rule for power iteration); a positive number (0 is
        refused: eigsh would read it as machine precision, power iteration as an exact zero).
        The products are computed in the parameters' dtype, whose rounding the residual cannot
        go below: ``converged`` is False whenever ``tol`` is below the floor 8 ε of the least
        precise trainable parameter's dtype (ε = ``torch.finfo(dtype).eps``: bfloat16 0.0625,
        float16 0.0078, float32 9.5e-7, float64 1.8e-15); the estimate is still returned.
    max_hvps: cap on Hessian-vector products, exact for both methods and both solves together:
        a solve that reaches it stops there and returns an estimate, converged only if that
        estimate meets ``tol``: power iteration its last Ritz pair; Lanczos the best Ritz pair
        of a record kept beside ARPACK (which exposes none when stopped early): the vectors it
        multiplied and their products, thick-restarted to at most 1.5 ncv pairs, ncv =
        min(#params, 20), so 3 ncv vectors of the parameters' length beside ARPACK's ncv + 4.
        That pair is a Rayleigh quotient (for ``"LA"`` at most λ_max) but may be less
        accurate than ARPACK's own last one. ``hvps`` in the result is the exact count.
    seed: seeds the start vector and, in train mode, the dropout masks; an integer from 0 to
        2**64 - 1 (what torch's generators take).

    The model's parameters, buffers and ``.grad`` and the global random state are left
    untouched. A loss whose Hessian is zero (linear, or piecewise linear such as l1 or the
    hinge away from its kinks, or independent of every parameter that requires grad) gives
    eigenvalue 0 and ``safe_step`` = ``edge_step`` = inf.

    >>> model = torch.nn.Linear(3, 1, bias=False).double()
    >>> x, y = torch.eye(3, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64)
    >>> round(smoothness(model, torch.nn.functional.mse_loss, (x, y)).eigenvalue, 6)  # 2/3 I
    0.666667
    """
    if method not in ("lanczos", "power"):
        raise ValueError(f"method must be 'lanczos' or 'power', got method={method!r}")
    if which not in ("LA", "LM"):
        raise ValueError(f"which must be 'LA' or 'LM', got which={which!r}")
    tol = _finite_float("tol", tol)
    if not tol > 0:
        raise ValueError(
            f"tol must be a positive finite number (the relative eigen-residual), got tol={tol!r}"
        )
    max_hvps = _integer("max_hvps", max_hvps, 1, "a positive integer")
    seed = _check_seed(seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    device = trainable[0].device if trainable else torch.device("cpu")
    saved_buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    try:
        eigenvalue, eigenvector, converged, count, largest = _top_eigenpair(
            model, loss_fn, batch, method, which, tol, max_hvps, seed, device
        )
    finally:  # after the products: the graph may hold the buffers (version counters)
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(saved_buffers[name])

    if math.isnan(largest):
        safe = math.nan
    else:
        safe = 1.0 / largest if largest > 0 else math.inf
    return SmoothnessEstimate(
        eigenvalue=eigenvalue,
        safe_step=safe,
        edge_step=2 * safe,
        hvps=count,
        method=method,
        converged=converged and tol >= _precision_floor(trainable),
        eigenvector=eigenvector,
        largest_eigenvalue=largest,
    )


_FLOOR_EPSILONS = 8  # the precision floor on tol, in machine epsilons of the parameters' dtype


def _precision_floor(params: list[torch.Tensor]) -> float:
    """8 ε of the least precise floating-point dtype among ``params`` (0 without one): a
    relative eigen-residual below it is within the rounding of the Hessian-vector products
    themselves (about ε relative, observed 0.3-0.9 ε on small networks), so no solver can
    certify it."""
    epsilons = [torch.finfo(p.dtype).eps for p in params if p.is_floating_point()]
    return _FLOOR_EPSILONS * max(epsilons) if epsilons else 0.0


@contextlib.contextmanager
def _private_rng(device: torch.device, seed: int) -> Iterator[None]:
    """Fork the CPU generator and, for a model on an accelerator, the generator of its device,
    and seed exactly those two with ``seed`` (``torch.manual_seed`` would also reseed every
    other backend's generators, which ``fork_rng`` does not restore)."""
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield
        return
    backend = torch.get_device_module(device.type)
    with torch.random.fork_rng(devices=[device], device_type=device.type):
        torch.default_generator.manual_seed(seed)
        if device.index is not None and hasattr(backend, "device"):
            with backend.device(device):  # manual_seed seeds the *current* device
                backend.manual_seed(seed)
        else:
            backend.manual_seed(seed)
        yield


class _BudgetSpent(Exception):
    """Raised by the counting matvec once ``max_hvps`` products have been used."""


def _top_eigenpair(
    model: torch.nn.Module,
    loss_fn: LossFn,
    batch: Any,
    method: str,
    which: str,
    tol: float,
    max_hvps: int,
    seed: int,
    device: torch.device,
) -> tuple[float, torch.Tensor, bool, int, float]:
    """The solver part of ``smoothness``: (eigenvalue, eigenvector, converged, HVP count,
    largest algebraic eigenvalue)."""
    with _private_rng(device, seed):
        product, numel = hessian_vector_product(model, loss_fn, batch)
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(numel, generator=generator, dtype=torch.float64).numpy()
    count = 0

    def matvec(vector: np.ndarray) -> np.ndarray:
        nonlocal count
        if count >= max_hvps:
            raise _BudgetSpent
        count += 1
        v = torch.as_tensor(np.asarray(vector, dtype=np.float64).reshape(-1), device=device)
        image = product(v).cpu().numpy()
        if not np.isfinite(image).all():
            raise ValueError(
                "a Hessian-vector product is not finite (the loss's second derivatives "
                "overflow or are undefined at these parameters)"
            )
        return image

    if method == "lanczos":
        eigenvalue, eigenvector, converged, largest = _lanczos(matvec, numel, start, which, tol)
        if which == "LM" and eigenvalue < 0 and largest is None:  # it is λ_min: solve for λ_max
            largest, _, converged_largest, _ = _lanczos(matvec, numel, start, "LA", tol)
            converged = converged and converged_largest
    else:
        eigenvalue, eigenvector, converged = _power_iteration(matvec, start, tol, max_hvps)
        largest = eigenvalue
        if eigenvalue < 0:  # it is λ_min: H + |λ_min| I >= 0 has λ_max + |λ_min| on top
            shift = -eigenvalue

            def shifted(vector: np.ndarray) -> np.ndarray:
                return matvec(vector) + shift * vector

            top, _, converged_largest = _power_iteration(
                shifted, start, tol, max_hvps - count, shift=shift
            )
            largest = top - shift
            converged = converged and converged_largest
    if largest is None:
        largest = eigenvalue
    return eigenvalue, torch.as_tensor(eigenvector), converged, count, float(largest)


def _lanczos(
    matvec: Callable[[np.ndarray], np.ndarray],
    numel: int,
    start: np.ndarray,
    which: str,
    tol: float,
) -> tuple[float, np.ndarray, bool, float | None]:
    """(eigenvalue, unit eigenvector, converged, largest algebraic eigenvalue when known else
    None) by ``eigsh`` until ``matvec`` raises ``_BudgetSpent``; then (or if ARPACK stops on its
    own iteration limit) the best Ritz pair (θ, y) of the products seen (``_RitzTracker``),
    converged when ||H y - θ y|| <= tol |θ| (nan without any product). A model of 1 or 2
    parameters (eigsh needs k < n) is solved densely from its Hessian's columns."""
    ncv = min(numel, 20)
    tracker = _RitzTracker(which, keep=max(ncv // 2, 1), size=ncv + ncv // 2)

    def recorded(vector: np.ndarray) -> np.ndarray:
        vector = np.asarray(vector, dtype=np.float64).reshape(-1)
        image = matvec(vector)
        tracker.add(vector, image)
        return image

    try:
        if numel <= 2:
            hessian = np.column_stack([recorded(column) for column in np.eye(numel)])
            hessian = (hessian + hessian.T) / 2
            values, vectors = np.linalg.eigh(hessian)
            index = int(np.argmax(values)) if which == "LA" else int(np.argmax(np.abs(values)))
            return float(values[index]), vectors[:, index], True, float(values[-1])
        operator = scipy.sparse.linalg.LinearOperator(
            (numel, numel), matvec=recorded, dtype=np.float64
        )
        values, vectors = scipy.sparse.linalg.eigsh(
            operator,
            k=1,
            which=which,
            v0=start,
            tol=tol,
            ncv=ncv,
            maxiter=2**31 - 1,  # max_hvps stops it: every restart takes at least one product
        )
        value = float(values[0])
        return value, vectors[:, 0], True, value if which == "LA" or value > 0 else None
    except (_BudgetSpent, scipy.sparse.linalg.ArpackNoConvergence):
        if tracker.products == 0:
            return math.nan, start / np.linalg.norm(start), False, None
        value, vector, residual = tracker.best()
        known = value if which == "LA" or value > 0 else None
        return value, vector, residual <= tol * abs(value), known
    except scipy.sparse.linalg.ArpackError:
        # ARPACK fails when H v = 0 for its start vector v; a Gaussian v is almost surely
        # outside the null space of a nonzero H, so H = 0 (a piecewise-linear loss)
        if tracker.products == 0:
            recorded(start)
        if tracker.nonzero:
            raise
        return 0.0, start / np.linalg.norm(start), True, 0.0


class _RitzTracker:
    """The best Ritz pair of the vectors ARPACK multiplies, kept without ARPACK's internals
    (which scipy does not expose when it stops early) and without extra products: the pairs
    (v, H v) are collected as rows; when ``size`` are held they are replaced by the ``keep``
    best Ritz pairs (y, H y) of their span (largest θ for ``"LA"``, largest |θ| for ``"LM"``),
    a thick restart that reads the rows twice every ``size - keep`` products. Memory: 2
    ``size`` vectors of the parameters' length. Its Ritz values are Rayleigh quotients of H, so
    for ``"LA"`` its best is at most λ_max; its residual is computed from the pair."""

    def __init__(self, which: str, keep: int, size: int) -> None:
        self.which, self.keep, self.size = which, keep, size
        self.rows = np.zeros((2, 0, 0))  # [0, :held] the vectors, [1, :held] their images
        self.held = 0
        self.products = 0
        self.nonzero = False

    def add(self, vector: np.ndarray, image: np.ndarray) -> None:
        if self.products == 0:
            self.rows = np.empty((2, self.size, len(vector)))
        self.products += 1
        self.nonzero = self.nonzero or bool(np.any(image))
        self.rows[0, self.held], self.rows[1, self.held] = vector, image
        self.held += 1
        if self.held == self.size:
            vectors, images = self._ritz(self.keep)
            self.rows[0, : len(vectors)], self.rows[1, : len(vectors)] = vectors, images
            self.held = len(vectors)

    def _ritz(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The (at most) ``count`` best Ritz vectors (rows, unit, best first) and their images.
        With V the held vectors as columns, the span's orthonormal basis is V Z S^-1 from the
        Gram matrix V^T V = Z S² Z^T (directions with S² below 1e-12 of its largest dropped);
        the projected matrix is S^-1 Z^T (V^T H V) Z S^-1."""
        vectors, images = self.rows[0, : self.held], self.rows[1, : self.held]
        gram_values, gram_vectors = np.linalg.eigh(vectors @ vectors.T)
        keep = gram_values > gram_values[-1] * 1e-12
        to_basis = gram_vectors[:, keep] / np.sqrt(gram_values[keep])
        projected = to_basis.T @ (vectors @ images.T) @ to_basis
        thetas, coefficients = np.linalg.eigh((projected + projected.T) / 2)
        if self.which == "LA":
            order = np.argsort(-thetas, kind="stable")
        else:  # largest magnitude, the positive one first on a tie
            order = np.lexsort((-thetas, -np.abs(thetas)))
        combination = (to_basis @ coefficients[:, order[:count]]).T
        ritz, ritz_images = combination @ vectors, combination @ images
        norms = np.linalg.norm(ritz, axis=1, keepdims=True)
        return ritz / norms, ritz_images / norms

    def best(self) -> tuple[float, np.ndarray, float]:
        """The best Ritz pair (θ, unit y), θ = <y, H y>, and its residual ||H y - θ y||."""
        ritz, image = (rows[0] for rows in self._ritz(1))
        theta = float(ritz @ image)
        return theta, ritz, float(np.linalg.norm(image - theta * ritz))


def _power_iteration(
    matvec: Callable[[np.ndarray], np.ndarray],
    start: np.ndarray,
    tol: float,
    max_hvps: int,
    shift: float = 0.0,
) -> tuple[float, np.ndarray, bool]:
    """Power iteration on H² with a Rayleigh-Ritz step on span{v, H v}; returns (eigenvalue,
    unit eigenvector, converged).

    With ``shift`` = s the operator ``matvec`` applies is H + s I (for λ_max when λ_min
    dominates) and its residual is H's: the stopping rule below reads ``tol`` |θ - s| for
    ``tol`` |θ|, so the eigenvalue θ - s of H meets the same relative rule.

    Each round takes the unit vector v and w = H v (one HVP), the Rayleigh quotient ρ = <v, w>
    and the residual r = w - ρ v. If ||r|| <= tol |ρ| it stops with (ρ, v). Else it takes
    q = r / ||r|| (orthogonal to v) and u = H q (a second HVP), solves the 2 x 2 projected
    problem T = [[ρ, <q, w>], [<q, w>, <q, u>]] (two Lanczos steps from v), and stops when the
    Ritz pair (θ, y) of largest |θ| has ||H y - θ y|| <= tol |θ| (H y = s_0 w + s_1 u, no
    further HVP). Otherwise v <- H² v / ||H² v||, with H² v = H (ρ v + ||r|| q) = ρ w + ||r|| u.

    Why H²: plain power iteration needs a strictly dominant eigenvalue (Golub & Van Loan,
    "Matrix Computations", section 7.3.1). When +λ and -λ share the largest magnitude (a saddle
    of a product-structured model), v never settles and its Rayleigh quotient settles at a
    value between them that is not an eigenvalue. H² has the single dominant eigenvalue λ², so
    v converges into the span of the two eigenvectors, and span{v, H v} is that span: the Ritz
    values there are +λ and -λ. Between two Ritz values of the same magnitude up to
    max(tol, 1e-12) relative, the positive one is returned (the one that limits gradient
    descent's step). Convergence is declared on the eigen-residual only (ARPACK's rule), so a
    converged θ is within tol |θ| of an eigenvalue of H (H symmetric); as for any power method
    it is the one of largest magnitude unless the start vector is (nearly) orthogonal to its
    eigenvectors. Without convergence within ``max_hvps`` products the last estimate is
    returned with converged=False."""
    vector = start / np.linalg.norm(start)
    estimate, eigenvector = math.nan, vector
    tie = max(tol, 1e-12)
    used = 0
    while used < max_hvps:
        image = matvec(vector)
        used += 1
        if not np.any(image):
            return 0.0, vector, True
        rho = float(vector @ image)
        residual = image - rho * vector
        beta = float(np.linalg.norm(residual))
        estimate, eigenvector = rho, vector
        if beta <= tol * abs(rho - shift):
            return rho, vector, True
        if used == max_hvps:
            break
        other = residual / beta
        other = other - (other @ vector) * vector  # re-orthogonalised against rounding
        other = other / np.linalg.norm(other)
        other_image = matvec(other)
        used += 1
        coupling = float(other @ image)
        projected = np.array([[rho, coupling], [coupling, float(other @ other_image)]])
        thetas, coefficients = np.linalg.eigh(projected)  # ascending: thetas[1] >= thetas[0]
        pick = 0 if abs(thetas[0]) > abs(thetas[1]) * (1 + tie) else 1
        ritz = coefficients[0, pick] * vector + coefficients[1, pick] * other
        ritz_image = coefficients[0, pick] * image + coefficients[1, pick] * other_image
        norm = float(np.linalg.norm(ritz))
        estimate, eigenvector = float(thetas[pick]), ritz / norm
        residual_norm = float(np.linalg.norm(ritz_image - estimate * ritz)) / norm
        if residual_norm <= tol * abs(estimate - shift):
            return estimate, eigenvector, True
        square = rho * image + beta * other_image  # H² v = H (rho v + beta q)
        length = float(np.linalg.norm(square))
        if length == 0.0:
            break
        vector = square / length
    return estimate, eigenvector, False
