"""Tests for gradtext.monitor: numbers against hand computation, hooks, NaN origin, diagnosis."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

import gradtext as gt
from gradtext import monitor as monitor_module
from gradtext import plots
from gradtext.models import DeepMLP, SequenceModel
from gradtext.monitor import Diagnosis, GradientMonitor, Thresholds


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _mlp(activation="tanh", depth=4, width=16, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return DeepMLP(6, 3, width=width, depth=depth, activation=activation).to(dtype)


def _batch(seed=0, n=32, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=generator, dtype=dtype), torch.randint(
        0, 3, (n,), generator=generator)


def _hooks(model):
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        + len(m._backward_pre_hooks)
        for m in model.modules()
    )


# --------------------------------------------------------------------------- numbers by hand


def test_grad_norms_equal_the_norms_of_p_grad():
    net = _mlp()
    x, y = _batch()
    with GradientMonitor(net) as mon:
        F.cross_entropy(net(x), y).backward()
    expected = [math.sqrt(float(layer.weight.grad.norm() ** 2 + layer.bias.grad.norm() ** 2))
                for layer in net.linears]
    np.testing.assert_allclose(mon.grad_norms()[0], expected, rtol=1e-12)
    weights = [math.sqrt(float(layer.weight.detach().norm() ** 2
                               + layer.bias.detach().norm() ** 2)) for layer in net.linears]
    np.testing.assert_allclose(mon.weight_norms()[0], weights, rtol=1e-12)
    assert mon.layer_names == ["linears.0", "linears.1", "linears.2", "linears.3"]


@settings(deadline=None, max_examples=20)
@given(depth=st.integers(1, 5), width=st.integers(1, 12), seed=st.integers(0, 1000))
def test_grad_norms_match_by_hand_for_any_shape(depth, width, seed):
    net = _mlp("relu", depth=depth, width=width, seed=seed)
    x, y = _batch(seed)
    with GradientMonitor(net) as mon:
        F.cross_entropy(net(x), y).backward()
    expected = [float(torch.cat([layer.weight.grad.ravel(), layer.bias.grad.ravel()]).norm())
                for layer in net.linears]
    np.testing.assert_allclose(mon.grad_norms()[0], expected, rtol=1e-10, atol=1e-300)


def test_backward_norms_are_the_gradients_at_each_layer_output():
    net = _mlp()
    x, y = _batch()
    out, pre, _ = net.forward_with_intermediates(x)
    for h in pre:
        h.retain_grad()
    F.cross_entropy(out, y).backward()
    expected = [float(h.grad.norm()) for h in pre]
    net.zero_grad()
    with GradientMonitor(net) as mon:
        F.cross_entropy(net(x), y).backward()
    np.testing.assert_allclose(mon.backward_norms()[0], expected, rtol=1e-12)


def test_activation_statistics_by_hand():
    net = _mlp("tanh", depth=4, width=32)
    with torch.no_grad():
        net.linears[0].weight.mul_(20)  # saturate the first tanh layer
    x, y = _batch()
    with torch.no_grad():
        _, pre, act = net.forward_with_intermediates(x)
    with GradientMonitor(net) as mon:
        F.cross_entropy(net(x), y).backward()
    hidden = act + [pre[-1]]  # the last layer has no activation: its own output counts
    np.testing.assert_allclose(mon.activation_means()[0], [float(a.mean()) for a in hidden],
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(mon.activation_stds()[0],
                               [float(a.std(unbiased=False)) for a in hidden], rtol=1e-9)
    saturated = [float((a.abs() > 0.99).double().mean()) for a in act]
    np.testing.assert_allclose(mon.saturated_fractions()[0, :3], saturated)
    assert saturated[0] > 0.3 and np.isnan(mon.saturated_fractions()[0, 3])
    assert np.isnan(mon.dead_fractions()).all()
    assert mon.activation_sources == {"linears.0": "activations.0", "linears.1": "activations.1",
                                      "linears.2": "activations.2", "linears.3": "linears.3"}


def test_relu_dead_fraction_and_sigmoid_saturation():
    net = _mlp("relu", depth=3, width=20)
    with torch.no_grad():
        net.linears[0].bias[:5] = -1e3  # five units of the first layer can never fire
    x, y = _batch()
    with GradientMonitor(net) as mon:
        F.cross_entropy(net(x), y).backward()
    assert mon.dead_fractions()[0, 0] == pytest.approx(5 / 20)
    sigmoid = nn.Sequential(nn.Linear(6, 10), nn.Sigmoid(), nn.Linear(10, 1)).double()
    with torch.no_grad():
        sigmoid[0].weight.mul_(100)
    with GradientMonitor(sigmoid) as mon:
        h = torch.sigmoid(sigmoid[0](x))
        sigmoid(x).sum().backward()
    expected = float(((h < 0.01) | (h > 0.99)).double().mean())
    assert mon.saturated_fractions()[0, 0] == pytest.approx(expected) and expected > 0.5


def test_update_ratios_by_hand_and_every():
    net = _mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    x, y = _batch()
    expected = []
    with GradientMonitor(net, every=2, optimizer=opt) as mon:
        for step in range(5):
            before = [torch.cat([m.weight.detach().ravel(), m.bias.detach().ravel()]).clone()
                      for m in net.linears]
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
            if step % 2 == 0:
                after = [torch.cat([m.weight.detach().ravel(), m.bias.detach().ravel()])
                         for m in net.linears]
                expected.append([float((a - b).norm() / b.norm())
                                 for a, b in zip(after, before, strict=True)])
    assert mon.steps.tolist() == [0, 2, 4]
    np.testing.assert_allclose(mon.update_ratios(), expected, rtol=1e-9)


def _train(net, opt, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()


def _exact_update_ratios(net, opt, x, y, steps):
    """Update ratios of each step by hand, from copies of the parameters."""
    expected = []
    for _ in range(steps):
        before = [[p.detach().clone() for p in m.parameters()] for m in net.linears]
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        expected.append([
            math.sqrt(sum(float((p.detach() - b).double().square().sum())
                          for p, b in zip(m.parameters(), bs, strict=True)))
            / math.sqrt(sum(float(b.double().square().sum()) for b in bs))
            for m, bs in zip(net.linears, before, strict=True)])
    return np.array(expected)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("seed", [0, 1])
def test_sampled_update_ratios_are_close_to_exact(optimizer, seed):
    # 256 x 256 layers: the default update_sample (4096) measures 1/17 of each weight matrix
    torch.manual_seed(seed)
    net = DeepMLP(32, 10, width=256, depth=4, activation="tanh")
    make = {"sgd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
            "adam": lambda ps: torch.optim.Adam(ps, lr=1e-3)}[optimizer]
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 32, generator=generator), torch.randint(0, 10, (64,),
                                                                   generator=generator)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    opt = make(net.parameters())
    expected = _exact_update_ratios(net, opt, x, y, steps=4)
    net.load_state_dict(state)
    opt = make(net.parameters())
    with GradientMonitor(net, optimizer=opt) as mon:
        _train(net, opt, x, y, steps=4)
    sampled = mon.update_ratios()
    np.testing.assert_allclose(sampled, expected, rtol=0.05)  # seen: 0.3% to 1.3%
    # ... and not trivially: the sample is a small part of the large layers
    assert not np.allclose(sampled[:, 1:-1], expected[:, 1:-1], rtol=1e-6)


def test_exact_update_ratios_with_update_sample_none():
    torch.manual_seed(0)
    net = DeepMLP(32, 10, width=256, depth=3, activation="tanh")
    x, y = torch.randn(64, 32), torch.randint(0, 10, (64,))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    expected = _exact_update_ratios(net, opt, x, y, steps=3)
    net.load_state_dict(state)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    with GradientMonitor(net, optimizer=opt, update_sample=None) as mon:
        _train(net, opt, x, y, steps=3)
    np.testing.assert_allclose(mon.update_ratios(), expected, rtol=1e-4)  # float32 steps


def test_update_ratios_follow_replaced_parameters():
    # a parameter whose storage is replaced inside the with block is sampled afresh
    torch.manual_seed(0)
    net = DeepMLP(32, 10, width=256, depth=3, activation="tanh")
    x, y = torch.randn(64, 32), torch.randint(0, 10, (64,))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with GradientMonitor(net, optimizer=opt) as mon:
        for step in range(2):
            if step == 1:
                with torch.no_grad():
                    net.linears[1].weight.data = net.linears[1].weight.data.clone()
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            before = net.linears[1].weight.detach().clone()
            bias_before = net.linears[1].bias.detach().clone()
            opt.step()
    change = math.sqrt(float((net.linears[1].weight.detach() - before).square().sum())
                       + float((net.linears[1].bias.detach() - bias_before).square().sum()))
    size = math.sqrt(float(before.square().sum()) + float(bias_before.square().sum()))
    assert mon.update_ratios()[1, 1] == pytest.approx(change / size, rel=0.1)


def test_update_ratio_is_nan_without_an_optimizer_step():
    net = _mlp()
    x, y = _batch()
    with GradientMonitor(net, optimizer=torch.optim.SGD(net.parameters(), lr=0.1)) as mon:
        F.cross_entropy(net(x), y).backward()
    assert np.isnan(mon.update_ratios()).all()


def test_forward_without_gradients_is_not_recorded():
    net = _mlp()
    x, y = _batch()
    with GradientMonitor(net) as mon:
        with torch.no_grad():
            net(x)
        F.cross_entropy(net(x), y).backward()
        with torch.no_grad():
            net(x)
    assert mon.steps.tolist() == [0] and mon.grad_norms().shape == (1, 4)


# --------------------------------------------------------------------------- hooks


def test_hooks_removed_on_exit_and_model_unchanged():
    net = _mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    before = _hooks(net)
    x, y = _batch()
    reference = net(x)
    with GradientMonitor(net, optimizer=opt) as mon:
        assert mon.active and _hooks(net) > before
        F.cross_entropy(net(x), y).backward()
    assert not mon.active
    assert _hooks(net) == before
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key])
    torch.testing.assert_close(net(x), reference, rtol=0, atol=0)


def test_hooks_removed_after_an_exception():
    net = _mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, _ = _batch()
    mon = GradientMonitor(net, optimizer=opt)
    with pytest.raises(RuntimeError, match="boom"):
        with mon:
            net(x)  # a forward pass left open: module hooks are installed
            raise RuntimeError("boom")
    assert _hooks(net) == 0 and not mon.active
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_entering_twice_is_an_error_and_reentry_continues():
    net = _mlp()
    x, y = _batch()
    mon = GradientMonitor(net)
    with mon:
        with pytest.raises(RuntimeError, match="already active"):
            mon.__enter__()
        F.cross_entropy(net(x), y).backward()
    with mon:
        F.cross_entropy(net(x), y).backward()
    assert mon.steps.tolist() == [0, 1]


# --------------------------------------------------------------------------- NaN/Inf origin


class _Poison(nn.Module):
    """Multiplies its input by NaN or Inf in the forward pass."""

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x):
        return x * self.value


class _PoisonGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, value):
        ctx.value = value
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.value, None


class _PoisonBackward(nn.Linear):
    """A linear layer whose backward turns the gradient into NaN/Inf."""

    def __init__(self, n, value):
        super().__init__(n, n)
        self.value = value

    def forward(self, x):
        return _PoisonGrad.apply(super().forward(x), self.value)


def _chain(middle):
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), middle,
                         nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)).double()


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_forward_nan_or_inf_is_attributed_to_the_module_that_made_it(value):
    model = _chain(_Poison(value))
    x, y = _batch()
    with GradientMonitor(model) as mon:
        F.cross_entropy(model(x), y).backward()
    diagnosis = mon.diagnose()
    assert (diagnosis.kind, diagnosis.layer, diagnosis.phase, diagnosis.step) == (
        "nonfinite", "4", "forward", 0)
    assert "'4' (_Poison)" in str(diagnosis)
    assert diagnosis.evidence["nan" if math.isnan(value) else "inf"] > 0


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_backward_nan_or_inf_is_attributed_to_the_layer_whose_backward_made_it(value):
    model = _chain(_PoisonBackward(8, value))
    x, y = _batch()
    with GradientMonitor(model) as mon:
        F.cross_entropy(model(x), y).backward()
    diagnosis = mon.diagnose()
    assert (diagnosis.kind, diagnosis.layer, diagnosis.phase) == ("nonfinite", "4", "backward")
    assert "backward pass of '4'" in str(diagnosis)


def test_nan_made_by_a_backward_hook_of_a_layer_is_attributed_to_it():
    model = _chain(nn.Linear(8, 8))
    model[5].register_full_backward_hook(lambda m, gi, go: (gi[0] * math.nan,))
    x, y = _batch()
    with GradientMonitor(model) as mon:
        F.cross_entropy(model(x), y).backward()
    diagnosis = mon.diagnose()
    assert (diagnosis.kind, diagnosis.layer, diagnosis.phase) == ("nonfinite", "5", "backward")


def test_nan_found_at_a_later_step_and_the_first_one_is_kept():
    model = _chain(_Poison(1.0))
    x, y = _batch()
    with GradientMonitor(model) as mon:
        for step in range(4):
            model[4].value = math.nan if step >= 2 else 1.0
            F.cross_entropy(model(x), y).backward()
    assert (mon.diagnose().step, mon.diagnose().layer) == (2, "4")


def test_nan_from_the_loss_is_reported_as_outside_the_model():
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3), nn.Softmax(-1)).double()
    with torch.no_grad():
        model[2].weight.mul_(1e4)  # probabilities underflow to exactly 0
    x, y = _batch()
    with GradientMonitor(model) as mon:
        F.nll_loss(torch.log(model(x)), y).backward()
    diagnosis = mon.diagnose()
    assert (diagnosis.kind, diagnosis.layer, diagnosis.phase) == ("nonfinite", None, "loss")
    assert "loss" in str(diagnosis)


def test_nonfinite_weights_are_named_in_the_diagnosis():
    model = _chain(nn.Identity())
    with torch.no_grad():
        model[2].weight[0, 0] = math.inf
    x, y = _batch()
    with GradientMonitor(model) as mon:
        F.cross_entropy(model(x), y).backward()
    diagnosis = mon.diagnose()
    assert diagnosis.layer == "2" and diagnosis.evidence["weights_nonfinite"]
    assert "already non-finite" in str(diagnosis)


def test_huge_finite_gradients_are_not_called_nonfinite():
    model = nn.Sequential(nn.Linear(6, 4), nn.Linear(4, 1))
    x = torch.randn(8, 6)
    with GradientMonitor(model) as mon:
        (model(x).sum() * 1e30).backward()  # float32 norms of these overflow; float64 do not
    assert np.isfinite(mon.grad_norms()).all() and mon.grad_norms().max() > 1e30
    assert mon.diagnose().kind == "exploding"


def test_nan_on_an_unrecorded_step_is_still_reported():
    model = _chain(_Poison(1.0))
    x, y = _batch()
    with GradientMonitor(model, every=5) as mon:
        for step in range(4):
            model[4].value = math.nan if step == 3 else 1.0
            F.cross_entropy(model(x), y).backward()
    diagnosis = mon.diagnose()
    assert (diagnosis.kind, diagnosis.step, diagnosis.layer) == ("nonfinite", 3, None)
    assert "every=1" in str(diagnosis)


@pytest.mark.parametrize("scale", [math.inf, 1e35])
def test_unrecorded_steps_see_inf_but_not_huge_finite_gradients(scale):
    # the check on unrecorded steps looks at the extremes of float32 tensors: exact, no overflow
    model = nn.Sequential(nn.Linear(6, 4), nn.Linear(4, 1))
    x = torch.randn(8, 6)
    with GradientMonitor(model, every=3) as mon:
        for step in range(3):
            factor = scale if step == 2 else 1.0
            (model(x).sum() * factor).backward()
    assert mon.steps.tolist() == [0]
    diagnosis = mon.diagnose()
    if math.isinf(scale):
        assert (diagnosis.kind, diagnosis.step) == ("nonfinite", 2)
    else:
        assert diagnosis.kind != "nonfinite"


def test_unrecorded_steps_do_not_call_an_overflowing_sum_nonfinite():
    # the float32 sum of this (finite) output gradient overflows; its entries do not
    model = nn.Linear(2, 2, bias=False)
    with GradientMonitor(model, every=2) as mon:
        for _ in range(2):
            model(torch.zeros(1, 2)).backward(torch.full((1, 2), 3e38))
    assert mon.steps.tolist() == [0]
    assert mon.diagnose().kind != "nonfinite"


def test_last_values_are_those_of_the_last_recorded_pass():
    model = _mlp()
    x, y = _batch()
    with GradientMonitor(model, every=2) as mon:
        for step in range(3):
            F.cross_entropy(model(x * (step + 1)), y).backward()
            if step == 0:
                first = mon.last_activations()
    # step 2 was recorded last, with inputs three times as large as step 0's
    last = mon.last_activations()
    assert list(last) == mon.layer_names
    assert not np.allclose(first["linears.0"], last["linears.0"])
    expected = torch.tanh(model.linears[0](x * 3)).detach().numpy().ravel()
    np.testing.assert_allclose(last["linears.0"], expected, rtol=1e-12)
    signals = mon.last_backward_signals()
    assert list(signals) == mon.layer_names
    assert signals["linears.0"].shape == (x.shape[0] * model.linears[0].out_features,)


# --------------------------------------------------------------------------- model kinds


def test_shared_parameters_count_in_every_module_that_owns_them():
    torch.manual_seed(0)
    encoder, decoder = nn.Linear(5, 5, bias=False), nn.Linear(5, 5)
    decoder.weight = encoder.weight  # tied
    model = nn.Sequential(encoder, nn.Tanh(), decoder).double()
    x = torch.randn(7, 5, dtype=torch.float64)
    with GradientMonitor(model) as mon:
        model(x).pow(2).mean().backward()
    shared = encoder.weight.grad
    expected = [float(shared.norm()), float(torch.cat([shared.ravel(), decoder.bias.grad]).norm())]
    np.testing.assert_allclose(mon.grad_norms()[0], expected, rtol=1e-12)


def test_a_module_called_several_times_pools_its_calls():
    torch.manual_seed(0)
    cell = nn.Linear(4, 4).double()

    class Unrolled(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell, self.act = cell, nn.Tanh()

        def forward(self, x):
            for _ in range(3):
                x = self.act(self.cell(x))
            return x

    model = Unrolled()
    x = torch.randn(5, 4, dtype=torch.float64)
    states = []
    h = x
    for _ in range(3):
        pre = cell(h)
        pre.retain_grad()
        states.append(pre)
        h = torch.tanh(pre)
    h.sum().backward()
    expected = math.sqrt(sum(float(s.grad.norm() ** 2) for s in states))
    cell.zero_grad()
    with GradientMonitor(model) as mon:
        model(x).sum().backward()
    assert mon.backward_norms()[0, 0] == pytest.approx(expected, rel=1e-12)
    assert mon.grad_norms()[0, 0] == pytest.approx(
        float(torch.cat([cell.weight.grad.ravel(), cell.bias.grad]).norm()), rel=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "rnn", "gru"])
def test_recurrent_models(cell):
    torch.manual_seed(0)
    model = SequenceModel(cell, 2, 8, 1, num_layers=2).double()
    x = torch.randn(4, 12, 2, dtype=torch.float64)
    with GradientMonitor(model) as mon:
        model(x).pow(2).mean().backward()
    assert mon.layer_names == ["rnn", "head"]
    rnn_grads = torch.cat([p.grad.ravel() for p in model.rnn.parameters()])
    assert mon.grad_norms()[0, 0] == pytest.approx(float(rnn_grads.norm()), rel=1e-12)
    assert np.isfinite(mon.backward_norms()).all() and (mon.backward_norms() > 0).all()
    if cell == "rnn":  # a tanh RNN's own output counts as a tanh activation
        assert 0 <= mon.saturated_fractions()[0, 0] <= 1
    assert mon.diagnose().kind == "ok"


def test_fit_with_a_monitor():
    torch.manual_seed(0)
    net = DeepMLP(8, 3, width=16, depth=4, activation="tanh")
    x, y = gt.tasks.argmax_task(n=256, dim=8, classes=3, seed=0)
    mon = GradientMonitor(net)
    history = gt.fit(net, (x, y), loss="cross_entropy", optimizer=torch.optim.SGD(
        net.parameters(), lr=0.1), steps=15, progress=False, monitor=mon)
    assert not mon.active and _hooks(net) == 0
    assert mon.steps.tolist() == list(range(15))
    assert np.isfinite(mon.update_ratios()).all()
    # fit's global norm is the norm of the per-layer norms
    np.testing.assert_allclose(np.linalg.norm(mon.grad_norms(), axis=1), history.grad_norm,
                               rtol=1e-5)


def test_fit_divergence_is_diagnosed():
    torch.manual_seed(0)
    net = DeepMLP(8, 3, width=16, depth=4, activation="relu")
    x, y = gt.tasks.argmax_task(n=256, dim=8, classes=3, seed=0)
    mon = GradientMonitor(net)
    history = gt.fit(net, (x * 1e3, y), loss="cross_entropy", optimizer=torch.optim.SGD(
        net.parameters(), lr=10.0), steps=50, progress=False, monitor=mon)
    assert history.diverged
    diagnosis = mon.diagnose()
    assert diagnosis.kind in {"exploding", "nonfinite"} and diagnosis.step < history.diverged_at + 1


def test_same_seed_gives_identical_records():
    records = []
    for _ in range(2):
        net = _mlp(seed=3, dtype=torch.float32)
        x, y = _batch(3, dtype=torch.float32)
        with GradientMonitor(net) as mon:
            F.cross_entropy(net(x), y).backward()
        records.append(np.concatenate([mon.grad_norms(), mon.backward_norms(),
                                       mon.activation_means()]))
    np.testing.assert_array_equal(records[0], records[1])


# --------------------------------------------------------------------------- diagnosis


def _diagnose(net, steps=1, **kwargs):
    x = torch.randn(64, net.linears[0].in_features)
    y = torch.randint(0, net.linears[-1].out_features, (64,))
    with GradientMonitor(net, **kwargs) as mon:
        for _ in range(steps):
            net.zero_grad()
            F.cross_entropy(net(x), y).backward()
    return mon.diagnose()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_diagnose_healthy_vanishing_exploding(seed):
    torch.manual_seed(seed)
    healthy = DeepMLP(16, 4, width=64, depth=6, activation="relu")
    for layer in healthy.linears:
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    assert _diagnose(healthy).kind == "ok"

    vanishing = DeepMLP(16, 4, width=64, depth=12, activation="sigmoid")
    verdict = _diagnose(vanishing)
    assert (verdict.kind, verdict.layer) == ("vanishing", "linears.0")
    assert "first layer" in str(verdict) and "Try:" in str(verdict)

    exploding = DeepMLP(16, 4, width=64, depth=12, activation="linear")
    for layer in exploding.linears:
        nn.init.normal_(layer.weight, std=3 / math.sqrt(layer.in_features))
    verdict = _diagnose(exploding)
    assert verdict.kind == "exploding" and "Try:" in str(verdict)


def test_diagnose_sees_explosion_that_the_layer_ratio_misses():
    # Activations explode forward and gradients backward: every weight gradient is huge, but
    # the first and last layers' gradient norms are alike.
    torch.manual_seed(0)
    net = DeepMLP(16, 16, width=16, depth=10, activation="linear", bias=False)
    for layer in net.linears:
        nn.init.orthogonal_(layer.weight, gain=2.5)
    verdict = _diagnose(net)
    g = verdict.evidence
    assert verdict.kind == "exploding" and "grad_to_weight" in g


def test_thresholds_are_adjustable():
    torch.manual_seed(0)
    net = DeepMLP(16, 4, width=64, depth=6, activation="tanh")
    x = torch.randn(64, 16)
    with GradientMonitor(net) as mon:
        F.cross_entropy(net(x), torch.zeros(64, dtype=torch.long)).backward()
    ratio = float(mon.grad_norms()[0, 0] / mon.grad_norms()[0, -1])
    strict = mon.with_thresholds(layer_ratio=1.0001)
    assert mon.diagnose().kind == "ok"
    assert mon.diagnose(strict).kind == ("exploding" if ratio > 1 else "vanishing")
    custom = GradientMonitor(net, thresholds=Thresholds(grad_norm_high=1e-9))
    assert custom.thresholds.grad_norm_high == 1e-9


def test_diagnosis_before_anything_is_recorded():
    diagnosis = GradientMonitor(_mlp()).diagnose()
    assert isinstance(diagnosis, Diagnosis) and diagnosis.kind == "ok" and not diagnosis
    assert "Nothing recorded" in str(diagnosis)


def test_update_ratio_rule():
    net = _mlp()
    x, y = _batch()
    opt = torch.optim.SGD(net.parameters(), lr=100.0)
    with GradientMonitor(net, optimizer=opt) as mon:
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    verdict = mon.diagnose(mon.with_thresholds(grad_to_weight_high=1e9, grad_norm_high=1e9))
    assert verdict.kind == "exploding" and "update_ratio" in verdict.evidence


# --------------------------------------------------------------------------- bad input


def test_bad_input_gets_clear_errors():
    net = _mlp()
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        GradientMonitor("net")
    with pytest.raises(ValueError, match="every must be >= 1"):
        GradientMonitor(net, every=0)
    with pytest.raises(TypeError, match="every must be an int"):
        GradientMonitor(net, every=1.5)
    with pytest.raises(TypeError, match="every must be an int"):
        GradientMonitor(net, every=True)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        GradientMonitor(net, optimizer="sgd")
    with pytest.raises(TypeError, match="thresholds must be"):
        GradientMonitor(net, thresholds={"layer_ratio": 10})
    with pytest.raises(ValueError, match="no trainable parameters"):
        GradientMonitor(nn.Tanh())
    with pytest.raises(ValueError, match="thresholds.layer_ratio must be > 1"):
        Thresholds(layer_ratio=0.5)
    with pytest.raises(ValueError, match="thresholds.growth must be a positive finite"):
        Thresholds(growth=math.nan)
    with pytest.raises(TypeError, match="thresholds.grad_norm_high must be a number"):
        Thresholds(grad_norm_high="big")
    with pytest.raises(TypeError, match="thresholds must be a Thresholds"):
        GradientMonitor(net).diagnose("strict")
    with pytest.raises(TypeError, match="log_dir must be a path or a SummaryWriter"):
        GradientMonitor(net).write_tensorboard(42)
    with pytest.raises(ValueError, match="update_sample must be >= 16"):
        GradientMonitor(net, update_sample=8)
    with pytest.raises(TypeError, match="update_sample must be an int or None"):
        GradientMonitor(net, update_sample=0.5)


# --------------------------------------------------------------------------- TensorBoard


def test_tensorboard_export_writes_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    net = _mlp(dtype=torch.float32)
    x, y = _batch(dtype=torch.float32)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with GradientMonitor(net, optimizer=opt) as mon:
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    directory = mon.write_tensorboard(tmp_path / "run")
    assert list((tmp_path / "run").glob("events.out.tfevents.*"))
    events = EventAccumulator(directory)
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "grad_norm/linears.0" in tags and "update_ratio/linears.3" in tags
    values = [e.value for e in events.Scalars("grad_norm/linears.0")]
    np.testing.assert_allclose(values, mon.grad_norms()[:, 0], rtol=1e-6)


# --------------------------------------------------------------------------- plots


def test_last_values_and_plots_draw_and_mark_nonfinite():
    net = _mlp("tanh", dtype=torch.float32)
    x, y = _batch(dtype=torch.float32)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with GradientMonitor(net, optimizer=opt) as mon:
        _train(net, opt, x, y, steps=4)
    activations = mon.last_activations()
    assert list(activations) == mon.layer_names and activations["linears.0"].size == 32 * 16
    signals = mon.last_backward_signals()
    assert list(signals) == mon.layer_names

    grid = mon.grad_norms()
    grid[2, 1] = np.nan
    ax = plots.plot_layer_heatmap(grid, layer_names=mon.layer_names, steps=mon.steps)
    assert ax.get_ylabel() == "layer" and "NaN/Inf (1)" in ax.get_legend().get_texts()[0].get_text()

    ax = plots.plot_layer_histograms({**activations, "bad": np.array([np.inf, 1.0])})
    assert any("x" == line.get_marker() for line in ax.lines)
    ax = plots.plot_layer_histograms(signals, log_x=True, xlabel="dL/dh")
    assert ax.get_xlabel() == "log10 |dL/dh|"

    ratios = mon.update_ratios()
    ratios[1, 0] = np.inf
    ax = plots.plot_update_ratios(ratios, layer_names=mon.layer_names, steps=mon.steps)
    assert ax.get_yscale() == "log"
    assert any(line.get_linestyle() == "--" and line.get_ydata()[0] == 1e-3 for line in ax.lines)
    assert [line.get_xdata().tolist() for line in ax.lines if line.get_marker() == "x"] == [[1]]


def test_plot_bad_input():
    with pytest.raises(ValueError, match="values must be a 2-d"):
        plots.plot_layer_heatmap(np.ones(3))
    with pytest.raises(ValueError, match="layer_names has 1 names for 2 layers"):
        plots.plot_layer_heatmap(np.ones((3, 2)), layer_names=["a"])
    with pytest.raises(ValueError, match="non-empty mapping"):
        plots.plot_layer_histograms({})
    with pytest.raises(ValueError, match="ratios must be a 2-d"):
        plots.plot_update_ratios(np.ones(3))


def test_fit_uses_an_active_monitor_and_a_replaced_optimizer():
    torch.manual_seed(0)
    net = DeepMLP(8, 3, width=16, depth=3, activation="relu")
    x, y = gt.tasks.argmax_task(n=128, dim=8, classes=3, seed=0)
    first = torch.optim.SGD(net.parameters(), lr=0.1)
    with GradientMonitor(net, optimizer=first) as mon:
        second = torch.optim.SGD(net.parameters(), lr=0.01)
        gt.fit(net, (x, y), loss="cross_entropy", optimizer=second, steps=3, progress=False,
               monitor=mon)
        assert mon.active and mon.optimizer is second
        assert not first._optimizer_step_pre_hooks
    assert mon.steps.tolist() == [0, 1, 2] and np.isfinite(mon.update_ratios()).all()
    assert not second._optimizer_step_pre_hooks and _hooks(net) == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_monitor_on_cuda_matches_the_cpu_and_locates_nan():
    model = _chain(_Poison(1.0)).float().cuda()
    x, y = _batch(dtype=torch.float32)
    x, y = x.cuda(), y.cuda()
    with GradientMonitor(model) as mon:
        F.cross_entropy(model(x), y).backward()
    expected = [float(torch.cat([p.grad.ravel() for p in model[i].parameters()]).norm().cpu())
                for i in (0, 2, 5, 7)]
    np.testing.assert_allclose(mon.grad_norms()[0], expected, rtol=1e-5)
    model[4].value = math.nan
    with GradientMonitor(model) as mon:
        F.cross_entropy(model(x), y).backward()
    assert (mon.diagnose().kind, mon.diagnose().layer) == ("nonfinite", "4")


def test_tensorboard_missing_gives_a_clear_error(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install tensorboard"):
        GradientMonitor(_mlp()).write_tensorboard(tmp_path)


def test_nan_in_the_input_batch_is_blamed_on_the_data():
    model = _chain(nn.Identity())
    x, y = _batch()
    x[3, 2] = math.nan
    with GradientMonitor(model) as mon:
        F.cross_entropy(model(x), y).backward()
    diagnosis = mon.diagnose()
    assert (diagnosis.kind, diagnosis.layer, diagnosis.phase) == ("nonfinite", None, "input")
    assert diagnosis.evidence["nan"] == 1 and "data pipeline" in str(diagnosis)


# --- models and training loops the monitor was not written around ---------------------------


def _own_grad_norms(model):
    return [math.sqrt(sum(float(p.grad.detach().pow(2).sum()) for p in m._parameters.values()
                          if p is not None and p.grad is not None))
            for m in model.modules() if any(True for _ in m.parameters(recurse=False))]


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_backward_with_create_graph_keeps_no_graph_in_the_records():
    net = _mlp()
    x, _ = _batch()
    with GradientMonitor(net) as mon:
        net(x).pow(2).mean().backward(create_graph=True)
    expected = _own_grad_norms(net)
    np.testing.assert_allclose(mon.grad_norms()[0], expected, rtol=1e-12)
    assert np.isfinite(mon.backward_norms()).all()
    assert mon.diagnose().kind == "ok"
    assert all(np.isfinite(v).all() for v in mon.last_backward_signals().values())


def test_a_gradient_penalty_pass_is_neither_counted_nor_recorded():
    # WGAN-GP: torch.autograd.grad w.r.t. the input, then loss.backward() for the parameters
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(4, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1)).double()
    opt = torch.optim.SGD(critic.parameters(), lr=1e-3)
    real = torch.randn(32, 4, dtype=torch.float64)
    fake = torch.randn(32, 4, dtype=torch.float64) + 1
    expected = []
    with GradientMonitor(critic, every=2, optimizer=opt) as mon:
        for _ in range(4):
            opt.zero_grad()
            mixed = (0.5 * real + 0.5 * fake).requires_grad_(True)
            (slope,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
            loss = critic(fake).mean() - critic(real).mean() + ((slope.norm(dim=1) - 1) ** 2).mean()
            loss.backward()
            expected.append(_own_grad_norms(critic))
            opt.step()
    assert mon.steps.tolist() == [0, 2]  # the four training passes, every 2nd recorded
    np.testing.assert_allclose(mon.grad_norms(), [expected[0], expected[2]], rtol=1e-12)
    assert np.isfinite(mon.update_ratios()).all()


def test_a_parameter_initialised_at_zero_is_not_called_exploding():
    class ReZero(nn.Module):  # x + alpha * f(x), alpha starting at 0 (Bachlechner et al.)
        def __init__(self):
            super().__init__()
            self.f = nn.Linear(8, 8)
            self.alpha = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return x + self.alpha * torch.tanh(self.f(x))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), ReZero(), ReZero(), nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    with GradientMonitor(model, optimizer=opt) as mon:
        for _ in range(5):
            opt.zero_grad()
            F.mse_loss(model(x), y).backward()
            opt.step()
    gate = mon.layer_names.index("1")
    assert np.isnan(mon.update_ratios()[0, gate])  # 0 / 0: undefined, not Inf
    assert np.isfinite(mon.update_ratios()[1:, gate]).all()
    verdict = mon.diagnose()
    assert verdict.kind == "ok", str(verdict)


def test_bfloat16_histograms_come_back_as_float32():
    net = _mlp(dtype=torch.bfloat16)
    x, _ = _batch(dtype=torch.bfloat16)
    with GradientMonitor(net) as mon:
        net(x).float().pow(2).mean().backward()
    activations, signals = mon.last_activations(), mon.last_backward_signals()
    assert set(activations) == set(mon.layer_names) == set(signals)
    assert all(v.dtype == np.float32 for v in [*activations.values(), *signals.values()])


def test_dead_units_of_a_convolution_are_its_channels():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 6 * 6, 1))
    with torch.no_grad():
        net[0].bias[:2] = -100.0  # channels 0 and 1 are off everywhere
    with GradientMonitor(net) as mon:
        net(torch.randn(8, 1, 6, 6)).sum().backward()
    assert mon.dead_fractions()[0, 0] == 0.5


def test_the_models_own_parameters_do_not_stand_in_for_the_last_layer():
    class Offset(nn.Module):  # a learned input offset owned by the model itself (ViT's pos)
        def __init__(self, body):
            super().__init__()
            self.offset = nn.Parameter(torch.zeros(6, dtype=torch.float64))
            self.body = body

        def forward(self, x):
            return self.body(x + self.offset)

    plain = _mlp("sigmoid", depth=12, width=32)
    wrapped = Offset(_mlp("sigmoid", depth=12, width=32))
    x, y = _batch()
    verdicts = []
    for model in (plain, wrapped):
        with GradientMonitor(model) as mon:
            F.cross_entropy(model(x), y).backward()
        verdicts.append(mon.diagnose())
    assert verdicts[0].kind == verdicts[1].kind == "vanishing"
    assert verdicts[1].layer == "body.linears.0"
    assert verdicts[1].evidence["first_to_last"] == pytest.approx(
        verdicts[0].evidence["first_to_last"])


def test_a_module_used_without_being_called_has_no_backward_signal():
    torch.manual_seed(0)

    class Attend(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(4, 8)
            self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, 1)

        def forward(self, x):
            h = self.embed(x)
            return self.head(self.attention(h, h, h)[0]).mean(dim=1)

    model = Attend()
    with GradientMonitor(model) as mon:
        model(torch.randn(3, 5, 4)).sum().backward()
    out_proj = mon.layer_names.index("attention.out_proj")
    assert np.isnan(mon.backward_norms()[0, out_proj])  # its module never ran
    assert mon.grad_norms()[0, out_proj] > 0  # but its weights were used and learn
    assert np.isfinite(np.delete(mon.backward_norms()[0], out_proj)).all()
    model.zero_grad()
    with GradientMonitor(model, thresholds=Thresholds(layer_ratio=1.0001)) as mon:
        model(torch.randn(3, 5, 4)).sum().backward()
    assert "the last layer's 'head'" in str(mon.diagnose())


def test_copies_made_while_attached_do_not_feed_the_monitor():
    import copy
    import io

    net = _mlp()
    x, y = _batch()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with GradientMonitor(net, optimizer=opt) as mon:
        F.cross_entropy(net(x), y).backward()
        opt.step()
        snapshot, opt_copy = copy.deepcopy(net), copy.deepcopy(opt)
        buffer = io.BytesIO()
        torch.save(net, buffer)
        F.cross_entropy(snapshot(x), y).backward()  # the copy's pass: not the monitor's
    assert mon.steps.tolist() == [0]
    assert _hooks(net) == 0
    copied_hooks = [hook for m in snapshot.modules()
                    for hook in [*m._forward_hooks.values(), *m._forward_pre_hooks.values()]]
    assert copied_hooks and all(hook is monitor_module._inert_hook for hook in copied_hooks)
    assert b"GradientMonitor" not in buffer.getvalue()  # the pickle holds no monitor
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    torch.testing.assert_close(loaded(x), net(x))
    assert opt_copy.state_dict()["param_groups"] == opt.state_dict()["param_groups"]


def test_an_empty_batch_is_reported_as_no_gradient_at_all():
    net = _mlp()
    with GradientMonitor(net) as mon:
        net(torch.zeros(0, 6, dtype=torch.float64)).sum().backward()
    verdict = mon.diagnose()
    assert verdict.kind == "vanishing" and verdict.layer is None
    assert "exactly zero" in str(verdict) and "empty" in str(verdict)


def test_a_penalty_on_the_same_forward_as_the_loss_is_one_pass():
    # the forward is shared: autograd.grad first (not a pass), then backward() on that graph
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x = torch.randn(16, 4, dtype=torch.float64, requires_grad=True)
    expected = []
    with GradientMonitor(critic) as mon:
        for _ in range(3):
            critic.zero_grad()
            out = critic(x)
            (slope,) = torch.autograd.grad(out.sum(), x, create_graph=True)
            (out.mean() + slope.pow(2).sum(dim=1).mean()).backward()
            expected.append(_own_grad_norms(critic))
    assert mon.steps.tolist() == [0, 1, 2]
    np.testing.assert_allclose(mon.grad_norms(), expected, rtol=1e-12)


def test_the_gradients_of_the_last_pass_are_not_kept_alive():
    import weakref

    net = _mlp()
    x, y = _batch()
    with GradientMonitor(net) as mon:
        F.cross_entropy(net(x), y).backward()
        old = weakref.ref(net.linears[0].weight.grad)
        out = net(x)  # forward first, then zero_grad: the old gradients are dropped
        net.zero_grad(set_to_none=True)
        assert old() is None
        F.cross_entropy(out, y).backward()
    assert mon.steps.tolist() == [0, 1]


def test_an_unbatched_convolution_has_its_channels_first():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU())
    with torch.no_grad():
        conv[0].bias[:2] = -100.0
    with GradientMonitor(conv) as mon:
        conv(torch.randn(1, 10)).sum().backward()  # (channels, length): no batch dimension
    assert mon.dead_fractions()[0, 0] == 0.5


@pytest.mark.parametrize("case", ["frozen first bias", "overflow in a weight gradient"])
def test_unrecorded_passes_catch_what_reaches_any_first_layer_gradient(case):
    torch.manual_seed(0)
    if case == "frozen first bias":
        class Sqrt(nn.Module):  # its derivative at 0 is Inf
            def forward(self, x):
                return x.clamp_min(0).sqrt()

        net = nn.Sequential(nn.Linear(4, 8), Sqrt(), nn.Linear(8, 1))
        net[0].bias.requires_grad_(False)
        batches = [torch.randn(16, 4), torch.zeros(16, 4)]
        with torch.no_grad():
            net[0].bias.zero_()
        scale = 1.0
    else:  # a huge input feature that the output does not use: finite output, Inf gradient
        net = nn.Sequential(nn.Linear(2, 1), nn.Linear(1, 1))
        with torch.no_grad():
            net[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        batches = [torch.tensor([[1.0, 1.0]] * 4), torch.tensor([[1.0, 1e30]] * 4)]
        scale = 1e10
    with GradientMonitor(net, every=2) as mon:
        for x in batches:  # pass 1 is not recorded
            net.zero_grad()
            (scale * net(x).sum()).backward()
    assert not torch.isfinite(net[0].weight.grad).all()
    verdict = mon.diagnose()
    assert (verdict.kind, verdict.step) == ("nonfinite", 1), str(verdict)


def test_a_layer_that_never_ran_does_not_send_every_pass_down_the_slow_path(monkeypatch):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True, dropout=0.0)
    model = nn.Sequential(nn.Linear(4, 8), layer, nn.Linear(8, 1))

    def no_search(*args):
        raise AssertionError("the element-by-element search ran on a finite pass")

    monkeypatch.setattr(GradientMonitor, "_all_finite", no_search)
    with GradientMonitor(model) as mon:
        for _ in range(2):
            model(torch.randn(3, 5, 4)).sum().backward()
    out_proj = mon.layer_names.index("1.self_attn.out_proj")
    assert np.isnan(mon.backward_norms()[:, out_proj]).all()
    assert mon.diagnose().kind != "nonfinite"


class _Interrupt(nn.Module):
    """Raises KeyboardInterrupt in its forward (``where="forward"``) or in the backward pass
    through it (``where="backward"``) while ``armed``, as Ctrl-C in a notebook would."""

    def __init__(self, where):
        super().__init__()
        self.where, self.armed = where, False

    def forward(self, x):
        if self.armed and self.where == "forward":
            raise KeyboardInterrupt
        if self.armed and self.where == "backward" and x.requires_grad:
            def interrupt(grad):
                raise KeyboardInterrupt
            x = x.clone()
            x.register_hook(interrupt)
        return x


@pytest.mark.parametrize("where", ["forward", "backward"])
@pytest.mark.parametrize("every", [1, 2])
def test_a_pass_interrupted_in_forward_or_backward_is_dropped(where, every):
    torch.manual_seed(0)
    interrupt = _Interrupt(where)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), interrupt, nn.Linear(8, 3)).double()
    x, _ = _batch()
    with GradientMonitor(net, every=every) as mon:
        net(x).pow(2).mean().backward()
        interrupt.armed = True
        with pytest.raises(KeyboardInterrupt):  # on another batch
            net(x + 3).pow(2).mean().backward()
        interrupt.armed = False
        for _ in range(4):
            net.zero_grad()
            net(x).pow(2).mean().backward()
        # the interrupted pass is not counted, and the passes after it are recorded as usual
        assert mon.steps.tolist() == list(range(0, 5, every))
        last = mon.grad_norms()[-1]
    expected = [float(torch.cat([p.grad.flatten() for p in m.parameters()]).norm())
                for m in (net[0], net[3])]
    np.testing.assert_allclose(last, expected, rtol=1e-12)
    # nothing of the interrupted batch is pooled into the next recorded pass
    with torch.no_grad():
        mean = float(torch.tanh(net[0](x)).mean())
    np.testing.assert_allclose(mon.activation_means()[:, 0], mean, rtol=1e-12)
    assert _hooks(net) == 0


# --------------------------------------------------------------------------- mixed precision


def _scaled_run(model, scaler, passes, x, y, every=1, factor=1.0):
    """A mixed-precision loop: scaler.scale(loss).backward(), scaler.step, scaler.update
    (the loss is cross-entropy times ``factor``, the learning rate 1e-3 / ``factor``)."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3 / factor)
    with GradientMonitor(model, every=every, optimizer=opt, scaler=scaler) as mon:
        for _ in range(passes):
            opt.zero_grad()
            scaler.scale(factor * F.cross_entropy(model(x), y)).backward()
            scaler.step(opt)
            scaler.update()
    return mon


