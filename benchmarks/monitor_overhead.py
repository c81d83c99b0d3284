"""How much does watching cost? Step time with a GradientMonitor attached divided by the same
step without it, on CPU, in one process.

Models: a 30-layer tanh MLP (width 256, batch 128) and a 2-layer LSTM (hidden 128, 50 time
steps, batch 32), each trained with SGD (forward, loss, backward, optimizer step). The monitor
records every step, or every 10th; it is given the optimizer, as ``gradtext.fit`` does, so
update-to-weight ratios are measured too (with the default ``update_sample``; one column measures
them exactly, ``update_sample=None``, and one leaves them out). Settings are interleaved
round-robin after a warm-up round, the order reversing every other round; each round's time for a
setting is divided by the same round's time without the monitor, and the median of these paired
ratios over the rounds is reported, so that drift in the machine's speed between rounds cancels.
With each median comes a 95% bootstrap interval (the rounds resampled with replacement), so that
a ratio can be told apart from a target, or not, on a machine whose load varies.

The last column, ``norms_share``, is the time of one fused norm over every gradient and weight,
measured inside the same training loop, as a share of the step: recording a step costs at
least that much, as the monitor must read each gradient and weight once.

Run: ``python benchmarks/monitor_overhead.py`` (``--quick`` for a shorter run, ``--repeats``
for more rounds, ``--cpu N`` to pin the process to CPU ``N``). Targets:
<= 1.10 recording every step, <= 1.02 every 10th.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import record
import torch
from torch import nn
from torch.nn import functional as F

from gradtext import GradientMonitor
from gradtext.models import DeepMLP, SequenceModel


def _mlp(batch: int = 128) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = DeepMLP(256, 10, width=256, depth=30, activation="tanh")
    return model, torch.randn(batch, 256), torch.randint(0, 10, (batch,))


def _lstm() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = SequenceModel("lstm", 8, 128, 10, num_layers=2)
    return model, torch.randn(32, 50, 8), torch.randint(0, 10, (32,))


def _time_steps(model, optimizer, inputs, targets, steps: int) -> float:
    """Seconds per training step, averaged over ``steps`` consecutive steps."""
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def _norm_floor(model, optimizer, inputs, targets, steps: int) -> float:
    """Seconds that reading every gradient and weight once (one fused norm call, as the monitor
    does on a recorded step) takes inside the training loop, median over ``steps`` steps: a floor
    under what recording a step can cost, whatever else it computes."""
    params = list(model.parameters())
    seconds = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), targets).backward()
        start = time.perf_counter()
        torch._foreach_norm([p.grad for p in params] + [p.detach() for p in params])
        seconds.append(time.perf_counter() - start)
        optimizer.step()
    return statistics.median(seconds)


def bootstrap_interval(ratios: list[float], level: float = 0.95, resamples: int = 4000,
                       seed: int = 0) -> tuple[float, float]:
    """A ``level`` bootstrap interval for the median of ``ratios``: the rounds are drawn again
    with replacement ``resamples`` times, and the central ``level`` of the medians kept.

    >>> bootstrap_interval([1.0, 1.0, 1.0])
    (1.0, 1.0)
    >>> low, high = bootstrap_interval([1.0, 1.1, 1.2, 1.3, 1.4])
    >>> 1.0 <= low < 1.2 < high <= 1.4
    True
    """
    rounds = np.asarray(ratios, dtype=float)
    draws = np.random.default_rng(seed).integers(0, len(rounds), size=(resamples, len(rounds)))
    medians = np.median(rounds[draws], axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(low), float(high)


def measure(build, repeats: int, steps: int) -> dict[str, float | list[float]]:
    """Median over rounds of the step-time ratio against no monitor in the same round."""
    torch.manual_seed(0)
    model, inputs, targets = build()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    # One monitor per setting for the whole run, as in training; entered for its rounds only.
    monitors = {"none": None, "every=1": GradientMonitor(model, every=1, optimizer=optimizer),
                "every=10": GradientMonitor(model, every=10, optimizer=optimizer),
                "every=1, no optimizer": GradientMonitor(model, every=1),
                "every=10, exact updates": GradientMonitor(model, every=10, optimizer=optimizer,
                                                           update_sample=None)}
    times: dict[str, list[float]] = {name: [] for name in monitors}
    for repeat in range(repeats + 1):  # the first round is the warm-up
        # the order alternates between rounds, so no setting always follows the same one
        order = list(monitors.items()) if repeat % 2 == 0 else list(monitors.items())[::-1]
        for name, monitor in order:
            if monitor is None:
                seconds = _time_steps(model, optimizer, inputs, targets, steps)
            else:
                with monitor:
                    seconds = _time_steps(model, optimizer, inputs, targets, steps)
            if repeat > 0:
                times[name].append(seconds)
    base = times["none"]
    paired = {name: [t / b for t, b in zip(times[name], base, strict=True)]
              for name in monitors if name != "none"}
    ratios = {name: statistics.median(r) for name, r in paired.items()}
    intervals = {f"{name} interval": list(bootstrap_interval(r)) for name, r in paired.items()}
    floor = _norm_floor(model, optimizer, inputs, targets, steps * repeats)
    return {"step_ms": statistics.median(base) * 1e3, **ratios,
            "norms_share": floor / statistics.median(base), **intervals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--repeats", type=int, default=None,
                        help="rounds per setting (default 15, or 5 with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--mlp-batch", type=int, default=128, help="the MLP's batch size")
    parser.add_argument("--cpu", type=int, default=None,
                        help="pin the process to this CPU (Linux), away from other work")
    parser.add_argument("--save", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    if args.cpu is not None:
        if not hasattr(os, "sched_setaffinity"):
            parser.error("--cpu needs os.sched_setaffinity (Linux)")
        if args.cpu not in os.sched_getaffinity(0):
            parser.error(f"--cpu must be one of {sorted(os.sched_getaffinity(0))}, got {args.cpu}")
        os.sched_setaffinity(0, {args.cpu})
    torch.set_num_threads(args.threads)
    repeats, steps = (5, 20) if args.quick else (15, 20)
    if args.repeats is not None:
        if args.repeats < 1:
            parser.error(f"--repeats must be >= 1, got {args.repeats}")
        repeats = args.repeats
    print(f"monitor overhead: step time with / without, median of {repeats} x {steps} steps, "
          f"{args.threads} thread(s)")
    columns = ["every=1", "every=10", "every=1, no optimizer", "every=10, exact updates",
               "norms_share"]
    print(f"{'model':<22}{'step (ms)':>10}" + "".join(f"{c:>{len(c) + 2}}" for c in columns))
    mlp = ("MLP 30 x 256 (tanh)", lambda: _mlp(args.mlp_batch))
    if args.mlp_batch != 128:
        mlp = (f"MLP 30 x 256, batch {args.mlp_batch}", mlp[1])
    rows = []
    for label, build in [mlp, ("LSTM 2 x 128, T=50", _lstm)]:
        result = measure(build, repeats, steps)
        rows.append({"model": label, **result})
        print(f"{label:<22}{result['step_ms']:>10.2f}"
              + "".join(f"{result[c]:>{len(c) + 2}.3f}" for c in columns))
    print("targets: every=1 <= 1.10, every=10 <= 1.02; 95% bootstrap intervals of the medians:")
    for row in rows:
        print(f"  {row['model']}: " + ", ".join(
            f"{c} [{row[f'{c} interval'][0]:.3f}, {row[f'{c} interval'][1]:.3f}]"
            for c in columns if f"{c} interval" in row))
    if args.save:
        settings = {"repeats": repeats, "steps": steps, "threads": args.threads,
                    "mlp_batch": args.mlp_batch, "cpu": args.cpu,
                    "targets": {"every=1": 1.10, "every=10": 1.02}}
        record.save(args.save, "monitor_overhead", settings, rows)


if __name__ == "__main__":
    main()
