import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradtext.models import (
    ACTIVATIONS,
    DeepMLP,
    ResidualMLP,
    ScalarRNN,
    SequenceModel,
    make_activation,
)


@settings(deadline=None, max_examples=30)
@given(
    depth=st.integers(1, 6),
    width=st.integers(1, 9),
    activation=st.sampled_from(sorted(ACTIVATIONS)),
)
def test_deep_mlp_depth_counts_linear_layers(depth, width, activation):
    net = DeepMLP(3, 2, width=width, depth=depth, activation=activation)
    assert len(net.linears) == depth == net.depth
    assert len(net.activations) == depth - 1
    assert net(torch.zeros(4, 3)).shape == (4, 2)
    assert [name for name, _ in net.named_layers()] == [f"linears.{i}" for i in range(depth)]
    named = dict(net.named_modules())
    assert all(named[name] is layer for name, layer in net.named_layers())


def test_depth_one_is_a_single_linear_map():
    net = DeepMLP(5, 3, width=100, depth=1)
    assert net.linears[0].weight.shape == (3, 5)


def test_forward_with_intermediates_matches_forward():
    torch.manual_seed(0)
    net = DeepMLP(4, 2, width=6, depth=4, activation="tanh").double()
    x = torch.randn(7, 4, dtype=torch.float64)
    out, pre, act = net.forward_with_intermediates(x)
    assert torch.equal(out, net(x))
    assert len(pre) == 4 and len(act) == 3
    for p, a in zip(pre[:-1], act, strict=True):
        assert torch.allclose(torch.tanh(p), a)
    assert torch.equal(pre[-1], out)


def test_hidden_activations_are_separate_modules():
    net = DeepMLP(2, 2, width=3, depth=4, activation="relu")
    assert len({id(m) for m in net.activations}) == 3


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"depth": 0}, ValueError, "depth must be >= 1"),
        ({"width": -2}, ValueError, "width must be >= 1"),
        ({"depth": 2.5}, TypeError, "depth must be an int"),
        ({"activation": "swishy"}, ValueError, "unknown activation 'swishy'"),
        ({"activation": 3}, TypeError, "activation must be a str"),
        ({"in_features": 0}, ValueError, "in_features must be >= 1"),
    ],
)
def test_deep_mlp_bad_input(kwargs, error, message):
    args = {"in_features": 3, "out_features": 2, "width": 4, "depth": 2} | kwargs
    with pytest.raises(error, match=message):
        DeepMLP(**args)


def test_make_activation_names():
    assert isinstance(make_activation("ReLU"), torch.nn.ReLU)
    assert isinstance(make_activation("linear"), torch.nn.Identity)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_sequence_model_shapes(cell):
    model = SequenceModel(cell, input_size=2, hidden_size=5, output_size=3)
    assert model(torch.zeros(4, 7, 2)).shape == (4, 3)
    model = SequenceModel(cell, 2, 5, 3, readout="all")
    assert model(torch.zeros(4, 7, 2)).shape == (4, 7, 3)


def test_sequence_model_reads_the_last_hidden_state():
    torch.manual_seed(0)
    model = SequenceModel("gru", 2, 4, 1)
    x = torch.randn(3, 6, 2)
    states, _ = model.rnn(x)
    assert torch.allclose(model(x), model.head(states[:, -1]))


def test_sequence_model_bad_input():
    with pytest.raises(ValueError, match="cell must be one of"):
        SequenceModel("transformer", 2, 4, 1)
    with pytest.raises(ValueError, match="nonlinearity"):
        SequenceModel("rnn", 2, 4, 1, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="x must be"):
        SequenceModel("rnn", 2, 4, 1)(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="readout"):
        SequenceModel("rnn", 2, 4, 1, readout="first")


