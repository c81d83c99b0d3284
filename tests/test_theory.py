"""Tests for gradtext.theory: predictions against Monte-Carlo measurements, Jacobians against
torch.autograd, power iteration against the SVD, Pascanu's bound on random RNNs, bad input."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from gradtext import cells as gradtext_cells
from gradtext import theory
from gradtext.models import DeepMLP, ScalarRNN, SequenceModel, make_activation


def gaussian_mlp(width, depth, activation, weight_variance, seed):
    return theory.random_mlp(width, width, width, depth, activation, weight_variance, seed=seed)


def normal_batch(n, features, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=generator, dtype=torch.float64)


# --- activations --------------------------------------------------------------------------


def test_derivative_bounds_are_pascanus_gammas():
    assert theory.derivative_bound("sigmoid") == pytest.approx(0.25, abs=1e-12)
    assert theory.derivative_bound("tanh") == pytest.approx(1.0, abs=1e-12)
    assert theory.derivative_bound("relu") == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "gelu", "linear"])
@pytest.mark.parametrize("q", [0.01, 1.0, 25.0])
def test_gaussian_moments_match_monte_carlo(activation, q):
    z = math.sqrt(q) * torch.randn(400_000, generator=torch.Generator().manual_seed(0),
                                   dtype=torch.float64).requires_grad_(True)
    y = make_activation(activation)(z)
    (dy,) = torch.autograd.grad(y.sum(), z)
    forward, backward = theory.gaussian_moments(activation, q)
    assert forward == pytest.approx(float(y.detach().pow(2).mean()), rel=0.01)
    assert backward == pytest.approx(float(dy.pow(2).mean()), rel=0.01)


def test_relu_moments_are_exactly_half():
    forward, backward = theory.gaussian_moments("relu", 7.0)
    assert forward == pytest.approx(3.5, rel=1e-9)
    assert backward == pytest.approx(0.5, rel=1e-9)


# --- variance propagation -------------------------------------------------------------------


@pytest.mark.parametrize(
    "activation, weight_variance, width, depth",
    [
        ("relu", 2.0, 256, 10),   # He
        ("relu", 1.0, 256, 10),   # Xavier on ReLU: halves every layer
        ("tanh", 1.0, 256, 10),
        ("tanh", 2.0, 128, 15),
        ("sigmoid", 16.0, 256, 8),
        ("linear", 1.0, 128, 15),
        ("gelu", 2.0, 256, 8),
    ],
)
def test_propagation_prediction_matches_monte_carlo(activation, weight_variance, width, depth):
    """Tolerances: the per-layer forward factor (geometric mean over layers and 3 networks)
    within 4%; every layer's mean square pre-activation within 30%; every layer's backward
    signal (relative to the output layer) within 30%. Finite-width fluctuations grow like
    sqrt(depth / width), which these sizes keep small."""
    predicted = theory.propagate_variance([width] * (depth + 1), activation, weight_variance)
    log_forward, ratios_q, ratios_b = [], [], []
    for seed in range(3):
        net = gaussian_mlp(width, depth, activation, weight_variance, seed)
        measured = theory.measure_propagation(net, normal_batch(512, width, seed + 10), seed=seed)
        log_forward.append(np.log(measured.forward_factors / predicted.forward_factors))
        ratios_q.append(measured.pre_activation / predicted.pre_activation)
        relative = measured.backward / measured.backward[-1]
        ratios_b.append(relative / predicted.backward)
    assert abs(np.mean(log_forward)) < 0.04
    assert np.all(np.abs(np.log(np.mean(ratios_q, axis=0))) < math.log(1.3))
    assert np.all(np.abs(np.log(np.mean(ratios_b, axis=0))) < math.log(1.3))


def test_weight_gradients_are_flat_under_xavier_tanh_as_glorot_predicts():
    """Glorot & Bengio: with Xavier tanh the backward signal shrinks going down while the
    activations grow, so the weight-gradient scale is nearly flat; predicted and measured
    agree within 30% at every layer."""
    predicted = theory.propagate_variance([256] * 9, "tanh", 1.0)
    net = gaussian_mlp(256, 8, "tanh", 1.0, 0)
    measured = theory.measure_propagation(net, normal_batch(512, 256, 0))
    relative = measured.weight_gradient / measured.backward[-1]
    assert np.all(np.abs(np.log(relative / predicted.weight_gradient)) < math.log(1.3))
    assert predicted.weight_gradient.max() / predicted.weight_gradient.min() < 2.0


def test_he_factor_two_keeps_relu_variance_and_xavier_halves_it():
    he = theory.propagate_variance([64] * 9, "relu", 2.0)
    xavier = theory.propagate_variance([64] * 9, "relu", 1.0)
    np.testing.assert_allclose(he.forward_factors, 1.0, rtol=1e-9)
    np.testing.assert_allclose(xavier.forward_factors, 0.5, rtol=1e-9)
    np.testing.assert_allclose(xavier.backward_factors, 0.5, rtol=1e-9)


def test_backward_factor_includes_the_fan_ratio():
    # A linear net with widths 10 -> 40 -> 20 -> 5: chi_l = fan_out / fan_in of the layer above.
    prediction = theory.propagate_variance([10, 40, 20, 5], "linear", 1.0)
    np.testing.assert_allclose(prediction.backward, [20 / 40 * 5 / 20, 5 / 20, 1.0])


def test_per_layer_weight_variance_and_bias_variance():
    prediction = theory.propagate_variance([8, 8, 8], "linear", [2.0, 3.0], bias_variance=0.5,
                                           input_variance=4.0)
    np.testing.assert_allclose(prediction.pre_activation, [8.5, 3.0 * 8.5 + 0.5])
    np.testing.assert_allclose(prediction.weight_gradient, prediction.backward * [4.0, 8.5])


@pytest.mark.parametrize("activation, expected", [("relu", 2.0), ("linear", 1.0), ("tanh", 1.0)])
def test_critical_weight_variance_known_values(activation, expected):
    assert theory.critical_weight_variance(activation) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_critical_weight_variance_separates_measured_vanishing_from_exploding(activation):
    """Measured per-layer backward factor (geometric mean over the deeper half of 20 layers,
    where the forward signal has settled, and 2 networks): below 0.8 at half the critical
    variance, above 1.1 at three times it (tanh predicts 0.5 and 1.24 there)."""
    critical = theory.critical_weight_variance(activation)
    factors = {}
    for multiple in [0.5, 3.0]:
        logs = []
        for seed in range(2):
            net = gaussian_mlp(128, 20, activation, critical * multiple, seed)
            measured = theory.measure_propagation(net, normal_batch(256, 128, seed), seed=seed)
            logs.append(np.log(measured.backward_factors[9:]))
        factors[multiple] = float(np.exp(np.mean(logs)))
    assert factors[0.5] < 0.8
    assert factors[3.0] > 1.1


def test_random_mlp_draws_the_ensemble_the_theory_describes():
    net = theory.random_mlp(200, 50, 400, 3, "tanh", 1.5, bias_variance=0.25, seed=3)
    assert [tuple(layer.weight.shape) for layer in net.linears] == [(400, 200), (400, 400),
                                                                    (50, 400)]
    for layer in net.linears:
        assert layer.weight.dtype == torch.float64
        variance = float(layer.weight.detach().var() * layer.in_features)
        assert variance == pytest.approx(1.5, rel=0.05)
    biases = torch.cat([layer.bias.detach() for layer in net.linears])
    assert float(biases.var()) == pytest.approx(0.25, rel=0.15)
    again = theory.random_mlp(200, 50, 400, 3, "tanh", 1.5, bias_variance=0.25, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), again.parameters(),
                                                 strict=True))


def test_measure_propagation_leaves_the_model_alone():
    net = gaussian_mlp(16, 3, "tanh", 1.0, 0)
    before = [p.clone() for p in net.parameters()]
    theory.measure_propagation(net, normal_batch(8, 16, 0))
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert all(p.grad is None for p in net.parameters())


# --- Jacobians ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [
        DeepMLP(5, 3, width=7, depth=4, activation="tanh"),
        DeepMLP(3, 6, width=4, depth=3, activation="relu"),
        nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2)),
    ],
)
def test_jacobian_matches_torch_autograd(model):
    torch.manual_seed(0)
    model = model.double()
    x = torch.randn(_in_features(model), dtype=torch.float64)
    expected = torch.autograd.functional.jacobian(lambda v: model(v.unsqueeze(0))[0], x)
    torch.testing.assert_close(theory.input_output_jacobian(model, x), expected)
    singular = theory.jacobian_singular_values(model, x)
    np.testing.assert_allclose(singular, np.linalg.svd(expected.numpy(), compute_uv=False),
                               rtol=1e-10, atol=1e-12)
    assert isinstance(singular, np.ndarray)
    assert np.all(np.diff(singular) <= 0)  # largest first


def _in_features(model):
    first = model.linears[0] if isinstance(model, DeepMLP) else model[0]
    return first.in_features


@pytest.mark.parametrize("shape", [(12, 12), (12, 5), (5, 12)])
@pytest.mark.parametrize("seed", [0, 1])
def test_power_iteration_agrees_with_exact_svd(shape, seed):
    torch.manual_seed(seed)
    in_features, out_features = shape
    model = DeepMLP(in_features, out_features, width=16, depth=3, activation="tanh").double()
    x = torch.randn(in_features, dtype=torch.float64)
    exact = theory.jacobian_singular_values(model, x)
    largest, smallest = theory.extreme_singular_values(model, x, iterations=5000, tol=1e-13)
    assert largest == pytest.approx(exact[0], rel=1e-3)
    # sigma_min comes from the shifted operator sigma_max^2 I - A, so its error is relative to
    # sigma_max: a tiny sigma_min is found as "tiny", not to 1%.
    assert smallest == pytest.approx(exact[-1], abs=1e-2 * exact[0])


def test_power_iteration_sigma_min_on_a_well_conditioned_jacobian():
    torch.manual_seed(0)
    model = DeepMLP(10, 10, width=10, depth=3, activation="tanh", bias=False).double()
    for layer in model.linears:
        nn.init.orthogonal_(layer.weight)
        with torch.no_grad():
            layer.weight.mul_(torch.linspace(0.6, 1.4, 10, dtype=torch.float64)[:, None])
    x = 0.1 * torch.randn(10, dtype=torch.float64)
    exact = theory.jacobian_singular_values(model, x)
    largest, smallest = theory.extreme_singular_values(model, x, iterations=5000, tol=1e-14)
    assert largest == pytest.approx(exact[0], rel=1e-3)
    assert smallest == pytest.approx(exact[-1], rel=1e-2)


def test_spectrum_spread_values():
    assert theory.spectrum_spread(np.ones(5)) == 0.0
    # squares [4, 0]: mean 2, variance 4 -> 1
    assert theory.spectrum_spread([2.0, 0.0]) == pytest.approx(1.0)
    assert theory.spectrum_spread([3.0, 3.0, 0.0]) == pytest.approx(0.5)


def test_spread_widens_with_depth_for_gaussian_but_not_orthogonal_tanh():
    """Pennington et al.'s result at small size: width 64, depths 4 and 16, critical tanh."""
    spreads = {}
    for init in ["gaussian", "orthogonal"]:
        for depth in [4, 16]:
            torch.manual_seed(0)
            net = DeepMLP(64, 64, 64, depth, "tanh", bias=False).double()
            for layer in net.linears:
                if init == "orthogonal":
                    nn.init.orthogonal_(layer.weight)
                else:
                    nn.init.normal_(layer.weight, std=1 / math.sqrt(64))
            x = 0.1 * torch.randn(64, dtype=torch.float64)
            spreads[init, depth] = theory.spectrum_spread(theory.jacobian_singular_values(net, x))
    assert spreads["gaussian", 16] > 2 * spreads["gaussian", 4] > 1.0
    assert spreads["orthogonal", 16] < 0.1


