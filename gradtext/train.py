"""One training loop for every chapter: :func:`fit` trains any ``nn.Module`` and returns a
:class:`History`.

What it takes care of, so that notebooks and user code don't have to:

- device placement (``device="auto"``) and seeded mini-batches;
- the global gradient norm of every step, and optional clipping and monitoring;
- divergence: a NaN/Inf loss or gradient stops training *before* the bad update is applied,
  the step is recorded in ``History.diverged_at`` and nothing is raised (a clipper that
  repairs a non-finite gradient, such as ``AutoClip(nonfinite="zero")``, lets training go on);
- Ctrl-C: the history trained so far is returned with ``History.interrupted = True``; a Ctrl-C
  that arrives during an optimizer step is held until the step is done, so the weights are
  never left half updated.

>>> import torch
>>> from gradtext.models import DeepMLP
>>> from gradtext.tasks import argmax_task
>>> x, y = argmax_task(n=256, dim=8, classes=3, seed=0)
>>> net = DeepMLP(8, 3, width=16, depth=3)
>>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
>>> h = fit(net, (x, y), loss="cross_entropy", optimizer=opt, steps=20, progress=False)
>>> len(h.loss), h.diverged
(20, False)
"""

from __future__ import annotations

import math
import numbers
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from gradtext.clip import clip_by_norm, total_norm
from gradtext.device import resolve_device
from gradtext.monitor import GradientMonitor

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
OptimizerArg = Union[  # noqa: UP007 (a runtime alias; keeps Python 3.10 happy)
    torch.optim.Optimizer, Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
]
Scheduler = torch.optim.lr_scheduler.LRScheduler  # ReduceLROnPlateau is one too
SchedulerArg = Union[  # noqa: UP007
    Scheduler, Callable[[torch.optim.Optimizer], Scheduler]
]


def _mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # F.mse_loss broadcasts (batch, 1) outputs against (batch,) targets into a (batch, batch)
    # comparison with only a warning: a wrong loss that still trains a little.
    if output.shape != target.shape:
        raise ValueError(
            f"loss='mse': the model's output has shape {tuple(output.shape)} but the targets "
            f"have shape {tuple(target.shape)}; they would broadcast into a wrong loss "
            "(reshape the targets to the output's shape)"
        )
    return F.mse_loss(output, target)


def _cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # Sequence outputs (batch, time, classes) with class targets (batch, time), or with class
    # probabilities of the output's shape, are flattened; other shapes follow PyTorch's
    # F.cross_entropy, classes in dimension 1 (e.g. a Conv1d's (batch, classes, length)).
    if output.dim() == 3:
        classes = output.shape[-1]
        if target.shape == output.shape[:-1]:
            return F.cross_entropy(output.reshape(-1, classes), target.reshape(-1))
        if target.shape == output.shape and target.is_floating_point():
            return F.cross_entropy(output.reshape(-1, classes), target.reshape(-1, classes))
    return F.cross_entropy(output, target)


LOSSES: dict[str, LossFn] = {
    "mse": _mse,
    "cross_entropy": _cross_entropy,
}
"""Loss names accepted by :func:`fit`; any ``callable(output, target) -> scalar`` works too."""


