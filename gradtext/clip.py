"""Gradient clipping: by global norm, by value, per layer, and adaptive (AGC, AutoClip, z-score).

Every function works on an iterable of parameters or an ``nn.Module`` and changes ``.grad``
in place, like :func:`torch.nn.utils.clip_grad_norm_`. Norms are overflow-safe: float32
gradients of 1e20 give a finite norm and a correct clip (PyTorch issue 46849). They are
accumulated in float64, except in the two clippers timed against a baseline
(:func:`clip_by_norm`, :class:`AdaptiveGradientClipping`), which on the CPU work in the
gradients' own dtype and recompute in float64 only when that overflows or underflows.
Telemetry is returned as tensors: nothing here waits for an accelerator unless you read a value.

>>> import torch
>>> p = torch.nn.Parameter(torch.zeros(2)); p.grad = torch.tensor([3.0, 4.0])
>>> result = clip_by_norm([p], max_norm=1.0)
>>> float(result.total_norm), [round(g, 4) for g in p.grad.tolist()]
(5.0, [0.6, 0.8])
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

Parameters = Iterable[torch.Tensor] | nn.Module

_NONFINITE_OPTIONS = ("skip", "zero", "raise")


@dataclass
class ClipResult:
    """What a clipping call did: norm before clipping, coefficient applied, whether it clipped.

    ``total_norm`` and ``coefficient`` are 0-d tensors (reading them synchronises);
    ``clipped`` is computed only when read.

    >>> result = ClipResult(total_norm=torch.tensor(5.0), coefficient=torch.tensor(0.2))
    >>> result.clipped
    True
    """

    total_norm: torch.Tensor
    coefficient: torch.Tensor

    @property
    def clipped(self) -> bool:
        """Whether the gradients were scaled down (``coefficient < 1``)."""
        return bool(self.coefficient < 1.0)


def _parameters(parameters: object, name: str = "parameters") -> list[torch.Tensor]:
    """``parameters`` (a Module, one tensor or an iterable of tensors) as a list of tensors,
    each once (a tensor listed twice, such as a weight tied between two layers, would be
    counted and scaled twice); a clear ``TypeError`` naming ``name`` for anything else."""
    if isinstance(parameters, nn.Module):
        parameters = parameters.parameters()
    elif isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    elif not isinstance(parameters, Iterable):
        raise TypeError(
            f"{name} must be a Module, a tensor or an iterable of tensors, "
            f"got {type(parameters).__name__}"
        )
    parameters = parameters if isinstance(parameters, list) else list(parameters)
    for p in parameters:
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"{name} must contain tensors, got {type(p).__name__}")
    if len(set(map(id, parameters))) < len(parameters):
        parameters = list({id(p): p for p in parameters}.values())
    return parameters


def _check_dense(grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """``grads``, or a ``TypeError`` if one is sparse (none of the norms here supports it)."""
    for g in grads:
        if g.layout != torch.strided:
            raise TypeError(
                f"parameters must have dense gradients, got a sparse gradient ({g.layout}) "
                f"for a parameter of shape {tuple(g.shape)}; use nn.Embedding(sparse=False)"
            )
    return grads


def _grads(parameters: Parameters) -> list[torch.Tensor]:
    return _check_dense([p.grad for p in _parameters(parameters) if p.grad is not None])


def _as_float(value: object) -> float | None:
    """A real number given as a Python or NumPy number or a one-element tensor, as a float;
    ``None`` for anything else (booleans included)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.dtype == torch.bool or value.is_complex():
            return None
        return float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _check_positive(name: str, value: object) -> float:
    number = _as_float(value)
    if number is None:
        raise TypeError(f"{name} must be a positive number, got {value!r}")
    if not number > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return number


def _check_positive_int(name: str, value: object, none_allowed: bool = False) -> int | None:
    """``value`` as an int if it is a positive Python or NumPy integer (not a bool), or None
    if it is None and ``none_allowed``."""
    if value is None and none_allowed:
        return None
    expected = "None or a positive int" if none_allowed else "a positive int"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def _check_eps(eps: object) -> float:
    number = _as_float(eps)
    if number is None:
        raise TypeError(f"eps must be a finite number >= 0, got {eps!r}")
    if not 0 <= number < math.inf:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return number


def _check_norm_type(norm_type: object) -> float:
    # like PyTorch, which calls float(norm_type): numbers, 0-d tensors and strings like 'inf'
    if isinstance(norm_type, str):
        try:
            number = float(norm_type)
        except ValueError:
            raise ValueError(
                f"norm_type must be a number >= 1 or inf (or a string such as 'inf'), "
                f"got {norm_type!r}"
            ) from None
    else:
        number = _as_float(norm_type)
    if number is None:
        raise TypeError(f"norm_type must be a number >= 1 or inf, got {norm_type!r}")
    if not number >= 1:
        raise ValueError(f"norm_type must be >= 1 (or inf), got {norm_type!r}")
    return number


