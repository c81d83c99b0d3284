import copy
import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from gradtext.optim import SGD, AdaGrad, Adam, RMSProp

F64 = torch.float64
TOL = 1e-12
STEPS = 25


# --- a grid of options for each optimizer, and PyTorch's optimizer for the same options ---------


def _sgd_cases():
    for momentum, dampening, nesterov, weight_decay in itertools.product(
        (0.0, 0.9), (0.0, 0.5), (False, True), (0.0, 1e-2)
    ):
        if nesterov and (momentum == 0 or dampening != 0):
            continue
        kwargs = dict(
            lr=0.05, momentum=momentum, dampening=dampening, nesterov=nesterov,
            weight_decay=weight_decay,
        )
        yield SGD, torch.optim.SGD, kwargs, kwargs


def _adagrad_cases():
    for weight_decay, initial in itertools.product((0.0, 1e-2), (0.0, 0.1)):
        kwargs = dict(lr=0.1, weight_decay=weight_decay, initial_accumulator_value=initial)
        yield AdaGrad, torch.optim.Adagrad, kwargs, kwargs
    kwargs = dict(lr=0.1, eps=1e-3)
    yield AdaGrad, torch.optim.Adagrad, kwargs, kwargs


def _rmsprop_cases():
    for momentum, centered, weight_decay in itertools.product(
        (0.0, 0.9), (False, True), (0.0, 1e-2)
    ):
        kwargs = dict(lr=1e-2, momentum=momentum, centered=centered, weight_decay=weight_decay)
        yield RMSProp, torch.optim.RMSprop, kwargs, kwargs
    kwargs = dict(lr=1e-2, alpha=0.9, eps=1e-4, momentum=0.5, centered=True)
    yield RMSProp, torch.optim.RMSprop, kwargs, kwargs


def _adam_cases():
    for amsgrad, weight_decay, decoupled in itertools.product(
        (False, True), (0.0, 1e-1), (False, True)
    ):
        ours = dict(lr=1e-2, amsgrad=amsgrad, weight_decay=weight_decay)
        if decoupled:  # AdamW: compared with torch.optim.AdamW itself
            yield Adam, torch.optim.AdamW, {**ours, "decoupled_weight_decay": True}, ours
        else:
            yield Adam, torch.optim.Adam, ours, ours
    kwargs = dict(lr=3e-2, betas=(0.8, 0.99), eps=1e-6, amsgrad=True)
    yield Adam, torch.optim.Adam, kwargs, kwargs


CASES = [*_sgd_cases(), *_adagrad_cases(), *_rmsprop_cases(), *_adam_cases()]


def _case_id(case):
    ours, theirs, kwargs, _ = case
    options = ",".join(f"{k}={v}" for k, v in kwargs.items())
    return f"{ours.__name__}-vs-{theirs.__name__}({options})"


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()


def _batch(seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 4, dtype=F64, generator=generator)
    y = torch.randn(16, 1, dtype=F64, generator=generator)
    return x, y


def _train(model, optimizer, steps=STEPS):
    x, y = _batch()
    for _ in range(steps):
        optimizer.zero_grad()
        F.mse_loss(model(x), y).backward()
        optimizer.step()


