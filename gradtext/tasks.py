"""Synthetic, seeded data sets: nothing is downloaded, and the same seed gives the same tensors.

Every function returns an ``(inputs, targets)`` pair of tensors, ready for
:func:`gradtext.train.fit`.

>>> x, y = argmax_task(n=100, dim=8, classes=3, seed=0)
>>> x.shape, y.shape, y.dtype
(torch.Size([100, 8]), torch.Size([100]), torch.int64)
"""

from __future__ import annotations

import math
import numbers

import torch


def _generator(seed: int) -> torch.Generator:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    return torch.Generator().manual_seed(int(seed))


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _floating(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    return dtype


def _noise(noise: float) -> float:
    if not noise >= 0:  # also NaN
        raise ValueError(f"noise must be >= 0, got {noise}")
    return float(noise)


def argmax_task(
    n: int = 1024, dim: int = 64, classes: int = 10, *, seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Classification with a random linear teacher: ``X ~ N(0, I)``, ``y = argmax(X R)``.

    ``R`` is a Gaussian ``dim x classes`` matrix, so the classes are balanced in expectation
    (for one draw of ``R`` a class's share can be off by a few tens of percent, as its column
    norm varies) and a linear model can reach zero error; a deep network that fails here fails
    for optimization reasons. Chance level is about ``ln(classes)`` nats of cross-entropy (the
    entropy of the labels, slightly less).

    >>> x, y = argmax_task(n=10, dim=4, classes=2, seed=1)
    >>> int(y.max()) <= 1
    True
    """
    n, dim, classes = _positive("n", n), _positive("dim", dim), _positive("classes", classes)
    if classes < 2:
        raise ValueError(f"classes must be >= 2, got {classes}")
    _floating(dtype)
    g = _generator(seed)
    teacher = torch.randn(dim, classes, generator=g, dtype=torch.float64)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    y = (x @ teacher).argmax(dim=1)
    return x.to(dtype), y


def teacher_student(
    n: int = 1024, dim: int = 16, out: int = 1, *, hidden: int = 32, noise: float = 0.0,
    seed: int = 0, dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Regression on the outputs of a random one-hidden-layer tanh teacher network.

    ``y = tanh(X A / sqrt(dim)) B / sqrt(hidden) + noise * eps`` with Gaussian ``A``, ``B``.

    >>> x, y = teacher_student(n=5, dim=3, out=2, seed=0)
    >>> y.shape
    torch.Size([5, 2])
    """
    n, dim = _positive("n", n), _positive("dim", dim)
    out, hidden = _positive("out", out), _positive("hidden", hidden)
    noise = _noise(noise)
    _floating(dtype)
    g = _generator(seed)
    a = torch.randn(dim, hidden, generator=g, dtype=torch.float64)
    b = torch.randn(hidden, out, generator=g, dtype=torch.float64)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    y = torch.tanh(x @ a / math.sqrt(dim)) @ b / math.sqrt(hidden)
    y = y + noise * torch.randn(n, out, generator=g, dtype=torch.float64)
    return x.to(dtype), y.to(dtype)


def spirals(
    n: int = 1000, classes: int = 2, *, turns: float = 1.5, noise: float = 0.1, seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Interleaved 2-D spirals, one arm per class: a small problem that needs a nonlinear model.

    >>> x, y = spirals(n=6, classes=3, seed=0)
    >>> x.shape, sorted(set(y.tolist()))
    (torch.Size([6, 2]), [0, 1, 2])
    """
    n = _positive("n", n)
    if isinstance(classes, bool) or not isinstance(classes, numbers.Integral) or classes < 2:
        raise ValueError(f"classes must be an int >= 2, got {classes!r}")
    classes = int(classes)
    noise = _noise(noise)
    _floating(dtype)
    g = _generator(seed)
    y = torch.arange(n) % classes
    radius = torch.rand(n, generator=g, dtype=torch.float64)
    angle = 2 * math.pi * (turns * radius + y.double() / classes)
    x = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    x = x + noise * torch.randn(n, 2, generator=g, dtype=torch.float64) * radius[:, None]
    return x.to(dtype), y


def adding_problem(
    n: int = 1024, length: int = 50, *, seed: int = 0, dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hochreiter & Schmidhuber's adding problem (1997, experiment 4).

    Each of the ``length`` steps has two channels: a value ``U(0, 1)`` and a marker. Exactly
    two markers are 1, one in each half of the sequence; the target is the sum of the two
    marked values. Inputs are ``(n, length, 2)``, targets ``(n, 1)``. Always predicting the
    mean (1.0) gives a mean squared error of about 1/6: chance level.

    >>> x, y = adding_problem(n=3, length=10, seed=0)
    >>> x.shape, y.shape, x[..., 1].sum(dim=1).tolist()
    (torch.Size([3, 10, 2]), torch.Size([3, 1]), [2.0, 2.0, 2.0])
    """
    n, length = _positive("n", n), _positive("length", length)
    if length < 2:
        raise ValueError(f"length must be >= 2, got {length}")
    _floating(dtype)
    g = _generator(seed)
    values = torch.rand(n, length, generator=g, dtype=torch.float64)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=g)
    second = torch.randint(half, length, (n,), generator=g)
    markers = torch.zeros(n, length, dtype=torch.float64)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    target = (values * markers).sum(dim=1, keepdim=True)
    return torch.stack([values, markers], dim=2).to(dtype), target.to(dtype)
