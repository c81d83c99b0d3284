"""Initialization schemes by name, applied in place to any model, and a report of how a signal
propagates through it.

- :func:`initialize` ``(model, scheme, **options)`` re-draws the weights of every layer a scheme
  applies to (``nn.Linear``, ``nn.Conv1d/2d/3d``, ``nn.RNN/LSTM/GRU`` and their cells, and
  :mod:`gradtext.cells`' ``LSTMCell``/``GRUCell``) and sets the biases, then returns the model.
  Frozen parameters (``requires_grad=False``) are left as they are unless
  ``include_frozen=True``. Recurrent weights are drawn **per gate block**: an LSTM's
  ``weight_hh`` is four ``hidden x hidden`` matrices stacked, and each is a matrix in its own
  right (orthogonal, or with fans ``hidden`` and ``hidden``).
- :func:`activation_gain` and :func:`second_moment_gain`: the factor by which a scheme scales
  its weights for a given activation.
- :func:`signal_propagation`: forward and backward variance per layer on a batch, and the
  gain per layer that would make them flat.

The schemes (``n_in``, ``n_out``: a weight block's fans, as ``torch.nn.init`` counts them):

=================== ======================================================================
``standard``        ``U[-1/sqrt(n_in), 1/sqrt(n_in)]``, the pre-2010 heuristic; variance
                    ``1 / (3 n_in)``
``xavier_normal``   ``N(0, gain^2 * 2 / (n_in + n_out))`` (Glorot & Bengio 2010)
``xavier_uniform``  ``U[-a, a]``, ``a = gain * sqrt(6 / (n_in + n_out))``, same variance
``kaiming_normal``  ``N(0, gain^2 / n)``, ``n = n_in`` (``mode="fan_in"``) or ``n_out``;
                    ``gain = sqrt(2)`` for ReLU (He et al. 2015)
``kaiming_uniform`` ``U[-a, a]``, ``a = gain * sqrt(3 / n)``, same variance
``orthogonal``      ``gain * Q``, ``Q`` a random orthogonal matrix (Saxe et al. 2014)
``identity``        recurrent weights ``gain * I`` (rectangular ``I`` for a projected LSTM's
                    ``hidden x proj`` blocks), other weights ``N(0, std^2)`` with
                    ``std = 0.001`` (Le, Jaitly & Hinton 2015's IRNN)
``scaled_normal``   ``N(0, std^2)``, ``std = gain / sqrt(n_in)`` unless ``std`` is given
``lsuv``            orthogonal, then each layer rescaled in forward order until its output
                    variance on ``data`` is 1 (Mishkin & Matas 2016)
=================== ======================================================================

Options (each scheme accepts the ones that mean something for it; others raise ``TypeError``):
``gain``, ``nonlinearity`` (sets the gain through :func:`activation_gain`), ``mode``, ``std``,
``bias`` (the value every bias is set to, 0 by default; ``None`` leaves biases alone),
``forget_bias`` (an LSTM's forget-gate slice of ``bias_ih``), ``generator`` (a
``torch.Generator``, on any device: a CPU generator draws the same weights for a CUDA model;
the global RNG otherwise), ``strict`` (raise on a layer with parameters the scheme cannot handle,
default; ``False`` leaves it as it is), ``include_frozen`` (``False`` by default: parameters with
``requires_grad=False``, such as a frozen pretrained embedding or layer, are left as they are, and
a module whose parameters are all frozen is skipped even if the scheme cannot handle it; ``True``
re-draws them too, keeping their ``requires_grad``), and for ``lsuv``: ``data``, ``tol``,
``max_iter``. A weight shared by several layers (tied weights) is drawn once, and ``lsuv``
rescales it once, for its first use in forward order. Normalization layers (``BatchNorm``,
``LayerNorm``, ``GroupNorm``, ...) keep their own initialization (weight 1, bias 0) and are
skipped.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
>>> _ = initialize(net, "kaiming_normal", generator=torch.Generator().manual_seed(0))
>>> round(float(net[0].weight.detach().var() * 256), 1), float(net[0].bias.detach().abs().max())
(2.0, 0.0)
>>> lstm = initialize(nn.LSTM(8, 16), "orthogonal", forget_bias=1.0)
>>> w = lstm.weight_hh_l0[16:32]   # the forget gate's recurrent block
>>> torch.allclose(w @ w.T, torch.eye(16), atol=1e-5)
True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from gradtext.cells import GRUCell as _GRUCell
from gradtext.cells import LSTMCell as _LSTMCell

SCHEMES = (
    "standard",
    "xavier_normal",
    "xavier_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "orthogonal",
    "identity",
    "scaled_normal",
    "lsuv",
)
"""The scheme names :func:`initialize` accepts."""

_COMMON = {"bias", "forget_bias", "generator", "strict", "include_frozen"}
_OPTIONS: dict[str, set[str]] = {
    "standard": _COMMON,
    "xavier_normal": _COMMON | {"gain", "nonlinearity"},
    "xavier_uniform": _COMMON | {"gain", "nonlinearity"},
    "kaiming_normal": _COMMON | {"gain", "nonlinearity", "mode"},
    "kaiming_uniform": _COMMON | {"gain", "nonlinearity", "mode"},
    "orthogonal": _COMMON | {"gain", "nonlinearity"},
    "identity": _COMMON | {"gain", "std"},
    "scaled_normal": _COMMON | {"gain", "nonlinearity", "std"},
    "lsuv": _COMMON | {"data", "tol", "max_iter"},
}

_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_GATES: dict[type, int] = {  # gate blocks stacked in weight_ih / weight_hh
    nn.RNN: 1, nn.RNNCell: 1,
    nn.LSTM: 4, nn.LSTMCell: 4, _LSTMCell: 4,
    nn.GRU: 3, nn.GRUCell: 3, _GRUCell: 3,
}
_RECURRENT_LAYERS = tuple(_GATES)
_LSTMS = (nn.LSTM, nn.LSTMCell, _LSTMCell)
_NORMALIZATION = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.normalization.RMSNorm,
)

# --------------------------------------------------------------------------------------------
# Gains
# --------------------------------------------------------------------------------------------

_EXACT_GAINS = {
    "linear": 1.0,
    "identity": 1.0,
    "conv1d": 1.0,
    "conv2d": 1.0,
    "conv3d": 1.0,
    "sigmoid": 1.0,
    "tanh": 5.0 / 3.0,
    "relu": math.sqrt(2.0),
    "selu": 0.75,
}
"""``torch.nn.init.calculate_gain``'s table (leaky ReLU is computed from its slope)."""

