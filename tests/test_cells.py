import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from gradtext.cells import GRUCell, LSTMCell, unroll

F64 = torch.float64
TOL = 1e-12

KINDS = {"lstm": (LSTMCell, nn.LSTMCell, nn.LSTM), "gru": (GRUCell, nn.GRUCell, nn.GRU)}


def _pair(kind, input_size=3, hidden_size=5, seed=0):
    """Our cell and PyTorch's, in float64, with the same weights."""
    ours_type, theirs_type, _ = KINDS[kind]
    torch.manual_seed(seed)
    theirs = theirs_type(input_size, hidden_size).double()
    ours = ours_type(input_size, hidden_size).double()
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _close(a, b):
    return a.shape == b.shape and torch.allclose(a, b, rtol=0, atol=TOL)


def test_lstm_outputs_and_gradients_match_torch():
    ours, theirs = _pair("lstm")
    torch.manual_seed(1)
    x = torch.randn(4, 3, dtype=F64, requires_grad=True)
    h0 = torch.randn(4, 5, dtype=F64, requires_grad=True)
    c0 = torch.randn(4, 5, dtype=F64, requires_grad=True)
    w_h, w_c = torch.randn(4, 5, dtype=F64), torch.randn(4, 5, dtype=F64)
    results = []
    for module in (ours, theirs):
        h, c = module(x, (h0, c0))
        loss = (w_h * h).sum() + (w_c * c).sum()
        grads = torch.autograd.grad(loss, [x, h0, c0, *module.parameters()])
        results.append((h, c, grads))
    (h1, c1, g1), (h2, c2, g2) = results
    assert _close(h1, h2) and _close(c1, c2)
    assert len(g1) == len(g2) == 7
    for a, b in zip(g1, g2, strict=True):
        assert _close(a, b)


def test_gru_outputs_and_gradients_match_torch():
    ours, theirs = _pair("gru")
    torch.manual_seed(1)
    x = torch.randn(4, 3, dtype=F64, requires_grad=True)
    h0 = torch.randn(4, 5, dtype=F64, requires_grad=True)
    weight = torch.randn(4, 5, dtype=F64)
    results = []
    for module in (ours, theirs):
        h = module(x, h0)
        grads = torch.autograd.grad((weight * h).sum(), [x, h0, *module.parameters()])
        results.append((h, grads))
    (h1, g1), (h2, g2) = results
    assert _close(h1, h2)
    assert len(g1) == len(g2) == 6
    for a, b in zip(g1, g2, strict=True):
        assert _close(a, b)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_missing_state_is_zeros(kind):
    ours, theirs = _pair(kind)
    x = torch.randn(2, 3, dtype=F64)
    zeros = torch.zeros(2, 5, dtype=F64)
    state = (zeros, zeros) if kind == "lstm" else zeros
    if kind == "lstm":
        assert all(_close(a, b) for a, b in zip(ours(x), ours(x, state), strict=True))
        assert _close(ours(x)[0], theirs(x)[0])
    else:
        assert _close(ours(x), ours(x, state)) and _close(ours(x), theirs(x))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_unroll_matches_torch_sequence_module(kind):
    ours_type, _, layer_type = KINDS[kind]
    torch.manual_seed(0)
    layer = layer_type(3, 5, batch_first=True).double()
    cell = ours_type.from_torch(layer)
    x = torch.randn(2, 20, 3, dtype=F64, requires_grad=True)
    h0 = torch.randn(2, 5, dtype=F64, requires_grad=True)
    c0 = torch.randn(2, 5, dtype=F64, requires_grad=True)
    if kind == "lstm":
        run = unroll(cell, x, (h0, c0))
        out, (h_n, c_n) = layer(x, (h0[None], c0[None]))
        assert _close(run.cell[:, -1], c_n[0])
        assert run.cell.shape == (2, 20, 5)
    else:
        run = unroll(cell, x, h0)
        out, h_n = layer(x, h0[None])
        assert run.cell is None
    assert _close(run.hidden, out)
    assert _close(run.hidden[:, -1], h_n[0])
    assert sorted(run.gates) == sorted(cell.gate_names)
    assert all(g.shape == (2, 20, 5) for g in run.gates.values())
    # Differentiable: gradients through all 20 steps equal PyTorch's.
    weight = torch.randn(2, 20, 5, dtype=F64)
    wrt = [x, h0] if kind == "gru" else [x, h0, c0]
    ours_grads = torch.autograd.grad((weight * run.hidden).sum(), wrt + list(cell.parameters()))
    theirs_grads = torch.autograd.grad((weight * out).sum(), wrt + list(layer.parameters()))
    for a, b in zip(ours_grads, theirs_grads, strict=True):
        assert _close(a, b)


