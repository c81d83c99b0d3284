"""The one-unit RNN of Pascanu et al. and the cliff in its loss surface."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gradtext.theory._checks import _check_grid, _check_nonnegative, _check_positive_int


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
            if (
                isinstance(value, bool)
                or not isinstance(value, numbers.Real)
                or not math.isfinite(value)
            ):
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
    shows gradient norms of at most ~40, while on the wall the gradient exceeds 1e5); use
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
        """The length of every step, ``||params[i + 1] - params[i]||``."""
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
    one on a 100 times finer grid. A wall can be far narrower than the grid (on ``b = -3`` the
    gradient exceeds 1e4 only within about 1e-5 of the wall), so the search also looks at how
    much the loss jumps between neighbouring samples: a jump ``|dL|`` over a length ``ds``
    means that some point between them has a gradient norm of at least ``|dL| / ds`` (the mean
    value theorem). While that bound beats the largest gradient sampled, the search zooms into
    the interval with the largest jump. On a line crossing Pascanu et al.'s cliff this finds
    the wall. ``position`` and ``grad_norm`` are the first, equally spaced samples.

    >>> cliff = steepest_point((4.0, -3.0), (8.0, -3.0))
    >>> round(cliff.w, 2), cliff.max_grad_norm > 1e5
    (5.62, True)
    >>> round(steepest_point((2.0, -3.0), (12.0, -3.0)).w, 2)   # a grid step of 0.0025
    5.62
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
    length = float(np.linalg.norm(end_v - start_v))

    def evaluate(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        line = start_v + t[:, None] * (end_v - start_v)
        loss, gradient = problem.loss_and_gradient(line[:, 0], line[:, 1])
        return loss, np.linalg.norm(gradient, axis=-1)

    def largest_jump(t: np.ndarray, loss: np.ndarray) -> tuple[int, float]:
        """The interval ``[t[i], t[i + 1]]`` with the largest ``|dL| / ds``, and that bound."""
        with np.errstate(invalid="ignore", divide="ignore"):
            slopes = np.abs(np.diff(loss)) / (np.diff(t) * length)
        if length == 0 or not np.any(np.isfinite(slopes)):
            return 0, 0.0
        index = int(np.nanargmax(np.where(np.isfinite(slopes), slopes, np.nan)))
        return index, float(slopes[index])

    t = np.linspace(0.0, 1.0, points)
    loss, norms = evaluate(t)
    best = int(np.nanargmax(norms))
    spacing = 1.0 / (points - 1)
    fine = np.clip(np.linspace(t[best] - spacing, t[best] + spacing, 201), 0.0, 1.0)
    fine_norms = evaluate(fine)[1]
    fine_best = int(np.nanargmax(fine_norms))
    best_t, best_norm = float(fine[fine_best]), float(fine_norms[fine_best])

    zoom_t, zoom_loss = t, loss
    for _ in range(10):  # 200 times narrower each time: float64 resolution within 8 zooms
        index, bound = largest_jump(zoom_t, zoom_loss)
        if not bound > best_norm:
            break
        zoom_t = np.linspace(zoom_t[index], zoom_t[index + 1], 201)
        zoom_loss, zoom_norms = evaluate(zoom_t)
        if np.nanmax(zoom_norms) > best_norm:
            zoom_best = int(np.nanargmax(zoom_norms))
            best_t, best_norm = float(zoom_t[zoom_best]), float(zoom_norms[zoom_best])

    w, b = start_v + best_t * (end_v - start_v)
    return SteepestPoint(float(w), float(b), best_norm, t, norms)