def _close(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and torch.allclose(a, b, rtol=0, atol=TOL)


# --- the same numbers as torch.optim ------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_parameters_and_state_match_torch_optim(case):
    ours_type, theirs_type, ours_kwargs, theirs_kwargs = case
    model = _mlp()
    twin = copy.deepcopy(model)
    start = [p.detach().clone() for p in model.parameters()]
    ours = ours_type(model.parameters(), **ours_kwargs)
    theirs = theirs_type(twin.parameters(), **theirs_kwargs)
    _train(model, ours)
    _train(twin, theirs)

    moved = max(
        (p - p0).abs().max().item() for p, p0 in zip(model.parameters(), start, strict=True)
    )
    assert moved > 1e-3  # the test compares real training, not two standing models
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert _close(p, q)
        our_state, their_state = ours.state[p], theirs.state[q]
        assert set(our_state) == set(their_state)
        for name, value in their_state.items():
            if name == "step":
                assert our_state["step"] == STEPS == int(value)
            else:
                assert _close(our_state[name], value), name


def test_state_dict_round_trip_continues_the_same_run():
    model = _mlp()
    twin = copy.deepcopy(model)
    straight = Adam(model.parameters(), lr=1e-2, amsgrad=True)
    _train(model, straight, steps=20)

    first = Adam(twin.parameters(), lr=1e-2, amsgrad=True)
    _train(twin, first, steps=10)
    resumed = Adam(twin.parameters(), lr=1e-2, amsgrad=True)
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    _train(twin, resumed, steps=10)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)
    assert resumed.state[next(twin.parameters())]["step"] == 20


# --- Adam's step does not scale with the gradient -----------------------------------------------


_entry = st.one_of(
    st.just(0.0),
    st.builds(
        lambda sign, mantissa, exponent: sign * mantissa * 10.0**exponent,
        st.sampled_from([-1.0, 1.0]),
        st.floats(1.0, 10.0),
        st.integers(-6, 6),
    ),
)


@settings(max_examples=60, deadline=None)
@given(
    grads=st.lists(_entry, min_size=1, max_size=12),
    lr=st.sampled_from([1e-4, 1e-3, 1e-2, 0.3]),
    eps=st.sampled_from([1e-8, 1e-6]),
    amsgrad=st.booleans(),
)
def test_adam_first_step_is_lr_times_sign_of_gradient(grads, lr, eps, amsgrad):
    g = torch.tensor(grads, dtype=F64)
    start = torch.linspace(-1.0, 1.0, len(grads), dtype=F64)
    w = start.clone().requires_grad_()
    optimizer = Adam([w], lr=lr, eps=eps, amsgrad=amsgrad)
    w.grad = g.clone()
    optimizer.step()
    delta = w.detach() - start
    expected = -lr * g / (g.abs() + eps)  # lr * sign(g), shrunk only where |g| ~ eps
    assert torch.allclose(delta, expected, rtol=1e-9, atol=1e-15)
    assert bool((delta[g == 0] == 0).all())
    assert bool((delta.abs() <= lr * (1 + 1e-12)).all())


def test_adam_step_stays_bounded_under_a_sudden_huge_gradient():
    lr, beta1, beta2 = 1e-3, 0.9, 0.999
    g = torch.tensor([1e-3, -0.5, 2.0, 7e2], dtype=F64)
    w = torch.zeros(4, dtype=F64, requires_grad=True)
    optimizer = Adam([w], lr=lr, betas=(beta1, beta2))
    for _ in range(3000):
        w.grad = g.clone()
        optimizer.step()
    before = w.detach().clone()
    w.grad = 1e6 * g  # a spike: a million times the usual gradient
    optimizer.step()
    moved = (w.detach() - before).abs()

    bound = lr * (1 - beta1) / math.sqrt(1 - beta2)  # about 3.16 lr
    assert bool((moved <= bound * (1 + 1e-4)).all())
    assert bool((moved >= 0.95 * bound).all())  # the bound is what it does, not a loose limit
    # the same step for gradients of 1e3 .. 7e8, where SGD would move lr * |grad|
    assert moved.max() / moved.min() < 1 + 1e-3
    assert bool((moved < 1e-2 * lr * w.grad.abs()).all())


# --- param groups, zero_grad, closures, skipped parameters -------------------------------------


@pytest.mark.parametrize(
    "ours_type, theirs_type",
    [(SGD, torch.optim.SGD), (AdaGrad, torch.optim.Adagrad), (RMSProp, torch.optim.RMSprop),
     (Adam, torch.optim.Adam)],
)
def test_param_groups_with_their_own_lr(ours_type, theirs_type):
    model = _mlp()
    twin = copy.deepcopy(model)

    def groups(m):
        return [
            {"params": m[0].parameters(), "lr": 0.05},
            {"params": m[2].parameters()},  # the default lr
            ]

    ours = ours_type(groups(model), lr=1e-3)
    theirs = theirs_type(groups(twin), lr=1e-3)
    assert [g["lr"] for g in ours.param_groups] == [0.05, 1e-3]
    _train(model, ours)
    _train(twin, theirs)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert _close(p, q)


