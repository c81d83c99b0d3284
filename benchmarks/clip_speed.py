"""Time gradtext's clipping against PyTorch's and against a per-parameter loop.

Prints the median seconds per call (after warm-up) and the ratio to the baseline:

- ``clip_by_norm`` vs ``torch.nn.utils.clip_grad_norm_(foreach=True)`` (target ratio <= 1.1);
- ``AdaptiveGradientClipping`` vs a straightforward per-parameter AGC loop (target <= 0.5).

Run: ``python benchmarks/clip_speed.py [--device cpu|cuda] [--repeats 200]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

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


def median_seconds(fn, repeats: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
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
        ),
        ("AGC (fused)", lambda: agc(params), "AGC (per-parameter loop)", lambda: agc_loop(params)),
    ]
    print(f"device={device}, {len(params)} parameter tensors, median of {args.repeats} calls")
    print(f"{'ours':<26}{'s/call':>12}  {'baseline':<26}{'s/call':>12}{'ratio':>8}")
    for name, ours, base_name, base in cases:
        t_ours = median_seconds(ours, args.repeats, args.warmup, device)
        t_base = median_seconds(base, args.repeats, args.warmup, device)
        print(f"{name:<26}{t_ours:>12.3e}  {base_name:<26}{t_base:>12.3e}{t_ours / t_base:>8.2f}")


if __name__ == "__main__":
    main()