def test_a_grad_scalers_scale_is_divided_out_of_the_gradient_statistics():
    x, y = _batch(dtype=torch.float32)
    plain = _mlp(seed=3, dtype=torch.float32)
    with GradientMonitor(plain) as reference:
        F.cross_entropy(plain(x), y).backward()
    scaled = _mlp(seed=3, dtype=torch.float32)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    mon = _scaled_run(scaled, scaler, 1, x, y)
    for read in ("grad_norms", "backward_norms", "weight_norms", "activation_means"):
        np.testing.assert_allclose(getattr(mon, read)(), getattr(reference, read)(), rtol=1e-5)
    for name, values in reference.last_backward_signals().items():
        np.testing.assert_allclose(mon.last_backward_signals()[name], values, rtol=1e-5,
                                   atol=1e-12)
    assert np.isfinite(mon.update_ratios()).all()
    assert mon.overflow_steps.tolist() == [] and mon.diagnose().kind == "ok"


def test_passes_whose_scaled_gradients_overflow_are_skipped_not_diagnosed():
    x, y = _batch(dtype=torch.float32)
    model = _mlp(seed=3, dtype=torch.float32)
    # a scale so large that the scaled gradients overflow float32, then a sane one
    scaler = torch.amp.GradScaler("cpu", init_scale=3e38, backoff_factor=1e-34)
    mon = _scaled_run(model, scaler, 3, x, y, factor=1e3)
    assert mon.steps.tolist() == [0, 1, 2]
    assert mon.overflow_steps.tolist() == [0]
    assert not np.isfinite(mon.grad_norms()[0]).all()
    assert np.isfinite(mon.grad_norms()[1:]).all()
    assert np.isnan(mon.update_ratios()[0]).all()  # the scaler skipped that optimizer step
    # (the loss is 1000 x cross-entropy, so that its gradient overflows: large on purpose)
    diagnosis = mon.diagnose(mon.with_thresholds(grad_to_weight_high=1e6, grad_norm_high=1e9))
    assert diagnosis.kind == "ok" and diagnosis.evidence["overflows"] == 1
    assert "1 pass(es) whose scaled gradients overflowed" in str(diagnosis)


