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
    assert len(clipper.history) <= 2 * 2 + 1
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


def test_autoclip_resumes_from_a_checkpoint_on_another_device():
    # load_state_dict makes CPU tensors; gradients on an accelerator must still work (the meta
    # device stands in for a GPU: mixing it with CPU tensors fails the same way)
    first = AutoClip(percentile=50)
    _feed(first, [1.0, 2.0])
    resumed = AutoClip(percentile=50)
    resumed.load_state_dict(first.state_dict())
    for _ in range(3):
        _feed(resumed, [4.0], device="meta")
    assert all(n.device.type == "meta" for n in resumed.history)
    assert len(resumed.history) == 5


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
