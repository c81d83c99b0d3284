"""The classic optimizers written out update by update, for reading.

:class:`SGD` (with momentum and Nesterov momentum), :class:`AdaGrad`, :class:`RMSProp` and
:class:`Adam` (and AdamW, with ``decoupled_weight_decay=True``) compute what
``torch.optim.SGD``, ``torch.optim.Adagrad``, ``torch.optim.RMSprop``, ``torch.optim.Adam`` and
``torch.optim.AdamW`` compute, up to floating-point rounding (the tests check 25 steps of a
float64 model to 1e-12). Each is a ``torch.optim.Optimizer``, so ``zero_grad``, param groups,
``state_dict`` and the learning-rate schedulers work as usual, but each ``step`` is a plain
loop over the parameters whose body is the update rule of the class docstring, line by line.

What each optimizer remembers about a parameter ``p`` is in ``optimizer.state[p]``, under
PyTorch's names:

=============  ===========================================================================
optimizer      ``state[p]`` keys
=============  ===========================================================================
SGD            ``momentum_buffer`` (only with ``momentum > 0``)
AdaGrad        ``step``, ``sum``
RMSProp        ``step``, ``square_avg``, ``grad_avg`` (centered), ``momentum_buffer``
               (``momentum > 0``)
Adam           ``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad)
=============  ===========================================================================

``step`` is a Python ``int`` here (PyTorch keeps a 0-d tensor). A parameter whose ``grad`` is
None is skipped and gets no state. Left out, to keep the rules readable: ``maximize``,
``foreach``/``fused``/``capturable``/``differentiable``, tensor learning rates, AdaGrad's
``lr_decay``, complex parameters and sparse gradients (both raise an error).

>>> import torch
>>> w = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
>>> w_ref = w.detach().clone().requires_grad_()
>>> ours, theirs = Adam([w], lr=0.1), torch.optim.Adam([w_ref], lr=0.1)
>>> for _ in range(10):
...     for optimizer, x in ((ours, w), (theirs, w_ref)):
...         optimizer.zero_grad()
...         (x**4).sum().backward()
...         optimizer.step()
>>> torch.allclose(w, w_ref, rtol=0, atol=1e-12)
True
>>> sorted(ours.state[w]), ours.state[w]["step"]
(['exp_avg', 'exp_avg_sq', 'step'], 10)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import torch

_Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]
_Closure = Callable[[], torch.Tensor]


# --- checks on hyperparameters ------------------------------------------------------------------


def _check_number(
    name: str,
    value: object,
    *,
    low: float = 0.0,
    high: float | None = None,
    high_included: bool = False,
) -> float:
    """``value`` as a float if it is a finite real number in ``[low, high)`` (or
    ``[low, high]`` with ``high_included``); a TypeError or ValueError naming ``name`` if not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if high is None:
        if value < low:
            raise ValueError(f"{name} must be >= {low:g}, got {value:g}")
    elif not (low <= value <= high if high_included else low <= value < high):
        closing = "]" if high_included else ")"
        raise ValueError(f"{name} must be in [{low:g}, {high:g}{closing}, got {value:g}")
    return value


def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return value


