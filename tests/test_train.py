import copy
import math
import signal
import time

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import gradtext as gt
from gradtext.models import DeepMLP
from gradtext.tasks import argmax_task, teacher_student
from gradtext.train import History, fit, global_grad_norm


def _problem(seed=0):
    x, y = argmax_task(n=256, dim=8, classes=3, seed=seed)
    torch.manual_seed(seed)
    return DeepMLP(8, 3, width=16, depth=3, activation="tanh"), (x, y)


def _sgd(lr):
    return lambda params: torch.optim.SGD(params, lr=lr)


def test_fit_records_one_entry_per_step_and_learns():
    net, data = _problem()
    history = fit(net, data, loss="cross_entropy", optimizer=_sgd(0.5), steps=150,
                  batch_size=64, progress=False, device="cpu")
    assert isinstance(history, History)
    assert history.steps == len(history.grad_norm) == len(history.time) == 150
    assert not history.diverged and history.diverged_at is None
    assert sum(history.loss[-10:]) / 10 < 0.7 * sum(history.loss[:10]) / 10
    assert all(b >= a for a, b in zip(history.time, history.time[1:], strict=False))
    assert history.device == "cpu"


def test_same_seed_gives_bit_identical_histories():
    runs = []
    for _ in range(2):
        net, data = _problem(seed=1)
        runs.append(fit(net, data, loss="cross_entropy", optimizer=_sgd(0.2), steps=40,
                        batch_size=32, progress=False, seed=7))
    assert runs[0].loss == runs[1].loss and runs[0].grad_norm == runs[1].grad_norm
    net, data = _problem(seed=1)
    other = fit(net, data, loss="cross_entropy", optimizer=_sgd(0.2), steps=40, batch_size=32,
                progress=False, seed=8)
    assert other.loss != runs[0].loss


def test_divergence_stops_cleanly_before_the_bad_update(capsys):
    x, y = teacher_student(n=128, dim=4, seed=0)
    torch.manual_seed(0)
    net = DeepMLP(4, 1, width=16, depth=3, activation="relu")
    history = fit(net, (x, y), loss="mse", optimizer=_sgd(5.0), steps=200, progress=True)
    assert history.diverged and history.diverged_at == history.steps - 1 < 199
    assert not (math.isfinite(history.loss[-1]) and math.isfinite(history.grad_norm[-1]))
    assert all(math.isfinite(v) for v in history.loss[:-1])
    # the non-finite gradient was never applied: the weights are still finite
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert f"diverged at step {history.diverged_at}" in capsys.readouterr().out


def test_nan_in_the_data_is_caught_at_the_first_step():
    x, y = teacher_student(n=32, dim=4, seed=0)
    x[0, 0] = float("nan")
    net = DeepMLP(4, 1, width=8, depth=2)
    history = fit(net, (x, y), loss="mse", optimizer=_sgd(0.1), steps=10, batch_size=32,
                  progress=False)
    assert history.diverged_at == 0 and history.steps == 1


def test_ctrl_c_returns_what_was_trained_so_far():
    net, data = _problem()

    def interrupt(step, history):
        if step == 5:
            raise KeyboardInterrupt

    history = fit(net, data, loss="cross_entropy", optimizer=_sgd(0.1), steps=100,
                  progress=False, callback=interrupt)
    assert history.interrupted and history.steps == 6 and not history.diverged


def test_callback_can_stop_training():
    net, data = _problem()
    history = fit(net, data, loss="cross_entropy", optimizer=_sgd(0.1), steps=100,
                  progress=False, callback=lambda step, h: step == 9)
    assert history.steps == 10 and not history.interrupted


def test_float_clip_records_the_norm_before_clipping_and_applies_the_coefficient():
    net, data = _problem()
    before = [p.detach().clone() for p in net.parameters()]
    history = fit(net, data, loss="cross_entropy", optimizer=_sgd(1.0), steps=1,
                  batch_size=256, progress=False, clip=1e-3)
    norm, coefficient = history.grad_norm[0], history.clip_coefficient[0]
    assert coefficient == pytest.approx(1e-3 / norm, rel=1e-4)
    step = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, net.parameters(),
                                                                 strict=True)])
    assert float(step.norm()) == pytest.approx(1e-3, rel=1e-3)


