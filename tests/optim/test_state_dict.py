"""state_dict moves between ours and torch.optim both ways, and training continues identically."""

import copy
import io
import pickle

import pytest
import torch

import optim
from tests.optim.conftest import IMPLS, loss_fn, make_params, ours, theirs, two_groups


def _continue(optimizer, params, steps, sign):
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(params, sign).backward()
        optimizer.step()


def _roundtrip(state_dict):
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("direction", ["ours->torch", "torch->ours"])
@pytest.mark.parametrize("impl", IMPLS)
def test_state_dict_interchange_continues_identically(case, impl, direction):
    name, kwargs = case
    sign = -1.0 if kwargs.get("maximize") else 1.0
    first, second = (ours, theirs) if direction == "ours->torch" else (theirs, ours)

    def build(cls_of, params):
        extra = {"impl": impl} if cls_of is ours else {}
        return cls_of(name)(two_groups(params, kwargs), **kwargs, **extra)

    # Uninterrupted run with the second optimizer's class throughout is not the reference: the
    # reference is the first optimizer continuing, since ours and torch agree step by step.
    params = make_params(torch.float64)
    optimizer = build(first, params)
    _continue(optimizer, params, 30, sign)
    saved_params = [p.detach().clone() for p in params]
    saved_state = _roundtrip(optimizer.state_dict())
    _continue(optimizer, params, 30, sign)

    resumed = [p.clone().requires_grad_() for p in saved_params]
    other = build(second, resumed)
    other.load_state_dict(saved_state)
    _continue(other, resumed, 30, sign)
    for a, b in zip(resumed, params):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_state_keys_and_shapes_match_torch(case, impl):
    name, kwargs = case
    ref_params, our_params = make_params(torch.float32), make_params(torch.float32)
    reference = theirs(name)(ref_params, **kwargs)
    optimizer = ours(name)(our_params, impl=impl, **kwargs)
    for params, opt in ((ref_params, reference), (our_params, optimizer)):
        opt.zero_grad()
        loss_fn(params).backward()
        opt.step()
    ref_state, our_state = reference.state_dict()["state"], optimizer.state_dict()["state"]
    assert ref_state.keys() == our_state.keys()
    for index in ref_state:
        assert ref_state[index].keys() == our_state[index].keys()
        for key, value in ref_state[index].items():
            assert our_state[index][key].shape == value.shape, (index, key)
    ref_group = reference.state_dict()["param_groups"][0]
    our_group = optimizer.state_dict()["param_groups"][0]
    for key in ("lr", "weight_decay", "maximize"):
        assert our_group[key] == ref_group[key]


def test_flat_state_tensors_are_independent_after_loading_into_torch():
    """Flat views share one storage; torch must still update each parameter's step separately."""
    params = make_params(torch.float64)
    optimizer = ours("Adam")(params, lr=0.01, impl="flat")
    _continue(optimizer, params, 3, 1.0)
    reference_params = [p.detach().clone().requires_grad_() for p in params]
    torch_adam = theirs("Adam")(reference_params, lr=0.01)
    torch_adam.load_state_dict(_roundtrip(optimizer.state_dict()))
    _continue(torch_adam, reference_params, 2, 1.0)
    steps = [s["step"].item() for s in torch_adam.state_dict()["state"].values()]
    assert steps == [5.0] * len(params)


@pytest.mark.parametrize("impl", IMPLS)
def test_older_state_dict_loads_as_in_torch(case, impl):
    """torch's ``test_can_load_older_state_dict`` and ``test_load_nontensor_step``, beside torch.

    A state dict from an older torch lacks the flags added since (``foreach``, ``maximize``,
    ...) and may hold ``step`` as a number: torch's ``__setstate__`` fills torch's defaults,
    and training goes on. Ours must fill the same keys, with the same values, and train the same.
    """
    name, kwargs = case
    kwargs = {k: v for k, v in kwargs.items() if k != "maximize"}  # an old group has no maximize
    params = make_params(torch.float64)
    source = theirs(name)(params, **kwargs)
    _continue(source, params, 5, 1.0)
    old = source.state_dict()
    flags = ("foreach", "differentiable", "fused", "maximize", "capturable")
    for group in old["param_groups"]:
        for flag in flags:
            group.pop(flag, None)
    for state in old["state"].values():
        if "step" in state:
            state["step"] = float(state["step"])

    runs = []
    for cls_of in (theirs, ours):
        resumed = [p.detach().clone().requires_grad_() for p in params]
        optimizer = cls_of(name)(resumed, **kwargs, **({"impl": impl} if cls_of is ours else {}))
        optimizer.load_state_dict(_roundtrip(old))
        _continue(optimizer, resumed, 5, 1.0)
        group = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
        runs.append((resumed, group))
    (reference, their_group), (resumed, our_group) = runs
    assert {k: our_group[k] for k in their_group} == their_group
    for a, b in zip(resumed, reference, strict=True):
        assert torch.equal(a, b)