# --- recurrent nets -------------------------------------------------------------------------


def _brute_force_rnn_norms(rnn, sequence):
    """||dh_T/dh_{T-k}|| by differentiating PyTorch's fused nn.RNN itself."""
    steps = sequence.shape[0]
    norms = [1.0]
    for k in range(1, steps + 1):
        prefix = sequence[: steps - k].unsqueeze(0)
        h_start = (rnn(prefix)[1] if steps - k > 0
                   else torch.zeros(1, 1, rnn.hidden_size, dtype=torch.float64))
        suffix = sequence[steps - k:].unsqueeze(0)

        def last_state(h, suffix=suffix):
            return rnn(suffix, h.view(1, 1, -1))[1].view(-1)

        jac = torch.autograd.functional.jacobian(last_state, h_start.view(-1).detach())
        norms.append(float(torch.linalg.matrix_norm(jac, ord=2)))
    return np.array(norms)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_jacobian_norms_match_autograd_through_nn_rnn(nonlinearity):
    torch.manual_seed(0)
    rnn = nn.RNN(3, 6, batch_first=True, nonlinearity=nonlinearity).double()
    sequence = torch.randn(8, 3, dtype=torch.float64)
    np.testing.assert_allclose(theory.rnn_jacobian_norms(rnn, sequence),
                               _brute_force_rnn_norms(rnn, sequence), rtol=1e-9, atol=1e-14)