def test_a_backward_nan_under_a_grad_scaler_is_diagnosed_once_the_scale_is_down_to_one():
    torch.manual_seed(0)
    model = _chain(_PoisonBackward(8, math.nan)).float()
    x, y = _batch(dtype=torch.float32)
    # scale 4, then 2, then 1: the first two look like overflows, the third cannot be one
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    mon = _scaled_run(model, scaler, 4, x, y)
    assert mon.overflow_steps.tolist() == [0, 1]
    diagnosis = mon.diagnose()
    assert (diagnosis.kind, diagnosis.layer, diagnosis.phase, diagnosis.step) == (
        "nonfinite", "4", "backward", 2)


def test_a_forward_nan_under_a_grad_scaler_is_diagnosed_at_once():
    model = _chain(_Poison(math.nan)).float()
    x, y = _batch(dtype=torch.float32)
    mon = _scaled_run(model, torch.amp.GradScaler("cpu", init_scale=2.0**16), 2, x, y)
    assert mon.overflow_steps.tolist() == []
    diagnosis = mon.diagnose()
    assert (diagnosis.kind, diagnosis.layer, diagnosis.phase, diagnosis.step) == (
        "nonfinite", "4", "forward", 0)


def test_unrecorded_passes_under_a_grad_scaler_ignore_overflowing_gradients():
    x, y = _batch(dtype=torch.float32)
    model = _mlp(seed=3, dtype=torch.float32)
    # pass 0 is recorded at scale 1; passes 1 and 2 (not recorded) overflow at scale 3e38,
    # which pass 2's backoff brings down to 3e4 for the recorded pass 3
    scaler = torch.amp.GradScaler("cpu", init_scale=1.0, growth_factor=3e38,
                                  growth_interval=1, backoff_factor=1e-34)
    mon = _scaled_run(model, scaler, 4, x, y, every=3, factor=1e3)
    assert mon.steps.tolist() == [0, 3] and mon.overflow_steps.tolist() == []
    diagnosis = mon.diagnose(mon.with_thresholds(grad_to_weight_high=1e6, grad_norm_high=1e9))
    assert diagnosis.kind == "ok"
    assert scaler.get_scale() < 1e5  # the passes in between did overflow


