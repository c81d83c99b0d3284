"""Tests for gradtext.init: each scheme's variance formula, orthogonality (per gate for
recurrent layers), identity, LSUV, agreement with torch.nn.init, determinism, bad input."""

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import gradtext as gt
from gradtext.init import (
    SCHEMES,
    activation_gain,
    fans,
    initialize,
    second_moment_gain,
    signal_propagation,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def relative_error(sample_variance: float, expected: float) -> float:
    return abs(sample_variance / expected - 1.0)


# A 400 x 300 weight has 120,000 entries: the sample variance of i.i.d. draws is within
# about 0.4% (one standard error) of the true one, so 3% is a wide statistical tolerance.
IN, OUT = 300, 400
EXPECTED_VARIANCE = {
    "standard": 1.0 / (3 * IN),
    "xavier_normal": 2.0 / (IN + OUT),
    "xavier_uniform": 2.0 / (IN + OUT),
    "kaiming_normal": 2.0 / IN,
    "kaiming_uniform": 2.0 / IN,
    "orthogonal": 1.0 / OUT,  # rows are orthonormal (OUT > IN: columns are), sum of squares = IN
    "scaled_normal": 1.0 / IN,
}


@pytest.mark.parametrize("scheme", sorted(EXPECTED_VARIANCE))
def test_sample_variance_matches_the_formula(scheme):
    layer = initialize(nn.Linear(IN, OUT), scheme, generator=gen())
    weight = layer.weight.detach().double()
    expected = EXPECTED_VARIANCE[scheme]
    if scheme == "orthogonal":  # exact, not statistical: OUT x IN with orthonormal columns
        expected = IN / (IN * OUT)
        assert float(weight.pow(2).mean()) == pytest.approx(expected, rel=1e-6)
    else:
        assert relative_error(float(weight.var()), expected) < 0.03
    assert float(layer.bias.detach().abs().max()) == 0.0  # biases zero by default


def test_uniform_schemes_respect_their_bounds():
    layer = initialize(nn.Linear(IN, OUT), "standard", generator=gen())
    assert float(layer.weight.detach().abs().max()) <= 1 / math.sqrt(IN)
    layer = initialize(nn.Linear(IN, OUT), "xavier_uniform", generator=gen())
    assert float(layer.weight.detach().abs().max()) <= math.sqrt(6 / (IN + OUT))


def test_kaiming_fan_out_and_gain_options():
    layer = initialize(nn.Linear(IN, OUT), "kaiming_normal", mode="fan_out", generator=gen())
    assert relative_error(float(layer.weight.detach().var()), 2.0 / OUT) < 0.03
    layer = initialize(nn.Linear(IN, OUT), "kaiming_normal", nonlinearity="tanh", generator=gen())
    assert relative_error(float(layer.weight.detach().var()), (5 / 3) ** 2 / IN) < 0.03
    layer = initialize(nn.Linear(IN, OUT), "scaled_normal", std=0.05, generator=gen())
    assert relative_error(float(layer.weight.detach().std()), 0.05) < 0.02


def test_conv_fans_follow_torch():
    conv = initialize(nn.Conv2d(16, 32, 3), "kaiming_normal", generator=gen())
    assert fans(conv.weight) == (16 * 9, 32 * 9)
    assert relative_error(float(conv.weight.detach().var()), 2.0 / (16 * 9)) < 0.05
    conv1 = initialize(nn.Conv1d(8, 8, 5), "orthogonal", generator=gen())
    flat = conv1.weight.detach().double().reshape(8, -1)
    assert torch.allclose(flat @ flat.T, torch.eye(8, dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize(
    ("scheme", "torch_init", "kwargs"),
    [
        ("xavier_normal", nn.init.xavier_normal_, {}),
        ("xavier_uniform", nn.init.xavier_uniform_, {}),
        ("kaiming_normal", nn.init.kaiming_normal_, {"nonlinearity": "relu"}),
        ("kaiming_uniform", nn.init.kaiming_uniform_, {"nonlinearity": "relu"}),
        ("orthogonal", nn.init.orthogonal_, {}),
    ],
)
@pytest.mark.parametrize("shape", [(20, 30), (30, 20), (8, 4, 3, 3)])
def test_agrees_with_torch_nn_init_under_the_same_generator(scheme, torch_init, kwargs, shape):
    layer = nn.Linear(shape[1], shape[0]) if len(shape) == 2 else nn.Conv2d(4, 8, 3)
    layer = layer.double()
    initialize(layer, scheme, generator=gen(3))
    reference = torch.empty(shape, dtype=torch.float64)
    torch_init(reference, generator=gen(3), **kwargs)
    assert torch.allclose(layer.weight.detach(), reference, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", [nn.RNN, nn.LSTM, nn.GRU, nn.LSTMCell])
def test_recurrent_orthogonal_per_gate_block(cell):
    hidden = 12
    layer = initialize(cell(5, hidden).double(), "orthogonal", generator=gen())
    gates = {nn.RNN: 1, nn.LSTM: 4, nn.GRU: 3, nn.LSTMCell: 4}[cell]
    suffix = "_l0" if cell in (nn.RNN, nn.LSTM, nn.GRU) else ""
    eye = torch.eye(hidden, dtype=torch.float64)
    w_hh = getattr(layer, "weight_hh" + suffix).detach()
    w_ih = getattr(layer, "weight_ih" + suffix).detach()
    for block_hh, block_ih in zip(w_hh.chunk(gates), w_ih.chunk(gates), strict=True):
        assert torch.allclose(block_hh @ block_hh.T, eye, atol=1e-10)
        assert torch.allclose(block_ih.T @ block_ih, torch.eye(5, dtype=torch.float64), atol=1e-10)
    # the stacked matrix as a whole is *not* orthogonal: gates were drawn independently
    if gates > 1:
        assert not torch.allclose(w_hh.T @ w_hh, eye, atol=1e-3)


def test_recurrent_xavier_uses_each_gate_blocks_fans():
    hidden = 256
    lstm = initialize(nn.LSTM(64, hidden), "xavier_normal", generator=gen())
    assert relative_error(float(lstm.weight_ih_l0.detach().var()), 2 / (64 + hidden)) < 0.03
    assert relative_error(float(lstm.weight_hh_l0.detach().var()), 2 / (2 * hidden)) < 0.03


def test_lstm_forget_bias_and_zero_biases():
    lstm = initialize(nn.LSTM(3, 6, num_layers=2), "xavier_uniform", forget_bias=1.0)
    for layer in range(2):
        bias_ih = getattr(lstm, f"bias_ih_l{layer}").detach()
        assert bias_ih[6:12].eq(1.0).all() and bias_ih[:6].eq(0).all() and bias_ih[12:].eq(0).all()
        assert getattr(lstm, f"bias_hh_l{layer}").detach().eq(0).all()


def test_bias_none_leaves_biases_alone():
    layer = nn.Linear(4, 4)
    before = layer.bias.detach().clone()
    initialize(layer, "orthogonal", bias=None)
    assert torch.equal(layer.bias.detach(), before)


def test_identity_is_identity_for_recurrent_weights():
    model = gt.SequenceModel("rnn", 2, 16, 1, nonlinearity="relu")
    initialize(model, "identity", generator=gen())
    assert torch.equal(model.rnn.weight_hh_l0.detach(), torch.eye(16))
    assert float(model.rnn.weight_ih_l0.detach().std()) == pytest.approx(0.001, rel=0.2)
    assert float(model.head.weight.detach().abs().max()) < 0.01
    cell = initialize(nn.GRUCell(3, 4), "identity", gain=0.5)
    for block in cell.weight_hh.detach().chunk(3):
        assert torch.equal(block, 0.5 * torch.eye(4))


def test_normalization_layers_are_skipped():
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.BatchNorm1d(8))
    initialize(model, "kaiming_normal")
    assert model[1].weight.detach().eq(1).all() and model[2].bias.detach().eq(0).all()


def test_same_generator_seed_gives_identical_models():
    def build(seed):
        model = nn.Sequential(nn.Linear(10, 20), nn.Tanh(), nn.Linear(20, 3), nn.GRU(3, 5))
        return initialize(model, "orthogonal", generator=gen(seed))

    one, two, other = build(7), build(7), build(8)
    for a, b in zip(one.parameters(), two.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(one[0].weight, other[0].weight)
    torch.manual_seed(1)
    first = initialize(nn.Linear(5, 5), "xavier_normal").weight.detach().clone()
    torch.manual_seed(1)
    assert torch.equal(first, initialize(nn.Linear(5, 5), "xavier_normal").weight.detach())


# --- gains --------------------------------------------------------------------------------


def test_gains_agree_with_calculate_gain_where_it_has_them():
    for name in ["linear", "conv2d", "sigmoid", "tanh", "relu", "selu"]:
        assert activation_gain(name) == pytest.approx(nn.init.calculate_gain(name), rel=1e-12)
    assert activation_gain("leaky_relu", negative_slope=0.2) == pytest.approx(
        nn.init.calculate_gain("leaky_relu", 0.2)
    )


def test_numerical_gain_by_monte_carlo():
    """The quadrature gain of GELU/SiLU agrees with a Monte-Carlo estimate of 1/sqrt(E[phi^2])."""
    z = torch.randn(2_000_000, generator=gen(), dtype=torch.float64)
    for name, phi in [("gelu", nn.functional.gelu), ("silu", nn.functional.silu)]:
        monte_carlo = 1.0 / math.sqrt(float(phi(z).pow(2).mean()))
        assert activation_gain(name) == pytest.approx(monte_carlo, rel=3e-3)
    assert second_moment_gain(torch.relu) == pytest.approx(math.sqrt(2), rel=1e-5)


@pytest.mark.parametrize("name", ["gelu", "silu", "elu"])
def test_numerical_gain_restores_unit_scale_after_one_layer(name):
    phi = gt.models.make_activation(name)
    layer = initialize(nn.Linear(512, 512, bias=False).double(), "scaled_normal",
                       nonlinearity=name, generator=gen())
    with torch.no_grad():
        h = layer(phi(torch.randn(4000, 512, generator=gen(1), dtype=torch.float64)))
    assert relative_error(float(h.pow(2).mean()), 1.0) < 0.05


@settings(deadline=None, max_examples=30)
@given(slope=st.floats(min_value=0.0, max_value=1.0))
def test_leaky_relu_gain_matches_second_moment_gain(slope):
    numerical = second_moment_gain(lambda z: nn.functional.leaky_relu(z, slope))
    assert activation_gain("leaky_relu", negative_slope=slope) == pytest.approx(numerical,
                                                                                rel=1e-4)


# --- LSUV ---------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_lsuv_gives_unit_output_variance_on_a_held_out_batch(activation):
    net = gt.DeepMLP(64, 10, 128, 10, activation)
    train_batch = torch.randn(512, 64, generator=gen(1))
    held_out = torch.randn(512, 64, generator=gen(2))
    initialize(net, "lsuv", data=train_batch, generator=gen())
    report = signal_propagation(net, held_out)
    assert len(report.names) == 10
    assert all(abs(v - 1.0) < 0.1 for v in report.forward_variance), report.forward_variance


def test_lsuv_accepts_an_inputs_targets_pair_and_works_with_conv():
    model = nn.Sequential(nn.Conv1d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14, 4))
    x = torch.randn(256, 3, 16, generator=gen())
    initialize(model, "lsuv", data=(x, torch.zeros(256)), tol=0.01, generator=gen())
    report = signal_propagation(model, x)
    assert report.names == ("0", "3")
    assert all(abs(v - 1.0) < 0.01 for v in report.forward_variance)


def test_lsuv_warns_when_a_layer_cannot_reach_unit_variance():
    net = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16))
    with torch.no_grad():  # biases that alone have variance 3: no weight scale gives 1
        net[0].bias.uniform_(-3.0, 3.0, generator=gen())
    x = torch.randn(128, 16, generator=gen(1))
    with pytest.warns(RuntimeWarning, match=r"layer '0' still has output variance"):
        initialize(net, "lsuv", data=x, bias=None, max_iter=3)


# --- signal propagation report --------------------------------------------------------------


def test_signal_report_matches_theory_measure_propagation():
    net = gt.theory.random_mlp(64, 64, 64, 6, "tanh", weight_variance=1.0, seed=0)
    x = torch.randn(300, 64, generator=gen(), dtype=torch.float64)
    ours = signal_propagation(net, x, seed=5)
    theirs = gt.theory.measure_propagation(net, x, seed=5)
    # zero biases and a zero-mean weight draw: variance and mean square nearly agree
    assert torch.allclose(torch.tensor(ours.forward_variance),
                          torch.tensor(theirs.pre_activation), rtol=0.05)
    assert torch.allclose(torch.tensor(ours.backward_variance), torch.tensor(theirs.backward),
                          rtol=0.05)


def test_forward_gain_makes_a_relu_net_flat():
    net = gt.DeepMLP(128, 128, 128, 8, "relu", bias=False).double()
    initialize(net, "xavier_normal", generator=gen())
    x = torch.randn(1000, 128, generator=gen(1), dtype=torch.float64)
    report = signal_propagation(net, x)
    assert 0.4 < float(report.forward_factors[1:].mean()) < 0.6  # ReLU halves under Xavier
    with torch.no_grad():
        for layer, gain in zip(net.linears, report.forward_gain, strict=True):
            layer.weight.mul_(float(gain))
    flat = signal_propagation(net, x)
    assert flat.forward_spread < 1.05
    assert "fwd var" in str(flat)
    assert flat.outputs is None
    kept = signal_propagation(net, x[:10], keep_values=True)
    assert kept.outputs[0].shape == (10 * 128,) and len(kept.output_grads) == 8


def test_signal_report_leaves_parameters_and_grads_untouched():
    net = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1))
    before = [p.detach().clone() for p in net.parameters()]
    signal_propagation(net, torch.randn(10, 3))
    assert all(p.grad is None for p in net.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


# --- bad input ------------------------------------------------------------------------------


def test_unknown_scheme_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown 'he'.*xavier_normal.*lsuv"):
        initialize(nn.Linear(2, 2), "he")
    with pytest.raises(TypeError, match="scheme must be a str"):
        initialize(nn.Linear(2, 2), 3)
    assert len(SCHEMES) == 9


def test_unsupported_layer_is_named():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    with pytest.raises(TypeError, match=r"layer '0' of type Embedding"):
        initialize(model, "xavier_normal")
    initialize(model, "xavier_normal", strict=False)  # leaves the embedding alone
    with pytest.raises(TypeError, match=r"'lsuv' cannot initialize layer 'rnn' of type LSTM"):
        initialize(gt.SequenceModel("lstm", 2, 4, 1), "lsuv", data=torch.randn(8, 5, 2))


def test_lsuv_without_data_and_bad_options():
    with pytest.raises(ValueError, match="lsuv' needs data="):
        initialize(nn.Linear(2, 2), "lsuv")
    with pytest.raises(TypeError, match="data must be a floating-point tensor"):
        initialize(nn.Linear(2, 2), "lsuv", data=[1, 2, 3])
    with pytest.raises(ValueError, match="tol must be a positive number"):
        initialize(nn.Linear(2, 2), "lsuv", data=torch.randn(4, 2), tol=0)
    with pytest.raises(TypeError, match=r"does not take option\(s\) \['std'\]"):
        initialize(nn.Linear(2, 2), "kaiming_normal", std=0.1)
    with pytest.raises(ValueError, match="mode must be 'fan_in' or 'fan_out'"):
        initialize(nn.Linear(2, 2), "kaiming_normal", mode="fan")
    with pytest.raises(TypeError, match="either gain or nonlinearity"):
        initialize(nn.Linear(2, 2), "orthogonal", gain=1.0, nonlinearity="tanh")
    with pytest.raises(ValueError, match="gain must be >= 0"):
        initialize(nn.Linear(2, 2), "orthogonal", gain=-1.0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        initialize(nn.Linear(2, 2), "orthogonal", generator=0)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        initialize("net", "orthogonal")


def test_bad_gain_and_report_input():
    with pytest.raises(ValueError, match=r"unknown activation 'swish'.*gelu"):
        activation_gain("swish")
    with pytest.raises(TypeError, match="activation must be callable"):
        second_moment_gain("relu")
    with pytest.raises(ValueError, match="has no nn.Linear or nn.Conv layers"):
        signal_propagation(nn.Tanh(), torch.randn(4, 2))
    with pytest.raises(ValueError, match="weight must have at least 2 dimensions"):
        fans(torch.ones(3))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_lsuv_and_report_on_cuda():
    net = gt.DeepMLP(32, 4, 64, 5, "relu").cuda()
    x = torch.randn(256, 32, generator=gen())  # on the CPU: moved to the model's device
    cuda_generator = torch.Generator(device="cuda").manual_seed(0)
    initialize(net, "lsuv", data=x, generator=cuda_generator)
    report = signal_propagation(net, x)
    assert net.linears[0].weight.is_cuda
    assert all(abs(v - 1.0) < 0.1 for v in report.forward_variance), report.forward_variance


# --- buffers: BatchNorm running statistics are left as they were ------------------------------


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 4),
                        nn.BatchNorm1d(4, momentum=None))
    with torch.no_grad():  # statistics as if trained a little
        net[1].running_mean.fill_(0.3)
        net[1].running_var.fill_(2.0)
        net[1].num_batches_tracked.fill_(7)
    return net


