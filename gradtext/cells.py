"""Gated recurrent cells written out gate by gate, for reading.

:class:`LSTMCell` and :class:`GRUCell` compute exactly what ``torch.nn.LSTMCell`` and
``torch.nn.GRUCell`` compute, with parameters of the same names and shapes (so a state dict
loads either way), but every gate is a line of Python you can read and inspect:

- ``cell(x, state)`` takes one time step, like PyTorch's cells;
- ``cell.gates(x, state)`` returns every gate of that step (:class:`LSTMGates`,
  :class:`GRUGates`);
- :func:`unroll` runs a cell over a whole batch-first sequence and keeps every hidden state
  and gate (:class:`Unrolled`), differentiably.

They are slower than PyTorch's fused kernels: use them to look inside, and
:class:`gradtext.models.SequenceModel` to train.

>>> import torch
>>> cell = LSTMCell(input_size=3, hidden_size=5, forget_bias=1.0)
>>> run = unroll(cell, torch.zeros(2, 7, 3))
>>> run.hidden.shape, sorted(run.gates)
(torch.Size([2, 7, 5]), ['candidate', 'forget', 'input', 'output'])
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch
from torch import nn

from gradtext.models import _check_positive_int


@dataclass(frozen=True, eq=False)
class LSTMGates:
    """One LSTM step, gate by gate; every field is ``(batch, hidden_size)``.

    ``input``, ``forget`` and ``output`` are the sigmoid gates ``i``, ``f``, ``o`` (in (0, 1)),
    ``candidate`` is ``g = tanh(...)`` (in (-1, 1)), and ``cell`` and ``hidden`` are the new
    state ``c'`` and ``h'``.

    >>> import torch
    >>> step = LSTMCell(2, 3).gates(torch.zeros(4, 2))
    >>> step.forget.shape, bool(((step.forget > 0) & (step.forget < 1)).all())
    (torch.Size([4, 3]), True)
    """

    input: torch.Tensor
    forget: torch.Tensor
    candidate: torch.Tensor
    output: torch.Tensor
    cell: torch.Tensor
    hidden: torch.Tensor


@dataclass(frozen=True, eq=False)
class GRUGates:
    """One GRU step, gate by gate; every field is ``(batch, hidden_size)``.

    ``reset`` and ``update`` are the sigmoid gates ``r`` and ``z``, ``candidate`` is
    ``n = tanh(...)``, and ``hidden`` is the new state ``h' = (1 - z) * n + z * h``.

    >>> import torch
    >>> step = GRUCell(2, 3).gates(torch.zeros(4, 2))
    >>> torch.allclose(step.hidden, (1 - step.update) * step.candidate)  # h = 0
    True
    """

    reset: torch.Tensor
    update: torch.Tensor
    candidate: torch.Tensor
    hidden: torch.Tensor


_Cell = TypeVar("_Cell", bound="_GatedCell")


class _GatedCell(nn.Module):
    """What the two cells share: PyTorch's parameter layout and init, and input checks."""

    gate_names: ClassVar[tuple[str, ...]]
    _num_chunks: ClassVar[int]  # blocks of hidden_size rows stacked in weight_ih / weight_hh

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = _check_positive_int("input_size", input_size)
        self.hidden_size = _check_positive_int("hidden_size", hidden_size)
        rows = self._num_chunks * self.hidden_size
        # Same names, shapes and registration order as torch.nn.LSTMCell / GRUCell, so the
        # same seed gives the same numbers and state dicts load either way.
        self.weight_ih = nn.Parameter(torch.empty(rows, self.input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, self.hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(rows))
        self.bias_hh = nn.Parameter(torch.empty(rows))

    def reset_parameters(self) -> None:
        """PyTorch's initialization: every parameter uniform in ``(-1/sqrt(H), 1/sqrt(H))``."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.uniform_(-bound, bound)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"

    def _check_x(self, x: object) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(
                f"x must be (batch, input_size={self.input_size}), got shape {tuple(x.shape)}"
            )
        if x.dtype != self.weight_ih.dtype:
            raise ValueError(
                f"x has dtype {x.dtype} but the cell's parameters are {self.weight_ih.dtype}; "
                "convert one of them (e.g. cell.double())"
            )
        if x.device != self.weight_ih.device:
            raise ValueError(
                f"x is on {x.device} but the cell's parameters are on {self.weight_ih.device}; "
                "move one of them (e.g. x.to(cell.weight_ih.device))"
            )
        return x

    def _check_hidden(self, name: str, value: object, x: torch.Tensor) -> torch.Tensor:
        """``value`` if it is a valid ``(batch, hidden_size)`` state for input ``x``; zeros
        if it is None."""
        if value is None:
            return x.new_zeros(x.shape[0], self.hidden_size)
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor or None, got {type(value).__name__}")
        expected = (x.shape[0], self.hidden_size)
        if tuple(value.shape) != expected:
            raise ValueError(
                f"{name} must be (batch, hidden_size) = {expected}, got shape {tuple(value.shape)}"
            )
        if value.dtype != x.dtype:
            raise ValueError(f"{name} has dtype {value.dtype} but x has {x.dtype}")
        if value.device != x.device:
            raise ValueError(f"{name} is on {value.device} but x is on {x.device}")
        return value

    @classmethod
    def _copy_from(
        cls: type[_Cell], module: nn.Module, cell_type: type, layer_type: type
    ) -> _Cell:
        """A cell with ``module``'s weights (same dtype and device); ``module`` is a
        ``cell_type`` or a one-layer, one-direction ``layer_type`` with biases."""
        if isinstance(module, cell_type):
            suffix = ""
        elif isinstance(module, layer_type):
            suffix = "_l0"
            if module.num_layers != 1:
                raise ValueError(f"module must have num_layers=1, got {module.num_layers}")
            if module.bidirectional:
                raise ValueError("module must be unidirectional, got bidirectional=True")
            if getattr(module, "proj_size", 0) != 0:
                raise ValueError(f"module must have proj_size=0, got {module.proj_size}")
        else:
            raise TypeError(
                f"module must be a torch.nn.{cell_type.__name__} or torch.nn.{layer_type.__name__}"
                f", got {type(module).__name__}"
            )
        if not module.bias:
            raise ValueError("module must have bias=True (these cells always have biases)")
        weight = getattr(module, "weight_ih" + suffix)
        with torch.random.fork_rng(devices=[]):  # building the copy leaves the global RNG alone
            cell = cls(module.input_size, module.hidden_size)
        cell = cell.to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            for name, parameter in cell.named_parameters():
                parameter.copy_(getattr(module, name + suffix))
        return cell


class LSTMCell(_GatedCell):
    """The long short-term memory cell, exactly as ``torch.nn.LSTMCell`` computes it.

    For an input ``x`` of shape ``(batch, input_size)`` and a state ``(h, c)``, each
    ``(batch, hidden_size)``::

        i  = sigmoid(W_ii x + b_ii + W_hi h + b_hi)    input gate
        f  = sigmoid(W_if x + b_if + W_hf h + b_hf)    forget gate
        g  = tanh(W_ig x + b_ig + W_hg h + b_hg)       candidate
        o  = sigmoid(W_io x + b_io + W_ho h + b_ho)    output gate
        c' = f * c + i * g
        h' = o * tanh(c')

    The four blocks are stacked in PyTorch's order ``i, f, g, o``: ``weight_ih`` is
    ``(4 * hidden_size, input_size)`` (``W_ii`` is its first ``hidden_size`` rows),
    ``weight_hh`` is ``(4 * hidden_size, hidden_size)``, ``bias_ih`` and ``bias_hh`` are
    ``(4 * hidden_size,)``. All start uniform in ``(-1/sqrt(H), 1/sqrt(H))`` like PyTorch's,
    so the same seed gives the same parameters as ``torch.nn.LSTMCell``.

    The cell state ``c`` is updated additively: along it, the gradient is multiplied by ``f``
    at each step rather than by a weight matrix, which is why an LSTM whose forget gates sit
    near 1 carries gradients over many steps. ``forget_bias`` is added to the forget block
    of ``bias_ih`` after initialization to start it there: Gers, Schmidhuber & Cummins (2000)
    proposed a positive forget bias, and Jozefowicz, Zaremba & Sutskever (2015) found 1 to work
    well. The default 0 is PyTorch's cell.

    ``cell(x)`` or ``cell(x, (h, c))`` returns ``(h', c')``; a missing state is zeros.

    >>> import torch
    >>> ours = LSTMCell(3, 4)
    >>> theirs = torch.nn.LSTMCell(3, 4)
    >>> theirs.load_state_dict(ours.state_dict())
    <All keys matched successfully>
    >>> x = torch.randn(2, 3)
    >>> h, c = ours(x)
    >>> torch.allclose(h, theirs(x)[0])
    True
    """

    #: The gates :func:`unroll` keeps, in PyTorch's order (``Unrolled.gates`` keys).
    gate_names: ClassVar[tuple[str, ...]] = ("input", "forget", "candidate", "output")
    _num_chunks: ClassVar[int] = 4

    def __init__(self, input_size: int, hidden_size: int, *, forget_bias: float = 0.0) -> None:
        super().__init__(input_size, hidden_size)
        if isinstance(forget_bias, bool) or not isinstance(forget_bias, numbers.Real):
            raise TypeError(f"forget_bias must be a float, got {type(forget_bias).__name__}")
        if not math.isfinite(forget_bias):
            raise ValueError(f"forget_bias must be finite, got {forget_bias}")
        self.forget_bias = float(forget_bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's initialization, then ``forget_bias`` added to the forget block of
        ``bias_ih``.

        >>> cell = LSTMCell(1, 2, forget_bias=5.0)
        >>> bool((cell.bias_ih[2:4] > 4).all())
        True
        """
        super().reset_parameters()
        H = self.hidden_size
        with torch.no_grad():
            self.bias_ih[H : 2 * H] += self.forget_bias

    def _step(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> LSTMGates:
        """The equations of the class docstring, on already checked tensors."""
        from_x = x @ self.weight_ih.T + self.bias_ih  # (batch, 4H): W_i* x + b_i*, all gates
        from_h = h @ self.weight_hh.T + self.bias_hh  # (batch, 4H): W_h* h + b_h*
        x_i, x_f, x_g, x_o = from_x.chunk(4, dim=1)
        h_i, h_f, h_g, h_o = from_h.chunk(4, dim=1)
        i = torch.sigmoid(x_i + h_i)
        f = torch.sigmoid(x_f + h_f)
        g = torch.tanh(x_g + h_g)
        o = torch.sigmoid(x_o + h_o)
        c_new = f * c + i * g
        h_new = o * torch.tanh(c_new)
        return LSTMGates(input=i, forget=f, candidate=g, output=o, cell=c_new, hidden=h_new)

    def _check_state(
        self, state: object, x: torch.Tensor, name: str = "state"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            return self._check_hidden(name, None, x), self._check_hidden(name, None, x)
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name} must be None or a pair (h, c) of tensors")
        h, c = state
        h = self._check_hidden(f"{name}[0] (h)", h, x)
        c = self._check_hidden(f"{name}[1] (c)", c, x)
        return h, c

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        step = self._step(self._check_x(x), *self._check_state(state, x))
        return step.hidden, step.cell

    def gates(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> LSTMGates:
        """One step like ``forward``, returning every gate (:class:`LSTMGates`).

        >>> import torch
        >>> cell = LSTMCell(2, 3, forget_bias=100.0)
        >>> step = cell.gates(torch.zeros(1, 2))
        >>> torch.allclose(step.forget, torch.ones(1, 3))  # a forget gate wide open
        True
        """
        return self._step(self._check_x(x), *self._check_state(state, x))

    @classmethod
    def from_torch(cls, module: nn.Module) -> LSTMCell:
        """An :class:`LSTMCell` with the weights of a ``torch.nn.LSTMCell``, or of a
        one-layer, unidirectional ``torch.nn.LSTM`` (``bias=True``, ``proj_size=0``), on the
        same device and with the same dtype. Raises TypeError for any other module and
        ValueError for an LSTM of another shape. The copied weights already hold whatever forget
        bias the source has; the copy's ``forget_bias`` is 0, so ``reset_parameters()`` on it
        gives a fresh PyTorch-default cell.

        >>> import torch
        >>> lstm = torch.nn.LSTM(3, 4, batch_first=True).double()
        >>> cell = LSTMCell.from_torch(lstm)
        >>> x = torch.randn(2, 5, 3, dtype=torch.float64)
        >>> torch.allclose(unroll(cell, x).hidden, lstm(x)[0])
        True
        """
        return cls._copy_from(module, nn.LSTMCell, nn.LSTM)


class GRUCell(_GatedCell):
    """The gated recurrent unit of Cho et al. (2014), exactly as ``torch.nn.GRUCell``
    computes it.

    For an input ``x`` of shape ``(batch, input_size)`` and a state ``h`` of shape
    ``(batch, hidden_size)``::

        r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)        reset gate
        z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)        update gate
        n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))     candidate
        h' = (1 - z) * n + z * h

    The reset gate multiplies ``W_hn h + b_hn``, bias included (PyTorch's and cuDNN's
    variant). The blocks are stacked in PyTorch's order ``r, z, n``: ``weight_ih`` is
    ``(3 * hidden_size, input_size)``, ``weight_hh`` is ``(3 * hidden_size, hidden_size)``,
    ``bias_ih`` and ``bias_hh`` are ``(3 * hidden_size,)``, all initialized like PyTorch's.

    ``h'`` is a convex combination of the candidate and the old state: where ``z`` is near 1
    the state, and its gradient, pass through the step almost unchanged.

    ``cell(x)`` or ``cell(x, h)`` returns ``h'``; a missing state is zeros.

    >>> import torch
    >>> cell = GRUCell(3, 4)
    >>> theirs = torch.nn.GRUCell(3, 4)
    >>> theirs.load_state_dict(cell.state_dict())
    <All keys matched successfully>
    >>> x = torch.randn(2, 3)
    >>> torch.allclose(cell(x), theirs(x))
    True
    """

    #: The gates :func:`unroll` keeps, in PyTorch's order (``Unrolled.gates`` keys).
    gate_names: ClassVar[tuple[str, ...]] = ("reset", "update", "candidate")
    _num_chunks: ClassVar[int] = 3

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.reset_parameters()

    def _step(self, x: torch.Tensor, h: torch.Tensor) -> GRUGates:
        """The equations of the class docstring, on already checked tensors."""
        from_x = x @ self.weight_ih.T + self.bias_ih  # (batch, 3H): W_i* x + b_i*, all gates
        from_h = h @ self.weight_hh.T + self.bias_hh  # (batch, 3H): W_h* h + b_h*
        x_r, x_z, x_n = from_x.chunk(3, dim=1)
        h_r, h_z, h_n = from_h.chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        h_new = (1 - z) * n + z * h
        return GRUGates(reset=r, update=z, candidate=n, hidden=h_new)

    def _check_state(self, h: object, x: torch.Tensor, name: str = "h") -> torch.Tensor:
        return self._check_hidden(name, h, x)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        return self._step(self._check_x(x), self._check_state(h, x)).hidden

    def gates(self, x: torch.Tensor, h: torch.Tensor | None = None) -> GRUGates:
        """One step like ``forward``, returning every gate (:class:`GRUGates`).

        >>> import torch
        >>> step = GRUCell(2, 3).gates(torch.zeros(1, 2), torch.ones(1, 3))
        >>> step.hidden.shape
        torch.Size([1, 3])
        """
        return self._step(self._check_x(x), self._check_state(h, x))

    @classmethod
    def from_torch(cls, module: nn.Module) -> GRUCell:
        """A :class:`GRUCell` with the weights of a ``torch.nn.GRUCell``, or of a one-layer,
        unidirectional ``torch.nn.GRU`` (``bias=True``), on the same device and with the same
        dtype. Raises TypeError for any other module and ValueError for a GRU of another
        shape.

        >>> import torch
        >>> gru = torch.nn.GRUCell(3, 4)
        >>> cell = GRUCell.from_torch(gru)
        >>> x = torch.randn(2, 3)
        >>> torch.allclose(cell(x), gru(x))
        True
        """
        return cls._copy_from(module, nn.GRUCell, nn.GRU)


@dataclass(frozen=True, eq=False)
class Unrolled:
    """A cell run over a sequence by :func:`unroll`; time is the second dimension.

    - ``hidden``: ``(batch, time, hidden_size)``, the hidden state after each step (the last
      one is ``hidden[:, -1]``);
    - ``cell``: ``(batch, time, hidden_size)``, the LSTM cell state after each step; ``None``
      for a GRU;
    - ``gates``: each gate's name (``cell.gate_names``) to its ``(batch, time, hidden_size)``
      values.

    These are stacked copies of the per-step tensors: a loss computed from them
    backpropagates through the whole recurrence, but the gradient *with respect to*
    ``hidden[:, t]`` only counts the loss's direct use of it, not its effect on later steps.
    To see how much gradient reaches step ``t``, differentiate with respect to the inputs.

    >>> import torch
    >>> run = unroll(GRUCell(2, 3), torch.zeros(4, 6, 2))
    >>> run.hidden.shape, run.cell, sorted(run.gates)
    (torch.Size([4, 6, 3]), None, ['candidate', 'reset', 'update'])
    """

    hidden: torch.Tensor
    cell: torch.Tensor | None
    gates: dict[str, torch.Tensor]


def unroll(
    cell: LSTMCell | GRUCell,
    inputs: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor] | torch.Tensor | None = None,
) -> Unrolled:
    """Run ``cell`` over ``inputs`` of shape ``(batch, time, input_size)``, one step at a time.

    Batch-first like :class:`gradtext.models.SequenceModel`. ``state`` is the initial state:
    ``(h, c)`` for an :class:`LSTMCell`, ``h`` for a :class:`GRUCell`, zeros when ``None``. The
    result keeps every step's hidden state, cell state and gates (:class:`Unrolled`) and is
    differentiable with respect to the inputs, the initial state and the cell's parameters.
    With the same weights it equals ``torch.nn.LSTM`` / ``torch.nn.GRU`` with
    ``batch_first=True``.

    >>> import torch
    >>> cell = LSTMCell(2, 3)
    >>> x = torch.randn(4, 10, 2, requires_grad=True)
    >>> run = unroll(cell, x)
    >>> run.hidden[:, -1].sum().backward()
    >>> x.grad.shape
    torch.Size([4, 10, 2])
    """
    if not isinstance(cell, (LSTMCell, GRUCell)):
        raise TypeError(
            f"cell must be a gradtext.cells.LSTMCell or GRUCell, got {type(cell).__name__}"
        )
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.dim() != 3:
        raise ValueError(
            f"inputs must be (batch, time, input_size), got shape {tuple(inputs.shape)}"
        )
    if not inputs.is_floating_point():
        raise ValueError(f"inputs must be floating point, got dtype {inputs.dtype}")
    if inputs.shape[2] != cell.input_size:
        raise ValueError(
            f"inputs must have input_size={cell.input_size} features (last dimension), "
            f"got shape {tuple(inputs.shape)}"
        )
    if inputs.dtype != cell.weight_ih.dtype:
        raise ValueError(
            f"inputs have dtype {inputs.dtype} but the cell's parameters are "
            f"{cell.weight_ih.dtype}; convert one of them (e.g. cell.double())"
        )
    if inputs.device != cell.weight_ih.device:
        raise ValueError(
            f"inputs are on {inputs.device} but the cell's parameters are on "
            f"{cell.weight_ih.device}; move one of them"
        )
    if inputs.shape[1] == 0:
        raise ValueError("inputs must have at least one time step, got time = 0")
    state = cell._check_state(state, inputs[:, 0], "state")
    steps = []
    for t in range(inputs.shape[1]):
        if isinstance(cell, LSTMCell):
            step = cell._step(inputs[:, t], *state)
            state = (step.hidden, step.cell)
        else:
            step = cell._step(inputs[:, t], state)
            state = step.hidden
        steps.append(step)

    def stacked(name: str) -> torch.Tensor:
        return torch.stack([getattr(step, name) for step in steps], dim=1)

    return Unrolled(
        hidden=stacked("hidden"),
        cell=stacked("cell") if isinstance(cell, LSTMCell) else None,
        gates={name: stacked(name) for name in cell.gate_names},
    )