def test_half_precision_norms_do_not_overflow():
    # the norm of 16384 entries of 1000 is 128000, beyond float16's largest value, 65504
    big = torch.full((16384,), 1000.0, dtype=torch.float16)
    norms = monitor_module._foreach_norms([big, big.bfloat16()], torch.device("cpu"))
    np.testing.assert_allclose(norms.numpy(), [128000.0, 128000.0], rtol=1e-2)


def test_scaler_must_be_a_grad_scaler():
    with pytest.raises(TypeError, match="scaler must be a torch.amp.GradScaler"):
        GradientMonitor(nn.Linear(2, 2), scaler=2.0**16)


def test_without_the_scaler_an_overflow_is_nonfinite_and_the_advice_names_the_scaler():
    x, y = _batch(dtype=torch.float32)
    model = _mlp(seed=3, dtype=torch.float32)
    scaler = torch.amp.GradScaler("cpu", init_scale=3e38, backoff_factor=1e-34)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)
    with GradientMonitor(model) as mon:
        opt.zero_grad()
        scaler.scale(1e3 * F.cross_entropy(model(x), y)).backward()
        scaler.step(opt)
    diagnosis = mon.diagnose()
    assert diagnosis.kind == "nonfinite" and mon.overflow_steps.tolist() == []
    assert "GradientMonitor(..., scaler=scaler)" in str(diagnosis)


