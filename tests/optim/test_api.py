"""Drop-in behaviour: validation, closures, param groups, torch schedulers, GradScaler, flat."""

import functools
import math

import numpy as np
import pytest
import torch

import optim
from tests.optim.conftest import IMPLS, NAMES, loss_fn, make_params, ours, relative_error, theirs

BAD_ARGUMENTS = [
    ("SGD", {"lr": -0.1}, "lr"),
    ("SGD", {"lr": math.nan}, "lr"),
    ("SGD", {"lr": torch.tensor([0.1, 0.2])}, "lr"),
    ("SGD", {"lr": 0.1, "momentum": -0.5}, "momentum"),
    ("SGD", {"lr": 0.1, "nesterov": True}, "nesterov"),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True}, "nesterov"),
    ("SGD", {"lr": "0.1"}, "lr"),
    ("Adam", {"betas": (1.0, 0.999)}, r"betas\[0\]"),
    ("Adam", {"betas": (0.9, -0.1)}, r"betas\[1\]"),
    ("Adam", {"betas": (0.9,)}, "betas"),
    ("Adam", {"eps": -1e-8}, "eps"),
    ("AdamW", {"weight_decay": -1.0}, "weight_decay"),
    ("Adagrad", {"lr_decay": -1.0}, "lr_decay"),
    ("Adagrad", {"initial_accumulator_value": -1.0}, "initial_accumulator_value"),
    ("RMSprop", {"alpha": 1.5}, "alpha"),
    ("Adadelta", {"rho": 1.1}, "rho"),
    ("Adadelta", {"rho": -0.1}, "rho"),
    ("Adam", {"impl": "fast"}, "impl"),
    ("Adam", {"impl": "foreach", "compile": True}, "compile"),
]


@pytest.mark.parametrize(("name", "kwargs", "argument"), BAD_ARGUMENTS)
def test_bad_arguments_name_the_argument_and_value(name, kwargs, argument):
    with pytest.raises((ValueError, TypeError), match=argument) as error:
        ours(name)(make_params(torch.float32), **kwargs)
    shown = next(iter(kwargs.values())) if len(kwargs) == 1 else None
    if isinstance(shown, (int, float, str)) and not isinstance(shown, bool):
        assert repr(shown) in str(error.value) or str(shown) in str(error.value)


# Values refused as constructor arguments, given in a param group instead (every entry above
# but the execution path's, which is the optimizer's, not a group's).
GROUP_BAD = [
    # (but SGD's Nesterov combinations, which torch refuses as defaults and trains in a group)
    *((n, kwargs) for n, kwargs, _ in BAD_ARGUMENTS if not {"impl", "nesterov"} & set(kwargs)),
    ("SGD", {"lr": torch.tensor(-0.1)}),  # (a 0-dim tensor)
    ("SGD", {"lr": np.float32(-0.1)}),  # (a NumPy scalar)
    ("Adam", {"eps": -1.0}),
    ("Adam", {"betas": (1.5, 0.9)}),
    ("Adam", {"betas": (torch.tensor(0.9), 0.999)}),  # (torch: both floats or both tensors)
    ("Adam", {"lr": torch.tensor(0.01), "foreach": True}),  # (torch: not with foreach=True)
    ("RMSprop", {"alpha": -0.5}),
    ("RMSprop", {"momentum": -0.1}),
    ("Adadelta", {"rho": 2.0}),
    ("Adagrad", {"eps": -1e-10}),
    ("SGD", {"foreach": True, "fused": True}),
    ("Adam", {"foreach": "yes"}),
    *((name, {"differentiable": True}) for name in NAMES),
]


def _group_id(entry: tuple) -> str:
    name, kwargs = entry
    return name + "-" + ",".join(f"{key}={value!r}" for key, value in kwargs.items())


def _refusal(make) -> BaseException:
    """The exception ``make()`` raises (a ValueError or TypeError)."""
    with pytest.raises((ValueError, TypeError)) as raised:
        make()
    return raised.value