def test_a_group_with_lr_zero_does_not_move():
    model = _mlp()
    frozen = [p.detach().clone() for p in model[0].parameters()]
    optimizer = Adam([{"params": model[0].parameters(), "lr": 0.0},
                      {"params": model[2].parameters()}], lr=0.1)
    last = model[2].weight.detach().clone()
    _train(model, optimizer, steps=3)
    for p, p0 in zip(model[0].parameters(), frozen, strict=True):
        assert torch.equal(p, p0)
    assert not torch.equal(model[2].weight, last)


@pytest.mark.parametrize("optimizer_type", [SGD, AdaGrad, RMSProp, Adam])
def test_zero_grad_is_inherited(optimizer_type):
    model = _mlp()
    optimizer = optimizer_type(model.parameters(), lr=0.01)
    _train(model, optimizer, steps=1)
    assert all(p.grad is not None for p in model.parameters())
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    assert isinstance(optimizer, torch.optim.Optimizer)


@pytest.mark.parametrize(
    "ours_type, theirs_type",
    [(SGD, torch.optim.SGD), (AdaGrad, torch.optim.Adagrad), (RMSProp, torch.optim.RMSprop),
     (Adam, torch.optim.Adam)],
)
def test_closure_is_called_and_its_loss_returned(ours_type, theirs_type):
    x, y = _batch()
    model = _mlp()
    twin = copy.deepcopy(model)
    ours = ours_type(model.parameters(), lr=0.01)
    theirs = theirs_type(twin.parameters(), lr=0.01)

    def closure_for(m, optimizer):
        def closure():
            optimizer.zero_grad()
            loss = F.mse_loss(m(x), y)
            loss.backward()
            return loss

        return closure

    for _ in range(5):
        ours_loss = ours.step(closure_for(model, ours))
        theirs_loss = theirs.step(closure_for(twin, theirs))
        assert isinstance(ours_loss, torch.Tensor)
        assert abs(ours_loss.item() - theirs_loss.item()) < TOL
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert _close(p, q)
    assert ours.step() is None


@pytest.mark.parametrize("optimizer_type", [SGD, AdaGrad, RMSProp, Adam])
def test_parameters_without_gradient_are_skipped(optimizer_type):
    used = torch.zeros(3, dtype=F64, requires_grad=True)
    unused = torch.ones(3, dtype=F64, requires_grad=True)
    kwargs = {"momentum": 0.9} if optimizer_type in (SGD, RMSProp) else {}
    optimizer = optimizer_type([used, unused], lr=0.1, **kwargs)
    for _ in range(3):
        optimizer.zero_grad()
        (used * torch.tensor([1.0, -2.0, 3.0], dtype=F64)).sum().backward()
        optimizer.step()
    assert unused.grad is None
    assert torch.equal(unused, torch.ones(3, dtype=F64))
    assert unused not in optimizer.state
    assert bool((used != 0).all()) and len(optimizer.state[used]) > 0


def test_gradients_are_not_changed_by_the_step():
    w = torch.ones(3, dtype=F64, requires_grad=True)
    for optimizer in (SGD([w], lr=0.1, momentum=0.9, weight_decay=0.5),
                      Adam([w], weight_decay=0.5)):
        w.grad = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
        optimizer.step()
        optimizer.step()
        assert torch.equal(w.grad, torch.tensor([1.0, 2.0, 3.0], dtype=F64))


# --- bad input ----------------------------------------------------------------------------------


def _param():
    return [torch.zeros(2, requires_grad=True)]