def test_activation_checkpointing_records_what_the_plain_model_records():
    from torch.utils.checkpoint import checkpoint

    class Checkpointed(nn.Module):
        def __init__(self, checkpointed):
            super().__init__()
            self.checkpointed = checkpointed
            self.blocks = nn.ModuleList(
                nn.Sequential(nn.Linear(6, 6), nn.Tanh()) for _ in range(3))
            self.head = nn.Linear(6, 3)

        def forward(self, x):
            for block in self.blocks:
                x = checkpoint(block, x, use_reentrant=False) if self.checkpointed else block(x)
            return self.head(x)

    torch.manual_seed(0)
    plain, checkpointed = Checkpointed(False).double(), Checkpointed(True).double()
    checkpointed.load_state_dict(plain.state_dict())
    x, y = _batch()
    monitors = []
    for model in (plain, checkpointed):
        with GradientMonitor(model) as mon:
            for _ in range(2):
                model.zero_grad()
                F.cross_entropy(model(x), y).backward()
        monitors.append(mon)
    for read in ("grad_norms", "backward_norms", "activation_means", "activation_stds",
                 "saturated_fractions"):
        np.testing.assert_allclose(getattr(monitors[1], read)(), getattr(monitors[0], read)(),
                                   rtol=1e-12)
    assert monitors[1].activation_sources == monitors[0].activation_sources


