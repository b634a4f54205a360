"""EASE: an item-item linear autoencoder with a closed-form solution (Steck 2019).

Minimising ||X - XB||^2 + l2 ||B||^2 subject to diag(B) = 0 gives, with P = (X'X + l2 I)^-1,
B = -P / diag(P) column-wise and a zero diagonal. A user's scores are their matrix row times B.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from scipy.linalg import blas, lapack
from threadpoolctl import threadpool_limits

from recsys_lite.errors import InvalidInputError
from recsys_lite.models.base import Recommender
from recsys_lite.models.forgetting import inverse_downdate
from recsys_lite.models.params import ModelParams
from recsys_lite.models.registry import register
from recsys_lite.models.types import ForgottenEvents, History, TrainingData

_MIRROR_BLOCK = 2048  # rows mirrored at a time, so symmetrising never copies the whole matrix


class EASEParams(ModelParams):
    l2: float = Field(200.0, gt=0, description="ridge penalty on the item-item weights")
    binary: bool = Field(
        True, description="learn from whether a user touched an item, not from event weights"
    )
    max_items: int = Field(
        30_000,
        ge=1,
        description="largest catalog accepted: memory and time grow as items^2 and items^3",
    )


def gram_matrix(matrix: sp.csr_matrix) -> np.ndarray:
    """X'X as a dense C-ordered float32 array."""
    gram: np.ndarray = np.ascontiguousarray((matrix.T @ matrix).toarray(), dtype=np.float32)
    return gram