BAD_VALUES = [
    (SGD, {"lr": -0.1}, ValueError, "lr must be >= 0"),
    (SGD, {"lr": math.inf}, ValueError, "lr must be finite"),
    (SGD, {"lr": math.nan}, ValueError, "lr must be finite"),
    (SGD, {"lr": True}, TypeError, "lr must be a real number"),
    (SGD, {"lr": "0.1"}, TypeError, "lr must be a real number"),
    (SGD, {"lr": 0.1, "momentum": -0.5}, ValueError, "momentum must be >= 0"),
    (SGD, {"lr": 0.1, "momentum": True}, TypeError, "momentum must be a real number"),
    (SGD, {"lr": 0.1, "dampening": 1.5}, ValueError, r"dampening must be in \[0, 1\]"),
    (SGD, {"lr": 0.1, "weight_decay": -1e-4}, ValueError, "weight_decay must be >= 0"),
    (SGD, {"lr": 0.1, "weight_decay": False}, TypeError, "weight_decay must be a real number"),
    (SGD, {"lr": 0.1, "nesterov": 1}, TypeError, "nesterov must be True or False"),
    (SGD, {"lr": 0.1, "nesterov": True}, ValueError, "nesterov=True needs momentum > 0"),
    (SGD, {"lr": 0.1, "nesterov": True, "momentum": 0.9, "dampening": 0.1}, ValueError,
     "dampening = 0"),
    (AdaGrad, {"lr": -1.0}, ValueError, "lr must be >= 0"),
    (AdaGrad, {"eps": -1e-10}, ValueError, "eps must be >= 0"),
    (AdaGrad, {"weight_decay": -1.0}, ValueError, "weight_decay must be >= 0"),
    (AdaGrad, {"initial_accumulator_value": -0.1}, ValueError,
     "initial_accumulator_value must be >= 0"),
    (AdaGrad, {"initial_accumulator_value": None}, TypeError,
     "initial_accumulator_value must be a real number"),
    (RMSProp, {"lr": -1.0}, ValueError, "lr must be >= 0"),
    (RMSProp, {"alpha": 1.0}, ValueError, r"alpha must be in \[0, 1\)"),
    (RMSProp, {"alpha": -0.1}, ValueError, r"alpha must be in \[0, 1\)"),
    (RMSProp, {"alpha": True}, TypeError, "alpha must be a real number"),
    (RMSProp, {"eps": -1.0}, ValueError, "eps must be >= 0"),
    (RMSProp, {"weight_decay": -1.0}, ValueError, "weight_decay must be >= 0"),
    (RMSProp, {"momentum": -0.9}, ValueError, "momentum must be >= 0"),
    (RMSProp, {"centered": "yes"}, TypeError, "centered must be True or False"),
    (Adam, {"lr": -1e-3}, ValueError, "lr must be >= 0"),
    (Adam, {"lr": torch.tensor(1e-3)}, TypeError, "lr must be a real number"),
    (Adam, {"betas": (1.0, 0.999)}, ValueError, r"betas\[0\] must be in \[0, 1\)"),
    (Adam, {"betas": (0.9, -0.1)}, ValueError, r"betas\[1\] must be in \[0, 1\)"),
    (Adam, {"betas": (0.9, True)}, TypeError, r"betas\[1\] must be a real number"),
    (Adam, {"betas": 0.9}, TypeError, "betas must be a pair"),
    (Adam, {"betas": (0.9, 0.99, 0.999)}, TypeError, "betas must be a pair"),
    (Adam, {"eps": -1e-8}, ValueError, "eps must be >= 0"),
    (Adam, {"weight_decay": -1e-2}, ValueError, "weight_decay must be >= 0"),
    (Adam, {"amsgrad": 0}, TypeError, "amsgrad must be True or False"),
    (Adam, {"decoupled_weight_decay": None}, TypeError,
     "decoupled_weight_decay must be True or False"),
]