_NUMERICAL = {
    "gelu": nn.functional.gelu,
    "silu": nn.functional.silu,
    "elu": nn.functional.elu,
    "softplus": nn.functional.softplus,
    "mish": nn.functional.mish,
}
"""Activations ``calculate_gain`` lacks; their gain is :func:`second_moment_gain`."""

_Z = np.linspace(-12.0, 12.0, 48_001)  # a fine grid in standard-normal units
_NORMAL_WEIGHTS = np.exp(-0.5 * _Z**2) / np.sqrt(2 * np.pi) * (_Z[1] - _Z[0])


def second_moment_gain(activation: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """``1 / sqrt(E[phi(z)^2])`` for ``z ~ N(0, 1)``: the weight gain that keeps a unit-variance
    pre-activation at unit mean square after ``phi`` and the next layer.

    With weights ``N(0, gain^2 / n_in)``, the next pre-activation has mean square
    ``gain^2 * E[phi(z)^2]``; this gain makes it 1 again. The expectation is a sum over a
    grid of 48,001 points on ``[-12, 12]`` weighted by the normal density (accurate to about
    1e-6 even for kinked functions such as ReLU, where it gives He et al.'s ``sqrt(2)``).
    It is how :func:`activation_gain` handles GELU, SiLU, ELU, softplus and Mish.
    For tanh it gives 1.59, close to (but not the same heuristic as) PyTorch's 5/3.

    Unit scale is a fixed point of the layer-to-layer map, not necessarily a stable one: for
    GELU and SiLU a slightly larger signal grows and a smaller one shrinks, so a deep stack
    drifts away from it (20 GELU layers of width 256 end near 20). Data-driven LSUV
    (``initialize(model, "lsuv", data=...)``) pins every layer instead.

    >>> round(second_moment_gain(torch.relu), 4)
    1.4142
    >>> round(second_moment_gain(lambda z: z), 4)
    1.0
    """
    if not callable(activation):
        raise TypeError(f"activation must be callable, got {type(activation).__name__}")
    values = activation(torch.from_numpy(_Z)).double().numpy()
    mean_square = float(_NORMAL_WEIGHTS @ values**2)
    if not math.isfinite(mean_square) or mean_square <= 0:
        raise ValueError(f"activation: E[phi(z)^2] must be positive and finite, got {mean_square}")
    return 1.0 / math.sqrt(mean_square)


def activation_gain(name: str, *, negative_slope: float = 0.01) -> float:
    """The gain of a named activation, for ``gain=`` in :func:`initialize`.

    ``linear``/``identity``/``conv*``/``sigmoid``/``tanh``/``relu``/``selu``/``leaky_relu``:
    the values of ``torch.nn.init.calculate_gain`` (``tanh``: 5/3, ``relu``: ``sqrt(2)``,
    ``leaky_relu``: ``sqrt(2 / (1 + negative_slope^2))``). ``gelu``, ``silu``, ``elu``,
    ``softplus``, ``mish``: estimated numerically by :func:`second_moment_gain`.

    >>> round(activation_gain("relu"), 4), round(activation_gain("tanh"), 4)
    (1.4142, 1.6667)
    >>> round(activation_gain("gelu"), 3), round(activation_gain("silu"), 3)
    (1.534, 1.677)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    if key == "leaky_relu":
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
            raise TypeError(f"negative_slope must be a number, got {negative_slope!r}")
        return math.sqrt(2.0 / (1.0 + negative_slope**2))
    if key in _EXACT_GAINS:
        return _EXACT_GAINS[key]
    if key in _NUMERICAL:
        return second_moment_gain(_NUMERICAL[key])
    known = sorted([*_EXACT_GAINS, "leaky_relu", *_NUMERICAL])
    raise ValueError(f"name: unknown activation {name!r}; known activations are {known}")


# --------------------------------------------------------------------------------------------
# Drawing one weight block
# --------------------------------------------------------------------------------------------


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight tensor, counted as ``torch.nn.init`` does: a linear
    ``(out, in)`` weight has fans ``(in, out)``; a convolution ``(out, in, *kernel)`` multiplies
    both by the kernel size.

    >>> fans(torch.empty(32, 3, 5, 5))
    (75, 800)
    """
    if weight.dim() < 2:
        raise ValueError(f"weight must have at least 2 dimensions, got shape {tuple(weight.shape)}")
    receptive = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def _orthogonal(block: torch.Tensor, gain: float, generator: torch.Generator | None) -> None:
    """Fill ``block`` with ``gain`` times a random (Haar) orthogonal matrix, drawn exactly as
    ``torch.nn.init.orthogonal_`` draws it (QR of a Gaussian matrix, signs fixed by ``R``'s
    diagonal), so the two agree under the same generator."""
    rows = block.shape[0]
    cols = block.numel() // rows
    gaussian = block.new_empty((rows, cols)).normal_(0.0, 1.0, generator=generator)
    if rows < cols:
        gaussian.t_()
    if gaussian.dtype in (torch.float16, torch.bfloat16):  # no QR in half precision on the CPU
        gaussian = gaussian.float()
    q, r = torch.linalg.qr(gaussian)
    q *= torch.diagonal(r).sign()
    if rows < cols:
        q.t_()
    block.copy_(gain * q.reshape(block.shape))


def _fill(block: torch.Tensor, scheme: str, options: dict[str, Any], recurrent: bool) -> None:
    """Draw one weight block in place (under ``torch.no_grad``). With a generator on another
    device than the block (a CPU generator, a CUDA model), draw on the generator's device and
    copy: the same seed then gives the same weights on either device."""
    generator = options.get("generator")
    if generator is not None and generator.device != block.device:
        drawn = torch.empty(block.shape, dtype=block.dtype, device=generator.device)
        _fill(drawn, scheme, options, recurrent)
        block.copy_(drawn)
        return
    fan_in, fan_out = fans(block)
    gain = options["gain"]
    if scheme == "standard":
        bound = 1.0 / math.sqrt(fan_in)
        block.uniform_(-bound, bound, generator=generator)
    elif scheme in ("xavier_normal", "xavier_uniform"):
        std = gain * math.sqrt(2.0 / (fan_in + fan_out))
        if scheme == "xavier_normal":
            block.normal_(0.0, std, generator=generator)
        else:
            block.uniform_(-math.sqrt(3.0) * std, math.sqrt(3.0) * std, generator=generator)
    elif scheme in ("kaiming_normal", "kaiming_uniform"):
        fan = fan_in if options["mode"] == "fan_in" else fan_out
        std = gain / math.sqrt(fan)
        if scheme == "kaiming_normal":
            block.normal_(0.0, std, generator=generator)
        else:
            block.uniform_(-math.sqrt(3.0) * std, math.sqrt(3.0) * std, generator=generator)
    elif scheme in ("orthogonal", "lsuv"):
        _orthogonal(block, gain, generator)
    elif scheme == "identity":
        if recurrent:
            rows, cols = block.shape  # cols < rows for a projected LSTM's weight_hh blocks
            block.copy_(gain * torch.eye(rows, cols, dtype=block.dtype, device=block.device))
        else:
            block.normal_(0.0, options["std"], generator=generator)
    elif scheme == "scaled_normal":
        std = options["std"] if options["std"] is not None else gain / math.sqrt(fan_in)
        block.normal_(0.0, std, generator=generator)


# --------------------------------------------------------------------------------------------
# Applying a scheme to a model
# --------------------------------------------------------------------------------------------


def _check_options(scheme: object, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Validate the scheme name and its options; fill in defaults."""
    if not isinstance(scheme, str):
        raise TypeError(f"scheme must be a str, got {type(scheme).__name__}")
    key = scheme.strip().lower()
    if key not in _OPTIONS:
        raise ValueError(f"scheme: unknown {scheme!r}; known schemes are {list(SCHEMES)}")
    unknown = sorted(set(options) - _OPTIONS[key])
    if unknown:
        raise TypeError(
            f"scheme {key!r} does not take option(s) {unknown}; it takes {sorted(_OPTIONS[key])}"
        )
    clean = dict(options)
    if "gain" in clean and "nonlinearity" in clean:
        raise TypeError("give either gain or nonlinearity, not both")
    if "nonlinearity" in clean:
        clean["gain"] = activation_gain(clean.pop("nonlinearity"))
    elif key.startswith("kaiming") and "gain" not in clean:
        clean["gain"] = activation_gain("relu")
    clean.setdefault("gain", 1.0)
    clean.setdefault("mode", "fan_in")
    clean.setdefault("std", 0.001 if key == "identity" else None)
    clean.setdefault("bias", 0.0)
    clean.setdefault("forget_bias", None)
    clean.setdefault("strict", True)
    clean.setdefault("include_frozen", False)
    clean.setdefault("generator", None)
    for name in ("strict", "include_frozen"):
        if not isinstance(clean[name], bool):
            raise TypeError(f"{name} must be a bool, got {clean[name]!r}")
    for name in ("gain", "std", "bias", "forget_bias"):
        value = clean[name]
        if value is None and name != "gain":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
        if name in ("gain", "std") and value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if clean["mode"] not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {clean['mode']!r}")
    if clean["generator"] is not None and not isinstance(clean["generator"], torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {clean['generator']!r}")
    return key, clean


def _draws(parameter: torch.Tensor, options: dict[str, Any]) -> bool:
    """Whether :func:`initialize` may overwrite ``parameter``: a trainable one always, a frozen
    one (``requires_grad=False``) only with ``include_frozen=True``."""
    return parameter.requires_grad or options["include_frozen"]


def _layers(model: nn.Module, scheme: str, options: dict[str, Any]
            ) -> Iterator[tuple[str, nn.Module]]:
    """The layers ``scheme`` applies to, in ``named_modules`` order; raise on a layer with
    parameters that it cannot handle and would have to draw (when ``strict``)."""
    for name, module in model.named_modules():
        if isinstance(module, _WEIGHT_LAYERS):
            yield name, module
        elif isinstance(module, _RECURRENT_LAYERS) and scheme != "lsuv":
            yield name, module
        elif isinstance(module, _NORMALIZATION) or not any(
            _draws(p, options) for p in module.parameters(recurse=False)
        ):
            continue  # nothing of its own to draw: no parameters, or all of them frozen
        elif options["strict"]:
            handled = "Linear, Conv1d/2d/3d" + ("" if scheme == "lsuv" else ", RNN/LSTM/GRU")
            raise TypeError(
                f"scheme {scheme!r} cannot initialize layer {name or '(model)'!r} of type "
                f"{type(module).__name__}; it handles {handled} (normalization layers are "
                "skipped). Pass strict=False to leave such layers as they are."
            )


def _first_time(parameter: torch.Tensor, seen: set[int]) -> bool:
    """Whether ``parameter`` is met for the first time (then remember it): a parameter shared
    by several layers (tied weights) is drawn by the first of them only."""
    if id(parameter) in seen:
        return False
    seen.add(id(parameter))
    return True


def _init_weight_layer(layer: nn.Module, scheme: str, options: dict[str, Any],
                       seen: set[int]) -> None:
    if _draws(layer.weight, options) and _first_time(layer.weight, seen):
        _fill(layer.weight, scheme, options, recurrent=False)
    if layer.bias is not None and options["bias"] is not None and _draws(layer.bias, options):
        layer.bias.fill_(options["bias"])


def _gates(layer: nn.Module) -> int:
    """How many gate blocks are stacked in a recurrent layer's weights (subclasses included)."""
    return next(count for kind, count in _GATES.items() if isinstance(layer, kind))


def _init_recurrent(layer: nn.Module, scheme: str, options: dict[str, Any],
                    seen: set[int]) -> None:
    gates = _gates(layer)
    for name, parameter in layer.named_parameters(recurse=False):
        if not _draws(parameter, options):
            continue
        if name.startswith("weight") and not _first_time(parameter, seen):
            continue  # shared with a layer drawn before
        if name.startswith("weight_ih") or name.startswith("weight_hh"):
            for block in parameter.chunk(gates, dim=0):  # views: drawn in place
                _fill(block, scheme, options, recurrent=name.startswith("weight_hh"))
        elif name.startswith("weight_hr"):  # an LSTM's projection: an ordinary matrix
            _fill(parameter, scheme, options, recurrent=False)
        elif name.startswith("bias") and options["bias"] is not None:
            parameter.fill_(options["bias"])
    if isinstance(layer, _LSTMS) and options["forget_bias"] is not None:
        hidden = layer.hidden_size
        for name, parameter in layer.named_parameters(recurse=False):
            # gate order i, f, g, o: the forget gate is the second block
            if name.startswith("bias_ih") and _draws(parameter, options):
                parameter[hidden : 2 * hidden].fill_(options["forget_bias"])


def initialize(model: nn.Module, scheme: str, **options: Any) -> nn.Module:
    """Apply an initialization ``scheme`` in place to every layer of ``model`` it applies to,
    and return ``model``.

    See the module docstring for the schemes and their options. Layers are visited in
    ``model.named_modules()`` order and their weights drawn from ``generator`` (or torch's global
    RNG), so the same seed gives the same weights. A module that owns parameters of a kind the
    scheme does not handle (e.g. ``nn.Embedding``; ``nn.LSTM`` for ``"lsuv"``) raises
    ``TypeError`` naming it, unless ``strict=False`` or all its parameters are frozen.

    Frozen parameters (``requires_grad=False``: a pretrained embedding or first layer kept
    fixed) are left as they are, weights and biases alike, and ``"lsuv"`` does not rescale a
    layer whose weight is frozen; ``include_frozen=True`` draws them too (their
    ``requires_grad`` stays ``False``).

    A weight shared by several layers (tied weights: one ``nn.Parameter`` held by two modules)
    is drawn once, by the first of them in ``named_modules()`` order, and ``"lsuv"`` rescales
    it once, for the first of them to run on ``data``: the output variance is 1 there, and the
    later layers that use it are not rescaled (their variance is whatever follows). The same
    module called twice in a forward pass is one layer, measured at its first call.

    ``"lsuv"`` needs ``data=`` (a batch of inputs, or an ``(inputs, targets)`` pair): after the
    orthogonal draw, each layer in forward order is divided by the standard deviation of its
    output on that batch until ``|variance - 1| < tol`` (default 0.05, tighter than Mishkin &
    Matas's 0.1 so that a held-out batch also lands within 0.1) or ``max_iter`` rescales
    (default 10, as in the paper) have been made; a layer still off after that gives a
    ``RuntimeWarning``. Those forward passes run in the model's current mode, and the buffers
    they update (BatchNorm's running statistics) are put back afterwards.

    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64))
    >>> batch = torch.randn(512, 64)
    >>> report = signal_propagation(initialize(net, "lsuv", data=batch), batch)
    >>> [round(float(v), 2) for v in report.forward_variance]
    [1.0, 1.0]
    >>> frozen = net[0].weight.requires_grad_(False).detach().clone()
    >>> _ = initialize(net, "orthogonal")
    >>> torch.equal(net[0].weight, frozen), float(net[0].bias.detach().abs().max())
    (True, 0.0)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    key, options = _check_options(scheme, options)
    if key == "lsuv":  # checked before anything is drawn: bad input leaves the model alone
        data = _check_data(options.pop("data", None))
        tol, max_iter = options.pop("tol", None), options.pop("max_iter", None)
        tol, max_iter = _check_lsuv_options(0.05 if tol is None else tol,
                                            10 if max_iter is None else max_iter)
    layers = list(_layers(model, key, options))
    seen: set[int] = set()
    with torch.no_grad():
        for _, layer in layers:
            if isinstance(layer, _WEIGHT_LAYERS):
                _init_weight_layer(layer, key, options, seen)
            else:
                _init_recurrent(layer, key, options, seen)
    if key == "lsuv":
        with _buffers_kept(model), _rng_kept(model):  # e.g. Dropout draws: state put back
            trainable = [(name, layer) for name, layer in layers if _draws(layer.weight, options)]
            _lsuv(model, trainable, data, tol=tol, max_iter=max_iter)
    return model


@contextmanager
def _buffers_kept(model: nn.Module) -> Iterator[None]:
    """Run a block that calls ``model`` and put every buffer back as it was afterwards (e.g.
    BatchNorm's ``running_mean``, ``running_var`` and ``num_batches_tracked``, which a
    forward pass in training mode updates). The block's forward passes run in whatever mode
    the model is in; only their side effects on buffers are undone."""
    saved = [
        (module, name, buffer, None if buffer is None else buffer.detach().clone())
        for module in model.modules()
        for name, buffer in module._buffers.items()
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for module, name, buffer, copy in saved:
                if buffer is not None:
                    buffer.copy_(copy)
                module._buffers[name] = buffer


@contextmanager
def _rng_kept(model: nn.Module) -> Iterator[None]:
    """Run a block that calls ``model`` and put torch's global RNG (the CPU's and that of every
    CUDA device holding a parameter) back as it was afterwards, so random layers such as
    ``nn.Dropout`` in training mode do not shift the random numbers drawn after it."""
    devices = sorted({p.device.index for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        yield


# --------------------------------------------------------------------------------------------
# Outputs that are not a single tensor
# --------------------------------------------------------------------------------------------


def _floating_tensors(output: Any) -> list[torch.Tensor]:
    """The floating-point tensors in ``output``, in order: ``[output]`` for a tensor, else
    those found depth first in a tuple, list or dict (its values, in insertion order). An
    ``nn.LSTM``'s ``(out, (h, c))`` gives ``[out, h, c]``; integer tensors (token ids, an
    argmax) and other objects are left out."""
    if isinstance(output, torch.Tensor):
        return [output] if output.is_floating_point() else []
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [tensor for item in output for tensor in _floating_tensors(item)]
    return []


def _layer_signal(output: Any, name: str) -> torch.Tensor:
    """What is measured of layer ``name``'s output: the output itself if it is a tensor, else
    its first floating-point tensor (see :func:`_floating_tensors`)."""
    tensors = _floating_tensors(output)
    if not tensors:
        raise ValueError(f"layer {name!r}: its output ({type(output).__name__}) holds no "
                         "floating-point tensor to measure")
    return tensors[0]


# --------------------------------------------------------------------------------------------
# LSUV: layer-sequential unit-variance rescaling
# --------------------------------------------------------------------------------------------


def _are_ids(data: torch.Tensor) -> bool:
    """Whether ``data`` holds integers (token ids for a model that starts with an embedding)."""
    return not data.is_floating_point() and not data.is_complex() and data.dtype != torch.bool


def _on_model(data: torch.Tensor, parameter: torch.Tensor) -> torch.Tensor:
    """``data`` on the parameter's device; in its dtype too, unless ``data`` holds token ids."""
    if _are_ids(data):
        return data.to(device=parameter.device)
    return data.to(device=parameter.device, dtype=parameter.dtype)