def _buffers(net: nn.Module) -> dict[str, torch.Tensor]:
    return {name: b.detach().clone() for name, b in net.named_buffers()}


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_signal_propagation_leaves_batchnorm_buffers_untouched(mode):
    net = _bn_net().train(mode == "train")
    before = _buffers(net)
    objects = [b for _, b in net.named_buffers()]
    report = signal_propagation(net, torch.randn(64, 6))
    after = _buffers(net)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before), after
    assert all(a is b for a, b in zip(objects, [b for _, b in net.named_buffers()], strict=True))
    assert net.training == (mode == "train") and len(report.names) == 2


def test_signal_propagation_results_do_not_change_with_buffers_kept():
    # the forward pass still runs in the model's own mode: in training mode BatchNorm uses the
    # batch's statistics, so the report equals one on a fresh copy of the model
    net, data = _bn_net(), torch.randn(64, 6)
    fresh = _bn_net()
    first = signal_propagation(net, data)
    again = signal_propagation(net, data)
    reference = signal_propagation(fresh, data)
    np.testing.assert_array_equal(first.forward_variance, again.forward_variance)
    np.testing.assert_array_equal(first.backward_variance, reference.backward_variance)


def test_lsuv_leaves_batchnorm_buffers_untouched():
    net = _bn_net()
    before = _buffers(net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # BatchNorm follows: may not reach 1
        initialize(net, "lsuv", data=torch.randn(64, 6), generator=gen(0))
    after = _buffers(net)
    assert all(torch.equal(before[name], after[name]) for name in before), after
    assert int(net[1].num_batches_tracked) == 7 and int(net[4].num_batches_tracked) == 0


@pytest.mark.parametrize("scheme", ["orthogonal", "lsuv"])
def test_orthogonal_schemes_work_in_half_precision(scheme):
    # QR has no half-precision kernel on the CPU: the matrix is drawn, then orthogonalised in
    # float32 and stored in the layer's own dtype
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16)).to(torch.bfloat16)
    options = {"data": torch.randn(64, 16, dtype=torch.bfloat16)} if scheme == "lsuv" else {}
    initialize(net, scheme, **options)
    weight = net[0].weight.float()
    assert net[0].weight.dtype == torch.bfloat16
    if scheme == "orthogonal":
        torch.testing.assert_close(weight @ weight.T, torch.eye(16), atol=0.03, rtol=0)


