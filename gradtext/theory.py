"""Why gradients explode or vanish, computed: predictions from theory and the exact measurements
to hold them against.

Four ideas, in the order the book uses them:

1. **Signal propagation in deep feed-forward nets** (Glorot & Bengio 2010; He et al. 2015;
   Poole et al. 2016; Schoenholz et al. 2017). With weights ``W_ij ~ N(0, weight_variance /
   fan_in)``, the mean square of the pre-activations follows the recurrence
   ``q_l = weight_variance * E[phi(h)^2] + bias_variance`` (``h ~ N(0, q_{l-1})``), and the
   backward signal is multiplied at every layer by
   ``chi_l = weight_variance * (fan_out / fan_in) * E[phi'(h)^2]``.
   :func:`propagate_variance` computes both; :func:`measure_propagation` measures them on a
   real network (:func:`random_mlp` draws one); :func:`critical_weight_variance` finds the
   scale where ``chi = 1``.
2. **Jacobian spectra**: :func:`jacobian_singular_values` (exact, ``torch.func``),
   :func:`extreme_singular_values` (power iteration with JVP/VJP products, for large nets) and
   :func:`spectrum_spread` (``var(lambda) / mean(lambda)^2`` of the squared singular values).
3. **Recurrent nets** (Bengio et al. 1994; Pascanu, Mikolov & Bengio 2013): the same weight
   matrix enters every step, so ``dh_T/dh_{T-k}`` is a product of ``k`` per-step Jacobians.
   :func:`rnn_jacobian_norms` measures its norm for every ``k``; :func:`pascanu_regime` says
   whether the largest singular value of the recurrent matrix guarantees vanishing or permits
   exploding.
4. **The cliff** of Pascanu et al.'s one-unit RNN ``x_t = w * sigmoid(x_{t-1}) + b``:
   :func:`scalar_rnn_loss_surface`, :func:`scalar_rnn_descent` and :func:`steepest_point`.

And one cause that needs no product at all: a learning rate above ``2 / lambda_max`` makes
gradient descent diverge on a plain quadratic (:func:`quadratic_descent`).

>>> import torch
>>> round(critical_weight_variance("relu"), 6)   # He et al.'s factor 2
2.0
>>> prediction = propagate_variance([64] * 11, "relu", weight_variance=2.0)
>>> [round(float(q), 6) for q in prediction.pre_activation[:3]]
[2.0, 2.0, 2.0]
>>> rnn = torch.nn.RNN(2, 8, batch_first=True)
>>> rnn_jacobian_norms(rnn, torch.randn(20, 2)).shape   # k = 0, 1, ..., 20
(21,)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gradtext.models import ACTIVATIONS, DeepMLP, SequenceModel, make_activation

# --------------------------------------------------------------------------------------------
# Activations: the numbers theory needs from them
# --------------------------------------------------------------------------------------------

_GRID = np.linspace(-10.0, 10.0, 2000)  # standard-normal units; even count: no node at 0


def _activation_name(activation: str) -> str:
    if not isinstance(activation, str):
        raise TypeError(f"activation must be a str, got {type(activation).__name__}")
    key = activation.strip().lower()
    if key not in ACTIVATIONS:
        raise ValueError(f"activation: unknown {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    return key


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
    deviations either side and is refined for large ``q``, so that it resolves the unit-width
    bump of ``tanh'`` or ``sigmoid'`` however wide the Gaussian is.

    >>> [round(m, 6) for m in gaussian_moments("relu", 3.0)]   # ReLU keeps half of everything
    [1.5, 0.5]
    >>> round(gaussian_moments("sigmoid", 1e-12)[1], 6)       # sigmoid'(0)^2 = 1/16
    0.0625
    """
    activation = _activation_name(activation)
    q = _check_nonnegative("q", q)
    std = math.sqrt(q)
    points = int(min(max(2000, math.ceil(200 * std)), 40_000))  # z-spacing <= 0.1
    u = _GRID if points == 2000 else np.linspace(-10.0, 10.0, points + points % 2)
    weights = np.exp(-0.5 * u**2)
    weights /= weights.sum()
    phi, dphi = _phi_and_derivative(activation, std * u)
    return float(weights @ phi**2), float(weights @ dphi**2)


def derivative_bound(activation: str) -> float:
    """``gamma = sup |phi'(z)|``, the largest slope of the activation.

    Pascanu et al. call it gamma: 1 for tanh and ReLU, 1/4 for sigmoid. It bounds how much one
    step of a recurrent net (or one layer) can stretch the backward signal, beyond what the
    weight matrix does. Found on a fine grid over [-20, 20] that contains 0.

    >>> derivative_bound("sigmoid"), derivative_bound("tanh"), derivative_bound("relu")
    (0.25, 1.0, 1.0)
    """
    activation = _activation_name(activation)
    z = np.linspace(-20.0, 20.0, 40001)
    return float(np.abs(_phi_and_derivative(activation, z)[1]).max())


