"""The scale benchmark's memory and CPU figures count a stage's children (Spark's JVM is one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from _scale_stages import TreeRss

# touches every page of N MiB, so they are resident, then holds them for a second
HOLD = (
    "import sys, time; b = bytearray(int(sys.argv[1]) * 2**20)\n"
    "for i in range(0, len(b), 4096): b[i] = 1\n"
    "time.sleep(1.5)"
)
PARENT = (
    "import subprocess, sys\n"
    f"child = subprocess.Popen([sys.executable, '-c', {HOLD!r}, '200'])\n"
    f"exec({HOLD!r}.replace('int(sys.argv[1])', '150'))\n"
    "child.wait()"
)


def test_tree_peak_sums_a_process_and_its_children() -> None:
    process = subprocess.Popen([sys.executable, "-c", PARENT])
    with TreeRss(process.pid, interval=0.05) as tree:
        assert process.wait(timeout=30) == 0
    # both hold their pages at once for over a second: the sum shows, not the larger one
    assert tree.peak_mb >= 340, tree.peak_mb
    assert tree.peak_mb < 600, tree.peak_mb
    assert tree.cpu_seconds > 0  # both processes' CPU, read while they ran