@pytest.mark.parametrize(
    "optimizer_type, kwargs, error, match", BAD_VALUES,
    ids=[f"{t.__name__}-{'-'.join(map(str, kw))}-{i}" for i, (t, kw, _, _) in
         enumerate(BAD_VALUES)],
)
def test_bad_hyperparameters_are_rejected(optimizer_type, kwargs, error, match):
    with pytest.raises(error, match=match):
        optimizer_type(_param(), **kwargs)


@pytest.mark.parametrize("optimizer_type", [SGD, AdaGrad, RMSProp, Adam])
def test_bad_hyperparameters_in_a_param_group_are_rejected(optimizer_type):
    with pytest.raises(ValueError, match="lr must be >= 0"):
        optimizer_type([{"params": _param(), "lr": -1.0}], lr=0.1)
    optimizer = optimizer_type(_param(), lr=0.1)
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        optimizer.add_param_group({"params": _param(), "weight_decay": -1.0})
    assert len(optimizer.param_groups) == 1


def test_sgd_needs_a_learning_rate():
    with pytest.raises(TypeError, match="lr"):
        SGD(_param())


@pytest.mark.parametrize("optimizer_type", [SGD, AdaGrad, RMSProp, Adam])
def test_sparse_gradients_are_rejected(optimizer_type):
    embedding = nn.Embedding(10, 3, sparse=True)
    optimizer = optimizer_type(embedding.parameters(), lr=0.1)
    embedding(torch.tensor([1, 2])).sum().backward()
    assert embedding.weight.grad.is_sparse
    before = embedding.weight.detach().clone()
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        optimizer.step()
    assert torch.equal(embedding.weight, before)


@pytest.mark.parametrize("optimizer_type", [SGD, AdaGrad, RMSProp, Adam])
def test_a_rejected_step_updates_nothing(optimizer_type):
    # a dense parameter listed before the sparse one is left untouched too
    dense = nn.Parameter(torch.ones(3))
    embedding = nn.Embedding(10, 3, sparse=True)
    optimizer = optimizer_type([dense, embedding.weight], lr=0.1)
    (embedding(torch.tensor([1, 2])).sum() + dense.sum()).backward()
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        optimizer.step()
    assert torch.equal(dense.detach(), torch.ones(3)) and not optimizer.state


@pytest.mark.parametrize("optimizer_type", [SGD, AdaGrad, RMSProp, Adam])
def test_complex_parameters_are_rejected(optimizer_type):
    w = torch.zeros(2, dtype=torch.complex128, requires_grad=True)
    optimizer = optimizer_type([w], lr=0.1)
    w.grad = torch.ones(2, dtype=torch.complex128)
    with pytest.raises(TypeError, match="complex parameters"):
        optimizer.step()


@pytest.mark.parametrize("optimizer_type", [SGD, AdaGrad, RMSProp, Adam])
def test_a_rejected_step_updates_nothing_in_any_param_group(optimizer_type):
    # the usual set-up: the (sparse) embedding in a param group of its own, after the others
    dense = nn.Parameter(torch.ones(3))
    embedding = nn.Embedding(10, 3, sparse=True)
    kwargs = {"momentum": 0.9} if optimizer_type in (SGD, RMSProp) else {}
    optimizer = optimizer_type(
        [{"params": [dense]}, {"params": embedding.parameters(), "weight_decay": 0.0}],
        lr=0.1, **kwargs,
    )
    (embedding(torch.tensor([1, 2])).sum() + dense.sum()).backward()
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        optimizer.step()
    assert torch.equal(dense.detach(), torch.ones(3)) and not optimizer.state
    complex_weight = torch.zeros(2, dtype=torch.complex128, requires_grad=True)
    optimizer = optimizer_type([{"params": [dense]}, {"params": [complex_weight]}], lr=0.1)
    complex_weight.grad = torch.ones(2, dtype=torch.complex128)
    with pytest.raises(TypeError, match="complex parameters"):
        optimizer.step()
    assert torch.equal(dense.detach(), torch.ones(3)) and not optimizer.state
