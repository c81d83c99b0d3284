"""The networks the book studies, small enough to read top to bottom.

- :class:`DeepMLP`: a stack of ``depth`` linear layers with an activation between them.
- :class:`ResidualMLP`: an input layer, ``blocks`` residual blocks ``x + alpha * F(x)`` and an
  output layer, with optional batch or layer normalization inside each branch.
- :class:`SequenceModel`: PyTorch's fused ``nn.RNN``/``nn.LSTM``/``nn.GRU`` with a linear
  read-out of the last hidden state (the adding problem, character models).
- :class:`ScalarRNN`: Pascanu, Mikolov & Bengio's one-unit recurrent net
  ``x_t = w * sigmoid(x_{t-1}) + b``, whose loss surface has the famous cliff.

>>> import torch
>>> net = DeepMLP(in_features=4, out_features=2, width=8, depth=3, activation="tanh")
>>> net(torch.zeros(5, 4)).shape
torch.Size([5, 2])
>>> [name for name, _ in net.named_layers()]
['linears.0', 'linears.1', 'linears.2']
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
    "selu": nn.SELU,
    "mish": nn.Mish,
    "linear": nn.Identity,
    "identity": nn.Identity,
}
"""Activation names accepted by :func:`make_activation` and :class:`DeepMLP`."""


def activation_key(name: str) -> str:
    """The key of :data:`ACTIVATIONS` that ``name`` means (case and spaces ignored).

    >>> activation_key(" ReLU")
    'relu'
    """
    if not isinstance(name, str):
        raise TypeError(f"activation must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in ACTIVATIONS:
        raise ValueError(
            f"activation: unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}"
        )
    return key


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name (see :data:`ACTIVATIONS`).

    >>> make_activation("tanh")
    Tanh()
    """
    return ACTIVATIONS[activation_key(name)]()


def _check_positive_int(name: str, value: object) -> int:
    """``value`` as a Python int if it is an integer >= 1 (numpy integers included)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _check_sizes(
    in_features: object, out_features: object, width: object, count: tuple[str, object],
    activation: str,
) -> tuple[int, int, int, int]:
    """The sizes of an MLP as Python ints >= 1 (``count`` is its ``(name, value)`` number of
    layers or blocks), with the activation's name checked too, before anything is built."""
    checked = tuple(_check_positive_int(name, value) for name, value in [
        ("in_features", in_features), ("out_features", out_features), ("width", width), count])
    make_activation(activation)
    return checked


class DeepMLP(nn.Module):
    """A multilayer perceptron of ``depth`` linear layers.

    ``depth`` counts the ``nn.Linear`` layers: ``depth=1`` is a single linear map,
    ``depth=3`` has two hidden layers of size ``width``. The activation sits between linear
    layers, not after the last one (the output is a logit or a regression value).

    Each activation is its own module (``activations.0``, ``activations.1``, ...), so hooks see
    every layer separately. :meth:`named_layers` lists the linear layers in order and
    :meth:`forward_with_intermediates` returns every pre-activation and activation.

    >>> import torch
    >>> net = DeepMLP(10, 3, width=32, depth=4, activation="relu")
    >>> len(net.linears), net.linears[0].weight.shape
    (4, torch.Size([32, 10]))
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        width: int,
        depth: int,
        activation: str = "relu",
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        in_features, out_features, width, depth = _check_sizes(
            in_features, out_features, width, ("depth", depth), activation)
        self.activation_name = activation.strip().lower()
        sizes = [in_features] + [width] * (depth - 1) + [out_features]
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.linears = nn.ModuleList(nn.Linear(n_in, n_out, bias=bias) for n_in, n_out in pairs)
        self.activations = nn.ModuleList(make_activation(activation) for _ in range(depth - 1))

    @property
    def depth(self) -> int:
        """The number of linear layers."""
        return len(self.linears)

    def named_layers(self) -> Iterator[tuple[str, nn.Linear]]:
        """``(name, layer)`` for each linear layer, input side first, named as in
        ``named_modules()``."""
        for index, layer in enumerate(self.linears):
            yield f"linears.{index}", layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.linears):
            x = layer(x)
            if index < len(self.activations):
                x = self.activations[index](x)
        return x

    def forward_with_intermediates(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Run the network and keep what each layer produced.

        Returns ``(output, pre_activations, activations)``: ``pre_activations[l]`` is the
        output of linear layer ``l`` (one per linear layer, the last is the output) and
        ``activations[l]`` the activation applied to it (one per hidden layer).

        >>> import torch
        >>> out, pre, act = DeepMLP(3, 1, 5, 3, "tanh").forward_with_intermediates(torch.ones(2, 3))
        >>> len(pre), len(act)
        (3, 2)
        """
        pre_activations: list[torch.Tensor] = []
        activations: list[torch.Tensor] = []
        for index, layer in enumerate(self.linears):
            x = layer(x)
            pre_activations.append(x)
            if index < len(self.activations):
                x = self.activations[index](x)
                activations.append(x)
        return x, pre_activations, activations