def _grouped(grads: list[torch.Tensor]) -> dict[tuple, list[torch.Tensor]]:
    """The tensors by (device, dtype); the usual single group is found without a dict loop."""
    if not grads:
        return {}
    dtype, device = grads[0].dtype, grads[0].device
    if all(g.dtype is dtype for g in grads) and all(g.device == device for g in grads):
        return {(device, dtype): grads}
    groups: dict[tuple, list[torch.Tensor]] = defaultdict(list)
    for g in grads:
        groups[(g.device, g.dtype)].append(g)
    return dict(groups)


def total_norm(parameters: Parameters, norm_type: float = 2.0) -> torch.Tensor:
    """The ``norm_type``-norm of all gradients together, as a float64 0-d tensor (no sync).

    Per-tensor norms are accumulated in float64 by fused ``torch._foreach_norm`` calls, one per
    (device, dtype) group, so the result is finite for huge finite gradients (and as accurate as
    float64 allows; :func:`clip_by_norm` trades that for speed, see there).

    >>> p = torch.nn.Parameter(torch.zeros(1)); p.grad = torch.tensor([1e20])
    >>> f"{float(total_norm([p])):.3g}"
    '1e+20'
    """
    return _norm_of(_grads(parameters), _check_norm_type(norm_type))


_FLOAT64 = torch.float64
_SAFE_BELOW: dict[tuple[torch.dtype, float], float] = {}


def _safe_below(dtype: torch.dtype, norm_type: float) -> float:
    """The total norm below which a ``dtype`` accumulation may have lost terms to underflow.

    An entry whose ``norm_type``-th power underflows adds at most ``tiny`` to the sum of powers,
    so above ``tiny ** (1 / (2 p))`` the relative error is at most ``n * sqrt(tiny)`` for ``n``
    entries (1e-19 per entry in float32): negligible.
    """
    key = (dtype, norm_type)
    if key not in _SAFE_BELOW:
        _SAFE_BELOW[key] = torch.finfo(dtype).tiny ** (1.0 / (2.0 * norm_type))
    return _SAFE_BELOW[key]


def _norm_of(
    grads: list[torch.Tensor],
    norm_type: float,
    groups: dict[tuple, list[torch.Tensor]] | None = None,
    fast: bool = False,
) -> torch.Tensor:
    """The ``norm_type``-norm of ``grads`` together, as a float64 0-d tensor on the first one's
    device; overflow- and underflow-safe.

    By default the per-tensor norms are accumulated in float64. With ``fast``, on the CPU they
    are computed in each tensor's own dtype (as fast and as accurate as
    :func:`torch.nn.utils.clip_grad_norm_`: float32 accumulation, relative error up to about
    1e-4 for tensors of 1e7 entries) and combined in float64. Only when the result is
    not finite, or so small that float32 squares may have underflowed, are they recomputed
    with float64 accumulation: reading a CPU tensor waits for nothing, so this check is free.
    On other devices reading the result would wait for the device, so the per-tensor norms
    are always accumulated in float64 there (no host synchronisation). The inf-norm (the
    largest entry) is exact in any dtype.
    """
    if not grads:
        return torch.tensor(0.0, dtype=_FLOAT64)
    if groups is None:
        groups = _grouped(grads)
    device = grads[0].device
    if fast and all(dev.type == "cpu" for dev, _ in groups):
        total = _combine(groups, norm_type, device, None)
        narrow = [dtype for _, dtype in groups if dtype != _FLOAT64]
        if not narrow or norm_type == math.inf:
            return total
        value = float(total)  # a CPU tensor: no device to wait for
        if max(_safe_below(dtype, norm_type) for dtype in narrow) <= value < math.inf:
            return total
    return _combine(groups, norm_type, device, _FLOAT64)


def _combine(
    groups: dict[tuple, list[torch.Tensor]],
    norm_type: float,
    device: torch.device,
    dtype: torch.dtype | None,
) -> torch.Tensor:
    """Per-tensor norms by fused ``torch._foreach_norm`` calls, accumulated in ``dtype`` (None:
    each tensor's own), combined into one float64 norm."""
    norms = [
        torch.stack(torch._foreach_norm(group, norm_type, dtype=dtype)).to(device, _FLOAT64)
        for group in groups.values()
    ]
    return torch.linalg.vector_norm(norms[0] if len(norms) == 1 else torch.cat(norms), norm_type)


