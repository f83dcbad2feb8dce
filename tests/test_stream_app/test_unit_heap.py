"""settle_heap: the start-up heap frozen, the collector still on (in a child process: freezing is for good)."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import gc
from stream_app.runtime.heap import THRESHOLDS, settle_heap

class Cycle:
    pass

before = gc.get_freeze_count()
settle_heap()
assert gc.get_freeze_count() > before, gc.get_freeze_count()
assert gc.get_threshold() == THRESHOLDS and gc.isenabled()
a = Cycle(); a.me = a  # a cycle made after start-up is still collected
del a
assert gc.collect() >= 1
print("ok")
"""


def test_settle_heap_freezes_start_up_and_keeps_collecting_later_cycles():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
