"""RecSys-Lite: a recommendation engine for one CPU machine."""

import os

# implicit's ALS runs its own thread pool; a multi-threaded BLAS underneath it oversubscribes the
# cores and slows fitting several-fold. This must be set before numpy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

__version__ = "0.1.0"