# --- frozen parameters (requires_grad=False) are left alone unless include_frozen=True -------


def _partly_frozen() -> nn.Module:
    torch.manual_seed(0)
    model = nn.ModuleDict({
        "embed": nn.Embedding(10, 4),  # a frozen pretrained embedding: not even strict raises
        "first": nn.Linear(4, 8),  # frozen weight, trainable bias
        "rnn": nn.LSTM(8, 6),  # recurrent weights frozen, input weights trainable
        "head": nn.Linear(6, 2),  # fully trainable
    })
    model["embed"].weight.requires_grad_(False)
    model["first"].weight.requires_grad_(False)
    model["rnn"].weight_hh_l0.requires_grad_(False)
    model["rnn"].bias_ih_l0.requires_grad_(False)
    return model


def test_frozen_parameters_are_left_alone_by_default():
    model = _partly_frozen()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    initialize(model, "orthogonal", forget_bias=1.0, generator=gen())
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"embed.weight", "first.weight", "rnn.weight_hh_l0", "rnn.bias_ih_l0"}
    for name, parameter in model.named_parameters():
        changed = not torch.equal(before[name], parameter.detach())
        assert changed == (name not in frozen), name
    assert model["first"].bias.detach().eq(0).all()  # the layer's trainable bias is still set