def test_adamw_loading_an_adam_state_dict_stays_decoupled_as_torch():
    """torch.optim.AdamW's ``__setstate__`` sets ``decoupled_weight_decay=True`` on load."""
    params = make_params(torch.float64)
    saved = torch.optim.Adam(params, lr=0.01, weight_decay=0.1).state_dict()
    for cls_of in (theirs, ours):
        optimizer = cls_of("AdamW")(make_params(torch.float64), lr=0.01)
        optimizer.load_state_dict(saved)
        assert optimizer.param_groups[0]["decoupled_weight_decay"] is True


NAMES = ("SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta")
LR_FREE = ("Prodigy", "DAdaptSGD", "DAdaptAdam", "DAdaptAdaGrad", "DoG", "LDoG")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", NAMES + LR_FREE)
def test_state_dict_hooks_see_and_return_what_torchs_do(name, impl):
    """torch's own ``test_state_dict_pre_hook`` / post-hook contract: an entry a pre-hook adds
    to ``optimizer.state`` under a key that is no parameter passes into the state dict as it
    is; post-hooks see each parameter's state as a plain ``dict`` (in the package's layout for
    the learning-rate-free classes: Prodigy's ``s`` flat; DoG's ``_first_step`` is added after
    the hooks, as dog's ``state_dict`` adds it after torch's: stop 91), and what one returns is
    the state dict. Ours raised TypeError ('int' object is not iterable) on the first and
    KeyError('state') on a post-hook returning a dict without "state"."""
    import optim

    params = make_params(torch.float64)
    kwargs = {"momentum": 0.9} if name == "SGD" else {}  # (plain SGD keeps no state)
    optimizer = getattr(optim, name)(params, impl=impl, **kwargs)
    _continue(optimizer, params, 2, 1.0)
    optimizer.register_state_dict_pre_hook(lambda o: o.state.__setitem__("note", 1))
    seen = []

    def post_hook(o, saved):
        seen.append({k: type(v) for k, v in saved["state"].items()})
        if name == "Prodigy":
            seen.append({k: v["s"].dim() for k, v in saved["state"].items() if k != "note"})
        return {"param_groups": saved["param_groups"], "mine": True}

    optimizer.register_state_dict_post_hook(post_hook)
    saved = optimizer.state_dict()
    assert sorted(saved) == ["mine", "param_groups"]
    types = seen[0]
    assert types.pop("note") is int
    assert "_first_step" not in types  # (DoG's: added after the hooks, see above)
    assert set(types.values()) == {dict}
    assert len(types) == len(params)
    if name == "Prodigy":
        assert set(seen[1].values()) == {1}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", NAMES)