def test_callable_clip_is_used_and_its_telemetry_recorded():
    calls = []

    def clipper(parameters):
        calls.append(len(parameters))
        return torch.nn.utils.clip_grad_norm_(parameters, 0.5)

    net, data = _problem()
    history = fit(net, data, loss="cross_entropy", optimizer=_sgd(0.1), steps=3,
                  progress=False, clip=clipper)
    assert calls == [6, 6, 6] and history.clip_coefficient == [1.0, 1.0, 1.0]


def test_dataloader_is_cycled_and_eval_data_recorded():
    x, y = argmax_task(n=64, dim=8, classes=3, seed=0)
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    net = DeepMLP(8, 3, width=8, depth=2)
    history = fit(net, loader, loss="cross_entropy", optimizer=_sgd(0.1), steps=10,
                  progress=False, eval_data=(x, y), eval_every=4)
    assert history.steps == 10
    assert history.eval_step == [4, 8, 10] and len(history.eval_loss) == 3


def test_full_batch_when_batch_size_exceeds_the_data():
    x, y = teacher_student(n=20, dim=3, seed=0)
    net = DeepMLP(3, 1, width=4, depth=2)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    history = fit(net, (x, y), loss="mse", optimizer=opt, steps=3, batch_size=100,
                  progress=False)
    assert history.loss[0] == history.loss[1] == history.loss[2]


def test_steps_zero_records_nothing():
    net, data = _problem()
    assert fit(net, data, loss="mse", optimizer=_sgd(0.1), steps=0, progress=False).steps == 0


def test_global_grad_norm_matches_pytorch_and_survives_huge_values():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 3)) for _ in range(3)]
    for p in params:
        p.grad = torch.randn_like(p)
    expected = torch.nn.utils.clip_grad_norm_(params, max_norm=1e9)
    assert float(global_grad_norm(params)) == pytest.approx(float(expected), rel=1e-6)
    assert float(global_grad_norm([])) == 0.0


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"steps": -1}, ValueError, "steps must be >= 0"),
        ({"steps": 2.0}, TypeError, "steps must be an int"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"loss": "hinge"}, ValueError, "loss must be one of"),
        ({"loss": 3}, TypeError, "loss must be a str or a callable"),
        ({"optimizer": "sgd"}, TypeError, "optimizer must be a torch.optim.Optimizer"),
        ({"device": "gpu"}, ValueError, "device must be one of"),
        ({"clip": -1.0}, ValueError, "clip must be None, a positive number"),
        ({"data": "abc"}, TypeError, "data must be an"),
        ({"data": iter([])}, TypeError, "one-shot iterator"),
        ({"data": (torch.zeros(3, 8), torch.zeros(2))}, ValueError, "differ in length"),
        ({"model": "net"}, TypeError, "model must be a torch.nn.Module"),
    ],
)
def test_bad_input_is_named(kwargs, error, message):
    net, data = _problem()
    args = {"model": net, "data": data, "loss": "cross_entropy", "optimizer": _sgd(0.1),
            "steps": 2, "progress": False} | kwargs
    model, data_arg = args.pop("model"), args.pop("data")
    with pytest.raises(error, match=message):
        fit(model, data_arg, **args)


def test_history_arrays_and_repr():
    history = History(loss=[1.0, float("nan")], grad_norm=[2.0, float("inf")], time=[0.1, 0.2],
                      diverged=True, diverged_at=1)
    arrays = history.arrays()
    assert arrays["loss"].shape == (2,) and math.isinf(arrays["grad_norm"][1])
    assert "diverged at step 1" in repr(history)


def test_package_exports_the_contract():
    for name in ["fit", "History", "resolve_device", "seed_everything", "DeepMLP"]:
        assert hasattr(gt, name)


def test_fit_refuses_inputs_that_would_silently_train_nothing():
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    model, other = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    sgd_other = torch.optim.SGD(other.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="optimizer holds none of the model's parameters"):
        gt.fit(model, (x, y), loss="mse", optimizer=sgd_other, steps=1, progress=False,
               device="cpu")
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="monitor watches a different model"):
        gt.fit(model, (x, y), loss="mse", optimizer=sgd, steps=1, progress=False, device="cpu",
               monitor=gt.GradientMonitor(other))
    with pytest.raises(TypeError, match="monitor must be"):
        gt.fit(model, (x, y), loss="mse", optimizer=sgd, steps=1, progress=False, device="cpu",
               monitor=5)
    with pytest.raises(TypeError, match="clip must be"):
        gt.fit(model, (x, y), loss="mse", optimizer=sgd, steps=1, progress=False, device="cpu",
               clip="1.0")