# --------------------------------------------------------------------------- practitioner setups


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_activations_are_summed_in_float32(dtype, monkeypatch):
    # sigmoid units near 0.92, spread 0.03, under autocast: a mean rounded to bfloat16's 8 bits
    # wipes out the variance, and float16 sums over 131072 entries overflow (65504 at most);
    # the tanh units are all saturated: 131072 of them, a count float16 cannot hold
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 512), nn.Sigmoid(), nn.Linear(512, 512), nn.Tanh(),
                        nn.Linear(512, 4))
    with torch.no_grad():
        net[0].bias.fill_(2.5)
        net[2].bias.fill_(20.0)
    x = torch.randn(256, 64) * 0.7
    slow = []
    all_finite = GradientMonitor._all_finite
    monkeypatch.setattr(GradientMonitor, "_all_finite",
                        staticmethod(lambda *a: slow.append(1) or all_finite(*a)))
    with GradientMonitor(net) as mon, torch.autocast("cpu", dtype=dtype):
        net(x).float().pow(2).mean().backward()
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        a = net[1](net[0](x))
    assert a.dtype == dtype
    a = a.double()
    np.testing.assert_allclose(mon.activation_means()[0, 0], float(a.mean()), rtol=1e-5)
    # (loose: the variance is 0.1% of the mean square, which a float32 norm of 131072
    # entries computed on the CPU carries to a few parts in 1e5)
    np.testing.assert_allclose(mon.activation_stds()[0, 0], float(a.std(unbiased=False)),
                               rtol=5e-2)
    assert mon.saturated_fractions()[0, 1] == 1.0
    assert slow == []  # a finite pass does not go down the slow path