def test_rnn_jacobian_norms_batch_sequence_model_and_generic_cell_agree():
    torch.manual_seed(1)
    model = SequenceModel("rnn", input_size=2, hidden_size=10, output_size=1)
    batch = torch.randn(3, 12, 2)
    norms = theory.rnn_jacobian_norms(model, batch)
    assert norms.shape == (3, 13)
    np.testing.assert_allclose(norms[:, 0], 1.0)
    np.testing.assert_allclose(norms[1], theory.rnn_jacobian_norms(model.rnn, batch[1]))
    cell = nn.RNNCell(2, 10).double()
    with torch.no_grad():
        for mine, theirs in zip(cell.parameters(), model.rnn.parameters(), strict=True):
            mine.copy_(theirs)
    generic = theory.cell_jacobian_norms(cell, batch, torch.zeros(10))
    np.testing.assert_allclose(generic, norms, rtol=1e-9)


def test_rnn_jacobian_norms_respects_h0_and_time_major_rnn():
    torch.manual_seed(2)
    rnn = nn.RNN(2, 5)  # batch_first=False: inputs are (time, batch, features)
    inputs = torch.randn(7, 4, 2)
    h0 = torch.randn(4, 5)
    norms = theory.rnn_jacobian_norms(rnn, inputs, h0=h0)
    assert norms.shape == (4, 8)
    single = theory.rnn_jacobian_norms(rnn, inputs[:, 0], h0=h0[0])
    np.testing.assert_allclose(norms[0], single, rtol=1e-12)


def test_default_rnn_gradients_vanish_through_time_bengio_1994():
    """PAPERS.md: hidden 32, default init, T = 60: ||dh_T/dh_{T-50}|| < 1e-6 ||dh_T/dh_{T-1}||
    and a fitted per-step factor below 0.9."""
    for seed in range(3):
        torch.manual_seed(seed)
        rnn = nn.RNN(2, 32, batch_first=True)
        norms = theory.rnn_jacobian_norms(rnn, torch.randn(60, 2))
        assert norms[50] < 1e-6 * norms[1]
        assert theory.fit_decay_rate(norms) < 0.9


