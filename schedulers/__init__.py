"""Learning-rate schedules as closed-form, composable, serialisable functions of the step.

Every schedule is a :class:`Schedule`: ``s(t)`` for an int step returns a float, ``s(array)``
evaluates many steps at once, ``s.to_dict()`` / :func:`from_dict` round-trip through plain
dicts, and :func:`attach` drives any torch optimizer's hyperparameters with them. Step ``t``
counts updates already made: ``s(0)`` is the value of the first update.
"""

from schedulers.base import Schedule, from_dict, registered_names
from schedulers.compose import clamp, join, product, scale
from schedulers.cosine import (
    cosine_annealing,
    cosine_annealing_warm_restarts,
    cosine_decay,
    cosine_decay_restarts,
    linear_cosine_decay,
    noisy_linear_cosine_decay,
)
from schedulers.cyclic import cyclic, cyclic_momentum, one_cycle, one_cycle_momentum
from schedulers.decay import (
    exponential_decay,
    inverse_time_decay,
    linear,
    natural_exp_decay,
    polynomial_decay,
    power_decay,
)
from schedulers.driver import ScheduleDriver, attach
from schedulers.plateau import reduce_on_plateau
from schedulers.steps import constant, factor, multistep, piecewise_constant, step_lr
from schedulers.warmup import constant_warmup, exponential_warmup, linear_warmup, untuned_warmup

__all__ = [
    "Schedule",
    "ScheduleDriver",
    "attach",
    "clamp",
    "constant",
    "constant_warmup",
    "cosine_annealing",
    "cosine_annealing_warm_restarts",
    "cosine_decay",
    "cosine_decay_restarts",
    "cyclic",
    "cyclic_momentum",
    "exponential_decay",
    "exponential_warmup",
    "factor",
    "from_dict",
    "inverse_time_decay",
    "join",
    "linear",
    "linear_cosine_decay",
    "linear_warmup",
    "multistep",
    "natural_exp_decay",
    "noisy_linear_cosine_decay",
    "one_cycle",
    "one_cycle_momentum",
    "piecewise_constant",
    "polynomial_decay",
    "power_decay",
    "product",
    "reduce_on_plateau",
    "registered_names",
    "scale",
    "step_lr",
    "untuned_warmup",
]