def test_include_frozen_draws_every_parameter_and_keeps_requires_grad():
    model = _partly_frozen()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    initialize(model["first"], "orthogonal", include_frozen=True, generator=gen())
    initialize(model["rnn"], "orthogonal", include_frozen=True, forget_bias=1.0, generator=gen())
    assert not torch.equal(before["first.weight"], model["first"].weight.detach())
    assert not torch.equal(before["rnn.weight_hh_l0"], model["rnn"].weight_hh_l0.detach())
    assert model["rnn"].bias_ih_l0.detach()[6:12].eq(1.0).all()
    assert flags == {name: p.requires_grad for name, p in model.named_parameters()}
    with pytest.raises(TypeError, match=r"layer 'embed' of type Embedding"):
        initialize(model, "orthogonal", include_frozen=True)  # the embedding is not skipped now


def test_lsuv_does_not_rescale_a_frozen_layer():
    net = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                        nn.Linear(16, 16))
    with torch.no_grad():
        net[0].weight.mul_(5.0)  # a frozen first layer far from unit variance
    net[0].weight.requires_grad_(False)
    frozen_before = net[0].weight.detach().clone()
    x = torch.randn(512, 16, generator=gen(1))
    initialize(net, "lsuv", data=x, generator=gen())
    assert torch.equal(net[0].weight.detach(), frozen_before)
    report = signal_propagation(net, x)
    assert report.forward_variance[0] > 2.0  # left as it was
    assert all(abs(v - 1.0) < 0.05 for v in report.forward_variance[1:])