@settings(deadline=None, max_examples=40)
@given(
    hidden=st.integers(1, 12),
    steps=st.integers(1, 30),
    sigma_max=st.floats(0.05, 2.0),
    nonlinearity=st.sampled_from(["tanh", "relu"]),
    input_scale=st.floats(0.0, 5.0),
    seed=st.integers(0, 2**16),
)
def test_pascanu_bound_is_never_violated(hidden, steps, sigma_max, nonlinearity, input_scale,
                                         seed):
    """||dh_T/dh_{T-k}|| <= sigma_max(W_hh)^k, since tanh' <= 1 and relu' <= 1."""
    torch.manual_seed(seed)
    rnn = nn.RNN(2, hidden, batch_first=True, nonlinearity=nonlinearity).double()
    with torch.no_grad():
        weight = torch.randn(hidden, hidden, dtype=torch.float64)
        rnn.weight_hh_l0.copy_(weight * sigma_max / torch.linalg.matrix_norm(weight, ord=2))
    norms = theory.rnn_jacobian_norms(rnn, input_scale * torch.randn(steps, 2, dtype=torch.float64))
    bound = sigma_max ** np.arange(steps + 1)
    assert np.all(norms <= bound * (1 + 1e-9) + 1e-300)


def test_pascanu_regime_on_models_and_matrices():
    rnn = nn.RNN(1, 4)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(0.9 * torch.eye(4))
    regime = theory.pascanu_regime(rnn)
    assert regime.vanishing_guaranteed and not regime.explosion_possible
    assert regime.sigma_max == pytest.approx(0.9) and regime.threshold == pytest.approx(1.0)
    assert "0.9" in regime.reason and "vanishing" in regime.reason
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(1.5 * torch.eye(4))
    assert theory.pascanu_regime(rnn).regime == "may explode"
    model = SequenceModel("rnn", 1, 4, 1)
    assert theory.pascanu_regime(model).gamma == pytest.approx(1.0)
    cell = nn.RNNCell(1, 3, nonlinearity="relu")
    assert theory.pascanu_regime(cell).gamma == pytest.approx(1.0)
    # sigmoid: gamma = 1/4, so the threshold is 4
    assert theory.pascanu_regime(3.9 * torch.eye(3), "sigmoid").regime == "vanishing"
    assert theory.pascanu_regime(4.1 * torch.eye(3), "sigmoid").regime == "may explode"


def test_large_sigma_max_permits_but_does_not_force_explosion():
    """PAPERS.md: sigma_max = 3 kept ||dh_T/dh_{T-k}|| between 0.03 and 9: saturation."""
    torch.manual_seed(0)
    rnn = nn.RNN(2, 32, batch_first=True).double()
    with torch.no_grad():
        weight = rnn.weight_hh_l0
        weight.mul_(3.0 / torch.linalg.matrix_norm(weight, ord=2))
    norms = theory.rnn_jacobian_norms(rnn, torch.randn(60, 2, dtype=torch.float64))
    assert theory.pascanu_regime(rnn).explosion_possible
    # the bound allows 3^60 ~ 4e28; measured 7-41 for seeds 0-2 (saturated units contract)
    assert norms.max() < 1e3


def test_fit_decay_rate():
    assert theory.fit_decay_rate(3.0 * 0.7 ** np.arange(30)) == pytest.approx(0.7)
    assert theory.fit_decay_rate(1.1 ** np.arange(10), start=0) == pytest.approx(1.1)


# --- state_decay: how fast any recurrent model forgets ---------------------------------------


def _brute_force_state_norms(layer, sequence):
    """||ds_T/ds_{T-k}|| by differentiating PyTorch's fused nn.LSTM/nn.GRU (batch_first) itself;
    the state s is h, or h and c concatenated for an LSTM."""
    steps, hidden = sequence.shape[0], layer.hidden_size
    lstm = isinstance(layer, nn.LSTM)
    norms = [1.0]
    for k in range(1, steps + 1):
        zeros = torch.zeros(1, 1, hidden, dtype=torch.float64)
        if steps - k > 0:
            state = layer(sequence[: steps - k].unsqueeze(0))[1]
        else:
            state = (zeros, zeros) if lstm else zeros
        start = torch.cat([s.view(-1) for s in state]) if lstm else state.view(-1)
        suffix = sequence[steps - k:].unsqueeze(0)

        def last_state(s, suffix=suffix):
            if lstm:
                h, c = layer(suffix, (s[:hidden].view(1, 1, -1), s[hidden:].view(1, 1, -1)))[1]
                return torch.cat([h.view(-1), c.view(-1)])
            return layer(suffix, s.view(1, 1, -1))[1].view(-1)

        jac = torch.autograd.functional.jacobian(last_state, start.detach())
        norms.append(float(torch.linalg.matrix_norm(jac, ord=2)))
    return np.array(norms)


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
def test_state_decay_matches_autograd_through_fused_lstm_and_gru(kind):
    torch.manual_seed(3)
    layer = kind(2, 5, batch_first=True).double()
    sequence = torch.randn(9, 2, dtype=torch.float64)
    result = theory.state_decay(layer, sequence)
    expected = _brute_force_state_norms(layer, sequence)
    np.testing.assert_allclose(result.norms, expected, rtol=1e-9, atol=1e-14)
    assert result.rate == pytest.approx(theory.fit_decay_rate(expected))


