"""optim._ops: a number operand given as a 0-dim tensor computes torch's number bits."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import optim
from optim import _ops as ops

NUMBERS = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=True),
    st.sampled_from([0.9, 0.999, 1 - 0.999, 1e-8, 1 / 3, 2.0**-149, 3.4e38, -0.0, 1e39, -1e300]),
    st.integers(-1000, 1000),
)


@settings(max_examples=150, deadline=None)
@given(
    value=NUMBERS,
    dtype=st.sampled_from([torch.float32, torch.float64]),
    sizes=st.lists(st.integers(1, 70), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
    op=st.sampled_from(["mul_", "div_"]),
    as_list=st.booleans(),
)
def test_a_tensor_operand_gives_the_numbers_bits(value, dtype, sizes, seed, op, as_list):
    """``operand`` may turn a number (or one number per tensor, all equal) into a 0-dim
    tensor (a second call: from the cache); either way the multi-tensor op's result is bitwise
    the op with the number itself."""
    generator = torch.Generator().manual_seed(seed)
    xs = [torch.randn(n, generator=generator, dtype=dtype) * 10 for n in sizes]
    expected = [x.clone() for x in xs]
    getattr(torch, f"_foreach_{op}")(expected, value)
    for _ in range(2):  # the first sight and the cached tensor
        got = [x.clone() for x in xs]
        given = [value] * len(got) if as_list else value
        getattr(torch, f"_foreach_{op}")(got, ops.operand(given, got))
        for a, b in zip(got, expected):
            assert torch.equal(a.isnan(), b.isnan())
            assert torch.equal(a.nan_to_num(), b.nan_to_num())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.complex64])
def test_other_dtypes_keep_the_number(dtype):
    """bf16 and fp16 would round a tensor operand to their dtype first; complex is left alone."""
    xs = [torch.ones(3, dtype=dtype), torch.ones(2, dtype=dtype)]
    assert ops.operand(0.9, xs) == 0.9
    assert type(ops.operand(0.9, xs)) is float


def test_mixed_lists_and_non_numbers_keep_the_value():
    mixed = [torch.ones(3), torch.ones(3, dtype=torch.float64)]
    assert type(ops.operand(0.9, mixed)) is float
    same = [torch.ones(3), torch.ones(2)]
    made = ops.operand(0.9, same)
    assert isinstance(made, torch.Tensor)
    assert made.dtype == torch.float32
    assert made.dim() == 0
    different = [0.9, 0.8]
    assert ops.operand(different, same) is different
    tensors = [torch.tensor(0.9), torch.tensor(0.9)]
    assert ops.operand(tensors, same) is tensors
    assert ops.operand(True, same) is True
    tensor = torch.tensor(0.5)
    assert ops.operand(tensor, same) is tensor


@pytest.mark.usefixtures("fresh_process_caches")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kept_operands_hold_each_value_while_new_ones_replace_the_oldest(dtype):
    """More new values than there are kept tensors (a bias correction at every step), with a
    hyperparameter asked for between them: every operand holds the value asked for, in the
    dtype, the kept tensors are written in place (no new tensor per value), and the op with it
    is the op with the number."""
    xs = [torch.full((5,), 3.0, dtype=dtype), torch.full((7,), -2.0, dtype=dtype)]
    storages = set()
    for step in range(1, 3 * ops._OPERANDS_KEPT):
        for value in (1 / (1 - 0.9**step), 0.9):
            got = ops.operand(value, xs)
            assert got.dtype == dtype
            assert got.dim() == 0
            assert got.item() == torch.tensor(value, dtype=dtype).item()
            storages.add(got.untyped_storage().data_ptr())
            mine, expected = [x.clone() for x in xs], [x.clone() for x in xs]
            torch._foreach_mul_(mine, got)
            torch._foreach_mul_(expected, value)
            assert all(map(torch.equal, mine, expected))
    assert len(storages) == 1  # views of one buffer, made once


@pytest.mark.usefixtures("fresh_process_caches")
def test_kept_operands_made_in_inference_mode_are_written_outside_it():
    """The kept tensors are normal tensors even when first made inside
    ``torch.inference_mode()``: written in place later outside it, where an inference tensor
    would refuse the write."""
    xs = [torch.ones(3), torch.ones(2)]
    with torch.inference_mode():
        assert ops.operand(0.25, xs).item() == 0.25
    for k in range(2 * ops._OPERANDS_KEPT):
        assert ops.operand(1.0 + k, xs).item() == 1.0 + k


def test_rounds_and_blocks_are_a_cpus_strategy_only():
    """On a CPU, packed state runs in rounds of about 256k elements (each op's pass over a round
    finds the last op's output in cache); on any other device one round takes every tensor, so
    a GPU launches each op once (measured on an H200: the blocked default path stepped 4x4M
    Adam in 2.37 ms against torch's 0.55 ms, 0.44 ms after)."""
    from optim import _paths

    sizes = [1024] * 2000  # (256 tensors make a round of 2**18 elements)
    on_cpu = _paths.packed_rounds(sizes, "cpu")
    assert len(on_cpu) == 8
    assert on_cpu == _paths.packed_rounds(sizes)  # (the CPU's by default)
    assert on_cpu[:2] == [(0, 256, 0, 2**18), (256, 512, 2**18, 2**19)]
    assert on_cpu[-1] == (1792, 2000, 1792 * 1024, 2000 * 1024)
    for device in ("cuda", torch.device("cuda", 1), "meta"):
        assert _paths.packed_rounds(sizes, device) == [(0, 2000, 0, 2000 * 1024)]
        assert not _paths.caches_in_blocks(device)
    assert _paths.caches_in_blocks(torch.device("cpu"))
    assert _paths.packed_rounds([5], "cuda") == [(0, 1, 0, 5)]


@pytest.mark.parametrize(
    ("l2", "expected"),
    [
        (None, (1 << 18, 1 << 17)),
        (4 << 20, (1 << 18, 1 << 17)),
        (2 << 20, (1 << 18, 1 << 17)),
        (1 << 20, (1 << 20, 1 << 19)),
        (512 << 10, (1 << 20, 1 << 19)),
    ],
)
def test_the_blocked_lists_slices_and_groups_follow_the_l2_size(l2, expected, monkeypatch):
    """Large tensors in slices of 256k elements and small ones in groups of 128k where a core's
    L2 holds 2 MiB or more (or its size is unknown), in slices of a block (1M) and groups of
    half a block where it is smaller: ``optim._paths.list_slice``'s and ``list_group``'s
    docstrings have the measurements. Before, 256k and 128k everywhere. Which groups are cut at
    all does not change (more than ``list_round()``, 256k, elements)."""
    from optim import _paths

    monkeypatch.setattr(_paths, "l2_cache_bytes", lambda: l2)
    assert (_paths.list_slice(), _paths.list_group()) == expected
    assert _paths.list_round() == 1 << 18


@pytest.mark.parametrize(
    ("l2", "per_round"),
    [(None, [7, 7, 7, 7, 2]), (2 << 20, [7, 7, 7, 7, 2]), (1 << 20, [14, 14, 2])],
)
def test_the_learning_rate_free_lists_round_by_the_l2_size(l2, per_round, monkeypatch):
    """The learning-rate-free rules run the tensors they neither pack nor block (here 30 of 40k
    elements) in rounds of whole tensors of about 256k elements where a core's L2 holds 2 MiB or
    more (or its size is unknown), half a block (512k) where it is smaller:
    ``optim._paths.reducing_list_round``'s docstring has the measurements. Before, 256k
    everywhere."""
    from optim import _paths

    monkeypatch.setattr(_paths, "l2_cache_bytes", lambda: l2)
    params = [torch.zeros(40_000, requires_grad=True) for _ in range(30)]
    for p in params:
        p.grad = torch.ones(40_000)
    optimizer = optim.DoG(params)
    chunks = optimizer._chunks(0, optimizer.param_groups[0])
    assert [len(chunk.params) for chunk in chunks] == per_round


def test_a_tensor_of_a_rounds_size_or_more_is_a_round_of_its_own():
    """``packed_rounds`` groups consecutive tensors up to the limit, and a tensor of the limit
    or more never joins the smaller ones before it (an SPS tensor larger than a block then runs
    in blocks, whatever came before it). Before, (100, 300) was one round."""
    from optim._paths import packed_rounds

    assert packed_rounds([100, 300, 50, 60, 100], "cpu", 200) == [
        (0, 1, 0, 100),
        (1, 2, 100, 400),
        (2, 5, 400, 610),
    ]
    assert packed_rounds([150, 60, 10], "cpu", 200) == [(0, 2, 0, 210), (2, 3, 210, 220)]


def _cache_folder(root, index: int, level: str, kind: str, size: str) -> None:
    folder = root / f"index{index}"
    folder.mkdir()
    for name, text in (("level", level), ("type", kind), ("size", size)):
        (folder / name).write_text(text + "\n")


def test_the_l2_size_is_read_as_linux_reports_it(tmp_path):
    """The level-2 data or unified cache of Linux's ``cache/index*`` folders, its size in K or M;
    None where no such folder or no readable size is there."""
    from optim import _paths

    read = _paths.l2_cache_bytes.__wrapped__  # (uncached)
    _cache_folder(tmp_path, 0, "1", "Data", "48K")
    _cache_folder(tmp_path, 1, "1", "Instruction", "32K")
    _cache_folder(tmp_path, 2, "2", "Unified", "1024K")
    _cache_folder(tmp_path, 3, "3", "Unified", "32768K")
    assert read(str(tmp_path)) == 1 << 20
    (tmp_path / "index2" / "size").write_text("2M\n")
    assert read(str(tmp_path)) == 2 << 20
    (tmp_path / "index2" / "size").write_text("large\n")
    assert read(str(tmp_path)) is None
    assert read(str(tmp_path / "absent")) is None
    only_l1 = tmp_path / "l1"
    only_l1.mkdir()
    _cache_folder(only_l1, 0, "1", "Data", "48K")
    assert read(str(only_l1)) is None


@pytest.mark.parametrize("l2", [1 << 20, 2 << 20], ids=["1MiB-L2", "2MiB-L2"])
@pytest.mark.parametrize("name", ["Adam", "Adagrad", "RMSprop", "Adadelta"])
def test_tensors_in_rounds_of_either_size_give_torchs_bits(name, l2, monkeypatch):
    """A tensor cut into slices of a quarter block or of a whole one (the L2 decides, see
    ``optim._paths.list_slice``), and small tensors grouped up to half a block or an eighth of
    it (``list_group``), give torch's foreach bits either way (a block of 4096 here)."""
    import optim
    from optim import _base, _paths

    monkeypatch.setattr(_paths, "BLOCK", 4096)
    monkeypatch.setattr(_paths, "l2_cache_bytes", lambda: l2)
    rounds = []

    def recorded(*arguments):
        cut = _paths.blocked_rounds(*arguments)
        rounds.append([sum(map(torch.Tensor.numel, params)) for params, *_ in cut])
        return cut

    monkeypatch.setattr(_base, "blocked_rounds", recorded)
    generator = torch.Generator().manual_seed(0)
    sizes = [10_000, 7, 300, 300, 300, 300]
    start = [torch.randn(n, generator=generator) for n in sizes]
    results = []
    for make in (getattr(optim, name), getattr(torch.optim, name)):
        params = [p.clone().requires_grad_() for p in start]
        optimizer = make(
            params, lr=0.01, **({} if make is getattr(optim, name) else {"foreach": True})
        )
        for step in range(5):
            optimizer.zero_grad()
            sum(((p - 0.1 * step) ** 2 * torch.cos(p)).sum() for p in params).backward()
            optimizer.step()
        results.append([p.detach() for p in params])
    if l2 < _paths.ROUNDS_IN_L2_FROM:  # slices of 4096, groups of 2048
        expected = [4096, 4096, 1808, 7 + 4 * 300]
    else:  # slices of 1024, groups of 512
        expected = [1024] * 9 + [784, 7 + 300, 300, 300, 300]
    assert rounds
    assert all(cut == expected for cut in rounds)
    for ours, theirs in zip(*results):
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_device_scalar_takes_the_lists_dtype_off_the_cpu_only(device):
    """Off the CPU (``meta`` stands in for CUDA here), a 0-dim scalar of the other float dtype is
    cast to the list's, so torch's multi-tensor CUDA ops take their one-kernel route (a scalar of
    another dtype made them run a non-vectorised op per tensor: Prodigy on 4 tensors of 4M
    elements on an H200, 16 per step at twice the time; the bits were identical, checked there
    on every learning-rate-free class in float32). On a CPU the scalar is left as it is, and a
    bfloat16 list keeps a float64 scalar on any device (its kernels compute in float32)."""
    xs = [torch.zeros(3, device=device), torch.zeros(2, device=device)]
    scalar = torch.tensor(0.3, dtype=torch.float64, device=device)
    cast = ops.in_dtype_of(scalar, xs)
    assert cast.dtype == (torch.float64 if device == "cpu" else torch.float32)
    assert cast.device == scalar.device
    low = [torch.zeros(3, dtype=torch.bfloat16, device=device)]
    assert ops.in_dtype_of(scalar, low).dtype == torch.float64
    wide = [torch.zeros(3, dtype=torch.float64, device=device)]
    assert ops.in_dtype_of(scalar, wide) is scalar