def test_named_parameters_and_load_hooks_as_torchs(name, impl):
    """torch's own ``test_can_load_from_to_named_state_dict``, ``test_state_dict_deterministic``
    (named) and load-state-dict hook tests, beside torch. An optimizer built from
    ``model.named_parameters()`` saves ``param_names`` in each group, as torch's does (its state
    dicts are equal to torch's, and load into torch's either way, named or not); a pre-hook that
    edits the loaded dict, one that returns a new dict, ``prepend=True`` and a post-hook run in
    torch's order and leave torch's values."""
    kwargs = {"lr": 0.01, "momentum": 0.9} if name == "SGD" else {"lr": 0.01}
    extra = {"impl": impl}

    def trained(cls, named, **more):
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
        model.double()
        params = model.named_parameters() if named else model.parameters()
        optimizer = cls(params, **kwargs, **more)
        data = torch.linspace(-1, 1, 20, dtype=torch.float64).reshape(5, 4)
        for _ in range(3):
            optimizer.zero_grad()
            model(data).square().sum().backward()
            optimizer.step()
        return model, optimizer, data

    for named in (True, False):
        _, mine, _ = trained(ours(name), named, **extra)
        _, torchs, _ = trained(theirs(name), named)
        saved, expected = mine.state_dict(), torchs.state_dict()
        assert saved["param_groups"] == expected["param_groups"]
        torch.testing.assert_close(saved["state"], expected["state"], rtol=0, atol=0)
        for load_named in (True, False):
            # ours -> torch and torch -> ours, into optimizers built with or without names
            model, loader, data = trained(theirs(name), load_named)
            loader.load_state_dict(_roundtrip(saved))
            model_o, loader_o, _ = trained(ours(name), load_named, **extra)
            loader_o.load_state_dict(_roundtrip(expected))
            for opt, mod in ((loader, model), (loader_o, model_o)):
                opt.zero_grad()
                mod(data).square().sum().backward()
                opt.step()
            if named or load_named:
                names = [n for n, _ in model.named_parameters()]
                assert loader_o.state_dict()["param_groups"][0]["param_names"] == names
            torch.testing.assert_close(
                list(model_o.parameters()), list(model.parameters()), rtol=0, atol=0
            )

    def edit(opt, state_dict):
        state_dict["param_groups"][0]["lr"] = 0.002

    def replace(opt, state_dict):
        fresh = {
            "state": state_dict["state"],
            "param_groups": [dict(state_dict["param_groups"][0])],
        }
        fresh["param_groups"][0]["lr"] = 0.003
        return fresh

    def after(opt):
        opt.state["ran"] = (opt.param_groups[0]["lr"], "post")

    results = []
    for optimizer in (trained(ours(name), False, **extra)[1], trained(theirs(name), False)[1]):
        saved = optimizer.state_dict()
        optimizer.register_load_state_dict_pre_hook(edit)
        optimizer.load_state_dict(saved)
        first = optimizer.param_groups[0]["lr"]
        optimizer.register_load_state_dict_pre_hook(replace, prepend=True)
        optimizer.register_load_state_dict_post_hook(after)
        optimizer.load_state_dict(saved)
        results.append((first, optimizer.param_groups[0]["lr"], optimizer.state["ran"]))
    assert results[0] == results[1] == (0.002, 0.002, (0.002, "post"))


def _forked(make, params, schedule, sign):
    """Run ``schedule`` on ``params``: "a" steps the first optimizer, "F" loads its live
    ``state_dict()`` into a second one over copies of the parameters, "b" steps the second.
    Returns every parameter of both."""
    first = make(params)
    copies, second = [], None
    for who in schedule:
        if who == "F":
            copies = [p.detach().clone().requires_grad_() for p in params]
            second = make(copies)
            second.load_state_dict(first.state_dict())
        else:
            _continue(first if who == "a" else second, params if who == "a" else copies, 1, sign)
    return [p.detach() for p in params + copies]


@pytest.mark.parametrize("schedule", ["aaFbab", "Fbabb"])
@pytest.mark.parametrize("count", [4, 20], ids=["4-tensors", "20-tensors"])
@pytest.mark.parametrize("impl", IMPLS)
def test_a_loaded_live_state_dict_is_shared_counters_too_as_torch(case, impl, count, schedule):
    """torch's ``load_state_dict`` keeps a state tensor of the right dtype and device as it is,
    the step counters included, so ``opt2.load_state_dict(opt1.state_dict())`` leaves the two
    sharing them and each step of either advances both. Ours copied the counters: the moments
    stayed shared and the bias corrections fell behind (Adam, AdamW, Adagrad; 1e-3 after 3
    steps). 20 tensors take the packed default path; "Fbabb" forks before the first step,
    where Adagrad's counters already exist (made at construction)."""
    name, kwargs = case
    sign = -1.0 if kwargs.get("maximize") else 1.0
    sizes = [(5, 3), (7,), (2, 2, 2), (4,)] if count == 4 else [(6,)] * count
    generator = torch.Generator().manual_seed(3)

    def params():
        return [
            torch.randn(s, dtype=torch.float64, generator=generator.manual_seed(i)).requires_grad_()
            for i, s in enumerate(sizes)
        ]

    expected = _forked(
        lambda ps: theirs(name)(two_groups(ps, kwargs), **kwargs), params(), schedule, sign
    )
    got = _forked(
        lambda ps: ours(name)(two_groups(ps, kwargs), **kwargs, impl=impl),
        params(),
        schedule,
        sign,
    )
    for a, b in zip(got, expected):
        assert torch.equal(a, b), (a - b).abs().max()


