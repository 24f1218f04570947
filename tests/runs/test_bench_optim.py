"""The optimizer benchmark runs end to end and reports every implementation (no timing asserted)."""

import subprocess
import sys

import pytest
import torch

import optim
from runs.bench.optim import Shape, _params, new_gradients, parse_model
from runs.results import cpu_model


def test_bench_optim_prints_a_row_per_optimizer_and_model():
    proc = subprocess.run(
        [sys.executable, "-m", "runs", "bench", "optim", "--optimizers", "SGD,RMSprop",
         "--models", "3x1k,20x5,3g2x5", "--repeat", "1", "--no-compile", "--threads", "2"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| SGD") or
            line.startswith("| RMSprop")]  # fmt: skip
    assert len(rows) == 6
    assert "GB/s" in proc.stdout
    assert "load average" in proc.stdout
    assert "caches (cpu0): " in proc.stdout
    # The machine: tables from two CPUs are not comparable row for row.
    kernels = torch.backends.cpu.get_cpu_capability()
    assert proc.stdout.splitlines()[0].endswith(f"; CPU: {cpu_model()} (torch's {kernels} kernels)")
    assert "n/a" in next(r for r in rows if r.startswith("| RMSprop"))  # torch has no fused RMSprop
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| optimizer"))
    floor = header.split(" | ").index("packed floor")
    floors = {r.split(" | ")[1]: r.split(" | ")[floor] for r in rows if r.startswith("| SGD")}
    assert floors["3x1k"] == floors["3g2x5"] == "n/a"  # (fewer tensors than our path packs)
    assert float(floors["20x5"]) > 0
    handoff = header.split(" | ").index("thread handoff")
    # (measured in every row: two threads; one would read n/a, no thread reading another's)
    assert all(r.split(" | ")[handoff].endswith("x") for r in rows)


def test_packed_floor_reads_every_gradient_and_writes_every_parameter():
    """The floor's two passes: each round's gradients gathered in order, each parameter written
    once (its version counter moves) and left as it was (the update is zeros)."""
    from runs.bench.optim import PackedFloor

    params = _params(parse_model("3g40x300"))
    before = [p.detach().clone() for g in params for p in g["params"]]
    versions = [p._version for g in params for p in g["params"]]
    floor = PackedFloor(params)
    floor.step()
    after = [p.detach() for g in params for p in g["params"]]
    assert all(torch.equal(a, b) for a, b in zip(after, before))
    assert [p._version for g in params for p in g["params"]] == [v + 1 for v in versions]
    last_round = floor.groups[-1][-1]
    tensors, grad = last_round[0], last_round[1]
    assert torch.equal(grad, torch.cat([t.grad for t in tensors]))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_handoff_differs_only_in_which_thread_reads_what(threads):
    """Both steps do the same work on the same data: the state ends with the same values, laid
    out apart. ``kept`` puts the ``t``-th chunk of every source in row ``t`` of the scratch, the
    chunk that thread ``t`` reads in the op over it; ``crossed`` puts the sources one after the
    other, as the packed path's gather does. Each source splits into exactly ``threads``
    chunks of torch's grain."""
    from optim._paths import TORCH_GRAIN
    from runs.bench.optim import ThreadHandoff

    probe = ThreadHandoff(rounds=2, threads=threads)
    sources = probe.rounds[-1]
    assert all(s.numel() == threads * TORCH_GRAIN for s in sources)
    probe.crossed()
    assert torch.equal(probe.scratch, torch.cat(sources))
    crossed = probe.state.clone()
    probe.state.zero_()
    probe.kept()
    rows = probe.scratch.view(threads, -1)
    for t in range(threads):
        chunks = [s[t * TORCH_GRAIN : (t + 1) * TORCH_GRAIN] for s in sources]
        assert torch.equal(rows[t], torch.cat(chunks))
    assert torch.equal(probe.state, crossed) == (threads == 1)  # (one thread: one row)
    assert torch.equal(probe.state.sort().values, crossed.sort().values)
    assert torch.equal(crossed[-1], torch.cat(sources) ** 2)


@pytest.mark.parametrize("model", ["20x5", "20x3k", "3x5"])
@pytest.mark.parametrize("name", ["SGD", "Adam", "Adadelta"])
def test_the_floor_is_measured_where_our_default_path_packs(name, model):
    """``packs`` agrees with what the optimizer does: a packed layout after two steps."""
    from optim._paths import Packed
    from runs.bench.optim import OPTIMIZERS, packs

    optimizer = getattr(optim, name)(_params(parse_model(model)), **OPTIMIZERS[name][0])
    optimizer.step()
    optimizer.step()
    packed = any(isinstance(x, Packed) for xs in optimizer._layouts.values() for x in xs)
    assert packs(name, parse_model(model)) == packed


def test_model_shapes_parse_and_bad_ones_are_named():
    assert parse_model("4x4M") == Shape(count=4, numel=4_000_000, groups=1)
    assert parse_model("8x2k") == Shape(count=8, numel=2_000, groups=1)
    assert parse_model("300g2x1k") == Shape(count=2, numel=1_000, groups=300)
    assert parse_model("300g2x1k").elements == 600_000
    for bad in ("4by4", "g1x1k", "0g1x1k", "2gg1x1k"):
        with pytest.raises(ValueError, match=repr(bad)):
            parse_model(bad)


@pytest.mark.parametrize("bad", ["4x4Mk", "4x1kM", "4x4kk"])
def test_a_stacked_size_suffix_is_refused(bad):
    """Before: the multiplier came from the last letter and every trailing k or M was stripped,
    so "4x4Mk" timed 4 tensors of 4k under the label "4x4Mk"."""
    with pytest.raises(ValueError, match=repr(bad)):
        parse_model(bad)


def test_grouped_shapes_give_per_layer_learning_rates():
    groups = _params(parse_model("3g2x5"), lr=0.1)
    assert [len(g["params"]) for g in groups] == [2, 2, 2]
    assert [g["lr"] for g in groups] == [0.1, 0.1 * 0.99, 0.1 * 0.99**2]
    assert all(p.grad is not None and p.numel() == 5 for g in groups for p in g["params"])
    assert "lr" not in _params(parse_model("3g2x5"))[0]  # shared (the lr-free packages)


def _refused(*options: str) -> str:
    """``stepsize bench optim`` with ``options``, which it must refuse: one line on stderr, no
    traceback, exit 2. Returns stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "runs", "bench", "optim", *options],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_unknown_optimizer_and_device_are_one_line_and_exit_2():
    assert "Lion" in _refused("--optimizers", "Lion")
    assert "--device: 'tpu'" in _refused("--device", "tpu")


def test_peak_temporaries_counts_new_tensors_not_views_or_in_place_results():
    from runs.bench.optim import _PeakTemporaries

    x = torch.ones(1000)
    with _PeakTemporaries() as counter:
        y = x * 2  # 4000 bytes
        del y
        z = x + 1  # another 4000, but y is gone: the peak stays 4000
        z.add_(1)  # in place: nothing new
        z.view(10, 100)  # a view: nothing new
        w = torch.cat([x, x])  # 8000 while z (4000) lives: peak 12000
    assert counter.peak == 12000
    del z, w


def test_new_gradients_gives_other_tensors_each_time_and_the_flag_runs_end_to_end():
    groups = _params(parse_model("2g3x4"), lr=0.1)
    params = [p for g in groups for p in g["params"]]
    give = new_gradients(groups)
    seen = []
    for _ in range(3):
        give()
        grads = [p.grad for p in params]
        assert all(g.shape == p.shape for g, p in zip(grads, params))
        seen.append(grads)
    assert all(a is not b for a, b in zip(seen[0], seen[1]))  # new tensors every call
    assert not any(torch.equal(a, b) for a, b in zip(seen[0], seen[1]))
    proc = subprocess.run(
        [sys.executable, "-m", "runs", "bench", "optim", "--optimizers", "Adam",
         "--models", "3x1k", "--repeat", "1", "--no-compile", "--new-grads"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "gradients: new tensors before each step" in proc.stdout
    assert sum(line.startswith("| Adam") for line in proc.stdout.splitlines()) == 1


def test_lr_free_bench_gives_new_gradients_too():
    """Smoke test: --new-grads reaches the learning-rate-free bench, whose three variants run."""
    pytest.importorskip("dog")  # (the reference extra)
    from runs.bench.optim import measure_lr_free

    ms = measure_lr_free("DoG", "3x1k", repeat=1, new_grads=True)
    assert set(ms) == {"reference", "ours default", "ours flat"}
    assert all(value > 0 for value in ms.values())


def test_kept_bytes_counts_the_scratch_an_optimizer_keeps_beyond_its_state():
    """The packed default path keeps three scratch buffers of one round (gathered gradients,
    the update, and the square roots its rule writes, ``optim._paths.RoundTemporaries``) from
    its second step on; torch's fused Adam keeps nothing beyond its state."""
    import optim
    from optim._paths import PACK_AT_LEAST, Packed
    from runs.bench.optim import kept_bytes

    shape = Shape(count=PACK_AT_LEAST + 4, numel=1000)  # (a round of 20k elements)
    optimizer = optim.Adam(_params(shape), lr=1e-3)
    for _ in range(3):
        optimizer.step()
    (packed,) = optimizer._layouts[0]
    assert isinstance(packed, Packed)
    (block,) = optimizer._round_temporaries.blocks.values()
    scratch = (packed.grad.numel() + packed.work.numel() + block.numel()) * 4
    assert block.numel() == packed.grad.numel() > 0
    kept = kept_bytes(lambda ps: optim.Adam(ps, lr=1e-3), shape, None)
    assert kept == pytest.approx(scratch, abs=1024)  # (the step vector's few bytes besides)
    assert kept_bytes(lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True), shape, None) == 0


