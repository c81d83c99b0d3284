"""Where tensors live and how runs are made repeatable.

>>> from gradtext import resolve_device, seed_everything
>>> resolve_device("cpu")
device(type='cpu')
>>> seed_everything(0)
"""

from __future__ import annotations

import numbers
import os
import random

import numpy as np
import torch

_ACCEPTED = "'auto', 'cpu', 'cuda', 'cuda:<index>', 'mps' or a torch.device"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a device request into a ``torch.device``.

    ``"auto"`` picks CUDA when available, then Apple's MPS, then the CPU. Explicit requests
    (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, a ``torch.device``) are checked: asking for
    a device this machine does not have raises ``ValueError`` instead of failing later.

    >>> resolve_device("auto").type in {"cpu", "cuda", "mps"}
    True
    """
    if isinstance(device, torch.device):
        requested = device
    elif isinstance(device, str):
        name = device.strip().lower()
        if name == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda")
            if _mps_available():
                return torch.device("mps")
            return torch.device("cpu")
        if not _looks_like_device(name):
            raise ValueError(f"device must be one of {_ACCEPTED}; got {device!r}")
        requested = torch.device(name)
    else:
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")

    if requested.type == "cpu":
        return requested
    if requested.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was requested but CUDA is not available here")
        index = requested.index if requested.index is not None else 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
        return requested
    if requested.type == "mps":
        if not _mps_available():
            raise ValueError(f"device={device!r} was requested but MPS is not available here")
        return requested
    raise ValueError(f"device must be one of {_ACCEPTED}; got {device!r}")


def _looks_like_device(name: str) -> bool:
    if name in {"cpu", "cuda", "mps"}:
        return True
    if name.startswith("cuda:"):
        return name[5:].isdigit()
    return False


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA).

    >>> seed_everything(1); a = torch.rand(2)
    >>> seed_everything(1); bool(torch.equal(a, torch.rand(2)))
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    seed = int(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (seeding the legacy global generator is the point)
    torch.manual_seed(seed)
