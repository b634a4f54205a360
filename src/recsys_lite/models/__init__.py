"""Models behind one interface (``base.Recommender``) and one registry (``create_model``)."""

from recsys_lite.models.base import (
    MODEL_MODULES,
    MODEL_REGISTRY,
    History,
    Ranked,
    Recommender,
    TrainingData,
    create_model,
    model_class,
)

__all__ = [
    "MODEL_MODULES",
    "MODEL_REGISTRY",
    "History",
    "Ranked",
    "Recommender",
    "TrainingData",
    "create_model",
    "model_class",
]
