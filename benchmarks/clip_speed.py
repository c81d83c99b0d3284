"""Time gradtext's clipping against PyTorch's and against a per-parameter loop.

Prints the median seconds per call and the ratio to the baseline:

- ``clip_by_norm`` vs ``torch.nn.utils.clip_grad_norm_(foreach=True)`` (target ratio <= 1.1);
- ``AdaptiveGradientClipping`` vs a straightforward per-parameter AGC loop (target <= 0.5).

Method: after a warm-up, ours and the baseline are timed in alternating blocks of ``--calls``
calls (which one goes first alternates too), so drift in the machine's load hits both alike;
each block gives seconds per call, and the median over ``--repeats`` blocks is reported. One
torch thread by default (``--threads``): the cases are launch-bound, and a shared machine
gives steadier numbers single-threaded.

Run: ``python benchmarks/clip_speed.py [--device cpu|cuda] [--repeats 100] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import record
import torch
from torch import nn

from gradtext.clip import AdaptiveGradientClipping, clip_by_norm


def many_parameter_model(layers: int = 100, width: int = 64) -> nn.Module:
    """A deep MLP: ``2 * layers`` parameter tensors, each small (the launch-bound case)."""
    return nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)])


def agc_loop(parameters: list[nn.Parameter], clipping: float = 0.01, eps: float = 1e-3) -> None:
    """AGC written as one Python iteration per parameter: the baseline."""
    for p in parameters:
        dims = tuple(range(1, p.dim()))
        w = p.detach().norm(dim=dims, keepdim=True) if p.dim() > 1 else p.detach().abs()
        g = p.grad.norm(dim=dims, keepdim=True) if p.dim() > 1 else p.grad.abs()
        p.grad.mul_(torch.clamp(clipping * w.clamp_min(eps) / g.clamp_min(1e-6), max=1.0))


def _block(fn, calls: int, device: torch.device) -> float:
    """Seconds per call over ``calls`` consecutive calls."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls


def interleaved_medians(
    ours, base, repeats: int, calls: int, warmup: int, device: torch.device
) -> tuple[float, float]:
    """Median seconds per call of ``ours`` and ``base``, timed in alternating blocks."""
    for _ in range(warmup):
        ours()
        base()
    times_ours, times_base = [], []
    for repeat in range(repeats):
        if repeat % 2:
            times_base.append(_block(base, calls, device))
            times_ours.append(_block(ours, calls, device))
        else:
            times_ours.append(_block(ours, calls, device))
            times_base.append(_block(base, calls, device))
    return statistics.median(times_ours), statistics.median(times_base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=100, help="blocks per case")
    parser.add_argument("--calls", type=int, default=10, help="calls per block")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--save", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = many_parameter_model().to(device)
    params = list(model.parameters())
    grads = [torch.randn_like(p) for p in params]

    def reset() -> None:
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()

    reset()
    agc = AdaptiveGradientClipping(clipping=0.01)
    # clipping with max_norm above the norm leaves gradients unchanged: the timing is repeatable
    cases = [
        (
            "clip_by_norm",
            lambda: clip_by_norm(params, 1e9),
            "clip_grad_norm_(foreach)",
            lambda: nn.utils.clip_grad_norm_(params, 1e9, foreach=True),
            1.1,
        ),
        ("AGC (fused)", lambda: agc(params), "AGC (per-parameter loop)", lambda: agc_loop(params),
         0.5),
    ]
    print(f"device={device}, {len(params)} parameter tensors, {args.threads} thread(s), "
          f"median of {args.repeats} interleaved blocks of {args.calls} calls")
    print(f"{'ours':<26}{'s/call':>12}  {'baseline':<26}{'s/call':>12}{'ratio':>8}")
    rows = []
    for name, ours, base_name, base, target in cases:
        t_ours, t_base = interleaved_medians(
            ours, base, args.repeats, args.calls, args.warmup, device
        )
        rows.append({"ours": name, "baseline": base_name, "seconds": t_ours,
                     "baseline_seconds": t_base, "ratio": t_ours / t_base, "target": target})
        print(f"{name:<26}{t_ours:>12.3e}  {base_name:<26}{t_base:>12.3e}{t_ours / t_base:>8.2f}")
    if args.save:
        settings = {"device": str(device), "parameter_tensors": len(params),
                    "threads": args.threads, "repeats": args.repeats, "calls": args.calls}
        record.save(args.save, "clip_speed", settings, rows)


if __name__ == "__main__":
    main()
