"""The book's figures as functions: log scales where magnitudes span decades, one style, and
non-finite values drawn (a red cross at the top edge) instead of silently dropped, and so are
values of 0 or below on a log scale (a grey triangle at the bottom edge).

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


def _check_recorded(name: str, grid: np.ndarray) -> None:
    """A clear error for a (steps x layers) array with no steps or no layers, such as a
    ``GradientMonitor``'s before any backward pass (raised before a figure is drawn)."""
    if grid.ndim == 2 and grid.shape[0] == 0:
        raise ValueError(
            f"{name} has no steps (shape {grid.shape}): nothing was recorded yet (a "
            "GradientMonitor records steps during backward passes while it is active)"
        )
    if grid.ndim == 2 and grid.shape[1] == 0:
        raise ValueError(f"{name} has no layers (shape {grid.shape}): nothing to draw")


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


def mark_nonpositive(
    ax: Axes, x: np.ndarray, y: np.ndarray, *, label: str | None = "≤ 0 (off the log scale)"
) -> int:
    """Draw a grey triangle at the bottom of a log-scale ``ax`` wherever ``y`` is zero or
    negative (a gradient that vanished to exactly 0 has no place on a log axis).

    Returns how many points were marked. Call it after the positive data are drawn.

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> fig, ax = plt.subplots(); _ = ax.semilogy([0, 1], [1.0, 0.1])
    >>> mark_nonpositive(ax, np.arange(3), [1.0, 0.0, 0.1])
    1
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    low = np.isfinite(y) & (y <= 0)
    if low.any():
        ax.autoscale_view()
        bottom = ax.get_ylim()[0]
        ax.plot(x[low], np.full(low.sum(), bottom), "v", color="#7f7f7f", ms=7,
                label=label, clip_on=False, zorder=5)
    return int(low.sum())


def _mark_all_nonpositive(ax: Axes, curves: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    """:func:`mark_nonpositive` for several curves, one legend entry; whether any was marked."""
    marked = False
    for x, y in curves:
        marked |= mark_nonpositive(ax, x, y, **({"label": None} if marked else {})) > 0
    return marked


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
    if log:
        marked |= _mark_all_nonpositive(
            ax, [(np.arange(len(h.loss)), np.asarray(h.loss, dtype=float)) for h in runs.values()])
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
    marked |= _mark_all_nonpositive(ax, [(np.arange(len(h.grad_norm)),
                                          np.asarray(h.grad_norm, dtype=float))
                                         for h in runs.values()])
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
    marked |= _mark_all_nonpositive(ax, [(np.arange(1, len(v) + 1), np.asarray(v, dtype=float))
                                         for v in curves.values()])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if any(curves) or marked:
        ax.legend()
    return ax


# --- per-layer views of a training run (from gradtext.monitor.GradientMonitor) -----------------


def plot_layer_heatmap(
    values: np.ndarray,
    *,
    layer_names: Sequence[str] | None = None,
    steps: Sequence[int] | np.ndarray | None = None,
    ax: Axes | None = None,
    label: str = "gradient norm",
    title: str | None = None,
) -> Axes:
    """A (steps x layers) array, e.g. ``monitor.grad_norms()``, as a heatmap of layers x steps
    on a log colour scale, input-side layer at the bottom. NaN/Inf cells are drawn red and
    zeros grey instead of being left blank. An array with no rows (a monitor that has not
    recorded a step yet) raises ``ValueError``.

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> ax = plot_layer_heatmap(np.array([[1e-3, 1.0], [np.nan, 10.0]]), layer_names=["a", "b"])
    >>> ax.get_ylabel()
    'layer'
    """
    from matplotlib.colors import ListedColormap, LogNorm

    grid = np.asarray(values, dtype=float)
    if grid.ndim != 2:
        raise ValueError(f"values must be a 2-d (steps x layers) array, got shape {grid.shape}")
    _check_recorded("values", grid)
    steps_axis = np.arange(grid.shape[0]) if steps is None else np.asarray(steps)
    if len(steps_axis) != grid.shape[0]:
        raise ValueError(f"steps has {len(steps_axis)} entries for {grid.shape[0]} rows")
    if layer_names is not None and len(layer_names) != grid.shape[1]:
        raise ValueError(f"layer_names has {len(layer_names)} names for {grid.shape[1]} layers")
    ax = _axes(ax)
    grid = grid.T  # layers x steps
    positive = np.isfinite(grid) & (grid > 0)
    edges = _edges(steps_axis)
    layer_edges = np.arange(grid.shape[0] + 1) - 0.5
    if positive.any():
        norm = LogNorm(vmin=grid[positive].min(), vmax=max(grid[positive].max(),
                                                             grid[positive].min() * 1.0001))
        mesh = ax.pcolormesh(edges, layer_edges, np.ma.masked_where(~positive, grid),
                             norm=norm, cmap="viridis", shading="flat")
        ax.figure.colorbar(mesh, ax=ax, label=f"{label} (log scale)")
    zero = np.isfinite(grid) & (grid <= 0)
    bad = ~np.isfinite(grid)
    for mask, color in ((zero, "#bbbbbb"), (bad, NONFINITE_COLOR)):
        if mask.any():
            ax.pcolormesh(edges, layer_edges, np.ma.masked_where(~mask, np.ones_like(grid)),
                          cmap=ListedColormap([color]), shading="flat")
    if bad.any():
        ax.plot([], [], "s", color=NONFINITE_COLOR, label=f"NaN/Inf ({int(bad.sum())})")
        ax.legend(loc="upper left", bbox_to_anchor=(0, 1.15), ncol=2)
    ax.set_ylim(layer_edges[0], layer_edges[-1])
    if layer_names is not None:
        ticks = np.arange(grid.shape[0])
        if len(ticks) > 12:
            ticks = ticks[:: int(np.ceil(len(ticks) / 12))]
        ax.set_yticks(ticks, [layer_names[i] or "(model)" for i in ticks])
    ax.set_xlabel("step")
    ax.set_ylabel("layer")
    ax.grid(False)
    if title:
        ax.set_title(title)
    return ax


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around increasing step numbers."""
    centres = np.asarray(centres, dtype=float)
    if len(centres) == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    middle = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - middle[0]], middle, [2 * centres[-1] - middle[-1]]])


