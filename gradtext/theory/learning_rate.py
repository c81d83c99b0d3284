"""The learning rate: gradient descent on a quadratic diverges above 2 / lambda_max."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gradtext.theory._checks import _check_nonnegative, _check_positive_int


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
    if not np.all(np.isfinite(theta)):
        raise ValueError(f"start must be finite, got {theta.tolist()!r}")
    losses, norms = [], []
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps + 1):
            gradient = eig * theta
            losses.append(0.5 * float(eig @ theta**2))
            norms.append(float(np.linalg.norm(gradient)))
            theta = theta - lr * gradient
    return QuadraticDescent(np.array(losses), np.array(norms))
