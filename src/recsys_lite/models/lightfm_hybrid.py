"""LightFM hybrid matrix factorisation (Kula 2015): items are the sum of their feature embeddings.

Every item is described by an identity feature plus catalog features (category, brand, price
bucket and, optionally, title words). An item's embedding and bias are the weighted sums of its
features' embeddings and biases, so an item nobody has interacted with yet still gets a useful
representation from the features it shares with items people did interact with: its own
identity embedding is never updated and stays near its tiny random initial value.

After training, the representations are materialised as dense arrays and the LightFM object is
dropped: serving is ``user @ item.T + item_bias`` in numpy, and artifacts hold plain arrays.
The user bias is left out because it is constant across a user's items and cannot change a
ranking.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pydantic import Field

from recsys_lite.models.base import History, ModelParams, Recommender, TrainingData, register

TOKEN = re.compile(r"[^\W_]+")


class LightFMParams(ModelParams):
    loss: Literal["warp", "bpr"] = "warp"
    no_components: int = Field(64, ge=1, le=512)
    learning_rate: float = Field(0.05, gt=0)
    item_alpha: float = Field(0.0, ge=0, description="L2 penalty on item feature embeddings")
    user_alpha: float = Field(0.0, ge=0, description="L2 penalty on user feature embeddings")
    epochs: int = Field(30, ge=1, le=1000)
    max_sampled: int = Field(10, ge=1, le=1000, description="WARP negatives tried per positive")
    random_state: int = 42
    price_buckets: int = Field(5, ge=0, le=100, description="price quantile buckets; 0: none")
    text_features: bool = Field(False, description="title words as item features")
    min_token_items: int = Field(2, ge=1, description="a title word must occur in this many items")
    user_features: Literal["identity", "categories"] = Field(
        "identity",
        description="identity only, or also the categories the user interacted with",
    )


@dataclass(frozen=True)
class FeatureMatrix:
    """Rows are entities, columns named features; each row sums to 1."""

    matrix: sp.csr_matrix
    names: np.ndarray


def _normalise_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    # LightFM sums feature embeddings with these weights; unnormalised rows would give items
    # with many features larger norms (and so higher scores) for no reason but verbosity.
    totals = np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()
    scale = sp.diags(1.0 / np.maximum(totals, 1e-12))
    return sp.csr_matrix(scale @ matrix, dtype=np.float32)


def _string_column(catalog: pa.Table, name: str) -> list[str | None]:
    if name not in catalog.column_names:
        return [None] * catalog.num_rows
    values = pc.cast(catalog.column(name), pa.string()).to_pylist()
    return [v.strip() or None if isinstance(v, str) else None for v in values]


def _price_buckets(catalog: pa.Table, buckets: int) -> tuple[np.ndarray, list[str]]:
    """Quantile bucket of each item's price (-1 where unknown) and the bucket names."""
    if buckets == 0 or "price" not in catalog.column_names:
        return np.full(catalog.num_rows, -1), []
    prices = pc.cast(catalog.column("price"), pa.float64()).to_numpy(zero_copy_only=False)
    known = np.isfinite(prices)
    if not known.any():
        return np.full(catalog.num_rows, -1), []
    # Inner quantile edges, deduplicated: a catalog with a few distinct prices gets fewer buckets.
    edges = np.unique(np.quantile(prices[known], np.linspace(0, 1, buckets + 1)[1:-1]))
    bucket = np.full(catalog.num_rows, -1)
    bucket[known] = np.searchsorted(edges, prices[known], side="right")
    return bucket, [f"price:{b}" for b in range(len(edges) + 1)]


def item_features(
    catalog: pa.Table | None,
    n_items: int,
    *,
    price_buckets: int = 5,
    text_features: bool = False,
    min_token_items: int = 2,
) -> FeatureMatrix:
    """Identity, category, brand, price bucket and title-word features of every item.

    Columns: the ``n_items`` identity features first (so column i is item i), then the
    named catalog features. Each group (category, brand, price, title) gets the same total
    weight as the identity before rows are normalised, so a long title cannot drown the rest.
    """
    names = [f"item:{i}" for i in range(n_items)]
    rows: list[np.ndarray] = [np.arange(n_items)]
    cols: list[np.ndarray] = [np.arange(n_items)]
    weights: list[np.ndarray] = [np.ones(n_items)]

    def add(item_rows: list[int], features: list[str], item_weights: list[float]) -> None:
        columns: dict[str, int] = {}
        ids = [columns.setdefault(f, len(names) + len(columns)) for f in features]
        names.extend(columns)
        rows.append(np.asarray(item_rows, dtype=np.int64))
        cols.append(np.asarray(ids, dtype=np.int64))
        weights.append(np.asarray(item_weights, dtype=np.float64))

    if catalog is not None:
        if catalog.num_rows != n_items:
            raise ValueError(f"catalog has {catalog.num_rows} rows for {n_items} items")
        for column in ("category", "brand"):
            values = _string_column(catalog, column)
            present = [i for i, v in enumerate(values) if v is not None]
            add(present, [f"{column}:{values[i]}" for i in present], [1.0] * len(present))
        bucket, bucket_names = _price_buckets(catalog, price_buckets)
        present = np.flatnonzero(bucket >= 0).tolist()
        add(present, [bucket_names[bucket[i]] for i in present], [1.0] * len(present))
        if text_features:
            tokens = [
                sorted(set(TOKEN.findall(title.lower()))) if title else []
                for title in _string_column(catalog, "title")
            ]
            frequency = Counter(t for item_tokens in tokens for t in item_tokens)
            item_rows, features, item_weights = [], [], []
            for i, item_tokens in enumerate(tokens):
                kept = [t for t in item_tokens if frequency[t] >= min_token_items]
                item_rows.extend([i] * len(kept))
                features.extend(f"title:{t}" for t in kept)
                item_weights.extend([1.0 / len(kept)] * len(kept))
            add(item_rows, features, item_weights)

    matrix = sp.csr_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_items, len(names)),
        dtype=np.float32,
    )
    return FeatureMatrix(_normalise_rows(matrix), np.asarray(names))