def test_unroll_gates_are_the_per_step_gates():
    torch.manual_seed(0)
    cell = LSTMCell(2, 3).double()
    x = torch.randn(4, 6, 2, dtype=F64)
    run = unroll(cell, x)
    state = None
    for t in range(6):
        step = cell.gates(x[:, t], state)
        state = (step.hidden, step.cell)
        for name in cell.gate_names:
            assert torch.equal(run.gates[name][:, t], getattr(step, name))
        assert torch.equal(run.hidden[:, t], step.hidden)
        assert torch.equal(run.cell[:, t], step.cell)


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(["lstm", "gru"]),
    input_size=st.integers(1, 5),
    hidden_size=st.integers(1, 6),
    batch=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_forward_matches_torch_for_any_small_size(kind, input_size, hidden_size, batch, seed):
    ours, theirs = _pair(kind, input_size, hidden_size, seed)
    x = torch.randn(batch, input_size, dtype=F64)
    h = torch.randn(batch, hidden_size, dtype=F64)
    if kind == "lstm":
        c = torch.randn(batch, hidden_size, dtype=F64)
        for a, b in zip(ours(x, (h, c)), theirs(x, (h, c)), strict=True):
            assert _close(a, b)
        step = ours.gates(x, (h, c))
        assert torch.equal(step.hidden, ours(x, (h, c))[0])
    else:
        assert _close(ours(x, h), theirs(x, h))
        assert torch.equal(ours.gates(x, h).hidden, ours(x, h))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_same_seed_same_parameters_as_torch(kind):
    ours_type, theirs_type, _ = KINDS[kind]
    torch.manual_seed(3)
    first = ours_type(4, 6)
    torch.manual_seed(3)
    second = ours_type(4, 6)
    torch.manual_seed(3)
    theirs = theirs_type(4, 6)
    for name, parameter in first.named_parameters():
        assert torch.equal(parameter, dict(second.named_parameters())[name])
        assert torch.equal(parameter, dict(theirs.named_parameters())[name])
    bound = 1 / math.sqrt(6)
    assert all(p.abs().max() <= bound for p in first.parameters())


def test_parameter_names_and_shapes_are_torchs():
    for ours, theirs in [(LSTMCell(3, 5), nn.LSTMCell(3, 5)), (GRUCell(3, 5), nn.GRUCell(3, 5))]:
        assert {n: p.shape for n, p in ours.named_parameters()} == {
            n: p.shape for n, p in theirs.named_parameters()
        }
        theirs.load_state_dict(ours.state_dict())  # both directions, strict
        ours.load_state_dict(theirs.state_dict())


def test_forget_bias_shifts_only_the_forget_block():
    torch.manual_seed(0)
    default = LSTMCell(3, 4)
    torch.manual_seed(0)
    shifted = LSTMCell(3, 4, forget_bias=3.0)
    H = 4
    difference = shifted.bias_ih - default.bias_ih
    assert torch.allclose(difference[H : 2 * H], torch.full((H,), 3.0), rtol=0, atol=1e-6)
    assert torch.equal(difference[:H], torch.zeros(H))
    assert torch.equal(difference[2 * H :], torch.zeros(2 * H))
    for name in ("weight_ih", "weight_hh", "bias_hh"):
        assert torch.equal(getattr(shifted, name), getattr(default, name))
    # On zero input and state the forget gate is sigmoid of the two forget biases.
    step = shifted.gates(torch.zeros(2, 3))
    expected = torch.sigmoid(shifted.bias_ih[H : 2 * H] + shifted.bias_hh[H : 2 * H])
    assert torch.allclose(step.forget, expected.expand(2, H), rtol=0, atol=1e-7)
    assert step.forget.mean() > torch.sigmoid(torch.tensor(3.0 - 2 / math.sqrt(H)))


def test_lstm_gates_are_consistent():
    torch.manual_seed(0)
    cell = LSTMCell(3, 4).double()
    x, h, c = (torch.randn(5, n, dtype=F64) for n in (3, 4, 4))
    step = cell.gates(x, (h, c))
    assert torch.equal(step.cell, step.forget * c + step.input * step.candidate)
    assert torch.equal(step.hidden, step.output * torch.tanh(step.cell))
    for gate in (step.input, step.forget, step.output):
        assert ((gate > 0) & (gate < 1)).all()
    assert (step.candidate.abs() < 1).all()


