"""RecSys-Lite: a recommendation engine for one CPU machine."""

import os

# implicit's ALS runs its own thread pool; a multi-threaded BLAS underneath it oversubscribes the
# cores and slows fitting several-fold. This must be set before numpy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# Torch's (and Faiss's) OpenMP workers spin while they wait for work. On a small box shared with
# a server or other jobs, a descheduled worker then stalls each of the many small operations of
# a batch: on 2 busy cores, fitting the two-tower test shop took 240 s with spinning workers and
# 20-27 s with passive ones. OpenMP reads it once, when the first OpenMP library loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