def test_state_decay_is_the_same_for_every_form_of_one_lstm():
    torch.manual_seed(4)
    model = SequenceModel("lstm", input_size=2, hidden_size=6, output_size=1)
    batch = torch.randn(3, 15, 2)
    reference = theory.state_decay(model, batch)
    assert reference.norms.shape == (16,) and reference.norms[0] == pytest.approx(1.0)
    # the geometric mean over the batch of the per-sequence curves
    singles = np.stack([theory.state_decay(model, batch[i]).norms for i in range(3)])
    np.testing.assert_allclose(reference.norms, np.exp(np.log(singles).mean(axis=0)), rtol=1e-12)
    time_major = nn.LSTM(2, 6)  # batch_first=False: inputs are (time, batch, features)
    torch_cell = nn.LSTMCell(2, 6)
    with torch.no_grad():
        for name, parameter in model.rnn.named_parameters():
            getattr(time_major, name).copy_(parameter)
            getattr(torch_cell, name.removesuffix("_l0")).copy_(parameter)
    ours = gradtext_cells.LSTMCell.from_torch(torch_cell)
    for other, inputs in [(model.rnn, batch), (time_major, batch.transpose(0, 1)),
                          (torch_cell, batch), (ours, batch)]:
        result = theory.state_decay(other, inputs)
        np.testing.assert_allclose(result.norms, reference.norms, rtol=1e-10)
        assert result.rate == pytest.approx(reference.rate, rel=1e-10)


def test_state_decay_of_an_rnn_agrees_with_rnn_jacobian_norms_and_the_cell_path():
    torch.manual_seed(5)
    rnn = nn.RNN(2, 8, batch_first=True)
    cell = nn.RNNCell(2, 8)
    with torch.no_grad():
        for name, parameter in rnn.named_parameters():
            getattr(cell, name.removesuffix("_l0")).copy_(parameter)
    sequence = torch.randn(20, 2)
    direct = theory.rnn_jacobian_norms(rnn, sequence)
    np.testing.assert_allclose(theory.state_decay(rnn, sequence).norms, direct, rtol=1e-12)
    np.testing.assert_allclose(theory.state_decay(cell, sequence).norms, direct, rtol=1e-9)


def test_state_decay_recovers_a_known_factor_and_its_time_constant():
    # ReLU units that are always on: every step's Jacobian is W_hh = 0.6 I exactly
    rnn = nn.RNN(1, 4, batch_first=True, nonlinearity="relu").double()
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(0.6 * torch.eye(4, dtype=torch.float64))
        rnn.weight_ih_l0.fill_(1.0)
        rnn.bias_ih_l0.fill_(0.5)
        rnn.bias_hh_l0.zero_()
    result = theory.state_decay(rnn, torch.rand(2, 12, 1, dtype=torch.float64))
    np.testing.assert_allclose(result.norms, 0.6 ** np.arange(13), rtol=1e-12)
    assert result.rate == pytest.approx(0.6)
    assert result.time_constant == pytest.approx(-1 / math.log(0.6))
    assert theory.StateDecay(norms=np.ones(3), rate=1.2).time_constant == math.inf


def test_state_decay_of_units_that_are_all_off_is_zero():
    rnn = nn.RNN(1, 3, batch_first=True, nonlinearity="relu")
    with torch.no_grad():
        for parameter in rnn.parameters():
            parameter.fill_(-1.0)
    result = theory.state_decay(rnn, torch.rand(10, 1))
    assert result.rate == 0.0 and result.time_constant == 0.0
    assert result.norms[0] == 1.0 and np.all(result.norms[1:] == 0)


def test_state_decay_leaves_the_model_alone():
    torch.manual_seed(6)
    model = SequenceModel("gru", input_size=2, hidden_size=4, output_size=1)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    theory.state_decay(model, torch.randn(2, 6, 2))
    for name, parameter in model.named_parameters():
        assert parameter.dtype == torch.float32
        assert torch.equal(parameter, before[name])


def test_state_decay_rejects_bad_input():
    with pytest.raises(TypeError, match="model must be an nn.RNN, nn.LSTM"):
        theory.state_decay(nn.Linear(2, 2), torch.randn(5, 2))
    with pytest.raises(ValueError, match="num_layers=1"):
        theory.state_decay(nn.LSTM(2, 3, num_layers=2, batch_first=True), torch.randn(5, 2))
    with pytest.raises(ValueError, match="bidirectional"):
        theory.state_decay(nn.GRU(2, 3, bidirectional=True, batch_first=True), torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"inputs must be \(time, 2\)"):
        theory.state_decay(nn.GRU(2, 3, batch_first=True), torch.randn(5, 3))
    with pytest.raises(ValueError, match="start must leave at least two points"):
        theory.state_decay(nn.GRU(2, 3, batch_first=True), torch.randn(5, 2), start=5)
    with pytest.raises(ValueError, match="start must be an int >= 0"):
        theory.state_decay(nn.GRU(2, 3, batch_first=True), torch.randn(5, 2), start=-1)


# --- the scalar RNN and its cliff -----------------------------------------------------------