@pytest.mark.parametrize("norm", ["batch", "group", "instance"])
def test_dead_channels_after_a_normalisation_layer_are_channels(norm):
    # conv -> norm -> ReLU: the ReLU belongs to the norm layer, whose units are channels
    torch.manual_seed(0)
    layer = {"batch": nn.BatchNorm2d(8), "group": nn.GroupNorm(2, 8),
             "instance": nn.InstanceNorm2d(8, affine=True)}[norm]
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), layer, nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    with torch.no_grad():
        layer.weight[:3] = 0.0
        layer.bias[:3] = -1.0  # three channels dead for every example
    with GradientMonitor(net) as mon:
        F.cross_entropy(net(torch.randn(16, 3, 8, 8)), torch.arange(16) % 5).backward()
    assert mon.activation_sources["1"] == "2"
    np.testing.assert_allclose(mon.dead_fractions()[0, 1], 3 / 8)
    # unbatched input of an instance norm: channels first
    if norm == "instance":
        head = net[:3]
        with GradientMonitor(head) as mon:
            head(torch.randn(3, 8, 8)).sum().backward()
        np.testing.assert_allclose(mon.dead_fractions()[0, 1], 3 / 8)


@pytest.mark.parametrize("every", [1, 2])
def test_sparse_embedding_gradients(every):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Embedding(50, 8, sparse=True), nn.Flatten(), nn.Linear(40, 2))
    tokens = torch.tensor([[1, 2, 3, 2, 1], [4, 4, 4, 5, 6]])  # repeated rows: uncoalesced
    with GradientMonitor(net, every=every) as mon:
        for _ in range(3):
            net.zero_grad()
            net(tokens).pow(2).mean().backward()
        expected = [float(net[0].weight.grad.to_dense().norm()),
                    float(torch.cat([net[2].weight.grad.flatten(), net[2].bias.grad]).norm())]
    np.testing.assert_allclose(mon.grad_norms()[-1], expected, rtol=1e-6)
    assert mon.diagnose().kind == "ok"