def spd_inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite float32 matrix; ``matrix`` is overwritten.

    Cholesky, triangular inverse, then U^-1 U^-T as a symmetric rank-n update: about 1.7 n^3
    flops, nearly all in BLAS-3 kernels. At 8k items np.linalg.inv (LU plus n solves) took 2.7x
    the CPU time and LAPACK's one-call potri 1.4x, with the OpenBLAS numpy and scipy ship.
    Peak memory is two n x n arrays.
    """
    n = matrix.shape[0]
    # The transpose of a C-ordered symmetric matrix is the same matrix in Fortran order, which
    # lets LAPACK factorise it in place instead of copying 1.6 GB at 20k items.
    upper, info = lapack.spotrf(matrix.T, lower=False, overwrite_a=True, clean=True)
    if info != 0:
        raise InvalidInputError(
            "EASE: the item Gram matrix is not positive definite in float32; increase l2"
        )
    inverse_upper, info = lapack.strtri(upper, lower=False, overwrite_c=True)
    if info != 0:
        raise InvalidInputError("EASE: the Cholesky factor is singular; increase l2")
    del upper
    result = blas.ssyrk(1.0, inverse_upper)  # only the upper triangle (Fortran order) is set
    del inverse_upper
    inverse: np.ndarray = result.T  # C-ordered view whose lower triangle holds the inverse
    for start in range(0, n, _MIRROR_BLOCK):
        stop = min(start + _MIRROR_BLOCK, n)
        inverse[start:stop, stop:] = inverse[stop:, start:stop].T
        block = inverse[start:stop, start:stop]
        upper_part = np.triu_indices(stop - start, 1)
        block[upper_part] = block.T[upper_part]
    return inverse


def ease_weights(gram: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """B from a dense X'X, which is overwritten: B = -P / diag(P), diag(B) = 0; and diag(P).

    B and diag(P) together are P itself (P = -B diag(P) off the diagonal), which is what
    forgetting a user needs, without keeping a second n x n matrix.
    """
    diagonal = np.diag_indices(gram.shape[0])
    gram[diagonal] += np.float32(l2)
    weights = spd_inverse(gram)
    del gram
    pivots = weights[diagonal].copy()
    weights /= -pivots[None, :]
    weights[diagonal] = 0.0
    return weights, pivots


def _weights_from_inverse(inverse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """B and diag(P) from P, which is overwritten (it becomes B)."""
    diagonal = np.diag_indices(len(inverse))
    pivots = inverse[diagonal].copy()
    inverse /= -pivots[None, :]
    inverse[diagonal] = 0.0
    return inverse, pivots


@register("ease")
class EASEModel(Recommender):
    """Dense item-item weights: exact, strong on small and mid-size catalogs, no embeddings.

    Without item vectors there is no Faiss index and the base class cannot answer similar items;
    ``score_similar`` gives the EASE answer (the scores of a user who has only that item).
    """

    params_type = EASEParams
    params: EASEParams
    weights: np.ndarray
    pivots: np.ndarray | None = None  # diag(P); None in artifacts written before it was kept

    def _fit(self, data: TrainingData, show_progress: bool) -> None:
        n_items = len(self.item_map)
        if n_items > self.params.max_items:
            gigabytes = 2 * 4 * n_items**2 / 1e9
            raise InvalidInputError(
                f"EASE keeps a dense item x item matrix: {n_items:,} items need about"
                f" {gigabytes:.1f} GB while training and time growing as items^3; the limit is"
                f" max_items={self.params.max_items:,}. Use als or item2vec for this catalog,"
                " or raise max_items if the machine has the memory and time."
            )
        # threads > 0 is the operator's CPU budget (settings.threads); 0 leaves BLAS its default.
        limit = (
            threadpool_limits(limits=self.threads, user_api="blas")
            if self.threads > 0
            else nullcontext()
        )
        with limit:
            # No local name for the Gram matrix: ease_weights can then free its buffer as soon
            # as the inverse exists, which matters at 1.6 GB per copy.
            self.weights, self.pivots = ease_weights(
                gram_matrix(self._input_rows(data.interactions.matrix)), self.params.l2
            )

    def _input_rows(self, rows: sp.csr_matrix) -> sp.csr_matrix:
        rows = sp.csr_matrix(rows, dtype=np.float32, copy=True)
        rows.eliminate_zeros()
        if self.params.binary:
            rows.data[:] = 1.0
        return rows

    def score_users(self, users: np.ndarray) -> np.ndarray:
        rows = self._input_rows(self.user_items[users])
        scores: np.ndarray = np.asarray(rows @ self.weights, dtype=np.float32)
        return scores

    def score_history(self, history: History) -> np.ndarray | None:
        """The history as a matrix row times B; equals ``score_users`` on the user's own
        events when the weighting has no bm25/tfidf scheme (those need corpus statistics)."""
        if not len(history):
            return None
        items, inverse = np.unique(history.items, return_inverse=True)
        totals = np.bincount(inverse, weights=history.weights).astype(np.float32)
        keep = totals != 0
        items, totals = items[keep], totals[keep]
        if self.params.binary:
            totals = np.ones_like(totals)
        scores: np.ndarray = totals @ self.weights[items]
        return scores

    def score_similar(self, item: int) -> np.ndarray:
        """Item-to-item scores: what EASE recommends to someone who has only ``item``."""
        scores: np.ndarray = np.array(self.weights[item], dtype=np.float32)
        return scores

    def _forget_users(
        self, keep: np.ndarray, removed: sp.csr_matrix, events: ForgottenEvents
    ) -> None:
        """Exactly the weights a refit without the users gives: their rows leave the Gram
        matrix, so P = (X'X + l2 I)^-1 gets a rank-r Woodbury downdate (forgetting.py)."""
        rows = self._input_rows(removed)
        if not rows.nnz or not events.relearn:
            return
        if self.pivots is None:  # an older artifact: rebuild P from the kept interactions
            gram = gram_matrix(self._input_rows(self.user_items))
            gram[np.diag_indices(len(gram))] += np.float32(self.params.l2)
            self.weights, self.pivots = _weights_from_inverse(spd_inverse(gram))
            return
        inverse = self.weights * -self.pivots[None, :]
        inverse[np.diag_indices(len(inverse))] = self.pivots
        self.weights, self.pivots = _weights_from_inverse(inverse_downdate(inverse, rows))

    def _model_state(self) -> dict[str, np.ndarray]:
        state = {"ease_weights": self.weights}
        if self.pivots is not None:
            state["ease_pivots"] = self.pivots
        return state

    def _load_model_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.weights = np.ascontiguousarray(arrays["ease_weights"], dtype=np.float32)
        self.pivots = arrays.get("ease_pivots")
