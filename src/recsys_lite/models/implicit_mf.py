"""Matrix factorisation from ``implicit``: ALS (Hu, Koren & Volinsky 2008) and BPR (Rendle 2009)."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field
from threadpoolctl import threadpool_limits

from recsys_lite.data.interactions import Interactions
from recsys_lite.models.base import ModelParams, Recommender, register


class ALSParams(ModelParams):
    factors: int = Field(64, ge=1, le=1024)
    regularization: float = Field(0.05, ge=0)
    alpha: float = Field(2.0, gt=0, description="confidence = 1 + alpha * weight")
    iterations: int = Field(15, ge=1, le=500)
    random_state: int = 42


class BPRParams(ModelParams):
    factors: int = Field(64, ge=1, le=1024)
    learning_rate: float = Field(0.05, gt=0)
    regularization: float = Field(0.01, ge=0)
    iterations: int = Field(100, ge=1, le=2000)
    random_state: int = 42


class FactorModel(Recommender):
    """A model whose score is the inner product of a user and an item factor vector."""

    user_factors: np.ndarray
    item_factors: np.ndarray

    def _fit(self, interactions: Interactions, events: pa.Table, show_progress: bool) -> None:
        # implicit has its own thread pool; BLAS threads underneath it only contend with it
        # (faiss ships an OpenMP OpenBLAS that ignores OPENBLAS_NUM_THREADS, hence the limit).
        with threadpool_limits(limits=1, user_api="blas"):
            model = self._make_implicit_model()
            model.fit(interactions.matrix, show_progress=show_progress)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    @abstractmethod
    def _make_implicit_model(self) -> Any: ...

    def score_users(self, users: np.ndarray) -> np.ndarray:
        scores: np.ndarray = self.user_factors[users] @ self.item_factors.T
        return scores

    def item_vectors(self) -> np.ndarray:
        return self.item_factors

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_factors[users])

    def _model_state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _load_model_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors = arrays["user_factors"]
        self.item_factors = arrays["item_factors"]


@register("als")
class ALSModel(FactorModel):
    params_type = ALSParams
    params: ALSParams

    def _make_implicit_model(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        p = self.params
        return AlternatingLeastSquares(
            factors=p.factors,
            regularization=p.regularization,
            alpha=p.alpha,
            iterations=p.iterations,
            random_state=p.random_state,
            num_threads=self.threads,
        )


@register("bpr")
class BPRModel(FactorModel):
    params_type = BPRParams
    params: BPRParams

    def _make_implicit_model(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        p = self.params
        return BayesianPersonalizedRanking(
            factors=p.factors,
            learning_rate=p.learning_rate,
            regularization=p.regularization,
            iterations=p.iterations,
            random_state=p.random_state,
            num_threads=self.threads,
        )