@pytest.mark.parametrize("edit", ["fill_", "add_", "copy_", "data.fill_"])
@pytest.mark.parametrize("impl", IMPLS)
def test_adagrad_counters_edited_before_the_first_step_count_as_torch(impl, edit):
    """Adagrad makes its state at construction (as torch's). A counter edited in place before
    the first step (resuming a decay's schedule) is read by torch's step; the eager flat path
    had taken counters it made and never counted as 0, so ``lr_decay`` restarted."""
    results = []
    for make in (theirs("Adagrad"), lambda ps, **kw: ours("Adagrad")(ps, impl=impl, **kw)):
        params = make_params(torch.float64)
        optimizer = make(params, lr=0.1, lr_decay=0.5)
        for p in params:
            step = optimizer.state[p]["step"]
            if edit == "fill_":
                step.fill_(10)
            elif edit == "add_":
                step.add_(10)
            elif edit == "copy_":
                step.copy_(torch.tensor(10.0))
            else:
                step.data.fill_(10)
        _continue(optimizer, params, 2, 1.0)
        results.append([p.detach() for p in params])
        assert float(optimizer.state[params[0]]["step"]) == 12
    for a, b in zip(*results):
        assert torch.equal(a, b), (a - b).abs().max()


@pytest.mark.parametrize("count", [4, 20], ids=["4-tensors", "20-tensors"])
@pytest.mark.parametrize("impl", IMPLS)
def test_a_float64_counter_saved_under_float64_defaults_loads_as_torch_keeps_it(impl, count):
    """A checkpoint written while float64 was the default dtype holds float64 step counters;
    torch's ``load_state_dict`` keeps a host counter as saved, so its state dict still shows
    float64 (and a group added after has float32 counters). Ours converted them to float32."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        params = [torch.ones(3, dtype=torch.float32, requires_grad=True) for _ in range(count)]
        source = theirs("Adam")(params)
        _continue(source, params, 1, 1.0)
        saved = _roundtrip(source.state_dict())
    finally:
        torch.set_default_dtype(previous)
    assert saved["state"][0]["step"].dtype == torch.float64
    results = []
    for make in (theirs("Adam"), lambda ps: ours("Adam")(ps, impl=impl)):
        params = [torch.ones(3, requires_grad=True) for _ in range(count)]
        optimizer = make(params)
        optimizer.load_state_dict(_roundtrip(saved))
        _continue(optimizer, params, 2, 1.0)
        extra = torch.ones(2, requires_grad=True)
        optimizer.add_param_group({"params": [extra]})
        _continue(optimizer, [*params, extra], 1, 1.0)
        state = optimizer.state_dict()["state"]
        results.append(
            ([p.detach() for p in [*params, extra]], state[0]["step"], state[count]["step"])
        )
    (expected, first, added), (got, our_first, our_added) = results
    assert (our_first.dtype, our_added.dtype) == (first.dtype, added.dtype)
    assert (float(our_first), float(our_added)) == (float(first), float(added))
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
@pytest.mark.parametrize("count", [4, 20], ids=["4-tensors", "20-tensors"])
@pytest.mark.parametrize("impl", ["default", "single", "foreach"])
@pytest.mark.parametrize("name", ["Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta"])
def test_an_integer_counter_loads_and_counts_as_torch_keeps_it(name, impl, count, dtype):
    """A checkpoint whose ``step`` counters are integer tensors (a converter's, or one edited by
    hand): torch's ``load_state_dict`` keeps a host counter as saved and counts on in its dtype,
    so its state dict shows ``tensor(3)``. Ours converted it to float32 (``tensor(3.)``); the
    parameters were the same. (The flat path keeps its counters in ``step_dtype()``, as torch's
    ``capturable`` and ``fused`` ones; its docstring says so.)"""
    params = [torch.ones(3, requires_grad=True) for _ in range(count)]
    source = theirs(name)(params)
    _continue(source, params, 1, 1.0)
    saved = source.state_dict()
    for entry in saved["state"].values():
        entry["step"] = entry["step"].to(dtype)
    saved = _roundtrip(saved)
    results = []
    kwargs = {} if impl == "default" else {"impl": impl}
    for make in (theirs(name), lambda ps: ours(name)(ps, **kwargs)):
        params = [torch.ones(3, requires_grad=True) for _ in range(count)]
        optimizer = make(params)
        optimizer.load_state_dict(_roundtrip(saved))
        _continue(optimizer, params, 2, 1.0)
        steps = [entry["step"] for entry in optimizer.state_dict()["state"].values()]
        results.append(([p.detach() for p in params], steps))
    (expected, their_steps), (got, our_steps) = results
    assert [(s.dtype, s.item()) for s in our_steps] == [(s.dtype, s.item()) for s in their_steps]
    assert their_steps[0].dtype == dtype  # (torch's own behaviour, which this test pins)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


class _AsOurs(pickle.Unpickler):
    """Unpickles torch.optim's optimizer class ``name`` as ours (a whole-object checkpoint
    written with torch's class, read by a script that switched to ours)."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(io.BytesIO(data))
        self.name = name

    def find_class(self, module: str, name: str):
        if module.startswith("torch.optim.") and name == self.name:
            return ours(name)
        return super().find_class(module, name)