@pytest.mark.parametrize(("name", "kwargs"), GROUP_BAD, ids=map(_group_id, GROUP_BAD))
def test_a_bad_group_value_raises_as_the_same_default_does(name, kwargs):
    """Each class's constructor checks run on every param group too, the defaults filled in
    (torch.optim checks the defaults only, and so did ours: a negative lr, betas out of range,
    Nesterov without momentum or with dampening, ``differentiable=True``... trained, some to
    NaN, in the constructor's groups and through ``add_param_group``). The error is the one the
    same value raises as a default, its type and message, followed by the group's index; the
    group is not added, and the optimizer trains on with torch's bits."""
    default = _refusal(lambda: ours(name)(make_params(torch.float64), **kwargs))
    expected = (type(default), f"{default} (in param group 1)")
    params = make_params(torch.float64)
    grouped = _refusal(
        lambda: ours(name)([{"params": params[:2]}, {"params": params[2:], **kwargs}])
    )
    assert (type(grouped), str(grouped)) == expected
    for impl in IMPLS:
        params = make_params(torch.float64)
        optimizer = ours(name)(params[:2], impl=impl)
        added = _refusal(
            functools.partial(optimizer.add_param_group, {"params": params[2:], **kwargs})
        )
        assert (type(added), str(added)) == expected
        assert len(optimizer.param_groups) == 1
        optimizer.add_param_group({"params": params[2:]})
        reference = make_params(torch.float64)
        torch_optimizer = theirs(name)(reference[:2])
        torch_optimizer.add_param_group({"params": reference[2:]})
        for optimizer_, ps in ((optimizer, params), (torch_optimizer, reference)):
            for _ in range(3):
                optimizer_.zero_grad()
                loss_fn(ps).backward()
                optimizer_.step()
        assert all(map(torch.equal, params, reference)), impl


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("SGD", {"lr": torch.tensor(0.02), "momentum": np.float64(0.9), "nesterov": True}),
        ("Adam", {"lr": torch.tensor(0.01), "betas": (np.float64(0.8), 0.99)}),
        ("AdamW", {"betas": (torch.tensor(0.8), torch.tensor(0.99)), "weight_decay": 0}),
        ("Adagrad", {"lr": np.float32(0.05), "lr_decay": np.float64(0.01)}),
        ("RMSprop", {"alpha": np.float64(0.9), "momentum": 0.5, "centered": True}),
        ("Adadelta", {"lr": torch.tensor(0.5), "rho": 0.8}),
        # torch refuses these as defaults, and trains them in a group (plain SGD; dampened)
        ("SGD", {"momentum": 0.0, "nesterov": True}),
        ("SGD", {"momentum": 0.9, "dampening": 0.5, "nesterov": True}),
    ],
    ids=[
        "SGD",
        "Adam",
        "AdamW",
        "Adagrad",
        "RMSprop",
        "Adadelta",
        "SGD-nesterov-no-momentum",
        "SGD-nesterov-dampened",
    ],
)
def test_group_values_of_the_kinds_torch_takes_pass_the_checks_and_train_as_torch(name, group):
    """The checks take what torch's groups take: 0-dim tensors, NumPy scalars, tensor betas
    (read once, at ``add_param_group``); such a group trains with torch's bits."""
    results = []
    for cls in (theirs(name), ours(name)):
        params = make_params(torch.float64)
        optimizer = cls(params[:2])
        optimizer.add_param_group({"params": params[2:], **group})
        for _ in range(3):
            optimizer.zero_grad()
            loss_fn(params).backward()
            optimizer.step()
        results.append(params)
    assert all(map(torch.equal, *results))


@pytest.mark.parametrize("impl", IMPLS)
def test_group_values_set_between_steps_or_loaded_are_not_checked_as_in_torch(impl):
    """Only the constructor and ``add_param_group`` check: a value set in ``param_groups``
    between steps (as a scheduler sets it) and a loaded state dict's groups (``load_state_dict``
    replaces the groups, as torch's does) are taken as torch takes them, and no step reads a
    value back to check it."""
    results = []
    for cls, extra in ((torch.optim.SGD, {}), (optim.SGD, {"impl": impl})):
        params = make_params(torch.float64)
        optimizer = cls(params, lr=0.1, momentum=0.9, **extra)
        for step in range(4):
            if step == 1:
                optimizer.param_groups[0]["lr"] = -0.05
            if step == 2:
                saved = optimizer.state_dict()
                saved["param_groups"][0]["momentum"] = -0.5
                optimizer.load_state_dict(saved)
            optimizer.zero_grad()
            loss_fn(params).backward()
            optimizer.step()
        results.append(params)
    assert all(map(torch.equal, *results))