def test_strict_and_include_frozen_must_be_bools():
    with pytest.raises(TypeError, match="strict must be a bool"):
        initialize(nn.Embedding(3, 2), "orthogonal", strict="no")
    with pytest.raises(TypeError, match="include_frozen must be a bool"):
        initialize(nn.Linear(3, 2), "orthogonal", include_frozen=1)


# --- other module types -----------------------------------------------------------------------


def test_subclasses_of_torch_recurrent_layers_are_initialized():
    class MyLSTM(nn.LSTM):
        pass

    mine = initialize(MyLSTM(3, 4).double(), "orthogonal", generator=gen())
    theirs = initialize(nn.LSTM(3, 4).double(), "orthogonal", generator=gen())
    for a, b in zip(mine.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("ours", "theirs"), [(gt.cells.LSTMCell, nn.LSTMCell),
                                              (gt.cells.GRUCell, nn.GRUCell)])
def test_gradtext_cells_are_initialized_like_torch_cells(ours, theirs):
    mine = initialize(ours(3, 5).double(), "orthogonal", forget_bias=1.0, generator=gen())
    reference = initialize(theirs(3, 5).double(), "orthogonal", forget_bias=1.0,
                           generator=gen())
    for (name, a), (_, b) in zip(mine.named_parameters(), reference.named_parameters(),
                                 strict=True):
        assert torch.equal(a, b), name


