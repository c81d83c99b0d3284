"""See inside a training run: :class:`GradientMonitor` records, layer by layer, what the
gradients and activations are doing, and :meth:`GradientMonitor.diagnose` says what it saw.

Attach it to any ``torch.nn.Module`` as a context manager, train as usual, then read::

    with GradientMonitor(model, optimizer=opt) as mon:
        for x, y in batches:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
    mon.grad_norms()     # (recorded steps x layers) NumPy array
    print(mon.diagnose())

What it records, once per backward pass (every ``every``-th pass):

- **layers**: a layer is a module that owns parameters directly (``nn.Linear``, ``nn.LSTM``,
  ...), named as in ``model.named_modules()``. A parameter shared by two modules counts in both.
- **gradient norm** of a layer: the L2 norm of the gradients of all its own parameters
  together (weight and bias), ``||dL/dW_l||``.
- **backward-signal norm**: ``||dL/dh_l||``, the gradient of the loss with respect to the
  layer's output ``h_l`` (summed in squares over every call when a module is used several times
  in one pass, e.g. unrolled through time). This is the quantity the theory of exploding and
  vanishing gradients is about; parameter-gradient tools do not show it.
- **activation statistics**: mean, standard deviation, the fraction of saturated units
  (tanh: ``|a| > 1 - margin``; sigmoid: within ``margin`` of 0 or 1) and the fraction of dead
  units (ReLU: units that are zero for every example; a unit is an entry of the last dimension,
  or for a convolution layer a channel, zero at every position too).
  *Which activation belongs to which layer*: when a parameter-free activation module
  (``nn.Tanh``, ``nn.ReLU``, ...) runs right after a layer, before the next layer runs, its output
  counts as that layer's activation (``DeepMLP``'s ``activations.i`` belongs to ``linears.i``);
  otherwise the layer's own output is used (its pre-activation, or the hidden states of an
  ``nn.RNN``/``nn.LSTM``). :attr:`GradientMonitor.activation_sources` lists the choice.
  Saturation and dead fractions are NaN where they do not apply. The statistics are computed
  at the end of the backward pass from the tensors the forward pass produced, summed in the
  activation's precision (half precision in float32); a nearly constant activation, whose
  standard deviation is below 1% of its root mean square, is summed again in float64.
- **weight norm** ``||W_l||`` and, when an optimizer is attached, the **update-to-weight
  ratio** ``||W_l(after step) - W_l(before)|| / ||W_l(before)||`` (a common rule of thumb: about
  1e-3 is healthy), the change measured on a fixed sample of each large parameter tensor unless
  ``update_sample=None`` (see :class:`GradientMonitor`).

Cost: norms are computed with fused ``torch._foreach_norm`` calls per device and dtype group,
everything stays on the device until an accessor reads it (one host synchronisation per
recorded pass checks that the statistics are finite), and passes that are not recorded pay for
one hook on the model's output and a finiteness check of a few gradients. Update ratios copy
a sample of the parameters before each recorded step, not the parameters. Finding where a
NaN/Inf came from costs nothing until one appears: the monitor keeps references to the tensors
of the current recorded pass and only inspects them, module by module, when a statistic comes
out non-finite. ``benchmarks/monitor_overhead.py`` measures the overhead.

What counts as a pass: a call of the model's own ``forward`` (calling its submodules directly
records nothing) followed by a backward pass that accumulates into the parameters' ``.grad``.

- A forward pass run with gradients enabled but never followed by ``backward()`` counts towards
  the next backward pass; run evaluation under ``torch.no_grad()``. A forward pass of the model
  frozen with ``requires_grad_(False)`` (a GAN's discriminator during the generator's step) ends
  with the backward pass through it, which is neither counted nor recorded.
- ``torch.autograd.grad`` (a gradient penalty, a saliency map) leaves ``.grad`` alone, so it is
  neither counted nor recorded; a ``backward()`` that follows on the same forward is the pass.
  For the same reason, an optimizer that steps inside the backward pass and clears ``.grad``
  there (``register_post_accumulate_grad_hook``) leaves nothing to record.
- With gradient accumulation, each micro-batch's ``backward()`` is a pass, recorded with the
  gradient accumulated so far. The update ratio of a recorded pass is that of the first
  optimizer step after it (with accumulation, the step that ends the accumulation), unless
  another recorded pass comes first. A second ``backward(retain_graph=True)`` through the same
  graph belongs to the pass that graph was recorded in.
- **Mixed precision**: with ``GradientMonitor(..., scaler=scaler)`` (a
  ``torch.amp.GradScaler``), every backward pass is taken to be of ``scaler.scale(loss)``:
  gradient and backward-signal statistics are divided by the scale, so they are those of the
  loss. A pass whose scaled gradients overflow while its forward pass is finite is recorded
  as it is, listed in :attr:`GradientMonitor.overflow_steps` and left out of
  :meth:`GradientMonitor.diagnose`, as the scaler skips it; at a scale of 1 or less an
  overflow cannot come from the scaling and is diagnosed as usual.
- Activation checkpointing (``torch.utils.checkpoint`` with ``use_reentrant=False``) is
  recorded like the same model without it: the forward recomputed inside the backward pass is
  not recorded again. The reentrant variant runs the checkpointed modules without gradients
  in the forward pass, so their statistics are missing; use ``use_reentrant=False``.
- A pass whose forward or backward raised (Ctrl-C in a notebook, an error in a hook) is
  dropped when the next forward pass starts: it is neither counted nor recorded.
- A model run through ``torch.compile``: monitor the compiled module or the original one. The
  monitor's hooks run outside the compiled graph, which breaks at each hooked module.
- A copy of the model made while the monitor is attached (``copy.deepcopy``, ``torch.save``)
  carries an inert hook in place of each of the monitor's hooks: it does nothing and does not
  feed the monitor.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
>>> with GradientMonitor(net) as mon:
...     net(torch.randn(16, 4)).pow(2).mean().backward()
>>> mon.layer_names
['0', '2']
>>> mon.grad_norms().shape
(1, 2)
>>> mon.diagnose().kind
'ok'
"""

from __future__ import annotations

import math
import sys
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["Diagnosis", "GradientMonitor", "Thresholds"]

# Statistics of one recorded pass, stored as the rows of a (statistics x layers) tensor.
_STATS = ("grad", "backward", "weight", "mean", "std", "saturated", "dead")
_ROW = {name: index for index, name in enumerate(_STATS)}

# Parameter-free modules whose output counts as the activation of the layer before them, and
# the kind of saturation each one has.
_ACTIVATION_KINDS: dict[type[nn.Module], str | None] = {
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.ReLU: "relu",
    nn.ReLU6: "relu",
    nn.Hardtanh: None,
    nn.LeakyReLU: None,
    nn.ELU: None,
    nn.SELU: None,
    nn.CELU: None,
    nn.GELU: None,
    nn.SiLU: None,
    nn.Mish: None,
    nn.Softplus: None,
    nn.Softsign: None,
    nn.Tanhshrink: None,
    nn.Hardsigmoid: None,
    nn.Hardswish: None,
    nn.LogSigmoid: None,
    nn.PReLU: None,
}


