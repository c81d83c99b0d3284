"""What theory needs from an activation: Gaussian moments and the bound on its slope."""

from __future__ import annotations

import math

import numpy as np
import torch

from gradtext.models import activation_key, make_activation
from gradtext.theory._checks import _check_nonnegative

_GRID = np.linspace(-10.0, 10.0, 2000)  # standard-normal units; even count: no node at 0
_WINDOW = 50.0  # |h| within which an activation's slope may change on a unit scale


def _gaussian_nodes(std: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``h`` and weights (summing to 1) for ``E[f(h)]``, ``h ~ N(0, std^2)``, over
    ``+-10 std``; no node sits at 0. The spacing in ``h`` is at most 0.1 near 0, where the slope
    of tanh or sigmoid changes: for a very wide Gaussian (``std > 200``) the window
    ``|h| < 50`` gets its own fine grid, and the tails, where the slope is flat, a coarse one.
    """
    if std <= 200:
        points = max(2000, math.ceil(200 * std))  # spacing in h <= 0.1
        u = _GRID if points == 2000 else np.linspace(-10.0, 10.0, points + points % 2)
        weights = np.exp(-0.5 * u**2)
        return std * u, weights / weights.sum()
    # midpoint rule on [-50, 50] in h (spacing 0.01) and on [50 / std, 10] in standard units
    window = np.linspace(-_WINDOW, _WINDOW, 10_001)
    inner = (window[1:] + window[:-1]) / 2
    inner_weights = np.exp(-0.5 * (inner / std) ** 2) * np.diff(window) / std
    tail = np.linspace(_WINDOW / std, 10.0, 20_001)
    outer = (tail[1:] + tail[:-1]) / 2
    outer_weights = np.exp(-0.5 * outer**2) * np.diff(tail)
    nodes = np.concatenate([-std * outer[::-1], inner, std * outer])
    weights = np.concatenate([outer_weights[::-1], inner_weights, outer_weights])
    return nodes, weights / weights.sum()


def _phi_and_derivative(activation: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``phi(z)`` and ``phi'(z)`` for a named activation, by autograd in float64."""
    phi = make_activation(activation)
    t = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    y = phi(t)
    (dy,) = torch.autograd.grad(y.sum(), t)
    return y.detach().numpy(), dy.numpy()


def gaussian_moments(activation: str, q: float) -> tuple[float, float]:
    """``(E[phi(h)^2], E[phi'(h)^2])`` for ``h ~ N(0, q)``, by quadrature on a fine grid.

    These two numbers are all the mean-field recurrences need from an activation: the first
    carries the forward signal, the second the backward one. The grid spans 10 standard
    deviations either side and is refined near 0 for large ``q``, so that it resolves the
    unit-width bump of ``tanh'`` or ``sigmoid'`` however wide the Gaussian is.

    >>> [round(m, 6) for m in gaussian_moments("relu", 3.0)]   # ReLU keeps half of everything
    [1.5, 0.5]
    >>> round(gaussian_moments("sigmoid", 1e-12)[1], 6)       # sigmoid'(0)^2 = 1/16
    0.0625
    """
    activation = activation_key(activation)
    q = _check_nonnegative("q", q)
    nodes, weights = _gaussian_nodes(math.sqrt(q))
    phi, dphi = _phi_and_derivative(activation, nodes)
    return float(weights @ phi**2), float(weights @ dphi**2)


def derivative_bound(activation: str) -> float:
    """``gamma = sup |phi'(z)|``, the largest slope of the activation.

    Pascanu et al. call it gamma: 1 for tanh and ReLU, 1/4 for sigmoid. It bounds how much one
    step of a recurrent net (or one layer) can stretch the backward signal, beyond what the
    weight matrix does. Found on a fine grid over [-20, 20] that contains 0.

    >>> derivative_bound("sigmoid"), derivative_bound("tanh"), derivative_bound("relu")
    (0.25, 1.0, 1.0)
    """
    activation = activation_key(activation)
    z = np.linspace(-20.0, 20.0, 40001)
    return float(np.abs(_phi_and_derivative(activation, z)[1]).max())