_NORMS: dict[str, Callable[[int], nn.Module]] = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}


class ResidualBlock(nn.Module):
    """One residual block ``x + branch_scale * F(x)``, with ``F = linear2(act(norm(linear1(x))))``.

    ``norm`` is an ``nn.BatchNorm1d``, an ``nn.LayerNorm`` or ``nn.Identity`` (no normalization);
    see :class:`ResidualMLP`, which builds these.

    >>> import torch
    >>> block = ResidualBlock(4, "relu", norm=None, branch_scale=0.5)
    >>> x = torch.randn(3, 4)
    >>> bool(torch.allclose(block(x), x + 0.5 * block.branch(x)))
    True
    """

    def __init__(
        self, width: int, activation: str = "relu", *, norm: str | None = None,
        branch_scale: float = 1.0, bias: bool = True,
    ) -> None:
        super().__init__()
        self.linear1 = nn.Linear(width, width, bias=bias)
        self.norm = nn.Identity() if norm is None else _NORMS[norm](width)
        self.activation = make_activation(activation)
        self.linear2 = nn.Linear(width, width, bias=bias)
        self.branch_scale = float(branch_scale)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch ``F(x)``, before ``branch_scale``."""
        return self.linear2(self.activation(self.norm(self.linear1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch_scale * self.branch(x)


class ResidualMLP(nn.Module):
    """A residual multilayer perceptron: input layer, ``blocks`` residual blocks, output layer.

    ``input`` maps ``in_features`` to ``width``; block ``l`` computes
    ``x_{l+1} = x_l + branch_scale * F_l(x_l)`` with the branch
    ``F_l = linear2(activation(norm(linear1(x))))``, two ``width x width`` linear layers with the
    activation between them (and nothing after the addition: the skip path is the identity,
    as in He, Zhang, Ren & Sun's "identity mappings" ResNets); ``output`` maps ``width`` to
    ``out_features``. The network has ``blocks * 2 + 2`` linear layers.

    :meth:`named_layers` lists the linear layers in order (``input``, ``blocks.0.linear1``,
    ``blocks.0.linear2``, ..., ``output``), named as in ``named_modules()``, so that they match
    :class:`~gradtext.monitor.GradientMonitor`'s layer names; :meth:`forward_with_intermediates`
    returns the residual stream after the input layer and after every block.

    Parameters
    ----------
    in_features, out_features, width
        Sizes of the input, the output and the residual stream.
    blocks
        The number of residual blocks (``>= 1``).
    activation
        A name from :data:`ACTIVATIONS`, used inside each branch.
    norm
        ``None`` (default), ``"batch"`` (``nn.BatchNorm1d``) or ``"layer"`` (``nn.LayerNorm``),
        placed between ``linear1`` and the activation, as batch normalization sits between a
        convolution and its ReLU in the original ResNets; the residual stream itself is never
        normalized.
    branch_scale
        The factor ``alpha`` on every branch (default 1.0); ``1 / sqrt(blocks)`` keeps the
        forward variance of a ReLU network bounded at initialization.
    zero_init
        If true, ``linear2`` of every block starts with zero weight and bias, so that each
        block is exactly the identity at initialization (the zero-gamma of Goyal et al., 2017;
        Fixup; SkipInit).
    bias
        Whether the linear layers have biases.

    Examples
    --------
    >>> import torch
    >>> net = ResidualMLP(10, 3, width=16, blocks=4, norm="layer", zero_init=True)
    >>> net(torch.randn(5, 10)).shape
    torch.Size([5, 3])
    >>> [name for name, _ in net.named_layers()][:3]
    ['input', 'blocks.0.linear1', 'blocks.0.linear2']
    >>> _, streams = net.forward_with_intermediates(torch.randn(5, 10))
    >>> bool(torch.equal(streams[0], streams[-1]))  # zero_init: every block is the identity
    True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        width: int,
        blocks: int,
        activation: str = "relu",
        *,
        norm: str | None = None,
        branch_scale: float = 1.0,
        zero_init: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        in_features, out_features, width, blocks = _check_sizes(
            in_features, out_features, width, ("blocks", blocks), activation)
        if norm is not None and not isinstance(norm, str):
            raise TypeError(f"norm must be None, 'batch' or 'layer', got {type(norm).__name__}")
        if norm is not None and norm not in _NORMS:
            raise ValueError(f"norm must be None, 'batch' or 'layer', got {norm!r}")
        if isinstance(branch_scale, bool) or not isinstance(branch_scale, numbers.Real):
            raise TypeError(f"branch_scale must be a number, got {type(branch_scale).__name__}")
        if not math.isfinite(branch_scale):
            raise ValueError(f"branch_scale must be finite, got {branch_scale}")
        if not isinstance(zero_init, bool):
            raise TypeError(f"zero_init must be a bool, got {type(zero_init).__name__}")
        self.activation_name = activation.strip().lower()
        self.norm_name = norm
        self.branch_scale = float(branch_scale)
        self.zero_init = zero_init
        self.input = nn.Linear(in_features, width, bias=bias)
        self.blocks = nn.ModuleList(
            ResidualBlock(width, activation, norm=norm, branch_scale=branch_scale, bias=bias)
            for _ in range(blocks)
        )
        self.output = nn.Linear(width, out_features, bias=bias)
        if zero_init:
            with torch.no_grad():
                for block in self.blocks:
                    block.linear2.weight.zero_()
                    if block.linear2.bias is not None:
                        block.linear2.bias.zero_()

    @property
    def depth(self) -> int:
        """The number of linear layers, ``2 * blocks + 2``."""
        return 2 * len(self.blocks) + 2

    def named_layers(self) -> Iterator[tuple[str, nn.Linear]]:
        """``(name, layer)`` for each linear layer, input side first, named as in
        ``named_modules()``."""
        yield "input", self.input
        for index, block in enumerate(self.blocks):
            yield f"blocks.{index}.linear1", block.linear1
            yield f"blocks.{index}.linear2", block.linear2
        yield "output", self.output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input(x)
        for block in self.blocks:
            x = block(x)
        return self.output(x)

    def forward_with_intermediates(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the network and keep the residual stream.

        Returns ``(output, streams)``: ``streams[0]`` is the input layer's output and
        ``streams[l]`` the stream after block ``l`` (``blocks + 1`` tensors in all).

        >>> import torch
        >>> out, streams = ResidualMLP(3, 1, 5, 2).forward_with_intermediates(torch.ones(2, 3))
        >>> len(streams), tuple(streams[-1].shape)
        (3, (2, 5))
        """
        x = self.input(x)
        streams = [x]
        for block in self.blocks:
            x = block(x)
            streams.append(x)
        return self.output(x), streams


_RECURRENT = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class SequenceModel(nn.Module):
    """A recurrent network (fused ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU``) with a linear read-out.

    Inputs are batch-first, ``(batch, time, input_size)``. With ``readout="last"`` the output
    is ``(batch, output_size)`` from the final hidden state (the adding problem); with
    ``readout="all"`` it is ``(batch, time, output_size)`` (a character model).
    ``nonlinearity`` applies to ``cell="rnn"`` only (``"tanh"`` or ``"relu"``).

    >>> import torch
    >>> model = SequenceModel("lstm", input_size=2, hidden_size=8, output_size=1)
    >>> model(torch.zeros(4, 10, 2)).shape
    torch.Size([4, 1])
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        readout: str = "last",
    ) -> None:
        super().__init__()
        if not isinstance(cell, str) or cell.lower() not in _RECURRENT:
            raise ValueError(f"cell must be one of {sorted(_RECURRENT)}, got {cell!r}")
        input_size = _check_positive_int("input_size", input_size)
        hidden_size = _check_positive_int("hidden_size", hidden_size)
        output_size = _check_positive_int("output_size", output_size)
        num_layers = _check_positive_int("num_layers", num_layers)
        if readout not in {"last", "all"}:
            raise ValueError(f"readout must be 'last' or 'all', got {readout!r}")
        self.cell = cell.lower()
        self.readout = readout
        kwargs: dict[str, object] = {"batch_first": True, "num_layers": num_layers}
        if self.cell == "rnn":
            if nonlinearity not in {"tanh", "relu"}:
                raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
            kwargs["nonlinearity"] = nonlinearity
        elif nonlinearity != "tanh":
            raise ValueError(
                f"nonlinearity applies to cell='rnn' only; {self.cell} cells have fixed gates, "
                f"got nonlinearity={nonlinearity!r}"
            )
        self.rnn = _RECURRENT[self.cell](input_size, hidden_size, **kwargs)
        self.head = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"x must be (batch, time, features), got shape {tuple(x.shape)}")
        if x.shape[1] == 0:
            raise ValueError("x must have at least one time step, got time = 0")
        if x.shape[2] != self.rnn.input_size:
            raise ValueError(
                f"x must have input_size={self.rnn.input_size} features (last dimension), "
                f"got shape {tuple(x.shape)}"
            )
        states, _ = self.rnn(x)
        if self.readout == "last":
            return self.head(states[:, -1])
        return self.head(states)


