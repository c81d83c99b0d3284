"""How much does watching cost? Step time with a GradientMonitor attached divided by the same
step without it, on CPU, in one process.

Models: a 30-layer tanh MLP (width 256, batch 128) and a 2-layer LSTM (hidden 128, 50 time
steps, batch 32), each trained with SGD (forward, loss, backward, optimizer step). The monitor
records every step, or every 10th; it is given the optimizer, as ``gradtext.fit`` does, so
update-to-weight ratios are measured too (the last column leaves them out). Settings are
interleaved round-robin (so drift in the machine's load hits them alike; the order reverses every
other round), after a warm-up round, and the median over repeats is reported.

Run: ``python benchmarks/monitor_overhead.py`` (``--quick`` for a shorter run). Targets:
<= 1.10 recording every step, <= 1.02 every 10th.
"""

from __future__ import annotations

import argparse
import statistics
import time

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


def measure(build, repeats: int, steps: int) -> dict[str, float]:
    """Median step-time ratio against no monitor, for every=1 and every=10."""
    torch.manual_seed(0)
    model, inputs, targets = build()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    # One monitor per setting for the whole run, as in training; entered for its rounds only.
    monitors = {"none": None, "every=1": GradientMonitor(model, every=1, optimizer=optimizer),
                "every=10": GradientMonitor(model, every=10, optimizer=optimizer),
                "every=1, no optimizer": GradientMonitor(model, every=1)}
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
    base = statistics.median(times["none"])
    ratios = {name: statistics.median(times[name]) / base for name in monitors if name != "none"}
    return {"step_ms": base * 1e3, **ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--mlp-batch", type=int, default=128, help="the MLP's batch size")
    parser.add_argument("--save", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats, steps = (5, 20) if args.quick else (15, 20)
    print(f"monitor overhead: step time with / without, median of {repeats} x {steps} steps, "
          f"{args.threads} thread(s)")
    print(f"{'model':<22}{'step (ms)':>10}{'every=1':>10}{'every=10':>10}"
          f"{'every=1, no optimizer':>23}")
    mlp = ("MLP 30 x 256 (tanh)", lambda: _mlp(args.mlp_batch))
    if args.mlp_batch != 128:
        mlp = (f"MLP 30 x 256, batch {args.mlp_batch}", mlp[1])
    rows = []
    for label, build in [mlp, ("LSTM 2 x 128, T=50", _lstm)]:
        result = measure(build, repeats, steps)
        rows.append({"model": label, **result})
        print(f"{label:<22}{result['step_ms']:>10.2f}{result['every=1']:>10.3f}"
              f"{result['every=10']:>10.3f}{result['every=1, no optimizer']:>23.3f}")
    print("targets: every=1 <= 1.10, every=10 <= 1.02")
    if args.save:
        settings = {"repeats": repeats, "steps": steps, "threads": args.threads,
                    "mlp_batch": args.mlp_batch, "targets": {"every=1": 1.10, "every=10": 1.02}}
        record.save(args.save, "monitor_overhead", settings, rows)


if __name__ == "__main__":
    main()
