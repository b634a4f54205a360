"""Online updates: the event inbox, the event bus, per-process online state, the not-worse
gate and the worker's health (the worker itself is ``jobs/worker.py``)."""