def test_identity_on_a_projected_lstm_is_a_rectangular_identity():
    lstm = initialize(nn.LSTM(3, 8, proj_size=4), "identity", gain=0.9, generator=gen())
    for block in lstm.weight_hh_l0.detach().chunk(4):  # each gate block is 8 x 4
        assert torch.equal(block, 0.9 * torch.eye(8, 4))


# --- inputs and state -------------------------------------------------------------------------


def test_numpy_batches_are_accepted():
    x = np.random.default_rng(0).standard_normal((256, 8))
    net = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8))
    initialize(net, "lsuv", data=x, generator=gen())
    report = signal_propagation(net, x)
    assert all(abs(v - 1.0) < 0.05 for v in report.forward_variance)
    with pytest.raises(TypeError, match="only a model that starts with an embedding"):
        signal_propagation(net, np.zeros((4, 8), dtype=np.int64))
    with pytest.raises(TypeError, match="data must be a floating-point"):
        signal_propagation(net, torch.zeros(4, 8, dtype=torch.bool))


def test_lsuv_and_report_leave_the_global_rng_alone():
    net = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 8))  # training mode
    x = torch.randn(64, 8, generator=gen(1))
    state = torch.random.get_rng_state()
    initialize(net, "lsuv", data=x, generator=gen(), tol=0.5)
    signal_propagation(net, x)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cpu_generator_draws_the_same_weights_for_a_cuda_model():
    on_cpu = initialize(gt.SequenceModel("lstm", 3, 8, 2), "xavier_normal", generator=gen())
    on_cuda = initialize(gt.SequenceModel("lstm", 3, 8, 2).cuda(), "xavier_normal",
                         generator=gen())
    for a, b in zip(on_cpu.parameters(), on_cuda.parameters(), strict=True):
        assert b.is_cuda and torch.equal(a, b.cpu())


