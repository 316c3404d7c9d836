"""What ``import worker`` offers: the producer API and the batches facade, loaded on first use."""

from __future__ import annotations

import subprocess
import sys


def test_batches_are_offered_by_worker_and_loaded_only_when_used() -> None:
    code = (
        "import sys, worker\n"
        "assert 'worker.api.batches' not in sys.modules\n"
        "assert {'Batches', 'create_batch'} <= set(worker.__all__)\n"
        "from worker import Batches, create_batch\n"
        "from worker.api import batches\n"
        "assert Batches is batches.Batches and create_batch is batches.create_batch\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