@pytest.mark.parametrize("name", NAMES)
def test_each_class_is_its_torch_namesake(name):
    """``isinstance(optimizer, torch.optim.Adam)`` holds for ours as for torch's (and AdamW is an
    Adam, as torch's is), so code that branches on the class takes the same branch: training
    code picks a scheduler, a checkpoint format or a memory estimate that way. Before, every
    such test was False and that code went its other way without a word. The step, the state
    and everything else of ours stay ours: the torch class comes after this library's base in
    the method order, and its constructor is not run."""
    params = make_params(torch.float32)
    optimizer = ours(name)(params)
    torch_class = getattr(torch.optim, name)
    assert isinstance(optimizer, torch_class)
    assert isinstance(optimizer, torch.optim.Adam) == (name in ("Adam", "AdamW"))
    mro = type(optimizer).__mro__
    assert mro.index(optim.RuleOptimizer) < mro.index(torch_class)
    assert type(optimizer).step.__qualname__ == "RuleOptimizer.step"  # (ours, hooks wrapped)


@pytest.mark.parametrize("name", NAMES)
def test_defaults_match_torch(name):
    params = make_params(torch.float32)
    ours_defaults = ours(name)(params).defaults
    torch_defaults = theirs(name)(params).defaults
    for key, value in ours_defaults.items():
        if key in torch_defaults:
            assert value == torch_defaults[key], key


@pytest.mark.parametrize("impl", IMPLS)
def test_closure_is_evaluated_and_returned(impl):
    params = make_params(torch.float64)
    optimizer = optim.SGD(params, lr=0.01, impl=impl)

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(params)
        loss.backward()
        return loss

    first = optimizer.step(closure)
    second = optimizer.step(closure)
    assert isinstance(first, torch.Tensor)
    assert second.item() < first.item()


@pytest.mark.parametrize("impl", IMPLS)
def test_add_param_group_and_torch_lr_scheduler(impl):
    params = make_params(torch.float64)
    reference = [p.detach().clone().requires_grad_() for p in params]
    runs = []
    for cls, ps, extra in ((optim.Adam, params, {"impl": impl}), (torch.optim.Adam, reference, {})):
        optimizer = cls(ps[:2], lr=0.05, **extra)
        optimizer.add_param_group({"params": ps[2:], "lr": 0.01, "amsgrad": True})
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
        for _ in range(20):
            optimizer.zero_grad()
            loss_fn(ps).backward()
            optimizer.step()
            scheduler.step()
        runs.append([g["lr"] for g in optimizer.param_groups])
    assert runs[0] == runs[1] == [0.05 * 0.5**4, 0.01 * 0.5**4]
    assert relative_error(params, reference) <= 1e-10


@pytest.mark.parametrize("impl", IMPLS)
def test_grad_scaler_unscales_and_skips_non_finite_steps(impl):
    params = make_params(torch.float64)
    reference = [p.detach().clone().requires_grad_() for p in params]
    for cls, ps, extra in ((optim.SGD, params, {"impl": impl}), (torch.optim.SGD, reference, {})):
        optimizer = cls(ps, lr=0.01, momentum=0.9, **extra)
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        for step in range(6):
            optimizer.zero_grad()
            loss = loss_fn(ps) * (math.inf if step == 3 else 1.0)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
    assert relative_error(params, reference) <= 1e-12
    assert all(torch.isfinite(p).all() for p in params)


