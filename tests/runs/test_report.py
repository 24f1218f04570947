"""The results table and the band statistics, against numbers computed here."""

from __future__ import annotations

import platform

import numpy as np
import torch

from runs.results import cpu_model, series_band, software_line, software_versions
from runs.summary import markdown_table, variant_rows


def _result(variant, seed, accuracy, loss, status="finished", steps=(0, 10), values=(1.0, 0.5)):
    final = {
        "test_accuracy": accuracy,
        "test_loss": loss,
        "train_loss": loss,
        "train_accuracy": accuracy,
    }
    return {
        "variant": variant,
        "seed": seed,
        "status": status,
        "diverged": {"step": 7, "value": float("nan")} if status == "diverged" else None,
        "final": final,
        "wall_time_s": 2.0,
        "history": {"eval": {"step": list(steps), "test_loss": list(values)}},
    }


def test_table_mean_and_sample_std_over_finished_seeds():
    results = [
        _result("a", 0, 0.50, 1.0),
        _result("a", 1, 0.70, 2.0),
        _result("a", 2, 0.10, float("nan"), status="diverged"),
        _result("b", 0, 0.25, 0.5),
    ]
    table = markdown_table(results)
    mean, std = 100 * np.mean([0.5, 0.7]), 100 * np.std([0.5, 0.7], ddof=1)
    assert (
        f"| a | 3 | {mean:.2f} ± {std:.2f} | 1.5000 ± {np.std([1.0, 2.0], ddof=1):.4f} |" in table
    )
    assert "seed 2 at step 7 (loss nan)" in table
    assert "| b | 1 | 25.00 | 0.5000 |" in table  # one seed: no spread shown
    rows = variant_rows(results)
    assert [r["finished"] for r in rows] == [2, 1]


def test_band_aligns_on_steps_and_ignores_non_finite_values():
    runs = [
        _result("a", 0, 0, 0, steps=(0, 10, 20), values=(3.0, 2.0, 1.0)),
        _result("a", 1, 0, 0, steps=(0, 10), values=(1.0, float("inf"))),
    ]
    steps, mean, std = series_band(
        runs, lambda r: (r["history"]["eval"]["step"], r["history"]["eval"]["test_loss"])
    )
    assert steps.tolist() == [0, 10, 20]
    np.testing.assert_allclose(mean, [2.0, 2.0, 1.0])
    np.testing.assert_allclose(std, [np.std([3.0, 1.0], ddof=1), 0.0, 0.0])


# ------------------------------------------------------------------------------------ figures
def _run(variant, seed, *, scale=1.0, status="finished", epochs=None, lr=(0.1, 0.001)):
    """A synthetic result with every series the figures draw (``scale`` multiplies the losses)."""
    steps = [0, 10, 20]
    loss = [scale * v for v in (2.0, 1.0, 0.5)]
    accuracy = [0.1, 0.5, 0.8]
    eval_ = {"step": steps, "test_loss": loss, "train_loss": loss}
    eval_ |= {"test_accuracy": accuracy, "train_accuracy": accuracy}
    train = {"epochs": epochs} if epochs else {"steps": 20}
    return {
        "variant": variant,
        "seed": seed,
        "status": status,
        "diverged": {"step": 15, "value": float("inf")} if status == "diverged" else None,
        "steps": 20,
        "config": {"name": variant, "train": train},
        "final": {m: eval_[m][-1] for m in eval_ if m != "step"},
        "wall_time_s": 1.0,
        "history": {
            "eval": eval_,
            "train_loss": {"step": list(range(20)), "value": [scale * 2.0] * 20},
            "hyper": {"hyper/lr/group0": {"step": [0, 10], "value": list(lr)}},
            "stats": {"step": [], "grad_norm": [], "update_ratio": []},
        },
    }


def _figures(results, tmp_path, monkeypatch):
    """The figures ``write_figures`` draws, by file name, before they are closed."""
    from runs import figures

    drawn = {}

    def keep(fig, path):
        drawn[path.name] = fig
        return path

    monkeypatch.setattr(figures, "save_figure", keep)
    figures.write_figures(results, tmp_path, "t")
    return drawn


def test_figures_label_the_band_show_percent_and_cut_diverged_runs(tmp_path, monkeypatch):
    results = [_run("a", 0), _run("a", 1, scale=1.1), _run("b", 0, scale=1e6, status="diverged")]
    drawn = _figures(results, tmp_path, monkeypatch)
    ax = drawn["test_accuracy.png"].axes[0]
    assert ax.get_ylabel() == "test accuracy (%)"
    assert max(max(line.get_ydata(), default=0) for line in ax.lines) == 80.0
    labels = ax.get_legend_handles_labels()[1]
    assert "shaded: mean ± std over seeds" in labels
    loss = drawn["test_loss.png"].axes[0]
    assert loss.get_ylim()[1] < 10  # not stretched to the diverged run's 1e6
    assert "diverged runs cut off above" in loss.get_legend_handles_labels()[1]
    assert drawn["schedules.png"].axes[0].get_yscale() == "log"  # 0.1 to 0.001


def test_coinciding_curves_get_distinct_styles_and_many_variants_get_panels(tmp_path, monkeypatch):
    results = [_run(f"v{i}", 0, lr=(0.1, 0.1)) for i in range(9)]
    drawn = _figures(results, tmp_path, monkeypatch)
    fig = drawn["test_loss.png"]
    assert len(fig.axes) == 2  # 9 variants: panels of 5 and 4
    styles = [line.get_linestyle() for line in fig.axes[0].lines if line.get_label() != "_"]
    assert len(set(styles[:4])) == 4  # identical curves, four styles
    assert drawn["schedules.png"].axes[0].get_yscale() == "linear"


def test_epoch_based_experiments_are_drawn_against_the_epoch(tmp_path, monkeypatch):
    drawn = _figures([_run("a", 0, epochs=2)], tmp_path, monkeypatch)
    ax = drawn["test_loss.png"].axes[0]
    assert ax.get_xlabel() == "epoch"
    assert list(ax.lines[0].get_xdata()) == [0.0, 1.0, 2.0]


def test_cpu_model_is_the_first_model_name_of_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14 96-Core\n\n"
        "processor\t: 1\nmodel name\t: another\n"
    )
    assert cpu_model(cpuinfo) == "AMD EPYC 9R14 96-Core"


def test_cpu_model_without_cpuinfo_is_the_platforms_processor_or_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    assert cpu_model(tmp_path / "absent") == "arm"
    (tmp_path / "empty").write_text("processor\t: 0\n")
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert cpu_model(tmp_path / "empty") == "unknown"


def test_software_records_the_cpu_and_torchs_kernels_and_the_run_line_names_them():
    software = software_versions()
    assert software["cpu"] == cpu_model()
    assert software["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()
    assert software_line(software) == (
        f"torch {software['torch']}, Python {software['python']}; "
        f"CPU: {software['cpu']} (torch's {software['cpu_kernels']} kernels)"
    )
    # A summary written before the CPU was recorded: the versions alone.
    assert software_line({"torch": "2.13.0", "python": "3.11.7"}) == "torch 2.13.0, Python 3.11.7"