def _inf_gradient_at(call: int):
    """An MSE loss whose ``call``-th evaluation has a finite value but an infinite gradient."""
    calls = {"n": 0}

    def loss(output, target):
        calls["n"] += 1
        if calls["n"] == call:
            output.register_hook(lambda g: torch.full_like(g, math.inf))
        return torch.nn.functional.mse_loss(output, target)

    return loss


def _small_regression():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    return model, (torch.randn(64, 4), torch.randn(64, 1))


def test_a_clipper_that_zeroes_a_nonfinite_gradient_lets_training_go_on():
    model, data = _small_regression()
    history = fit(model, data, loss=_inf_gradient_at(3), optimizer=_sgd(0.1), steps=6,
                  progress=False, device="cpu", clip=gt.AutoClip(nonfinite="zero"))
    assert not history.diverged and history.diverged_at is None and history.steps == 6
    assert all(math.isfinite(v) for v in history.loss)
    assert not math.isfinite(history.grad_norm[2])  # the norm before clipping is recorded
    assert history.clip_coefficient[2] == 0.0
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_a_clipper_that_leaves_a_nonfinite_gradient_stops_training_before_the_update():
    model, data = _small_regression()
    history = fit(model, data, loss=_inf_gradient_at(3), optimizer=_sgd(0.1), steps=6,
                  progress=False, device="cpu", clip=gt.AutoClip(nonfinite="skip"))
    assert history.diverged and history.diverged_at == 2 and history.steps == 3
    assert history.clip_coefficient == [1.0, 1.0, 1.0]  # "skip" applied nothing: no NaN
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_a_nonfinite_gradient_with_a_float_clip_still_diverges():
    model, data = _small_regression()
    history = fit(model, data, loss=_inf_gradient_at(2), optimizer=_sgd(0.1), steps=6,
                  progress=False, device="cpu", clip=1.0)
    assert history.diverged and history.diverged_at == 1


def test_monitor_must_be_a_gradient_monitor(tmp_path):
    model, data = _small_regression()
    with open(tmp_path / "log.txt", "w") as handle:
        with pytest.raises(TypeError, match="monitor must be a gradtext.GradientMonitor"):
            fit(model, data, loss="mse", optimizer=_sgd(0.1), steps=1, progress=False,
                device="cpu", monitor=handle)
        assert not handle.closed


@pytest.mark.parametrize(
    "data, message",
    [
        ((torch.zeros(8, 4), torch.zeros(8, 1), torch.zeros(8, 1)), "a tuple of 3 tensors"),
        ([torch.zeros(8, 4)], "a list of 1 tensors"),
        ([(torch.zeros(8, 4), torch.zeros(8, 1), torch.zeros(8))], "each batch must be an"),
    ],
)
def test_data_that_is_not_an_inputs_targets_pair_is_named(data, message):
    model, _ = _small_regression()
    with pytest.raises(ValueError, match=rf"data.*{message}"):
        fit(model, data, loss="mse", optimizer=_sgd(0.1), steps=1, progress=False,
            device="cpu")


# --- review: gradients, losses, data, Ctrl-C and determinism ----------------------------------


def test_grad_norm_is_this_steps_gradient_when_the_optimizer_trains_part_of_the_model():
    # parameters outside the optimizer still get gradients; they must not accumulate over steps
    torch.manual_seed(0)
    body, head = torch.nn.Linear(4, 8), torch.nn.Linear(8, 1)
    model = torch.nn.Sequential(body, torch.nn.Tanh(), head)
    data = (torch.randn(32, 4), torch.randn(32, 1))
    history = fit(model, data, loss="mse", optimizer=torch.optim.SGD(head.parameters(), lr=0.0),
                  steps=4, batch_size=32, progress=False, device="cpu")
    assert history.grad_norm == pytest.approx([history.grad_norm[0]] * 4, rel=1e-6)
    model.zero_grad()
    torch.nn.functional.mse_loss(model(data[0]), data[1]).backward()
    assert history.grad_norm[0] == pytest.approx(float(global_grad_norm(model.parameters())))


def test_mse_refuses_output_and_target_shapes_that_would_broadcast():
    model = torch.nn.Linear(4, 1)
    data = (torch.randn(32, 4), torch.randn(32))  # targets (32,), outputs (32, 1)
    with pytest.raises(ValueError, match=r"loss='mse'.*\(32, 1\).*\(32,\)"):
        fit(model, data, loss="mse", optimizer=_sgd(0.1), steps=1, progress=False,
            device="cpu")