@dataclass(frozen=True)
class Thresholds:
    """When :meth:`GradientMonitor.diagnose` calls a run exploding or vanishing.

    Layers are compared in the order they run (input side first). A rule fires at the first
    recorded step where it holds. The first-to-last comparison uses the layers that ran as
    modules; parameters of the model itself, and of a module whose weights are used without
    calling it (``nn.MultiheadAttention``'s ``out_proj``), have no known place in that order.

    - ``layer_ratio``: the first layer's gradient norm is more than ``layer_ratio`` times the
      last layer's (exploding towards the input) or less than ``1 / layer_ratio`` times it
      (vanishing). Default 1e3: three orders of magnitude across the network.
    - ``grad_to_weight_high``: some layer's ``||dL/dW|| / ||W||`` exceeds it (exploding, even when
      every layer is equally huge, which the ratio rule cannot see). Default 10: one step of
      learning rate 0.1 would change that layer by as much as its whole size.
    - ``grad_to_weight_low``: every layer's ``||dL/dW|| / ||W||`` is below it (vanishing
      everywhere). Default 1e-7.
    - ``grad_norm_high``: some layer's gradient norm exceeds it, whatever its weights.
      Default 1e4.
    - ``growth``: the largest layer gradient norm grew to more than ``growth`` times its
      value at the first recorded step (a run that blows up during training). Default 1e3.
    - ``update_ratio_high``: some layer's update-to-weight ratio exceeds it (needs an
      optimizer). Default 0.1 (the rule of thumb for healthy is about 1e-3).
    - ``saturation_margin``: a tanh unit with ``|a| > 1 - margin`` or a sigmoid unit within
      ``margin`` of 0 or 1 counts as saturated. Default 0.01.

    The rules that compare with the weights (``grad_to_weight_*``, ``update_ratio_high``) leave
    out layers whose weights were all zero at the first recorded step, such as a ReZero gate or
    a zero-initialised normalisation scale: they have no scale to compare with yet.

    >>> Thresholds(layer_ratio=1e2).layer_ratio
    100.0
    """

    layer_ratio: float = 1e3
    grad_to_weight_high: float = 10.0
    grad_to_weight_low: float = 1e-7
    grad_norm_high: float = 1e4
    growth: float = 1e3
    update_ratio_high: float = 0.1
    saturation_margin: float = 0.01

    def __post_init__(self) -> None:
        for name in ("layer_ratio", "grad_to_weight_high", "grad_to_weight_low",
                     "grad_norm_high", "growth", "update_ratio_high", "saturation_margin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"thresholds.{name} must be a number, got {type(value).__name__}")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"thresholds.{name} must be a positive finite number, got {value}")
            object.__setattr__(self, name, float(value))
        if self.layer_ratio <= 1:
            raise ValueError(f"thresholds.layer_ratio must be > 1, got {self.layer_ratio}")
        if self.saturation_margin >= 0.5:
            raise ValueError(
                f"thresholds.saturation_margin must be < 0.5, got {self.saturation_margin}"
            )


@dataclass
class Diagnosis:
    """What :meth:`GradientMonitor.diagnose` concluded.

    ``kind`` is ``"ok"``, ``"exploding"``, ``"vanishing"`` or ``"nonfinite"``; ``layer`` the
    module it points at (for ``"nonfinite"``: where the NaN/Inf first appeared; ``None`` when
    it came from outside the model, i.e. the input batch or the loss, or could not be located);
    ``phase`` where it was seen (``"forward"``, ``"backward"``, ``"input"``, ``"loss"``);
    ``step`` the backward pass at which it was first seen; ``evidence`` the numbers behind it.
    ``str()`` says in plain English what was seen and what to try.

    >>> verdict = Diagnosis("vanishing", layer="linears.0", step=0, message="Vanishing ...")
    >>> bool(verdict), verdict.layer, str(verdict)
    (True, 'linears.0', 'Vanishing ...')
    """

    kind: str
    layer: str | None = None
    step: int | None = None
    phase: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    def __str__(self) -> str:
        return self.message

    def __bool__(self) -> bool:
        """True when something is wrong."""
        return self.kind != "ok"


def _inert_hook(*args: Any) -> None:
    """What a copy of a monitored module or optimizer gets in place of the monitor's hook."""


def _inert() -> Any:
    return _inert_hook


def _eagerly(function: Any, *args: Any) -> Any:
    """Call ``function`` outside torch.compile's tracing (a graph break), replaced by its
    ``torch.compiler.disable`` form the first time it is needed (importing the compiler is slow,
    so it is not done before torch.compile has done it)."""
    global _eagerly  # rebound, not cached: torch.compile would trace through a cache wrapper
    _eagerly = torch.compiler.disable(_call)
    return _eagerly(function, *args)


def _call(function: Any, *args: Any) -> Any:
    return function(*args)


class _Hook:
    """One of the monitor's hooks. A copy of the module or optimizer it is registered on, made
    while the monitor is attached (``copy.deepcopy`` for an EMA or best-model snapshot,
    ``torch.save(model)``), gets an inert hook instead of a copy of the whole monitor, so that
    the copy never feeds this monitor, nor a copy of it, and pickles without it."""

    __slots__ = ("function",)

    def __init__(self, function: Any) -> None:
        self.function = function

    def __call__(self, *args: Any) -> Any:
        if torch.compiler.is_compiling():  # traced by torch.compile: run it eagerly instead
            return _eagerly(self.function, *args)
        return self.function(*args)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return _inert_hook

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _inert, ()


@dataclass
class _Call:
    """One call of one module during a recorded pass.

    The tensors are kept detached: a tensor carrying our backward hook must not be referenced
    from the pass, or hook -> pass -> tensor would be a reference cycle that keeps every
    activation alive until the garbage collector runs.
    """

    name: str
    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor]


