"""Argument checks shared by the theory modules."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


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


def _is_sequence(value: object) -> bool:
    """A list, tuple, range or NumPy array of numbers (not a string)."""
    return (isinstance(value, np.ndarray) and value.ndim > 0) or (
        isinstance(value, Sequence) and not isinstance(value, (str, bytes))
    )


def _check_widths(widths: Sequence[int]) -> list[int]:
    if not _is_sequence(widths) or (isinstance(widths, np.ndarray) and widths.ndim != 1):
        raise TypeError(f"widths must be a 1-D sequence of ints, got {type(widths).__name__}")
    if len(widths) < 2:
        raise ValueError(f"widths must list at least the input and output sizes, got {widths!r}")
    return [_check_positive_int("widths", w) for w in widths]


def _per_layer(name: str, value: float | Sequence[float], depth: int) -> list[float]:
    if _is_sequence(value):
        if (isinstance(value, np.ndarray) and value.ndim != 1) or len(value) != depth:
            raise ValueError(
                f"{name} must be a number or {depth} numbers, got {len(value)}"
                + (f" (shape {value.shape})" if isinstance(value, np.ndarray) else "")
            )
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
