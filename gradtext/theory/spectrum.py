"""The input-output Jacobian of a network and its singular values."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from gradtext.theory._checks import (
    _check_nonnegative,
    _check_positive_int,
    _check_tensor,
)


def _as_function(model: Callable[[torch.Tensor], torch.Tensor]):
    """``v (1-D) -> model(v[None]).flatten()``: the model as a map between vectors."""
    if not callable(model):
        raise TypeError(f"model must be callable (an nn.Module), got {type(model).__name__}")

    def f(v: torch.Tensor) -> torch.Tensor:
        return model(v.unsqueeze(0)).reshape(-1)

    return f


def _prepare_point(model, x: torch.Tensor) -> torch.Tensor:
    if isinstance(x, torch.Tensor) and x.dim() != 1:
        raise ValueError(
            f"x must be 1-D: one input vector of n features, which the model sees as a batch "
            f"of one, shape (1, n); got shape {tuple(x.shape)}. Models that take other input "
            "shapes (images, sequences) are not supported"
        )
    x = _check_tensor("x", x, dims=(1,))
    parameter = next(iter(model.parameters()), None) if isinstance(model, nn.Module) else None
    if parameter is None:
        return x.detach()
    return x.detach().to(device=parameter.device, dtype=parameter.dtype)


def input_output_jacobian(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
    """The Jacobian ``d model(x) / d x`` at one input ``x`` (1-D), shape ``(outputs, inputs)``.

    ``x`` must be a 1-D tensor of ``n`` features. The model is called on ``x[None]``, a batch
    of one of shape ``(1, n)``, so it must take a ``(batch, features)`` matrix, as an MLP
    does; its output (any shape) is flattened, so ``outputs`` counts all of its entries.
    Models that need another input shape, such as a CNN on ``(batch, channels, height,
    width)`` images or an RNN on ``(batch, time, features)`` sequences, are not supported
    (an ``x`` that is not 1-D raises ``ValueError``). Exact, by reverse-mode
    ``torch.func.jacrev``. ``x`` is moved to the device and dtype of the model's parameters.
    The model is called as it is: put it in ``eval()`` mode first if it has dropout, or the
    Jacobian is that of one random dropout mask.

    >>> net = torch.nn.Linear(3, 2)
    >>> torch.allclose(input_output_jacobian(net, torch.ones(3)), net.weight)
    True
    """
    x = _prepare_point(model, x)
    return torch.func.jacrev(_as_function(model))(x).detach()


def jacobian_singular_values(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
    """Singular values of the input-output Jacobian at ``x`` (one 1-D input), largest first.

    The model and ``x`` are as in :func:`input_output_jacobian` (a model on ``(batch,
    features)`` matrices, ``x`` one 1-D input).

    Returns a float64 NumPy array of length ``min(outputs, inputs)``. Exact (full Jacobian,
    then an SVD); for large nets where that is too slow use :func:`extreme_singular_values`.

    >>> net = torch.nn.Linear(4, 4, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.diag(torch.tensor([3.0, 1.0, 2.0, 0.5])))
    >>> jacobian_singular_values(net, torch.zeros(4)).tolist()
    [3.0, 2.0, 1.0, 0.5]
    """
    jacobian = input_output_jacobian(model, x)
    return torch.linalg.svdvals(jacobian.to(device="cpu", dtype=torch.float64)).numpy()


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
    start = torch.randn(size, generator=generator, dtype=torch.float64).to(x.device, dtype)

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