def test_scalar_rnn_loss_and_gradient_match_the_model():
    problem = theory.ScalarRNNProblem(x0=0.5, steps=50, target=0.7)
    for w, b in [(5.0, -2.5), (-1.0, 3.0), (8.0, -4.0)]:
        net = ScalarRNN(w, b, steps=50)
        loss = (net(torch.tensor(0.5, dtype=torch.float64)) - 0.7) ** 2
        loss.backward()
        value, gradient = problem.loss_and_gradient(w, b)
        assert float(value) == pytest.approx(loss.item(), rel=1e-12)
        np.testing.assert_allclose(gradient, [float(net.w.grad), float(net.b.grad)], rtol=1e-10)


def test_loss_surface_grid_orientation():
    w, b = np.linspace(-2, 10, 4), np.linspace(-5, 1, 3)
    surface = theory.scalar_rnn_loss_surface(w, b)
    assert surface.loss.shape == (3, 4)
    value, gradient = theory.ScalarRNNProblem().loss_and_gradient(w[2], b[1])
    assert surface.loss[1, 2] == pytest.approx(float(value))
    assert surface.grad_norm[1, 2] == pytest.approx(float(np.linalg.norm(gradient)))


def test_steepest_point_finds_the_cliff_and_descent_jumps_off_it():
    cliff = theory.steepest_point((4.0, -3.0), (8.0, -3.0))
    assert cliff.max_grad_norm > 1e4
    assert cliff.max_grad_norm >= cliff.grad_norm.max()
    start = (cliff.w - 0.3, cliff.b)
    unclipped = theory.scalar_rnn_descent(start, lr=0.01, steps=100)
    clipped = theory.scalar_rnn_descent(start, lr=0.01, steps=100,
                                        clip=lambda g: g * min(1.0, 1.0 / np.linalg.norm(g)))
    assert clipped.largest_step <= 0.01 * (1 + 1e-12)
    assert unclipped.largest_step > 100 * clipped.largest_step
    assert unclipped.params.shape == (101, 2) and unclipped.loss.shape == (101,)


def test_descent_is_deterministic_and_stops_on_nonfinite():
    first = theory.scalar_rnn_descent((5.0, -2.5), lr=0.01, steps=20)
    second = theory.scalar_rnn_descent((5.0, -2.5), lr=0.01, steps=20)
    np.testing.assert_array_equal(first.params, second.params)
    runaway = theory.scalar_rnn_descent((5.0, -2.5), lr=1e300, steps=20)
    assert len(runaway.params) < 21
    assert not np.all(np.isfinite(runaway.params[-1])) or not np.isfinite(runaway.loss[-1])


# --- bad input ------------------------------------------------------------------------------


