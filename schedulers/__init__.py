"""Learning-rate schedules as closed-form, composable, serialisable functions of the step.

Every schedule is a :class:`Schedule`: ``s(t)`` for a step returns a float, ``s(array)``
evaluates many steps at once (bit for bit the same values), ``s.to_dict()`` / :func:`from_dict`
round-trip through plain dicts, and :func:`attach` drives any torch optimizer's hyperparameters
with them. Step ``t`` counts updates already made: ``s(0)`` is the value of the first update.
"""

from schedulers.annealing import cosine_cycles, tanh_decay
from schedulers.base import Schedule, from_dict, registered_names
from schedulers.compose import clamp, from_function, join, product, scale, shift, sum_of
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
    rex,
)
from schedulers.modern import inverse_sqrt, wsd
from schedulers.noise import noisy
from schedulers.plateau import reduce_on_plateau
from schedulers.steps import constant, factor, multistep, piecewise_constant, step_lr
from schedulers.warmup import (
    constant_warmup,
    exponential_warmup,
    linear_warmup,
    radam_warmup,
    untuned_warmup,
)

# the driver is a torch LRScheduler: imported on first use, so schedules alone do not load torch
_DRIVER_NAMES = ("PlateauScheduleDriver", "ScheduleDriver", "attach")


def __getattr__(name: str):
    if name in _DRIVER_NAMES:
        from schedulers import driver

        return getattr(driver, name)
    raise AttributeError(f"module 'schedulers' has no attribute {name!r}")


__all__ = [
    "PlateauScheduleDriver",
    "Schedule",
    "ScheduleDriver",
    "attach",
    "clamp",
    "constant",
    "constant_warmup",
    "cosine_annealing",
    "cosine_annealing_warm_restarts",
    "cosine_cycles",
    "cosine_decay",
    "cosine_decay_restarts",
    "cyclic",
    "cyclic_momentum",
    "exponential_decay",
    "exponential_warmup",
    "factor",
    "from_dict",
    "from_function",
    "inverse_sqrt",
    "inverse_time_decay",
    "join",
    "linear",
    "linear_cosine_decay",
    "linear_warmup",
    "multistep",
    "natural_exp_decay",
    "noisy",
    "noisy_linear_cosine_decay",
    "one_cycle",
    "one_cycle_momentum",
    "piecewise_constant",
    "polynomial_decay",
    "power_decay",
    "product",
    "radam_warmup",
    "reduce_on_plateau",
    "registered_names",
    "rex",
    "scale",
    "shift",
    "step_lr",
    "sum_of",
    "tanh_decay",
    "untuned_warmup",
    "wsd",
]