def _run(model: nn.Module, data: torch.Tensor) -> Any:
    """``model(data)``; when ``data`` holds token ids that the model cannot take, an error that
    says so (rather than a dtype mismatch deep inside the first layer)."""
    try:
        return model(data)
    except RuntimeError as error:
        if not _are_ids(data):
            raise
        raise TypeError(
            f"data holds integers ({data.dtype}), which only a model that starts with an "
            f"embedding takes as token ids; this one failed on them ({error}). Pass "
            "floating-point inputs."
        ) from error


def _check_data(data: object) -> torch.Tensor:
    if data is None:
        raise ValueError("scheme 'lsuv' needs data=<a batch of inputs>: it rescales each layer "
                         "until its output variance on that batch is 1")
    if isinstance(data, (tuple, list)) and len(data) == 2:
        data = data[0]
    if isinstance(data, np.ndarray) and (np.issubdtype(data.dtype, np.floating)
                                         or np.issubdtype(data.dtype, np.integer)):
        data = torch.from_numpy(data)
    if not isinstance(data, torch.Tensor) or not (data.is_floating_point() or _are_ids(data)):
        described = type(data).__name__ + (f" of {data.dtype}" if hasattr(data, "dtype") else "")
        raise TypeError(f"data must be a floating-point tensor or numpy array (a batch of "
                        f"inputs), or an integer one (token ids), got {described}")
    if data.dim() == 0 or len(data) < 2:
        raise ValueError(f"data must hold at least 2 examples, got shape {tuple(data.shape)}")
    return data


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the layer of interest has run."""


def _output_variance(model: nn.Module, name: str, layer: nn.Module, data: torch.Tensor
                     ) -> float:
    """Variance of ``layer``'s output (its first call; the first floating-point tensor of it,
    if it returns a tuple, list or dict) when ``model`` runs on ``data``; the forward pass
    stops right after that layer."""
    captured: list[float] = []

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        signal = _layer_signal(output, name)
        captured.append(float(signal.detach().double().var(unbiased=False)))
        raise _StopForward

    handle = layer.register_forward_hook(hook)
    try:
        _run(model, data)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        return math.nan
    return captured[0]


def _forward_order(model: nn.Module, layers: list[tuple[str, nn.Module]],
                   data: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """The layers sorted by when they first run on ``data``; layers that never run dropped."""
    first_call: dict[int, int] = {}

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        first_call.setdefault(id(module), len(first_call))

    handles = [layer.register_forward_hook(hook) for _, layer in layers]
    try:
        _run(model, data)
    finally:
        for handle in handles:
            handle.remove()
    ran = [(name, layer) for name, layer in layers if id(layer) in first_call]
    return sorted(ran, key=lambda item: first_call[id(item[1])])


def _check_lsuv_options(tol: object, max_iter: object) -> tuple[float, int]:
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}")
    return tol, max_iter


def _lsuv(model: nn.Module, layers: list[tuple[str, nn.Module]], data: torch.Tensor, *,
          tol: float, max_iter: int) -> None:
    """Rescale each layer's weight in forward order until its output variance on ``data`` is
    within ``tol`` of 1. A weight shared by several layers (the same Parameter in two modules)
    is rescaled once, at the first of them to run; the later ones are left as they come."""
    parameter = next(model.parameters(), None)
    if parameter is not None:
        data = _on_model(data, parameter)
    rescaled: set[int] = set()
    with torch.no_grad():
        for name, layer in _forward_order(model, layers, data):
            if not _first_time(layer.weight, rescaled):
                continue  # a tied weight: its first use set its scale
            variance = _output_variance(model, name, layer, data)
            for _ in range(max_iter):
                if abs(variance - 1.0) < tol:
                    break
                if not variance > 0 or not math.isfinite(variance):
                    raise ValueError(f"lsuv: layer {name!r} has output variance {variance} on "
                                     "data; it cannot be rescaled to 1")
                layer.weight.div_(math.sqrt(variance))
                variance = _output_variance(model, name, layer, data)
            if abs(variance - 1.0) >= tol:
                warnings.warn(f"lsuv: layer {name!r} still has output variance {variance:.3g} "
                              f"after max_iter={max_iter} rescales", RuntimeWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------
# Signal propagation report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignalReport:
    """Per-layer signal scales of a model on one batch, input side first (forward order).

    - ``names``: the layers (``nn.Linear`` and ``nn.Conv*``) as in ``named_modules``;
    - ``forward_variance[l]``: variance of layer ``l``'s output (its pre-activations; the first
      floating-point tensor of it if the layer returns a tuple, list or dict);
    - ``backward_variance[l]``: variance of ``dLoss/d output_l``, for an output gradient of
      i.i.d. ``N(0, 1)`` entries;
    - ``input_variance``, ``input_grad_variance``: the same for the model's input (NaN when
      the input is token ids);
    - ``outputs``, ``output_grads``: every layer's output and ``dLoss/d output`` as flat float64
      arrays (for histograms), when asked for with ``keep_values=True``; else ``None``.

    :attr:`forward_gain` and :attr:`backward_gain` say by how much to multiply each layer's
    weights so that its variance equals the previous layer's, going forward or backward.
    """

    names: tuple[str, ...]
    forward_variance: np.ndarray
    backward_variance: np.ndarray
    input_variance: float
    input_grad_variance: float
    outputs: tuple[np.ndarray, ...] | None = None
    output_grads: tuple[np.ndarray, ...] | None = None

    @property
    def forward_factors(self) -> np.ndarray:
        """``forward_variance[l] / forward_variance[l-1]``, with the input before layer 0."""
        before = np.concatenate([[self.input_variance], self.forward_variance[:-1]])
        with np.errstate(divide="ignore", invalid="ignore"):  # a dead layer gives inf/nan
            return self.forward_variance / before

    @property
    def backward_factors(self) -> np.ndarray:
        """How much layer ``l``'s weights multiply the backward variance on its way down, that is
        ``backward_variance[l-1] / backward_variance[l]`` (the input gradient below layer 0)."""
        below = np.concatenate([[self.input_grad_variance], self.backward_variance[:-1]])
        with np.errstate(divide="ignore", invalid="ignore"):
            return below / self.backward_variance

    @property
    def forward_gain(self) -> np.ndarray:
        """Equal to ``1 / sqrt(forward_factors)``; scaling layer ``l``'s weights by it makes its
        output variance equal to the previous layer's (exactly for a bias-free layer; with a
        positively homogeneous activation such as ReLU the layers above keep their ratios)."""
        with np.errstate(divide="ignore"):
            return 1.0 / np.sqrt(self.forward_factors)

    @property
    def backward_gain(self) -> np.ndarray:
        """Equal to ``1 / sqrt(backward_factors)``; the same for the backward signal."""
        with np.errstate(divide="ignore"):
            return 1.0 / np.sqrt(self.backward_factors)

    @property
    def forward_spread(self) -> float:
        """The ratio ``max / min`` of ``forward_variance``, 1 when the forward signal is flat
        (``inf`` when some layer's output is constant)."""
        return _spread(self.forward_variance)

    @property
    def backward_spread(self) -> float:
        """The ratio ``max / min`` of ``backward_variance``, 1 when the backward signal is flat
        (``inf`` when some layer receives no gradient, e.g. behind a layer of dead ReLUs)."""
        return _spread(self.backward_variance)

    def __str__(self) -> str:
        width = max(len(name) for name in self.names)
        lines = [f"{'layer':<{width}}  {'fwd var':>9}  {'bwd var':>9}  {'fwd gain':>8}  "
                 f"{'bwd gain':>8}"]
        for row in zip(self.names, self.forward_variance, self.backward_variance,
                       self.forward_gain, self.backward_gain, strict=True):
            name, fv, bv, fg, bg = row
            lines.append(f"{name:<{width}}  {fv:9.3g}  {bv:9.3g}  {fg:8.3g}  {bg:8.3g}")
        return "\n".join(lines)


def _spread(values: np.ndarray) -> float:
    if not np.all(np.isfinite(values)):
        return math.nan
    low, high = float(values.min()), float(values.max())
    return math.inf if low == 0 else high / low


def _differentiable_outputs(result: Any) -> list[torch.Tensor]:
    """The model's floating-point output tensors that the backward pass starts from."""
    tensors = _floating_tensors(result)
    if not tensors:
        raise ValueError(f"model: its output ({type(result).__name__}) holds no floating-point "
                         "tensor to back-propagate from")
    tensors = [t for t in tensors if t.requires_grad]
    if not tensors:
        raise ValueError("model: no floating-point output tensor requires grad (is the output "
                         "detached, or computed under torch.no_grad?)")
    return tensors


def signal_propagation(
    model: nn.Module, data: torch.Tensor, *, seed: int = 0, keep_values: bool = False
) -> SignalReport:
    """Measure how the forward and backward signals of ``model`` scale, layer by layer.

    Runs ``data`` (a batch of inputs) through ``model`` with forward hooks on every
    ``nn.Linear``/``nn.Conv*`` layer (the first call of each), back-propagates an output
    gradient of i.i.d. ``N(0, 1)`` entries drawn from ``seed``, and returns a
    :class:`SignalReport`. Layers that never run as modules on ``data`` are not in it (such as
    ``nn.MultiheadAttention``'s ``out_proj``, whose weight it uses directly); a model none of
    whose layers run raises ``ValueError``.

    Outputs that are not a single tensor: a layer that returns a tuple, list or dict is
    measured on its first floating-point tensor (forward variance, and the gradient with
    respect to that tensor). A model that returns one, such as ``(logits, aux)``, a dict, or
    an ``nn.LSTM``'s ``(out, (h, c))``, is back-propagated from every floating-point output
    tensor that requires grad, each with its own noise, drawn in order (the loss is
    ``sum_k <noise_k, output_k>``); integer and detached outputs are left out, so
    ``(logits,)`` or ``{"logits": logits, "ids": ids}`` give the same report as ``logits``.
    An output with no such tensor, or a measured layer with no floating-point output, raises
    ``ValueError``. Parameters, their ``.grad``, buffers and the global RNG are left
    untouched: the forward pass runs in the model's current mode (a BatchNorm layer in training
    mode normalizes with the batch's statistics, a Dropout layer drops), and the running
    statistics it updates and the random numbers it draws are put back afterwards. With
    ``keep_values=True`` the report also holds the values themselves (for histograms).

    ``data`` may hold token ids (an integer tensor) for a model that starts with an
    ``nn.Embedding``: they are passed as they are, and ``input_variance`` and
    ``input_grad_variance`` (so the first forward and backward factors) are NaN.

    >>> net = nn.Sequential(nn.Linear(100, 100, bias=False), nn.ReLU(),
    ...                     nn.Linear(100, 100, bias=False))
    >>> _ = initialize(net, "kaiming_normal", generator=torch.Generator().manual_seed(0))
    >>> report = signal_propagation(net, torch.randn(2000, 100))
    >>> bool(0.8 < report.forward_factors[1] < 1.25)   # He et al.: flat across the ReLU
    True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    data = _check_data(data)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, _WEIGHT_LAYERS)]
    if not layers:
        raise ValueError(f"model: {type(model).__name__} has no nn.Linear or nn.Conv layers")
    parameter = next(model.parameters())
    x = _on_model(data.detach(), parameter)
    if not _are_ids(x):  # token ids have no gradient: the input's statistics are then NaN
        x.requires_grad_(True)
    outputs: dict[int, Any] = {}

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        outputs.setdefault(id(module), output)

    handles = [layer.register_forward_hook(hook) for _, layer in layers]
    try:
        with torch.enable_grad(), _buffers_kept(model), _rng_kept(model):
            results = _differentiable_outputs(_run(model, x))
            ran = sorted((list(outputs).index(id(m)), name, m) for name, m in layers
                         if id(m) in outputs)
            if not ran:
                raise ValueError(
                    "model: none of its nn.Linear or nn.Conv layers ran as a module on data "
                    "(a weight used directly, as nn.MultiheadAttention uses its out_proj, is "
                    "not seen)")
            tensors = [_layer_signal(outputs[id(m)], name) for _, name, m in ran]
            generator = torch.Generator().manual_seed(seed)
            noise = [torch.randn(r.shape, generator=generator, dtype=torch.float64).to(r)
                     for r in results]
            wanted = [t for t in [x, *tensors] if t.requires_grad]
            found = iter(torch.autograd.grad(results, wanted, grad_outputs=noise,
                                             allow_unused=True))
            grads = [next(found) if t.requires_grad else None for t in [x, *tensors]]
    finally:
        for handle in handles:
            handle.remove()

    def variance(t: torch.Tensor | None) -> float:
        return math.nan if t is None else float(t.detach().double().var(unbiased=False))

    def flat(t: torch.Tensor | None) -> np.ndarray:
        return np.zeros(0) if t is None else t.detach().double().cpu().numpy().ravel()

    return SignalReport(
        names=tuple(name for _, name, _ in ran),
        forward_variance=np.array([variance(t) for t in tensors]),
        backward_variance=np.array([variance(g) for g in grads[1:]]),
        input_variance=math.nan if _are_ids(x) else variance(x),
        input_grad_variance=variance(grads[0]),
        outputs=tuple(flat(t) for t in tensors) if keep_values else None,
        output_grads=tuple(flat(g) for g in grads[1:]) if keep_values else None,
    )