def test_scalar_rnn_follows_its_recurrence():
    net = ScalarRNN(w=5.0, b=-2.5, steps=3)
    x = torch.tensor(0.5, dtype=torch.float64)
    expected = x
    for _ in range(3):
        expected = 5.0 * torch.sigmoid(expected) - 2.5
    assert torch.allclose(net(x), expected)
    trajectory = net.trajectory(x)
    assert trajectory.shape == (4,) and torch.allclose(trajectory[-1], expected)
    assert net.w.dtype == torch.float64


def test_scalar_rnn_gradient_matches_finite_differences():
    net = ScalarRNN(w=3.0, b=-1.0, steps=20)
    x0 = torch.tensor(0.5, dtype=torch.float64)
    net(x0).backward()
    eps = 1e-6
    with torch.no_grad():
        plus = ScalarRNN(3.0 + eps, -1.0, 20)(x0)
        minus = ScalarRNN(3.0 - eps, -1.0, 20)(x0)
    assert float(net.w.grad) == pytest.approx(float((plus - minus) / (2 * eps)), rel=1e-5)


def test_scalar_rnn_bad_steps():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        ScalarRNN(steps=0)


def test_sequence_model_refuses_a_nonlinearity_gated_cells_would_ignore():
    with pytest.raises(ValueError, match="nonlinearity applies to cell='rnn' only"):
        SequenceModel("lstm", 2, 4, 1, nonlinearity="relu")


def test_scalar_rnn_accepts_python_and_numpy_starting_points():
    net = ScalarRNN(w=5.0, b=-2.5, steps=4)
    expected = net(torch.tensor(0.5, dtype=torch.float64))
    for x0 in (0.5, np.float64(0.5), np.array([0.5, 0.5])):
        assert torch.allclose(net(x0), expected)
        assert torch.allclose(net.trajectory(x0)[-1], expected)


def test_sequence_model_names_x_for_an_empty_sequence_or_wrong_features():
    model = SequenceModel("lstm", 2, 4, 1)
    with pytest.raises(ValueError, match="x must have at least one time step"):
        model(torch.zeros(3, 0, 2))
    with pytest.raises(ValueError, match=r"x must have input_size=2 features"):
        model(torch.zeros(3, 5, 4))


def test_sizes_may_be_numpy_integers():
    width, depth = np.arange(8, 10)[0], np.int64(3)  # e.g. from a sweep over np.arange
    net = DeepMLP(np.int32(4), 2, width, depth)
    assert net.depth == 3 and net.linears[0].weight.shape == (8, 4)
    assert isinstance(net.linears[0].in_features, int)
    model = SequenceModel("gru", np.int64(2), np.int64(4), np.int64(1), num_layers=np.int64(2))
    assert model(torch.zeros(3, 5, 2)).shape == (3, 1)
    with pytest.raises(TypeError, match="width must be an int"):
        DeepMLP(4, 2, 8.0, 3)
    with pytest.raises(TypeError, match="depth must be an int"):
        DeepMLP(4, 2, 8, np.bool_(True))


@pytest.mark.parametrize("norm", [None, "batch", "layer"])
def test_residual_mlp_shapes_and_layer_names(norm):
    net = ResidualMLP(5, 3, width=8, blocks=4, activation="tanh", norm=norm)
    assert net(torch.randn(6, 5)).shape == (6, 3)
    assert net.depth == 10 == len(list(net.named_layers()))
    names = [name for name, _ in net.named_layers()]
    assert names[:3] == ["input", "blocks.0.linear1", "blocks.0.linear2"]
    assert names[-1] == "output"
    named = dict(net.named_modules())
    assert all(named[name] is layer for name, layer in net.named_layers())
    expected = {None: torch.nn.Identity, "batch": torch.nn.BatchNorm1d, "layer": torch.nn.LayerNorm}
    assert all(isinstance(block.norm, expected[norm]) for block in net.blocks)