def _scale(
    grads: list[torch.Tensor],
    coefficient: torch.Tensor,
    groups: dict[tuple, list[torch.Tensor]] | None = None,
) -> None:
    if groups is None:
        groups = _grouped(grads)
    for (device, dtype), group in groups.items():
        torch._foreach_mul_(group, coefficient.to(device=device, dtype=dtype))


def clip_by_norm(
    parameters: Parameters,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
    *,
    eps: float = 1e-6,
) -> ClipResult:
    """Scale all gradients together so their ``norm_type``-norm is at most ``max_norm``.

    Same arguments and same effect on ``.grad`` as :func:`torch.nn.utils.clip_grad_norm_`
    (coefficient ``max_norm / (norm + eps)``, capped at 1). As there, ``parameters`` may be a
    single tensor, ``max_norm`` and ``norm_type`` may be Python or NumPy numbers or one-element
    tensors, and ``norm_type`` may be a string such as ``'inf'`` (read with ``float``); unlike
    there, a string ``max_norm`` and a ``norm_type`` below 1 raise, and a tensor listed twice
    (a tied weight) is counted and scaled once. ``eps`` (keyword-only; PyTorch's is fixed at
    1e-6) must be finite and ``>= 0``. A non-finite norm makes the
    gradients non-finite, as in PyTorch, or raises a ``RuntimeError`` with
    ``error_if_nonfinite=True`` (which waits for the device to read the norm); the stateful
    clippers below offer other choices. ``foreach`` is accepted for compatibility: the fused
    path is always used.

    As fast as PyTorch's: on the CPU the per-tensor norms are computed in the gradients' own
    dtype, as PyTorch does, and combined in float64; unlike PyTorch's, the norm is recomputed
    with float64 accumulation when it comes out non-finite or tiny, so float32 gradients of
    1e20 (whose squares overflow) are clipped correctly. On other devices the norms are always
    accumulated in float64, which needs no host synchronisation.

    >>> p = torch.nn.Parameter(torch.zeros(2)); p.grad = torch.tensor([0.3, 0.4])
    >>> clip_by_norm([p], max_norm=1.0).clipped
    False
    >>> result = clip_by_norm(p, torch.tensor(0.2), norm_type="inf")  # PyTorch's types too
    >>> round(float(result.total_norm), 4), [round(g, 4) for g in p.grad.tolist()]
    (0.4, [0.15, 0.2])
    """
    max_norm = _check_positive("max_norm", max_norm)
    eps = _check_eps(eps)
    grads = _grads(parameters)
    groups = _grouped(grads)
    norm = _norm_of(grads, _check_norm_type(norm_type), groups, fast=True)
    if error_if_nonfinite and not bool(torch.isfinite(norm)):
        raise RuntimeError(
            f"the total norm of order {norm_type} of the gradients is non-finite ({float(norm)}); "
            "pass error_if_nonfinite=False to clip anyway"
        )
    coefficient = torch.clamp(max_norm / (norm + eps), max=1.0)
    if grads:
        _scale(grads, coefficient, groups)
    return ClipResult(total_norm=norm, coefficient=coefficient)


def clip_by_value(
    parameters: Parameters, clip_value: float, foreach: bool | None = None
) -> ClipResult:
    """Clamp every gradient entry to ``[-clip_value, clip_value]`` (like ``clip_grad_value_``,
    with the same arguments; ``foreach`` is accepted for compatibility).

    Changes the direction of the gradient when some entries are clamped and others not.
    ``coefficient`` is the ratio of the 2-norm after to the norm before.

    >>> p = torch.nn.Parameter(torch.zeros(2)); p.grad = torch.tensor([3.0, 0.5])
    >>> _ = clip_by_value([p], 1.0); p.grad.tolist()
    [1.0, 0.5]
    """
    clip_value = _check_positive("clip_value", clip_value)
    grads = _grads(parameters)
    before = _norm_of(grads, 2.0)
    for group in _grouped(grads).values():
        torch._foreach_clamp_min_(group, -clip_value)
        torch._foreach_clamp_max_(group, clip_value)
    after = _norm_of(grads, 2.0)
    coefficient = torch.where(before > 0, after / before, torch.ones_like(before))
    return ClipResult(total_norm=before, coefficient=coefficient)


