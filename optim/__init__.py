"""Hand-written optimizers: drop-in torch.optim.Optimizer subclasses with fused updates.

Each algorithm's rule is written once over lists of tensors and executed over the parameters' own
storage (``impl="foreach"``, the default: torch.optim's semantics, blocked and packed for speed),
one tensor at a time (``"single"``), or over flat buffers that hold the parameters themselves
(``"flat"``; ``compile=True`` fuses it into one kernel). See ``optim._base``.

Learning-rate-free and adaptive step sizes, each equal to its reference package: ``Prodigy``,
``DAdaptSGD``/``DAdaptAdam``/``DAdaptAdaGrad``, ``DoG``/``LDoG``, ``SGDScheduleFree``/
``AdamWScheduleFree``, and the loss-based ``SPS`` and ``SLS`` (``optim._global``).
"""

from optim._base import FusedOptimizer, RuleOptimizer, UnsupportedOptionError
from optim.adadelta import Adadelta, adadelta_update
from optim.adagrad import Adagrad, adagrad_update
from optim.adam import Adam, AdamW, adam_update
from optim.dadapt import DAdaptAdaGrad, DAdaptAdam, DAdaptSGD
from optim.dog import DoG, LDoG
from optim.polyak import SLS, SPS
from optim.prodigy import Prodigy
from optim.rmsprop import RMSprop, rmsprop_update
from optim.schedulefree import AdamWScheduleFree, SGDScheduleFree
from optim.sgd import SGD, sgd_update

__all__ = [
    "SGD",
    "SLS",
    "SPS",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "AdamWScheduleFree",
    "DAdaptAdaGrad",
    "DAdaptAdam",
    "DAdaptSGD",
    "DoG",
    "FusedOptimizer",
    "LDoG",
    "Prodigy",
    "RMSprop",
    "RuleOptimizer",
    "SGDScheduleFree",
    "UnsupportedOptionError",
    "adadelta_update",
    "adagrad_update",
    "adam_update",
    "rmsprop_update",
    "sgd_update",
]
