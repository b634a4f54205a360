"""Models behind one interface (``base.Recommender``) and one registry (``create_model``)."""

from recsys_lite.models import implicit_mf, popular
from recsys_lite.models.base import MODEL_REGISTRY, Ranked, Recommender, create_model

__all__ = ["MODEL_REGISTRY", "Ranked", "Recommender", "create_model", "implicit_mf", "popular"]
