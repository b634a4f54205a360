"""Loading torch with OpenMP workers that sleep instead of spinning while they wait.

Spinning workers hurt on a small box shared with a server or other jobs: a descheduled worker
stalls each of the many small operations of a batch (on 2 busy cores, fitting the two-tower
test shop took 240 s with spinning workers and 20-27 s with passive ones). The setting is read
once, when an OpenMP runtime loads, and torch, implicit and Faiss each bundle their own
runtime; implicit's ALS, on the contrary, fits about 25% slower with passive workers (1M-event
benchmark). So the environment is changed only while torch loads, then put back.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

WAIT_POLICY = "OMP_WAIT_POLICY"


def load_torch() -> ModuleType:
    """``torch``, imported here first if nobody has yet; a user's OMP_WAIT_POLICY wins."""
    if "torch" not in sys.modules:
        before = os.environ.get(WAIT_POLICY)
        os.environ.setdefault(WAIT_POLICY, "PASSIVE")
        try:
            import torch  # noqa: F401
        finally:
            if before is None:
                os.environ.pop(WAIT_POLICY, None)
    return sys.modules["torch"]
