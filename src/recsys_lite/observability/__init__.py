"""Metrics, tracing and logs shared by the API, the worker and stream-ingest.

A bottom layer: it imports nothing of the project but ``config``. What each process exposes
and which functions get spans are said above it (``online/observe.py``, ``online/tracing.py``,
``serving/instrumentation.py``)."""
