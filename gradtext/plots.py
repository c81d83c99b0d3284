"""The book's figures as functions: log scales where magnitudes span decades, one style, and
non-finite values drawn (a red cross at the top edge) instead of silently dropped.

Every function takes an optional matplotlib ``ax`` and returns the ``Axes`` it drew on.

>>> import matplotlib
>>> matplotlib.use("Agg")
>>> from gradtext.train import History
>>> ax = plot_loss(History(loss=[1.0, 0.5, float("nan")]))
>>> ax.get_yscale()
'log'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from gradtext.train import History

NONFINITE_COLOR = "#d62728"
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def use_style() -> None:
    """Apply the book's matplotlib style (readable sizes, light grid, no top/right spines)."""
    plt.rcParams.update(
        {
            "figure.figsize": (6.4, 3.6),
            "figure.dpi": 100,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": plt.cycler(color=PALETTE),
            "legend.frameon": False,
            "font.size": 10,
        }
    )


def _axes(ax: Axes | None) -> Axes:
    return ax if ax is not None else plt.subplots()[1]


def mark_nonfinite(ax: Axes, x: np.ndarray, y: np.ndarray, *, label: str | None = "NaN/Inf") -> int:
    """Draw a red cross at the top of ``ax`` wherever ``y`` is NaN or infinite.

    Returns how many points were marked. Call it after the finite data are drawn, so that the
    top edge is known.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    bad = ~np.isfinite(y)
    if bad.any():
        ax.autoscale_view()
        top = ax.get_ylim()[1]
        ax.plot(x[bad], np.full(bad.sum(), top), "x", color=NONFINITE_COLOR, ms=9, mew=2,
                label=label, clip_on=False, zorder=5)
    return int(bad.sum())


def _series(ax: Axes, x: np.ndarray, y: np.ndarray, log: bool, **kwargs) -> None:
    y = np.asarray(y, dtype=float)
    finite = np.isfinite(y) & ((y > 0) if log else True)
    ax.plot(x[finite], y[finite], **kwargs)


def plot_loss(
    histories: History | Mapping[str, History], *, ax: Axes | None = None, log: bool = True,
    title: str | None = None,
) -> Axes:
    """Training loss per step for one history or several (``{label: history}``).

    A diverged run ends in a red cross at the step where the loss or gradient went non-finite.
    """
    ax = _axes(ax)
    runs = {"": histories} if isinstance(histories, History) else dict(histories)
    for label, history in runs.items():
        loss = np.asarray(history.loss, dtype=float)
        steps = np.arange(len(loss))
        _series(ax, steps, loss, log, label=label or None)
    if log:
        ax.set_yscale("log")
    marked = False
    for history in runs.values():
        loss = np.asarray(history.loss, dtype=float)
        marked |= mark_nonfinite(ax, np.arange(len(loss)), loss,
                                 label=None if marked else "NaN/Inf") > 0
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if title:
        ax.set_title(title)
    if any(runs) or marked:
        ax.legend()
    return ax


def plot_grad_norm(
    histories: History | Mapping[str, History], *, ax: Axes | None = None, title: str | None = None,
) -> Axes:
    """Global gradient norm per step, log scale, non-finite steps marked."""
    ax = _axes(ax)
    runs = {"": histories} if isinstance(histories, History) else dict(histories)
    for label, history in runs.items():
        norm = np.asarray(history.grad_norm, dtype=float)
        _series(ax, np.arange(len(norm)), norm, True, label=label or None)
    ax.set_yscale("log")
    marked = False
    for history in runs.values():
        norm = np.asarray(history.grad_norm, dtype=float)
        marked |= mark_nonfinite(ax, np.arange(len(norm)), norm,
                                 label=None if marked else "NaN/Inf") > 0
    ax.set_xlabel("step")
    ax.set_ylabel("gradient norm")
    if title:
        ax.set_title(title)
    if any(runs) or marked:
        ax.legend()
    return ax


def plot_layer_norms(
    norms: Sequence[float] | np.ndarray | Mapping[str, Sequence[float] | np.ndarray],
    *,
    ax: Axes | None = None,
    xlabel: str = "layer (input side first)",
    ylabel: str = "gradient norm",
    title: str | None = None,
) -> Axes:
    """One value per layer on a log scale: a curve, or several (``{label: values}``).

    Geometric growth or decay across layers shows as a straight line.
    """
    ax = _axes(ax)
    curves = norms if isinstance(norms, Mapping) else {"": norms}
    for label, values in curves.items():
        values = np.asarray(values, dtype=float)
        layers = np.arange(1, len(values) + 1)
        _series(ax, layers, values, True, marker="o", ms=3, label=label or None)
    ax.set_yscale("log")
    marked = False
    for values in curves.values():
        values = np.asarray(values, dtype=float)
        marked |= mark_nonfinite(ax, np.arange(1, len(values) + 1), values,
                                 label=None if marked else "NaN/Inf") > 0
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if any(curves) or marked:
        ax.legend()
    return ax
