"""The models of the bundled experiments, built by name from a TOML experiment.

- ``"logistic"``: multinomial logistic regression, one ``Linear`` on the flattened input (the
  "logistic regression" baseline of the MNIST-1D paper).
- ``"mlp"``: the MNIST-1D paper's residual MLP (Greydanus & Kobak, "Scaling down deep learning
  with MNIST-1D", ICML 2024, ``models.py`` of github.com/greydanus/mnist1d):
  ``h = ReLU(W1 x + b1); h = h + ReLU(W2 h + b2); out = W3 h + b3``, hidden width 100.
- ``"mnist1d-cnn"``: the MNIST-1D paper's CNN: three ``Conv1d`` layers (1->25 kernel 5,
  25->25 kernel 3, 25->25 kernel 3; each stride 2, padding 1, followed by ReLU), flattened
  (25 channels x 5 positions = 125 for 40 inputs) into ``Linear(125, 10)``.
- ``"lenet"``: the LeNet of Dive into Deep Learning's "Learning Rate Scheduling" chapter
  (``net_fn``; ReLU and max pooling instead of LeCun's sigmoid and average pooling):
  ``Conv2d(C, 6, 5, padding=2), ReLU, MaxPool2d(2, 2), Conv2d(6, 16, 5), ReLU, MaxPool2d(2, 2),
  Flatten, Linear(400, 120), ReLU, Linear(120, 84), ReLU, Linear(84, 10)``. The flatten size
  follows the input: 16 x 5 x 5 = 400 for 1 x 28 x 28, 16 x 6 x 6 = 576 for 3 x 32 x 32.
- ``"lenet1d"``: the same LeNet for 1-D examples ``(L,)`` or ``(1, L)``, each 5x5 convolution
  and 2x2 pooling replaced by its 1-D counterpart (kernel 5, pool 2): for MNIST-1D's 40 inputs,
  ``40 -> conv -> 40 -> pool -> 20 -> conv -> 16 -> pool -> 8``, so ``Linear(16 x 8, 120)``;
  27,026 parameters. The d2l-schedules comparison trains it on MNIST-1D when no Fashion-MNIST
  is given: the layer sequence and widths of d2l's network, on data of another shape.

Parameters are initialised by torch's layer defaults (as in both sources' PyTorch code) from
torch's global random number generator: seed it with ``torch.manual_seed(seed)`` right before
``build_model`` to get the same initial weights every time.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
from torch import nn

from runs.checks import check_positive_int, check_registry_name, is_positive_int, plain_int

MODELS: tuple[str, ...] = ("logistic", "mlp", "mnist1d-cnn", "lenet", "lenet1d")

# name -> factory(input_shape, num_classes, **options): the models users registered with
# :func:`register_model` (``runs.register_model``), next to the bundled ``MODELS``.
_REGISTERED: dict[str, Callable[..., nn.Module]] = {}


def model_names() -> tuple[str, ...]:
    """Every model name an experiment may use: the bundled ``MODELS``, then registered ones."""
    return (*MODELS, *_REGISTERED)


def registered_models() -> dict[str, Callable[..., nn.Module]]:
    """The user-registered factories by name (a copy)."""
    return dict(_REGISTERED)


def register_model(name: str, factory: Callable[..., nn.Module], *, replace: bool = False) -> None:
    """Make ``factory`` available to experiments as ``[model] name = "<name>"``.

    Args:
        name: the model's name: letters, digits and ``- _ . +``; not a bundled model's name.
        factory: ``factory(input_shape, num_classes, **options) -> nn.Module``, called with the
            shape of one example (a tuple, e.g. ``(20,)``), the number of classes, and the other
            keys of the experiment's ``[model]`` table as keyword arguments (an option without
            a default is one every table using the model must give). A class works too.
            Seed-dependent initial weights come from torch's global generator, which the runner
            seeds right before calling it.
        replace: allow replacing a different factory already registered under ``name``.

    Registering the same factory again under the same name does nothing.

    Raises:
        ValueError: a bad or bundled name, or another factory registered under ``name``
            (without ``replace=True``).
        TypeError: a name that is not a string; ``factory`` not callable or unable to take
            ``(input_shape, num_classes)`` positionally and its other arguments by keyword.

    >>> def linear(input_shape, num_classes, *, bias=True):
    ...     return nn.Linear(input_shape[0], num_classes, bias=bias)
    >>> register_model("doc-linear", linear)
    >>> register_model("doc-linear", linear)  # the same factory again: nothing happens
    >>> build_model("doc-linear", (3,), 2, bias=False)  # [model] name = "doc-linear", bias = false
    Linear(in_features=3, out_features=2, bias=False)
    >>> "doc-linear" in model_names()
    True
    """
    check_registry_name("register_model", name)
    if name in MODELS:
        raise ValueError(
            f"register_model: {name!r} is a bundled model ({', '.join(MODELS)}); "
            "choose another name"
        )
    if not callable(factory):
        raise TypeError(
            f"register_model({name!r}): factory must be callable as "
            f"factory(input_shape, num_classes, **options), got {factory!r}"
        )
    try:
        signature = inspect.signature(factory)
    except ValueError:  # no signature (some builtins): accept it
        signature = None
    if signature is not None:
        # options without a default are given by the [model] table: stand-ins here, and
        # build_model names any the table leaves out
        required = dict.fromkeys(_required_options(factory) or ())
        try:
            signature.bind((1,), 2, **required)
        except TypeError as err:
            raise TypeError(
                f"register_model({name!r}): factory {factory!r} cannot be called as "
                f"factory(input_shape, num_classes): {err}"
            ) from None
    known = _REGISTERED.get(name)
    if known is not None and known is not factory and not replace:
        raise ValueError(
            f"register_model: {name!r} is already registered to {known!r}; pass replace=True "
            "to replace it"
        )
    _REGISTERED[name] = factory


# (name, factory, options, input_shape, num_classes) -> (digest, legacy digest) of the model
# built for the fingerprint; emptied by :func:`forget_model_digests` at the start of every
# ``stepsize run`` / ``runs.run`` (a factory may read settings that change between two calls)
_DIGESTS: dict[tuple, tuple[str, str]] = {}

DIGEST_SEED = 0
"""The seed of the build whose initial values :func:`registered_model_digest` hashes."""
DIGEST_EXAMPLES = 2
"""The batch size of the forward pass (on zeros) that materialises a lazy module's parameters
before :func:`registered_model_digest` hashes them."""


def describe_model(model: nn.Module, *, values: bool = True) -> str:
    """A hash of what a built model is: its ``repr`` (modules and their settings), the name,
    shape, dtype and ``requires_grad`` of every parameter and buffer, and with ``values`` their
    values (their bytes, read once). A lazy module's parameter that is not materialised yet
    (``nn.LazyLinear`` before its first forward pass) is described as uninitialised, by its
    name and class. Without ``values``, two builds of one factory give the same hash whatever
    their seed and device (even on torch's ``meta`` device; the fingerprint of stepsize before
    it hashed values); a changed layer, width, depth or dtype gives another. With ``values``,
    a changed initialisation (a zeroed head, other pretrained weights) gives another too. (A
    change made only in ``forward``'s code is not seen.)"""
    import hashlib

    from torch.nn.parameter import is_lazy

    entries = [repr(model)]
    content = hashlib.sha256()
    for kind, named in (
        ("p", model.named_parameters(remove_duplicate=False)),
        ("b", model.named_buffers(remove_duplicate=False)),
    ):
        for name, tensor in named:
            if is_lazy(tensor):
                entries.append(f"{kind} {name} uninitialized {type(tensor).__name__}")
                continue
            grad = f" {tensor.requires_grad}" if kind == "p" else ""
            entries.append(f"{kind} {name} {tuple(tensor.shape)} {tensor.dtype}{grad}")
            if values:
                content.update(_tensor_bytes(tensor))
    if values:
        entries.append(f"values {content.hexdigest()}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]


def _tensor_bytes(tensor: torch.Tensor) -> bytes | memoryview:
    """The bytes of ``tensor``'s values in row-major order (copied to the CPU when elsewhere);
    a tensor whose values cannot be read (on the ``meta`` device, quantized) gives a marker."""
    try:
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        return memoryview(flat.view(torch.uint8).numpy())
    except (RuntimeError, TypeError, NotImplementedError):
        return f"<unreadable {tensor.layout} {tensor.device}>".encode()


def forget_model_digests() -> None:
    """Empties the cache of :func:`registered_model_digest`, so the next fingerprint builds the
    registered models again (called at the start of every experiment command: a factory may
    read a setting, a file or a closed-over module that changed since the last one)."""
    _DIGESTS.clear()


def registered_model_digest(
    name: object,
    input_shape: tuple[int, ...],
    num_classes: int,
    options: dict,
    *,
    legacy: bool = False,
) -> str | None:
    """:func:`describe_model` of the registered model ``name`` built for these shapes and
    options (None for a bundled model, whose code is the package's): part of a run's
    fingerprint, so an edited factory never resumes or reuses the runs of the old one. The
    model is built on the CPU after ``torch.manual_seed(DIGEST_SEED)`` (NumPy's and Python's
    global generators seeded with it too), inside ``torch.random.fork_rng`` and with NumPy's and
    Python's states put back, so no random stream of the caller changes; a model with lazy
    modules is then materialised by one eval-mode forward pass on zeros of shape
    ``(DIGEST_EXAMPLES, *input_shape)``. Its modules, shapes, dtypes and initial values are
    hashed (``legacy``: without the values, as stepsize did before; a run folder written then
    is recognised by it).

    Built once per process and arguments until :func:`forget_model_digests` (called at the
    start of every experiment command).
    """
    import json

    factory = _REGISTERED.get(name) if isinstance(name, str) else None
    if factory is None:
        return None
    key = (
        name, factory, json.dumps(options, sort_keys=True, default=repr),
        tuple(input_shape), num_classes,
    )  # fmt: skip
    if key not in _DIGESTS:
        model = _digest_build(name, tuple(input_shape), num_classes, options)
        _DIGESTS[key] = (describe_model(model), describe_model(model, values=False))
    return _DIGESTS[key][1 if legacy else 0]


def registered_model_is_reproducible(
    name: object, input_shape: tuple[int, ...], num_classes: int, options: dict
) -> bool:
    """Whether the registered model ``name`` builds the same initial values again at
    ``DIGEST_SEED`` (a second build, compared with :func:`registered_model_digest`'s): False for
    a factory drawing from randomness ``torch.manual_seed`` does not set (an unseeded
    ``np.random.default_rng()``, ``os.urandom``), whose fingerprint then changes at every
    command. True for a bundled model."""
    digest = registered_model_digest(name, input_shape, num_classes, options)
    if digest is None:
        return True
    again = _digest_build(name, tuple(input_shape), num_classes, options)  # type: ignore[arg-type]
    return describe_model(again) == digest


def _digest_build(
    name: str, input_shape: tuple[int, ...], num_classes: int, options: dict
) -> nn.Module:
    """The model :func:`registered_model_digest` describes (see there), lazy modules
    materialised when a forward pass on zeros allows it (else they stay uninitialised)."""
    import random

    import numpy as np
    from torch.nn.parameter import is_lazy

    # (NumPy's legacy global generator on purpose: the one a factory's np.random calls draw from)
    numpy_state, python_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(DIGEST_SEED)
            np.random.seed(DIGEST_SEED)  # noqa: NPY002
            random.seed(DIGEST_SEED)
            model = build_model(name, input_shape, num_classes, **options)
            tensors = [*model.parameters(), *model.buffers()]
            if any(is_lazy(t) for t in tensors):
                model.eval()
                try:
                    with torch.no_grad():
                        model(torch.zeros((DIGEST_EXAMPLES, *input_shape)))
                except Exception:  # a user's model may raise anything: described uninitialised
                    pass
    finally:
        np.random.set_state(numpy_state)  # noqa: NPY002
        random.setstate(python_state)
    return model


def _model_options(builder: Callable[..., nn.Module]) -> list[str] | None:
    """The option names ``builder`` accepts, or None when it takes any (``**options``)."""
    try:
        parameters = list(inspect.signature(builder).parameters.values())
    except ValueError:
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in parameters[2:] if p.kind in keyword]


def _required_options(builder: Callable[..., nn.Module]) -> list[str] | None:
    """The options ``builder`` takes by keyword without a default (the ``[model]`` table must
    give them), or None when its signature cannot be read."""
    try:
        parameters = list(inspect.signature(builder).parameters.values())
    except ValueError:
        return None
    keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [
        p.name for p in parameters[2:] if p.kind in keyword and p.default is inspect.Parameter.empty
    ]


def build_problem(
    name: str, input_shape: tuple[int, ...], num_classes: int, options: dict
) -> str | None:
    """What is wrong with building the model ``name`` with ``options`` for these shapes, or None
    (a check before anything trains): it is built by :func:`build_model` on the meta device (no
    memory, no random numbers drawn), which refuses unknown options naming the valid ones; a
    user's factory that needs real tensors is built on the CPU inside
    ``torch.random.fork_rng`` (the caller's random stream unchanged). A ``ValueError`` or
    ``TypeError`` is given by its message, any other exception of a factory by its type too."""
    import functools

    build = functools.partial(build_model, name, input_shape, num_classes, **options)
    try:
        with torch.random.fork_rng(devices=[]):
            try:
                with torch.device("meta"):
                    build()
            except (ValueError, TypeError):
                raise
            except Exception:  # a user's factory that needs real tensors: build it on the CPU
                build()
    except Exception as err:  # a user's factory may raise anything
        kind = "" if isinstance(err, ValueError | TypeError) else f"{type(err).__name__}: "
        return f"{kind}{err}"
    return None


def build_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, **options: object
) -> nn.Module:
    """Build the model ``name`` for examples of shape ``input_shape`` and ``num_classes`` classes.

    Args:
        name: one of ``MODELS`` or a name given to :func:`register_model`.
        input_shape: the shape of one example, without the batch axis, e.g. ``(40,)``,
            ``(1, 28, 28)``, ``(3, 32, 32)`` (``DatasetSplits.input_shape``).
        num_classes: the number of output logits.
        **options: per model: ``"mlp"``: ``hidden`` (width, default 100); ``"mnist1d-cnn"``:
            ``channels`` (default 25); ``"logistic"``, ``"lenet"`` and ``"lenet1d"`` take none.

    The models return logits of shape ``(batch, num_classes)`` for inputs of shape
    ``(batch, *input_shape)``. Initial weights come from torch's global generator (see module doc).

    Raises:
        ValueError: unknown ``name`` or option (listing the valid ones), a missing option (one a
            registered factory takes without a default), a bad option value, or an input shape
            the model cannot take.
    """
    builder = _BUILDERS.get(name) or _REGISTERED.get(name)
    if builder is None:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(model_names())}")
    if isinstance(input_shape, tuple | list):  # (NumPy integers: ints)
        input_shape = tuple(plain_int(size) for size in input_shape)
    num_classes = plain_int(num_classes)
    if (
        not isinstance(input_shape, tuple | list)
        or not input_shape
        or not all(is_positive_int(size) for size in input_shape)
    ):
        raise ValueError(
            "input_shape must be a non-empty tuple of positive integers, "
            f"got input_shape={input_shape!r}"
        )
    check_positive_int("num_classes", num_classes)
    valid = _model_options(builder)
    unknown = sorted(set(options) - set(valid)) if valid is not None else []
    if unknown:
        allowed = ", ".join(valid) if valid else "none"
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for model {name!r}; valid options: {allowed}"
        )
    missing = [option for option in _required_options(builder) or () if option not in options]
    if missing:
        raise ValueError(
            f"model {name!r}: missing option(s) {', '.join(missing)}: its factory takes them "
            "without a default; give them in the [model] table "
            f"({', '.join(f'{option} = ...' for option in missing)})"
        )
    model = builder(tuple(input_shape), num_classes, **options)
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model {name!r}: its factory returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


