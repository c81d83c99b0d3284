import math

import matplotlib.pyplot as plt
import numpy as np
import pytest

from gradtext import plots
from gradtext.train import History


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _crosses(ax):
    return [line for line in ax.lines if line.get_marker() == "x"]


def test_plot_loss_marks_the_nonfinite_step_instead_of_dropping_it():
    healthy = History(loss=[1.0, 0.5, 0.25])
    exploded = History(loss=[1.0, 10.0, 1e4, math.inf, math.nan])
    ax = plots.plot_loss({"healthy": healthy, "exploding": exploded})
    assert ax.get_yscale() == "log"
    crosses = _crosses(ax)
    assert len(crosses) == 1
    np.testing.assert_array_equal(crosses[0].get_xdata(), [3, 4])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["healthy", "exploding", "NaN/Inf"]


def test_plot_grad_norm_draws_each_history():
    ax = plots.plot_grad_norm({"a": History(grad_norm=[1.0, 2.0]), "b": History(grad_norm=[3.0])})
    assert len(ax.lines) == 2 and ax.get_yscale() == "log"
    assert not _crosses(ax)


def test_plot_layer_norms_numbers_layers_from_one():
    ax = plots.plot_layer_norms({"x": [1e-3, 1e-2, np.inf]})
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2])
    assert _crosses(ax)[0].get_xdata().tolist() == [3]


def test_mark_nonfinite_counts():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 2])
    assert plots.mark_nonfinite(ax, np.arange(4), [1.0, np.nan, 2.0, -np.inf]) == 2


def test_use_style_sets_the_book_style():
    plots.use_style()
    assert plt.rcParams["axes.spines.top"] is False


def _empty_monitor():
    import torch

    from gradtext.monitor import GradientMonitor

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh(), torch.nn.Linear(2, 1))
    return GradientMonitor(model)


def test_plots_of_a_monitor_that_recorded_nothing_say_so():
    monitor = _empty_monitor()
    figures = len(plt.get_fignums())
    with pytest.raises(ValueError, match="values has no steps.*nothing was recorded yet"):
        plots.plot_layer_heatmap(monitor.grad_norms(), layer_names=monitor.layer_names,
                                 steps=monitor.steps)
    with pytest.raises(ValueError, match="ratios has no steps.*nothing was recorded yet"):
        plots.plot_update_ratios(monitor.update_ratios(), layer_names=monitor.layer_names)
    with pytest.raises(ValueError, match="nothing was recorded yet"):
        plots.plot_layer_histograms(monitor.last_activations())
    with pytest.raises(ValueError, match="no layers"):
        plots.plot_layer_heatmap(np.zeros((3, 0)))
    assert len(plt.get_fignums()) == figures  # no empty figure left behind


def test_layer_heatmap_and_update_ratios_draw_one_recorded_step():
    ax = plots.plot_layer_heatmap(np.array([[1e-3, 1.0]]), layer_names=["a", "b"])
    assert ax.get_ylabel() == "layer"
    ax = plots.plot_update_ratios(np.array([[1e-3, 1e-4]]))
    assert ax.get_yscale() == "log"


def test_bad_steps_or_layer_names_are_named_and_leave_no_figure():
    figures = len(plt.get_fignums())
    with pytest.raises(ValueError, match="steps has 3 entries for 2 rows"):
        plots.plot_update_ratios(np.ones((2, 2)), steps=[0, 1, 2])
    with pytest.raises(ValueError, match="steps has 3 entries for 2 rows"):
        plots.plot_layer_heatmap(np.ones((2, 2)), steps=[0, 1, 2])
    with pytest.raises(ValueError, match="layer_names has 1 names for 2 layers"):
        plots.plot_layer_heatmap(np.ones((2, 2)), layer_names=["a"])
    assert len(plt.get_fignums()) == figures


def _triangles(ax):
    return [line for line in ax.lines if line.get_marker() == "v"]


def test_zeros_on_a_log_scale_are_marked_not_dropped():
    # a gradient that vanished to exactly 0 cannot sit on a log axis: it is marked at the bottom
    ax = plots.plot_grad_norm(History(grad_norm=[1.0, 1e-3, 0.0, 0.0]))
    marks = _triangles(ax)
    assert len(marks) == 1 and marks[0].get_xdata().tolist() == [2, 3]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["≤ 0 (off the log scale)"]
    ax = plots.plot_layer_norms([1e-2, 1e-5, 0.0])
    assert _triangles(ax)[0].get_xdata().tolist() == [3]
    ax = plots.plot_loss(History(loss=[1.0, 0.0]))
    assert _triangles(ax)[0].get_xdata().tolist() == [1]
    ax = plots.plot_update_ratios(np.array([[1e-3, 0.0], [2e-3, 1e-4]]))
    assert _triangles(ax)[0].get_xdata().tolist() == [0]
    assert not _triangles(plots.plot_loss(History(loss=[1.0, 0.0]), log=False))
