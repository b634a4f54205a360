"""Models behind one interface (``base.Recommender``) and one registry (``registry``)."""

from recsys_lite.models.base import Recommender
from recsys_lite.models.registry import MODEL_REGISTRY, MODELS, create_model, model_class
from recsys_lite.models.types import History, Ranked, TrainingData

__all__ = [
    "MODELS",
    "MODEL_REGISTRY",
    "History",
    "Ranked",
    "Recommender",
    "TrainingData",
    "create_model",
    "model_class",
]