# --------------------------------------------------------------------------------------------
# 1. Variance propagation through a deep feed-forward net
# --------------------------------------------------------------------------------------------


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
        """``backward[l-1] / backward[l]``: how much one layer multiplies the backward signal
        (mean square), going down; ``L - 1`` values."""
        return self.backward[:-1] / self.backward[1:]

    @property
    def backward_ratio(self) -> float:
        """``backward[first] / backward[last]``: the whole net's gain on the backward signal."""
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
    activation = _activation_name(activation)
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
    Nothing in the model is changed.

    >>> import torch
    >>> _ = torch.manual_seed(0); net = DeepMLP(200, 200, width=200, depth=4, activation="linear")
    >>> m = measure_propagation(net, torch.randn(500, 200))
    >>> m.pre_activation.shape, m.backward.shape
    ((4,), (4,))
    """
    if not isinstance(model, DeepMLP):
        raise TypeError(f"model must be a gradtext.models.DeepMLP, got {type(model).__name__}")
    x = _check_tensor("x", x, dims=(2,))
    if x.shape[1] != model.linears[0].in_features:
        raise ValueError(
            f"x must have {model.linears[0].in_features} features (model.linears[0].in_features)"
            f", got shape {tuple(x.shape)}"
        )
    dtype = next(model.parameters()).dtype
    x = x.to(dtype)
    with torch.enable_grad():
        output, pre, act = model.forward_with_intermediates(x)
        generator = torch.Generator().manual_seed(seed)
        output_grad = torch.randn(output.shape, generator=generator, dtype=torch.float64).to(dtype)
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
    activation = _activation_name(activation)
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


# --------------------------------------------------------------------------------------------
# 2. The input-output Jacobian and its spectrum
# --------------------------------------------------------------------------------------------


def _as_function(model: Callable[[torch.Tensor], torch.Tensor]):
    """``v (1-D) -> model(v[None]).flatten()``: the model as a map between vectors."""
    if not callable(model):
        raise TypeError(f"model must be callable (an nn.Module), got {type(model).__name__}")

    def f(v: torch.Tensor) -> torch.Tensor:
        return model(v.unsqueeze(0)).reshape(-1)

    return f


def _prepare_point(model, x: torch.Tensor) -> torch.Tensor:
    x = _check_tensor("x", x, dims=(1,))
    parameter = next(iter(model.parameters()), None) if isinstance(model, nn.Module) else None
    return x.detach().to(parameter.dtype if parameter is not None else x.dtype)


def input_output_jacobian(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
    """The Jacobian ``d model(x) / d x`` at one input ``x`` (1-D), shape ``(outputs, inputs)``.

    The model is called on a batch of one (``x[None]``), so any batch-first model works.
    Exact, by reverse-mode ``torch.func.jacrev``.

    >>> net = torch.nn.Linear(3, 2)
    >>> torch.allclose(input_output_jacobian(net, torch.ones(3)), net.weight)
    True
    """
    x = _prepare_point(model, x)
    return torch.func.jacrev(_as_function(model))(x).detach()


def jacobian_singular_values(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
    """Singular values of the input-output Jacobian at ``x`` (one 1-D input), largest first.

    Returns a float64 NumPy array of length ``min(outputs, inputs)``. Exact (full Jacobian,
    then an SVD); for large nets where that is too slow use :func:`extreme_singular_values`.

    >>> net = torch.nn.Linear(4, 4, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.diag(torch.tensor([3.0, 1.0, 2.0, 0.5])))
    >>> jacobian_singular_values(net, torch.zeros(4)).tolist()
    [3.0, 2.0, 1.0, 0.5]
    """
    jacobian = input_output_jacobian(model, x)
    return torch.linalg.svdvals(jacobian.double()).numpy()


def extreme_singular_values(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    iterations: int = 300,
    tol: float = 1e-10,
    seed: int = 0,
) -> tuple[float, float]:
    """``(sigma_max, sigma_min)`` of the input-output Jacobian at ``x``, without forming it.

    Power iteration on ``A = J^T J`` (or ``J J^T`` when there are fewer outputs than inputs,
    so that ``sigma_min`` is the smallest of the ``min(outputs, inputs)`` singular values),
    using one Jacobian-vector product (``torch.func.jvp``) and one vector-Jacobian product
    (``torch.func.vjp``) per step. ``sigma_min`` comes from power iteration on the shifted
    operator ``sigma_max^2 I - A``. Each iteration stops early once the eigenvalue estimate
    changes by less than ``tol`` (relative). Power iteration converges slowly when the top two
    singular values are close, so treat the result as an estimate: the tests find ``sigma_max``
    within 0.1% of the exact SVD, and ``sigma_min`` within 1% of ``sigma_max`` (a ``sigma_min``
    far below ``sigma_max`` is found to be small, not to 1% of itself).

    >>> net = torch.nn.Linear(3, 3, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.diag(torch.tensor([2.0, 1.0, 0.5])))
    >>> [round(s, 4) for s in extreme_singular_values(net, torch.zeros(3))]
    [2.0, 0.5]
    """
    x = _prepare_point(model, x)
    iterations = _check_positive_int("iterations", iterations)
    tol = _check_nonnegative("tol", tol)
    f = _as_function(model)
    output, vjp_fn = torch.func.vjp(f, x)

    def jvp_fn(v: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(f, (x,), (v,))[1]

    if output.numel() >= x.numel():  # A = J^T J acts on inputs

        def apply(v: torch.Tensor) -> torch.Tensor:
            return vjp_fn(jvp_fn(v))[0]

        size, dtype = x.numel(), x.dtype
    else:  # A = J J^T acts on outputs

        def apply(v: torch.Tensor) -> torch.Tensor:
            return jvp_fn(vjp_fn(v)[0])

        size, dtype = output.numel(), output.dtype

    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(size, generator=generator, dtype=torch.float64).to(dtype)

    def top_eigenvalue(operator: Callable[[torch.Tensor], torch.Tensor]) -> float:
        v = start / start.norm()
        value = 0.0
        for _ in range(iterations):
            w = operator(v)
            new_value = float(v @ w)
            norm = w.norm()
            if norm == 0:
                return 0.0
            v = w / norm
            if abs(new_value - value) <= tol * abs(new_value):
                return new_value
            value = new_value
        return value

    with torch.no_grad():
        largest = max(top_eigenvalue(apply), 0.0)
        shifted = top_eigenvalue(lambda v: largest * v - apply(v))
    smallest = min(max(largest - shifted, 0.0), largest)
    return math.sqrt(largest), math.sqrt(smallest)


def spectrum_spread(singular_values) -> float:
    """``var(lambda) / mean(lambda)^2`` of the squared singular values ``lambda = s^2``.

    Zero for an isometry (all singular values equal); grows when the spectrum spreads, as it
    does with depth for Gaussian weights (Pennington, Schoenholz & Ganguli 2017). Defined
    even when some singular values are exactly zero (dead ReLU units).

    >>> spectrum_spread([1.0, 1.0, 1.0])
    0.0
    >>> spectrum_spread([2.0, 0.0])
    1.0
    """
    s = np.asarray(singular_values, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"singular_values must be a non-empty 1-D array, got shape {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError("singular_values must be finite and non-negative")
    squares = s**2
    mean = squares.mean()
    if mean == 0:
        raise ValueError("singular_values are all zero; the spread is undefined")
    return float(squares.var() / mean**2)


# --------------------------------------------------------------------------------------------
# The learning rate: a cause with no product at all
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuadraticDescent:
    """Gradient descent on ``f(theta) = 1/2 sum_i lambda_i theta_i^2``: ``loss[t]`` and
    ``grad_norm[t]`` before step ``t`` (``steps + 1`` entries each)."""

    loss: np.ndarray
    grad_norm: np.ndarray


def quadratic_descent(
    eigenvalues: Sequence[float] | np.ndarray,
    *,
    lr: float,
    steps: int,
    start: Sequence[float] | np.ndarray | None = None,
) -> QuadraticDescent:
    """Run gradient descent on a quadratic with Hessian ``diag(eigenvalues)``.

    The learning-rate cause in its purest form: there is no depth and no recurrence, the
    gradient ``lambda_i theta_i`` is exact, and still each coordinate is multiplied by
    ``1 - lr * lambda_i`` per step, so descent diverges as soon as ``lr > 2 / lambda_max``. The
    loss (quadratic in ``theta``) then grows by ``(1 - lr lambda_max)^2`` per step, the gradient
    norm (linear in ``theta``) only by ``|1 - lr lambda_max|``. ``start`` defaults to all ones.

    >>> run = quadratic_descent([1.0, 10.0], lr=0.21, steps=50)   # 2 / 10 = 0.2
    >>> bool(run.loss[-1] > run.loss[0])
    True
    >>> bool(quadratic_descent([1.0, 10.0], lr=0.19, steps=50).loss[-1] < 1e-3)
    True
    """
    eig = np.asarray(eigenvalues, dtype=np.float64)
    if eig.ndim != 1 or eig.size == 0 or not np.all(np.isfinite(eig)) or np.any(eig <= 0):
        raise ValueError("eigenvalues must be a non-empty 1-D array of positive finite numbers")
    lr = _check_nonnegative("lr", lr)
    steps = _check_positive_int("steps", steps)
    theta = np.ones_like(eig) if start is None else np.asarray(start, dtype=np.float64).copy()
    if theta.shape != eig.shape:
        raise ValueError(f"start must have {eig.size} entries, got shape {theta.shape}")
    losses, norms = [], []
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps + 1):
            gradient = eig * theta
            losses.append(0.5 * float(eig @ theta**2))
            norms.append(float(np.linalg.norm(gradient)))
            theta = theta - lr * gradient
    return QuadraticDescent(np.array(losses), np.array(norms))


# --------------------------------------------------------------------------------------------
# 3. Recurrent nets: products of per-step Jacobians, and Pascanu's conditions
# --------------------------------------------------------------------------------------------


def _single_layer_rnn(model: nn.Module) -> nn.RNN:
    rnn = model.rnn if isinstance(model, SequenceModel) else model
    if not isinstance(rnn, nn.RNN):  # nn.LSTM and nn.GRU are not subclasses of nn.RNN
        raise TypeError(
            "model must be an nn.RNN or a SequenceModel with cell='rnn', "
            f"got {type(model).__name__}"
            + (f" with cell={model.cell!r}" if isinstance(model, SequenceModel) else "")
            + "; for other cells use cell_jacobian_norms"
        )
    if rnn.num_layers != 1 or rnn.bidirectional:
        raise ValueError(
            "model: only a single-layer, unidirectional nn.RNN is supported "
            f"(num_layers={rnn.num_layers}, bidirectional={rnn.bidirectional})"
        )
    return rnn


def _sequences(inputs: torch.Tensor, input_size: int, batch_first: bool) -> torch.Tensor:
    """``inputs`` as ``(batch, time, input_size)`` float64."""
    inputs = _check_tensor("inputs", inputs, dims=(2, 3))
    if inputs.dim() == 3 and not batch_first:
        inputs = inputs.transpose(0, 1)
    batch = inputs if inputs.dim() == 3 else inputs.unsqueeze(0)
    if batch.shape[-1] != input_size or batch.shape[1] < 1:
        raise ValueError(
            f"inputs must be (time, {input_size}) or (batch, time, {input_size}) with time >= 1, "
            f"got shape {tuple(inputs.shape)}"
        )
    return batch.detach().double()


def _jacobian_product_norms(step_jacobians: list[torch.Tensor]) -> np.ndarray:
    """Given per-step Jacobians ``J_t = dh_t/dh_{t-1}`` for ``t = 1..T`` (each ``(batch, H, H)``),
    return ``||J_T J_{T-1} ... J_{T-k+1}||_2`` for ``k = 0..T`` as ``(batch, T + 1)``."""
    batch, hidden = step_jacobians[0].shape[0], step_jacobians[0].shape[-1]
    product = torch.eye(hidden, dtype=torch.float64).expand(batch, hidden, hidden)
    norms = [torch.linalg.matrix_norm(product, ord=2)]
    for jacobian in reversed(step_jacobians):  # dh_T/dh_{T-k-1} = dh_T/dh_{T-k} @ J_{T-k}
        product = product @ jacobian
        norms.append(torch.linalg.matrix_norm(product, ord=2))
    return torch.stack(norms, dim=1).numpy()


def rnn_jacobian_norms(
    model: nn.Module, inputs: torch.Tensor, *, h0: torch.Tensor | None = None
) -> np.ndarray:
    """Spectral norms ``||dh_T/dh_{T-k}||_2`` for ``k = 0, 1, ..., T`` of a tanh/ReLU ``nn.RNN``.

    ``model`` is a single-layer ``nn.RNN`` or a :class:`~gradtext.models.SequenceModel` with
    ``cell="rnn"``. ``inputs`` is one sequence ``(T, input_size)`` or a batch
    ``(batch, T, input_size)`` (batch-first unless the ``nn.RNN`` says otherwise); ``h0`` the
    initial state (zeros by default; ``(hidden,)`` or ``(batch, hidden)``).

    Returns ``norms`` with ``norms[k] = ||dh_T/dh_{T-k}||_2`` (largest singular value), so
    ``norms[0] = 1`` (the identity) and ``norms[T]`` is the sensitivity of the last state to the
    initial one. Shape ``(T + 1,)`` for one sequence, ``(batch, T + 1)`` for a batch.

    The recurrence is ``h_t = phi(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, so each step's
    Jacobian is ``dh_t/dh_{t-1} = diag(phi'(a_t)) W_hh``: the same matrix every step, times the
    activation's slope. The product of ``k`` of them shrinks or grows roughly geometrically in
    ``k`` (Bengio et al. 1994), and ``||dh_T/dh_{T-k}|| <= (gamma * sigma_max(W_hh))^k``
    (Pascanu et al. 2013). Computed in float64 from the model's weights.

    >>> _ = torch.manual_seed(0)
    >>> rnn = torch.nn.RNN(2, 16, batch_first=True)
    >>> norms = rnn_jacobian_norms(rnn, torch.randn(30, 2))
    >>> norms.shape, float(norms[0])
    ((31,), 1.0)
    >>> bool(norms[30] < norms[1])   # the signal from 30 steps back has faded
    True
    """
    rnn = _single_layer_rnn(model)
    batch = _sequences(inputs, rnn.input_size, rnn.batch_first)
    w_ih, w_hh = rnn.weight_ih_l0.detach().double(), rnn.weight_hh_l0.detach().double()
    bias = torch.zeros(rnn.hidden_size, dtype=torch.float64)
    if rnn.bias:
        bias = rnn.bias_ih_l0.detach().double() + rnn.bias_hh_l0.detach().double()
    h = _initial_state(h0, batch.shape[0], rnn.hidden_size)
    jacobians = []
    for t in range(batch.shape[1]):
        a = batch[:, t] @ w_ih.T + h @ w_hh.T + bias
        if rnn.nonlinearity == "tanh":
            h = torch.tanh(a)
            slope = 1 - h**2
        else:
            h = torch.relu(a)
            slope = (a > 0).double()
        jacobians.append(slope.unsqueeze(-1) * w_hh)  # diag(slope) @ W_hh, batched
    norms = _jacobian_product_norms(jacobians)
    return norms[0] if inputs.dim() == 2 else norms


def cell_jacobian_norms(
    cell: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    h0: torch.Tensor,
) -> np.ndarray:
    """``||dh_T/dh_{T-k}||_2`` for ``k = 0..T`` of any recurrent cell ``h_t = cell(x_t, h_{t-1})``.

    ``cell`` maps a batch of inputs ``(batch, input_size)`` and states ``(batch, hidden)`` to new
    states, e.g. ``nn.RNNCell`` or ``nn.GRUCell`` (for an LSTM, wrap it so that the state is
    ``h`` and ``c`` concatenated). ``inputs``: ``(T, input_size)`` or ``(batch, T, input_size)``;
    ``h0``: ``(hidden,)`` or ``(batch, hidden)``. Per-step Jacobians come from
    ``torch.func.jacrev``, so this is exact for any cell; it matches :func:`rnn_jacobian_norms`
    on an ``nn.RNN``. Computed in the cell's own dtype; results are float64.

    >>> _ = torch.manual_seed(0)
    >>> cell = torch.nn.GRUCell(2, 8)
    >>> cell_jacobian_norms(cell, torch.randn(10, 2), torch.zeros(8)).shape
    (11,)
    """
    if not callable(cell):
        raise TypeError(f"cell must be callable as cell(x_t, h), got {type(cell).__name__}")
    inputs = _check_tensor("inputs", inputs, dims=(2, 3))
    batch = inputs if inputs.dim() == 3 else inputs.unsqueeze(0)
    h0 = _check_tensor("h0", h0, dims=(1, 2))
    h = h0.expand(batch.shape[0], -1) if h0.dim() == 1 else h0
    if h.shape[0] != batch.shape[0]:
        raise ValueError(f"h0 has batch size {h.shape[0]}, inputs have {batch.shape[0]}")
    parameter = next(iter(cell.parameters()), None) if isinstance(cell, nn.Module) else None
    dtype = parameter.dtype if parameter is not None else h.dtype
    batch, h = batch.detach().to(dtype), h.detach().to(dtype)

    def one_step(x_t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:  # unbatched
        return cell(x_t.unsqueeze(0), state.unsqueeze(0)).squeeze(0)

    step_jacobian = torch.func.vmap(torch.func.jacrev(one_step, argnums=1))
    jacobians = []
    with torch.no_grad():
        for t in range(batch.shape[1]):
            jacobians.append(step_jacobian(batch[:, t], h).double())
            h = cell(batch[:, t], h)
    norms = _jacobian_product_norms(jacobians)
    return norms[0] if inputs.dim() == 2 else norms


def _initial_state(h0: torch.Tensor | None, batch: int, hidden: int) -> torch.Tensor:
    if h0 is None:
        return torch.zeros(batch, hidden, dtype=torch.float64)
    h0 = _check_tensor("h0", h0, dims=(1, 2))
    if h0.shape[-1] != hidden or (h0.dim() == 2 and h0.shape[0] != batch):
        raise ValueError(f"h0 must be ({hidden},) or ({batch}, {hidden}), got {tuple(h0.shape)}")
    return h0.detach().double().expand(batch, hidden)


def fit_decay_rate(norms: np.ndarray, *, start: int = 1) -> float:
    """The per-step factor ``r`` in ``norms[k] ~ C r^k``, fitted by least squares on a log scale.

    ``norms`` is a curve from :func:`rnn_jacobian_norms` (one sequence; average several on a log
    scale first). ``start`` skips the first entries (``k = 0`` is the identity). Below 1: the
    gradient through time vanishes geometrically; above 1: it explodes.

    >>> round(fit_decay_rate(0.5 ** np.arange(20)), 6)
    0.5
    """
    values = np.asarray(norms, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"norms must be 1-D (one curve), got shape {values.shape}")
    ks = np.arange(values.size)[start:]
    values = values[start:]
    keep = np.isfinite(values) & (values > 0)
    if keep.sum() < 2:
        raise ValueError("norms must contain at least two positive finite values after start")
    slope = np.polyfit(ks[keep], np.log(values[keep]), 1)[0]
    return float(math.exp(slope))


@dataclass(frozen=True)
class PascanuRegime:
    """What Pascanu, Mikolov & Bengio's conditions say about a recurrent weight matrix.

    ``regime`` is ``"vanishing"`` when ``sigma_max < 1/gamma`` (then ``||dh_T/dh_{T-k}|| <=
    (gamma sigma_max)^k`` shrinks geometrically for *every* input: vanishing is guaranteed) and
    ``"may explode"`` otherwise (the necessary condition for exploding holds; whether gradients
    actually explode depends on the inputs and on saturation). ``reason`` says it in words.
    """

    regime: str
    sigma_max: float
    gamma: float
    reason: str

    @property
    def threshold(self) -> float:
        """``1 / gamma``, the value of ``sigma_max`` that separates the regimes."""
        return 1.0 / self.gamma

    @property
    def vanishing_guaranteed(self) -> bool:
        return self.regime == "vanishing"

    @property
    def explosion_possible(self) -> bool:
        return self.regime == "may explode"


def pascanu_regime(model: nn.Module | torch.Tensor, activation: str | None = None) -> PascanuRegime:
    """Which side of Pascanu et al.'s bound a recurrent net is on, and why.

    ``model``: an ``nn.RNN`` (single layer), an ``nn.RNNCell``, a
    :class:`~gradtext.models.SequenceModel` with ``cell="rnn"``, or the recurrent matrix itself
    (a square tensor, then ``activation`` is required). ``activation`` defaults to the model's
    nonlinearity; pass ``"sigmoid"`` for a sigmoid recurrent net (``gamma = 1/4``).

    >>> rnn = torch.nn.RNN(1, 4)
    >>> with torch.no_grad():
    ...     _ = rnn.weight_hh_l0.copy_(0.5 * torch.eye(4))
    >>> pascanu_regime(rnn).regime
    'vanishing'
    >>> pascanu_regime(3.0 * torch.eye(4), activation="sigmoid").regime
    'vanishing'
    >>> pascanu_regime(5.0 * torch.eye(4), activation="sigmoid").regime
    'may explode'
    """
    if isinstance(model, torch.Tensor):
        if activation is None:
            raise ValueError("activation is required when model is a weight matrix")
        weight = model
        if weight.dim() != 2 or weight.shape[0] != weight.shape[1]:
            raise ValueError(f"model: a recurrent matrix must be square, got {tuple(weight.shape)}")
    elif isinstance(model, nn.RNNCell):
        weight = model.weight_hh
        activation = activation or model.nonlinearity
    elif isinstance(model, (nn.RNN, SequenceModel)):
        rnn = _single_layer_rnn(model)
        weight = rnn.weight_hh_l0
        activation = activation or rnn.nonlinearity
    else:
        raise TypeError(
            "model must be an nn.RNN, nn.RNNCell, SequenceModel(cell='rnn') or a square tensor, "
            f"got {type(model).__name__}"
        )
    gamma = derivative_bound(activation)
    sigma_max = float(torch.linalg.matrix_norm(weight.detach().double(), ord=2))
    threshold = 1.0 / gamma
    if sigma_max < threshold:
        regime = "vanishing"
        reason = (
            f"sigma_max(W_rec) = {sigma_max:.3g} < 1/gamma = {threshold:.3g} ({activation}: "
            f"gamma = {gamma:.3g}), so every step shrinks the backward signal by at least "
            f"{gamma * sigma_max:.3g}: ||dh_T/dh_(T-k)|| <= {gamma * sigma_max:.3g}^k, "
            "vanishing for every input"
        )
    else:
        regime = "may explode"
        reason = (
            f"sigma_max(W_rec) = {sigma_max:.3g} >= 1/gamma = {threshold:.3g} ({activation}: "
            f"gamma = {gamma:.3g}): the necessary condition for exploding holds, so gradients "
            "can grow with k; whether they do depends on the inputs (saturated units contract)"
        )
    return PascanuRegime(regime, sigma_max, gamma, reason)


# --------------------------------------------------------------------------------------------
# 4. The scalar RNN of Pascanu et al. and its cliff
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScalarRNNProblem:
    """The one-unit regression of Pascanu et al.: ``x_t = w * sigmoid(x_{t-1}) + b`` from ``x0``
    for ``steps`` steps, loss ``(x_T - target)^2``. Defaults are the book's (``x0 = 0.5``,
    ``T = 50``, ``target = 0.7``)."""

    x0: float = 0.5
    steps: int = 50
    target: float = 0.7

    def __post_init__(self) -> None:
        _check_positive_int("steps", self.steps)
        for name in ("x0", "target"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")

    def loss(self, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The loss at every ``(w, b)`` pair (tensors of one shape, broadcast), elementwise."""
        x = torch.full_like(w, float(self.x0))
        for _ in range(self.steps):
            x = w * torch.sigmoid(x) + b
        return (x - self.target) ** 2

    def loss_and_gradient(self, w, b) -> tuple[np.ndarray, np.ndarray]:
        """``(loss, gradient)`` at points ``w``, ``b`` (arrays of one shape): float64 NumPy arrays,
        ``gradient[..., 0] = dL/dw`` and ``gradient[..., 1] = dL/db``. Points are independent,
        so one backward pass gives every gradient."""
        w_t = torch.as_tensor(np.asarray(w, dtype=np.float64)).clone().requires_grad_(True)
        b_t = torch.as_tensor(np.asarray(b, dtype=np.float64)).clone().requires_grad_(True)
        if w_t.shape != b_t.shape:
            raise ValueError(f"w and b must have one shape, got {tuple(w_t.shape)} and "
                             f"{tuple(b_t.shape)}")
        loss = self.loss(w_t, b_t)
        grad_w, grad_b = torch.autograd.grad(loss.sum(), (w_t, b_t))
        return loss.detach().numpy(), torch.stack([grad_w, grad_b], dim=-1).numpy()


@dataclass(frozen=True)
class LossSurface:
    """The scalar RNN's loss over a grid: ``loss[i, j]`` and ``grad_norm[i, j]`` at
    ``(w[j], b[i])`` (rows are ``b``, as ``imshow``/``contourf`` expect)."""

    w: np.ndarray
    b: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray


def scalar_rnn_loss_surface(
    w: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    problem: ScalarRNNProblem | None = None,
) -> LossSurface:
    """Loss and gradient norm of the scalar RNN over the grid ``w x b``.

    The cliff is narrow: a coarse grid may step over it (a 0.1-spaced grid over w in [-4, 12]
    shows gradient norms of at most ~40, while the wall's gradient is in the thousands); use
    :func:`steepest_point` on a line to find it.

    >>> s = scalar_rnn_loss_surface(np.linspace(-2, 10, 5), np.linspace(-5, 1, 4))
    >>> s.loss.shape, s.grad_norm.shape
    ((4, 5), (4, 5))
    """
    problem = problem or ScalarRNNProblem()
    w = _check_grid("w", w)
    b = _check_grid("b", b)
    grid_w, grid_b = np.meshgrid(w, b)
    loss, gradient = problem.loss_and_gradient(grid_w, grid_b)
    return LossSurface(w, b, loss, np.linalg.norm(gradient, axis=-1))


@dataclass(frozen=True)
class DescentPath:
    """A gradient-descent run on the scalar RNN: ``params[i] = (w, b)`` before step ``i``
    (``steps + 1`` rows), with ``loss[i]`` and ``grad_norm[i]`` (unclipped) there, and
    ``step_length[i] = ||params[i + 1] - params[i]||``."""

    params: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray

    @property
    def step_length(self) -> np.ndarray:
        return np.linalg.norm(np.diff(self.params, axis=0), axis=1)

    @property
    def largest_step(self) -> float:
        """The longest single step, the signature of a jump off a cliff."""
        return float(self.step_length.max()) if len(self.params) > 1 else 0.0


def scalar_rnn_descent(
    start: tuple[float, float],
    *,
    lr: float,
    steps: int,
    clip: Callable[[np.ndarray], np.ndarray] | None = None,
    problem: ScalarRNNProblem | None = None,
) -> DescentPath:
    """Plain gradient descent on the scalar RNN from ``start = (w, b)``.

    ``clip``, if given, maps the gradient (a NumPy array ``[dL/dw, dL/db]``) to the one that is
    applied, e.g. norm clipping at 1::

        clip=lambda g: g * min(1.0, 1.0 / np.linalg.norm(g))

    A non-finite loss or gradient stops the run there (the last row keeps it).

    >>> path = scalar_rnn_descent((5.0, -2.5), lr=0.01, steps=3)
    >>> path.params.shape, path.step_length.shape
    ((4, 2), (3,))
    """
    problem = problem or ScalarRNNProblem()
    point = np.asarray(start, dtype=np.float64)
    if point.shape != (2,) or not np.all(np.isfinite(point)):
        raise ValueError(f"start must be a finite pair (w, b), got {start!r}")
    lr = _check_nonnegative("lr", lr)
    steps = _check_positive_int("steps", steps)
    if clip is not None and not callable(clip):
        raise TypeError(f"clip must be None or a callable gradient -> gradient, got {clip!r}")
    params, losses, norms = [point], [], []
    for step in range(steps + 1):
        loss, gradient = problem.loss_and_gradient(point[0], point[1])
        losses.append(float(loss))
        norms.append(float(np.linalg.norm(gradient)))
        if step == steps or not (np.isfinite(loss) and np.all(np.isfinite(gradient))):
            break
        update = np.asarray(clip(gradient) if clip is not None else gradient, dtype=np.float64)
        point = point - lr * update
        params.append(point)
    return DescentPath(np.array(params), np.array(losses), np.array(norms))


@dataclass(frozen=True)
class SteepestPoint:
    """Where a line search found the largest gradient norm: the point, its gradient norm, and the
    searched line (``position`` in [0, 1] from start to end, with ``grad_norm`` there)."""

    w: float
    b: float
    max_grad_norm: float
    position: np.ndarray
    grad_norm: np.ndarray


def steepest_point(
    start: tuple[float, float],
    end: tuple[float, float],
    *,
    points: int = 4001,
    problem: ScalarRNNProblem | None = None,
) -> SteepestPoint:
    """Search the segment from ``start`` to ``end`` in ``(w, b)`` for the largest gradient norm.

    The segment is sampled at ``points`` equally spaced points, then refined around the best
    one on a 100 times finer grid. On a line crossing Pascanu et al.'s cliff this finds the wall.

    >>> cliff = steepest_point((4.0, -3.0), (8.0, -3.0))
    >>> round(cliff.w, 2), cliff.max_grad_norm > 1e5
    (5.62, True)
    """
    problem = problem or ScalarRNNProblem()
    start_v = np.asarray(start, dtype=np.float64)
    end_v = np.asarray(end, dtype=np.float64)
    for name, value in (("start", start_v), ("end", end_v)):
        if value.shape != (2,) or not np.all(np.isfinite(value)):
            raise ValueError(f"{name} must be a finite pair (w, b), got {value.tolist()!r}")
    points = _check_positive_int("points", points)
    if points < 3:
        raise ValueError(f"points must be >= 3, got {points}")

    def norms_at(t: np.ndarray) -> np.ndarray:
        line = start_v + t[:, None] * (end_v - start_v)
        gradient = problem.loss_and_gradient(line[:, 0], line[:, 1])[1]
        return np.linalg.norm(gradient, axis=-1)

    t = np.linspace(0.0, 1.0, points)
    norms = norms_at(t)
    best = int(np.nanargmax(norms))
    spacing = 1.0 / (points - 1)
    fine = np.clip(np.linspace(t[best] - spacing, t[best] + spacing, 201), 0.0, 1.0)
    fine_norms = norms_at(fine)
    fine_best = int(np.nanargmax(fine_norms))
    w, b = start_v + fine[fine_best] * (end_v - start_v)
    return SteepestPoint(float(w), float(b), float(fine_norms[fine_best]), t, norms)


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _check_nonnegative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return float(value)


def _check_widths(widths: Sequence[int]) -> list[int]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise TypeError(f"widths must be a sequence of ints, got {type(widths).__name__}")
    if len(widths) < 2:
        raise ValueError(f"widths must list at least the input and output sizes, got {widths!r}")
    return [_check_positive_int("widths", w) for w in widths]


def _per_layer(name: str, value: float | Sequence[float], depth: int) -> list[float]:
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if len(value) != depth:
            raise ValueError(f"{name} must be a number or {depth} numbers, got {len(value)}")
        values = [_check_nonnegative(name, v) for v in value]
    else:
        values = [_check_nonnegative(name, value)] * depth
    return values


def _check_tensor(name: str, value: object, *, dims: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() not in dims:
        expected = " or ".join(f"{d}-D" for d in dims)
        raise ValueError(f"{name} must be {expected}, got shape {tuple(value.shape)}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
    return value


def _check_grid(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size < 2 or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be a 1-D array of at least 2 finite values")
    return array