def test_cache_line_reads_the_data_caches_and_says_when_there_are_none(tmp_path):
    from runs.bench.optim import _cache_line

    for name, level, kind, size in [
        ("index0", 1, "Data", "48K"),
        ("index1", 1, "Instruction", "32K"),
        ("index2", 2, "Unified", "2048K"),
    ]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "level").write_text(f"{level}\n")
        (folder / "type").write_text(f"{kind}\n")
        (folder / "size").write_text(f"{size}\n")
    assert _cache_line(str(tmp_path)) == "caches (cpu0): L1 48K, L2 2048K"
    assert _cache_line(str(tmp_path / "absent")) == "caches (cpu0): not reported by this OS"


def test_instances_are_built_apart_and_their_times_pooled_under_one_label():
    """Smoke test of the plumbing (no timing asserted): each instance has tensors of its own,
    and the round-robin reports one median per variant."""
    from runs.bench.optim import _build, _round_robin_ms

    variants = {"a": lambda ps: optim.SGD(ps, lr=0.1), "b": lambda ps: torch.optim.SGD(ps, lr=0.1)}
    optimizers, before = _build(variants, parse_model("3x5"), 0.1, new_grads=True, instances=2)
    assert sorted(optimizers) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    tensors = [opt.param_groups[0]["params"][0] for opt in optimizers.values()]
    assert len({id(t) for t in tensors}) == 4
    steps = {key: opt.step for key, opt in optimizers.items()}
    medians = _round_robin_ms(steps, repeat=2, before=before)
    assert sorted(medians) == ["a", "b"]
    assert all(ms >= 0 for ms in medians.values())


