"""Hyperparameter search (Optuna TPE) on a validation split carved from training data only."""