def clip_per_parameter(
    parameters: Parameters, max_norm: float, norm_type: float = 2.0, *, eps: float = 1e-6
) -> ClipResult:
    """Clip each gradient tensor (each layer's weight or bias) to norm ``max_norm`` on its own.

    ``total_norm`` is the global norm before clipping; ``coefficient`` is the smallest
    per-tensor coefficient.

    >>> a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    >>> a.grad, b.grad = torch.tensor([4.0]), torch.tensor([0.5])
    >>> _ = clip_per_parameter([a, b], 1.0); a.grad.item(), b.grad.item()
    (0.9999997615814209, 0.5)
    """
    max_norm = _check_positive("max_norm", max_norm)
    norm_type = _check_norm_type(norm_type)
    eps = _check_eps(eps)
    grads = _grads(parameters)
    if not grads:
        zero = torch.tensor(0.0, dtype=torch.float64)
        return ClipResult(total_norm=zero, coefficient=torch.ones_like(zero))
    device = grads[0].device
    all_norms, all_coefficients = [], []
    for (_device, dtype), group in _grouped(grads).items():
        norms = torch._foreach_norm(group, norm_type, dtype=torch.float64)
        coefficients = [torch.clamp(max_norm / (n + eps), max=1.0) for n in norms]
        torch._foreach_mul_(group, [c.to(dtype) for c in coefficients])
        all_norms.extend(n.to(device) for n in norms)
        all_coefficients.extend(c.to(device) for c in coefficients)
    norm = torch.linalg.vector_norm(torch.stack(all_norms), norm_type)
    return ClipResult(total_norm=norm, coefficient=torch.stack(all_coefficients).min())


_TRANSPOSED_CONVOLUTIONS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _transposed_weights(model: nn.Module) -> dict[int, tuple[torch.Tensor, int]]:
    """The weights of the transposed convolutions in ``model``, by id: (weight, groups)."""
    return {
        id(m.weight): (m.weight, m.groups)
        for m in model.modules()
        if isinstance(m, _TRANSPOSED_CONVOLUTIONS) and isinstance(m.weight, torch.Tensor)
    }


def _groups(p: torch.Tensor, transposed: dict[int, tuple[torch.Tensor, int]]) -> int:
    """The ``groups`` of the transposed convolution whose weight ``p`` is; 0 for any other
    tensor (units along the first dimension)."""
    entry = transposed.get(id(p))
    return entry[1] if entry is not None and entry[0] is p else 0