@pytest.mark.parametrize("norm", [None, "batch", "layer"])
def test_residual_mlp_zero_init_makes_every_block_the_identity(norm):
    torch.manual_seed(0)
    net = ResidualMLP(4, 2, width=16, blocks=5, norm=norm, zero_init=True)
    x = torch.randn(32, 4)
    out, streams = net.forward_with_intermediates(x)
    assert len(streams) == 6
    for before, after in zip(streams[:-1], streams[1:], strict=True):
        assert torch.equal(before, after)
    assert torch.equal(out, net.output(net.input(x)))
    for block in net.blocks:
        assert torch.count_nonzero(block.linear2.weight) == 0
        assert torch.count_nonzero(block.linear2.bias) == 0
        assert torch.count_nonzero(block.linear1.weight) > 0  # only the last layer is zeroed


def test_residual_mlp_branch_scale_scales_the_branch():
    torch.manual_seed(0)
    x = torch.randn(8, 6, dtype=torch.float64)
    nets = {}
    for scale in (1.0, 0.25, 0.0):
        torch.manual_seed(1)
        nets[scale] = ResidualMLP(6, 2, width=6, blocks=3, branch_scale=scale).double()
    streams = {scale: net.forward_with_intermediates(x)[1] for scale, net in nets.items()}
    for scale, net in nets.items():
        assert net.branch_scale == scale
        for index, block in enumerate(net.blocks):
            before = streams[scale][index]
            expected = before + scale * block.branch(before)
            assert torch.allclose(streams[scale][index + 1], expected)
    # the first block sees the same input in every network: its update is proportional to alpha
    update = {s: streams[s][1] - streams[s][0] for s in nets}
    assert torch.allclose(update[0.25], 0.25 * update[1.0])
    assert torch.equal(update[0.0], torch.zeros_like(update[0.0]))


def test_residual_mlp_is_deterministic_under_a_seed():
    torch.manual_seed(3)
    first = ResidualMLP(4, 2, width=8, blocks=2, norm="layer")
    torch.manual_seed(3)
    second = ResidualMLP(4, 2, width=8, blocks=2, norm="layer")
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    x = torch.randn(5, 4)
    assert torch.equal(first(x), second(x))


def test_residual_mlp_works_with_the_monitor():
    from gradtext.monitor import GradientMonitor

    torch.manual_seed(0)
    net = ResidualMLP(4, 3, width=8, blocks=2, norm="batch", zero_init=True)
    with GradientMonitor(net) as monitor:
        torch.nn.functional.cross_entropy(net(torch.randn(16, 4)),
                                          torch.randint(0, 3, (16,))).backward()
    linear_names = [name for name, _ in net.named_layers()]
    assert set(linear_names) <= set(monitor.layer_names)
    assert "blocks.0.norm" in monitor.layer_names  # BatchNorm owns parameters: a layer too
    grads = dict(zip(monitor.layer_names, monitor.grad_norms()[0], strict=True))
    # zero-initialized branches: W1's gradient passes through W2 = 0, W2's does not
    assert grads["blocks.0.linear1"] == 0 and grads["blocks.0.linear2"] > 0


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"blocks": 0}, ValueError, "blocks must be >= 1"),
        ({"blocks": 2.0}, TypeError, "blocks must be an int"),
        ({"width": 0}, ValueError, "width must be >= 1"),
        ({"activation": "swishy"}, ValueError, "unknown activation 'swishy'"),
        ({"norm": "group"}, ValueError, "norm must be None, 'batch' or 'layer'"),
        ({"norm": 1}, TypeError, "norm must be None, 'batch' or 'layer'"),
        ({"branch_scale": "1"}, TypeError, "branch_scale must be a number"),
        ({"branch_scale": True}, TypeError, "branch_scale must be a number"),
        ({"branch_scale": float("nan")}, ValueError, "branch_scale must be finite"),
        ({"zero_init": 1}, TypeError, "zero_init must be a bool"),
    ],
)
def test_residual_mlp_bad_input(kwargs, error, message):
    args = {"in_features": 3, "out_features": 2, "width": 4, "blocks": 2} | kwargs
    with pytest.raises(error, match=message):
        ResidualMLP(**args)