class ScalarRNN(nn.Module):
    """The one-unit recurrent net of Pascanu, Mikolov & Bengio (2013), section 2.

    ``x_t = w * sigmoid(x_{t-1}) + b`` for ``t = 1..steps``, starting from ``x0``. Its two
    parameters are ``w`` and ``b``; ``forward`` returns ``x_T``. Float64 by default,
    because the loss surface is steep enough for float32 to matter.

    >>> import torch
    >>> net = ScalarRNN(w=5.0, b=-2.5, steps=50)
    >>> x_T = net(torch.tensor(0.5, dtype=torch.float64))
    >>> x_T.shape
    torch.Size([])
    """

    def __init__(
        self, w: float = 1.0, b: float = 0.0, steps: int = 50, dtype: torch.dtype = torch.float64
    ) -> None:
        super().__init__()
        self.steps = _check_positive_int("steps", steps)
        self.w = nn.Parameter(torch.tensor(float(w), dtype=dtype))
        self.b = nn.Parameter(torch.tensor(float(b), dtype=dtype))

    def _start(self, x0: torch.Tensor | float) -> torch.Tensor:
        """``x0`` (a tensor, number or numpy array) with the parameters' dtype and device."""
        return torch.as_tensor(x0, dtype=self.w.dtype, device=self.w.device)

    def forward(self, x0: torch.Tensor | float) -> torch.Tensor:
        x = self._start(x0)
        for _ in range(self.steps):
            x = self.w * torch.sigmoid(x) + self.b
        return x

    def trajectory(self, x0: torch.Tensor | float) -> torch.Tensor:
        """All states ``x_0, x_1, ..., x_T`` stacked along a new first dimension.

        >>> ScalarRNN(w=0.0, b=1.0, steps=2).trajectory(0.0).tolist()
        [0.0, 1.0, 1.0]
        """
        x = self._start(x0)
        states = [x]
        for _ in range(self.steps):
            x = self.w * torch.sigmoid(x) + self.b
            states.append(x)
        return torch.stack(states)
