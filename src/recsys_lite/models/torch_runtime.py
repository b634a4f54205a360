"""Loading torch with OpenMP workers that sleep instead of spinning while they wait.

Spinning workers hurt on a small box shared with a server or other jobs: a descheduled worker
stalls each of the many small operations of a batch (on 2 busy cores, fitting the two-tower
test shop took 240 s with spinning workers and 20-27 s with passive ones). The setting is read
once, when an OpenMP runtime loads, and torch, implicit and Faiss each bundle their own
runtime; implicit's ALS, on the contrary, fits about 25% slower with passive workers (1M-event
benchmark). So the environment is changed only while torch loads, then put back.

The torch models also share how a block of their work sets torch's threads and random state.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for the block, then put back."""
    load_torch()
    import torch

    previous = torch.get_num_threads()
    if n != previous:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != previous:
            torch.set_num_threads(previous)


@contextmanager
def seeded_torch(threads: int, seed: int) -> Iterator[None]:
    """A training block on ``threads`` threads with torch's generator seeded, so that training
    repeats itself; the caller's threads and random state are put back afterwards."""
    load_torch()
    import torch

    with torch_threads(threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