def test_gru_hidden_is_a_convex_combination():
    torch.manual_seed(0)
    cell = GRUCell(3, 4).double()
    x, h = torch.randn(5, 3, dtype=F64), torch.randn(5, 4, dtype=F64)
    step = cell.gates(x, h)
    z, n = step.update, step.candidate
    assert torch.allclose(step.hidden, (1 - z) * n + z * h, rtol=0, atol=TOL)
    assert ((z > 0) & (z < 1)).all()
    low, high = torch.minimum(n, h), torch.maximum(n, h)
    assert ((step.hidden >= low - TOL) & (step.hidden <= high + TOL)).all()


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_from_torch_copies_cells_and_layers(kind):
    ours_type, theirs_type, layer_type = KINDS[kind]
    for module in (theirs_type(3, 4).double(), layer_type(3, 4).double()):
        state_before = torch.get_rng_state()
        cell = ours_type.from_torch(module)
        assert torch.equal(torch.get_rng_state(), state_before)  # no side effect on the RNG
        assert isinstance(cell, ours_type)
        assert (cell.input_size, cell.hidden_size) == (3, 4)
        suffix = "" if isinstance(module, theirs_type) else "_l0"
        for name, parameter in cell.named_parameters():
            source = getattr(module, name + suffix)
            assert parameter.dtype == F64 and torch.equal(parameter, source)
            assert parameter.data_ptr() != source.data_ptr()  # a copy, not shared
            assert parameter.requires_grad


def test_from_torch_rejects_other_modules():
    with pytest.raises(ValueError, match="num_layers=1"):
        LSTMCell.from_torch(nn.LSTM(3, 4, num_layers=2))
    with pytest.raises(ValueError, match="unidirectional"):
        LSTMCell.from_torch(nn.LSTM(3, 4, bidirectional=True))
    with pytest.raises(ValueError, match="proj_size=0"):
        LSTMCell.from_torch(nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="bias=True"):
        LSTMCell.from_torch(nn.LSTMCell(3, 4, bias=False))
    with pytest.raises(ValueError, match="num_layers=1"):
        GRUCell.from_torch(nn.GRU(3, 4, num_layers=2))
    with pytest.raises(ValueError, match="unidirectional"):
        GRUCell.from_torch(nn.GRU(3, 4, bidirectional=True))
    with pytest.raises(ValueError, match="bias=True"):
        GRUCell.from_torch(nn.GRU(3, 4, bias=False))
    with pytest.raises(TypeError, match="module must be a torch.nn.LSTMCell or torch.nn.LSTM"):
        LSTMCell.from_torch(nn.Linear(3, 4))
    with pytest.raises(TypeError, match="got GRUCell"):
        LSTMCell.from_torch(nn.GRUCell(3, 4))
    with pytest.raises(TypeError, match="module must be a torch.nn.GRUCell or torch.nn.GRU"):
        GRUCell.from_torch(nn.RNN(3, 4))


@pytest.mark.parametrize("cls", [LSTMCell, GRUCell])
@pytest.mark.parametrize(
    "args, error, message",
    [
        ((0, 4), ValueError, "input_size must be >= 1"),
        ((3, -1), ValueError, "hidden_size must be >= 1"),
        ((3.0, 4), TypeError, "input_size must be an int"),
        ((3, True), TypeError, "hidden_size must be an int"),
    ],
)
def test_bad_sizes(cls, args, error, message):
    with pytest.raises(error, match=message):
        cls(*args)


@pytest.mark.parametrize(
    "value, error, message",
    [
        (float("nan"), ValueError, "forget_bias must be finite"),
        (float("inf"), ValueError, "forget_bias must be finite"),
        ("1", TypeError, "forget_bias must be a float"),
        (True, TypeError, "forget_bias must be a float"),
    ],
)
def test_bad_forget_bias(value, error, message):
    with pytest.raises(error, match=message):
        LSTMCell(3, 4, forget_bias=value)