@pytest.mark.parametrize("foreach", [None, True, False])
@pytest.mark.parametrize("count", [3, 20])
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta"])
def test_a_pickled_torch_optimizer_unpickles_as_ours_and_trains_on(name, count, foreach):
    """torch's optimizer pickled whole, unpickled as ours: its first step raised
    ``AttributeError`` (no ``impl``, which torch's pickle does not carry); now it runs the path
    the pickled ``foreach`` picks, with torch's numbers, as torch's own class unpickled does."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(5, generator=generator).requires_grad_() for _ in range(count)]
    kwargs = {"momentum": 0.9} if name == "SGD" else {}
    source = getattr(torch.optim, name)(params, lr=0.05, foreach=foreach, **kwargs)
    for p in params:
        p.grad = torch.randn(5, generator=generator)
    source.step()
    data = pickle.dumps(source)
    results = []
    for optimizer in (pickle.loads(data), _AsOurs(data, name).load()):
        copies = optimizer.param_groups[0]["params"]
        grads = torch.Generator().manual_seed(1)
        for _ in range(3):
            for p in copies:
                p.grad = torch.randn(5, generator=grads)
            optimizer.step()
        results.append((type(optimizer), copies))
    (their_type, theirs_after), (our_type, ours_after) = results
    assert (their_type, our_type) == (getattr(torch.optim, name), ours(name))
    for a, b in zip(ours_after, theirs_after):
        assert torch.equal(a, b)


def _stored_elements(tensors) -> int:
    """How many elements the storages behind ``tensors`` hold: what ``torch.save`` writes."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


@pytest.mark.parametrize("impl", [None, *IMPLS])
@pytest.mark.parametrize("name", NAMES + LR_FREE)
def test_one_parameters_state_saves_alone_and_loads_with_torchs_defaults(name, impl):
    """``torch.save(optimizer.state[p])``, ``dict(optimizer.state)`` or the entries' list, read
    back by ``torch.load`` with its default ``weights_only=True``, as torch's state (and the
    packages') reads back: the same values, each parameter's state alone in the file (not the
    buffer that the packed and flat layouts keep every parameter's state in), and
    ``copy.deepcopy`` of one parameter's state copies that state alone, as torch's does.
    (Before: the load refused the entry, a ``dict`` subclass pickled as a call of ``dict``,
    and one parameter's state saved or deep-copied the whole buffer, 100x its size here.)"""
    kwargs = {"lr": 0.01, "momentum": 0.9} if name == "SGD" else {}
    if name in NAMES:
        kwargs.setdefault("lr", 0.01)

    def trained(cls, **more):
        torch.manual_seed(0)
        model = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(10)])
        optimizer = cls(model.parameters(), **kwargs, **more)
        data = torch.randn(4, 8)
        for _ in range(3):
            optimizer.zero_grad()
            model(data).tanh().square().sum().backward()
            optimizer.step()
        return model, optimizer

    model, optimizer = trained(getattr(optim, name), **({} if impl is None else {"impl": impl}))
    bias = model[3].bias
    entry = optimizer.state[bias]
    if name in NAMES:  # torch's: the same values, and its state saved alone loads
        reference_model, reference = trained(getattr(torch.optim, name))
        theirs_loaded = _roundtrip(reference.state[reference_model[3].bias])
        assert theirs_loaded.keys() == dict.keys(entry)
        for key, value in theirs_loaded.items():
            assert torch.equal(value, dict.__getitem__(entry, key)), key
    tensors = {key: value for key, value in dict.items(entry) if torch.is_tensor(value)}
    assert tensors
    own = sum(t.numel() * t.element_size() for t in tensors.values())

    position = [p is bias for p in optimizer.state].index(True)  # (loaded keys are new)
    for saved in (entry, dict(optimizer.state), list(optimizer.state.values())):
        loaded = _roundtrip(saved)  # weights_only=True
        if saved is not entry:
            loaded = list(loaded.values() if isinstance(loaded, dict) else loaded)[position]
        assert dict(loaded).keys() == dict.keys(entry)
        for key, value in tensors.items():
            assert torch.equal(loaded[key], value), key
        if saved is entry:
            assert _stored_elements(loaded[key] for key in tensors) == own

    copied = copy.deepcopy(entry)
    assert type(copied) is dict
    assert all(torch.equal(copied[key], value) for key, value in tensors.items())
    assert _stored_elements(copied[key] for key in tensors) == own
    assert all(copied[key].stride() == value.stride() for key, value in tensors.items())