def test_a_zero_dimensional_batch_is_refused_by_name():
    with pytest.raises(ValueError, match="data must hold at least 2 examples"):
        signal_propagation(nn.Linear(1, 1), torch.tensor(1.0))
    with pytest.raises(ValueError, match="data must hold at least 2 examples"):
        initialize(nn.Linear(1, 1), "lsuv", data=torch.tensor(1.0))


# --- models and layers whose output is a tuple or dict ---------------------------------------


class _Wrapped(nn.Module):
    """A tanh MLP whose forward returns ``wrap(logits, hidden)`` instead of the logits."""

    def __init__(self, wrap):
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second = nn.Linear(8, 16), nn.Linear(16, 4)
        self.wrap = wrap

    def forward(self, x):
        hidden = torch.tanh(self.first(x))
        return self.wrap(self.second(hidden), hidden)


@pytest.mark.parametrize("wrap", [
    lambda logits, hidden: (logits,),
    lambda logits, hidden: {"logits": logits, "argmax": logits.argmax(-1)},
    lambda logits, hidden: (logits, hidden.detach()),  # nothing to back-propagate through
])
def test_container_outputs_with_one_differentiable_tensor_match_a_plain_output(wrap):
    x = torch.randn(64, 8, generator=gen(1))
    plain = signal_propagation(_Wrapped(lambda logits, hidden: logits), x, seed=3)
    wrapped = signal_propagation(_Wrapped(wrap), x, seed=3)
    assert wrapped.names == plain.names == ("first", "second")
    np.testing.assert_array_equal(wrapped.forward_variance, plain.forward_variance)
    np.testing.assert_array_equal(wrapped.backward_variance, plain.backward_variance)


def test_backward_signal_of_a_tuple_output_is_a_loss_over_every_floating_tensor():
    model = _Wrapped(lambda logits, hidden: (logits, {"aux": hidden.pow(2).mean(-1)}))
    x = torch.randn(64, 8, generator=gen(1))
    report = signal_propagation(model, x, seed=3)
    # by hand: one N(0, 1) noise tensor per output, drawn in order, dotted with it
    noise = torch.Generator().manual_seed(3)
    first = model.first(x)
    hidden = torch.tanh(first)
    logits, aux = model.second(hidden), hidden.pow(2).mean(-1)
    loss = (logits * torch.randn(logits.shape, generator=noise, dtype=torch.float64)).sum() \
        + (aux * torch.randn(aux.shape, generator=noise, dtype=torch.float64)).sum()
    grad_first, grad_logits = torch.autograd.grad(loss, [first, logits])
    expected = [float(grad_first.double().var(unbiased=False)),
                float(grad_logits.double().var(unbiased=False))]
    np.testing.assert_allclose(report.backward_variance, expected, rtol=1e-6)


def test_a_model_ending_in_an_lstm_is_measured():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.LSTM(8, 8, batch_first=True))  # (out, (h, c))
    report = signal_propagation(model, torch.randn(16, 5, 4, generator=gen(1)))
    assert report.names == ("0",)
    assert np.isfinite(report.forward_variance).all() and report.backward_variance[0] > 0


class _LinearWithNorm(nn.Linear):
    """A linear layer that also returns the norm of its output, as a tuple."""

    def forward(self, x):
        out = super().forward(x)
        return out, out.detach().norm()


def test_a_measured_layer_returning_a_tuple_is_measured_on_its_first_tensor():
    torch.manual_seed(0)
    tupled = nn.Sequential(_LinearWithNorm(8, 16), _First(), nn.Tanh(), nn.Linear(16, 4))
    plain = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    plain.load_state_dict({k.replace("3.", "2."): v for k, v in tupled.state_dict().items()})
    x = torch.randn(64, 8, generator=gen(1))
    ours, reference = signal_propagation(tupled, x), signal_propagation(plain, x)
    np.testing.assert_array_equal(ours.forward_variance, reference.forward_variance)
    np.testing.assert_array_equal(ours.backward_variance, reference.backward_variance)
    initialize(tupled, "lsuv", data=x, tol=0.01, generator=gen())  # LSUV measures it too
    assert all(abs(v - 1.0) < 0.01 for v in signal_propagation(tupled, x).forward_variance)


class _First(nn.Module):
    def forward(self, pair):
        return pair[0]


