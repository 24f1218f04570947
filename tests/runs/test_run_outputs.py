"""What the runner writes, against an uninterrupted run or numbers found here: TensorBoard after a
resume, a run that diverges at its last update, the search table, the chart layout, the
experiment's wall time, ``stepsize score``'s README section and a result file without history."""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from runs.checkpoint import load_checkpoint
from runs.cli import main
from tests.runs.helpers import mlp_experiment, write_toml

# ------------------------------------------------------------------ TensorBoard after a resume
SCHEDULED = (
    mlp_experiment("tb", logging=True)
    + """momentum = 0.9

[[variants]]
name = "cos"
schedules = {lr = {name = "cosine_decay", learning_rate = 0.1, decay_steps = 24}}
"""
)

# The run, trained by ``train_run`` in a child process, is killed (SIGKILL) either at the
# evaluation of step 20, after the checkpoint of step 10 and the flush of step 14 (so the killed
# session wrote events after the checkpoint, which the resume must hide), or right after the final
# checkpoint (step 24), before result.json.
KILL = """
import os, signal, sys, tomllib
from pathlib import Path
import runs.trainer as trainer
from runs.data import load_dataset
from runs.load import parse_experiment
import torch
torch.set_num_threads(1)  # (as stepsize run trains: --threads 1)
toml, run_dir, where = sys.argv[1:]
variant = parse_experiment(tomllib.loads(Path(toml).read_text()), toml).variants[0]
if where == "eval20":
    original, calls = trainer.eval_metrics, []
    def eval_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)
    trainer.eval_metrics = eval_then_die
else:
    save = trainer.ckpt.save_checkpoint
    def save_then_die(run_dir, state):
        save(run_dir, state)
        if state["step"] == 24:
            os.kill(os.getpid(), signal.SIGKILL)
    trainer.ckpt.save_checkpoint = save_then_die
trainer.train_run(variant, 0, load_dataset("mnist1d"), run_dir)
"""


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of a run as TensorBoard reads it (purges applied): tag -> (step,
    value) pairs."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


