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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
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
    ``which="LA"``, largest magnitude otherwise); ``safe_step`` = 1/L and ``edge_step`` = 2/L
    (inf when L <= 0: no curvature limit); ``hvps``: the number of Hessian-vector products used
    (each is one double-backward pass per batch); ``method``; ``converged``: whether the solver
    met its tolerance; ``eigenvector``: the unit eigenvector estimate (flattened over the
    parameters, in ``model.parameters()`` order).
    """

    eigenvalue: float
    safe_step: float
    edge_step: float
    hvps: int
    method: str
    converged: bool
    eigenvector: torch.Tensor

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
    Parameters the loss does not depend on (an unused head), and losses whose gradient does
    not depend on the parameters (linear), contribute exact zeros to H v. A non-finite loss
    raises ValueError."""
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
        statistics and batch counter) are restored, and the masks are drawn from a private
        generator state seeded by ``seed`` (``torch.random.fork_rng``), so the global RNG is
        not advanced and the result is a deterministic function of ``seed``.
    loss_fn: called as ``loss_fn(model(x), y)``, returning a scalar.
    batch: an ``(x, y)`` pair or an iterable of them (see ``hessian_vector_product``), each
        with at least one sample (an empty one raises ValueError naming it), on which the loss
        is finite (else ValueError).
    method: ``"lanczos"`` (scipy ``eigsh``) or ``"power"`` (power iteration).
    which: for Lanczos, ``"LA"`` (largest algebraic, default) or ``"LM"`` (largest magnitude);
        power iteration always finds the largest magnitude (+λ when +λ and -λ share it).
    tol: relative tolerance on the eigen-residual, ||H v - λ v|| <= tol |λ| for the unit v
        returned (eigsh's ``tol``; the same rule for power iteration).
    max_hvps: cap on Hessian-vector products: exact for power iteration; for Lanczos ARPACK's
        restarts are limited to max_hvps // ncv (ncv = min(#params, 20) Lanczos vectors), so the
        count may exceed it by up to ncv. ``hvps`` in the result is the exact count.
    seed: seeds the start vector and, in train mode, the dropout masks.

    The model's parameters, buffers and ``.grad`` and the global random state are left
    untouched. A loss whose Hessian is zero (linear, or piecewise linear such as l1 or the
    hinge away from its kinks) gives eigenvalue 0 and ``safe_step`` = ``edge_step`` = inf.

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
    if tol < 0:
        raise ValueError(f"tol must be a non-negative finite number, got tol={tol!r}")
    max_hvps = _integer("max_hvps", max_hvps, 1, "a positive integer")
    seed = _check_seed(seed)
    device = next((p for p in model.parameters() if p.requires_grad), None)
    device = device.device if device is not None else torch.device("cpu")
    saved_buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    try:
        eigenvalue, eigenvector, converged, count = _top_eigenpair(
            model, loss_fn, batch, method, which, tol, max_hvps, seed, device
        )
    finally:  # after the products: the graph may hold the buffers (version counters)
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(saved_buffers[name])

    safe = 1.0 / eigenvalue if eigenvalue > 0 else math.inf
    return SmoothnessEstimate(
        eigenvalue=eigenvalue,
        safe_step=safe,
        edge_step=2 * safe,
        hvps=count,
        method=method,
        converged=converged,
        eigenvector=eigenvector,
    )


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
) -> tuple[float, torch.Tensor, bool, int]:
    """The solver part of ``smoothness``: (eigenvalue, eigenvector, converged, HVP count)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if device.type == "cuda":
            torch.cuda.manual_seed(seed)
        product, numel = hessian_vector_product(model, loss_fn, batch)
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(numel, generator=generator, dtype=torch.float64)
    count = 0

    def matvec(vector: np.ndarray) -> np.ndarray:
        nonlocal count
        count += 1
        v = torch.as_tensor(np.asarray(vector, dtype=np.float64).reshape(-1), device=device)
        image = product(v).cpu().numpy()
        if not np.isfinite(image).all():
            raise ValueError(
                "a Hessian-vector product is not finite (the loss's second derivatives "
                "overflow or are undefined at these parameters)"
            )
        return image

    if method == "lanczos" and numel > 2:
        operator = scipy.sparse.linalg.LinearOperator(
            (numel, numel), matvec=matvec, dtype=np.float64
        )
        ncv = min(numel, 20)
        try:
            values, vectors = scipy.sparse.linalg.eigsh(
                operator,
                k=1,
                which=which,
                v0=start.numpy(),
                tol=tol,
                ncv=ncv,
                maxiter=max(1, max_hvps // ncv),
            )
            converged = True
        except scipy.sparse.linalg.ArpackNoConvergence as err:
            if len(err.eigenvalues) == 0:
                raise RuntimeError(
                    f"Lanczos did not converge within {count} "
                    f"Hessian-vector products; raise max_hvps or tol"
                ) from None
            values, vectors, converged = err.eigenvalues, err.eigenvectors, False
        except scipy.sparse.linalg.ArpackError:
            # ARPACK fails when H v = 0 for its start vector v; a Gaussian v is almost surely
            # outside the null space of a nonzero H, so H = 0 (a piecewise-linear loss)
            if np.any(matvec(start.numpy())):
                raise
            values, vectors, converged = np.zeros(1), start.numpy()[:, None], True
            vectors = vectors / np.linalg.norm(vectors)
        eigenvalue = float(values[0])
        eigenvector = torch.as_tensor(vectors[:, 0], dtype=torch.float64)
    elif method == "lanczos":  # eigsh needs k < n; a 1- or 2-parameter model is solved densely
        hessian = np.column_stack([matvec(column) for column in np.eye(numel)])
        hessian = (hessian + hessian.T) / 2
        values, vectors = np.linalg.eigh(hessian)
        index = int(np.argmax(values)) if which == "LA" else int(np.argmax(np.abs(values)))
        eigenvalue = float(values[index])
        eigenvector = torch.as_tensor(vectors[:, index], dtype=torch.float64)
        converged = True
    else:
        eigenvalue, eigenvector, converged = _power_iteration(matvec, start, tol, max_hvps)

    return eigenvalue, eigenvector, converged, count


def _power_iteration(
    matvec: Callable[[np.ndarray], np.ndarray], start: torch.Tensor, tol: float, max_hvps: int
) -> tuple[float, torch.Tensor, bool]:
    """Power iteration on H² with a Rayleigh-Ritz step on span{v, H v}; returns (eigenvalue,
    unit eigenvector, converged).

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
    vector = start.numpy() / np.linalg.norm(start.numpy())
    estimate, eigenvector = math.nan, vector
    tie = max(tol, 1e-12)
    used = 0
    while used < max_hvps:
        image = matvec(vector)
        used += 1
        if not np.any(image):
            return 0.0, torch.as_tensor(vector), True
        rho = float(vector @ image)
        residual = image - rho * vector
        beta = float(np.linalg.norm(residual))
        estimate, eigenvector = rho, vector
        if beta <= tol * abs(rho):
            return rho, torch.as_tensor(vector), True
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
        if float(np.linalg.norm(ritz_image - estimate * ritz)) / norm <= tol * abs(estimate):
            return estimate, torch.as_tensor(eigenvector), True
        square = rho * image + beta * other_image  # H² v = H (rho v + beta q)
        length = float(np.linalg.norm(square))
        if length == 0.0:
            break
        vector = square / length
    return estimate, torch.as_tensor(eigenvector), False