def test_bad_step_inputs():
    lstm, gru = LSTMCell(3, 4), GRUCell(3, 4)
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"x must be \(batch, input_size=3\), got shape \(2, 5\)"):
        lstm(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"x must be \(batch, input_size=3\)"):
        gru.gates(torch.zeros(3))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        gru([[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="x has dtype torch.float64"):
        lstm(x.double())
    with pytest.raises(ValueError, match=r"state\[1\] \(c\) must be \(batch, hidden_size\)"):
        lstm(x, (torch.zeros(2, 4), torch.zeros(2, 5)))
    with pytest.raises(ValueError, match=r"state\[0\] \(h\) must be \(batch, hidden_size\)"):
        lstm.gates(x, (torch.zeros(3, 4), torch.zeros(2, 4)))
    with pytest.raises(TypeError, match=r"state must be None or a pair \(h, c\)"):
        lstm(x, torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"h must be \(batch, hidden_size\) = \(2, 4\)"):
        gru(x, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="h has dtype torch.float64"):
        gru(x, torch.zeros(2, 4, dtype=F64))
    # another device (the meta device stands in for a GPU): named, not a cryptic torch error
    with pytest.raises(ValueError, match="x is on meta but the cell's parameters are on cpu"):
        lstm(torch.zeros(2, 3, device="meta"))
    with pytest.raises(ValueError, match="h is on meta but x is on cpu"):
        gru(x, torch.zeros(2, 4, device="meta"))


def test_bad_unroll_inputs():
    lstm, gru = LSTMCell(3, 4), GRUCell(3, 4)
    with pytest.raises(ValueError, match=r"inputs must be \(batch, time, input_size\)"):
        unroll(lstm, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="inputs must have input_size=3 features"):
        unroll(gru, torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match="inputs must be floating point"):
        unroll(lstm, torch.zeros(2, 5, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="inputs have dtype torch.float64"):
        unroll(lstm, torch.zeros(2, 5, 3, dtype=F64))
    with pytest.raises(ValueError, match="at least one time step"):
        unroll(gru, torch.zeros(2, 0, 3))
    with pytest.raises(TypeError, match="inputs must be a torch.Tensor"):
        unroll(gru, [[[0.0] * 3]])
    with pytest.raises(TypeError, match="cell must be a gradtext.cells.LSTMCell or GRUCell"):
        unroll(nn.LSTMCell(3, 4), torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match=r"state must be \(batch, hidden_size\)"):
        unroll(gru, torch.zeros(2, 5, 3), torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"state\[1\] \(c\) must be"):
        unroll(lstm, torch.zeros(2, 5, 3), (torch.zeros(2, 4), torch.zeros(2, 3)))
    with pytest.raises(ValueError, match="inputs are on meta but the cell's parameters are on cpu"):
        unroll(gru, torch.zeros(2, 5, 3, device="meta"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_from_torch_keeps_the_device_and_unroll_matches_on_cuda():
    torch.manual_seed(0)
    layer = nn.LSTM(3, 5, batch_first=True).double().cuda()
    cell = LSTMCell.from_torch(layer)
    assert cell.weight_ih.device.type == "cuda" and cell.weight_ih.dtype == F64
    x = torch.randn(2, 20, 3, dtype=F64, device="cuda")
    assert torch.allclose(unroll(cell, x).hidden, layer(x)[0], rtol=0, atol=1e-10)


def test_reset_parameters_twice_does_not_add_the_forget_bias_twice():
    torch.manual_seed(0)
    cell = LSTMCell(3, 4, forget_bias=2.0)
    torch.manual_seed(0)
    cell.reset_parameters()
    first = cell.bias_ih.detach().clone()
    torch.manual_seed(0)
    cell.reset_parameters()
    assert torch.equal(cell.bias_ih.detach(), first)
    assert float(first[4:8].min()) > 2.0 - 0.5  # shifted once: default bias within +-1/2


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_float32_cells_match_torch(kind):
    torch.manual_seed(0)
    theirs = nn.LSTM(3, 5, batch_first=True) if kind == "lstm" else nn.GRU(3, 5, batch_first=True)
    ours = (LSTMCell if kind == "lstm" else GRUCell).from_torch(theirs)
    x = torch.randn(4, 30, 3)
    torch.testing.assert_close(unroll(ours, x).hidden, theirs(x)[0], rtol=1e-5, atol=1e-6)


def test_numpy_sizes_and_forget_bias_are_accepted():
    np = pytest.importorskip("numpy")
    cell = LSTMCell(np.int64(3), np.int32(4), forget_bias=np.float32(1.0))
    assert (cell.input_size, cell.hidden_size) == (3, 4)
    assert isinstance(cell.hidden_size, int) and cell.forget_bias == 1.0
    assert cell.weight_hh.shape == (16, 4)
    assert unroll(GRUCell(np.int64(2), np.int64(3)), torch.zeros(1, 2, 2)).hidden.shape == (1, 2, 3)