@pytest.mark.parametrize(("where", "checkpoint"), [("eval20", 10), ("final", 24)])
def test_a_resumed_run_shows_in_tensorboard_what_an_uninterrupted_run_shows(
    tmp_path, mnist1d_cache, where, checkpoint
):
    """TensorBoard's purge at the resume step drops every earlier event at that step, the
    evaluation and the next update's hyperparameters logged before the checkpoint included (and,
    resumed from the final checkpoint, the final evaluation): they must be written again."""
    from runs.data import load_dataset
    from runs.load import parse_experiment
    from runs.trainer import train_run

    toml = write_toml(tmp_path / "tb.toml", SCHEDULED)
    run_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    killed = subprocess.run(
        [sys.executable, "-c", KILL, str(toml), str(run_dir), where],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    assert load_checkpoint(run_dir)["step"] == checkpoint
    assert not (run_dir / "result.json").exists()
    variant = parse_experiment(tomllib.loads(SCHEDULED), str(toml)).variants[0]
    data = load_dataset("mnist1d")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (as in the killed process)
    try:
        resumed_result = train_run(variant, 0, data, run_dir)  # resumes from the checkpoint
        clean_result = train_run(variant, 0, data, clean_dir)  # never interrupted
    finally:
        torch.set_num_threads(threads)
    assert resumed_result["history"] == clean_result["history"]
    clean, resumed = _scalars(clean_dir), _scalars(run_dir)
    assert {"eval/test_accuracy", "hyper/lr/group0", "stats/grad_norm"} <= set(clean)
    assert [s for s, _ in clean["hyper/lr/group0"]] == list(range(24))  # the cosine: each update
    assert [s for s, _ in clean["eval/test_loss"]] == [0, 10, 20, 24]
    assert sorted(resumed) == sorted(clean)
    for tag in clean:
        assert resumed[tag] == clean[tag], tag


# -------------------------------------------------------- divergence at the last update
LAST_UPDATE = (
    mlp_experiment("last", 1, 1)
    + """
[[variants]]
name = "ok"

[[variants]]
name = "big"
optimizer = {lr = 1e30}

[[variants]]
name = "big-longer"
optimizer = {lr = 1e30}
train = {steps = 2}
"""
)


def _hparams_statuses(run_dir: Path) -> list[int]:
    """The HParams session-end statuses of a run's event files (1 success, 2 failure)."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    statuses = []
    for path in run_dir.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(
                        value.metadata.plugin_data.content
                    )
                    if data.HasField("session_end_info"):
                        statuses.append(data.session_end_info.status)
    return statuses


def test_a_run_whose_last_update_diverges_is_diverged_at_that_step(tmp_path):
    """lr = 1e30: the one update makes the weights non-finite. No later mini-batch loss checks
    them; the final evaluation does, and the run is diverged at step 1, as the same run given
    one more update is diverged at step 1 by the mini-batch loss check."""
    toml = write_toml(tmp_path / "last.toml", LAST_UPDATE)
    assert main(["run", str(toml), "--logdir", str(tmp_path), "--quiet"]) == 0
    root = tmp_path / "last"

    def result(variant):
        return json.loads((root / variant / "seed0" / "result.json").read_text())

    ok, big, longer = result("ok"), result("big"), result("big-longer")
    assert ok["status"] == "finished"
    assert ok["diverged"] is None
    assert longer["status"] == "diverged"
    assert longer["diverged"]["step"] == 1  # the mini-batch loss check, at the second update
    evals = big["history"]["eval"]
    assert evals["step"] == [0, 1]
    assert evals["train_loss"][1] is None  # a non-finite loss, as strict JSON writes it
    assert big["status"] == "diverged"
    assert big["diverged"]["step"] == 1
    assert not math.isfinite(float(big["diverged"]["value"]))
    assert set(big["final"].values()) == {None}
    assert math.isfinite(big["best"]["train_loss"])  # (the evaluation at step 0)
    row = next(r for r in (root / "summary.md").read_text().splitlines() if r.startswith("| big |"))
    assert "diverged: seed 0 at step 1 (loss " in row
    assert _hparams_statuses(root / "big" / "seed0") == [2]  # failure
    assert _hparams_statuses(root / "ok" / "seed0") == [1]


# ----------------------------------------------------------------------------- search table
def test_the_search_table_shows_a_run_without_a_finite_metric_as_diverged():
    from runs.summary import search_table

    search = {
        "metric": "train_loss",
        "chosen": {"v": 0.1},
        "grid": {
            "v": [
                {"lr": 0.1, "status": "finished", "value": 0.5},
                {"lr": 1.0, "status": "finished", "value": None},  # null in search.json
                {"lr": 10.0, "status": "finished", "value": float("inf")},
                {"lr": 100.0, "status": "diverged", "value": None},
            ]
        },
    }
    row = search_table(search).splitlines()[2]
    # († : 0.1 is the smallest rate of the grid, so the best may lie below it)
    assert row == "| v | **0.5000** † | diverged | diverged | diverged |"


SEARCH = (
    mlp_experiment("search", 4, 2)
    + """
[search]
lr = [0.1, 1e30]
metric = "train_loss"
train = {steps = 1, eval_every = 1}

[[variants]]
name = "sgd"
"""
)


def test_a_search_whose_run_diverges_at_its_last_update_writes_its_report(tmp_path, capsys):
    """The 1e30 search run diverges at its one update; the report used to format its missing
    final loss as a number and fail after all the training."""
    toml = write_toml(tmp_path / "search.toml", SEARCH)
    assert main(["run", str(toml), "--logdir", str(tmp_path), "--quiet"]) == 0, (
        capsys.readouterr().err
    )
    summary = (tmp_path / "search" / "summary.md").read_text()
    assert "| variant | lr 0.1 | lr 1e+30 |" in summary
    assert "| diverged |" in summary.split("| variant | lr 0.1 | lr 1e+30 |")[1]
    search = json.loads((tmp_path / "search" / "search.json").read_text())
    assert search["chosen"] == {"sgd": 0.1}


# ----------------------------------------------------------------------------- chart layout
LAYOUT = (
    mlp_experiment("layout", 4, 2)
    + """
[[variants]]
name = "plain"

[[variants]]
name = "mom-sched"
optimizer = {momentum = 0.9}
schedules = {momentum = {name = "constant", value = 0.5}}

[[variants]]
name = "prodigy"
optimizer = {name = "optim.Prodigy", lr = 1.0}
"""
)


def _layouts(folder: Path) -> list[dict[str, list[str]]]:
    """Each layout file of ``folder``: category title -> chart titles."""
    from tensorboard.plugins.custom_scalar import layout_pb2

    found = []
    for path in sorted(folder.glob("events.out.tfevents.*.layout")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "custom_scalars":
                    layout = layout_pb2.Layout.FromString(value.tensor.string_val[0])
                    found.append({c.title: [ch.title for ch in c.chart] for c in layout.category})
    return found


def test_the_chart_layout_covers_the_variants_a_later_command_runs(tmp_path):
    """``--variants plain`` first (it schedules nothing, its optimizer has no own step size),
    then every variant: the layout must chart the scheduled momentum and Prodigy's step size,
    in one layout file."""
    toml = write_toml(tmp_path / "layout.toml", LAYOUT)
    args = ["run", str(toml), "--logdir", str(tmp_path), "--quiet"]
    assert main([*args, "--variants", "plain"]) == 0
    assert main(args) == 0
    (layout,) = _layouts(tmp_path / "layout")
    assert layout["hyperparameters"] == ["lr", "momentum", "step_size"]
    logged = set()
    for variant in ("plain", "mom-sched", "prodigy"):
        run = json.loads((tmp_path / "layout" / variant / "seed0" / "result.json").read_text())
        logged |= {tag.split("/")[1] for tag in run["history"]["hyper"]}
    assert logged == {"lr", "momentum", "step_size"}  # what the runs log, every key charted


def test_a_layout_file_left_empty_by_a_killed_command_is_replaced(tmp_path):
    from runs.tensorboard import write_layout

    empty = tmp_path / "events.out.tfevents.1.host.1.0.layout"
    empty.write_bytes(b"")  # what a process killed while writing it leaves
    write_layout(tmp_path, ["lr"])
    write_layout(tmp_path, ["lr", "momentum"])
    assert not empty.exists()
    (layout,) = _layouts(tmp_path)
    assert layout["hyperparameters"] == ["lr", "momentum"]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("events")) == []


# ---------------------------------------------------------------------------- wall time
WALL = (
    mlp_experiment("wall", 4, 2)
    + """
[[variants]]
name = "a"

[[variants]]
name = "b"
optimizer = {momentum = 0.9}
"""
)


def test_the_wall_time_is_the_sum_over_the_commands_that_trained(tmp_path):
    """Two commands trained (``--variants a``, then ``b``); a third found everything finished.
    With one job, each command's time holds its runs' training times, so the total holds every
    run's; the third command adds nothing."""
    toml = write_toml(tmp_path / "wall.toml", WALL)
    args = ["run", str(toml), "--logdir", str(tmp_path), "--quiet"]
    root = tmp_path / "wall"

    def recorded():
        meta = json.loads((root / "experiment.json").read_text())
        summary = json.loads((root / "summary.json").read_text())
        assert summary["wall_time_s"] == meta["wall_time_s"]
        return meta["wall_time_s"], {r["variant"]: r["wall_time_s"] for r in summary["runs"]}

    assert main([*args, "--variants", "a"]) == 0
    first, runs = recorded()
    assert first >= runs["a"] > 0
    assert main(args) == 0  # trains b
    total, runs = recorded()
    assert total - first >= runs["b"] > 0  # the second command's own time, added
    assert total >= runs["a"] + runs["b"]
    assert main(args) == 0  # nothing to train: only the report is rewritten
    assert recorded()[0] == total


# ------------------------------------------------------------------- result without history
HISTORY = WALL.replace('name = "wall"', 'name = "hist"')


@pytest.mark.parametrize(
    ("history", "named"),
    [(None, "result lacks history"), ({"eval": {}}, "history.eval.step must be a list")],
)
def test_a_result_without_its_history_is_named_with_what_to_do(tmp_path, capsys, history, named):
    toml = write_toml(tmp_path / "hist.toml", HISTORY)
    assert main(["run", str(toml), "--logdir", str(tmp_path), "--quiet"]) == 0
    root = tmp_path / "hist"
    path = root / "b" / "seed0" / "result.json"
    data = json.loads(path.read_text())
    if history is None:
        del data["history"]
    else:
        data["history"] = history
    path.write_text(json.dumps(data))
    before = (root / "summary.md").read_bytes()
    capsys.readouterr()
    assert main(["report", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"stepsize: error: {path}: {named}")
    assert err.rstrip().endswith("delete it to run this run again")
    assert (root / "summary.md").read_bytes() == before  # nothing written


# ------------------------------------------------------------------------- stepsize score
SUBMISSION = """
[[submissions]]
name = "gd"
optimizer = {name = "sgd", lr = "$lr"}
hyperparameters = {lr = 1.0}
search = {lr = {choice = [1.0]}}
"""
SELF_ONLY = """
[[submissions]]
name = "gd-self"
optimizer = {name = "sgd", lr = 1.0}
"""


def test_the_score_readme_section_says_which_options_ran(tmp_path, capsys):
    subs = tmp_path / "subs.toml"
    subs.write_text(SUBMISSION)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- score:begin -->\n<!-- score:end -->\n")
    code = main([
        "score", "--quick", "--only-file", "--submissions", str(subs), "--workloads", "quadratic",
        "--ruleset", "self", "--logdir", str(tmp_path / "logs"), "--readme", str(readme),
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    lines = readme.read_text().splitlines()
    run = next(line for line in lines if line.startswith("*Run:*"))
    command = (
        f"stepsize score --quick --submissions {shlex.quote(str(subs))} --only-file "
        "--workloads quadratic --ruleset self --jobs 1"
    )
    assert run.startswith(f"*Run:* `{command}`; 1 study x 2 trials; ")
    sentence = next(line for line in lines if line.startswith("Time-to-target"))
    assert "`subs.toml` alone" in sentence
    assert "`quadratic`" in sentence
    assert "MNIST-1D" not in sentence
    assert "--quick" in sentence
    assert sentence.endswith("self-tuning only.")


def test_the_default_score_readme_section_is_unchanged():
    """The built-in benchmark's section (what the README holds) reads as before."""
    from runs.score_report import readme_section
    from runs.score_workloads import WORKLOADS

    results = {
        "settings": {"rulesets": ["external", "self"], "studies": 3, "trials": 4, "seed": 0,
                     "jobs": 2, "tau_max": 4.0, "self_tuning_budget": 3, "quick": False,
                     "submissions_file": None, "only_file": False},
        "workloads": [{"name": w.name, "target_text": "t", "budget": 1, "eval_every": 1,
                       "description": "d"} for w in WORKLOADS],
        "rulesets": {r: {"submissions": [], "times": {}, "score_steps": {}, "score_seconds": {}}
                     for r in ("external", "self")},
        "wall_time_s": 78.0,
        "software": {"torch": "2", "python": "3"},
    }  # fmt: skip
    results["rulesets"]["external"]["submissions"] = results["rulesets"]["self"]["submissions"]
    section = readme_section(results, "docs/results/score.png")
    assert (
        "Time-to-target scoring and performance profiles (AlgoPerf: Dahl et al. 2023, "
        "arXiv:2306.07179) on MNIST-1D and two convex problems, external tuning and "
        "self-tuning.\n" in section
    )
    assert "*Run:* `stepsize score --jobs 2`; 3 studies x 4 trials; 1.3 min wall time; " in section


@pytest.mark.parametrize("ruleset", ["external", "both"])
def test_score_refuses_external_tuning_when_no_submission_has_a_search_space(
    tmp_path, capsys, ruleset
):
    subs = tmp_path / "self_only.toml"
    subs.write_text(SELF_ONLY)
    logs = tmp_path / "logs"
    code = main([
        "score", "--quick", "--only-file", "--submissions", str(subs), "--workloads", "quadratic",
        "--ruleset", ruleset, "--logdir", str(logs),
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith(f"stepsize: error: --ruleset {ruleset}: no submission declares a search")
    assert "--ruleset self" in err
    assert not logs.exists()  # refused before anything was written


def test_score_api_refuses_external_tuning_when_no_submission_has_a_search_space():
    from runs.score import score
    from runs.score_submissions import Submission
    from runs.score_workloads import BY_NAME

    sub = Submission("gd-self", {"name": "sgd", "lr": 1.0})
    with pytest.raises(ValueError, match=r"^rulesets=\('external',\): no submission declares"):
        score([sub], [BY_NAME["quadratic"].quick()], rulesets=("external",))