@dataclass
class History:
    """What :func:`fit` recorded, one entry per training step.

    ``loss[t]`` and ``grad_norm[t]`` belong to step ``t`` (the gradient norm is measured
    before any clipping); ``time[t]`` is the seconds elapsed when step ``t``'s gradient was
    ready (before its optimizer step).
    On divergence the offending step is the last entry, with its non-finite value kept. A
    non-finite ``grad_norm`` that is not the last entry is a step whose gradient the clipper
    made finite (e.g. ``AutoClip(nonfinite="zero")``, coefficient 0), so training went on.

    Attributes
    ----------
    loss, grad_norm, time
        One float per step: the training loss, the global gradient norm (before clipping) and
        the seconds since training started.
    clip_coefficient
        One float per step when ``fit`` clipped (the factor applied; 1 when it did not clip).
    lr
        One float per step: the learning rate of the optimizer's first parameter group at that
        step (it changes only with a ``scheduler``).
    eval_step, eval_loss
        The steps after which ``eval_data`` was evaluated, and the loss there.
    diverged, diverged_at
        Whether a loss, or a gradient after clipping, was NaN or Inf, and at which step
        (else ``None``).
    interrupted
        Whether training was stopped by Ctrl-C (``KeyboardInterrupt``).
    device
        The device the model was trained on.

    Examples
    --------
    >>> import math, torch
    >>> net = torch.nn.Linear(1, 1)
    >>> data = (torch.ones(8, 1), torch.zeros(8, 1))
    >>> sgd = torch.optim.SGD(net.parameters(), lr=100.0)  # far too large: diverges
    >>> history = fit(net, data, loss="mse", optimizer=sgd, steps=100, device="cpu",
    ...               progress=False)
    >>> history.diverged, history.steps == history.diverged_at + 1
    (True, True)
    >>> math.isfinite(history.loss[-1]) and math.isfinite(history.grad_norm[-1])
    False
    """

    loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    clip_coefficient: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    diverged: bool = False
    diverged_at: int | None = None
    interrupted: bool = False
    device: str = "cpu"

    @property
    def steps(self) -> int:
        """The number of steps recorded."""
        return len(self.loss)

    @property
    def final_loss(self) -> float:
        """The loss of the last step (NaN when nothing was recorded)."""
        return self.loss[-1] if self.loss else math.nan

    def arrays(self) -> dict[str, np.ndarray]:
        """Every per-step series as a NumPy array."""
        return {
            "loss": np.asarray(self.loss, dtype=float),
            "grad_norm": np.asarray(self.grad_norm, dtype=float),
            "time": np.asarray(self.time, dtype=float),
            "clip_coefficient": np.asarray(self.clip_coefficient, dtype=float),
            "lr": np.asarray(self.lr, dtype=float),
        }

    def __repr__(self) -> str:
        status = f"diverged at step {self.diverged_at}" if self.diverged else "finite"
        if self.interrupted:
            status += ", interrupted"
        return (
            f"History(steps={self.steps}, final_loss={self.final_loss:.4g}, {status}, "
            f"device={self.device!r})"
        )


