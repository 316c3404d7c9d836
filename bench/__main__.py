"""Run every benchmark in order: ``python -m bench`` (or ``make bench``).

A benchmark is a module with a ``main() -> None`` that prints its figures; add new ones to
``BENCHMARKS``.
"""

from __future__ import annotations

import importlib
import time

BENCHMARKS = [
    "bench.simulator_throughput",
    "bench.client_vs_sdk",
    "bench.pipeline_throughput",
    "bench.batch_end_to_end",  # a million recipients at its defaults: long
    "bench.finance_ledger",  # ten million attempt rows at its defaults: the longest
]


def run_all() -> None:
    for name in BENCHMARKS:
        print(f"== {name}")
        started = time.perf_counter()
        importlib.import_module(name).main()
        print(f"== {name} done in {time.perf_counter() - started:.1f} s\n")


if __name__ == "__main__":
    run_all()
