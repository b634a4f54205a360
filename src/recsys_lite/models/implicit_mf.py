"""Matrix factorisation from ``implicit``: ALS (Hu, Koren & Volinsky 2008) and BPR (Rendle 2009)."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import threadpool_limits

from recsys_lite.models.base import Recommender
from recsys_lite.models.params import ModelParams
from recsys_lite.models.registry import register
from recsys_lite.models.types import ForgottenEvents, History, TrainingData

FORGET_EPOCHS = 3  # BPR epochs (at most its training epochs) that relearn a forgotten user's items


class ALSParams(ModelParams):
    factors: int = Field(64, ge=1, le=1024)
    regularization: float = Field(0.05, ge=0)
    alpha: float = Field(2.0, gt=0, description="confidence = 1 + alpha * weight")
    iterations: int = Field(15, ge=1, le=500)
    random_state: int = 42


class BPRParams(ModelParams):
    factors: int = Field(64, ge=1, le=1024)
    learning_rate: float = Field(0.01, gt=0)
    regularization: float = Field(0.01, ge=0)
    iterations: int = Field(100, ge=1, le=2000)
    random_state: int = 42


class FactorModel(Recommender):
    """A model whose score is the inner product of a user and an item factor vector."""

    user_factors: np.ndarray
    item_factors: np.ndarray
    supports_new_items = True
    _gram: np.ndarray | None = None  # Y'Y for fold-in, cached until the factors change

    def _fit(self, data: TrainingData, show_progress: bool) -> None:
        # implicit has its own thread pool; BLAS threads underneath it only contend with it
        # (faiss ships an OpenMP OpenBLAS that ignores OPENBLAS_NUM_THREADS, hence the limit).
        with threadpool_limits(limits=1, user_api="blas"):
            model = self._make_implicit_model()

            # ALS reports (iteration, seconds, loss), BPR (iteration, seconds, correct, skipped)
            def after_iteration(iteration: int, *_: Any) -> None:
                self._take_factors(model)
                self.end_epoch(iteration)

            callback = after_iteration if self.epoch_callback is not None else None
            model.fit(data.interactions.matrix, show_progress=show_progress, callback=callback)
        self._take_factors(model)

    def _take_factors(self, model: Any) -> None:
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._gram = None

    @abstractmethod
    def _make_implicit_model(self) -> Any: ...

    def score_users(self, users: np.ndarray) -> np.ndarray:
        scores: np.ndarray = self.user_factors[users] @ self.item_factors.T
        return scores

    def item_vectors(self) -> np.ndarray:
        return self.item_factors

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_factors[users])

    def _add_items(self, count: int, vectors: np.ndarray | None) -> None:
        if vectors is None:  # no estimate: the item scores zero until it is retrained
            vectors = np.zeros((count, self.item_factors.shape[1]), dtype=np.float32)
        self.item_factors = np.ascontiguousarray(np.vstack([self.item_factors, vectors]))
        self._gram = None

    def _forget_users(
        self, keep: np.ndarray, removed: sp.csr_matrix, events: ForgottenEvents
    ) -> None:
        self.user_factors = np.ascontiguousarray(self.user_factors[keep])
        self._gram = None
        if not events.relearn:
            return
        # implicit has its own thread pool (see _fit)
        with threadpool_limits(limits=1, user_api="blas"):
            self._refit_items(np.unique(removed.indices))
        self._gram = None

    @abstractmethod
    def _refit_items(self, touched: np.ndarray) -> None:
        """Learn the item side again from the remaining users, warm from the current factors."""

    def _model_state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _load_model_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors = arrays["user_factors"]
        self.item_factors = arrays["item_factors"]
        self._gram = None


def _aggregate(history: History) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items of a history and the summed weight of each, like a matrix row."""
    items, inverse = np.unique(history.items, return_inverse=True)
    return items, np.bincount(inverse, weights=history.weights).astype(np.float32)


@register("als")
class ALSModel(FactorModel):
    params_type = ALSParams
    params: ALSParams

    def history_vector(self, history: History) -> np.ndarray | None:
        """Fold the user in: the least-squares user factor ALS itself would compute.

        Same objective as implicit's ``recalculate_user``: confidence c = alpha * weight,
        A = Y'Y + sum (c - 1) y y' + lambda I, b = sum c y, u = A^-1 b.
        """
        if not len(history):
            return None
        items, weights = _aggregate(history)
        factors = self.item_factors
        if self._gram is None:
            self._gram = factors.T @ factors
        confidence = self.params.alpha * weights
        observed = factors[items]
        a = self._gram + (observed.T * (confidence - 1.0)) @ observed
        a += self.params.regularization * np.eye(factors.shape[1], dtype=np.float32)
        user: np.ndarray = np.linalg.solve(a, observed.T @ confidence).astype(np.float32)
        return user

    def _refit_items(self, touched: np.ndarray) -> None:
        """One least-squares sweep over every item with the remaining users' factors fixed:
        half an ALS iteration, the same solver as training. The removed users' rows are gone
        from both the confidences and the users' Gram matrix X'X every item solve starts from,
        so each item factor becomes what ALS computes from the remaining users alone."""
        model = self._make_implicit_model()
        confidence = (self.params.alpha * self.user_items).T.tocsr().astype(np.float32)
        item_factors = np.array(self.item_factors, dtype=np.float32)
        model.solver(
            confidence, item_factors, self.user_factors, self.params.regularization,
            num_threads=self.threads,
        )  # fmt: skip
        self.item_factors = item_factors

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

    def history_vector(self, history: History) -> np.ndarray | None:
        """BPR has no closed-form fold-in: use the weighted mean of the history's item factors.

        implicit keeps the item bias in the last column and a constant 1 in the users' last
        column, so the folded-in user gets that 1 too.
        """
        if not len(history):
            return None
        items, weights = _aggregate(history)
        user: np.ndarray = (self.item_factors[items] * weights[:, None]).sum(axis=0) / weights.sum()
        user[-1] = 1.0
        return user

    def _refit_items(self, touched: np.ndarray) -> None:
        """The items the users had start again from a fresh random start and relearn, with
        every other item and user warm, over FORGET_EPOCHS epochs (about a second at 1M
        events; a tenth of the default 100 took 3.5 s).

        BPR has no closed-form item solve: an item's factor is the sum of many small steps,
        the removed users' among them, and further epochs from where it stands barely move
        it (on the test shop, a removed shopper's items kept most of the similarity they had
        to each other). Restarting just those items removes most of it while the rest of the
        model, and so other shoppers' recommendations, stays as trained.
        """
        rng = np.random.default_rng(self.params.random_state)
        item_factors = np.array(self.item_factors, dtype=np.float32)
        width = item_factors.shape[1]
        # small values around 0 as at the start of training; the bias column (last) at 0
        item_factors[touched] = (rng.random((len(touched), width)) - 0.5) / (width - 1)
        item_factors[touched, -1] = 0.0
        model = self._make_implicit_model()
        model.iterations = min(FORGET_EPOCHS, self.params.iterations)
        model.user_factors = np.array(self.user_factors, dtype=np.float32)
        model.item_factors = item_factors
        model.fit(self.user_items, show_progress=False)
        self._take_factors(model)

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