@pytest.mark.parametrize("device", ["tpu", "cuda"])
def test_a_device_the_bench_cannot_use_is_one_line_and_exit_2(device, monkeypatch):
    """``--device`` takes cpu or cuda; cuda where torch sees no GPU is refused before anything is
    measured, naming the option and what is allowed."""
    import argparse

    from runs.bench import optim as bench

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--device", device])
    with pytest.raises(ValueError, match=f"--device: '{device}'.*allowed: cpu") as error:
        bench.check_args(args)
    assert "\n" not in str(error.value)  # (and in a real process: the test above)


def test_alone_times_each_variant_in_a_process_of_its_own_with_its_page_faults():
    """Smoke test of ``--alone``: a row per optimizer and model, every variant timed (each in a
    fresh process), and the page-fault cells filled (counted on this OS) or n/a (not)."""
    proc = subprocess.run(
        [sys.executable, "-m", "runs", "bench", "optim", "--alone", "--optimizers", "SGD",
         "--models", "20x5", "--repeat", "2", "--instances", "1", "--no-compile"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "alone: each variant the only optimizer of a fresh process" in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| SGD")]
    assert len(rows) == 1
    cells = rows[0].strip("| ").split(" | ")
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| optimizer"))
    columns = header.strip("| ").split(" | ")
    assert len(cells) == len(columns)
    for label in ("torch single", "torch foreach", "torch fused", "ours default", "ours flat"):
        assert float(cells[columns.index(label)]) > 0
    assert cells[columns.index("ours flat+compile")] == "n/a"
    faults = cells[-1].split(" / ")
    assert len(faults) == 3
    assert all(cell == "n/a" or int(cell) >= 0 for cell in faults)


def test_time_alone_returns_every_timed_step_and_its_page_faults():
    """``time_alone`` in this process: ``repeat`` step times, and as many fault counts (None
    where the OS counts none); the learning-rate-free kind builds the package's optimizer."""
    from runs.bench.optim import time_alone

    timed = time_alone("classic", "Adam", "ours default", "20x5", repeat=4, new_grads=True)
    assert len(timed["ms"]) == len(timed["faults"]) == 4
    assert all(ms > 0 for ms in timed["ms"])
    assert all(f is None or f >= 0 for f in timed["faults"])
    pytest.importorskip("dog")  # (the reference extra)
    timed = time_alone("lr-free", "DoG", "reference", "3x10", repeat=2)
    assert len(timed["ms"]) == 2


def test_minor_faults_count_the_first_touch_of_new_memory():
    """The fault count the ``--alone`` table reports moves when a process first writes memory
    the OS has just mapped (an anonymous ``mmap`` of its own: a 64 MiB tensor came, in a worker
    whose earlier tests had left a freed block that large in glibc's heap, from memory already
    touched, and no fault was counted)."""
    import mmap

    from runs.bench.optim import _minor_faults

    before = _minor_faults()
    if before is None:
        pytest.skip("this OS counts no minor page faults")
    with mmap.mmap(-1, 1 << 24) as fresh:
        for offset in range(0, len(fresh), mmap.PAGESIZE):
            fresh[offset] = 1
        assert _minor_faults() > before