@pytest.mark.parametrize("unscale_first", [False, True], ids=["scaler-step", "unscale-clip-step"])
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adagrad"])
def test_fused_takes_the_grad_scalers_handover_as_torchs_fused_kernels(name, unscale_first):
    """``fused=True`` on a CPU declares ``_step_supports_amp_scaling`` as torch's fused classes
    do, so ``GradScaler`` hands the step its scale and its inf check: a step with an inf in one
    gradient is skipped with every finite ``p.grad`` left scaled (torch's kernels leave it so;
    before, the scaler unscaled it first: 2.0 where torch leaves 2048.0), the step hooks still
    run, and the counts, scales, gradients and parameters follow torch's fused run (float64:
    compiled against torch's kernels, to rounding). Also with ``scaler.unscale_`` and gradient
    clipping before the step, where the scaler passes no scale."""
    kwargs = {"momentum": 0.9} if name == "SGD" else {}
    runs, declared = [], []
    for cls in (getattr(optim, name), getattr(torch.optim, name)):
        params = make_params(torch.float64)
        optimizer = cls(params, lr=0.01, fused=True, **kwargs)
        declared.append(getattr(optimizer, "_step_supports_amp_scaling", False))
        hooked: list[int] = []
        optimizer.register_step_post_hook(lambda *_, hooked=hooked: hooked.append(1))
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        history = []
        for step in range(6):
            optimizer.zero_grad()
            loss = loss_fn(params)
            if step in (2, 4):  # an inf in the first element of one gradient only
                loss = loss + math.inf * params[0].view(-1)[0]
            scaler.scale(loss).backward()
            if unscale_first:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, 5.0)
            scaler.step(optimizer)
            scaler.update()
            grads = [p.grad.clone() for p in params]
            steps = [float(s["step"]) for s in optimizer.state.values() if "step" in s]
            history.append((grads, [p.detach().clone() for p in params], steps, scaler.get_scale()))
        runs.append((history, len(hooked)))
    assert declared[0] is declared[1]  # (torch 2.13: all four True; 2.11's Adagrad: False)
    (ours, our_hooks), (theirs_, their_hooks) = runs
    assert our_hooks == their_hooks == (6 if declared[1] else 4)  # (skipped: no step() call)
    for step, ((g1, p1, s1, c1), (g2, p2, s2, c2)) in enumerate(zip(ours, theirs_)):
        assert (s1, c1) == (s2, c2), step
        for a, b in zip(g1 + p1, g2 + p2):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14, equal_nan=True)
    if declared[1] and not unscale_first:  # (clipping by an inf norm zeroes the gradients)
        skipped = ours[2][0][1]  # (a finite gradient of the skipped step: scaled, as torch's)
        assert torch.isfinite(skipped).all()
        assert skipped.abs().max() > 100


@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
@pytest.mark.parametrize("skipped", [(0,), (0, 1)], ids=["first-skipped", "two-skipped"])
def test_fused_sgd_whose_first_steps_the_grad_scaler_skips_follows_torchs_other_paths(
    skipped, nesterov
):
    """SGD with momentum, ``fused=True``, under ``GradScaler`` with an inf in the gradients of the
    first update(s): the skipped steps create no momentum buffer, so the first finite step
    creates it from its gradient, as torch's for-loop and foreach paths do (the scaler skips
    their ``step()`` call altogether). torch 2.13's CPU fused class instead keeps an ``empty_like``
    buffer from the skipped step and reads its uninitialised memory (two identical runs of it
    differ), so the reference here is torch's foreach class, to rounding."""
    runs = []
    for cls, fused in ((optim.SGD, True), (torch.optim.SGD, False)):
        params = make_params(torch.float64)
        optimizer = cls(params, lr=0.01, momentum=0.9, nesterov=nesterov, fused=fused)
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        for step in range(5):
            optimizer.zero_grad()
            loss = loss_fn(params)
            if step in skipped:
                loss = loss + math.inf * params[0].view(-1)[0]
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if step == skipped[-1]:
                buffers = [s.get("momentum_buffer") for s in optimizer.state.values()]
                assert all(b is None for b in buffers), step
        runs.append([p.detach().clone() for p in params])
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize(
    "kwargs", [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True}], ids=str
)
def test_fused_sgd_in_low_precision_follows_the_rule_to_rounding(dtype, kwargs):
    """``SGD(fused=True)`` in bf16 and fp16 stays within two units in the last place (of the
    largest parameter) of torch's foreach path over 8 steps, which rounds each op; torch 2.13's
    CPU fused SGD kernel is 0.4 to 1.4 away from it there (README: its documented difference).
    A guard: ours held before the README said so."""
    torch.manual_seed(0)
    start = torch.randn(64)
    grads = [torch.randn(64) for _ in range(8)]
    finals = []
    for cls, path in ((optim.SGD, {"fused": True}), (torch.optim.SGD, {"foreach": True})):
        param = torch.nn.Parameter(start.to(dtype))
        optimizer = cls([param], lr=0.05, **kwargs, **path)
        for grad in grads:
            param.grad = grad.to(dtype)
            optimizer.step()
        finals.append(param.detach().double())
    ulp = torch.finfo(dtype).eps * finals[1].abs().max()
    assert (finals[0] - finals[1]).abs().max() <= 2 * ulp


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_fused_refuses_a_sparse_gradient_under_the_grad_scaler_leaving_it_as_torch(name):
    """A sparse gradient under the scaler's handover: torch's fused class raises before its
    kernel, ``p.grad`` left scaled; ours raises the same type, ``p.grad`` as torch's (before,
    ours divided it by the scale first)."""
    grads = []
    for cls in (getattr(optim, name), getattr(torch.optim, name)):
        torch.manual_seed(0)
        embedding = torch.nn.Embedding(10, 3, sparse=True)
        optimizer = cls(embedding.parameters(), fused=True)
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        scaler.scale(embedding(torch.tensor([1, 2])).sum()).backward()
        with pytest.raises(RuntimeError, match="sparse gradients"):
            scaler.step(optimizer)
        grads.append(embedding.weight.grad.to_dense())
    assert torch.equal(grads[0], grads[1])
    assert grads[1].abs().max() == 1024.0


