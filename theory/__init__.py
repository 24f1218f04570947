"""Convex problems with known answers, step-size bounds and convergence certificates.

* ``theory.problems``: ``Quadratic``, ``LeastSquares``, ``LogisticRegression``, ``Rosenbrock``,
  ``ReddiCounterexample``, ``WilsonSeparable``, each with exact ``L``, ``mu``, ``x_star``,
  ``f_star`` and a seeded ``x0``.
* ``theory.bounds``: the textbook step-size limits (1/L, 2/L, ...) and convergence bounds as
  functions of the step k, and as ``Bound`` objects tied to a problem.
* ``theory.certify``: run any torch optimizer on a problem and certify a bound at every step.
* ``theory.smoothness``: the top Hessian eigenvalue of any model's loss by Hessian-vector products.
* ``theory.testing``: pytest assertions (``assert_converges``, ``assert_bound_holds``,
  ``assert_rate``).
"""

from theory.bounds import (
    Bound,
    StepSizeLimits,
    gd_bound,
    gd_convex_gap,
    gd_divergence_bound,
    gd_divergence_distance,
    gd_optimal_step_bound,
    gd_optimal_step_distance,
    gd_strongly_convex_bound,
    gd_strongly_convex_distance_sq,
    heavy_ball_bound,
    heavy_ball_distance,
    heavy_ball_parameters,
    heavy_ball_rate,
    nesterov_bound,
    nesterov_convex_gap,
    nesterov_momentum,
    nesterov_strongly_convex_bound,
    nesterov_strongly_convex_gap,
    optimal_step_rate,
    safe_step,
    stability_edge,
    step_size_limits,
)
from theory.certify import (
    Certificate,
    Trajectory,
    certify,
    fit_order,
    fit_rate,
    numerical_floor,
    run,
    sgd_nesterov_gradient_point,
)
from theory.problems import (
    LeastSquares,
    LogisticRegression,
    Problem,
    Quadratic,
    ReddiCounterexample,
    Regret,
    Rosenbrock,
    WilsonSeparable,
)
from theory.smoothness import SmoothnessEstimate, hessian_vector_product, smoothness
from theory.testing import assert_bound_holds, assert_converges, assert_rate

__all__ = [
    "Bound",
    "Certificate",
    "LeastSquares",
    "LogisticRegression",
    "Problem",
    "Quadratic",
    "ReddiCounterexample",
    "Regret",
    "Rosenbrock",
    "SmoothnessEstimate",
    "StepSizeLimits",
    "Trajectory",
    "WilsonSeparable",
    "assert_bound_holds",
    "assert_converges",
    "assert_rate",
    "certify",
    "fit_order",
    "fit_rate",
    "gd_bound",
    "gd_convex_gap",
    "gd_divergence_bound",
    "gd_divergence_distance",
    "gd_optimal_step_bound",
    "gd_optimal_step_distance",
    "gd_strongly_convex_bound",
    "gd_strongly_convex_distance_sq",
    "heavy_ball_bound",
    "heavy_ball_distance",
    "heavy_ball_parameters",
    "heavy_ball_rate",
    "hessian_vector_product",
    "nesterov_bound",
    "nesterov_convex_gap",
    "nesterov_momentum",
    "nesterov_strongly_convex_bound",
    "nesterov_strongly_convex_gap",
    "numerical_floor",
    "optimal_step_rate",
    "run",
    "safe_step",
    "sgd_nesterov_gradient_point",
    "smoothness",
    "stability_edge",
    "step_size_limits",
]
