"""Signal propagation through a deep feed-forward net: predicted and measured per-layer scales."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gradtext.models import DeepMLP, activation_key
from gradtext.theory._checks import (
    _check_nonnegative,
    _check_tensor,
    _check_widths,
    _per_layer,
)
from gradtext.theory.activations import gaussian_moments


@dataclass(frozen=True)
class Propagation:
    """Per-layer signal scales of a ``DeepMLP``-shaped stack of ``L`` linear layers.

    All arrays have one entry per linear layer ``l = 1..L`` (input side first):

    - ``pre_activation[l]``: mean square of the pre-activations ``h_l = W_l x_{l-1} + b_l``;
    - ``backward[l]``: mean square of ``dLoss/dh_l``, relative to the output layer (whose
      entry is 1 in a prediction; in a measurement, the mean square of the output gradient);
    - ``weight_gradient[l]``: mean square of the entries of one example's
      ``dLoss/dW_l = delta_l x_{l-1}^T``, on the same scale.

    :attr:`backward_factors` and :attr:`forward_factors` are the per-layer ratios, the numbers
    that compound with depth.
    """

    pre_activation: np.ndarray
    backward: np.ndarray
    weight_gradient: np.ndarray

    @property
    def forward_factors(self) -> np.ndarray:
        """``pre_activation[l] / pre_activation[l-1]`` for ``l = 2..L``."""
        return self.pre_activation[1:] / self.pre_activation[:-1]

    @property
    def backward_factors(self) -> np.ndarray:
        """The ratio ``backward[l-1] / backward[l]``, how much one layer multiplies the backward
        signal (mean square), going down; ``L - 1`` values."""
        return self.backward[:-1] / self.backward[1:]

    @property
    def backward_ratio(self) -> float:
        """The ratio ``backward[first] / backward[last]``, the whole net's gain on the backward
        signal."""
        return float(self.backward[0] / self.backward[-1])


def propagate_variance(
    widths: Sequence[int],
    activation: str,
    weight_variance: float | Sequence[float],
    *,
    bias_variance: float = 0.0,
    input_variance: float = 1.0,
) -> Propagation:
    """Predict per-layer activation and backward-signal scales from the mean-field recurrences.

    ``widths = [n_0, n_1, ..., n_L]`` are the layer sizes, input first, as in ``DeepMLP``
    (``[in_features] + [width] * (depth - 1) + [out_features]``); the activation sits between
    linear layers, not after the last. Weights are ``W_ij ~ N(0, weight_variance / fan_in)``
    (a number, or one per linear layer); biases ``N(0, bias_variance)``; the input has mean
    square ``input_variance``.

    Forward:  ``q_1 = weight_variance * input_variance + bias_variance`` and
    ``q_l = weight_variance * E[phi(h)^2] + bias_variance`` with ``h ~ N(0, q_{l-1})``.
    Backward: ``E[delta_l^2] = weight_variance * (n_{l+1} / n_l) * E[phi'(h_l)^2] *
    E[delta_{l+1}^2]`` (Glorot & Bengio's analysis, exact for linear nets; the mean-field
    "gradient independence" approximation otherwise).

    Well-known cases: ``weight_variance = 1/3`` is the "standard" init ``U[-1/sqrt(n),
    1/sqrt(n)]``; ``1`` is Glorot/Xavier for equal widths; ``2`` is He et al.'s ReLU init.

    >>> p = propagate_variance([100, 100, 100, 100], "linear", weight_variance=1.0)
    >>> p.pre_activation.round(6).tolist(), p.backward.round(6).tolist()
    ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    >>> round(propagate_variance([50] * 6, "relu", 1.0).backward_ratio, 4)   # Xavier on ReLU
    0.0625
    """
    widths = _check_widths(widths)
    activation = activation_key(activation)
    depth = len(widths) - 1
    variances = _per_layer("weight_variance", weight_variance, depth)
    bias_variance = _check_nonnegative("bias_variance", bias_variance)
    input_variance = _check_nonnegative("input_variance", input_variance)

    q = np.empty(depth)
    mean_square_input = np.empty(depth)  # E[x_{l-1}^2], what layer l multiplies
    derivative_square = np.empty(depth)  # E[phi'(h_l)^2]
    x_square = input_variance
    for layer in range(depth):
        mean_square_input[layer] = x_square
        q[layer] = variances[layer] * x_square + bias_variance
        x_square, derivative_square[layer] = gaussian_moments(activation, q[layer])

    backward = np.ones(depth)
    for layer in range(depth - 2, -1, -1):
        fan_ratio = widths[layer + 2] / widths[layer + 1]
        chi = variances[layer + 1] * fan_ratio * derivative_square[layer]
        backward[layer] = chi * backward[layer + 1]
    return Propagation(q, backward, backward * mean_square_input)


def random_mlp(
    in_features: int,
    out_features: int,
    width: int,
    depth: int,
    activation: str,
    weight_variance: float,
    *,
    bias_variance: float = 0.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> DeepMLP:
    """A :class:`~gradtext.models.DeepMLP` drawn from the ensemble that
    :func:`propagate_variance` describes: ``W_ij ~ N(0, weight_variance / fan_in)``,
    ``b_i ~ N(0, bias_variance)`` (zero by default), from a seeded generator, in ``dtype``.

    >>> net = random_mlp(100, 10, 100, 3, "relu", weight_variance=2.0, seed=1)
    >>> round(float(net.linears[1].weight.detach().var() * 100), 1)
    2.0
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    weight_variance = _check_nonnegative("weight_variance", weight_variance)
    bias_variance = _check_nonnegative("bias_variance", bias_variance)
    with torch.random.fork_rng(devices=[]):  # DeepMLP's default init would use the global RNG
        net = DeepMLP(in_features, out_features, width, depth, activation).to(dtype)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in net.linears:
            std = math.sqrt(weight_variance / layer.in_features)
            weight = torch.randn(layer.weight.shape, generator=generator, dtype=torch.float64)
            bias = torch.randn(layer.bias.shape, generator=generator, dtype=torch.float64)
            layer.weight.copy_(std * weight)
            layer.bias.copy_(math.sqrt(bias_variance) * bias)
    return net


def measure_propagation(model: DeepMLP, x: torch.Tensor, *, seed: int = 0) -> Propagation:
    """Measure on a real network what :func:`propagate_variance` predicts.

    Runs ``x`` (a batch, ``(n, in_features)``) through ``model`` (a
    :class:`~gradtext.models.DeepMLP`), back-propagates an output gradient of i.i.d. ``N(0, 1)``
    entries (seeded), and returns the mean squares of the pre-activations, of ``dLoss/dh_l``
    and of one example's ``dLoss/dW_l`` (averaged over the batch) for every linear layer.
    Nothing in the model is changed, and it works on a frozen model (parameters with
    ``requires_grad=False``), under ``torch.no_grad()`` or ``torch.inference_mode()``, and on
    the model's device (``x`` is moved there, in the model's dtype).

    >>> import torch
    >>> _ = torch.manual_seed(0); net = DeepMLP(200, 200, width=200, depth=4, activation="linear")
    >>> m = measure_propagation(net, torch.randn(500, 200))
    >>> m.pre_activation.shape, m.backward.shape
    ((4,), (4,))
    """
    if not isinstance(model, DeepMLP):
        raise TypeError(f"model must be a gradtext.models.DeepMLP, got {type(model).__name__}")
    x = _check_tensor("x", x, dims=(2,))
    if x.shape[0] < 1:
        raise ValueError(f"x must hold at least one example, got shape {tuple(x.shape)}")
    if x.shape[1] != model.linears[0].in_features:
        raise ValueError(
            f"x must have {model.linears[0].in_features} features (model.linears[0].in_features)"
            f", got shape {tuple(x.shape)}"
        )
    parameter = next(model.parameters())
    # the gradient flows from the input, so frozen parameters do not matter; outside inference
    # mode, so that a call inside it still builds a graph (the clone is a normal tensor)
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone().to(device=parameter.device, dtype=parameter.dtype)
        x.requires_grad_(True)
        output, pre, act = model.forward_with_intermediates(x)
        generator = torch.Generator().manual_seed(seed)
        output_grad = torch.randn(output.shape, generator=generator, dtype=torch.float64)
        output_grad = output_grad.to(device=output.device, dtype=output.dtype)
        grads = torch.autograd.grad(output, pre, grad_outputs=output_grad)
    inputs = [x, *act]
    mean_sq = [float(t.detach().double().pow(2).mean()) for t in pre]
    backward = [float(g.double().pow(2).mean()) for g in grads]
    # one example's dLoss/dW_l is delta_l x_{l-1}^T: mean square = mean(delta^2) * mean(x^2)
    weight_grad = [
        float((g.double().pow(2).mean(1) * a.detach().double().pow(2).mean(1)).mean())
        for g, a in zip(grads, inputs, strict=True)
    ]
    return Propagation(np.array(mean_sq), np.array(backward), np.array(weight_grad))


def _forward_fixed_point(activation: str, weight_variance: float, bias_variance: float) -> float:
    """The stable fixed point ``q*`` of ``q -> weight_variance * E[phi(h)^2] + bias_variance``.

    It is the largest root of ``g(q) = weight_variance * E[phi^2] + bias_variance - q``, found by
    bisection on ``log q`` between ``1e-12`` (standing for ``q* = 0``) and ``1e4`` (standing
    for "grows without bound", which unbounded units do above criticality).
    """

    def g(q: float) -> float:
        return weight_variance * gaussian_moments(activation, q)[0] + bias_variance - q

    low, high = 1e-12, 1e4
    if g(high) >= 0:
        return high
    if g(low) <= 0:
        return low
    for _ in range(60):
        middle = math.sqrt(low * high)
        if g(middle) > 0:
            low = middle
        else:
            high = middle
    return math.sqrt(low * high)


def critical_weight_variance(activation: str, *, bias_variance: float = 0.0) -> float:
    """The weight variance (times fan_in) at which the backward signal neither grows nor shrinks.

    Solves ``chi = weight_variance * E[phi'(h)^2] = 1`` at the fixed point ``q*`` of the forward
    recurrence (the order-to-chaos transition of Poole et al. and Schoenholz et al.), by
    bisection. Below it gradients vanish with depth, above it they explode.
    ReLU: exactly 2 (He et al.); tanh without bias: 1 (Glorot & Bengio's Xavier for equal
    widths); sigmoid: about 100, far above the ``16 = 1/(1/4)^2`` its slope at 0 suggests,
    because its output has mean 1/2, which inflates ``q`` and pushes units into saturation.
    For activations whose forward map has two attractors (GELU, SiLU: a small signal dies out,
    a large one grows like ReLU's), ``q*`` is taken on the large-signal branch, so GELU's value
    is ReLU's 2.

    >>> round(critical_weight_variance("relu"), 6), round(critical_weight_variance("linear"), 6)
    (2.0, 1.0)
    """
    activation = activation_key(activation)
    bias_variance = _check_nonnegative("bias_variance", bias_variance)

    def chi(weight_variance: float) -> float:
        q = _forward_fixed_point(activation, weight_variance, bias_variance)
        return weight_variance * gaussian_moments(activation, q)[1]

    low, high = 1e-3, 1e3  # on a log scale
    if chi(low) >= 1.0 or chi(high) <= 1.0:
        raise ValueError(
            f"activation={activation!r}: no critical weight variance in [{low}, {high}] "
            f"with bias_variance={bias_variance}"
        )
    for _ in range(40):
        middle = math.sqrt(low * high)
        if chi(middle) < 1.0:
            low = middle
        else:
            high = middle
    return math.sqrt(low * high)