def test_lazy_modules_are_monitored_once_they_are_initialised():
    torch.manual_seed(0)
    net = nn.Sequential(nn.LazyConv2d(4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    with GradientMonitor(net) as mon:
        net(torch.randn(2, 3, 6, 6)).sum().backward()
    assert mon.layer_names == ["0", "3"]
    np.testing.assert_allclose(mon.grad_norms()[0], _own_grad_norms(net), rtol=1e-6)
    assert np.isfinite(mon.dead_fractions()[0, 0])


@pytest.mark.parametrize("monitored", ["compiled module", "original module"])
def test_a_model_run_through_torch_compile(monitored):
    # dynamo traces the hooks of the modules it compiles; they run eagerly, outside the graph
    # ("eager" backend: dynamo's tracing without the slow code generation)
    torch._dynamo.reset()
    x, y = _batch()
    records = []
    for compiled in (False, True):
        net = _mlp(depth=2)
        run = torch.compile(net, backend="eager") if compiled else net
        target = run if compiled and monitored == "compiled module" else net
        with GradientMonitor(target, every=2) as mon:
            for _ in range(4):
                net.zero_grad()
                F.cross_entropy(run(x), y).backward()
        records.append(mon)
        assert _hooks(net) == 0
    reference, monitor = records
    assert monitor.steps.tolist() == [0, 2]
    assert [name.removeprefix("_orig_mod.") for name in monitor.layer_names] == \
        reference.layer_names
    for read in ("grad_norms", "backward_norms", "activation_means", "activation_stds"):
        np.testing.assert_allclose(getattr(monitor, read)(), getattr(reference, read)(),
                                   rtol=1e-12)
    torch._dynamo.reset()


@pytest.mark.parametrize("every", [1, 2])
def test_a_backward_after_the_with_block_is_not_recorded(every):
    net = _mlp()
    x, y = _batch()
    with GradientMonitor(net, every=every) as mon:
        loss = F.cross_entropy(net(x), y)
    loss.backward()  # the monitor is detached: hooks on the graph must not feed it
    assert mon.steps.tolist() == [] and mon._passes == 0
    with mon:  # entering again starts counting where it stopped
        F.cross_entropy(net(x), y).backward()
    assert mon.steps.tolist() == [0]


def test_a_frozen_models_forward_is_not_pooled_into_its_next_pass():
    # GAN style: the discriminator is frozen (requires_grad_(False)) for the generator's step;
    # that backward runs through it but can never fill its .grad
    torch.manual_seed(0)
    gen = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    disc = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
    real = torch.randn(32, 2) + 3
    means, grads = [], []
    with GradientMonitor(disc) as mon:
        for _ in range(3):
            fake = gen(torch.randn(32, 4))
            disc.requires_grad_(True)
            disc.zero_grad()
            (disc(real).mean() - disc(fake.detach()).mean()).backward()
            grads.append(_own_grad_norms(disc))
            with torch.no_grad():
                means.append(float(torch.tanh(disc[0](torch.cat([real, fake]))).mean()))
            disc.requires_grad_(False)
            gen.zero_grad()
            (-disc(fake).mean()).backward()
        left_open = mon._pass
    assert mon.steps.tolist() == [0, 1, 2]
    np.testing.assert_allclose(mon.activation_means()[:, 0], means, rtol=1e-6)
    np.testing.assert_allclose(mon.grad_norms(), grads, rtol=1e-6)
    assert left_open is None  # nothing of the generator's step is carried over
    assert disc[0].weight.grad is not None and gen[0].weight.grad is not None


def test_the_loss_scale_is_read_without_a_host_synchronisation(monkeypatch):
    # GradScaler.get_scale() is a .item() (a GPU -> CPU synchronisation) on top of the one a
    # recorded pass makes: the monitor divides by the scale where it lives instead
    calls = []
    get_scale = torch.amp.GradScaler.get_scale
    monkeypatch.setattr(torch.amp.GradScaler, "get_scale",
                        lambda self: calls.append(1) or get_scale(self))
    x, y = _batch(dtype=torch.float32)
    plain = _mlp(seed=3, dtype=torch.float32)
    with GradientMonitor(plain) as reference:
        for _ in range(2):
            plain.zero_grad()
            F.cross_entropy(plain(x), y).backward()
    scaled = _mlp(seed=3, dtype=torch.float32)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, growth_interval=1)
    opt = torch.optim.SGD(scaled.parameters(), lr=0.0)
    with GradientMonitor(scaled, scaler=scaler) as mon:
        for _ in range(2):
            scaled.zero_grad()
            scaler.scale(F.cross_entropy(scaled(x), y)).backward()
            scaler.step(opt)
            scaler.update()  # doubles the scale in place: the signals were scaled by the old
    assert calls == [] and scaler.get_scale() == 2.0**14
    np.testing.assert_allclose(mon.grad_norms(), reference.grad_norms(), rtol=1e-5)
    np.testing.assert_allclose(mon.backward_norms(), reference.backward_norms(), rtol=1e-5)
    for name, values in reference.last_backward_signals().items():
        np.testing.assert_allclose(mon.last_backward_signals()[name], values, rtol=1e-5,
                                   atol=1e-12)


def test_float16_backward_signals_are_unscaled_in_float32():
    # under float16 autocast the layer outputs, and the gradients at them, are float16; the
    # default scale, 2**16, is beyond float16's largest value (65504)
    x, y = _batch(dtype=torch.float32)
    plain = _mlp(seed=3, dtype=torch.float32)
    with GradientMonitor(plain) as reference:
        F.cross_entropy(plain(x), y).backward()
    scaled = _mlp(seed=3, dtype=torch.float32)
    scaler = torch.amp.GradScaler("cpu")
    with GradientMonitor(scaled, scaler=scaler) as mon:
        with torch.autocast("cpu", dtype=torch.float16):
            loss = F.cross_entropy(scaled(x), y)
        scaler.scale(loss).backward()
    signals = mon.last_backward_signals()
    assert all(values.dtype == np.float32 for values in signals.values())
    for name, values in reference.last_backward_signals().items():
        np.testing.assert_allclose(signals[name], values, rtol=0.05, atol=1e-3 * abs(values).max())
    np.testing.assert_allclose(mon.backward_norms(), reference.backward_norms(), rtol=0.01)


@pytest.mark.parametrize("micro_batches", [1, 4])
def test_update_ratios_with_gradient_accumulation_are_those_of_the_step_that_follows(
        micro_batches):
    model = _mlp(seed=5)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = _batch(n=32)
    expected = []
    with GradientMonitor(model, every=micro_batches, optimizer=opt, update_sample=None) as mon:
        for _ in range(3):  # optimizer steps
            opt.zero_grad()
            for part in range(micro_batches):
                chunk = slice(8 * part, 8 * part + 8)
                (F.cross_entropy(model(x[chunk]), y[chunk]) / micro_batches).backward()
            before = [nn.utils.parameters_to_vector(layer.parameters()).detach()
                      for layer in model.linears]
            opt.step()
            after = [nn.utils.parameters_to_vector(layer.parameters()).detach()
                     for layer in model.linears]
            expected.append([float((a - b).norm() / b.norm())
                             for a, b in zip(after, before, strict=True)])
    # one recorded pass per step (the first micro-batch), each with the update that ended it
    assert mon.steps.tolist() == [0, micro_batches, 2 * micro_batches]
    np.testing.assert_allclose(mon.update_ratios()[:, :len(model.linears)], expected, rtol=1e-9)


def test_a_model_that_calls_itself_is_one_pass():
    class Recursive(nn.Module):  # a tree-like model: the root calls itself on a sub-batch
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(6, 6)

        def forward(self, x):
            out = torch.tanh(self.linear(x))
            return out + self(x[: len(x) // 2]).mean(0) if len(x) > 8 else out

    torch.manual_seed(0)
    model = Recursive().double()
    x, _ = _batch(n=32)
    with GradientMonitor(model) as mon:
        for _ in range(3):
            model.zero_grad()
            model(x).pow(2).mean().backward()
            grad = float(model.linear.weight.grad.norm().hypot(model.linear.bias.grad.norm()))
    assert mon.steps.tolist() == [0, 1, 2]
    np.testing.assert_allclose(mon.grad_norms()[-1], [grad], rtol=1e-12)


def test_unrecorded_half_precision_passes_with_large_finite_values_stay_on_the_fast_path(
        monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 512), nn.Linear(512, 512)).half()
    with torch.no_grad():
        model[1].weight *= 2000  # outputs of a few hundred: their norm is beyond 65504
    x = torch.randn(64, 64, dtype=torch.float16)
    with GradientMonitor(model, every=1000) as mon:
        model(x).float().mean().backward()  # recorded
        calls = []
        real = torch.isfinite
        monkeypatch.setattr(torch, "isfinite", lambda t: calls.append(t) or real(t))
        for _ in range(3):
            model.zero_grad()
            out = model(x)
            assert bool(real(out).all()) and float(out.detach().float().norm()) > 65504
            out.float().mean().backward()
    assert calls == []  # no entry-by-entry search on the passes in between
    assert mon.diagnose().kind != "nonfinite"


@pytest.mark.parametrize("relative_spread", [1e-2, 1e-3])
def test_the_std_of_a_nearly_constant_float32_activation_is_accurate(relative_spread):
    # mean square minus squared mean cancels most digits of float32 sums here
    torch.manual_seed(0)
    layer = nn.Linear(4, 4096)
    with torch.no_grad():
        layer.weight.mul_(relative_spread)
        layer.bias.fill_(10.0)
    x = torch.randn(512, 4)
    with GradientMonitor(layer) as mon:
        out = layer(x)
        out.sum().backward()
    std = float(out.detach().double().std(unbiased=False))
    np.testing.assert_allclose(mon.activation_stds()[0, 0], std, rtol=1e-3)
    np.testing.assert_allclose(mon.activation_means()[0, 0], 10.0, rtol=1e-4)