def test_nothing_floating_to_measure_is_refused_by_name():
    class Argmax(nn.Module):
        def forward(self, x):
            return x.argmax(-1)

    net = nn.Sequential(nn.Linear(4, 3), Argmax())
    with pytest.raises(ValueError, match=r"model: its output \(Tensor\) holds no floating"):
        signal_propagation(net, torch.randn(8, 4))
    assert not net[0]._forward_hooks  # hooks removed on the way out
    with pytest.raises(ValueError, match=r"no floating-point output .* requires grad"):
        signal_propagation(_Wrapped(lambda logits, hidden: logits.detach()), torch.randn(8, 8))


def test_a_model_none_of_whose_layers_run_as_modules_is_refused():
    class Attention(nn.Module):  # out_proj's weight is used directly, never called
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            return self.mha(x, x, x)[0]

    with pytest.raises(ValueError, match="none of its nn.Linear or nn.Conv layers ran"):
        signal_propagation(Attention(), torch.randn(4, 3, 8))


# --- shared (tied) weights: drawn and rescaled once ------------------------------------------


def _tied(tie: bool) -> nn.Module:
    first, second = nn.Linear(16, 16), nn.Linear(16, 16)
    if tie:
        second.weight = first.weight
    return nn.Sequential(first, nn.Tanh(), second)


def _first_output_variance(model: nn.Module, x: torch.Tensor) -> float:
    return float(model[0](x).detach().double().var(unbiased=False))


def test_lsuv_scales_a_tied_weight_once_at_its_first_use():
    x = torch.randn(256, 16, generator=gen(1))
    tied = initialize(_tied(True), "lsuv", data=x, tol=0.01, generator=gen())
    untied = initialize(_tied(False), "lsuv", data=x, tol=0.01, generator=gen())
    assert tied[2].weight is tied[0].weight
    assert abs(_first_output_variance(tied, x) - 1.0) < 0.01  # the first use sets the scale
    # drawn once and scaled once: exactly the untied copy's first layer
    assert torch.equal(tied[0].weight, untied[0].weight)
    # the same module called twice is one layer too
    layer = nn.Linear(16, 16)
    twice = initialize(nn.Sequential(layer, nn.Tanh(), layer), "lsuv", data=x, tol=0.01,
                       generator=gen())
    assert torch.equal(twice[0].weight, untied[0].weight)


def test_a_tied_weight_is_drawn_once_by_every_scheme():
    tied = initialize(_tied(True), "xavier_normal", generator=gen())
    untied = initialize(_tied(False), "xavier_normal", generator=gen())
    assert torch.equal(tied[0].weight, untied[0].weight)


def test_bad_lsuv_options_leave_the_model_unchanged():
    net = _tied(False)
    before = [p.detach().clone() for p in net.parameters()]
    x = torch.randn(8, 16)
    with pytest.raises(ValueError, match="tol must be a positive number"):
        initialize(net, "lsuv", data=x, tol=-1.0)
    with pytest.raises(ValueError, match="max_iter must be an int >= 1"):
        initialize(net, "lsuv", data=x, max_iter=0)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def _language_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(50, 16), nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64),
                         nn.ReLU(), nn.Linear(64, 50))


def test_signal_propagation_takes_token_ids_for_a_model_that_starts_with_an_embedding():
    model = _language_model()
    ids = torch.randint(0, 50, (32, 12), generator=gen())
    report = signal_propagation(model, ids)
    assert report.names == ("1", "3", "5")
    assert math.isnan(report.input_variance) and math.isnan(report.input_grad_variance)
    # the first layer's statistics are those of the embedded batch, computed by hand
    embedded = model[0](ids).detach().requires_grad_(True)
    first = model[1](embedded)
    expected = float(first.detach().double().var(unbiased=False))
    assert report.forward_variance[0] == pytest.approx(expected)
    assert np.isnan(report.forward_factors[0]) and np.all(np.isfinite(report.forward_factors[1:]))
    assert np.all(np.isfinite(report.backward_variance)) and np.all(report.backward_variance > 0)


def test_lsuv_takes_token_ids_for_a_model_that_starts_with_an_embedding():
    model = _language_model()
    ids = torch.randint(0, 50, (256, 12), generator=gen())
    initialize(model, "lsuv", data=ids, generator=gen(), strict=False)  # the embedding stays
    report = signal_propagation(model, ids)
    assert all(abs(v - 1.0) < 0.05 for v in report.forward_variance)