class AdaptiveGradientClipping:
    """Unit-wise adaptive gradient clipping (AGC, Brock et al. 2021).

    Each output unit's gradient ``G_i`` is scaled so ``||G_i|| <= clipping * max(||W_i||, eps)``.
    Like the other clippers it takes a Module, one tensor or an iterable of tensors (anything
    else raises ``TypeError``). Brock et al. leave the final classifier layer unclipped: pass
    its parameters in ``exclude`` (a Module, one tensor or an iterable of tensors) rather than
    slicing the parameter list. Parameters of one shape are processed together in two reused
    buffers of at most ``workspace_entries`` entries each (about 4 MB in float32), which the
    clipper keeps between calls.

    A unit is a slice along a tensor's first dimension (a row of a Linear weight, an output
    channel of a Conv kernel; each entry of a bias), except for the weights of transposed
    convolutions (``nn.ConvTranspose1d/2d/3d``), which are laid out ``(in_channels,
    out_channels / groups, *kernel)``: there output channel ``j`` of group ``g`` is
    ``weight[g * in_g:(g + 1) * in_g, j]`` (``in_g = in_channels / groups``). A plain tensor
    does not say which layer it belongs to, so these weights are recognised only when the
    clipper is called with a Module, or when the model is given once as ``model`` (then plain
    tensors work too, as :func:`gradtext.train.fit` passes them); otherwise they are clipped by
    input channel, as in ``timm``'s ``adaptive_clip_grad``.

    >>> w = torch.nn.Parameter(torch.ones(2, 2)); w.grad = torch.full((2, 2), 10.0)
    >>> _ = AdaptiveGradientClipping(clipping=0.1)([w]); w.grad.norm(dim=1).tolist()
    [0.1414213627576828, 0.1414213627576828]
    >>> w.grad = torch.full((2, 2), 10.0)
    >>> _ = AdaptiveGradientClipping(clipping=0.1, exclude=w)(w); w.grad[0].tolist()
    [10.0, 10.0]
    >>> up = torch.nn.ConvTranspose1d(3, 2, 1, bias=False)  # weight (3, 2, 1): units = dim 1
    >>> up.weight.grad = torch.ones(3, 2, 1)
    >>> agc = AdaptiveGradientClipping(clipping=1.0, model=up)
    >>> _ = agc(up.parameters()); torch.allclose(
    ...     up.weight.grad.norm(dim=(0, 2)), up.weight.detach().norm(dim=(0, 2)))
    True
    """

    # Parameters of one shape are stacked, chunk by chunk, into two reused buffers of at most
    # this many entries each (weights and gradients), so that each chunk costs a few kernels
    # rather than a Python loop, without allocating (and page-faulting) fresh memory per call.
    workspace_entries = 1 << 20

    def __init__(
        self,
        clipping: float = 0.01,
        eps: float = 1e-3,
        exclude: Parameters | None = None,
        *,
        model: nn.Module | None = None,
    ) -> None:
        self.clipping = _check_positive("clipping", clipping)
        self.eps = _check_positive("eps", eps)
        items = [] if exclude is None else _parameters(exclude, "exclude")
        self._exclude: set[int] = {id(p) for p in items}
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module or None, got {type(model).__name__}")
        self._transposed = {} if model is None else _transposed_weights(model)
        self._workspace: dict[tuple, torch.Tensor] = {}

    def __call__(self, parameters: Parameters) -> ClipResult:
        with torch.no_grad():  # stacking parameters must not record a graph
            return self._clip(parameters)

    def _clip(self, parameters: Parameters) -> ClipResult:
        transposed = self._transposed
        if isinstance(parameters, nn.Module):
            transposed = transposed | _transposed_weights(parameters)
        params = [p for p in _parameters(parameters) if p.grad is not None]
        _check_dense([p.grad for p in params])
        if not params:
            zero = torch.tensor(0.0, dtype=_FLOAT64)
            return ClipResult(total_norm=zero, coefficient=torch.ones_like(zero))
        device = params[0].grad.device
        # tensors of one shape are stacked, so each shape costs a few kernels, not a loop
        by_shape: dict[tuple, list[torch.Tensor]] = defaultdict(list)
        excluded = []
        for p in params:
            if id(p) in self._exclude:
                excluded.append(p.grad)
            else:
                groups = _groups(p, transposed) if transposed else 0
                by_shape[(p.shape, p.device, p.dtype, groups)].append(p)
        # squared norms before and after, from the unit norms: no second pass over the gradients
        before = [_norm_of(excluded, 2.0, fast=True).square().to(device)] if excluded else []
        after = list(before)
        for (*_, groups), group in by_shape.items():
            size = group[0].numel()
            per_chunk = max(1, self.workspace_entries // max(size, 1))
            for start in range(0, len(group), per_chunk):
                chunk = group[start:start + per_chunk]
                self._clip_chunk(chunk, before, after, device, groups)
        norm_before = torch.stack(before).sum().sqrt()
        norm_after = torch.stack(after).sum().sqrt()
        coefficient = torch.where(
            norm_before > 0, norm_after / norm_before, torch.ones_like(norm_before)
        )
        return ClipResult(total_norm=norm_before, coefficient=coefficient)

    def _stacked(self, tensors: list[torch.Tensor], role: str) -> torch.Tensor:
        """``torch.stack(tensors)``, written into a reused buffer (one tensor: a view)."""
        if len(tensors) == 1:
            return tensors[0].unsqueeze(0)
        first = tensors[0]
        key = (role, first.device, first.dtype)
        entries = len(tensors) * first.numel()
        buffer = self._workspace.get(key)
        if buffer is None or buffer.numel() < entries:
            buffer = torch.empty(entries, dtype=first.dtype, device=first.device)
            self._workspace[key] = buffer
        return torch.stack(tensors, out=buffer[:entries].view(len(tensors), *first.shape))

    def _clip_chunk(
        self,
        chunk: list[torch.Tensor],
        before: list[torch.Tensor],
        after: list[torch.Tensor],
        device: torch.device,
        groups: int = 0,
    ) -> None:
        """Clip the gradients of parameters of one shape; add their squared norms (before and
        after) to ``before`` and ``after``. ``groups`` > 0: transposed-convolution weights of
        that many groups (units along dimension 1, split by group along dimension 0)."""
        grads = [p.grad for p in chunk]
        weights = self._stacked(chunk, "weights")
        stacked = self._stacked(grads, "grads")
        if groups:
            # (n, in, out_g, *k) -> (n, groups, in_g, out_g, *k); a unit is [:, g, :, j, ...]
            weights, stacked = (t.unflatten(1, (groups, -1)) for t in (weights, stacked))
            grads = [g.unflatten(0, (groups, -1)) for g in grads]  # views: scaled in place
            dims = (2, *range(4, stacked.dim()))
        else:
            dims = tuple(range(2, stacked.dim()))
        w_norm = torch.linalg.vector_norm(weights, dim=dims, keepdim=True) if dims \
            else weights.abs()
        g_norm = self._unit_norms(stacked, dims)
        limit = self.clipping * w_norm.clamp_min(self.eps)
        factor = torch.clamp(limit / g_norm.clamp_min(1e-6), max=1.0)
        g_norm = g_norm.to(_FLOAT64)
        before.append(g_norm.square().sum().to(device))
        after.append((g_norm * factor.to(_FLOAT64)).square().sum().to(device))
        torch._foreach_mul_(grads, list(factor.to(stacked.dtype).unbind(0)))

    @staticmethod
    def _unit_norms(stacked: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        """The norm of each unit (over ``dims`` of the stacked tensors), overflow-safe
        as in ``_norm_of``: in the gradients' dtype, recomputed in float64 only when the
        result is not finite or may have underflowed (on the CPU; elsewhere always float64,
        which needs no host synchronisation)."""
        if not dims:
            return stacked.abs()
        exact = stacked.device.type != "cpu" and stacked.dtype != _FLOAT64
        if not exact:
            norms = torch.linalg.vector_norm(stacked, dim=dims, keepdim=True)
            if stacked.dtype == _FLOAT64:
                return norms
            squares = float(norms.to(_FLOAT64).square().sum())  # a CPU tensor: nothing to wait for
            if _safe_below(stacked.dtype, 2.0) ** 2 <= squares < math.inf:
                return norms
        return torch.linalg.vector_norm(stacked, dim=dims, keepdim=True, dtype=_FLOAT64)

    def state_dict(self) -> dict:
        """The clipper's settings, for checkpoints (plain Python values)."""
        return {"clipping": self.clipping, "eps": self.eps}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.clipping = _check_positive("clipping", state["clipping"])
        self.eps = _check_positive("eps", state["eps"])


class _HistoryClipper(ABC):
    """Shared machinery of stateful clippers: non-finite handling and state."""

    def __init__(self, norm_type: float, nonfinite: str) -> None:
        self.norm_type = _check_norm_type(norm_type)
        if nonfinite not in _NONFINITE_OPTIONS:
            raise ValueError(f"nonfinite must be one of {_NONFINITE_OPTIONS}, got {nonfinite!r}")
        self.nonfinite = nonfinite

    @abstractmethod
    def _threshold(self) -> torch.Tensor | None:
        """The current threshold, or None while there is no history to set one."""

    @abstractmethod
    def _record(self, norm: torch.Tensor) -> None:
        """Add this step's norm to the history (a non-finite norm must not poison it)."""

    def __call__(self, parameters: Parameters) -> ClipResult:
        grads = _grads(parameters)
        norm = _norm_of(grads, self.norm_type)
        finite = torch.isfinite(norm)
        if self.nonfinite == "raise" and not bool(finite):
            raise FloatingPointError(f"non-finite gradient norm {float(norm)}")
        threshold = self._threshold()
        if threshold is None:
            coefficient = torch.ones_like(norm)
        else:
            coefficient = torch.clamp(threshold / (norm + 1e-6), max=1.0)
        # "zero" wipes a non-finite gradient out (coefficient 0); "skip" leaves it as it is
        # (coefficient 1, the factor applied: not the NaN or 0 that norm NaN or Inf would give),
        # and gradtext.fit stops on it
        if self.nonfinite == "zero":
            coefficient = torch.where(finite, coefficient, torch.zeros_like(coefficient))
            for g in grads:
                g.masked_fill_(~finite.to(g.device), 0.0)
        else:
            coefficient = torch.where(finite, coefficient, torch.ones_like(coefficient))
        if grads:
            _scale(grads, torch.where(finite, coefficient, torch.ones_like(coefficient)))
        self._record(norm)
        return ClipResult(total_norm=norm, coefficient=coefficient)


def _check_percentile(percentile: object) -> float:
    number = _as_float(percentile)
    if number is None:
        raise TypeError(f"percentile must be a number in (0, 100], got {percentile!r}")
    if not 0 < number <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    return number


class AutoClip(_HistoryClipper):
    """AutoClip (Seetharaman et al. 2020): clip to the ``percentile``-th percentile of past norms.

    Only finite norms enter the history. The first step (empty history) is not clipped.
    ``history_size`` keeps only the most recent finite norms (``None``: all of them). ``nonfinite``
    says what happens when the gradient's norm is NaN or Inf: ``"skip"`` leaves the gradient
    as it is (no clipping, nothing recorded, ``coefficient`` 1; ``gradtext.fit`` then stops on
    it), ``"zero"`` sets it to zero (``coefficient`` 0) so that a plain SGD step does nothing
    and ``gradtext.fit`` goes on (an optimizer with momentum or weight decay still moves the
    weights), ``"raise"`` raises ``FloatingPointError``.

    The percentile is the one of ``torch.nanquantile`` (linear interpolation), but computed
    from norms kept sorted in a buffer on the gradients' device: a step costs a few elementwise
    kernels over the window (no sort, no per-step tensor kept) and never waits for the device.
    ``history`` gives the window's norms, oldest first.

    >>> clipper = AutoClip(percentile=50)
    >>> p = torch.nn.Parameter(torch.zeros(1))
    >>> for g in [1.0, 3.0, 100.0]:
    ...     p.grad = torch.tensor([g]); r = clipper([p])
    >>> round(p.grad.item(), 3)
    2.0
    """

    def __init__(
        self,
        percentile: float = 10.0,
        norm_type: float = 2.0,
        nonfinite: str = "skip",
        history_size: int | None = None,
    ) -> None:
        super().__init__(norm_type, nonfinite)
        self.percentile = _check_percentile(percentile)
        self.history_size = _check_positive_int("history_size", history_size, none_allowed=True)
        self._set_history(torch.empty(0, dtype=_FLOAT64))

    # The state lives on the gradients' device and each step updates it with a few kernels,
    # without waiting for the device and without sorting:
    #   _recorded  steps recorded (a Python int; the finite norms are at most that many)
    #   _count     finite norms recorded so far (a 0-d int64 tensor)
    #   _sorted    the window's norms in ascending order, then +inf
    #   _recent    the window's norms in order of arrival: with history_size, a ring of
    #              history_size slots (the k-th finite norm in slot k % history_size); without,
    #              all finite norms (the k-th in slot k), grown by doubling like _sorted

    def _set_history(self, norms: torch.Tensor) -> None:
        """Start from ``norms`` (finite, oldest first, at most ``history_size`` of them)."""
        n = len(norms)
        capacity = self.history_size or max(64, 2 * n)
        self._recorded = n
        self._count = torch.tensor(n, device=norms.device)
        self._sorted = torch.full((capacity + 1,), math.inf, dtype=_FLOAT64, device=norms.device)
        self._sorted[:n] = norms.sort().values
        self._recent = torch.zeros(capacity, dtype=_FLOAT64, device=norms.device)
        self._recent[:n] = norms

    @property
    def history(self) -> torch.Tensor:
        """The finite norms that set the threshold (the ``history_size`` newest, or all),
        oldest first, as a float64 tensor. Reading it waits for the device."""
        count = int(self._count)
        if self.history_size is None:
            return self._recent[:count].clone()
        slots = torch.arange(max(0, count - self.history_size), count) % self.history_size
        return self._recent[slots.to(self._recent.device)]

    def _threshold(self) -> torch.Tensor | None:
        """The ``percentile``-th percentile of the window, computed like ``torch.nanquantile``
        (linear interpolation between the two nearest ranks) from the sorted norms."""
        if self._recorded == 0:
            return None
        size = self._count if self.history_size is None else self._count.clamp(
            max=self.history_size)
        rank = ((size - 1).to(_FLOAT64) * (self.percentile / 100.0)).clamp_min(0.0).view(1)
        below, above = rank.long(), rank.ceil().long()
        value = self._sorted.gather(0, below).lerp(self._sorted.gather(0, above), rank - below)
        # no finite norm yet: no clipping
        return torch.where(size > 0, value, torch.full_like(value, math.inf)).reshape(())

    def _record(self, norm: torch.Tensor) -> None:
        norm = norm.detach().to(_FLOAT64).reshape(1)
        if self._sorted.device != norm.device:
            # the state lives where the gradients are (moved once, e.g. after loading a
            # checkpoint), so that updating it never waits for the device
            self._count, self._sorted, self._recent = (
                t.to(norm.device) for t in (self._count, self._sorted, self._recent))
        # a non-finite norm is not recorded: deciding whether to record one would wait for the
        # device, so every update below is masked with ``finite`` instead
        finite = torch.isfinite(norm)
        size = self.history_size
        if size is None and self._recorded == len(self._recent):  # full: double the capacity
            self._sorted = torch.cat([self._sorted, torch.full_like(self._recent, math.inf)])
            self._recent = torch.cat([self._recent, torch.zeros_like(self._recent)])
        # the window holds at most this many norms, then +inf: one more slot for the new one
        most = self._recorded if size is None else min(self._recorded, size)
        window = self._sorted[: most + 1]
        if size is None:
            self._recent.index_copy_(0, self._count.view(1), norm)  # past the end if not finite
        else:
            slot = (self._count % size).view(1)
            oldest = self._recent.gather(0, slot)
            window = _sorted_without(window, oldest, finite & (self._count >= size))
            self._recent.index_copy_(0, slot, torch.where(finite, norm, oldest))
        self._sorted[: len(window)] = _sorted_with(window, norm, finite)
        self._count = self._count + finite.to(self._count.dtype).reshape(())
        self._recorded += 1

    def state_dict(self) -> dict:
        """The clipper's settings and history, for checkpoints (plain Python values)."""
        return {
            "percentile": self.percentile,
            "history": self.history.tolist(),
            "history_size": self.history_size,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.percentile = _check_percentile(state["percentile"])
        self.history_size = _check_positive_int(
            "history_size", state["history_size"], none_allowed=True)
        norms = torch.tensor([float(v) for v in state["history"]], dtype=_FLOAT64)
        norms = norms[torch.isfinite(norms)]
        self._set_history(norms if self.history_size is None else norms[-self.history_size:])


def _sorted_with(values: torch.Tensor, value: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """``values`` (ascending, ending in +inf) with ``value`` inserted in order and the last
    entry dropped, where ``active``; no host synchronisation."""
    at = torch.searchsorted(values, value)
    positions = torch.arange(len(values), device=values.device)
    previous = torch.cat([values[:1], values[:-1]])
    inserted = torch.where(positions < at, values, torch.where(positions == at, value, previous))
    return torch.where(active, inserted, values)


def _sorted_without(
    values: torch.Tensor, value: torch.Tensor, active: torch.Tensor
) -> torch.Tensor:
    """``values`` (ascending, ending in +inf, containing ``value``) with one ``value`` removed
    and +inf appended, where ``active``; no host synchronisation."""
    at = torch.searchsorted(values, value)
    positions = torch.arange(len(values), device=values.device)
    following = torch.cat([values[1:], values[-1:]])
    return torch.where(active & (positions >= at), following, values)


class ZScoreClip(_HistoryClipper):
    """Clip norms more than ``z`` standard deviations above their running (EMA) mean.

    Threshold ``mean + z * std`` of an exponential moving average (weight ``beta``) of past
    finite norms; the first ``warmup`` steps only gather statistics. ``nonfinite`` as in
    :class:`AutoClip`.

    >>> clipper = ZScoreClip(z=2.0, warmup=3)
    >>> p = torch.nn.Parameter(torch.zeros(1))
    >>> for g in [1.0, 1.1, 0.9, 1.0, 50.0]:
    ...     p.grad = torch.tensor([g]); r = clipper([p])
    >>> r.clipped
    True
    """

    def __init__(
        self,
        z: float = 3.0,
        beta: float = 0.98,
        warmup: int = 10,
        norm_type: float = 2.0,
        nonfinite: str = "skip",
    ) -> None:
        super().__init__(norm_type, nonfinite)
        self.z, self.beta, self.warmup = self._checked_settings(z, beta, warmup)
        self.mean = torch.tensor(0.0, dtype=torch.float64)
        self.var = torch.tensor(0.0, dtype=torch.float64)
        self.count = torch.tensor(0, dtype=torch.int64)

    @staticmethod
    def _checked_settings(z: object, beta: object, warmup: object) -> tuple[float, float, int]:
        checked_z = _check_positive("z", z)
        if checked_z == math.inf:  # mean + inf * std is NaN while the std is 0
            raise ValueError(f"z must be finite, got {z!r}")
        number = _as_float(beta)
        if number is None:
            raise TypeError(f"beta must be a number in (0, 1), got {beta!r}")
        if not 0 < number < 1:
            raise ValueError(f"beta must be in (0, 1), got {beta!r}")
        return checked_z, number, _check_positive_int("warmup", warmup)

    def _threshold(self) -> torch.Tensor | None:
        # during warm-up the threshold is infinite (no clipping); decided on device, no sync
        threshold = self.mean + self.z * self.var.sqrt()
        return torch.where(
            self.count >= self.warmup, threshold, torch.full_like(threshold, math.inf)
        )

    def _record(self, norm: torch.Tensor) -> None:
        if self.mean.device != norm.device:
            # the statistics live where the gradients are (moved once, e.g. after loading a
            # checkpoint), so that updating them never waits for the device
            self.mean, self.var, self.count = (
                t.to(norm.device) for t in (self.mean, self.var, self.count))
        finite = torch.isfinite(norm)
        value = torch.where(finite, norm.to(self.mean.dtype), self.mean)
        first = self.count == 0
        delta = value - self.mean
        mean = torch.where(first, value, self.mean + (1 - self.beta) * delta)
        var = torch.where(
            first, torch.zeros_like(self.var), self.beta * (self.var + (1 - self.beta) * delta**2)
        )
        self.mean = torch.where(finite, mean, self.mean)
        self.var = torch.where(finite, var, self.var)
        self.count = self.count + finite.to(torch.int64)

    def state_dict(self) -> dict:
        """The clipper's settings and history, for checkpoints (plain Python values)."""
        return {
            "z": self.z,
            "beta": self.beta,
            "warmup": self.warmup,
            "mean": float(self.mean),
            "var": float(self.var),
            "count": int(self.count),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.z, self.beta, self.warmup = self._checked_settings(
            state["z"], state["beta"], state["warmup"])
        self.mean = torch.tensor(state["mean"], dtype=torch.float64)
        self.var = torch.tensor(state["var"], dtype=torch.float64)
        self.count = torch.tensor(state["count"], dtype=torch.int64)
