"""Tests for gradtext.clip: agreement with PyTorch, properties, overflow, state, bad input."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradtext.clip import (
    AdaptiveGradientClipping,
    AutoClip,
    ZScoreClip,
    clip_by_norm,
    clip_by_value,
    clip_per_parameter,
    total_norm,
)


def _params(seed: int, scale: float = 1.0, dtype=torch.float64) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(4, 3), (3,), (2, 4, 2), (1,)]
    params = []
    for shape in shapes:
        p = torch.nn.Parameter(torch.randn(shape, generator=gen, dtype=dtype))
        p.grad = scale * torch.randn(shape, generator=gen, dtype=dtype)
        params.append(p)
    return params


def _copy(params):
    out = []
    for p in params:
        q = torch.nn.Parameter(p.detach().clone())
        q.grad = p.grad.clone()
        out.append(q)
    return out


def _flat(params) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in params])


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.1, 1.0, 100.0])
def test_clip_by_norm_matches_pytorch(norm_type, max_norm):
    ours, theirs = _params(0), _params(0)
    result = clip_by_norm(ours, max_norm, norm_type=norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    torch.testing.assert_close(result.total_norm, expected.to(torch.float64))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad)
    assert result.clipped == (float(expected) > max_norm)


@pytest.mark.parametrize("clip_value", [0.01, 0.5, 10.0])
def test_clip_by_value_matches_pytorch(clip_value):
    ours, theirs = _params(1), _params(1)
    clip_by_value(ours, clip_value)
    torch.nn.utils.clip_grad_value_(theirs, clip_value)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad)


def test_module_is_accepted():
    model = torch.nn.Linear(3, 2).double()
    model(torch.randn(5, 3, dtype=torch.float64)).pow(2).sum().backward()
    expected = torch.linalg.vector_norm(_flat(list(model.parameters())))
    result = clip_by_norm(model, 1e-3)
    torch.testing.assert_close(result.total_norm, expected)
    torch.testing.assert_close(
        torch.linalg.vector_norm(_flat(list(model.parameters()))),
        torch.tensor(1e-3, dtype=torch.float64),
        rtol=1e-3,
        atol=0,
    )


def test_overflow_float32_gives_finite_norm_and_correct_clip():
    p = torch.nn.Parameter(torch.zeros(1000))
    p.grad = torch.full((1000,), 1e20, dtype=torch.float32)
    result = clip_by_norm([p], 1.0)
    assert math.isfinite(float(result.total_norm))
    assert float(result.total_norm) == pytest.approx(1e20 * math.sqrt(1000), rel=1e-5)
    assert torch.isfinite(p.grad).all()
    assert float(torch.linalg.vector_norm(p.grad.double())) == pytest.approx(1.0, rel=1e-4)
    torch.testing.assert_close(p.grad, torch.full_like(p.grad, 1 / math.sqrt(1000)))


@settings(deadline=None, max_examples=40)
@given(
    seed=st.integers(0, 10_000),
    scale=st.floats(1e-3, 1e3),
    max_norm=st.floats(1e-2, 1e2),
    norm_type=st.sampled_from([1.0, 2.0, 3.0, math.inf]),
)
def test_norm_clipping_properties(seed, scale, max_norm, norm_type):
    params = _params(seed, scale)
    before = _flat(params).clone()
    result = clip_by_norm(params, max_norm, norm_type=norm_type)
    after = _flat(params)
    norm_after = float(torch.linalg.vector_norm(after, norm_type))
    assert norm_after <= max_norm * (1 + 1e-6)
    cosine = torch.nn.functional.cosine_similarity(before, after, dim=0)
    assert float(cosine) == pytest.approx(1.0, abs=1e-9)
    if float(result.total_norm) + 1e-6 <= max_norm:
        assert torch.equal(before, after)


@settings(deadline=None, max_examples=40)
@given(seed=st.integers(0, 10_000), scale=st.floats(1e-2, 1e3), clipping=st.floats(1e-3, 1.0))
def test_agc_unitwise_bound(seed, scale, clipping):
    params = _params(seed, scale)
    weights = [p.detach().clone() for p in params]
    AdaptiveGradientClipping(clipping=clipping, eps=1e-3)(params)
    for w, p in zip(weights, params, strict=True):
        dims = tuple(range(1, w.dim()))
        w_norm = w.norm(dim=dims) if w.dim() > 1 else w.abs()
        g_norm = p.grad.norm(dim=dims) if w.dim() > 1 else p.grad.abs()
        assert (g_norm <= clipping * w_norm.clamp_min(1e-3) * (1 + 1e-6) + 1e-12).all()


def test_agc_excludes_final_layer_and_matches_loop():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    model.double()
    model(torch.randn(16, 4, dtype=torch.float64)).pow(2).sum().mul(100).backward()
    final_before = [p.grad.clone() for p in model[2].parameters()]
    expected = []
    for p in model[0].parameters():
        dims = tuple(range(1, p.dim()))
        w = p.detach().norm(dim=dims, keepdim=True) if p.dim() > 1 else p.detach().abs()
        g = p.grad.norm(dim=dims, keepdim=True) if p.dim() > 1 else p.grad.abs()
        limit = 0.01 * w.clamp_min(1e-3)
        expected.append(p.grad * torch.clamp(limit / g.clamp_min(1e-6), max=1.0))
    AdaptiveGradientClipping(clipping=0.01, exclude=model[2])(model)
    for p, e in zip(model[0].parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, e)
    for p, b in zip(model[2].parameters(), final_before, strict=True):
        assert torch.equal(p.grad, b)


@pytest.mark.parametrize("workspace_entries", [1, 40, 1 << 20])
def test_agc_matches_the_loop_whatever_the_chunking(workspace_entries):
    # many parameters of one shape are stacked chunk by chunk into reused buffers; the result
    # must not depend on the chunk size, and a second call must reuse the buffers correctly
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(5, 5) for _ in range(7)]).double()
    agc = AdaptiveGradientClipping(clipping=0.01)
    agc.workspace_entries = workspace_entries
    for scale in [100.0, 0.001]:
        model.zero_grad()
        model(torch.randn(8, 5, dtype=torch.float64)).pow(2).sum().mul(scale).backward()
        expected = []
        for p in model.parameters():
            dims = tuple(range(1, p.dim()))
            w = p.detach().norm(dim=dims, keepdim=True) if p.dim() > 1 else p.detach().abs()
            g = p.grad.norm(dim=dims, keepdim=True) if p.dim() > 1 else p.grad.abs()
            expected.append(p.grad * torch.clamp(0.01 * w.clamp_min(1e-3) / g.clamp_min(1e-6),
                                                 max=1.0))
        agc(model)
        for p, e in zip(model.parameters(), expected, strict=True):
            torch.testing.assert_close(p.grad, e)


def test_clip_per_parameter_clips_each_tensor():
    params = _params(3, scale=10.0)
    clip_per_parameter(params, 0.5)
    for p in params:
        assert float(p.grad.norm()) <= 0.5 * (1 + 1e-6)


def test_autoclip_uses_percentile_of_history():
    clipper = AutoClip(percentile=50)
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    for g in [1.0, 2.0, 3.0, 4.0, 5.0]:
        p.grad = torch.tensor([g], dtype=torch.float64)
        clipper([p])
    p.grad = torch.tensor([100.0], dtype=torch.float64)
    result = clipper([p])
    assert result.clipped
    assert p.grad.item() == pytest.approx(3.0, rel=1e-5)


def test_zscore_clips_spike_not_normal_steps():
    gen = torch.Generator().manual_seed(0)
    clipper = ZScoreClip(z=4.0, warmup=20)
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    clipped = []
    for _ in range(200):
        p.grad = 1.0 + 0.05 * torch.randn(1, generator=gen, dtype=torch.float64)
        clipped.append(clipper([p]).clipped)
    assert sum(clipped) <= 2
    p.grad = torch.tensor([50.0], dtype=torch.float64)
    assert clipper([p]).clipped
    assert p.grad.item() < 2.0


@pytest.mark.parametrize("make", [lambda: AutoClip(30), lambda: ZScoreClip(z=2.0, warmup=2)])
def test_state_round_trip(make):
    gen = torch.Generator().manual_seed(1)
    first, second = make(), make()
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    for _ in range(10):
        p.grad = torch.randn(3, generator=gen, dtype=torch.float64)
        first([p])
    second.load_state_dict(first.state_dict())
    p.grad = 10 * torch.ones(3, dtype=torch.float64)
    q = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    q.grad = p.grad.clone()
    a, b = first([p]), second([q])
    torch.testing.assert_close(p.grad, q.grad)
    torch.testing.assert_close(a.coefficient, b.coefficient)


@pytest.mark.parametrize("make", [AutoClip, ZScoreClip])
def test_nonfinite_options(make):
    def fresh(option):
        clipper = make(nonfinite=option)
        p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        for g in [1.0, 1.2, 0.8, 1.1] * 5:
            p.grad = torch.tensor([g, 0.0], dtype=torch.float64)
            clipper([p])
        return clipper, p

    clipper, p = fresh("skip")
    state = clipper.state_dict()
    p.grad = torch.tensor([math.nan, 1.0], dtype=torch.float64)
    clipper([p])
    assert math.isnan(p.grad[0].item()) and p.grad[1].item() == 1.0
    assert clipper.state_dict() == state  # history not poisoned

    clipper, p = fresh("zero")
    p.grad = torch.tensor([math.inf, 1.0], dtype=torch.float64)
    clipper([p])
    assert torch.equal(p.grad, torch.zeros(2, dtype=torch.float64))
    p.grad = torch.tensor([1.0, 0.0], dtype=torch.float64)
    assert math.isfinite(float(clipper([p]).coefficient))

    clipper, p = fresh("raise")
    p.grad = torch.tensor([math.nan, 1.0], dtype=torch.float64)
    with pytest.raises(FloatingPointError, match="non-finite"):
        clipper([p])


def test_total_norm_empty_and_no_grad():
    assert float(total_norm([])) == 0.0
    assert float(total_norm([torch.nn.Parameter(torch.ones(2))])) == 0.0
    assert not clip_by_norm([], 1.0).clipped


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: clip_by_norm(_params(0), 0.0), ValueError, "max_norm"),
        (lambda: clip_by_norm(_params(0), -1.0), ValueError, "max_norm"),
        (lambda: clip_by_norm(_params(0), "1"), TypeError, "max_norm"),
        (lambda: clip_by_norm(_params(0), 1.0, norm_type=0.5), ValueError, "norm_type"),
        (lambda: clip_by_value(_params(0), 0), ValueError, "clip_value"),
        (lambda: clip_by_norm(3, 1.0), TypeError, "parameters"),
        (lambda: clip_by_norm([1, 2], 1.0), TypeError, "parameters"),
        (lambda: AutoClip(percentile=0), ValueError, "percentile"),
        (lambda: AutoClip(percentile=101), ValueError, "percentile"),
        (lambda: AutoClip(nonfinite="ignore"), ValueError, "nonfinite"),
        (lambda: ZScoreClip(z=-1), ValueError, "z"),
        (lambda: ZScoreClip(beta=1.0), ValueError, "beta"),
        (lambda: AdaptiveGradientClipping(clipping=0), ValueError, "clipping"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_fit_float_clip_uses_clip_by_norm():
    import gradtext as gt

    data = gt.tasks.teacher_student(n=256, dim=4, out=1, seed=0)
    model = torch.nn.Linear(4, 1)
    history = gt.fit(
        model,
        data,
        loss="mse",
        optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1),
        steps=5,
        clip=1e-3,
        progress=False,
        device="cpu",
    )
    assert len(history.clip_coefficient) == 5
    assert all(c < 1.0 for c in history.clip_coefficient)


def _exact_norm(grads, norm_type) -> float:
    """The norm of all entries, computed in float64 (or with Python floats for huge values)."""
    flat = torch.cat([g.detach().reshape(-1).to(torch.float64) for g in grads])
    if norm_type == math.inf:
        return float(flat.abs().max())
    scale = float(flat.abs().max())
    return scale * float(torch.linalg.vector_norm(flat / scale, norm_type))


def _norm_by_clip_by_norm(params, norm_type):  # the fast path, with nothing clipped
    return clip_by_norm(params, 1e300, norm_type=norm_type).total_norm


@pytest.mark.parametrize("norm", [total_norm, _norm_by_clip_by_norm])
@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, math.inf])
@pytest.mark.parametrize("value", [1e20, 1e35, 1e-30, 1e-42])
def test_norms_are_overflow_and_underflow_safe(norm, norm_type, value):
    # float32 squares (cubes) of these overflow or underflow; the norm must still be exact
    params = [torch.nn.Parameter(torch.zeros(n)) for n in (1000, 7, 1)]
    for p in params:
        p.grad = torch.full_like(p, value)
    expected = _exact_norm([p.grad for p in params], norm_type)
    norm = norm(params, norm_type)
    assert norm.dtype == torch.float64
    assert math.isfinite(float(norm)) and float(norm) > 0
    # per-tensor norms accumulate in float32 where that does not overflow, as in PyTorch
    assert float(norm) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, math.inf])
def test_clip_by_norm_huge_float32_gradients_clip_correctly(norm_type):
    params = [torch.nn.Parameter(torch.zeros(n)) for n in (1000, 10)]
    for p, v in zip(params, (1e20, -3e19), strict=True):
        p.grad = torch.full_like(p, v)
    before = [p.grad.clone() for p in params]
    result = clip_by_norm(params, 2.0, norm_type=norm_type)
    expected = _exact_norm(before, norm_type)
    assert float(result.total_norm) == pytest.approx(expected, rel=1e-4)
    assert all(torch.isfinite(p.grad).all() for p in params)
    assert _exact_norm([p.grad for p in params], norm_type) == pytest.approx(2.0, rel=1e-4)
    for p, b in zip(params, before, strict=True):  # direction kept
        torch.testing.assert_close(p.grad.double(), b.double() * (2.0 / expected), rtol=1e-4,
                                   atol=0)


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, math.inf])
@pytest.mark.parametrize("scale", [1.0, 1e20, 1e-30])
def test_mixed_float32_float64_parameters(norm_type, scale):
    a = torch.nn.Parameter(torch.zeros(50, dtype=torch.float32))
    b = torch.nn.Parameter(torch.zeros(3, 4, dtype=torch.float64))
    gen = torch.Generator().manual_seed(0)
    a.grad = (scale * torch.randn(50, generator=gen, dtype=torch.float64)).float()
    b.grad = scale * torch.randn(3, 4, generator=gen, dtype=torch.float64)
    expected = _exact_norm([a.grad, b.grad], norm_type)
    result = clip_by_norm([a, b], 0.5 * expected, norm_type=norm_type)
    assert float(result.total_norm) == pytest.approx(expected, rel=1e-5)
    assert a.grad.dtype == torch.float32 and b.grad.dtype == torch.float64
    assert _exact_norm([a.grad, b.grad], norm_type) == pytest.approx(0.5 * expected, rel=1e-4)


def test_nonfinite_gradients_give_a_nonfinite_norm():
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([1.0, math.inf, 2.0])
    assert float(total_norm([p])) == math.inf
    p.grad = torch.tensor([1.0, math.nan, 2.0])
    assert math.isnan(float(total_norm([p])))


def test_agc_telemetry_matches_the_gradients_and_is_overflow_safe():
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    for p in model.parameters():
        p.grad = 1e20 * torch.randn(p.shape, generator=gen)
    before = _exact_norm([p.grad for p in model.parameters()], 2.0)
    result = AdaptiveGradientClipping(clipping=0.01, exclude=model[2])(model)
    after = _exact_norm([p.grad for p in model.parameters()], 2.0)
    assert float(result.total_norm) == pytest.approx(before, rel=1e-5)
    assert float(result.coefficient) == pytest.approx(after / before, rel=1e-4)
    for p in model[0].parameters():  # clipped to the unit-wise limit, not zeroed by overflow
        dims = tuple(range(1, p.dim()))
        w = p.detach().norm(dim=dims) if p.dim() > 1 else p.detach().abs()
        g = p.grad.norm(dim=dims) if p.dim() > 1 else p.grad.abs()
        torch.testing.assert_close(g, 0.01 * w.clamp_min(1e-3), rtol=1e-4, atol=0)


def test_agc_coefficient_is_one_when_nothing_is_clipped():
    p = torch.nn.Parameter(torch.ones(3, 3))
    p.grad = torch.full((3, 3), 1e-4)
    result = AdaptiveGradientClipping(clipping=0.1)([p])
    assert float(result.coefficient) == 1.0
    assert float(result.total_norm) == pytest.approx(3e-4, rel=1e-6)


def test_total_norm_accumulates_in_float64_and_clip_by_norm_agrees_with_pytorch():
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.zeros(n)) for n in (100_000, 10)]
    for p in params:
        p.grad = torch.rand(p.shape, generator=gen)
    exact = torch.linalg.vector_norm(torch.cat([p.grad.double() for p in params]))
    assert float(total_norm(params)) == pytest.approx(float(exact), rel=1e-14)
    expected = torch.nn.utils.clip_grad_norm_(params, 1e300, foreach=True)
    torch.testing.assert_close(clip_by_norm(params, 1e300).total_norm, expected.double())


def test_clip_by_norm_takes_torchs_arguments_in_torchs_order():
    # a drop-in replacement: the same positional arguments, the same effect, the same error
    torch.manual_seed(0)
    ours, theirs = _params(4, scale=3.0), _params(4, scale=3.0)
    for a, b in zip(ours, theirs, strict=True):
        b.grad = a.grad.clone()
    clip_by_norm(ours, 1.0, 3.0, False, True)
    torch.nn.utils.clip_grad_norm_(theirs, 1.0, 3.0, False, True)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad)
    ours[0].grad[0] = float("inf")
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_by_norm(ours, 1.0, 2.0, True)
    with pytest.raises(TypeError):
        clip_by_norm(ours, 1.0, 2.0, False, None, 1e-6)  # eps is keyword-only


def test_clip_by_value_takes_torchs_arguments():
    ours, theirs = _params(3, scale=5.0), _params(3, scale=5.0)
    for a, b in zip(ours, theirs, strict=True):
        b.grad = a.grad.clone()
    clip_by_value(ours, 0.5, True)
    torch.nn.utils.clip_grad_value_(theirs, 0.5, True)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a.grad, b.grad)


# --- review follow-ups: single tensors, exclude, PyTorch's argument types, "skip" telemetry ---


def test_agc_accepts_a_single_tensor_like_the_other_clippers():
    w = torch.nn.Parameter(torch.ones(3, 3, dtype=torch.float64))
    w.grad = torch.full((3, 3), 100.0, dtype=torch.float64)
    v = torch.nn.Parameter(w.detach().clone())
    v.grad = w.grad.clone()
    single, listed = AdaptiveGradientClipping(0.01)(w), AdaptiveGradientClipping(0.01)([v])
    assert float(single.total_norm) == pytest.approx(300.0)
    torch.testing.assert_close(w.grad, v.grad)
    torch.testing.assert_close(single.coefficient, listed.coefficient)
    assert single.clipped


def test_agc_exclude_accepts_a_single_tensor():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    for p in model.parameters():
        p.grad = torch.full_like(p, 10.0)
    AdaptiveGradientClipping(0.01, exclude=model[1].weight)(model)
    assert torch.equal(model[1].weight.grad, torch.full((2, 4), 10.0))  # left alone
    assert float(model[1].bias.grad.abs().max()) < 10.0  # not excluded: clipped
    assert float(model[0].weight.grad.abs().max()) < 10.0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: AdaptiveGradientClipping()(None), "parameters must be a Module, a tensor or"),
        (lambda: AdaptiveGradientClipping()([1, 2]), "parameters must contain tensors, got int"),
        (lambda: AdaptiveGradientClipping()(3), "parameters must be a Module"),
        (lambda: AdaptiveGradientClipping(exclude=3), "exclude must be a Module, a tensor or"),
        (lambda: AdaptiveGradientClipping(exclude=["fc"]), "exclude must contain tensors"),
    ],
)
def test_agc_bad_parameters_and_exclude_raise_a_named_type_error(call, match):
    with pytest.raises(TypeError, match=match):
        call()


@pytest.mark.parametrize(
    "max_norm", [np.float32(0.5), np.float64(0.5), torch.tensor(0.5), torch.tensor([0.5])]
)
@pytest.mark.parametrize("norm_type", ["inf", "2", np.float32(2.0), torch.tensor(3.0)])
def test_clip_by_norm_accepts_what_clip_grad_norm_accepts(max_norm, norm_type):
    ours, theirs = _params(5, scale=3.0), _params(5, scale=3.0)
    result = clip_by_norm(ours, max_norm, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    torch.testing.assert_close(result.total_norm, expected.double())
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: clip_by_norm(_params(0), np.float32(-1.0)), ValueError, "max_norm must be > 0"),
        (lambda: clip_by_norm(_params(0), torch.tensor(math.nan)), ValueError, "max_norm"),
        (lambda: clip_by_norm(_params(0), torch.ones(2)), TypeError, "max_norm"),
        (lambda: clip_by_norm(_params(0), True), TypeError, "max_norm"),
        (lambda: clip_by_norm(_params(0), 1.0, norm_type="two"), ValueError, "norm_type"),
        (lambda: clip_by_norm(_params(0), 1.0, norm_type="0.5"), ValueError, "norm_type"),
        (lambda: clip_by_norm(_params(0), 1.0, norm_type=None), TypeError, "norm_type"),
    ],
)
def test_clip_by_norm_still_rejects_bad_numbers(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("make", [AutoClip, ZScoreClip])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_skip_reports_the_coefficient_it_applied(make, bad):
    clipper = make(nonfinite="skip")
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    for g in [1.0, 1.2, 0.8, 1.1] * 5:
        p.grad = torch.tensor([g, 0.0], dtype=torch.float64)
        clipper([p])
    p.grad = torch.tensor([bad, 1.0], dtype=torch.float64)
    result = clipper([p])
    assert float(result.coefficient) == 1.0 and not result.clipped  # left as it is
    assert p.grad[1].item() == 1.0


# --- review follow-ups: history_size and skipped steps, devices, repeated tensors, bad input ---


def _feed(clipper, norms, device="cpu"):
    """Feed one-entry gradients of the given norms; the gradients after clipping."""
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64, device=device))
    out = []
    for n in norms:
        p.grad = torch.tensor([n], dtype=torch.float64, device=device)
        clipper([p])
        out.append(p.grad)
    return out


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_autoclip_history_size_counts_only_finite_norms(bad):
    # a skipped non-finite step records nothing, so it must not push a real norm out:
    # the window after [1, 3, bad] is still [1, 3], whose median is 2
    grads = _feed(AutoClip(percentile=50, history_size=2), [1.0, 3.0, bad, 10.0])
    assert grads[-1].item() == pytest.approx(2.0, rel=1e-6)
    # and a long run of them neither grows the history nor loses the window
    clipper = AutoClip(percentile=50, history_size=2)
    grads = _feed(clipper, [1.0, 3.0] + [bad] * 50 + [10.0])
    assert grads[-1].item() == pytest.approx(2.0, rel=1e-6)
    assert len(clipper.history) == 2
    # the window goes on moving with finite norms
    grads = _feed(AutoClip(percentile=50, history_size=2), [1.0, 3.0, bad, 5.0, 10.0])
    assert grads[-1].item() == pytest.approx(4.0, rel=1e-6)


def test_autoclip_history_size_state_round_trip_after_a_skipped_step():
    first = AutoClip(percentile=50, history_size=2)
    _feed(first, [1.0, 3.0, math.nan])
    second = AutoClip(percentile=50, history_size=2)
    second.load_state_dict(first.state_dict())
    assert second.state_dict() == first.state_dict() == {
        "percentile": 50.0, "history": [1.0, 3.0], "history_size": 2,
    }
    for a, b in zip(_feed(first, [5.0, 10.0]), _feed(second, [5.0, 10.0]), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("history_size", [None, 2])
def test_autoclip_resumes_from_a_checkpoint_on_another_device(history_size):
    # load_state_dict makes CPU tensors; gradients on an accelerator must still work (the meta
    # device stands in for a GPU: mixing it with CPU tensors fails the same way, and reading a
    # value, which would wait for a GPU, fails), also while the history grows past its capacity
    first = AutoClip(percentile=50, history_size=history_size)
    _feed(first, [1.0, 2.0])
    resumed = AutoClip(percentile=50, history_size=history_size)
    resumed.load_state_dict(first.state_dict())
    _feed(resumed, [4.0, math.nan] * 50, device="meta")
    state = [v for v in vars(resumed).values() if isinstance(v, torch.Tensor)]
    assert state and all(t.device.type == "meta" for t in state)
    assert resumed._recorded == 102


def _tensor_listed_twice(clip):
    """Gradients after ``clip([p, p])`` and after ``clip([q])``, for equal p and q."""
    p, q = (torch.nn.Parameter(torch.ones(2, 2, dtype=torch.float64)) for _ in range(2))
    p.grad, q.grad = (torch.full((2, 2), 10.0, dtype=torch.float64) for _ in range(2))
    twice, once = clip([p, p]), clip([q])
    return p.grad, q.grad, twice, once


@pytest.mark.parametrize(
    "clip",
    [
        lambda ps: clip_by_norm(ps, 1.0),
        lambda ps: clip_per_parameter(ps, 1.0),
        lambda ps: AdaptiveGradientClipping(0.1)(ps),
        lambda ps: clip_by_value(ps, 1.0),
    ],
    ids=["clip_by_norm", "clip_per_parameter", "agc", "clip_by_value"],
)
def test_a_tensor_listed_twice_is_clipped_once(clip):
    # tied weights gathered from two submodules (e.g. an embedding and the output layer that
    # shares it) give the same tensor twice; it must be scaled once and counted once
    twice_grad, once_grad, twice, once = _tensor_listed_twice(clip)
    torch.testing.assert_close(twice_grad, once_grad)
    torch.testing.assert_close(twice.total_norm, once.total_norm)
    torch.testing.assert_close(twice.coefficient, once.coefficient)


def test_a_tensor_listed_twice_counts_once_in_history_clippers():
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    p.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)
    assert float(AutoClip()([p, p]).total_norm) == pytest.approx(5.0)
    assert float(total_norm([p, p])) == pytest.approx(5.0)


@pytest.mark.parametrize(
    "clip",
    [
        lambda m: clip_by_norm(m, 1.0),
        lambda m: clip_by_value(m, 1.0),
        lambda m: clip_per_parameter(m, 1.0),
        lambda m: total_norm(m),
        lambda m: AdaptiveGradientClipping()(m),
        lambda m: AutoClip()(m),
        lambda m: ZScoreClip()(m),
    ],
)
def test_sparse_gradients_raise_an_error_that_says_so(clip):
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    embedding(torch.tensor([1, 2])).sum().backward()
    before = embedding.weight.grad.to_dense().clone()
    with pytest.raises(TypeError, match="parameters.*sparse gradient.*sparse=False"):
        clip(embedding)
    assert torch.equal(embedding.weight.grad.to_dense(), before)


@pytest.mark.parametrize("eps", [-1.0, math.nan, math.inf])
@pytest.mark.parametrize("clip", [clip_by_norm, clip_per_parameter])
def test_bad_eps_is_rejected(clip, eps):
    # a negative eps would flip the gradients' sign: coefficient max_norm / (norm + eps) < 0
    params = _params(0, scale=0.1)
    before = _flat(params).clone()
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        clip(params, 1.0, eps=eps)
    assert torch.equal(_flat(params), before)
    clip(params, 1.0, eps=0.0)  # 0 is allowed


def test_zscore_rejects_an_infinite_z():
    # mean + inf * std is NaN when the norms so far are equal (std 0): NaN gradients
    with pytest.raises(ValueError, match="z must be finite"):
        ZScoreClip(z=math.inf)


@pytest.mark.parametrize(("history_size", "error"), [(True, TypeError), (2.0, TypeError),
                                                     (0, ValueError), (-1, ValueError)])
def test_autoclip_rejects_a_bad_history_size(history_size, error):
    with pytest.raises(error, match="history_size must be None or a positive int"):
        AutoClip(history_size=history_size)


def test_history_clippers_take_numpy_numbers_like_the_other_arguments():
    # e.g. from a sweep over np.arange / np.float32 grids; z already took them
    auto = AutoClip(percentile=np.float32(50), history_size=np.int64(2))
    assert (auto.percentile, auto.history_size) == (50.0, 2)
    assert _feed(auto, [1.0, 3.0, 10.0])[-1].item() == pytest.approx(2.0, rel=1e-6)
    zscore = ZScoreClip(z=np.float32(2.0), beta=np.float32(0.5), warmup=np.int64(3))
    assert (zscore.beta, zscore.warmup) == (0.5, 3)
    assert type(zscore.warmup) is int and type(auto.history_size) is int


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: AutoClip(percentile="10"), TypeError, "percentile must be a number"),
        (lambda: AutoClip(percentile=True), TypeError, "percentile must be a number"),
        (lambda: AutoClip(percentile=np.float64(0.0)), ValueError, r"percentile must be in"),
        (lambda: ZScoreClip(beta="0.9"), TypeError, "beta must be a number"),
        (lambda: ZScoreClip(beta=np.float32(1.0)), ValueError, r"beta must be in \(0, 1\)"),
        (lambda: ZScoreClip(warmup=True), TypeError, "warmup must be a positive int"),
        (lambda: ZScoreClip(warmup=2.0), TypeError, "warmup must be a positive int"),
        (lambda: ZScoreClip(warmup=np.int64(0)), ValueError, "warmup must be a positive int"),
    ],
)
def test_history_clippers_name_a_bad_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_zscore_statistics_follow_the_gradients_device():
    # the statistics move to the gradients' device once, so that updating them never waits for
    # it (the meta device stands in for a GPU: copying its values to the CPU fails)
    clipper = ZScoreClip(warmup=2)
    _feed(clipper, [1.0, 2.0])
    resumed = ZScoreClip(warmup=2)
    resumed.load_state_dict(clipper.state_dict())
    for _ in range(3):
        _feed(resumed, [4.0], device="meta")
    assert {t.device.type for t in (resumed.mean, resumed.var, resumed.count)} == {"meta"}


# --- transposed convolutions: the output units are along dim 1 (and split by groups) ---


def _agc_by_hand(weight, grad, groups, clipping=0.01, eps=1e-3):
    """The AGC-clipped gradient of a ConvTranspose weight, one output channel at a time.

    The weight is (in_channels, out_channels / groups, *kernel); output channel ``o`` of group
    ``g`` reads in_channels ``g * in_g`` to ``(g + 1) * in_g`` through ``weight[:, o % out_g]``.
    """
    in_g, out_g = weight.shape[0] // groups, weight.shape[1]
    expected = grad.clone()
    for o in range(groups * out_g):
        g, j = divmod(o, out_g)
        rows = slice(g * in_g, (g + 1) * in_g)
        w_norm = float(weight[rows, j].norm())
        g_norm = float(grad[rows, j].norm())
        factor = min(1.0, clipping * max(w_norm, eps) / max(g_norm, 1e-6))
        expected[rows, j] = grad[rows, j] * factor
    return expected


@pytest.mark.parametrize("groups", [1, 2])
def test_agc_clips_transposed_convolutions_by_output_channel(groups):
    torch.manual_seed(0)
    conv = torch.nn.ConvTranspose2d(4, 6, 3, groups=groups).double()
    # the layout the by-hand computation assumes: a weight nonzero only on output channel 5's
    # unit gives an output that is nonzero only on channel 5
    probe = torch.nn.ConvTranspose2d(4, 6, 3, groups=groups, bias=False).double()
    with torch.no_grad():
        probe.weight.zero_()
        probe.weight[(groups - 1) * 4 // groups:, (5 % (6 // groups))] = 1.0
    out = probe(torch.ones(1, 4, 5, 5, dtype=torch.float64))
    assert out[0, :5].abs().sum() == 0 and out[0, 5].abs().sum() > 0

    def fresh_grads():
        gen = torch.Generator().manual_seed(1)
        # different scales per input row, so that the wrong dimension gives other numbers
        scale = torch.logspace(-2, 2, 4, dtype=torch.float64).view(4, 1, 1, 1)
        conv.weight.grad = scale * torch.randn(conv.weight.shape, generator=gen,
                                               dtype=torch.float64)
        conv.bias.grad = torch.randn(6, generator=gen, dtype=torch.float64)

    fresh_grads()
    expected = _agc_by_hand(conv.weight.detach(), conv.weight.grad, groups)
    expected_bias = conv.bias.grad * torch.clamp(
        0.01 * conv.bias.detach().abs().clamp_min(1e-3) / conv.bias.grad.abs().clamp_min(1e-6),
        max=1.0)
    for clip in [
        lambda: AdaptiveGradientClipping(0.01)(conv),  # a Module: recognised by its type
        lambda: AdaptiveGradientClipping(0.01)(torch.nn.Sequential(torch.nn.ReLU(), conv)),
        # plain tensors, as gradtext.fit passes them: the model is named once, up front
        lambda: AdaptiveGradientClipping(0.01, model=conv)(list(conv.parameters())),
    ]:
        fresh_grads()
        before = torch.cat([conv.weight.grad.flatten(), conv.bias.grad])
        result = clip()
        torch.testing.assert_close(conv.weight.grad, expected, rtol=1e-12, atol=0)
        torch.testing.assert_close(conv.bias.grad, expected_bias, rtol=1e-12, atol=0)
        after = torch.cat([conv.weight.grad.flatten(), conv.bias.grad])
        assert float(result.total_norm) == pytest.approx(float(before.norm()), rel=1e-12)
        assert float(result.coefficient) == pytest.approx(
            float(after.norm() / before.norm()), rel=1e-12)


def test_agc_transposed_convolutions_of_one_shape_are_stacked_correctly():
    # three ConvTranspose1d with the same weight shape (4, 4, 3) but different groups, and a
    # Conv1d of that shape too: each must be clipped along its own units
    torch.manual_seed(0)
    model = torch.nn.ModuleList([torch.nn.ConvTranspose1d(4, 4, 3, groups=1, bias=False),
                                 torch.nn.ConvTranspose1d(4, 16, 3, groups=4, bias=False),
                                 torch.nn.ConvTranspose1d(4, 8, 3, groups=2, bias=False),
                                 torch.nn.Conv1d(4, 4, 3, bias=False)]).double()
    x = torch.randn(2, 4, 9, dtype=torch.float64)
    sum(m(x).pow(2).sum() for m in model).mul(1e3).backward()
    weights = [m.weight.detach().clone() for m in model]
    grads = [m.weight.grad.clone() for m in model]
    AdaptiveGradientClipping(0.01, model=model)(model.parameters())
    for m, w, g in zip(model[:3], weights[:3], grads[:3], strict=True):
        expected = _agc_by_hand(w.unsqueeze(-1), g.unsqueeze(-1), m.groups).squeeze(-1)
        torch.testing.assert_close(m.weight.grad, expected, rtol=1e-12, atol=0)
    w, g = weights[3], grads[3]
    limit = 0.01 * w.norm(dim=(1, 2), keepdim=True).clamp_min(1e-3)
    expected = g * torch.clamp(limit / g.norm(dim=(1, 2), keepdim=True).clamp_min(1e-6), max=1.0)
    torch.testing.assert_close(model[3].weight.grad, expected, rtol=1e-12, atol=0)


def test_agc_rejects_a_model_that_is_not_a_module():
    with pytest.raises(TypeError, match="model must be an nn.Module or None"):
        AdaptiveGradientClipping(model=[torch.nn.Parameter(torch.ones(2, 2, 2))])


# --- AutoClip: the history is kept in device buffers, not one tensor per step ---


def _old_autoclip_threshold(window, percentile):
    """What the old implementation computed: nanquantile of the stacked window."""
    if not window:
        return None
    t = torch.nanquantile(torch.tensor(window, dtype=torch.float64), percentile / 100.0)
    return torch.where(torch.isnan(t), torch.full_like(t, math.inf), t)


@pytest.mark.parametrize("history_size", [None, 3, 7])
@pytest.mark.parametrize("percentile", [10.0, 37.5, 50.0, 100.0])
def test_autoclip_matches_the_percentile_of_its_window(history_size, percentile):
    rng = np.random.default_rng(int(percentile) + (history_size or 0))
    norms = np.exp(rng.normal(size=120))
    norms[rng.random(120) < 0.15] = np.nan
    norms[rng.random(120) < 0.05] = np.inf
    norms[[3, 4, 5, 40]] = 2.0  # ties
    norms[0] = np.nan  # a first step with nothing to record
    clipper = AutoClip(percentile=percentile, history_size=history_size)
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    finite, stored = [], []
    for n in norms.tolist():
        p.grad = torch.tensor([n], dtype=torch.float64)
        window = finite if history_size is None else finite[-history_size:]
        result = clipper([p])
        if not math.isfinite(n):
            assert float(result.coefficient) == 1.0 and math.isnan(p.grad.item()) == math.isnan(n)
        elif not window:
            assert float(result.coefficient) == 1.0 and p.grad.item() == n
        else:
            threshold = np.percentile(window, percentile)  # numpy's default is linear too
            expected = n * min(threshold / (n + 1e-6), 1.0)  # the clippers' 1e-6, as in PyTorch
            assert p.grad.item() == pytest.approx(expected, rel=1e-12)
            old = _old_autoclip_threshold(window, percentile)
            assert torch.equal(result.coefficient, torch.clamp(old / (n + 1e-6), max=1.0))
        if math.isfinite(n):
            finite.append(n)
        stored.append(list(finite if history_size is None else finite[-history_size:]))
        assert clipper.state_dict()["history"] == stored[-1]
    # nothing recorded before the first finite norm: the next finite one is not clipped
    assert _old_autoclip_threshold([], percentile) is None


@pytest.mark.parametrize("history_size", [None, 4])
def test_autoclip_does_not_keep_one_tensor_per_step(history_size):
    clipper = AutoClip(percentile=50, history_size=history_size)
    _feed(clipper, np.linspace(1.0, 2.0, 300).tolist() + [math.nan] * 20)
    state = vars(clipper)
    assert not any(isinstance(v, list | tuple | dict) for v in state.values())
    tensors = [v for v in state.values() if isinstance(v, torch.Tensor)]
    assert len(tensors) <= 4
    assert sum(t.numel() for t in tensors) <= (4 * 320 + 8 if history_size is None else 16)
    assert clipper.state_dict()["history"] == (
        np.linspace(1.0, 2.0, 300).tolist()[-history_size:] if history_size
        else np.linspace(1.0, 2.0, 300).tolist())


def test_autoclip_load_state_dict_keeps_the_newest_norms_of_the_window():
    clipper = AutoClip(percentile=50, history_size=2)
    clipper.load_state_dict({"percentile": 50.0, "history": [100.0, 1.0, 3.0],
                             "history_size": 2})
    assert clipper.state_dict()["history"] == [1.0, 3.0]
    assert _feed(clipper, [10.0])[-1].item() == pytest.approx(2.0, rel=1e-6)
    assert clipper.state_dict()["history"] == [3.0, 10.0]


@pytest.mark.parametrize("change, error, message", [
    ({"warmup": 0}, ValueError, "warmup must be a positive int"),
    ({"warmup": 2.5}, TypeError, "warmup must be"),
    ({"beta": 1.0}, ValueError, "beta must be in"),
    ({"z": -1.0}, ValueError, "z must be"),
])
def test_zscore_load_state_dict_checks_the_settings_it_restores(change, error, message):
    clipper = ZScoreClip()
    state = {**clipper.state_dict(), **change}
    with pytest.raises(error, match=message):
        ZScoreClip().load_state_dict(state)
