"""Recurrent nets: products of per-step Jacobians, and Pascanu et al.'s conditions."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gradtext.models import SequenceModel
from gradtext.theory._checks import _check_tensor
from gradtext.theory.activations import derivative_bound


def _single_layer_rnn(model: nn.Module) -> nn.RNN:
    rnn = model.rnn if isinstance(model, SequenceModel) else model
    if not isinstance(rnn, nn.RNN):  # nn.LSTM and nn.GRU are not subclasses of nn.RNN
        raise TypeError(
            "model must be an nn.RNN or a SequenceModel with cell='rnn', "
            f"got {type(model).__name__}"
            + (f" with cell={model.cell!r}" if isinstance(model, SequenceModel) else "")
            + "; for other cells use cell_jacobian_norms"
        )
    if rnn.num_layers != 1 or rnn.bidirectional:
        raise ValueError(
            "model: only a single-layer, unidirectional nn.RNN is supported "
            f"(num_layers={rnn.num_layers}, bidirectional={rnn.bidirectional})"
        )
    return rnn


def _sequences(inputs: torch.Tensor, input_size: int, batch_first: bool) -> torch.Tensor:
    """``inputs`` as ``(batch, time, input_size)`` float64."""
    inputs = _check_tensor("inputs", inputs, dims=(2, 3))
    if inputs.dim() == 3 and not batch_first:
        inputs = inputs.transpose(0, 1)
    batch = inputs if inputs.dim() == 3 else inputs.unsqueeze(0)
    if batch.shape[-1] != input_size or batch.shape[1] < 1:
        raise ValueError(
            f"inputs must be (time, {input_size}) or (batch, time, {input_size}) with time >= 1, "
            f"got shape {tuple(inputs.shape)}"
        )
    _check_not_empty(batch)
    return batch.detach().to(device="cpu", dtype=torch.float64)


def _check_not_empty(batch: torch.Tensor) -> None:
    if batch.shape[0] < 1:
        raise ValueError(f"inputs must hold at least one sequence, got a batch of {batch.shape[0]}")


def _jacobian_product_norms(step_jacobians: list[torch.Tensor]) -> np.ndarray:
    """Given per-step Jacobians ``J_t = dh_t/dh_{t-1}`` for ``t = 1..T`` (each ``(batch, H, H)``),
    return ``||J_T J_{T-1} ... J_{T-k+1}||_2`` for ``k = 0..T`` as ``(batch, T + 1)``."""
    batch, hidden = step_jacobians[0].shape[0], step_jacobians[0].shape[-1]
    product = torch.eye(hidden, dtype=torch.float64).expand(batch, hidden, hidden)
    norms = [torch.linalg.matrix_norm(product, ord=2)]
    for jacobian in reversed(step_jacobians):  # dh_T/dh_{T-k-1} = dh_T/dh_{T-k} @ J_{T-k}
        product = product @ jacobian
        norms.append(torch.linalg.matrix_norm(product, ord=2))
    return torch.stack(norms, dim=1).numpy()


def rnn_jacobian_norms(
    model: nn.Module, inputs: torch.Tensor, *, h0: torch.Tensor | None = None
) -> np.ndarray:
    """Spectral norms ``||dh_T/dh_{T-k}||_2`` for ``k = 0, 1, ..., T`` of a tanh/ReLU ``nn.RNN``.

    ``model`` is a single-layer ``nn.RNN`` or a :class:`~gradtext.models.SequenceModel` with
    ``cell="rnn"``. ``inputs`` is one sequence ``(T, input_size)`` or a batch
    ``(batch, T, input_size)`` (batch-first unless the ``nn.RNN`` says otherwise); ``h0`` the
    initial state (zeros by default; ``(hidden,)`` or ``(batch, hidden)``).

    Returns ``norms`` with ``norms[k] = ||dh_T/dh_{T-k}||_2`` (largest singular value), so
    ``norms[0] = 1`` (the identity) and ``norms[T]`` is the sensitivity of the last state to the
    initial one. Shape ``(T + 1,)`` for one sequence, ``(batch, T + 1)`` for a batch.

    The recurrence is ``h_t = phi(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, so each step's
    Jacobian is ``dh_t/dh_{t-1} = diag(phi'(a_t)) W_hh``: the same matrix every step, times the
    activation's slope. The product of ``k`` of them shrinks or grows roughly geometrically in
    ``k`` (Bengio et al. 1994), and ``||dh_T/dh_{T-k}|| <= (gamma * sigma_max(W_hh))^k``
    (Pascanu et al. 2013). Computed in float64 on the CPU from a copy of the model's weights, so
    the model may be on any device and in any dtype.

    >>> _ = torch.manual_seed(0)
    >>> rnn = torch.nn.RNN(2, 16, batch_first=True)
    >>> norms = rnn_jacobian_norms(rnn, torch.randn(30, 2))
    >>> norms.shape, float(norms[0])
    ((31,), 1.0)
    >>> bool(norms[30] < norms[1])   # the signal from 30 steps back has faded
    True
    """
    rnn = _single_layer_rnn(model)
    batch = _sequences(inputs, rnn.input_size, rnn.batch_first)
    def weight(tensor: torch.Tensor) -> torch.Tensor:  # float64 on the CPU, whatever the model
        return tensor.detach().to(device="cpu", dtype=torch.float64)

    w_ih, w_hh = weight(rnn.weight_ih_l0), weight(rnn.weight_hh_l0)
    bias = torch.zeros(rnn.hidden_size, dtype=torch.float64)
    if rnn.bias:
        bias = weight(rnn.bias_ih_l0) + weight(rnn.bias_hh_l0)
    h = _initial_state(h0, batch.shape[0], rnn.hidden_size)
    jacobians = []
    for t in range(batch.shape[1]):
        a = batch[:, t] @ w_ih.T + h @ w_hh.T + bias
        if rnn.nonlinearity == "tanh":
            h = torch.tanh(a)
            slope = 1 - h**2
        else:
            h = torch.relu(a)
            slope = (a > 0).double()
        jacobians.append(slope.unsqueeze(-1) * w_hh)  # diag(slope) @ W_hh, batched
    norms = _jacobian_product_norms(jacobians)
    return norms[0] if inputs.dim() == 2 else norms


def cell_jacobian_norms(
    cell: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    h0: torch.Tensor,
) -> np.ndarray:
    """``||dh_T/dh_{T-k}||_2`` for ``k = 0..T`` of any recurrent cell ``h_t = cell(x_t, h_{t-1})``.

    ``cell`` maps a batch of inputs ``(batch, input_size)`` and states ``(batch, hidden)`` to new
    states, e.g. ``nn.RNNCell`` or ``nn.GRUCell`` (for an LSTM, wrap it so that the state is
    ``h`` and ``c`` concatenated). ``inputs``: ``(T, input_size)`` or ``(batch, T, input_size)``;
    ``h0``: ``(hidden,)`` or ``(batch, hidden)``. Per-step Jacobians come from
    ``torch.func.jacrev``, so this is exact for any cell; it matches :func:`rnn_jacobian_norms`
    on an ``nn.RNN``. Computed in the cell's own dtype, on its device (``inputs`` and ``h0`` are
    moved there); results are float64 NumPy arrays.

    >>> _ = torch.manual_seed(0)
    >>> cell = torch.nn.GRUCell(2, 8)
    >>> cell_jacobian_norms(cell, torch.randn(10, 2), torch.zeros(8)).shape
    (11,)
    """
    if not callable(cell):
        raise TypeError(f"cell must be callable as cell(x_t, h), got {type(cell).__name__}")
    inputs = _check_tensor("inputs", inputs, dims=(2, 3))
    batch = inputs if inputs.dim() == 3 else inputs.unsqueeze(0)
    if batch.shape[1] < 1:
        raise ValueError(f"inputs must have time >= 1, got shape {tuple(inputs.shape)}")
    _check_not_empty(batch)
    h0 = _check_tensor("h0", h0, dims=(1, 2))
    h = h0.expand(batch.shape[0], -1) if h0.dim() == 1 else h0
    if h.shape[0] != batch.shape[0]:
        raise ValueError(f"h0 has batch size {h.shape[0]}, inputs have {batch.shape[0]}")
    parameter = next(iter(cell.parameters()), None) if isinstance(cell, nn.Module) else None
    dtype = parameter.dtype if parameter is not None else h.dtype
    device = parameter.device if parameter is not None else h.device
    batch = batch.detach().to(device=device, dtype=dtype)
    h = h.detach().to(device=device, dtype=dtype)

    def one_step(x_t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:  # unbatched
        return cell(x_t.unsqueeze(0), state.unsqueeze(0)).squeeze(0)

    step_jacobian = torch.func.vmap(torch.func.jacrev(one_step, argnums=1))
    jacobians = []
    with torch.no_grad():
        for t in range(batch.shape[1]):
            jacobians.append(step_jacobian(batch[:, t], h).to(device="cpu", dtype=torch.float64))
            h = cell(batch[:, t], h)
    norms = _jacobian_product_norms(jacobians)
    return norms[0] if inputs.dim() == 2 else norms


def _initial_state(h0: torch.Tensor | None, batch: int, hidden: int) -> torch.Tensor:
    if h0 is None:
        return torch.zeros(batch, hidden, dtype=torch.float64)
    h0 = _check_tensor("h0", h0, dims=(1, 2))
    if h0.shape[-1] != hidden or (h0.dim() == 2 and h0.shape[0] != batch):
        raise ValueError(f"h0 must be ({hidden},) or ({batch}, {hidden}), got {tuple(h0.shape)}")
    return h0.detach().to(device="cpu", dtype=torch.float64).expand(batch, hidden)


def fit_decay_rate(norms: np.ndarray, *, start: int = 1) -> float:
    """The per-step factor ``r`` in ``norms[k] ~ C r^k``, fitted by least squares on a log scale.

    ``norms`` is a curve from :func:`rnn_jacobian_norms` (one sequence; average several on a log
    scale first). ``start`` skips the first entries (``k = 0`` is the identity). Below 1: the
    gradient through time vanishes geometrically; above 1: it explodes.

    >>> round(fit_decay_rate(0.5 ** np.arange(20)), 6)
    0.5
    """
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start must be an int >= 0, got {start!r}")
    values = np.asarray(norms, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"norms must be 1-D (one curve), got shape {values.shape}")
    ks = np.arange(values.size)[start:]
    values = values[start:]
    keep = np.isfinite(values) & (values > 0)
    if keep.sum() < 2:
        raise ValueError("norms must contain at least two positive finite values after start")
    slope = np.polyfit(ks[keep], np.log(values[keep]), 1)[0]
    return float(math.exp(slope))


@dataclass(frozen=True)
class StateDecay:
    """How fast a recurrent model forgets: see :func:`state_decay`.

    ``norms[k]`` is ``||ds_T/ds_{T-k}||_2`` for ``k = 0..T`` (geometric mean over the
    sequences), ``rate`` the per-step factor fitted to it by :func:`fit_decay_rate` (0 when the
    last state does not depend on earlier ones at all).

    >>> StateDecay(norms=0.5 ** np.arange(4), rate=0.5).time_constant   # 1 / ln 2 steps
    1.4426950408889634
    """

    norms: np.ndarray
    rate: float

    @property
    def time_constant(self) -> float:
        """Steps back over which the fitted dependence falls by a factor ``e``,
        ``-1 / ln(rate)``; infinite when ``rate >= 1`` (the state does not decay), 0 when
        ``rate`` is 0 (nothing is carried even one step)."""
        if self.rate >= 1:
            return math.inf
        return -1.0 / math.log(self.rate) if self.rate > 0 else 0.0


def _float64_copy(module: nn.Module) -> nn.Module:
    """A float64 copy of ``module`` on the CPU; the caller's module is left alone."""
    return copy.deepcopy(module).to(device="cpu", dtype=torch.float64)


def _joint_lstm_step(
    cell: Callable[[torch.Tensor, tuple[torch.Tensor, torch.Tensor]], tuple[torch.Tensor, ...]],
    hidden: int,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """An LSTM cell as one map of its whole state ``s = (h, c)``, concatenated."""

    def step(x_t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        h, c = cell(x_t, (state[:, :hidden], state[:, hidden:]))
        return torch.cat([h, c], dim=1)

    return step


def state_decay(model: nn.Module, inputs: torch.Tensor, *, start: int = 1) -> StateDecay:
    """How strongly a recurrent model's last state depends on its state ``k`` steps earlier.

    Runs ``model`` over ``inputs`` from a zero state and returns
    ``norms[k] = ||ds_T/ds_{T-k}||_2`` for ``k = 0..T`` (geometric mean over the sequences of
    the batch) and the per-step factor fitted to it from ``k = start`` (:func:`fit_decay_rate`).
    The state ``s`` is ``h`` for an RNN or GRU and ``h`` and ``c`` together for an LSTM, whose
    cell state is where the long-range dependence lives. A factor well below 1 means that the
    gradient through time vanishes, so the model cannot learn dependencies much longer than
    :attr:`StateDecay.time_constant` steps; near 1, it carries them.

    ``model`` is an ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` (one layer, one direction; an LSTM
    or GRU with biases and, for an LSTM, without projections), a
    :class:`~gradtext.models.SequenceModel` around one, an ``nn.RNNCell``, ``nn.LSTMCell`` or
    ``nn.GRUCell``, or a :mod:`gradtext.cells` cell, on any device.
    ``inputs`` is one sequence ``(T, input_size)`` or a batch ``(batch, T, input_size)``
    (time first when an ``nn.RNN``/``nn.LSTM``/``nn.GRU`` has ``batch_first=False``). Computed
    in float64 on a copy of the weights; the model is not changed.

    >>> _ = torch.manual_seed(0)
    >>> lstm = torch.nn.LSTM(2, 8, batch_first=True)
    >>> result = state_decay(lstm, torch.randn(4, 30, 2))
    >>> result.norms.shape, float(result.norms[0])
    ((31,), 1.0)
    >>> bool(result.rate < 1), bool(result.time_constant < 30)   # forgets within a few steps
    (True, True)
    """
    from gradtext import cells  # here, not at the top: gradtext.cells is not a theory module

    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be an int >= 0, got {start!r}")
    rnn = model.rnn if isinstance(model, SequenceModel) else model
    if isinstance(rnn, (nn.RNN, nn.LSTM, nn.GRU)):
        sequences = _sequences(inputs, rnn.input_size, rnn.batch_first)  # (batch, time, input)
    elif isinstance(rnn, (nn.RNNCell, nn.LSTMCell, nn.GRUCell, cells.LSTMCell, cells.GRUCell)):
        sequences = _sequences(inputs, rnn.input_size, batch_first=True)
    else:
        raise TypeError(
            "model must be an nn.RNN, nn.LSTM, nn.GRU, a SequenceModel, an nn.RNNCell, "
            f"nn.LSTMCell or nn.GRUCell, or a gradtext.cells cell, got {type(model).__name__}"
        )
    if start > sequences.shape[1] - 1:
        raise ValueError(
            f"start must leave at least two points to fit (start <= T - 1 = "
            f"{sequences.shape[1] - 1}), got {start}"
        )
    hidden = rnn.hidden_size
    sequences = sequences.cpu()  # computed on the CPU, whatever device the model is on
    if isinstance(rnn, nn.RNN):
        layer = _float64_copy(rnn)
        layer.batch_first = True  # the sequences are batch-first by now
        norms = rnn_jacobian_norms(layer, sequences)
    else:
        if isinstance(rnn, (nn.LSTM, nn.LSTMCell)):
            cell: nn.Module = cells.LSTMCell.from_torch(rnn)
        elif isinstance(rnn, (nn.GRU, nn.GRUCell)):
            cell = cells.GRUCell.from_torch(rnn)
        else:
            cell = rnn
        cell = _float64_copy(cell)
        if isinstance(cell, cells.LSTMCell):
            step, size = _joint_lstm_step(cell, hidden), 2 * hidden
        else:
            step, size = cell, hidden
        norms = cell_jacobian_norms(step, sequences, torch.zeros(size, dtype=torch.float64))
    with np.errstate(divide="ignore"):  # a state that stops depending at all gives norm 0
        curve = np.exp(np.log(norms).mean(axis=0))
    if np.all(curve[start:] == 0):  # e.g. ReLU units that are all off: nothing is carried
        return StateDecay(norms=curve, rate=0.0)
    return StateDecay(norms=curve, rate=fit_decay_rate(curve, start=start))


@dataclass(frozen=True)
class PascanuRegime:
    """What Pascanu, Mikolov & Bengio's conditions say about a recurrent weight matrix.

    ``regime`` is ``"vanishing"`` when ``sigma_max < 1/gamma`` (then ``||dh_T/dh_{T-k}|| <=
    (gamma sigma_max)^k`` shrinks geometrically for *every* input: vanishing is guaranteed) and
    ``"may explode"`` otherwise (the necessary condition for exploding holds; whether gradients
    actually explode depends on the inputs and on saturation). ``reason`` says it in words.
    """

    regime: str
    sigma_max: float
    gamma: float
    reason: str

    @property
    def threshold(self) -> float:
        """``1 / gamma``, the value of ``sigma_max`` that separates the regimes."""
        return 1.0 / self.gamma

    @property
    def vanishing_guaranteed(self) -> bool:
        """Whether ``sigma_max < 1 / gamma``, so that gradients through time must vanish."""
        return self.regime == "vanishing"

    @property
    def explosion_possible(self) -> bool:
        """Whether the necessary condition for exploding gradients holds."""
        return self.regime == "may explode"


def pascanu_regime(model: nn.Module | torch.Tensor, activation: str | None = None) -> PascanuRegime:
    """Which side of Pascanu et al.'s bound a recurrent net is on, and why.

    ``model``: an ``nn.RNN`` (single layer), an ``nn.RNNCell``, a
    :class:`~gradtext.models.SequenceModel` with ``cell="rnn"``, or the recurrent matrix itself
    (a square tensor, then ``activation`` is required). ``activation`` defaults to the model's
    nonlinearity; pass ``"sigmoid"`` for a sigmoid recurrent net (``gamma = 1/4``).

    >>> rnn = torch.nn.RNN(1, 4)
    >>> with torch.no_grad():
    ...     _ = rnn.weight_hh_l0.copy_(0.5 * torch.eye(4))
    >>> pascanu_regime(rnn).regime
    'vanishing'
    >>> pascanu_regime(3.0 * torch.eye(4), activation="sigmoid").regime
    'vanishing'
    >>> pascanu_regime(5.0 * torch.eye(4), activation="sigmoid").regime
    'may explode'
    """
    if isinstance(model, torch.Tensor):
        if activation is None:
            raise ValueError("activation is required when model is a weight matrix")
        weight = model
        if weight.dim() != 2 or weight.shape[0] != weight.shape[1]:
            raise ValueError(f"model: a recurrent matrix must be square, got {tuple(weight.shape)}")
    elif isinstance(model, nn.RNNCell):
        weight = model.weight_hh
        activation = activation or model.nonlinearity
    elif isinstance(model, (nn.RNN, SequenceModel)):
        rnn = _single_layer_rnn(model)
        weight = rnn.weight_hh_l0
        activation = activation or rnn.nonlinearity
    else:
        raise TypeError(
            "model must be an nn.RNN, nn.RNNCell, SequenceModel(cell='rnn') or a square tensor, "
            f"got {type(model).__name__}"
        )
    gamma = derivative_bound(activation)
    sigma_max = float(torch.linalg.matrix_norm(weight.detach().double(), ord=2))
    threshold = 1.0 / gamma
    if sigma_max < threshold:
        regime = "vanishing"
        reason = (
            f"sigma_max(W_rec) = {sigma_max:.3g} < 1/gamma = {threshold:.3g} ({activation}: "
            f"gamma = {gamma:.3g}), so every step shrinks the backward signal by at least "
            f"{gamma * sigma_max:.3g}: ||dh_T/dh_(T-k)|| <= {gamma * sigma_max:.3g}^k, "
            "vanishing for every input"
        )
    else:
        regime = "may explode"
        reason = (
            f"sigma_max(W_rec) = {sigma_max:.3g} >= 1/gamma = {threshold:.3g} ({activation}: "
            f"gamma = {gamma:.3g}): the necessary condition for exploding holds, so gradients "
            "can grow with k; whether they do depends on the inputs (saturated units contract)"
        )
    return PascanuRegime(regime, sigma_max, gamma, reason)