def test_bad_input_gets_clear_errors():
    net = DeepMLP(3, 2, 4, 2)
    with pytest.raises(ValueError, match="activation"):
        theory.propagate_variance([4, 4], "swish-ish", 1.0)
    with pytest.raises(TypeError, match="activation"):
        theory.derivative_bound(3)
    with pytest.raises(ValueError, match="widths"):
        theory.propagate_variance([4], "tanh", 1.0)
    with pytest.raises(ValueError, match="weight_variance"):
        theory.propagate_variance([4, 4, 4], "tanh", [1.0])
    with pytest.raises(ValueError, match="weight_variance"):
        theory.propagate_variance([4, 4], "tanh", -1.0)
    with pytest.raises(ValueError, match="q must be"):
        theory.gaussian_moments("tanh", float("nan"))
    with pytest.raises(ValueError, match="weight_variance"):
        theory.random_mlp(3, 2, 4, 2, "tanh", -1.0)
    with pytest.raises(TypeError, match="seed"):
        theory.random_mlp(3, 2, 4, 2, "tanh", 1.0, seed=0.5)
    with pytest.raises(TypeError, match="DeepMLP"):
        theory.measure_propagation(nn.Linear(3, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="x must have 3 features"):
        theory.measure_propagation(net, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="x must be 1-D"):
        theory.jacobian_singular_values(net, torch.zeros(2, 3))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        theory.jacobian_singular_values(net, [0.0, 0.0, 0.0])
    with pytest.raises(TypeError, match="model must be callable"):
        theory.jacobian_singular_values("net", torch.zeros(3))
    with pytest.raises(ValueError, match="iterations"):
        theory.extreme_singular_values(net, torch.zeros(3), iterations=0)
    with pytest.raises(ValueError, match="singular_values"):
        theory.spectrum_spread([])
    with pytest.raises(ValueError, match="all zero"):
        theory.spectrum_spread([0.0, 0.0])
    with pytest.raises(TypeError, match="SequenceModel with cell='rnn'"):
        theory.rnn_jacobian_norms(nn.LSTM(2, 3), torch.zeros(4, 2))
    with pytest.raises(TypeError, match="cell='lstm'"):
        theory.rnn_jacobian_norms(SequenceModel("lstm", 2, 3, 1), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="single-layer"):
        theory.rnn_jacobian_norms(nn.RNN(2, 3, num_layers=2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="inputs must be"):
        theory.rnn_jacobian_norms(nn.RNN(2, 3), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="h0 must be"):
        theory.rnn_jacobian_norms(nn.RNN(2, 3), torch.zeros(4, 2), h0=torch.zeros(4))
    with pytest.raises(ValueError, match="activation is required"):
        theory.pascanu_regime(torch.eye(3))
    with pytest.raises(ValueError, match="square"):
        theory.pascanu_regime(torch.ones(2, 3), "tanh")
    with pytest.raises(TypeError, match="model must be"):
        theory.pascanu_regime(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="steps"):
        theory.ScalarRNNProblem(steps=0)
    with pytest.raises(ValueError, match="start"):
        theory.scalar_rnn_descent((1.0,), lr=0.1, steps=3)
    with pytest.raises(TypeError, match="clip"):
        theory.scalar_rnn_descent((1.0, 0.0), lr=0.1, steps=3, clip=1.0)
    with pytest.raises(ValueError, match="w must be"):
        theory.scalar_rnn_loss_surface([1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="points"):
        theory.steepest_point((0.0, 0.0), (1.0, 1.0), points=2)
    with pytest.raises(ValueError, match="norms"):
        theory.fit_decay_rate(np.zeros(5))


def test_input_output_jacobian_says_what_it_supports():
    doc = theory.input_output_jacobian.__doc__
    assert "any batch-first model works" not in doc
    assert "(batch, features)" in doc and "not supported" in doc
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 5 * 5, 3))
    with pytest.raises(ValueError, match=r"x must be 1-D: one input vector.*\(3, 5, 5\)"):
        theory.input_output_jacobian(cnn, torch.randn(3, 5, 5))
    with pytest.raises(ValueError, match="images, sequences.*not supported"):
        theory.extreme_singular_values(cnn, torch.randn(1, 3, 5, 5))


def test_state_decay_of_a_time_major_rnn_matches_the_batch_first_one():
    torch.manual_seed(7)
    time_major = nn.RNN(2, 8)  # PyTorch's default layout: (time, batch, features)
    batch_first = nn.RNN(2, 8, batch_first=True)
    batch_first.load_state_dict(time_major.state_dict())
    batch = torch.randn(3, 30, 2)
    expected = theory.state_decay(batch_first, batch)
    assert expected.norms.shape == (31,)
    result = theory.state_decay(time_major, batch.transpose(0, 1))
    np.testing.assert_allclose(result.norms, expected.norms, rtol=1e-12)
    single = theory.state_decay(time_major, batch[0])  # one sequence: (time, features)
    np.testing.assert_allclose(single.norms, theory.state_decay(batch_first, batch[0]).norms)
    assert time_major.weight_hh_l0.dtype == torch.float32 and not time_major.batch_first


def test_selu_and_mish_are_known_to_theory_as_to_init():
    # SELU's slope is lambda on the right of 0 and lambda * alpha just left of it; with zero bias
    # its critical point is the small-signal one, where E[phi'^2] = lambda^2 (1 + alpha^2) / 2
    lam, alpha = 1.0507009873554805, 1.6732632423543772
    expected = 2 / (lam**2 * (1 + alpha**2))
    assert theory.critical_weight_variance("selu") == pytest.approx(expected, rel=1e-3)
    assert theory.derivative_bound("selu") == pytest.approx(lam * alpha, rel=1e-3)
    # Mish grows like ReLU for large inputs: the large-signal branch gives ReLU's 2
    assert theory.critical_weight_variance("mish") == pytest.approx(2.0, rel=1e-2)
    assert isinstance(make_activation("SELU"), nn.SELU) and isinstance(make_activation("mish"),
                                                                          nn.Mish)


# --- review: inputs a practitioner passes ------------------------------------------------------


def test_measure_propagation_works_on_a_frozen_model_and_under_inference_mode():
    net = gaussian_mlp(16, 3, "tanh", 1.0, 0)
    x = normal_batch(32, 16, 0)
    expected = theory.measure_propagation(net, x)
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    frozen = theory.measure_propagation(net, x)
    np.testing.assert_allclose(frozen.backward, expected.backward, rtol=1e-12)
    assert all(not p.requires_grad and p.grad is None for p in net.parameters())
    with torch.inference_mode():
        inside = theory.measure_propagation(net, x)
    np.testing.assert_allclose(inside.weight_gradient, expected.weight_gradient, rtol=1e-12)


def test_random_mlp_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    theory.random_mlp(8, 4, 16, 3, "tanh", 1.0, seed=5)
    torch.testing.assert_close(torch.rand(3), expected)


def test_per_layer_sequences_may_be_numpy_arrays():
    expected = theory.propagate_variance([4, 6, 3], "tanh", [1.0, 2.0])
    for widths, variances in [(np.array([4, 6, 3]), np.array([1.0, 2.0])),
                              ((4, 6, 3), (1.0, 2.0))]:
        result = theory.propagate_variance(widths, "tanh", variances)
        np.testing.assert_array_equal(result.backward, expected.backward)
        np.testing.assert_array_equal(result.pre_activation, expected.pre_activation)
    with pytest.raises(ValueError, match="weight_variance must be a number or 2 numbers"):
        theory.propagate_variance([4, 6, 3], "tanh", np.ones((2, 1)))


def test_fit_decay_rate_checks_start():
    for start in [-3, 1.5, True]:
        with pytest.raises((TypeError, ValueError), match="start must be an int >= 0"):
            theory.fit_decay_rate(0.5 ** np.arange(10), start=start)


def test_scalar_rnn_problem_takes_numpy_numbers():
    problem = theory.ScalarRNNProblem(x0=np.float32(0.5), steps=np.int64(50),
                                      target=np.float32(0.7))
    expected = theory.ScalarRNNProblem().loss_and_gradient(5.0, -2.5)
    np.testing.assert_allclose(problem.loss_and_gradient(5.0, -2.5)[1], expected[1], rtol=1e-6)
    with pytest.raises(ValueError, match="x0 must be a finite number"):
        theory.ScalarRNNProblem(x0=True)


def test_quadratic_descent_rejects_a_non_finite_start():
    with pytest.raises(ValueError, match="start must be finite"):
        theory.quadratic_descent([1.0, 2.0], lr=0.1, steps=3, start=[float("nan"), 1.0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_jacobians_and_recurrent_norms_work_on_a_cuda_model():
    torch.manual_seed(0)
    mlp = DeepMLP(4, 3, 6, 3, "tanh").double()
    x = torch.randn(4, dtype=torch.float64)
    expected = theory.jacobian_singular_values(mlp, x)
    on_gpu = mlp.cuda()
    for point in [x, x.cuda()]:  # the point is moved to the model's device
        np.testing.assert_allclose(theory.jacobian_singular_values(on_gpu, point), expected,
                                   rtol=1e-9)
        largest, _ = theory.extreme_singular_values(on_gpu, point, iterations=2000, tol=1e-13)
        assert largest == pytest.approx(expected[0], rel=1e-3)
    net = gaussian_mlp(16, 3, "tanh", 1.0, 0)
    batch = normal_batch(8, 16, 0)
    reference = theory.measure_propagation(net, batch)
    np.testing.assert_allclose(theory.measure_propagation(net.cuda(), batch).backward,
                               reference.backward, rtol=1e-9)
    rnn = nn.RNN(2, 5, batch_first=True).double()
    cell = nn.RNNCell(2, 5).double()
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in rnn.state_dict().items()})
    sequence = torch.randn(7, 2, dtype=torch.float64)
    expected_norms = theory.rnn_jacobian_norms(rnn, sequence)
    np.testing.assert_allclose(theory.rnn_jacobian_norms(rnn.cuda(), sequence.cuda()),
                               expected_norms, rtol=1e-9)
    np.testing.assert_allclose(theory.cell_jacobian_norms(cell.cuda(), sequence,
                                                          torch.zeros(5)), expected_norms,
                               rtol=1e-9)
    assert theory.pascanu_regime(rnn).sigma_max > 0


def test_steepest_point_finds_a_wall_narrower_than_the_grid():
    """On b = -3 the wall at w = 5.6229 is far narrower than 0.0025, the spacing of 4001 points
    over w in [2, 12]: the grid's largest gradient is ~24 (at w = 12), but the loss jumps by ~10
    between two neighbouring points, so a gradient of at least 4000 lies between them."""
    reference = theory.steepest_point((4.0, -3.0), (8.0, -3.0))
    for start, end in [((2.0, -3.0), (12.0, -3.0)), ((12.0, -3.0), (2.0, -3.0))]:
        cliff = theory.steepest_point(start, end)
        assert cliff.w == pytest.approx(reference.w, abs=1e-3)
        assert cliff.b == -3.0
        assert cliff.max_grad_norm > 1e4
        value, gradient = theory.ScalarRNNProblem().loss_and_gradient(cliff.w, cliff.b)
        assert cliff.max_grad_norm == pytest.approx(float(np.linalg.norm(gradient)))
        assert cliff.grad_norm.max() < 100  # the coarse line itself misses it


@pytest.mark.parametrize("activation, integral", [("tanh", 4 / 3), ("sigmoid", 1 / 6)])
@pytest.mark.parametrize("q", [1e6, 1e8, 1e12])
def test_gaussian_moments_resolve_the_slope_bump_of_a_very_wide_gaussian(activation, integral, q):
    """For q >> 1, E[phi'(h)^2] = (integral of phi'^2) / sqrt(2 pi q) to O(1/q): the bump of
    tanh' (or sigmoid') is narrow and the density is flat over it. The integrals are 4/3 and
    1/6. E[phi(h)^2] tends to 1 (tanh) and 1/2 (sigmoid)."""
    forward, backward = theory.gaussian_moments(activation, q)
    assert backward == pytest.approx(integral / math.sqrt(2 * math.pi * q), rel=1e-4)
    assert forward == pytest.approx(1.0 if activation == "tanh" else 0.5, rel=1e-2)
    relu = theory.gaussian_moments("relu", q)
    assert relu[0] == pytest.approx(q / 2, rel=1e-8) and relu[1] == pytest.approx(0.5, rel=1e-12)


def test_empty_batches_are_refused_by_name():
    net = gaussian_mlp(4, 3, "tanh", 1.0, 0)
    with pytest.raises(ValueError, match="x must hold at least one example"):
        theory.measure_propagation(net, torch.zeros(0, 4))
    with pytest.raises(ValueError, match="inputs must hold at least one sequence"):
        theory.state_decay(nn.GRU(2, 3, batch_first=True), torch.zeros(0, 5, 2))
    with pytest.raises(ValueError, match="inputs must hold at least one sequence"):
        theory.rnn_jacobian_norms(nn.RNN(2, 3, batch_first=True), torch.zeros(0, 5, 2))
    with pytest.raises(ValueError, match="inputs must hold at least one sequence"):
        theory.cell_jacobian_norms(nn.GRUCell(2, 3), torch.zeros(0, 5, 2), torch.zeros(3))
