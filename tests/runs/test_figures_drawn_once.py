"""A figure is drawn once when it is saved (``schedulers.files.savefig_once``), its bytes those
matplotlib's own ``savefig`` writes."""

import io

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from runs import figures
from schedulers import plot as schedule_plot


def _laid_out_figure() -> Figure:
    figure, axes = plt.subplots(1, 2, figsize=(7, 3))
    for ax in axes:
        ax.plot([1, 2, 3], [1e-3, 1e-1, 1e1], label="a curve")
        ax.set_yscale("log")
        ax.legend()
    figure.suptitle("a title")
    figure.tight_layout()
    return figure


@pytest.mark.parametrize("save", ["runs.figures", "schedulers.plot"])
def test_a_laid_out_figure_is_drawn_once_and_written_as_savefig_writes_it(
    save, tmp_path, monkeypatch
):
    """After ``tight_layout``, matplotlib's ``savefig`` drew the whole figure twice (a layout
    pass for the placeholder engine ``tight_layout`` leaves, which lays out nothing): the
    figures of a report took about a sixth longer to write."""
    expected = io.BytesIO()
    reference = _laid_out_figure()
    reference.savefig(expected, format="png", dpi=110)
    plt.close(reference)

    draws = []
    draw = Figure.draw
    monkeypatch.setattr(
        Figure, "draw", lambda self, renderer: draws.append(1) or draw(self, renderer)
    )
    path = tmp_path / "figure.png"
    figure = _laid_out_figure()
    if save == "runs.figures":
        figures.save_figure(figure, path, layout=False)
    else:
        schedule_plot.save_figure(figure, path, dpi=110)
        plt.close(figure)
    assert len(draws) == 1
    assert path.read_bytes() == expected.getvalue()
