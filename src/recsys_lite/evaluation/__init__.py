"""Offline evaluation: time-aware splits and full-ranking metrics."""
