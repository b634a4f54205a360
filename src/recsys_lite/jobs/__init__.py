"""Work in processes of its own: the training jobs the admin API starts (``training.py``)
and the background worker (``worker.py``) that folds events in, retrains and applies erasure
and retention."""