def test_fused_declares_the_grad_scalers_handover_only_on_a_cpu():
    """On another device the handover would read ``found_inf`` back inside the step, so the
    scaler unscales and decides itself there (meta stands in for a GPU here)."""
    cpu = optim.Adam([torch.nn.Parameter(torch.zeros(3))], fused=True)
    meta = optim.Adam([torch.nn.Parameter(torch.zeros(3, device="meta"))], fused=True)
    eager = optim.Adam([torch.nn.Parameter(torch.zeros(3))])
    assert cpu._step_supports_amp_scaling
    assert not meta._step_supports_amp_scaling
    assert not eager._step_supports_amp_scaling


@pytest.mark.parametrize("name", ["Adam", "AdamW", "RMSprop", "Adadelta"])
@pytest.mark.parametrize("impl", IMPLS)
def test_sparse_gradient_raises_torchs_error_naming_the_parameter(name, impl):
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        theirs(name)(embedding.parameters()).step()
    optimizer = ours(name)(embedding.parameters(), impl=impl)
    with pytest.raises(RuntimeError, match="parameter 0 of param group 0"):
        optimizer.step()


def test_flat_keeps_parameter_objects_and_module_state_dict():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    before = {name: p for name, p in model.named_parameters()}
    keys_before = {k: v.shape for k, v in model.state_dict().items()}
    optimizer = optim.Adam(model.parameters(), lr=0.01, impl="flat")
    model(torch.randn(5, 4)).pow(2).sum().backward()
    optimizer.step()
    assert all(p is before[name] for name, p in model.named_parameters())
    assert {k: v.shape for k, v in model.state_dict().items()} == keys_before
    # Parameters, gradients and state now share one buffer each: one update touches them all.
    bucket = optimizer._layouts[0][0]
    views = bucket.param_views
    assert all(p.data_ptr() == view.data_ptr() for p, view in zip(bucket.params, views))
    # model.load_state_dict copies into the views: the optimizer sees the loaded values.
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict({k: torch.zeros_like(v) for k, v in snapshot.items()})
    assert bucket.flat_param.abs().sum() == 0


