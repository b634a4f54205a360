"""Work the admin API starts in its own process (training jobs)."""