def test_cross_entropy_accepts_pytorchs_class_dimension_layout_and_probability_targets():
    torch.manual_seed(0)
    model = torch.nn.Conv1d(3, 5, kernel_size=1)  # (batch, 5 classes, length 7)
    x, y = torch.randn(16, 3, 7), torch.randint(0, 5, (16, 7))
    history = fit(model, (x, y), loss="cross_entropy", optimizer=_sgd(0.0), steps=1,
                  batch_size=16, progress=False, device="cpu")
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model(x), y)
    assert history.loss[0] == pytest.approx(float(expected), rel=1e-6)
    # where both layouts fit (time == classes), the documented (batch, time, classes) wins
    logits, labels = torch.randn(4, 3, 3), torch.randint(0, 3, (4, 3))
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 3), labels.reshape(-1))
    assert float(gt.train.LOSSES["cross_entropy"](logits, labels)) == float(expected)
    # (batch, time, classes) outputs with class-probability targets of the same shape
    logits, probabilities = torch.randn(4, 6, 3), torch.softmax(torch.randn(4, 6, 3), dim=-1)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 3),
                                                 probabilities.reshape(-1, 3))
    assert float(gt.train.LOSSES["cross_entropy"](logits, probabilities)) == pytest.approx(
        float(expected), rel=1e-6)


def test_a_loss_that_is_not_a_scalar_tensor_is_named():
    model, data = _small_regression()
    with pytest.raises(ValueError, match="loss must return a scalar tensor.*shape"):
        fit(model, data, loss=torch.nn.MSELoss(reduction="none"), optimizer=_sgd(0.1), steps=1,
            progress=False, device="cpu")
    with pytest.raises(TypeError, match="loss must return a scalar tensor, got float"):
        fit(model, data, loss=lambda output, target: 1.0, optimizer=_sgd(0.1), steps=1,
            progress=False, device="cpu")
    one = fit(model, data, loss=lambda o, t: torch.nn.functional.mse_loss(o, t).reshape(1),
              optimizer=_sgd(0.1), steps=2, progress=False, device="cpu")
    assert one.steps == 2 and all(math.isfinite(v) for v in one.loss)


@pytest.mark.parametrize(
    "data, message",
    [
        ((np.zeros((8, 4), np.float32), np.zeros((8, 1), np.float32)), "torch.as_tensor"),
        ((np.zeros((2, 4), np.float32), np.zeros((2, 1), np.float32)), "torch.as_tensor"),
        ([{"inputs": torch.zeros(8, 4), "targets": torch.zeros(8, 1)}], "tensors, got str"),
    ],
)
def test_data_that_is_not_tensors_is_named(data, message):
    model, _ = _small_regression()
    with pytest.raises(TypeError, match=rf"data.*{message}"):
        fit(model, data, loss="mse", optimizer=_sgd(0.1), steps=1, progress=False,
            device="cpu")


@pytest.mark.parametrize(
    "eval_data, error, message",
    [
        ((torch.zeros(8, 4), torch.zeros(8, 1), torch.zeros(8, 1)), ValueError, "pair"),
        ([(torch.zeros(8, 4), torch.zeros(8, 1))], TypeError, "pair of tensors"),
        ((torch.zeros(8, 4), torch.zeros(7, 1)), ValueError, "differ in length"),
    ],
)
def test_bad_eval_data_is_named_before_training(eval_data, error, message):
    model, data = _small_regression()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(error, match=rf"eval_data.*{message}"):
        fit(model, data, loss="mse", optimizer=_sgd(0.1), steps=3, progress=False,
            device="cpu", eval_data=eval_data)
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def test_ctrl_c_at_any_moment_leaves_a_consistent_history(monkeypatch):
    # Ctrl-C can arrive between two of a step's records: every series keeps the same length
    model, data = _small_regression()
    clock, calls = time.perf_counter, {"n": 0}

    def interrupted_clock():
        calls["n"] += 1
        if calls["n"] == 4:  # the start, steps 0 and 1, then step 2's time stamp
            raise KeyboardInterrupt
        return clock()

    monkeypatch.setattr(gt.train.time, "perf_counter", interrupted_clock)
    history = fit(model, data, loss="mse", optimizer=_sgd(0.1), steps=10, progress=False,
                  device="cpu", clip=1.0)
    assert history.interrupted and not history.diverged
    lengths = {len(history.loss), len(history.grad_norm), len(history.time),
               len(history.clip_coefficient), len(history.lr)}
    assert lengths == {2}