# (ours' path, torch's path with the same bits: the eager flat path gives its foreach path's)
_SGD_PATHS = {
    "default": ({}, {}),
    "foreach": ({"foreach": True}, {"foreach": True}),
    "single": ({"foreach": False}, {"foreach": False}),
    "flat": ({"impl": "flat"}, {"foreach": True}),
}


def _sgd_state_after_none_buffers(make, how, count, kwargs, sign):
    """Parameters and state dict of an SGD given ``momentum_buffer: None`` entries (``how``:
    loaded from a checkpoint as torch <= 2.0 wrote them, before any step; assigned to every
    parameter after two steps; assigned to every third one), three steps on."""
    sizes = [(5, 3), (7,), (2, 2, 2), (4,)] if count == 4 else [(6,)] * count
    generator = torch.Generator().manual_seed(5)
    params = [torch.randn(s, generator=generator).requires_grad_() for s in sizes]
    optimizer = make(params)
    if how == "loaded":
        groups = copy.deepcopy(optimizer.state_dict()["param_groups"])
        state = {i: {"momentum_buffer": None} for i in range(count)}
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    else:
        _continue(optimizer, params, 2, sign)
        for p in params if how == "assigned" else params[::3]:
            optimizer.state[p]["momentum_buffer"] = None
    _continue(optimizer, params, 3, sign)
    return [p.detach() for p in params], optimizer.state_dict()["state"]


def _same_state(ours_state: dict, their_state: dict, exact: bool = True) -> None:
    """Equal per-parameter state dicts: the same keys in the same order, equal tensors (or the
    same non-tensor values)."""
    assert list(ours_state) == list(their_state)
    for index, entry in their_state.items():
        assert list(ours_state[index]) == list(entry), index
        for key, value in entry.items():
            mine = ours_state[index][key]
            if not isinstance(value, torch.Tensor):
                assert mine == value, (index, key)
            elif exact:
                assert torch.equal(mine, value), (index, key, (mine - value).abs().max())
            else:
                torch.testing.assert_close(mine, value)