def global_grad_norm(parameters: Iterable[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all gradients together, as a 0-d tensor (no host synchronisation).

    Computed in float64 by :func:`gradtext.clip.total_norm`, so huge but finite gradients give
    a finite norm.

    >>> import torch
    >>> p = torch.nn.Parameter(torch.ones(3)); p.grad = torch.full((3,), 2.0)
    >>> float(global_grad_norm([p]))
    3.4641016151377544
    """
    return total_norm(parameters)


def _resolve_loss(loss: str | LossFn) -> LossFn:
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable, got {loss!r}")
        return LOSSES[loss]
    if not callable(loss):
        raise TypeError(f"loss must be a str or a callable, got {type(loss).__name__}")
    return loss


def _resolve_optimizer(optimizer: OptimizerArg, model: nn.Module) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer):
        built = optimizer(model.parameters())
        if not isinstance(built, torch.optim.Optimizer):
            raise TypeError("optimizer factory must return a torch.optim.Optimizer")
        return built
    raise TypeError(
        "optimizer must be a torch.optim.Optimizer or a callable taking the model's parameters, "
        f"got {type(optimizer).__name__}"
    )


def _check_scheduler_arg(scheduler: object) -> None:
    if scheduler is not None and not isinstance(scheduler, Scheduler) and not callable(scheduler):
        raise TypeError(
            "scheduler must be None, a torch.optim.lr_scheduler scheduler or a callable taking "
            f"the optimizer, got {type(scheduler).__name__}"
        )


def _resolve_scheduler(
    scheduler: SchedulerArg | None, optimizer: torch.optim.Optimizer, evaluates: bool
) -> Scheduler | None:
    if scheduler is None:
        return None
    if not isinstance(scheduler, Scheduler):
        scheduler = scheduler(optimizer)
        if not isinstance(scheduler, Scheduler):
            raise TypeError(
                "scheduler factory must return a torch.optim.lr_scheduler scheduler, "
                f"got {type(scheduler).__name__}"
            )
    if scheduler.optimizer is not optimizer:
        raise ValueError("scheduler must schedule the optimizer that fit trains with")
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and not evaluates:
        raise ValueError(
            "scheduler ReduceLROnPlateau needs eval_data: it is stepped with each evaluation's loss"
        )
    return scheduler


def _learning_rate(optimizer: torch.optim.Optimizer) -> float:
    lr = optimizer.param_groups[0].get("lr", math.nan)
    return float(lr)  # a tensor learning rate is read once per step, like the loss


def _check_pair(name: str, data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``data`` as an (inputs, targets) pair of tensors of equal, nonzero length."""
    if isinstance(data, (tuple, list)) and any(isinstance(t, np.ndarray) for t in data):
        raise TypeError(
            f"{name} holds NumPy arrays; convert them to tensors first, e.g. "
            "(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y))"
        )
    if not isinstance(data, (tuple, list)) or not all(isinstance(t, torch.Tensor) for t in data):
        raise TypeError(f"{name} must be an (inputs, targets) pair of tensors, got "
                        f"{type(data).__name__}")
    if len(data) != 2:
        raise ValueError(
            f"{name} must be an (inputs, targets) pair of tensors, got a "
            f"{type(data).__name__} of {len(data)} tensors"
        )
    inputs, targets = data
    if len(inputs) != len(targets):
        raise ValueError(
            f"{name}: inputs and targets differ in length ({len(inputs)} vs {len(targets)})"
        )
    if len(inputs) == 0:
        raise ValueError(f"{name} must hold at least one example")
    return inputs, targets


def _tensor_batches(
    data: tuple[torch.Tensor, torch.Tensor], batch_size: int, seed: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    inputs, targets = data
    inputs, targets = inputs.to(device), targets.to(device)
    n = len(inputs)
    if batch_size >= n:
        while True:
            yield inputs, targets
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            yield inputs[index], targets[index]


def _iterable_batches(
    data: Iterable[Any], device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        count = 0
        for batch in data:
            count += 1
            try:
                inputs, targets = batch
            except (TypeError, ValueError):
                kind = f"a {type(batch).__name__}" + (
                    f" of {len(batch)} items" if isinstance(batch, (tuple, list)) else ""
                )
                raise ValueError(
                    f"data: each batch must be an (inputs, targets) pair, got {kind}"
                ) from None
            if not (isinstance(inputs, torch.Tensor) and isinstance(targets, torch.Tensor)):
                hint = " (convert them with torch.as_tensor)" if isinstance(
                    inputs, np.ndarray) or isinstance(targets, np.ndarray) else ""
                raise TypeError(
                    "data: each batch must be an (inputs, targets) pair of tensors, got "
                    f"{type(inputs).__name__} and {type(targets).__name__}{hint}"
                )
            yield inputs.to(device), targets.to(device)
        if count == 0:
            raise ValueError("data yielded no batches")


def _batches(data: Any, batch_size: int, seed: int, device: torch.device):
    """An endless iterator of batches on ``device``; bad ``data`` is reported here, at once."""
    if isinstance(data, (tuple, list)) and data and all(
        isinstance(t, (torch.Tensor, np.ndarray)) for t in data
    ):
        return _tensor_batches(_check_pair("data", data), batch_size, seed, device)
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, torch.Tensor)):
        if iter(data) is data:
            raise TypeError(
                "data is a one-shot iterator; pass a re-iterable such as a list or a DataLoader"
            )
        return _iterable_batches(data, device)
    raise TypeError(
        "data must be an (inputs, targets) pair of tensors or an iterable of such pairs, "
        f"got {type(data).__name__}"
    )


def _training_device(model: nn.Module, device: str | torch.device) -> torch.device:
    """Where :func:`fit` trains: ``device`` resolved, except that ``"auto"`` keeps a model that
    already sits on an accelerator (``cuda:1``, say) where it is."""
    if isinstance(device, str) and device.strip().lower() == "auto":
        placed = next((p.device for p in model.parameters() if p.device.type != "cpu"), None)
        if placed is not None:
            return placed
    return resolve_device(device)


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_loss_value(value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"loss must return a scalar tensor, got {type(value).__name__}")
    if value.numel() != 1:
        raise ValueError(
            f"loss must return a scalar tensor, got one of shape {tuple(value.shape)} "
            "(reduce it, e.g. with reduction='mean')"
        )
    return value


def _trim(history: History, clipped: bool) -> None:
    """After Ctrl-C: drop a step (or evaluation) whose records were only partly written."""
    series = [history.loss, history.grad_norm, history.time, history.lr]
    if clipped:
        series.append(history.clip_coefficient)
    steps = min(len(s) for s in series)
    for s in series:
        del s[steps:]
    evaluations = min(len(history.eval_step), len(history.eval_loss))
    del history.eval_step[evaluations:], history.eval_loss[evaluations:]


@contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until the block is done, then raise
    ``KeyboardInterrupt`` as usual.

    An optimizer updates the parameters one after another: interrupted halfway, it would leave
    some layers stepped and others not, and Adam's moments counting a step that half happened.
    Only the main thread can handle signals, and only Python's own Ctrl-C handler (the one
    Jupyter kernels install while a cell runs) is replaced; anything else is left alone.

    >>> order = []
    >>> try:
    ...     with _ctrl_c_held():
    ...         signal.raise_signal(signal.SIGINT)  # Ctrl-C, held here ...
    ...         order.append("block finished")
    ... except KeyboardInterrupt:                    # ... and raised after the block
    ...     order.append("KeyboardInterrupt")
    >>> order
    ['block finished', 'KeyboardInterrupt']
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if received:
        raise KeyboardInterrupt


def fit(
    model: nn.Module,
    data: Any,
    *,
    loss: str | LossFn,
    optimizer: OptimizerArg,
    steps: int,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    progress: bool = True,
    clip: float | Callable[[list[nn.Parameter]], Any] | None = None,
    monitor: GradientMonitor | None = None,
    seed: int = 0,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    eval_every: int = 100,
    callback: Callable[[int, History], bool | None] | None = None,
    scheduler: SchedulerArg | None = None,
) -> History:
    """Train ``model`` for ``steps`` optimizer steps and return the :class:`History`.

    A NaN or Inf loss or gradient stops training cleanly (``History.diverged``), keeping the
    history up to that step, unless ``clip`` made the gradient finite again (see ``clip``);
    Ctrl-C returns the history so far (one that arrives during ``optimizer.step()`` is held
    until the step is done, so no step is half applied). The same seed and initial model
    give bit-identical histories on the CPU (dropout included).

    Parameters
    ----------
    model
        Any ``nn.Module``; it is moved to ``device``.
    data
        An ``(inputs, targets)`` pair of tensors, from which mini-batches of ``batch_size``
        are drawn without replacement in a seeded random order (the full batch when
        ``batch_size >= len(inputs)``), or any re-iterable of ``(inputs, targets)`` batches such
        as a ``DataLoader``, cycled as often as needed.
    loss
        ``"mse"`` (output and targets of the same shape: a ``(batch, 1)`` output against
        ``(batch,)`` targets raises instead of broadcasting), ``"cross_entropy"`` (class indices
        or probabilities; a ``(batch, time, classes)`` output is flattened, other shapes follow
        ``F.cross_entropy``, classes in dimension 1) or a
        ``callable(output, target) -> scalar tensor``.
    optimizer
        A ``torch.optim.Optimizer`` over the model's parameters, or a callable that
        builds one from ``model.parameters()``.
    steps
        The number of optimizer steps (0 is allowed and records nothing).
    batch_size
        Examples per step when ``data`` is a pair of tensors (ignored for an iterable).
    device
        ``"auto"`` (the device the model is on if that is an accelerator, such as ``cuda:1``;
        otherwise CUDA, then MPS, then CPU), a device string or a ``torch.device``.
    progress
        Show a ``tqdm`` progress bar with the loss and gradient norm.
    clip
        ``None``; a positive float, the threshold of global-norm clipping; or a callable
        applied to the list of parameters after ``backward()`` (the model's trainable
        parameters, then any other parameter the optimizer updates) (e.g. a clipper from
        :mod:`gradtext.clip`). A result with a ``coefficient`` attribute is recorded. When the
        gradient norm is NaN or Inf, training stops only if the gradient is still non-finite
        after clipping: ``AutoClip(nonfinite="zero")`` zeroes it and training goes on, while
        ``nonfinite="skip"`` leaves it (coefficient 1) and training stops.
    monitor
        ``None`` or a :class:`~gradtext.monitor.GradientMonitor` on ``model`` (entered here if
        it is not active).
    seed
        Seeds the order of mini-batches and the random numbers drawn on the CPU during
        training (dropout, a shuffling ``DataLoader``); the global generator is restored
        afterwards. The model's initialization is the caller's.
    eval_data
        A held-out ``(inputs, targets)`` pair, evaluated (without gradients) into
        ``History.eval_step`` and ``History.eval_loss``.
    eval_every
        Evaluate ``eval_data`` every ``eval_every`` steps, and after the last step.
    callback
        Called as ``callback(step, history)`` after every step; returning ``True`` stops.
    scheduler
        ``None``; a learning-rate scheduler from ``torch.optim.lr_scheduler`` built on
        ``optimizer``; or a callable that builds one from the optimizer (needed when
        ``optimizer`` is itself a callable), e.g. a warm-up:
        ``lambda opt: torch.optim.lr_scheduler.LinearLR(opt, 0.01, total_iters=100)``.
        It is stepped after every optimizer step, except ``ReduceLROnPlateau``, which is
        stepped with the loss of every evaluation of ``eval_data``. ``History.lr`` records
        the learning rate of each step.

    Examples
    --------
    >>> import torch
    >>> from gradtext.tasks import teacher_student
    >>> inputs, targets = teacher_student(n=256, dim=4, seed=0)
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    >>> adam = torch.optim.Adam(model.parameters(), lr=1e-2)
    >>> history = fit(model, (inputs, targets), loss="mse", optimizer=adam, steps=50,
    ...               device="cpu", progress=False)
    >>> history.steps, history.diverged, history.final_loss < history.loss[0]
    (50, False, True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_int("steps", steps, 0)
    _check_int("batch_size", batch_size, 1)
    _check_int("eval_every", eval_every, 1)
    _check_int("seed", seed, 0)
    _check_scheduler_arg(scheduler)
    loss_fn = _resolve_loss(loss)
    if clip is not None and not callable(clip):
        if isinstance(clip, bool) or not isinstance(clip, (int, float)):
            raise TypeError(
                f"clip must be None, a positive number or a callable, got {type(clip).__name__}"
            )
        if not clip > 0:
            raise ValueError(f"clip must be None, a positive number or a callable, got {clip!r}")
    if monitor is not None:
        if not isinstance(monitor, GradientMonitor):
            raise TypeError(
                "monitor must be a gradtext.GradientMonitor (or None), "
                f"got {type(monitor).__name__}"
            )
        if getattr(monitor, "model", model) is not model:
            raise ValueError("monitor watches a different model than the one being trained")
    target_device = _training_device(model, device)
    batches = _batches(data, batch_size, seed, target_device)  # checks data before any change
    if eval_data is not None:
        eval_inputs, eval_targets = _check_pair("eval_data", eval_data)
    model.to(target_device)
    opt = _resolve_optimizer(optimizer, model)
    model_parameters = {id(p) for p in model.parameters()}
    optimized = [p for group in opt.param_groups for p in group["params"]]
    if not any(id(p) in model_parameters for p in optimized):
        raise ValueError("optimizer holds none of the model's parameters: it would train nothing")
    lr_scheduler = _resolve_scheduler(scheduler, opt, evaluates=eval_data is not None)
    plateau = isinstance(lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    if eval_data is not None:
        eval_inputs, eval_targets = eval_inputs.to(target_device), eval_targets.to(target_device)
    # every gradient of the step: the model's trainable parameters and any other parameter the
    # optimizer updates (a learnable temperature in the loss, say), each once
    parameters = [p for p in model.parameters() if p.requires_grad]
    parameters += [p for p in dict.fromkeys(optimized)
                   if p.requires_grad and id(p) not in model_parameters]

    history = History(device=str(target_device))
    bar = tqdm(total=steps, disable=not progress, desc="training", leave=True)
    refresh = max(1, steps // 100)
    start = time.perf_counter()
    with ExitStack() as stack:
        # randomness inside the model (dropout) is seeded too, and the global CPU generator is
        # left as it was
        stack.enter_context(torch.random.fork_rng(devices=[]))
        torch.random.default_generator.manual_seed(seed)
        if monitor is not None:
            if hasattr(monitor, "attach_optimizer"):
                monitor.attach_optimizer(opt)
            if not getattr(monitor, "active", False):
                stack.enter_context(monitor)
        try:
            model.train()
            for step in range(steps):
                inputs, targets = next(batches)
                # the model's too: a parameter the optimizer leaves alone must not accumulate
                model.zero_grad(set_to_none=True)
                opt.zero_grad(set_to_none=True)
                loss_value = _check_loss_value(loss_fn(model(inputs), targets))
                loss_value.backward()
                coefficient = None
                if clip is None:
                    grad_norm = global_grad_norm(parameters)
                else:  # a threshold: the clipper's own pre-clip norm is recorded
                    coefficient, grad_norm = _apply_clip(clip, parameters)
                loss_float, norm_float = torch.stack(
                    [loss_value.detach().reshape(()).to(torch.float64), grad_norm.to(torch.float64)]
                ).tolist()
                history.loss.append(loss_float)
                history.grad_norm.append(norm_float)
                if coefficient is not None:
                    history.clip_coefficient.append(float(coefficient))
                history.time.append(time.perf_counter() - start)
                history.lr.append(_learning_rate(opt))
                # a non-finite gradient stops training unless the clipper made it finite
                if not math.isfinite(loss_float) or not (
                    math.isfinite(norm_float)
                    or (clip is not None and math.isfinite(float(global_grad_norm(parameters))))
                ):
                    history.diverged = True
                    history.diverged_at = step
                    break
                with _ctrl_c_held():  # the step and the schedule move together, or not at all
                    opt.step()
                    if lr_scheduler is not None and not plateau:
                        lr_scheduler.step()
                if eval_data is not None and ((step + 1) % eval_every == 0 or step + 1 == steps):
                    eval_loss = _evaluate(model, loss_fn, eval_inputs, eval_targets)
                    history.eval_step.append(step + 1)
                    history.eval_loss.append(eval_loss)
                    if plateau:
                        lr_scheduler.step(eval_loss)
                if progress:
                    bar.update(1)
                    if step % refresh == 0:
                        bar.set_postfix(loss=f"{loss_float:.4g}", grad_norm=f"{norm_float:.3g}")
                if callback is not None and callback(step, history):
                    break
        except KeyboardInterrupt:
            history.interrupted = True
            _trim(history, clipped=clip is not None)
        finally:
            bar.close()
    if history.diverged and progress:
        print(f"fit: training diverged at step {history.diverged_at} (non-finite loss or gradient)")
    return history


def _apply_clip(
    clip: float | Callable[[list[nn.Parameter]], Any],
    parameters: list[nn.Parameter],
) -> tuple[torch.Tensor | float, torch.Tensor]:
    """Clip in place; return (coefficient applied, global 2-norm before clipping)."""
    if callable(clip):
        before = global_grad_norm(parameters)
        result = clip(parameters)
        return getattr(result, "coefficient", 1.0), before
    result = clip_by_norm(parameters, float(clip))
    return result.coefficient, result.total_norm


@torch.no_grad()
def _evaluate(
    model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor
) -> float:
    was_training = model.training
    model.eval()
    try:
        return float(loss_fn(model(inputs), targets))
    finally:
        model.train(was_training)