def _same(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether two (detached) tensors are views of the same values."""
    return x.data_ptr() == y.data_ptr() and x.shape == y.shape and x.stride() == y.stride()


def _detached(value: Any) -> list[torch.Tensor]:
    return [t.detach() for t in _tensors(value)]


def _values(grad: torch.Tensor) -> torch.Tensor:
    """The entries of a gradient: a sparse one (``nn.Embedding(..., sparse=True)``) as the values
    of its coalesced form, whose norm is the gradient's norm."""
    return grad.detach().coalesce().values() if grad.is_sparse else grad.detach()


@dataclass
class _Pass:
    """What the hooks collect between a forward pass and the end of its backward pass."""

    index: int
    recording: bool
    calls: list[_Call] = field(default_factory=list)
    grads: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # in arrival order
    root_outputs: list[torch.Tensor] = field(default_factory=list)
    queued: bool = False
    # a weak reference to each parameter's .grad (None if it had none) and its version when the
    # pass began, to tell at its end whether the backward pass accumulated into them
    # (loss.backward()) or not (torch.autograd.grad); weak, so that a gradient the user sets to
    # None meanwhile is freed
    grads_before: list[tuple[weakref.ref | None, int]] = field(default_factory=list)


@dataclass
class _Last:
    """What the histogram accessors need from the last recorded pass."""

    activations: list[tuple[int, torch.Tensor]]  # (layer, activation), in call order
    signals: list[tuple[str, torch.Tensor]]  # (layer name, dL/dh at its output), arrival order
    scale: torch.Tensor | float | None = None  # the loss scale the signals are multiplied by


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside a module's inputs or outputs (tuples, lists, dicts, nested)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


# Half-precision values are summed in float32: a sum over many float16 entries overflows
# float16's largest value (65504), and one rounded to bfloat16's 8 bits loses the variance.
_WIDER = {torch.float16: torch.float32, torch.bfloat16: torch.float32}


def _foreach_norms(
    tensors: list[torch.Tensor], device: torch.device, exact: bool = False
) -> torch.Tensor:
    """The L2 norm of each tensor, as one float64 vector on ``device``.

    One fused ``torch._foreach_norm`` call per (device, dtype) group. Computed in each
    tensor's own dtype (fast; float16 and bfloat16 in float32, as a norm of many half-precision
    entries easily exceeds float16's largest value, 65504), or with ``exact=True`` in float64,
    where huge finite values (float32 entries of 1e20, say) do not overflow to Inf.
    """
    if not tensors:
        return torch.zeros(0, dtype=torch.float64, device=device)
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for index, tensor in enumerate(tensors):
        groups.setdefault((tensor.device, tensor.dtype), []).append(index)

    def accumulate(dtype: torch.dtype) -> torch.dtype | None:
        return torch.float64 if exact else _WIDER.get(dtype)

    if len(groups) == 1:
        norms = torch._foreach_norm(tensors, 2, dtype=accumulate(tensors[0].dtype))
        return torch.stack(norms).to(device, torch.float64)
    result = torch.empty(len(tensors), dtype=torch.float64, device=device)
    for (_, dtype), indices in groups.items():
        norms = torch._foreach_norm([tensors[i] for i in indices], 2, dtype=accumulate(dtype))
        result[torch.tensor(indices, device=device)] = torch.stack(norms).to(device, torch.float64)
    return result


def _layer_norms(norms: torch.Tensor, owner: torch.Tensor, layers: int) -> torch.Tensor:
    """Combine per-tensor norms into per-layer norms: sqrt of the sum of squares."""
    squares = torch.zeros(layers, dtype=torch.float64, device=norms.device)
    return squares.index_add_(0, owner, norms.square()).sqrt_()


# Update ratios are estimated from blocks of this many consecutive entries (64 bytes of
# float32: one cache line), so that a sample costs little more memory traffic than its size.
_UPDATE_BLOCK = 16


def _update_view(tensor: torch.Tensor, sample: int | None) -> tuple[torch.Tensor, float]:
    """A fixed view of about ``sample`` entries of ``tensor`` and the factor ``numel / entries
    in the view``; the whole tensor (factor 1) when ``sample`` is None, the tensor is no larger,
    or it is not contiguous.

    The view takes blocks of ``_UPDATE_BLOCK`` consecutive entries at an even stride through
    the flattened tensor. For a matrix the stride is made coprime with the number of blocks in
    a row, so successive blocks step through every column block as well as down the rows.

    >>> view, factor = _update_view(torch.zeros(256, 256), 4096)
    >>> view.shape, round(factor, 2)
    (torch.Size([241, 16]), 17.0)
    """
    count = tensor.numel()
    if sample is None or count <= sample or not tensor.is_contiguous():
        return tensor, 1.0
    blocks = count // _UPDATE_BLOCK
    stride = max(1, blocks // max(1, sample // _UPDATE_BLOCK))
    last = tensor.shape[-1] if tensor.dim() > 1 else 0
    per_row = last // _UPDATE_BLOCK if last % _UPDATE_BLOCK == 0 else 0
    while per_row > 1 and math.gcd(stride, per_row) != 1:
        stride += 1
    flat = tensor.reshape(-1)[: blocks * _UPDATE_BLOCK]
    view = flat.view(blocks, _UPDATE_BLOCK)[::stride]
    return view, count / view.numel()


def _activation_counts(
    a: torch.Tensor, kind: str | None, margin: float, nan: torch.Tensor, exact: bool,
    unit_dim: int = -1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sum, number of saturated entries (tanh: ``|a| > 1 - margin``; sigmoid:
    within ``margin`` of 0 or 1) and number of entries in dead units (ReLU: units, i.e. entries
    of dimension ``unit_dim``, that are zero for every example and position) of one activation
    tensor; ``nan`` where a count does not apply. ``exact=True`` accumulates in float64, half
    precision otherwise in float32."""
    dtype = torch.float64 if exact else _WIDER.get(a.dtype)
    total = a.sum(dtype=dtype)
    if kind == "tanh":
        saturated = a.abs().gt_(1 - margin).sum(dtype=dtype)
    elif kind == "sigmoid":
        saturated = a.sub(0.5).abs_().gt_(0.5 - margin).sum(dtype=dtype)
    else:
        saturated = nan
    if kind == "relu" and a.dim() > 0 and a.numel() > 0:
        if unit_dim < 0 or unit_dim >= a.dim() - 1:  # units along the last dimension
            units = a.shape[-1]
            largest = a.reshape(-1, units).amax(0)
        else:  # channels of a convolution: (batch, channels, positions...)
            units = a.shape[unit_dim]
            largest = a.movedim(unit_dim, 0).reshape(units, -1).amax(1)
        dead = largest.le(0).sum() * (a.numel() // units)
    else:
        dead = nan
    return total, saturated, dead


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A flat NumPy copy of ``tensor``; dtypes NumPy lacks (bfloat16, float8) as float32."""
    tensor = tensor.detach()
    if tensor.is_floating_point() and tensor.dtype not in (torch.float16, torch.float32,
                                                           torch.float64):
        tensor = tensor.float()
    return tensor.cpu().numpy().ravel()


def _nonfinite_counts(tensors: Iterable[torch.Tensor]) -> tuple[int, int]:
    nan = inf = 0
    for tensor in tensors:
        if tensor.is_floating_point() or tensor.is_complex():
            nan += int(torch.isnan(tensor).sum())
            inf += int(torch.isinf(tensor).sum())
    return nan, inf


def _describe_nonfinite(nan: int, inf: int) -> str:
    parts = [f"{count} {what}" for count, what in ((nan, "NaN"), (inf, "Inf")) if count]
    return " and ".join(parts) if parts else "no non-finite"


class GradientMonitor:
    """Per-layer gradient, backward-signal, activation and update statistics of any model.

    Use it as a context manager: hooks exist only inside the ``with`` block; on exit (also
    after an exception) every hook is removed and the model is left exactly as it was. The
    recorded statistics stay readable after exit, and entering again continues recording.

    The accessors :meth:`grad_norms`, :meth:`backward_norms`, :meth:`weight_norms`,
    :meth:`activation_means`, :meth:`activation_stds`, :meth:`saturated_fractions`,
    :meth:`dead_fractions` and :meth:`update_ratios` each return a NumPy array of shape
    ``(recorded steps, layers)``, columns in the order of :attr:`layer_names`; :attr:`steps`
    gives the backward-pass index of each row.

    Parameters
    ----------
    model
        The ``nn.Module`` to watch (any: feed-forward, recurrent, with shared parameters).
    every
        Record every ``every``-th backward pass (1: all of them). Passes in between cost
        one hook call on the model's output and a cheap finiteness check of the gradients.
    optimizer
        Optional ``torch.optim.Optimizer``; when given (here or later with
        :meth:`attach_optimizer`), the update-to-weight ratio of each recorded step is measured
        around ``optimizer.step()``.
    update_sample
        How many entries of each parameter tensor the update ratio's ``||W_after - W_before||``
        is measured on (default 4096). Tensors no larger are measured exactly; a larger one
        through a fixed, evenly spread sample of about that many entries (blocks of 16
        consecutive entries), scaled up by ``sqrt(numel / sampled)``. On SGD and Adam steps of
        256 x 256 layers the estimate was within 1.3% of the exact ratio (``tests/test_monitor.py``
        asserts 5%), and it costs almost nothing; ``None`` measures every entry exactly, which
        keeps a full copy of the parameters and reads them three times per recorded step. Use
        ``None`` when updates are sparse (an embedding table of which a batch touches a few
        rows), where a sample can miss most of the change.
    thresholds
        A :class:`Thresholds` for :meth:`diagnose` (default ``Thresholds()``).
    scaler
        The ``torch.amp.GradScaler`` of a mixed-precision loop, if any: gradient statistics
        are then unscaled, and overflowed passes the scaler skips are not called non-finite
        (see :attr:`overflow_steps`).

    Attributes
    ----------
    layer_names
        The monitored layers (modules that own parameters), named as in
        ``model.named_modules()``, in the order of the accessors' columns.
    activation_sources
        For each layer, the module whose output counts as its activation (the layer itself,
        or the parameter-free activation module that runs right after it).

    Examples
    --------
    >>> import torch
    >>> from gradtext.models import DeepMLP
    >>> net = DeepMLP(8, 2, width=16, depth=4, activation="tanh")
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> with GradientMonitor(net, every=2, optimizer=opt) as mon:
    ...     for _ in range(4):
    ...         opt.zero_grad()
    ...         net(torch.randn(32, 8)).pow(2).mean().backward()
    ...         opt.step()
    >>> mon.steps.tolist(), mon.update_ratios().shape
    ([0, 2], (2, 4))
    >>> mon.activation_sources["linears.0"]
    'activations.0'
    """

    def __init__(
        self,
        model: nn.Module,
        every: int = 1,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        thresholds: Thresholds | None = None,
        update_sample: int | None = 4096,
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(every, bool) or not isinstance(every, int):
            raise TypeError(f"every must be an int, got {type(every).__name__}")
        if every < 1:
            raise ValueError(f"every must be >= 1 (record every n-th backward pass), got {every}")
        if update_sample is not None:
            if isinstance(update_sample, bool) or not isinstance(update_sample, int):
                raise TypeError(
                    f"update_sample must be an int or None, got {type(update_sample).__name__}"
                )
            if update_sample < _UPDATE_BLOCK:
                raise ValueError(
                    f"update_sample must be >= {_UPDATE_BLOCK} entries per tensor (or None for "
                    f"exact update ratios), got {update_sample}"
                )
        if scaler is not None and not isinstance(scaler, torch.amp.GradScaler):
            raise TypeError(
                f"scaler must be a torch.amp.GradScaler or None, got {type(scaler).__name__}"
            )
        if thresholds is None:
            thresholds = Thresholds()
        if not isinstance(thresholds, Thresholds):
            raise TypeError(
                f"thresholds must be a gradtext.monitor.Thresholds, got {type(thresholds).__name__}"
            )
        self.model = model
        self.every = every
        self.thresholds = thresholds
        self.update_sample = update_sample
        self.scaler = scaler
        self.optimizer: torch.optim.Optimizer | None = None

        # Layers: modules owning parameters directly; each parameter listed once.
        self.layer_names: list[str] = []
        self._layer_index: dict[str, int] = {}
        self._params: list[nn.Parameter] = []
        owners: list[tuple[int, int]] = []  # (parameter index, layer index)
        param_index: dict[int, int] = {}
        for name, module in model.named_modules():
            own = [p for p in module._parameters.values() if p is not None and p.requires_grad]
            if not own:
                continue
            layer = len(self.layer_names)
            self.layer_names.append(name)
            self._layer_index[name] = layer
            for p in own:
                if id(p) not in param_index:
                    param_index[id(p)] = len(self._params)
                    self._params.append(p)
                owners.append((param_index[id(p)], layer))
        if not self.layer_names:
            raise ValueError("model has no trainable parameters, so there is nothing to monitor")
        # the parameters whose gradient can be sparse (embeddings with sparse=True)
        self._sparse_capable = [
            param_index[id(p)] for module in model.modules()
            if isinstance(module, (nn.Embedding, nn.EmbeddingBag))
            for p in module._parameters.values() if id(p) in param_index
        ]
        self._owner_param = torch.tensor([p for p, _ in owners])
        self._owner_layer = torch.tensor([layer for _, layer in owners])
        self._owner_device = torch.device("cpu")
        self._modules = dict(model.named_modules())
        self._saturation_kind = {name: self._layer_kind(module)
                                 for name, module in self._modules.items()}
        # where each layer's units are: see _channel_dims
        self._conv_dims = [self._channel_dims(self._modules[name]) for name in self.layer_names]
        # name of the module whose output is each layer's activation; known after one pass
        self.activation_sources: dict[str, str] = {}
        self._order: list[int] | None = None  # layer indices in the order they first ran
        self._check_parameters: list[nn.Parameter] | None = None  # see _first_layer_parameters
        # how many layers at the start of _order ran as modules (the others are left out of the
        # first-to-last comparison: the model's own parameters, or a module whose weights are
        # used without calling it, such as nn.MultiheadAttention's out_proj)
        self._ran = 0

        self._rows: list[torch.Tensor] = []  # one (statistics x layers) tensor per step
        self._updates: dict[int, torch.Tensor] = {}  # row number -> per-layer update ratio
        self._steps: list[int] = []
        self._overflows: list[int] = []  # recorded passes whose scaled gradients overflowed
        self._passes = 0  # backward passes completed while attached
        self._pass: _Pass | None = None
        # the last recorded pass's activations and layer backward signals (for histograms);
        # only these are kept, so the pass's other tensors are freed when it ends
        self._last: _Last | None = None
        self._handles: list[Any] = []
        self._optimizer_handles: list[Any] = []
        self._module_handles: list[Any] = []
        self._nan_cache: torch.Tensor | None = None
        # update ratios: the (sampled) views of the parameters, the key that tells when the
        # parameters were replaced, each view's scale-up factor, and a copy taken before a step
        self._update_views: list[torch.Tensor] = []
        self._update_key: list[tuple[Any, ...]] = []
        self._update_factor: torch.Tensor | None = None
        self._snapshot: list[torch.Tensor] | None = None
        self._snapshot_row: int | None = None
        self._nonfinite: Diagnosis | None = None
        # the first unrecorded pass that went non-finite: an int on CPU, a device tensor (-1:
        # none yet) elsewhere, so that checking it needs no host synchronisation
        self._unrecorded_bad: int | torch.Tensor | None = None
        self._in_forward = False  # between the model's forward starting and returning
        self.active = False
        if optimizer is not None:
            self.attach_optimizer(optimizer)

    # ------------------------------------------------------------------ attaching
    def __enter__(self) -> GradientMonitor:
        if self.active:
            raise RuntimeError("this GradientMonitor is already active (entered twice)")
        try:
            self._handles.append(self.model.register_forward_pre_hook(_Hook(self._on_root_start)))
            self._handles.append(self.model.register_forward_hook(_Hook(self._on_root_end)))
            self.active = True
            if self.optimizer is not None:
                self._hook_optimizer()
        except BaseException:
            self._detach()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._detach()

    def _detach(self) -> None:
        for handle in self._handles + self._optimizer_handles + self._module_handles:
            handle.remove()
        self._handles, self._optimizer_handles, self._module_handles = [], [], []
        self._pass = None
        self._in_forward = False
        # the copy of the parameters for update ratios, and the views it was taken from
        self._snapshot, self._update_views, self._update_key = None, [], []
        self.active = False

    def _hook_modules(self) -> None:
        """Hooks on every module, installed only for the passes that are recorded, so that the
        passes in between cost one hook call."""
        if not self._module_handles:
            self._module_handles = [
                module.register_forward_hook(_Hook(partial(self._on_forward, name)))
                for name, module in self._modules.items() if module is not self.model
            ]

    def _unhook_modules(self) -> None:
        for handle in self._module_handles:
            handle.remove()
        self._module_handles = []

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Measure update-to-weight ratios around ``optimizer.step()`` (replaces any previous
        optimizer). :func:`gradtext.train.fit` calls this with its optimizer."""
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if optimizer is self.optimizer:
            return
        for handle in self._optimizer_handles:
            handle.remove()
        self._optimizer_handles = []
        self.optimizer = optimizer
        if self.active:
            self._hook_optimizer()

    def _hook_optimizer(self) -> None:
        assert self.optimizer is not None
        self._optimizer_handles = [
            self.optimizer.register_step_pre_hook(_Hook(self._before_step)),
            self.optimizer.register_step_post_hook(_Hook(self._after_step)),
        ]

    # ------------------------------------------------------------------ hooks
    @staticmethod
    def _layer_kind(module: nn.Module) -> str | None:
        if type(module) in _ACTIVATION_KINDS:
            return _ACTIVATION_KINDS[type(module)]
        if isinstance(module, nn.RNN):
            return "tanh" if module.nonlinearity == "tanh" else "relu"
        return None

    def _on_root_start(self, module: nn.Module, inputs: Any) -> None:
        if torch._C._current_graph_task_id() == -1:  # not a recomputation inside a backward
            self._drop_interrupted_pass()
            self._in_forward = True
        if self._pass is None and torch.is_grad_enabled():
            recording = self._passes % self.every == 0
            self._pass = _Pass(index=self._passes, recording=recording,
                               grads_before=self._grad_versions())
            if recording:
                self._hook_modules()

    def _drop_interrupted_pass(self) -> None:
        """Forget the open pass if its forward or backward raised (Ctrl-C, an error in the
        model or in a hook) before it ended: it never completed, so it is not counted, and the
        forward pass that is starting begins a new one."""
        stale = self._pass
        # queued: its backward began but never reached its end; _in_forward: its forward
        # never returned, unless it is still running and calls the model again (recursion)
        if stale is not None and (stale.queued or (self._in_forward and not self._recursing())):
            self._pass = None
            if self._passes % self.every != 0:  # the next pass is not recorded
                self._unhook_modules()

    def _recursing(self) -> bool:
        """Whether the model's forward is running further up the call stack, i.e. calls the
        model itself (only asked when a forward starts before the last one returned)."""
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_name == "forward" and frame.f_locals.get("self") is self.model:
                return True
            frame = frame.f_back
        return False

    def _on_root_end(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if torch._C._current_graph_task_id() == -1:
            self._in_forward = False
        self._on_forward("", module, inputs, output)

    def _on_forward(self, name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        current = self._pass
        if current is None or not torch.is_grad_enabled():
            return
        if torch._C._current_graph_task_id() != -1:
            # a forward inside the backward pass: activation checkpointing recomputing what
            # the forward pass already recorded (and, non-reentrant, only part of it)
            return
        is_root = module is self.model
        if not current.recording:
            if is_root:
                for tensor in _tensors(output):
                    if tensor.requires_grad:
                        tensor.register_hook(partial(self._on_grad, current, -1))
                current.root_outputs = _detached(output)
            return
        outputs = [output] if type(output) is torch.Tensor else list(_tensors(output))
        call = len(current.calls)
        layer = self._layer_index.get(name)
        if layer is not None or is_root:  # the backward signals we record, and the loss's
            for tensor in outputs:
                if tensor.requires_grad:
                    tensor.register_hook(partial(self._on_grad, current, call))
        outputs = [t.detach() for t in outputs]
        current.calls.append(_Call(name, _detached(inputs), outputs))
        if is_root:
            current.root_outputs = outputs

    def _nan(self, device: torch.device) -> torch.Tensor:
        if self._nan_cache is None or self._nan_cache.device != device:
            self._nan_cache = torch.full((), math.nan, dtype=torch.float64, device=device)
        return self._nan_cache

    def _on_grad(self, current: _Pass, call: int, grad: torch.Tensor) -> None:
        if current.recording or call < 0:
            # detached: under backward(create_graph=True) the gradient carries a graph
            current.grads.append((call, grad.detach()))
        if not current.queued:
            current.queued = True
            engine = torch.autograd.Variable._execution_engine
            engine.queue_callback(partial(self._end_of_backward, current))

    def _grad_versions(self) -> list[tuple[weakref.ref | None, int]]:
        return [(weakref.ref(g), g._version) if (g := p.grad) is not None else (None, 0)
                for p in self._params]

    def _accumulated(self, current: _Pass) -> bool:
        """Whether the backward pass that just ended put a gradient into some ``.grad``."""
        for p, (before, version) in zip(self._params, current.grads_before, strict=True):
            grad = p.grad
            if before is None:
                if grad is not None:
                    return True
            elif grad is None or before() is not grad or grad._version != version:
                return True
        return False

    def _end_of_backward(self, current: _Pass) -> None:
        if not self.active:  # a graph built inside the with block, run backward after it
            return
        if not self._accumulated(current):
            # torch.autograd.grad (a gradient penalty, a saliency map): not a training step.
            # The pass stays open for the backward() that may follow on the same graph...
            current.queued = False
            current.grads.clear()
            if self._pass is current and not any(p.requires_grad for p in self._params):
                # ...unless the model is frozen (a GAN's discriminator during the generator's
                # step): no backward can fill its .grad, and its next pass starts afresh
                self._pass = None
            return
        if self._pass is current:
            self._pass = None
            if self.every > 1 and self._module_handles:  # recording every pass: they stay
                self._unhook_modules()
        self._passes += 1
        if current.recording:
            self._record(current)
        else:
            self._check_unrecorded(current)

    # ------------------------------------------------------------------ recording
    def _device(self) -> torch.device:
        return self._params[0].device

    def _record(self, current: _Pass) -> None:
        device = self._device()
        if self._order is None:
            self._learn_structure(current)
        grads = [p.grad.detach() if p.grad is not None else p.new_zeros(())
                 for p in self._params]
        for index in self._sparse_capable:
            grads[index] = _values(grads[index])
        norms = self._norms(current, grads, device, exact=False)
        found = self._activations(current)
        activation, forward_check, cancelled = self._activation_statistics(found, device,
                                                                           exact=False)
        scale = self._loss_scale()
        if self._nonfinite is None:
            outputs = [t.sum(dtype=_WIDER.get(t.dtype)) for t in current.root_outputs
                       if t.is_floating_point()]
            outputs_sum = torch.stack(outputs).sum().to(device) if outputs else 0
            # one host synchronisation per recorded pass; the search runs only on failure
            total = norms.sum() + forward_check + outputs_sum
            finite, imprecise = torch.stack([torch.isfinite(total), cancelled]).tolist()
            if finite and imprecise:  # a nearly constant activation: its spread in float64
                activation = self._activation_statistics(found, device, exact=True)[0]
            elif not finite:
                # float32 norms overflow at about 1e19: recompute in float64, then look closer
                norms = self._norms(current, grads, device, exact=True)
                activation = self._activation_statistics(found, device, exact=True)[0]
                if self._all_finite(current, grads):
                    pass
                elif scale is not None and float(scale) > 1 and self._forward_finite(current):
                    # mixed precision: the scaled gradient overflowed. The GradScaler skips
                    # this step and lowers its scale: an overflow, not a fault of the model
                    self._overflows.append(current.index)
                else:
                    self._nonfinite = self._locate(current, grads)
        if scale is not None:  # the gradients of scaler.scale(loss): back to those of the loss
            norms[_ROW["grad"]] /= scale
            norms[_ROW["backward"]] /= scale
        ran = {self._layer_index.get(call.name) for call in current.calls}
        missing = [i for i in range(len(self.layer_names)) if i not in ran]
        if missing:  # a layer whose module never ran has no output: backward norm NaN, not 0
            norms[_ROW["backward"]].index_fill_(0, torch.tensor(missing, device=device), math.nan)
        self._rows.append(torch.cat([norms, activation]))
        self._steps.append(current.index)
        self._last = _Last(
            activations=[(layer, tensor) for layer, _, tensor in found],
            signals=[(current.calls[call].name, grad) for call, grad in current.grads
                     if call >= 0 and current.calls[call].name in self._layer_index],
            scale=scale,
        )

    def _loss_scale(self) -> torch.Tensor | float | None:
        """The GradScaler's current loss scale (None without an enabled scaler): the factor
        ``scaler.scale(loss).backward()`` multiplied every gradient of this pass by. Read as
        the scaler's tensor, where it lives: ``scaler.get_scale()`` would synchronise with the
        GPU. A copy, as ``scaler.update()`` changes it in place."""
        if self.scaler is None or not self.scaler.is_enabled():
            return None
        read_async = getattr(self.scaler, "_get_scale_async", None)  # private: may go away
        scale = read_async() if read_async is not None else None
        return float(self.scaler.get_scale()) if scale is None else scale.clone()

    def _forward_finite(self, current: _Pass) -> bool:
        """Whether the forward pass and the weights were finite (only run on suspicion)."""
        tensors = [t for call in current.calls for t in call.inputs + call.outputs]
        tensors += current.root_outputs + [p.detach() for p in self._params]
        return all(bool(torch.isfinite(t).all()) for t in tensors
                   if t.is_floating_point() or t.is_complex())

    @staticmethod
    def _all_finite(current: _Pass, grads: list[torch.Tensor]) -> bool:
        """Element by element: is every tensor of the pass finite? (Only run on suspicion.)"""
        tensors = [t for call in current.calls for t in call.inputs + call.outputs]
        tensors += [g for _, g in current.grads] + grads + current.root_outputs
        return all(bool(torch.isfinite(t).all()) for t in tensors
                   if t.is_floating_point() or t.is_complex())

    def _owners(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Which parameter belongs to which layer, as index tensors on ``device`` (cached)."""
        if self._owner_device != device:
            self._owner_device = device
            self._owner_param = self._owner_param.to(device)
            self._owner_layer = self._owner_layer.to(device)
        return self._owner_param, self._owner_layer

    def _norms(
        self, current: _Pass, grads: list[torch.Tensor], device: torch.device, exact: bool
    ) -> torch.Tensor:
        """(3 x layers): gradient, backward-signal and weight norms of one pass."""
        layers = len(self.layer_names)
        owner_param, owner_layer = self._owners(device)
        count = len(grads)  # gradients and weights in one fused call
        both = _foreach_norms(grads + [p.detach() for p in self._params], device, exact)
        grad, weight = both[:count][owner_param], both[count:][owner_param]
        signals = [(self._layer_index.get(current.calls[c].name), g) for c, g in current.grads]
        signals = [(layer, g) for layer, g in signals if layer is not None]
        backward = _layer_norms(
            _foreach_norms([g for _, g in signals], device, exact),
            torch.tensor([layer for layer, _ in signals], dtype=torch.long, device=device),
            layers,
        )
        return torch.stack([_layer_norms(grad, owner_layer, layers), backward,
                            _layer_norms(weight, owner_layer, layers)])

    def _activations(self, current: _Pass) -> list[tuple[int, str, torch.Tensor]]:
        """``(layer, module name, tensor)`` for every layer call of the pass: the output of the
        activation module that ran right after it, else the layer's own output."""
        found: list[tuple[int, str, torch.Tensor]] = []
        pending: tuple[int, str, torch.Tensor] | None = None  # a layer call awaiting activation
        for call in current.calls:
            floats = [t for t in call.outputs if t.is_floating_point()]
            layer = self._layer_index.get(call.name)
            if layer is not None:
                if pending is not None:
                    found.append(pending)
                pending = (layer, call.name, floats[0]) if floats else None
            elif pending is not None and floats and type(self._modules[call.name]) in \
                    _ACTIVATION_KINDS:
                found.append((pending[0], call.name, floats[0]))
                pending = None
        if pending is not None:
            found.append(pending)
        return found

    def _activation_statistics(
        self, found: list[tuple[int, str, torch.Tensor]], device: torch.device, exact: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(4 x layers): mean, std, saturated and dead fractions of each layer's activation
        (``found``, from :meth:`_activations`), pooled over the layer's calls; a sum that is
        non-finite when an activation was; and whether a standard deviation may have lost its
        precision (below 1% of the root mean square, where the mean square minus the squared
        mean cancels most digits of float32 sums). ``exact=True`` accumulates in float64."""
        margin = self.thresholds.saturation_margin
        layers = len(self.layer_names)
        if not found:
            empty = torch.full((4, layers), math.nan, dtype=torch.float64, device=device)
            zero = torch.zeros((), dtype=torch.float64, device=device)
            return empty, zero, zero.bool()
        sums, saturated, dead = zip(*(
            _activation_counts(a, self._saturation_kind.get(name), margin, self._nan(a.device),
                               exact, self._unit_dim(layer, a)) for layer, name, a in found),
            strict=True)
        squares = _foreach_norms([a for _, _, a in found], device, exact).square()
        per_call = torch.stack([torch.stack(sums).to(device, torch.float64), squares,
                                torch.stack(saturated).to(device, torch.float64),
                                torch.stack(dead).to(device, torch.float64)], dim=1)
        owner = torch.tensor([layer for layer, _, _ in found], device=device)
        counts = torch.tensor([a.numel() for _, _, a in found], dtype=torch.float64,
                              device=device)
        totals = torch.zeros(layers, 4, dtype=torch.float64, device=device).index_add_(
            0, owner, per_call)
        n = torch.zeros(layers, dtype=torch.float64, device=device).index_add_(0, owner, counts)
        averaged = totals / n[:, None]  # NaN for layers without statistics
        variance = averaged[:, 1] - averaged[:, 0].square()
        cancelled = (variance < 1e-4 * averaged[:, 1]).any()  # NaN compares False
        std = variance.clamp_min(0).sqrt()
        check = per_call[:, :2].sum()
        stats = torch.stack([averaged[:, 0], std, averaged[:, 2], averaged[:, 3]])
        return stats, check, cancelled

    def _learn_structure(self, current: _Pass) -> None:
        """From the first recorded pass: the order layers run in, and each layer's activation.

        The model itself finishes its forward last, whatever its own parameters do, so when it
        owns parameters and other layers ran, it is placed after them, among the layers whose
        place in the computation is unknown."""
        order: list[int] = []
        for call in current.calls:
            layer = self._layer_index.get(call.name)
            if layer is not None and layer not in order and call.name != "":
                order.append(layer)
        if not order and "" in self._layer_index:  # the model is the only layer that ran
            order.append(self._layer_index[""])
        self._ran = len(order)
        order += [i for i in range(len(self.layer_names)) if i not in order]
        self._order = order
        for layer, name, _ in self._activations(current):
            self.activation_sources.setdefault(self.layer_names[layer], name)

    def _first_layer_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters of the layer that runs first (cached once the order of
        the layers is known)."""
        if self._check_parameters is not None:
            return self._check_parameters
        module = self._modules[self.layer_names[self._order[0] if self._order else 0]]
        chosen = [p for p in module._parameters.values() if p is not None and p.requires_grad]
        if self._order is not None:
            self._check_parameters = chosen
        return chosen

    @staticmethod
    def _channel_dims(module: nn.Module) -> int:
        """How many dimensions a batched output of ``module`` has when its units are channels
        (dimension 1 of a batched output, 0 of an unbatched one): convolutions (also lazy
        ones, whose weight has no shape yet) and instance norms; -1 for batch and group norms,
        whose input always has a batch dimension; 0 when the units are the last dimension."""
        if isinstance(module, nn.modules.conv._ConvNd):
            return len(module.kernel_size) + 2
        if isinstance(module, nn.modules.instancenorm._InstanceNorm):
            return module._get_no_batch_dim() + 1
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)):
            return -1
        return 0

    def _unit_dim(self, layer: int, activation: torch.Tensor) -> int:
        """Where the units of ``layer``'s activation are: the channels of a convolution or of a
        batch, group or instance norm (dimension 1, or 0 for an unbatched input), else the last
        dimension."""
        conv_dims = self._conv_dims[layer]
        if conv_dims == 0:
            return -1
        if conv_dims < 0:
            return 1
        return 1 if activation.dim() == conv_dims else 0

    def _check_unrecorded(self, current: _Pass) -> None:
        """A pass that is not recorded: remember whether it went non-finite.

        Cheap on purpose: it checks the model's output, the gradient arriving there, and the
        parameter gradients of the layer that runs first. A NaN/Inf made in the forward pass
        reaches the output; one made in the backward pass of a chain of layers reaches the
        first layer's gradients.
        """
        if isinstance(self._unrecorded_bad, int):
            return  # the first one is already known
        tensors = [t for t in current.root_outputs if t.is_floating_point()]
        if self.scaler is None or not self.scaler.is_enabled():
            # with a GradScaler, a non-finite gradient is usually an overflow it will skip;
            # one that is not comes to light at a recorded pass once the scale is down to 1
            tensors = [_values(p.grad) for p in self._first_layer_parameters()
                       if p.grad is not None] + tensors + [g for _, g in current.grads]
        if not tensors:
            return
        device = self._device()
        if device.type == "cpu" and tensors[-1].device.type == "cpu":  # model and output
            # one fused norm (fast; reading a CPU value is free); a non-finite result is
            # confirmed entry by entry, as huge finite values can overflow it
            total = float(_foreach_norms(tensors, device).sum())  # half precision in float32
            if not math.isfinite(total) and not all(bool(torch.isfinite(t).all())
                                                    for t in tensors):
                self._unrecorded_bad = current.index
            return
        # a float64 sum is non-finite exactly when an entry is; no host synchronisation
        total = torch.stack([t.sum(dtype=torch.float64).to(device) for t in tensors]).sum()
        bad = ~torch.isfinite(total)
        if self._unrecorded_bad is None:
            self._unrecorded_bad = torch.full((), -1, dtype=torch.long, device=device)
        first = self._unrecorded_bad
        self._unrecorded_bad = torch.where((first < 0) & bad, current.index, first)

    # ------------------------------------------------------------------ optimizer hooks
    def _sampled_parameters(self) -> list[torch.Tensor]:
        """The views of the parameters that update ratios are measured on (see
        ``update_sample``), rebuilt when a parameter's storage was replaced."""
        key = [(p.data_ptr(), p.shape) for p in self._params]
        if key != self._update_key:
            views, factors = zip(*(_update_view(p.detach(), self.update_sample)
                                   for p in self._params), strict=True)
            self._update_views = list(views)
            self._update_factor = torch.tensor(factors, dtype=torch.float64,
                                               device=self._device()).sqrt_()
            self._update_key = key
            self._snapshot = [torch.empty(v.shape, dtype=v.dtype, device=v.device)
                              for v in views]
        return self._update_views

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not self._steps or self._pass is not None:
            return  # nothing recorded yet, or a forward pass has begun since the last backward
        row = len(self._steps) - 1
        if row in self._updates:
            return  # the first step after the last recorded pass has been measured already
        if self._overflows and self._overflows[-1] == self._steps[row]:
            return  # the GradScaler skipped the step of that pass: this one is a later pass's
        views = self._sampled_parameters()
        assert self._snapshot is not None
        torch._foreach_copy_(self._snapshot, views)
        self._snapshot_row = row

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        row = self._snapshot_row
        if row is None or self._snapshot is None or self._update_factor is None:
            return
        self._snapshot_row = None
        device = self._device()
        views = self._update_views
        if self.update_sample is None:
            # ||before - after|| per tensor, fused: two reads, no difference tensor written
            distances = [torch.dist(before, after) for before, after in
                         zip(self._snapshot, views, strict=True)]
        else:  # small samples: fused, the difference written over the copy
            torch._foreach_sub_(self._snapshot, views)
            distances = torch._foreach_norm(self._snapshot)
        if any(d.device != device for d in distances):
            distances = [d.to(device) for d in distances]
        owner_param, owner_layer = self._owners(device)
        estimate = torch.stack(distances).to(torch.float64) * self._update_factor
        change = _layer_norms(estimate[owner_param], owner_layer, len(self.layer_names))
        weight = self._rows[row][_ROW["weight"]]
        # a layer whose weights are all zero (ReZero's gate, a zero-initialised norm scale) has
        # no relative change: NaN, not Inf
        self._updates[row] = torch.where(weight > 0, change / weight, self._nan(device))

    # ------------------------------------------------------------------ reading
    @property
    def steps(self) -> np.ndarray:
        """The backward-pass index (0, 1, ...) of each recorded row."""
        return np.asarray(self._steps, dtype=int)

    @property
    def overflow_steps(self) -> np.ndarray:
        """With a ``scaler``: the recorded passes (backward-pass indices, a subset of
        :attr:`steps`) whose scaled gradients overflowed to Inf/NaN while the forward pass was
        finite, which the GradScaler skips. Their rows hold those non-finite values; the
        rules of :meth:`diagnose` leave them out."""
        return np.asarray(self._overflows, dtype=int)

    def _stat(self, name: str) -> np.ndarray:
        if not self._rows:
            return np.zeros((0, len(self.layer_names)))
        return torch.stack([row[_ROW[name]] for row in self._rows]).cpu().numpy()

    def grad_norms(self) -> np.ndarray:
        """``||dL/dW_l||`` per recorded step and layer (all of the layer's parameters)."""
        return self._stat("grad")

    def backward_norms(self) -> np.ndarray:
        """``||dL/dh_l||``, the backward signal at each layer's output, per step and layer;
        NaN for a layer whose module did not run in that pass (its weights may still have been
        used directly, as ``nn.MultiheadAttention`` uses ``out_proj.weight``)."""
        return self._stat("backward")

    def weight_norms(self) -> np.ndarray:
        """``||W_l||`` at each recorded step (before its update), per layer."""
        return self._stat("weight")

    def activation_means(self) -> np.ndarray:
        """Mean of each layer's activation (see :attr:`activation_sources`)."""
        return self._stat("mean")

    def activation_stds(self) -> np.ndarray:
        """Standard deviation of each layer's activation."""
        return self._stat("std")

    def saturated_fractions(self) -> np.ndarray:
        """Fraction of saturated tanh/sigmoid units per layer (NaN for other activations)."""
        return self._stat("saturated")

    def dead_fractions(self) -> np.ndarray:
        """Fraction of ReLU units that were zero for the whole batch (NaN for others); the
        units of a convolution layer are its channels."""
        return self._stat("dead")

    def update_ratios(self) -> np.ndarray:
        """``||W_after - W_before|| / ||W_before||`` of the first optimizer step after each
        recorded pass, per layer (``W_before``: the weights just before that step); NaN where
        no step came before the next recorded pass (or the GradScaler skipped it), and where
        the layer's weights were all zero before the step (a parameter initialised at zero),
        since the ratio is undefined there."""
        layers = len(self.layer_names)
        result = np.full((len(self._rows), layers), np.nan)
        if self._updates:
            rows = sorted(self._updates)
            result[rows] = torch.stack([self._updates[r] for r in rows]).cpu().numpy()
        return result

    def last_activations(self) -> dict[str, np.ndarray]:
        """The activation values of the last recorded pass, flattened, by layer name (for
        histograms in the manner of Glorot & Bengio)."""
        if self._last is None:
            return {}
        result: dict[str, list[np.ndarray]] = {}
        for layer, tensor in self._last.activations:
            result.setdefault(self.layer_names[layer], []).append(_to_numpy(tensor))
        return {name: np.concatenate(result[name]) for name in self.layer_names if name in result}

    def last_backward_signals(self) -> dict[str, np.ndarray]:
        """The gradients ``dL/dh_l`` at each layer's output in the last recorded pass,
        flattened, by layer name."""
        if self._last is None:
            return {}
        result: dict[str, list[np.ndarray]] = {}
        for name, grad in self._last.signals:
            values = _to_numpy(grad)
            if self._last.scale is not None:  # unscaled in float32 at least: float16 cannot
                # hold a scale of 2**16, nor the small values of the unscaled gradient
                wide = np.result_type(values.dtype, np.float32)
                values = np.divide(values, float(self._last.scale), dtype=wide)
            result.setdefault(name, []).append(values)
        return {name: np.concatenate(result[name]) for name in self.layer_names if name in result}

    # ------------------------------------------------------------------ NaN/Inf origin
    def _locate(self, current: _Pass, grads: list[torch.Tensor]) -> Diagnosis:
        """Find the module where a non-finite value first appeared in this pass."""
        def finite(tensors: Iterable[torch.Tensor]) -> bool:
            return all(bool(torch.isfinite(t).all()) for t in tensors
                       if t.is_floating_point() or t.is_complex())

        step = current.index
        model_inputs = [t for call in current.calls if call.name == "" for t in call.inputs]
        if not finite(model_inputs):
            return self._nonfinite_diagnosis(None, step, "input", model_inputs)
        # Forward: modules finish innermost first, so the first call with finite inputs and a
        # non-finite output is where it was made; later modules only passed it on.
        for call in current.calls:
            if finite(call.inputs) and not finite(call.outputs):
                return self._nonfinite_diagnosis(call.name, step, "forward", call.outputs)
        # Backward: gradients arrive output side first. The first non-finite gradient at a
        # module's output was made by the backward of the module that consumed that output.
        calls = current.calls
        finite_grad: dict[int, bool] = {}
        first_bad: tuple[int, int] | None = None
        for position, (call, grad) in enumerate(current.grads):
            ok = bool(torch.isfinite(grad).all())
            finite_grad[call] = finite_grad.get(call, True) and ok
            if not ok and first_bad is None:
                first_bad = (position, call)
        # a layer whose parameter gradient is non-finite while its output gradient was finite
        arrival: dict[int, int] = {}
        for position, (call, _) in enumerate(current.grads):
            arrival.setdefault(call, position)
        bad_params = {self.layer_names[layer] for layer in range(len(self.layer_names))
                      if not finite(grads[int(p)] for p, owner in
                                    zip(self._owner_param, self._owner_layer, strict=True)
                                    if int(owner) == layer)}
        candidates: list[tuple[float, str, list[torch.Tensor]]] = []
        for index, call in enumerate(calls):
            if call.name in bad_params and finite_grad.get(index, True) and index in arrival:
                module = self._modules[call.name]
                candidates.append((arrival[index] + 0.5, call.name,
                                   [_values(p.grad) for p in module._parameters.values()
                                    if p is not None and p.grad is not None]))
        if first_bad is not None:
            position, bad_call = first_bad
            bad_grads = [g for c, g in current.grads if c == bad_call]
            from_loss = any(_same(x, y) for x in calls[bad_call].outputs
                            for y in current.root_outputs)
            if from_loss and not any(candidate[0] < position for candidate in candidates):
                return self._nonfinite_diagnosis(None, step, "loss", bad_grads)
            made_by = self._consumer(current, bad_call, finite_grad)
            candidates.append((position, made_by, bad_grads))
        if candidates:
            _, name, evidence = min(candidates, key=lambda c: c[0])
            return self._nonfinite_diagnosis(name, step, "backward", evidence)
        return self._nonfinite_diagnosis(None, step, "unknown", [])

    def _consumer(self, current: _Pass, producer: int, finite_grad: dict[int, bool]) -> str:
        """The module whose backward turned the gradient at ``producer``'s output bad: one that
        took that output as input and itself got a finite gradient; else the module whose
        forward contains the producer (the bad operation is a plain function call there)."""
        produced = current.calls[producer].outputs
        consumers = [
            index for index, call in enumerate(current.calls)
            if index != producer and finite_grad.get(index, True)
            and any(_same(x, y) for x in call.inputs for y in produced)
        ]
        if consumers:
            return min((current.calls[i].name for i in consumers), key=lambda n: -n.count("."))
        name = current.calls[producer].name
        called = {call.name for call in current.calls}
        while name:
            name = name.rpartition(".")[0]
            if name in called:
                return name
        return ""

    def _scaler_hint(self) -> str:
        """Advice for a non-finite gradient, when the monitor was given no GradScaler."""
        if self.scaler is not None:
            return ""
        return ("; in mixed-precision training with a GradScaler, give the monitor the scaler "
                "(GradientMonitor(..., scaler=scaler)): scaled gradients overflow now and then "
                "by design, and the scaler skips those steps")

    def _nonfinite_diagnosis(
        self, name: str | None, step: int, phase: str, tensors: list[torch.Tensor]
    ) -> Diagnosis:
        nan, inf = _nonfinite_counts(tensors)
        found = _describe_nonfinite(nan, inf)
        evidence: dict[str, Any] = {"nan": nan, "inf": inf}
        if phase == "input":
            message = (
                f"Non-finite values at step {step}: the batch fed to the model already held "
                f"{found} values, before any layer ran. Try: check the data pipeline (missing "
                "values, division by a zero standard deviation when normalising, corrupt files); "
                "torch.isfinite(batch).all() in the loader finds the bad examples."
            )
            return Diagnosis("nonfinite", None, step, phase, evidence, message)
        if phase == "loss":
            message = (
                f"Non-finite gradients at step {step}: the gradient arriving at the model's output "
                f"from the loss already held {found} values, so the fault is in the loss "
                "computation, outside the model (e.g. the log of a probability that underflowed "
                "to 0). Try: compute log-probabilities with F.log_softmax or use "
                "F.cross_entropy on logits, add an epsilon inside logs and divisions, lower the "
                f"learning rate{self._scaler_hint()}."
            )
            return Diagnosis("nonfinite", None, step, phase, evidence, message)
        if phase == "unknown" or name is None:
            message = (
                f"Non-finite values at step {step}, but every recorded tensor was finite: an "
                "operation outside the hooked modules produced them. Try: "
                "torch.autograd.detect_anomaly() for one step to find the operation."
            )
            return Diagnosis("nonfinite", None, step, phase, evidence, message)
        module = self._modules[name]
        label = f"'{name}'" if name else "the model itself (its own forward code)"
        kind = type(module).__name__
        own = [p for p in module._parameters.values() if p is not None]
        weights_bad = any(not bool(torch.isfinite(p).all()) for p in own)
        evidence["weights_nonfinite"] = weights_bad
        if phase == "forward":
            seen = (f"the forward pass of {label} ({kind}) turned finite inputs into an output "
                    f"with {found} values")
            if weights_bad:
                seen += "; its own parameters were already non-finite (an earlier bad update)"
                advice = ("stop training at the first non-finite loss (gradtext.fit does), lower "
                          "the learning rate or clip the gradient norm")
            else:
                advice = ("look for overflow (exp, large activations) or an unsafe operation "
                          "in that module (log of 0, division by 0, sqrt of a negative); use "
                          "numerically stable forms such as F.log_softmax, add an epsilon, lower "
                          "the learning rate or clip gradients")
        else:
            seen = (f"the backward pass of {label} ({kind}) turned a finite gradient into one "
                    f"with {found} values")
            advice = ("look for an operation whose derivative is infinite where it is used "
                      "(sqrt or log at 0, x/y with y = 0, a custom backward); add an epsilon or "
                      "use a stable form, lower the learning rate or clip gradients")
            advice += self._scaler_hint()
        message = (
            f"Non-finite values first appeared at step {step}: {seen}. The modules that got the "
            f"NaN/Inf from it later in the same pass only passed it on. Try: {advice}."
        )
        return Diagnosis("nonfinite", name, step, phase, evidence, message)

    # ------------------------------------------------------------------ diagnosis
    def diagnose(self, thresholds: Thresholds | None = None) -> Diagnosis:
        """Exploding, vanishing, non-finite or ok: what the recorded statistics show.

        Non-finite values win (reported with the module where they first appeared). Otherwise
        the recorded steps are checked in order, and the first step where a rule of
        :class:`Thresholds` fires is reported: the change of gradient scale from the last
        layer to the first, the absolute scale of each layer's gradient and its size relative
        to the layer's weights, growth during training, and update-to-weight ratios.

        >>> import torch
        >>> net = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(3)])
        >>> with GradientMonitor(net) as mon:
        ...     net(torch.randn(4, 8)).sum().backward()
        >>> mon.diagnose().kind
        'ok'
        """
        t = self.thresholds if thresholds is None else thresholds
        if not isinstance(t, Thresholds):
            raise TypeError(f"thresholds must be a Thresholds, got {type(t).__name__}")
        unrecorded = -1 if self._unrecorded_bad is None else int(self._unrecorded_bad)
        if unrecorded >= 0 and (self._nonfinite is None or unrecorded < self._nonfinite.step):
            return Diagnosis(
                "nonfinite", None, unrecorded, "unknown", {},
                f"Non-finite gradients appeared at step {unrecorded}, a step the monitor did not "
                f"record (every={self.every}), so it cannot say where they came from. Try: "
                "run again with every=1 to locate the module where they first appear.",
            )
        if self._nonfinite is not None:
            return self._nonfinite
        if not self._rows:
            return Diagnosis("ok", None, None, None, {},
                             "Nothing recorded yet: run a forward and backward pass first.")
        order = self._order or list(range(len(self.layer_names)))
        ran = max(self._ran, 1)
        names = [self.layer_names[i] for i in order]
        # passes whose scaled gradients overflowed (see overflow_steps) are left out
        kept = np.isin(self.steps, self.overflow_steps, invert=True)
        steps = self.steps[kept]
        skipped = len(self._steps) - len(steps)
        note = (f" ({skipped} pass(es) whose scaled gradients overflowed, which the GradScaler "
                "skips, are left out)" if skipped else "")
        if not len(steps):
            return Diagnosis("ok", None, None, None, {"overflows": skipped},
                             f"Nothing to judge yet{note}.")
        grad = self.grad_norms()[kept][:, order]
        weight = self.weight_norms()[kept][:, order]
        updates = self.update_ratios()[kept][:, order]
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(weight > 0, grad / weight, np.nan)
        # weights that started at zero (a ReZero gate, a zero-initialised norm scale) have no
        # scale to compare a gradient or an update with: left out of those rules
        started_at_zero = weight[0] == 0
        relative[:, started_at_zero] = np.nan
        updates[:, started_at_zero] = np.nan
        start = grad[0].max()
        for row, step in enumerate(steps.tolist()):
            g, rel, upd = grad[row], relative[row], updates[row]
            found = self._judge(t, names, ran, step, g, rel, upd, start)
            if found is not None:
                return found
        first_last = self._first_to_last(grad[-1][:ran])
        largest_relative = float(np.nanmax(relative)) if np.isfinite(relative).any() else math.nan
        evidence = {"first_to_last": first_last, "max_grad_to_weight": largest_relative,
                    "max_grad_norm": float(grad.max()), "overflows": skipped}
        message = (
            f"No sign of exploding or vanishing gradients in {len(steps)} recorded "
            f"step(s){note}: at the last one the first layer's gradient is {first_last:.3g} "
            f"times the last layer's (limit {t.layer_ratio:.3g} either way); the largest "
            f"gradient-to-weight ratio seen was {evidence['max_grad_to_weight']:.3g} (limits "
            f"{t.grad_to_weight_low:.3g} to {t.grad_to_weight_high:.3g}) and the largest layer "
            f"gradient norm "
            f"{evidence['max_grad_norm']:.3g} (limit {t.grad_norm_high:.3g})."
        )
        return Diagnosis("ok", None, None, None, evidence, message)

    @staticmethod
    def _first_to_last(g: np.ndarray) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(g[0] / g[-1]) if g[-1] > 0 else (math.inf if g[0] > 0 else 1.0)

    def _judge(
        self, t: Thresholds, names: list[str], ran: int, step: int, g: np.ndarray,
        rel: np.ndarray, upd: np.ndarray, start: float,
    ) -> Diagnosis | None:
        """The first rule of ``t`` that fires at one recorded step, or None. Columns are in
        the order the layers ran; the first ``ran`` of them ran as modules, in that order."""
        explode_advice = ("lower the learning rate, clip the gradient norm (gradtext.fit(..., "
                          "clip=1.0)), check the initial weight scale (Xavier/He), normalise the "
                          "inputs or add normalisation layers")
        vanish_advice = ("use ReLU-family activations instead of sigmoid/tanh, Xavier/He "
                         "initialisation, residual connections or normalisation layers, an "
                         "adaptive optimizer such as Adam; for recurrent nets LSTM or GRU cells")

        def verdict(kind: str, layer: str, seen: str, evidence: dict[str, Any]) -> Diagnosis:
            advice = explode_advice if kind == "exploding" else vanish_advice
            message = f"{kind.capitalize()} gradients at step {step}: {seen}. Try: {advice}."
            return Diagnosis(kind, layer, step, None, evidence, message)

        ratio = self._first_to_last(g[:ran])
        last = names[ran - 1]
        if ran > 1 and ratio > t.layer_ratio:
            return verdict("exploding", names[0],
                           f"the first layer '{names[0]}' has a gradient norm {ratio:.3g} times "
                           f"the last layer's '{last}' (limit {t.layer_ratio:.3g})",
                           {"first_to_last": ratio})
        if ran > 1 and ratio < 1 / t.layer_ratio:
            return verdict("vanishing", names[0],
                           f"the first layer '{names[0]}' has a gradient norm {ratio:.3g} times "
                           f"the last layer's '{last}' (limit {1 / t.layer_ratio:.3g}); the "
                           "layers near the input barely learn", {"first_to_last": ratio})
        worst = int(np.nanargmax(np.where(np.isnan(rel), -np.inf, rel)))
        if rel[worst] > t.grad_to_weight_high:
            return verdict("exploding", names[worst],
                           f"layer '{names[worst]}' has a gradient {rel[worst]:.3g} times as large "
                           f"as its weights (limit {t.grad_to_weight_high:.3g})",
                           {"grad_to_weight": float(rel[worst])})
        largest = int(np.argmax(g))
        if g[largest] > t.grad_norm_high:
            return verdict("exploding", names[largest],
                           f"layer '{names[largest]}' has a gradient norm of {g[largest]:.3g} "
                           f"(limit {t.grad_norm_high:.3g})", {"grad_norm": float(g[largest])})
        if start > 0 and g[largest] > t.growth * start:
            return verdict("exploding", names[largest],
                           f"the largest layer gradient norm grew {g[largest] / start:.3g}-fold "
                           f"since the first recorded step (limit {t.growth:.3g})",
                           {"growth": float(g[largest] / start)})
        if np.isfinite(upd).any():
            top = int(np.nanargmax(upd))
            if upd[top] > t.update_ratio_high:
                return verdict("exploding", names[top],
                               f"one optimizer step changed layer '{names[top]}' by "
                               f"{upd[top]:.3g} of its size (limit {t.update_ratio_high:.3g}; "
                               "about 1e-3 is healthy)", {"update_ratio": float(upd[top])})
        if np.isfinite(rel).any() and np.nanmax(rel) < t.grad_to_weight_low and g.max() == 0:
            return Diagnosis(
                "vanishing", None, step, None, {"grad_norm": 0.0},
                f"Vanishing gradients at step {step}: every layer's gradient is exactly zero, "
                "which is no gradient at all rather than a product of small factors. Try: check "
                "that the batch is not empty, that the loss is computed from the model's output "
                "without .detach(), .item() or torch.no_grad() in between, and that the units "
                "are not all dead.",
            )
        if np.isfinite(rel).any() and np.nanmax(rel) < t.grad_to_weight_low:
            return verdict("vanishing", names[worst],
                           f"every layer's gradient is below {t.grad_to_weight_low:.3g} of its "
                           f"weights (largest {rel[worst]:.3g})",
                           {"grad_to_weight": float(rel[worst])})
        return None

    # ------------------------------------------------------------------ TensorBoard
    def write_tensorboard(self, log_dir: Any, *, prefix: str = "") -> str:
        """Write every recorded statistic to TensorBoard event files; return the log directory.

        ``log_dir`` is a directory (created if missing) or an open
        ``torch.utils.tensorboard.SummaryWriter``. Tags are ``<prefix>grad_norm/<layer>``,
        ``backward_norm/...``, ``weight_norm/...``, ``update_ratio/...``,
        ``activation_mean/...``, ``activation_std/...``, ``saturated/...``, ``dead/...``, at
        ``global_step`` = the backward-pass index. Open them with
        ``tensorboard --logdir <log_dir>``. Needs the optional ``tensorboard`` package.

        >>> import tempfile, torch
        >>> net = torch.nn.Linear(2, 1)
        >>> with GradientMonitor(net) as mon:
        ...     net(torch.ones(3, 2)).sum().backward()
        >>> folder = mon.write_tensorboard(tempfile.mkdtemp())
        """
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise ImportError(
                "write_tensorboard needs the optional 'tensorboard' package: "
                "pip install tensorboard (or pip install 'gradtext[tensorboard]')"
            ) from error
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        if isinstance(log_dir, SummaryWriter):
            writer, close = log_dir, False
        elif isinstance(log_dir, (str, bytes)) or hasattr(log_dir, "__fspath__"):
            writer, close = SummaryWriter(log_dir=str(log_dir)), True
        else:
            raise TypeError(
                f"log_dir must be a path or a SummaryWriter, got {type(log_dir).__name__}"
            )
        series = {
            "grad_norm": self.grad_norms(), "backward_norm": self.backward_norms(),
            "weight_norm": self.weight_norms(), "update_ratio": self.update_ratios(),
            "activation_mean": self.activation_means(), "activation_std": self.activation_stds(),
            "saturated": self.saturated_fractions(), "dead": self.dead_fractions(),
        }
        for tag, values in series.items():
            for column, layer in enumerate(self.layer_names):
                column_values = values[:, column]
                if np.isnan(column_values).all():
                    continue
                for step, value in zip(self._steps, column_values, strict=True):
                    writer.add_scalar(f"{prefix}{tag}/{layer or 'model'}", float(value), step)
        writer.flush()
        directory = writer.log_dir
        if close:
            writer.close()
        return directory

    def __repr__(self) -> str:
        state = "active" if self.active else "inactive"
        return (f"GradientMonitor({type(self.model).__name__}, layers={len(self.layer_names)}, "
                f"every={self.every}, recorded={len(self._steps)}, {state})")

    def with_thresholds(self, **changes: float) -> Thresholds:
        """A copy of this monitor's thresholds with some values changed, for :meth:`diagnose`.

        >>> import torch
        >>> GradientMonitor(torch.nn.Linear(2, 2)).with_thresholds(layer_ratio=10).layer_ratio
        10.0
        """
        return replace(self.thresholds, **changes)
