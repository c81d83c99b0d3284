"""How long does each chapter take to run? Wall-clock seconds to execute each notebook of the
book from a fresh kernel, as a reader running it top to bottom would wait.

Each notebook runs with ``nbclient`` in its own new kernel, one at a time, from ``book/`` (as
Jupyter Book runs it); the time includes the kernel's start and the imports. The project's
standard is at most 60 s per notebook on a 2-core CPU; the book's introduction quotes the slowest
one from this record.

Run: ``python benchmarks/notebook_times.py --save benchmarks/results/notebook_times.json`` on a
quiet machine (``make bench`` does). ``--repeats 3`` keeps each notebook's fastest run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nbformat
import record
from nbclient import NotebookClient

BOOK = Path(__file__).resolve().parent.parent / "book"
LIMIT_SECONDS = 60.0  # the project's standard for one notebook on a 2-core CPU


def run_seconds(path: Path) -> float:
    """Seconds to execute the notebook at ``path`` top to bottom in a new kernel."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs per notebook (fastest kept)")
    parser.add_argument("--save", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    chapters = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
    rows = []
    print(f"{'notebook':<28}{'seconds':>9}")
    for path in chapters:
        seconds = min(run_seconds(path) for _ in range(args.repeats))
        rows.append({"notebook": path.name, "seconds": seconds})
        flag = "" if seconds <= LIMIT_SECONDS else f"  over the {LIMIT_SECONDS:.0f} s limit"
        print(f"{path.name:<28}{seconds:>9.1f}{flag}")
    print(f"slowest: {max(row['seconds'] for row in rows):.1f} s")
    if args.save:
        settings = {"repeats": args.repeats, "limit_seconds": LIMIT_SECONDS}
        record.save(args.save, "notebook_times", settings, rows)


if __name__ == "__main__":
    main()