class LogisticRegression(nn.Module):
    """Multinomial logistic regression: ``logits = W flatten(x) + b``."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.flatten(x))


class ResidualMLP(nn.Module):
    """The MNIST-1D paper's MLP with one residual hidden layer:

    ``h = ReLU(W1 x + b1)``; ``h = h + ReLU(W2 h + b2)``; ``logits = W3 h + b3``,
    on the flattened input.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: int = 100) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear1 = nn.Linear(in_features, hidden)
        self.linear2 = nn.Linear(hidden, hidden)
        self.linear3 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.linear1(self.flatten(x)))
        h = h + torch.relu(self.linear2(h))
        return self.linear3(h)


class MNIST1DCNN(nn.Module):
    """The MNIST-1D paper's CNN: ``Conv1d(1, c, 5, stride 2, padding 1)``, then twice
    ``Conv1d(c, c, 3, stride 2, padding 1)``, each followed by ReLU; flattened into
    ``Linear(c * L3, num_classes)``, where ``L3`` is the length after the three convolutions
    (5 for 40 inputs). Takes inputs ``(batch, L)`` or ``(batch, 1, L)``.
    """

    def __init__(self, length: int, num_classes: int, channels: int = 25) -> None:
        super().__init__()
        out_length = length
        for kernel in (5, 3, 3):
            out_length = _conv_output_size(out_length, kernel, stride=2, padding=1)
        if out_length < 1:
            raise ValueError(
                f"input length {length} is too short for the MNIST-1D CNN (three stride-2 "
                "convolutions); it needs at least 3 positions"
            )
        self.conv1 = nn.Conv1d(1, channels, kernel_size=5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, kernel_size=3, stride=2, padding=1)
        self.linear = nn.Linear(channels * out_length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)  # (batch, L) -> (batch, 1, L)
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h))
        h = torch.relu(self.conv3(h))
        return self.linear(h.flatten(1))