def _training_run(make_optimizer, model_seed=0, steps=15, skip_bias_every=None, zero_to_none=True):
    torch.manual_seed(model_seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    model.double()
    optimizer = make_optimizer(model.parameters())
    data = torch.randn(16, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for step in range(steps):
        if zero_to_none:
            model.zero_grad(set_to_none=True)  # grads become None: the flat path must copy in
        else:
            optimizer.zero_grad()
        out = model(data)
        if skip_bias_every and step % skip_bias_every == skip_bias_every - 1:
            # The last layer gets no gradient in this step: torch skips it.
            out = model[1](model[0](data)).sum(dim=1, keepdim=True) + 0 * out.detach()
        out.pow(2).mean().backward()
        optimizer.step()
    return [p.detach() for p in model.parameters()]


@pytest.mark.parametrize("zero_to_none", [True, False])
@pytest.mark.parametrize("skip_bias_every", [None, 4])
def test_flat_handles_replaced_and_missing_gradients_like_torch(skip_bias_every, zero_to_none):
    reference = _training_run(
        lambda ps: torch.optim.Adam(ps, lr=0.01), skip_bias_every=skip_bias_every,
        zero_to_none=zero_to_none,
    )  # fmt: skip
    flat = _training_run(
        lambda ps: optim.Adam(ps, lr=0.01, impl="flat"), skip_bias_every=skip_bias_every,
        zero_to_none=zero_to_none,
    )  # fmt: skip
    # optimizer.zero_grad() sets gradients to None as torch's does, so a layer that gets no
    # gradient is skipped on the flat path too.
    assert relative_error(flat, reference) <= 1e-10


@pytest.mark.parametrize(
    "shapes",
    [
        [(7,), (5,), (3,)] * 6,
        [(4, 3), (5,), (2, 2, 2)] * 6,
        # tensors of BLOCK (1M) elements or more: a new gradient is read where it is
        [(3,), (1 << 20,), (5,), (1024, 1025), (1 << 20,)],
    ],
    ids=["1-D", "n-D", "large"],
)
@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("new_gradients", ["all", "some", "aliasing the buffer"])
def test_flat_copies_new_gradients_in_and_leaves_them_as_torch(shapes, compiled, new_gradients):
    """New gradients every step (torch's default ``zero_grad()``): all of them; some of them
    (the others still the layout's views); or some a new tensor over the same memory as its
    view (which ``torch.cat`` refuses to copy into it) and some laid out column-major. Tensors
    of 1M elements or more among them have their new gradients read where they are. Torch's
    foreach path's bits (compiled: to rounding); after the step that lays the buffers out,
    every ``p.grad`` stays the tensor the loop put there, with its values, as in torch.optim."""
    generator = torch.Generator().manual_seed(3)
    gradients = [
        [torch.randn(shape, dtype=torch.float64, generator=generator) for shape in shapes]
        for _ in range(4)
    ]
    results = []
    for make in (
        lambda ps: torch.optim.Adam(ps, lr=0.1, foreach=True),
        lambda ps: optim.Adam(ps, lr=0.1, impl="flat", compile=compiled),
    ):
        params = [
            torch.randn(
                shape, dtype=torch.float64, generator=torch.Generator().manual_seed(i)
            ).requires_grad_()
            for i, shape in enumerate(shapes)
        ]
        optimizer = make(params)
        for step, values in enumerate(gradients):
            for i, (p, value) in enumerate(zip(params, values)):
                held = p.grad
                if step == 0 or new_gradients == "all" or i % 3 == 0 or held is None:
                    p.grad = value.clone()
                elif new_gradients == "some":
                    held.copy_(value)  # the same tensor (on the flat path: the layout's view)
                elif i % 3 == 1:
                    p.grad = held.view(held.shape)  # another tensor over the same memory
                    p.grad.copy_(value)
                else:  # a new gradient laid out otherwise (not row-major where it can be)
                    p.grad = value.t().contiguous().t() if value.dim() == 2 else value.clone()
            given = [p.grad for p in params]
            expected = [g.clone() for g in given]
            optimizer.step()
            if step > 0:  # (the step that lays the buffers out makes each p.grad its view)
                assert all(p.grad is g for p, g in zip(params, given))
            assert all(torch.equal(p.grad, e) for p, e in zip(params, expected))
        results.append([p.detach().clone() for p in params])
    if compiled:
        assert relative_error(results[1], results[0]) <= 1e-12
    else:
        assert all(torch.equal(ours_p, torch_p) for ours_p, torch_p in zip(*results))


@pytest.mark.parametrize("name", ["Adam", "SGD", "Prodigy", "SGDScheduleFree", "SPS"])
@pytest.mark.parametrize("grad_enabled", [True, False])
def test_step_runs_without_grad_and_restores_the_grad_mode(name, grad_enabled):
    """step() updates under no_grad (no graph through the update) and leaves the caller's grad
    mode as it found it, also when the closure raises (as torch's @no_grad steps do)."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = getattr(optim, name)([w], lr=0.1) if name != "SPS" else optim.SPS([w])
    if name == "SGDScheduleFree":
        opt.train()

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    with torch.set_grad_enabled(grad_enabled):
        opt.step(closure)
        assert torch.is_grad_enabled() is grad_enabled
        assert w.grad_fn is None
        assert w.is_leaf

        def failing():
            raise KeyError("from the closure")

        with pytest.raises(KeyError):
            opt.step(failing)
        assert torch.is_grad_enabled() is grad_enabled
