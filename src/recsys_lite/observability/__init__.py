"""Metrics, tracing and logs shared by the API, the worker and stream-ingest."""