@pytest.mark.parametrize("how", ["loaded", "assigned", "some"])
@pytest.mark.parametrize("count", [4, 20], ids=["4-tensors", "20-tensors"])
@pytest.mark.parametrize("path", list(_SGD_PATHS))
@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": 0.05, "momentum": 0.9},
        {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01},
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "maximize": True},
        {"lr": 0.05},  # (no momentum: the None entries stay, as torch leaves them)
    ],
    ids=["momentum", "dampening-decay", "nesterov-maximize", "no-momentum"],
)
def test_a_none_momentum_buffer_is_made_at_the_next_step_as_torch(kwargs, path, count, how):
    """torch's SGD reads ``state.get("momentum_buffer")`` and takes None for the buffer's first
    step (``clone(grad).detach()``); torch <= 2.0 saved ``momentum_buffer: None`` for every
    stepped parameter, momentum or not. Ours raised ``AttributeError: 'NoneType' object has
    no attribute 'dtype'`` at the next step, on every path; now the buffer is made there, from
    the gradient, with torch's bits and state dict (20 tensors: the packed default path)."""
    mine, reference = _SGD_PATHS[path]
    sign = -1.0 if kwargs.get("maximize") else 1.0
    expected, their_state = _sgd_state_after_none_buffers(
        lambda ps: torch.optim.SGD(ps, **kwargs, **reference), how, count, kwargs, sign
    )
    got, our_state = _sgd_state_after_none_buffers(
        lambda ps: optim.SGD(ps, **kwargs, **mine), how, count, kwargs, sign
    )
    for a, b in zip(got, expected):
        assert torch.equal(a, b), (a - b).abs().max()
    _same_state(our_state, their_state)


@pytest.mark.parametrize("how", ["loaded", "assigned"])
def test_a_none_momentum_buffer_under_fused_is_made_as_torchs_fused_kernels(how):
    """``fused=True`` (compiled: torch's numbers to rounding, as documented) with every buffer
    None: torch's fused SGD takes it for the first step (``is_first_step``), and so does ours
    (it had raised ``AttributeError``). Where only some are None torch's fused kernel raises a
    ``TypeError`` of its own (a None in its tensor lists), as for a parameter whose buffer
    starts later; ours trains them as its other paths do (the test above)."""
    kwargs = {"lr": 0.05, "momentum": 0.9}
    expected, their_state = _sgd_state_after_none_buffers(
        lambda ps: torch.optim.SGD(ps, **kwargs, fused=True), how, 4, kwargs, 1.0
    )
    got, our_state = _sgd_state_after_none_buffers(
        lambda ps: optim.SGD(ps, **kwargs, fused=True), how, 4, kwargs, 1.0
    )
    torch.testing.assert_close(got, expected)
    _same_state(our_state, their_state, exact=False)


_STEP_PATHS = {  # (ours, torch's): torch raises on each of its paths
    "default": ({}, {}),
    "foreach": ({"foreach": True}, {"foreach": True}),
    "single": ({"foreach": False}, {"foreach": False}),
    "flat": ({"impl": "flat"}, {}),
    "fused": ({"fused": True}, {"fused": True}),
}


@pytest.mark.parametrize("value", [0, 0.0], ids=["int", "float"])
@pytest.mark.parametrize("count", [4, 20], ids=["4-tensors", "20-tensors"])
@pytest.mark.parametrize(
    ("name", "path"),
    [
        (name, path)
        for name in ("Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta")
        for path in _STEP_PATHS
        if path != "fused" or name in ("Adam", "AdamW", "Adagrad")  # (torch's fused classes)
    ],
)
def test_a_step_counter_set_to_a_number_raises_torchs_error(name, path, count, value):
    """``optimizer.state[p]["step"] = 0`` (to restart the bias corrections) makes torch's next
    step raise ``RuntimeError: API has changed, `state_steps` argument must contain a list of
    singleton tensors`` on every path, before it updates any parameter of the group. Ours raised
    an ``AttributeError`` of its own ('int' object has no attribute 'add_', or 'to' on the flat
    path); now torch's error, its message first, naming the parameter, and nothing updated."""
    mine, reference = _STEP_PATHS[path]
    outcomes = []
    for make in (
        lambda ps: theirs(name)(ps, lr=0.01, **reference),
        lambda ps: ours(name)(ps, lr=0.01, **mine),
    ):
        params = [torch.ones(3, requires_grad=True) for _ in range(count)]
        optimizer = make(params)
        _continue(optimizer, params, 2, 1.0)
        before = [p.detach().clone() for p in params]
        optimizer.state[params[1]]["step"] = value
        optimizer.zero_grad()
        loss_fn(params).backward()
        with pytest.raises(RuntimeError) as raised:
            optimizer.step()
        assert all(map(torch.equal, params, before))  # (no parameter of the group updated)
        outcomes.append((str(raised.value), before))
    (their_message, expected), (our_message, got) = outcomes
    assert our_message.startswith(their_message)
    assert "parameter 1 of param group 0" in our_message
    if path != "fused":  # (compiled: torch's numbers to rounding)
        assert all(map(torch.equal, got, expected))