class _WrittenOut(torch.optim.Optimizer):
    """What the four optimizers share: the checks on every param group's hyperparameters,
    running the closure, and the loop over parameters that have a gradient."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # Check the group's own hyperparameters (or the defaults it inherits) before adding it,
        # so a bad "lr" in a param group dict is caught as well as a bad default.
        if isinstance(param_group, dict):
            param_group.update(self._check_hyperparameters({**self.defaults, **param_group}))
        super().add_param_group(param_group)

    def _check_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        """The group's hyperparameters, checked and normalised (floats, bools). Each optimizer
        below defines its own; this base class is never used on its own."""
        raise TypeError(f"{type(self).__name__} must define _check_hyperparameters")

    def _groups_with_grads(self) -> list[tuple[dict[str, Any], list[torch.Tensor]]]:
        """Each param group with its parameters that have a gradient (no gradient: no update
        and no state), all of them, in every group, checked before any of them is updated."""
        groups = [
            (group, [p for p in group["params"] if p.grad is not None])
            for group in self.param_groups
        ]
        for _, params in groups:
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError(
                        f"{type(self).__name__} does not support sparse gradients "
                        f"(got one for a parameter of shape {tuple(p.shape)})"
                    )
                if torch.is_complex(p):
                    raise TypeError(
                        f"{type(self).__name__} does not support complex parameters"
                    )
        return groups

    @staticmethod
    def _evaluate(closure: _Closure | None) -> torch.Tensor | None:
        """Run ``closure`` (if any) with gradients enabled; its loss, or None."""
        if closure is None:
            return None
        with torch.enable_grad():
            return closure()


# --- the optimizers -----------------------------------------------------------------------------


class SGD(_WrittenOut):
    """Stochastic gradient descent with optional momentum, as ``torch.optim.SGD`` computes it.

    For each parameter ``θ`` with gradient ``grad``::

        g = grad + weight_decay * θ                 (an L2 penalty, folded into the gradient)
        b = g                                       (first step)
        b = momentum * b + (1 - dampening) * g      (later steps)         state "momentum_buffer"
        d = g + momentum * b    if nesterov
        d = b                   otherwise           (d = g when momentum = 0: no buffer)
        θ = θ - lr * d

    The momentum buffer ``b`` starts at the first gradient itself (not at zero, and without
    dampening), as in PyTorch. Note that PyTorch's momentum differs from the "velocity"
    form of Sutskever et al. (2013), ``v = momentum * v - lr * g; θ = θ + v``: the two agree
    while ``lr`` is constant. Nesterov momentum steps along ``g + momentum * b``: the
    gradient plus a look-ahead at the momentum step about to be taken (Sutskever et al.'s
    form of Nesterov's method, rewritten in terms of the current parameters); it needs
    ``momentum > 0`` and ``dampening = 0``.

    Parameters
    ----------
    params
        The tensors to optimize, or a list of param-group dicts (``{"params": [...], "lr": ...}``).
    lr
        Learning rate, ``>= 0``.
    momentum
        Momentum factor, ``>= 0`` (0: plain SGD).
    dampening
        In ``[0, 1]``: the buffer adds ``(1 - dampening) * g`` after the first step.
    weight_decay
        L2 penalty coefficient, ``>= 0``.
    nesterov
        Use Nesterov momentum.

    Examples
    --------
    A constant gradient of 1 with momentum 0.9: the buffer grows 1, 1.9, 2.71, ...

    >>> import torch
    >>> w = torch.tensor([1.0, -2.0], requires_grad=True)
    >>> optimizer = SGD([w], lr=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     w.grad = torch.ones(2)
    ...     optimizer.step()
    >>> optimizer.state[w]["momentum_buffer"], w.detach()
    (tensor([1.9000, 1.9000]), tensor([ 0.7100, -2.2900]))
    """

    def __init__(
        self,
        params: _Params,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
            nesterov=nesterov,
        )
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        checked = {
            "lr": _check_number("lr", group["lr"]),
            "momentum": _check_number("momentum", group["momentum"]),
            "dampening": _check_number("dampening", group["dampening"], high=1.0,
                                       high_included=True),
            "weight_decay": _check_number("weight_decay", group["weight_decay"]),
            "nesterov": _check_flag("nesterov", group["nesterov"]),
        }
        if checked["nesterov"] and (checked["momentum"] <= 0 or checked["dampening"] != 0):
            raise ValueError(
                "nesterov=True needs momentum > 0 and dampening = 0, got "
                f"momentum={checked['momentum']:g}, dampening={checked['dampening']:g}"
            )
        return checked

    @torch.no_grad()
    def step(self, closure: _Closure | None = None) -> torch.Tensor | None:
        """Update every parameter that has a gradient once, by the rule above.

        ``closure``, if given, recomputes the loss (and the gradients) first; its loss is
        returned (None without a closure).

        >>> import torch
        >>> w = torch.tensor([1.0], requires_grad=True)
        >>> optimizer = SGD([w], lr=0.5)
        >>> def closure():
        ...     optimizer.zero_grad()
        ...     loss = (w**2).sum()
        ...     loss.backward()
        ...     return loss
        >>> optimizer.step(closure), w.detach()
        (tensor(1., grad_fn=<SumBackward0>), tensor([0.]))
        """
        loss = self._evaluate(closure)
        for group, params in self._groups_with_grads():
            lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
            weight_decay, nesterov = group["weight_decay"], group["nesterov"]
            for p in params:
                g = p.grad
                if weight_decay != 0:
                    g = g + weight_decay * p
                if momentum != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = g.clone()  # b = g on the first step
                    else:
                        b = state["momentum_buffer"]
                        b.copy_(momentum * b + (1 - dampening) * g)
                    b = state["momentum_buffer"]
                    d = g + momentum * b if nesterov else b
                else:
                    d = g
                p.sub_(lr * d)
        return loss


class AdaGrad(_WrittenOut):
    """AdaGrad (Duchi, Hazan & Singer, 2011), as ``torch.optim.Adagrad`` computes it.

    For each parameter ``θ`` with gradient ``grad``, element by element::

        g = grad + weight_decay * θ
        s = s + g * g                               state "sum" (starts at
                                                    initial_accumulator_value)
        θ = θ - lr * g / (sqrt(s) + eps)

    Each coordinate gets its own step size ``lr / (sqrt(s) + eps)``, which only shrinks: rare,
    small gradients keep large steps, frequent large ones get small steps. Under a constant
    gradient (and ``initial_accumulator_value = 0``) the step is ``lr / sqrt(t)`` at step
    ``t``, whatever the gradient's size. The
    state also counts steps (``"step"``), as PyTorch's does. PyTorch's ``lr_decay`` option is
    left out (it is ``lr_decay = 0`` here). PyTorch creates every parameter's state when the
    optimizer is built; here it is created at a parameter's first gradient, as in the other
    optimizers, which gives the same steps.

    Parameters
    ----------
    params
        The tensors to optimize, or a list of param-group dicts.
    lr
        Learning rate, ``>= 0``.
    eps
        Added to ``sqrt(s)`` in the denominator, ``>= 0``.
    weight_decay
        L2 penalty coefficient, ``>= 0``.
    initial_accumulator_value
        Starting value of ``s``, ``>= 0``.

    Examples
    --------
    A constant gradient of 3: the steps are ``lr / sqrt(t)``.

    >>> import torch
    >>> w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    >>> optimizer = AdaGrad([w], lr=1.0)
    >>> steps = []
    >>> for _ in range(4):
    ...     before = w.item()
    ...     w.grad = torch.tensor([3.0], dtype=torch.float64)
    ...     optimizer.step()
    ...     steps.append(round(before - w.item(), 4))
    >>> steps
    [1.0, 0.7071, 0.5774, 0.5]
    """

    def __init__(
        self,
        params: _Params,
        lr: float = 1e-2,
        eps: float = 1e-10,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
    ) -> None:
        defaults = dict(
            lr=lr, eps=eps, weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
        )
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "lr": _check_number("lr", group["lr"]),
            "eps": _check_number("eps", group["eps"]),
            "weight_decay": _check_number("weight_decay", group["weight_decay"]),
            "initial_accumulator_value": _check_number(
                "initial_accumulator_value", group["initial_accumulator_value"]
            ),
        }

    @torch.no_grad()
    def step(self, closure: _Closure | None = None) -> torch.Tensor | None:
        """Update every parameter that has a gradient once, by the rule above.

        ``closure``, if given, recomputes the loss (and the gradients) first; its loss is
        returned (None without a closure).

        >>> import torch
        >>> w = torch.zeros(2, requires_grad=True)
        >>> optimizer = AdaGrad([w], initial_accumulator_value=1.0)
        >>> w.grad = torch.tensor([1.0, 2.0])
        >>> optimizer.step()
        >>> optimizer.state[w]
        {'step': 1, 'sum': tensor([2., 5.])}
        """
        loss = self._evaluate(closure)
        for group, params in self._groups_with_grads():
            lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["sum"] = torch.full_like(p, group["initial_accumulator_value"])
                state["step"] += 1
                g = p.grad
                if weight_decay != 0:
                    g = g + weight_decay * p
                s = state["sum"]
                s.copy_(s + g * g)
                p.sub_(lr * g / (s.sqrt() + eps))
        return loss


class RMSProp(_WrittenOut):
    """RMSProp (Tieleman & Hinton, 2012), as ``torch.optim.RMSprop`` computes it.

    For each parameter ``θ`` with gradient ``grad``, element by element::

        g = grad + weight_decay * θ
        v = alpha * v + (1 - alpha) * g * g           state "square_avg" (starts at 0)
        a = alpha * a + (1 - alpha) * g               state "grad_avg" (centered only; from 0)
        d = sqrt(v - a * a) + eps     if centered     (an estimate of the gradient's std)
        d = sqrt(v) + eps             otherwise
        b = momentum * b + g / d                      state "momentum_buffer" (from 0)
        θ = θ - lr * b                if momentum > 0
        θ = θ - lr * g / d            otherwise

    AdaGrad's sum becomes a moving average of the squared gradient, so the step size no
    longer only shrinks. There is no bias correction: ``v`` starts at zero, so the first step
    is ``lr / sqrt(1 - alpha)`` per coordinate (10 ``lr`` with ``alpha = 0.99``). Unlike
    :class:`SGD`'s, the momentum buffer starts at zero. The state also counts steps
    (``"step"``), as PyTorch's does.

    Parameters
    ----------
    params
        The tensors to optimize, or a list of param-group dicts.
    lr
        Learning rate, ``>= 0``.
    alpha
        Decay of the moving averages, in ``[0, 1)``.
    eps
        Added to the root-mean-square in the denominator, ``>= 0``.
    weight_decay
        L2 penalty coefficient, ``>= 0``.
    momentum
        Momentum factor, ``>= 0`` (0: no momentum buffer).
    centered
        Divide by the estimated standard deviation of the gradient rather than its root mean
        square (Graves, 2013).

    Examples
    --------
    No bias correction: the first step is ``lr / sqrt(1 - alpha)``, 10 ``lr`` here.

    >>> import torch
    >>> w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    >>> optimizer = RMSProp([w], lr=0.01, alpha=0.99)
    >>> w.grad = torch.tensor([5.0], dtype=torch.float64)
    >>> optimizer.step()
    >>> round(-w.item(), 6)
    0.1
    """

    def __init__(
        self,
        params: _Params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
            centered=centered,
        )
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "lr": _check_number("lr", group["lr"]),
            "alpha": _check_number("alpha", group["alpha"], high=1.0),
            "eps": _check_number("eps", group["eps"]),
            "weight_decay": _check_number("weight_decay", group["weight_decay"]),
            "momentum": _check_number("momentum", group["momentum"]),
            "centered": _check_flag("centered", group["centered"]),
        }

    @torch.no_grad()
    def step(self, closure: _Closure | None = None) -> torch.Tensor | None:
        """Update every parameter that has a gradient once, by the rule above.

        ``closure``, if given, recomputes the loss (and the gradients) first; its loss is
        returned (None without a closure).

        >>> import torch
        >>> w = torch.zeros(3, requires_grad=True)
        >>> optimizer = RMSProp([w], momentum=0.9, centered=True)
        >>> w.grad = torch.ones(3)
        >>> optimizer.step()
        >>> sorted(optimizer.state[w])
        ['grad_avg', 'momentum_buffer', 'square_avg', 'step']
        """
        loss = self._evaluate(closure)
        for group, params in self._groups_with_grads():
            lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
            weight_decay, momentum = group["weight_decay"], group["momentum"]
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["square_avg"] = torch.zeros_like(p)
                    if momentum > 0:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    if group["centered"]:
                        state["grad_avg"] = torch.zeros_like(p)
                state["step"] += 1
                g = p.grad
                if weight_decay != 0:
                    g = g + weight_decay * p
                v = state["square_avg"]
                v.copy_(alpha * v + (1 - alpha) * g * g)
                if group["centered"]:
                    a = state["grad_avg"]
                    a.copy_(alpha * a + (1 - alpha) * g)
                    d = (v - a * a).sqrt() + eps
                else:
                    d = v.sqrt() + eps
                if momentum > 0:
                    b = state["momentum_buffer"]
                    b.copy_(momentum * b + g / d)
                    p.sub_(lr * b)
                else:
                    p.sub_(lr * g / d)
        return loss


class Adam(_WrittenOut):
    """Adam (Kingma & Ba, 2015), as ``torch.optim.Adam`` computes it; with
    ``decoupled_weight_decay=True``, AdamW (Loshchilov & Hutter, 2019), as
    ``torch.optim.AdamW`` computes it.

    For each parameter ``θ`` with gradient ``grad``, element by element, at step ``t``
    (1, 2, ...)::

        θ = θ * (1 - lr * weight_decay)        if decoupled_weight_decay (AdamW)
        g = grad + weight_decay * θ            otherwise (Adam: an L2 penalty in the gradient)
        m = beta1 * m + (1 - beta1) * g                 state "exp_avg"    (starts at 0)
        v = beta2 * v + (1 - beta2) * g * g             state "exp_avg_sq" (starts at 0)
        v = v_max = max(v_max, v)              if amsgrad: state "max_exp_avg_sq"
        m_hat = m / (1 - beta1**t)             bias corrections: m and v start at 0
        v_hat = v / (1 - beta2**t)
        θ = θ - lr * m_hat / (sqrt(v_hat) + eps)

    As in PyTorch, ``eps`` is added after the bias correction (the code computes
    ``sqrt(v) / sqrt(1 - beta2**t) + eps``). The "efficient version" in Kingma & Ba's
    section 2 instead folds the correction into the step size and adds ``eps`` to the
    uncorrected ``sqrt(v)``, which gives a slightly different ``eps``.

    The step does not scale with the gradient. The first step is ``lr * g / (|g| + eps)``,
    that is ``lr * sign(g)`` unless ``|g|`` is as small as ``eps``; and, once the bias
    corrections are near 1, a gradient much larger than all before it moves each coordinate
    by about ``lr * (1 - beta1) / sqrt(1 - beta2)`` (about 3.2 ``lr`` with the default
    betas), not a million times more when the gradient is a million times larger. That is why
    Adam survives a gradient spike that makes SGD diverge, and also why it keeps taking steps
    of about ``lr`` when gradients shrink, as long as they stay well above ``eps``.
    ``torch.optim.AdamW``'s default ``weight_decay`` is 0.01; here it is 0 for both forms,
    so pass it explicitly.

    Parameters
    ----------
    params
        The tensors to optimize, or a list of param-group dicts.
    lr
        Learning rate, ``>= 0``.
    betas
        ``(beta1, beta2)``, the decays of the moving averages ``m`` and ``v``, each in
        ``[0, 1)``.
    eps
        Added to ``sqrt(v_hat)`` in the denominator, ``>= 0``.
    weight_decay
        Weight decay coefficient, ``>= 0``: an L2 penalty (Adam) or a direct shrinking of
        the weights (AdamW, ``decoupled_weight_decay=True``).
    amsgrad
        Divide by the largest ``v`` so far (AMSGrad, Reddi, Kale & Kumar, 2018).
    decoupled_weight_decay
        Decay the weights directly (AdamW) instead of adding ``weight_decay * θ`` to the
        gradient.

    Examples
    --------
    The first step is ``lr`` in the direction of ``-sign(g)``, whatever the gradient's scale.

    >>> import torch
    >>> w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    >>> optimizer = Adam([w], lr=0.1)
    >>> w.grad = torch.tensor([1e-3, -3.0, 1e6], dtype=torch.float64)
    >>> optimizer.step()
    >>> [round(x, 6) for x in w.tolist()]
    [-0.099999, 0.1, -0.1]
    """

    def __init__(
        self,
        params: _Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        return {
            "lr": _check_number("lr", group["lr"]),
            "betas": (
                _check_number("betas[0]", betas[0], high=1.0),
                _check_number("betas[1]", betas[1], high=1.0),
            ),
            "eps": _check_number("eps", group["eps"]),
            "weight_decay": _check_number("weight_decay", group["weight_decay"]),
            "amsgrad": _check_flag("amsgrad", group["amsgrad"]),
            "decoupled_weight_decay": _check_flag(
                "decoupled_weight_decay", group["decoupled_weight_decay"]
            ),
        }

    @torch.no_grad()
    def step(self, closure: _Closure | None = None) -> torch.Tensor | None:
        """Update every parameter that has a gradient once, by the rule above.

        ``closure``, if given, recomputes the loss (and the gradients) first; its loss is
        returned (None without a closure).

        >>> import torch
        >>> w = torch.zeros(3, requires_grad=True)
        >>> optimizer = Adam([w], amsgrad=True)
        >>> w.grad = torch.ones(3)
        >>> optimizer.step()
        >>> sorted(optimizer.state[w]), optimizer.state[w]["step"]
        (['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq', 'step'], 1)
        """
        loss = self._evaluate(closure)
        for group, params in self._groups_with_grads():
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            weight_decay = group["weight_decay"]
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                g = p.grad
                if weight_decay != 0:
                    if group["decoupled_weight_decay"]:
                        p.mul_(1 - lr * weight_decay)
                    else:
                        g = g + weight_decay * p
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.copy_(beta1 * m + (1 - beta1) * g)
                v.copy_(beta2 * v + (1 - beta2) * g * g)
                if group["amsgrad"]:
                    v_max = state["max_exp_avg_sq"]
                    v_max.copy_(torch.maximum(v_max, v))
                    v = v_max
                m_hat = m / (1 - beta1**t)
                sqrt_v_hat = v.sqrt() / math.sqrt(1 - beta2**t)
                p.sub_(lr * m_hat / (sqrt_v_hat + eps))
        return loss