def test_ctrl_c_during_evaluation_keeps_eval_records_paired_and_the_model_training():
    model, data = _small_regression()

    def loss(output, target):
        if not torch.is_grad_enabled():  # evaluation
            raise KeyboardInterrupt
        return torch.nn.functional.mse_loss(output, target)

    history = fit(model, data, loss=loss, optimizer=_sgd(0.1), steps=10, progress=False,
                  device="cpu", eval_data=data, eval_every=3)
    assert history.interrupted and history.steps == 3
    assert history.eval_step == [] and history.eval_loss == []
    assert model.training


def test_ctrl_c_and_divergence_with_a_monitor_and_a_clipper_attached():
    model, data = _small_regression()
    monitor = gt.GradientMonitor(model)

    def interrupt(step, history):
        if step == 4:
            raise KeyboardInterrupt

    history = fit(model, data, loss="mse", optimizer=_sgd(0.1), steps=50, progress=False,
                  device="auto", clip=gt.AutoClip(), monitor=monitor, callback=interrupt)
    assert history.interrupted and history.steps == 5 and not monitor.active
    assert monitor.grad_norms().shape[0] == 5
    model, data = _small_regression()
    monitor = gt.GradientMonitor(model)
    history = fit(model, data, loss=_inf_gradient_at(3), optimizer=_sgd(0.1), steps=6,
                  progress=False, device="auto", clip=gt.AutoClip(nonfinite="skip"),
                  monitor=monitor)
    assert history.diverged and history.diverged_at == 2 and not monitor.active
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_same_seed_and_initial_model_give_identical_histories_with_dropout():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(0.5),
                                torch.nn.Linear(16, 1))
    copy_ = copy.deepcopy(model)
    data = (torch.randn(64, 4), torch.randn(64, 1))
    state = torch.get_rng_state()
    first = fit(model, data, loss="mse", optimizer=_sgd(0.1), steps=5, progress=False,
                device="cpu", seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    torch.rand(7)  # whatever happened in between
    second = fit(copy_, data, loss="mse", optimizer=_sgd(0.1), steps=5, progress=False,
                 device="cpu", seed=3)
    assert first.loss == second.loss


def test_numpy_integers_are_accepted_as_counts():
    model, data = _small_regression()
    history = fit(model, data, loss="mse", optimizer=_sgd(0.1), steps=np.int64(3),
                  batch_size=np.int32(16), progress=False, device="cpu")
    assert history.steps == 3


def test_a_nonfinite_gradient_of_a_parameter_outside_the_model_stops_before_the_update():
    # the optimizer also trains a parameter of the loss: its gradient is checked and clipped too
    model, data = _small_regression()
    scale = torch.nn.Parameter(torch.ones(()))
    calls = {"n": 0}

    def loss(output, target):
        calls["n"] += 1
        used = scale.clone()
        if calls["n"] == 2:
            used.register_hook(lambda g: torch.full_like(g, math.inf))
        return torch.nn.functional.mse_loss(output * used, target)

    sgd = torch.optim.SGD([*model.parameters(), scale], lr=0.1)
    history = fit(model, data, loss=loss, optimizer=sgd, steps=5, progress=False, device="cpu")
    assert history.diverged and history.diverged_at == 1
    assert math.isfinite(float(scale.detach()))


def test_auto_keeps_a_model_already_on_an_accelerator_where_it_is():
    from gradtext.train import _training_device

    # the meta device stands in for a second GPU (cuda:1): "auto" must not move the model to
    # the default device, while an explicit request still wins
    model = torch.nn.Linear(2, 2, device="meta")
    assert _training_device(model, "auto") == torch.device("meta")
    assert _training_device(model, " AUTO ") == torch.device("meta")
    assert _training_device(model, "cpu") == torch.device("cpu")
    assert _training_device(torch.nn.Linear(2, 2), "auto") == gt.resolve_device("auto")


class _InterruptedMidStep(torch.optim.SGD):
    """SGD that receives a Ctrl-C (a real SIGINT) between updating its first and last
    parameter, at step ``at``."""

    def __init__(self, params, at: int) -> None:
        super().__init__(params, lr=0.1)
        self.at, self.calls = at, 0

    @torch.no_grad()
    def step(self, closure=None):
        params = [p for group in self.param_groups for p in group["params"]]
        for index, p in enumerate(params):
            if self.calls == self.at and index == len(params) // 2:
                signal.raise_signal(signal.SIGINT)
            p.add_(p.grad, alpha=-0.1)
        self.calls += 1


def test_ctrl_c_during_the_optimizer_step_is_held_until_every_parameter_is_updated():
    model, data = _small_regression()
    reference = copy.deepcopy(model)
    optimizer = _InterruptedMidStep(model.parameters(), at=2)
    history = fit(model, data, loss="mse", optimizer=optimizer, steps=10, progress=False,
                  device="cpu")
    assert history.interrupted and history.steps == 3 and optimizer.calls == 3
    # the same three steps, uninterrupted: every parameter got the third update
    plain = fit(reference, data, loss="mse", optimizer=_sgd(0.1)(reference.parameters()),
                steps=3, progress=False, device="cpu")
    assert plain.loss == history.loss
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_custom_sigint_handler_is_left_alone_during_the_step():
    model, data = _small_regression()
    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        optimizer = _InterruptedMidStep(model.parameters(), at=1)
        history = fit(model, data, loss="mse", optimizer=optimizer, steps=4, progress=False,
                      device="cpu")
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert calls == [signal.SIGINT] and history.steps == 4 and not history.interrupted


def test_a_warm_up_scheduler_sets_each_steps_learning_rate_as_in_a_plain_loop():
    model, data = _small_regression()
    reference = copy.deepcopy(model)

    def warm_up(optimizer):
        return torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.25, total_iters=4)

    history = fit(model, data, loss="mse", optimizer=_sgd(0.1), steps=6, progress=False,
                  device="cpu", batch_size=1000, scheduler=warm_up)
    assert history.lr == pytest.approx([0.025, 0.04375, 0.0625, 0.08125, 0.1, 0.1])
    assert history.arrays()["lr"].shape == (6,)
    # the same training by hand, full batch
    inputs, targets = data
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    scheduler = warm_up(optimizer)
    for _ in range(6):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(reference(inputs), targets).backward()
        optimizer.step()
        scheduler.step()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_without_a_scheduler_the_learning_rate_is_recorded_unchanged():
    model, data = _small_regression()
    history = fit(model, data, loss="mse", optimizer=_sgd(0.05), steps=3, progress=False,
                  device="cpu")
    assert history.lr == [0.05, 0.05, 0.05]


