"""Online updates: the event inbox, the event bus, per-process online state and the worker."""