def plot_layer_histograms(
    values: Mapping[str, np.ndarray | Sequence[float]],
    *,
    ax: Axes | None = None,
    bins: int = 60,
    log_x: bool = False,
    xlabel: str = "activation value",
    title: str | None = None,
) -> Axes:
    """One normalised histogram per layer, overlaid (as in Glorot & Bengio's figures of
    activations and back-propagated gradients); layers coloured from input side (dark) to
    output side (light). With ``log_x`` the histogram is of ``log10 |value|`` (for gradients
    spanning decades). Non-finite values are counted in each label and marked with a red cross
    at the right edge rather than silently dropped.

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> ax = plot_layer_histograms({"layer 1": np.random.randn(100), "layer 2": [0.5, np.nan]})
    >>> len(ax.get_legend().get_texts())
    3
    """
    if not isinstance(values, Mapping) or not values:
        raise ValueError(
            "values must be a non-empty mapping {layer name: values} (an empty one from a "
            "GradientMonitor means nothing was recorded yet)"
        )
    ax = _axes(ax)
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(values)))
    finite_all = [np.asarray(v, dtype=float).ravel() for v in values.values()]
    transformed = []
    for v in finite_all:
        good = v[np.isfinite(v)]
        if log_x:
            good = np.log10(np.abs(good[good != 0]))
        transformed.append(good)
    pooled = np.concatenate(transformed) if transformed else np.zeros(0)
    edges = np.histogram_bin_edges(pooled if pooled.size else [0.0, 1.0], bins=bins)
    total_bad = 0
    for (name, raw), good, color in zip(values.items(), transformed, colors, strict=True):
        bad = int((~np.isfinite(np.asarray(raw, dtype=float))).sum())
        total_bad += bad
        label = name + (f" ({bad} NaN/Inf)" if bad else "")
        if good.size:
            ax.hist(good, bins=edges, density=True, histtype="step", color=color, lw=1.5,
                    label=label)
        else:
            ax.plot([], [], color=color, label=label)
    if total_bad:
        ax.plot([1.0], [1.0], "x", color=NONFINITE_COLOR, ms=9, mew=2, transform=ax.transAxes,
                clip_on=False, label=f"NaN/Inf ({total_bad})", zorder=5)
    ax.set_xlabel(f"log10 |{xlabel}|" if log_x else xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_update_ratios(
    ratios: np.ndarray,
    *,
    layer_names: Sequence[str] | None = None,
    steps: Sequence[int] | np.ndarray | None = None,
    ax: Axes | None = None,
    reference: float | None = 1e-3,
    title: str | None = None,
) -> Axes:
    """Update-to-weight ratios ``||dW|| / ||W||`` per layer over training, e.g.
    ``monitor.update_ratios()`` (steps x layers), on a log scale with a dashed reference line
    at ``reference`` (the rule of thumb: about 1e-3 is healthy). Non-finite values are marked.
    An array with no rows (a monitor that has not recorded a step yet) raises ``ValueError``.

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> ax = plot_update_ratios(np.array([[1e-3, 1e-4], [2e-3, np.inf]]))
    >>> ax.get_yscale()
    'log'
    """
    grid = np.asarray(ratios, dtype=float)
    if grid.ndim != 2:
        raise ValueError(f"ratios must be a 2-d (steps x layers) array, got shape {grid.shape}")
    _check_recorded("ratios", grid)
    x = np.arange(grid.shape[0]) if steps is None else np.asarray(steps, dtype=float)
    if len(x) != grid.shape[0]:
        raise ValueError(f"steps has {len(x)} entries for {grid.shape[0]} rows")
    names = list(layer_names) if layer_names is not None else [
        f"layer {i + 1}" for i in range(grid.shape[1])]
    if len(names) != grid.shape[1]:
        raise ValueError(f"layer_names has {len(names)} names for {grid.shape[1]} layers")
    ax = _axes(ax)
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, grid.shape[1]))
    for column, (name, color) in enumerate(zip(names, colors, strict=True)):
        _series(ax, x, grid[:, column], True, color=color, label=name or "(model)")
    ax.set_yscale("log")
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1, label=f"{reference:g} (rule of thumb)")
    marked = False
    for column in range(grid.shape[1]):
        marked |= mark_nonfinite(ax, x, grid[:, column], label=None if marked else "NaN/Inf") > 0
    marked |= _mark_all_nonpositive(ax, [(x, grid[:, column]) for column in range(grid.shape[1])])
    ax.set_xlabel("step")
    ax.set_ylabel("update / weight  ||dW|| / ||W||")
    if grid.shape[1] <= 10 or marked:
        ax.legend(fontsize=8, ncol=2)
    if title:
        ax.set_title(title)
    return ax