def _lenet_layers(
    conv: type[nn.Module], pool: type[nn.Module], channels: int, positions: int, num_classes: int
) -> list[nn.Module]:
    """d2l's LeNet layers in 1-D or 2-D (``conv``, ``pool``): ``positions`` is the number of
    positions (pixels) left after the second pooling."""
    return [
        conv(channels, 6, kernel_size=5, padding=2),
        nn.ReLU(),
        pool(kernel_size=2, stride=2),
        conv(6, 16, kernel_size=5),
        nn.ReLU(),
        pool(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * positions, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    ]


class LeNet(nn.Sequential):
    """d2l's LeNet with ReLU and max pooling, as ``nn.Sequential`` (state-dict keys ``0.weight``
    ... ``11.bias``, the same as d2l's ``net_fn``), for inputs ``(batch, C, H, W)``."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        channels, height, width = input_shape
        sizes = []
        for size in (height, width):
            size = _conv_output_size(size, 5, stride=1, padding=2) // 2  # conv 5x5 pad 2, pool 2
            size = _conv_output_size(size, 5, stride=1, padding=0) // 2  # conv 5x5, pool 2
            sizes.append(size)
        if min(sizes) < 1:
            raise ValueError(
                f"input_shape {input_shape} is too small for LeNet; height and width must be "
                "at least 12"
            )
        super().__init__(
            *_lenet_layers(nn.Conv2d, nn.MaxPool2d, channels, sizes[0] * sizes[1], num_classes)
        )


class LeNet1D(nn.Sequential):
    """:class:`LeNet` with ``Conv1d`` and ``MaxPool1d`` for 1-D examples ``(batch, L)`` or
    ``(batch, 1, L)``; the same layers, widths and state-dict keys after a leading reshape."""

    def __init__(self, length: int, num_classes: int) -> None:
        size = _conv_output_size(length, 5, stride=1, padding=2) // 2
        size = _conv_output_size(size, 5, stride=1, padding=0) // 2
        if size < 1:
            raise ValueError(f"input length {length} is too small for LeNet1D; it must be >= 12")
        super().__init__(*_lenet_layers(nn.Conv1d, nn.MaxPool1d, 1, size, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(x.shape[0], 1, x.shape[-1]))


def _conv_output_size(size: int, kernel: int, *, stride: int, padding: int) -> int:
    """Output length of a convolution: ``floor((size + 2 * padding - kernel) / stride) + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def _build_logistic(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return LogisticRegression(math.prod(input_shape), num_classes)


def _build_mlp(input_shape: tuple[int, ...], num_classes: int, *, hidden: int = 100) -> nn.Module:
    check_positive_int("hidden", hidden)
    return ResidualMLP(math.prod(input_shape), num_classes, hidden=hidden)


def _build_mnist1d_cnn(
    input_shape: tuple[int, ...], num_classes: int, *, channels: int = 25
) -> nn.Module:
    check_positive_int("channels", channels)
    if len(input_shape) == 1 or (len(input_shape) == 2 and input_shape[0] == 1):
        return MNIST1DCNN(input_shape[-1], num_classes, channels=channels)
    raise ValueError(
        f"model 'mnist1d-cnn' takes 1-D examples of shape (L,) or (1, L), "
        f"got input_shape={input_shape!r}"
    )


def _build_lenet1d(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if len(input_shape) == 1 or (len(input_shape) == 2 and input_shape[0] == 1):
        return LeNet1D(input_shape[-1], num_classes)
    raise ValueError(
        "model 'lenet1d' takes 1-D examples of shape (L,) or (1, L), "
        f"got input_shape={input_shape!r}"
    )


def _build_lenet(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if len(input_shape) != 3:
        raise ValueError(
            f"model 'lenet' takes images of shape (channels, height, width), "
            f"got input_shape={input_shape!r}"
        )
    return LeNet(input_shape, num_classes)  # type: ignore[arg-type]


# name -> builder(input_shape, num_classes, *, options...); the keyword-only parameters of a
# builder are the options its model accepts.
_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "logistic": _build_logistic,
    "mlp": _build_mlp,
    "mnist1d-cnn": _build_mnist1d_cnn,
    "lenet": _build_lenet,
    "lenet1d": _build_lenet1d,
}