def test_reduce_on_plateau_is_stepped_with_the_evaluation_loss():
    model, data = _small_regression()

    def plateau(optimizer):
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0,
                                                          eps=0.0)

    # a learning rate so small that the evaluation loss cannot improve: halved after every
    # evaluation but the first
    history = fit(model, data, loss="mse", optimizer=_sgd(1e-12), steps=4, progress=False,
                  device="cpu", eval_data=data, eval_every=1, scheduler=plateau)
    assert history.lr == pytest.approx([1e-12, 1e-12, 5e-13, 2.5e-13], rel=1e-9)
    with pytest.raises(ValueError, match="ReduceLROnPlateau needs eval_data"):
        fit(model, data, loss="mse", optimizer=_sgd(0.1), steps=2, progress=False,
            scheduler=plateau)


def test_bad_schedulers_are_named():
    model, data = _small_regression()
    other = torch.optim.SGD(copy.deepcopy(model).parameters(), lr=0.1)
    with pytest.raises(TypeError, match="scheduler must be None"):
        fit(model, data, loss="mse", optimizer=_sgd(0.1), steps=2, progress=False,
            scheduler="cosine")
    with pytest.raises(ValueError, match="scheduler must schedule the optimizer"):
        fit(model, data, loss="mse", optimizer=_sgd(0.1), steps=2, progress=False,
            scheduler=torch.optim.lr_scheduler.StepLR(other, step_size=1))
    with pytest.raises(TypeError, match="scheduler factory must return"):
        fit(model, data, loss="mse", optimizer=_sgd(0.1), steps=2, progress=False,
            scheduler=lambda optimizer: optimizer)


def test_a_diverged_step_does_not_step_the_scheduler():
    net = torch.nn.Linear(1, 1)
    data = (torch.ones(8, 1), torch.zeros(8, 1))
    optimizer = torch.optim.SGD(net.parameters(), lr=100.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=1.0)
    history = fit(net, data, loss="mse", optimizer=optimizer, steps=100, progress=False,
                  device="cpu", scheduler=scheduler)
    assert history.diverged and len(history.lr) == history.steps
    assert scheduler.last_epoch == history.steps - 1  # every step but the diverged one
