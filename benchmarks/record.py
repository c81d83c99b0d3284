"""Save a benchmark's results as JSON, with what is needed to read them later: when, on what
machine, with which versions. ``make bench`` writes ``benchmarks/results/*.json``; the book's
performance appendix reads them.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

import torch


def machine() -> dict[str, object]:
    """The facts about this machine and environment that a timing depends on."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def save(path: str | Path, benchmark: str, settings: dict, rows: list[dict]) -> None:
    """Write ``{"benchmark", "when", "machine", "settings", "rows"}`` to ``path`` as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": benchmark,
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": settings,
        "rows": rows,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {path}")