def category_codes(catalog: pa.Table | None, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Category index of each item (-1 where unknown) and the category names."""
    if catalog is None:
        return np.full(n_items, -1), np.array([], dtype=str)
    values = _string_column(catalog, "category")
    names = sorted({v for v in values if v is not None})
    index = {name: n for n, name in enumerate(names)}
    codes = np.array([index[v] if v is not None else -1 for v in values], dtype=np.int64)
    return codes, np.asarray(names, dtype=str)


def user_category_features(
    users: np.ndarray, items: np.ndarray, weights: np.ndarray, codes: np.ndarray, n_users: int
) -> sp.csr_matrix:
    """Each user's interaction weight per category, rows summing to 1 (empty rows stay empty)."""
    n_categories = int(codes.max()) + 1 if len(codes) else 0
    known = codes[items] >= 0
    matrix = sp.csr_matrix(
        (weights[known], (users[known], codes[items[known]])),
        shape=(n_users, n_categories),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    return _normalise_rows(matrix)


@register("lightfm")
class LightFMModel(Recommender):
    params_type = LightFMParams
    params: LightFMParams
    include_catalog_items = True

    user_embeddings: np.ndarray
    item_embeddings: np.ndarray
    item_biases: np.ndarray
    item_feature_names: np.ndarray

    def _fit(self, data: TrainingData, show_progress: bool) -> None:
        from lightfm import LightFM

        p = self.params
        n_users, n_items = data.interactions.shape
        features = item_features(
            data.catalog,
            n_items,
            price_buckets=p.price_buckets,
            text_features=p.text_features,
            min_token_items=p.min_token_items,
        )
        self.item_feature_names = features.names
        interactions, weights = self._training_matrices(data.interactions.matrix)
        model = LightFM(
            no_components=p.no_components,
            loss=p.loss,
            learning_rate=p.learning_rate,
            item_alpha=p.item_alpha,
            user_alpha=p.user_alpha,
            max_sampled=p.max_sampled,
            random_state=p.random_state,
        )
        model.fit(
            interactions,
            user_features=None,
            item_features=features.matrix,
            sample_weight=weights,
            epochs=p.epochs,
            num_threads=self.threads or 2,
            verbose=show_progress,
        )
        item_biases, item_embeddings = model.get_item_representations(features.matrix)
        _, user_embeddings = model.get_user_representations()
        self.item_embeddings = np.ascontiguousarray(item_embeddings, dtype=np.float32)
        self.item_biases = np.ascontiguousarray(item_biases, dtype=np.float32)
        self.user_embeddings = np.ascontiguousarray(user_embeddings, dtype=np.float32)

    @staticmethod
    def _training_matrices(matrix: sp.csr_matrix) -> tuple[sp.coo_matrix, sp.coo_matrix]:
        positives = matrix.copy()
        positives.eliminate_zeros()
        coo = positives.tocoo()
        binary = sp.coo_matrix(
            (np.ones_like(coo.data), (coo.row, coo.col)), shape=coo.shape, dtype=np.float32
        )
        weights = np.log1p(coo.data)
        weights = weights / weights.mean()
        sample = sp.coo_matrix((weights.astype(np.float32), (coo.row, coo.col)), shape=coo.shape)
        return binary, sample

    # ----- scoring -----------------------------------------------------------------------------

    def score_users(self, users: np.ndarray) -> np.ndarray:
        scores: np.ndarray = self.user_embeddings[users] @ self.item_embeddings.T
        scores += self.item_biases
        return scores

    def score_history(self, history: History) -> np.ndarray | None:
        if not len(history):
            return None
        items, inverse = np.unique(history.items, return_inverse=True)
        weights = np.bincount(inverse, weights=history.weights).astype(np.float32)
        user = (self.item_embeddings[items] * weights[:, None]).sum(axis=0) / weights.sum()
        scores: np.ndarray = self.item_embeddings @ user + self.item_biases
        return scores

    def item_vectors(self) -> np.ndarray:
        return np.ascontiguousarray(
            np.hstack([self.item_embeddings, self.item_biases[:, None]]), dtype=np.float32
        )

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        vectors = self.user_embeddings[users]
        return np.hstack([vectors, np.ones((len(vectors), 1), dtype=np.float32)])

    def similarity_vectors(self) -> np.ndarray:
        # The bias is popularity, not likeness: cosine on the embeddings alone.
        norms = np.linalg.norm(self.item_embeddings, axis=1, keepdims=True)
        return np.asarray(self.item_embeddings / np.maximum(norms, 1e-12), dtype=np.float32)

    # ----- persistence -------------------------------------------------------------------------

    def _model_state(self) -> dict[str, np.ndarray]:
        return {
            "user_embeddings": self.user_embeddings,
            "item_embeddings": self.item_embeddings,
            "item_biases": self.item_biases,
        }

    def _load_model_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_embeddings = arrays["user_embeddings"]
        self.item_embeddings = arrays["item_embeddings"]
        self.item_biases = arrays["item_biases"]
