"""Two-tower retrieval: Covington et al. 2016, trained as in Yi et al. 2019 (RecSys).

A user tower (user id + recency-weighted pooling of the items the user touched before) and an
item tower (item id + catalog features) each end in an L2-normalised vector; their inner product
is the score, so Faiss can retrieve with it directly. Training uses every event as one example
(the user's state just before it, the item it was about) with the other items of the batch as
negatives and the logQ correction for how often popular items appear among those negatives.

Torch is needed only to train. Serving reads precomputed vectors, and folding in a new user runs
the user tower in numpy, so a server holding this model never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pydantic import Field
from rich.progress import Progress

from recsys_lite.models.base import (
    HISTORY_LENGTH,
    History,
    ModelParams,
    Recommender,
    TrainingData,
    register,
)

if TYPE_CHECKING:
    import torch

NET_PREFIX = "net."
FEATURES = ("category", "brand", "price")


class TwoTowerParams(ModelParams):
    embedding_dim: int = Field(64, ge=2, le=1024, description="size of each id/feature embedding")
    hidden_dim: int = Field(128, ge=1, le=4096, description="hidden layer of each tower's MLP")
    output_dim: int = Field(64, ge=2, le=1024, description="size of user and item vectors")
    history_length: int = Field(
        20, ge=1, le=HISTORY_LENGTH, description="most recent events the user tower pools"
    )
    recency_half_life: float = Field(
        10.0, gt=0, description="in events: an event counts half as much this many events later"
    )
    temperature: float = Field(0.05, gt=0, le=10, description="softmax temperature on cosines")
    logq_correction: bool = Field(
        True, description="subtract log(sampling probability) from in-batch logits"
    )
    user_id_dropout: float = Field(
        0.5, ge=0, le=1, description="share of examples trained as an unknown user"
    )
    item_id_dropout: float = Field(
        0.25, ge=0, le=1, description="share of target items trained from features alone"
    )
    price_buckets: int = Field(10, ge=1, le=1000, description="quantile buckets of price")
    epochs: int = Field(5, ge=1, le=1000)
    batch_size: int = Field(1024, ge=2, le=65_536)
    learning_rate: float = Field(3e-3, gt=0)
    seed: int = 42


@dataclass(frozen=True)
class ItemFeatures:
    """Catalog features as embedding codes per item; code 0 means the catalog is silent."""

    category: np.ndarray
    brand: np.ndarray
    price: np.ndarray

    def sizes(self, price_buckets: int) -> dict[str, int]:
        return {
            "category": int(self.category.max(initial=0)) + 1,
            "brand": int(self.brand.max(initial=0)) + 1,
            "price": price_buckets + 1,
        }

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"category": self.category, "brand": self.brand, "price": self.price}


def _vocabulary_codes(column: pa.ChunkedArray) -> np.ndarray:
    encoded = pc.dictionary_encode(column.cast(pa.string())).combine_chunks()
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    return np.asarray(codes, dtype=np.int64) + 1


def _price_codes(column: pa.ChunkedArray, buckets: int) -> np.ndarray:
    price = np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    known = np.isfinite(price)
    codes = np.zeros(len(price), dtype=np.int64)
    if known.any():
        # Quantile edges, so each bucket holds about as many items whatever the price scale.
        edges = np.unique(np.quantile(price[known], np.linspace(0, 1, buckets + 1)[1:-1]))
        codes[known] = np.searchsorted(edges, price[known], side="right") + 1
    return codes


def item_features(catalog: pa.Table | None, n_items: int, price_buckets: int) -> ItemFeatures:
    """Feature codes of every item from the catalog aligned with item indices."""
    if catalog is None:
        empty = np.zeros(n_items, dtype=np.int64)
        return ItemFeatures(empty, empty.copy(), empty.copy())
    return ItemFeatures(
        category=_vocabulary_codes(catalog.column("category")),
        brand=_vocabulary_codes(catalog.column("brand")),
        price=_price_codes(catalog.column("price"), price_buckets),
    )


def recency_weights(
    event_weights: np.ndarray, ages: np.ndarray, valid: np.ndarray, half_life: float
) -> np.ndarray:
    """Pooling weights of history events (rows of a window), summing to one per row.

    ``ages`` counts newer events in the window (0 for the newest). A row whose events all weigh
    nothing pools to zero, like an empty history.
    """
    weights = np.where(valid, event_weights * np.power(0.5, ages / half_life), 0.0)
    totals = weights.sum(axis=-1, keepdims=True)
    return np.asarray(weights / np.where(totals > 0, totals, 1.0), dtype=np.float32)


def in_batch_softmax_loss(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    items: torch.Tensor,
    log_q: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Sampled softmax over the batch with the logQ correction (Yi et al. 2019, eq. 3).

    Row i's positive is column i. Every target of the batch is a negative for the other rows,
    drawn with probability ``q`` (its share of training examples), so its logit is lowered by
    ``log q`` to make the estimate unbiased for the full softmax. Other columns holding row i's
    own item are dropped: they are the positive again, not a negative.
    """
    import torch
    import torch.nn.functional as F

    logits = torch.addmm(-log_q.unsqueeze(0), user_vectors, item_vectors.T, alpha=1.0 / temperature)
    rows, cols = _repeated_pairs(items)
    if len(rows):
        logits[rows, cols] = float("-inf")
    return F.cross_entropy(logits, torch.arange(len(items), device=logits.device))


def _repeated_pairs(items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) of every pair of distinct batch positions holding the same item."""
    import torch

    _, inverse, counts = torch.unique(items, return_inverse=True, return_counts=True)
    # Comparing only the rows whose item repeats keeps this far below batch² work.
    repeated = torch.nonzero(counts[inverse] > 1).squeeze(1)
    same = items[repeated][:, None] == items[repeated][None, :]
    same.fill_diagonal_(False)
    rows, cols = torch.nonzero(same, as_tuple=True)
    return repeated[rows], repeated[cols]


def _pooled_inputs(
    net: torch.nn.ModuleDict,
    features: dict[str, torch.Tensor],
    items: torch.Tensor,
    weights: torch.Tensor,
    offsets: torch.Tensor,
) -> list[torch.Tensor]:
    import torch.nn.functional as F

    def pool(table: str, codes: torch.Tensor) -> torch.Tensor:
        weight = cast("torch.Tensor", net[table].weight)
        return F.embedding_bag(
            codes,
            weight,
            offsets,
            mode="sum",
            per_sample_weights=weights,
            sparse=bool(net[table].sparse),
        )

    return [pool("history_item", items)] + [pool(name, features[name][items]) for name in FEATURES]


def _user_tower(
    net: torch.nn.ModuleDict,
    features: dict[str, torch.Tensor],
    users: torch.Tensor,
    items: torch.Tensor,
    weights: torch.Tensor,
    offsets: torch.Tensor,
) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    parts = [net["user_id"](users), *_pooled_inputs(net, features, items, weights, offsets)]
    return F.normalize(net["user_mlp"](torch.cat(parts, dim=1)), dim=1)


def _item_tower(
    net: torch.nn.ModuleDict,
    features: dict[str, torch.Tensor],
    ids: torch.Tensor,
    items: torch.Tensor,
) -> torch.Tensor:
    """``ids`` is the id embedding row (the unknown row for dropped or cold items)."""
    import torch
    import torch.nn.functional as F

    parts = [net["item_id"](ids)] + [net[name](features[name][items]) for name in FEATURES]
    return F.normalize(net["item_mlp"](torch.cat(parts, dim=1)), dim=1)


def _build_net(
    n_users: int, n_items: int, feature_sizes: dict[str, int], p: TwoTowerParams
) -> torch.nn.ModuleDict:
    from torch import nn

    d = p.embedding_dim

    def mlp(inputs: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(inputs * d, p.hidden_dim), nn.ReLU(), nn.Linear(p.hidden_dim, p.output_dim)
        )

    net = nn.ModuleDict(
        {
            # The last row of each id table stands for "no id": unknown users, cold items.
            # Id tables grow with the shop; sparse gradients let each step touch only the
            # batch's rows instead of every user and item.
            "user_id": nn.Embedding(n_users + 1, d, sparse=True),
            "item_id": nn.Embedding(n_items + 1, d, sparse=True),
            "history_item": nn.Embedding(n_items, d, sparse=True),
            **{name: nn.Embedding(size, d) for name, size in feature_sizes.items()},
            "user_mlp": mlp(2 + len(FEATURES)),
            "item_mlp": mlp(1 + len(FEATURES)),
        }
    )
    for module in net.values():
        if isinstance(module, nn.Embedding):
            # Unit-variance defaults would swamp the MLP with the summed-up pooled inputs.
            nn.init.normal_(module.weight, std=0.1)
    return net


class _Examples:
    """Training examples: each event with the user's events just before it, in numpy."""

    def __init__(self, data: TrainingData, history_length: int, half_life: float) -> None:
        order = np.argsort(data.event_users, kind="stable")  # per user, still in time order
        self.users = data.event_users[order].astype(np.int64)
        self.items = data.event_items[order].astype(np.int64)
        self.weights = data.event_weights[order].astype(np.float64)
        counts = np.bincount(self.users, minlength=int(self.users.max(initial=-1)) + 1)
        self.starts = np.repeat(np.cumsum(counts) - counts, counts)
        self.back = np.arange(history_length, 0, -1)  # oldest slot first, like History
        self.half_life = half_life

    def __len__(self) -> int:
        return len(self.items)

    def histories(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flattened history items, their pooling weights and each row's offset."""
        positions = rows[:, None] - self.back[None, :]
        valid = positions >= self.starts[rows][:, None]
        positions = np.where(valid, positions, 0)
        weights = recency_weights(self.weights[positions], self.back - 1.0, valid, self.half_life)
        lengths = valid.sum(axis=1)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return self.items[positions[valid]], weights[valid], offsets


@register("two_tower")
class TwoTowerModel(Recommender):
    params_type = TwoTowerParams
    params: TwoTowerParams
    include_catalog_items = True

    def __init__(self, params: ModelParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.net: dict[str, np.ndarray] = {}
        self.features = ItemFeatures(*(np.zeros(0, dtype=np.int64) for _ in FEATURES))
        self.user_factors = np.zeros((0, 0), dtype=np.float32)
        self.item_factors = np.zeros((0, 0), dtype=np.float32)
        self._history_inputs: np.ndarray | None = None

    # ----- training ---------------------------------------------------------------------------

    def _fit(self, data: TrainingData, show_progress: bool) -> None:
        import torch

        p = self.params
        n_users, n_items = len(self.user_map), len(self.item_map)
        self.features = item_features(data.catalog, n_items, p.price_buckets)
        examples = _Examples(data, p.history_length, p.recency_half_life)
        targets = np.bincount(examples.items, minlength=n_items)
        # In-batch negatives are the batch's targets, so an item turns up as a negative as often
        # as it is a target: its share of the examples is the sampling probability q.
        log_q = np.log(np.maximum(targets, 1) / len(examples)) if p.logq_correction else None
        rng = np.random.default_rng(p.seed)

        threads = torch.get_num_threads()
        torch.set_num_threads(self.threads or 2)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(p.seed)
                net = _build_net(n_users, n_items, self.features.sizes(p.price_buckets), p)
                features = {k: torch.from_numpy(v) for k, v in self.features.as_dict().items()}
                self._train(net, features, examples, log_q, rng, show_progress)
                net.eval()
                with torch.no_grad():
                    warm = torch.from_numpy(targets > 0)
                    every = torch.arange(n_items)
                    ids = torch.where(warm, every, torch.full_like(every, n_items))
                    item_vectors = _item_tower(net, features, ids, every)
        finally:
            torch.set_num_threads(threads)
        self.net = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
        self._history_inputs = None
        self.item_factors = np.ascontiguousarray(item_vectors.numpy(), dtype=np.float32)
        self.user_factors = self._trained_user_vectors()

    def _train(
        self,
        net: torch.nn.ModuleDict,
        features: dict[str, torch.Tensor],
        examples: _Examples,
        log_q: np.ndarray | None,
        rng: np.random.Generator,
        show_progress: bool,
    ) -> None:
        import torch

        p = self.params
        n_users, n_items = len(self.user_map), len(self.item_map)
        sparse = [m.weight for m in net.values() if isinstance(m, torch.nn.Embedding) and m.sparse]
        dense = [w for w in net.parameters() if all(w is not t for t in sparse)]
        optimizers = [
            torch.optim.SparseAdam(sparse, lr=p.learning_rate),
            torch.optim.Adam(dense, lr=p.learning_rate),
        ]
        log_q_t = torch.from_numpy(log_q).float() if log_q is not None else None
        batches = -(-len(examples) // p.batch_size)
        net.train()
        with Progress(disable=not show_progress, transient=True) as progress:
            task = progress.add_task("training two_tower", total=p.epochs * batches)
            for epoch in range(p.epochs):
                order = rng.permutation(len(examples))
                total = 0.0
                for start in range(0, len(order), p.batch_size):
                    rows = order[start : start + p.batch_size]
                    items, weights, offsets = examples.histories(rows)
                    users = np.where(
                        rng.random(len(rows)) < p.user_id_dropout, n_users, examples.users[rows]
                    )
                    target = examples.items[rows]
                    target_ids = np.where(
                        rng.random(len(rows)) < p.item_id_dropout, n_items, target
                    )
                    target_t = torch.from_numpy(target)
                    user_vectors = _user_tower(
                        net,
                        features,
                        torch.from_numpy(users),
                        torch.from_numpy(items),
                        torch.from_numpy(weights),
                        torch.from_numpy(offsets),
                    )
                    item_vectors = _item_tower(
                        net, features, torch.from_numpy(target_ids), target_t
                    )
                    correction = (
                        log_q_t[target_t] if log_q_t is not None else torch.zeros(len(rows))
                    )
                    loss = in_batch_softmax_loss(
                        user_vectors, item_vectors, target_t, correction, p.temperature
                    )
                    for optimizer in optimizers:
                        optimizer.zero_grad()
                    torch.autograd.backward(loss)
                    for optimizer in optimizers:
                        optimizer.step()
                    total += float(loss.detach()) * len(rows)
                    progress.advance(task)
                progress.update(
                    task,
                    description=f"training two_tower, epoch {epoch + 1} loss "
                    f"{total / len(examples):.4f}",
                )

    # ----- the user tower in numpy (serving) --------------------------------------------------

    def _pooled_table(self) -> np.ndarray:
        """Per item, what the user tower pools: its history embedding and feature embeddings."""
        if self._history_inputs is None:
            codes = self.features.as_dict()
            parts = [self.net["history_item.weight"]] + [
                self.net[f"{name}.weight"][codes[name]] for name in FEATURES
            ]
            self._history_inputs = np.ascontiguousarray(np.concatenate(parts, axis=1))
        return self._history_inputs

    def _user_tower_np(self, users: np.ndarray, pooling: sp.csr_matrix) -> np.ndarray:
        """The trained user tower; ``pooling`` holds each row's history weights over items."""
        net = self.net
        inputs = np.concatenate(
            [net["user_id.weight"][users], pooling @ self._pooled_table()], axis=1
        )
        hidden = np.maximum(inputs @ net["user_mlp.0.weight"].T + net["user_mlp.0.bias"], 0.0)
        out = hidden @ net["user_mlp.2.weight"].T + net["user_mlp.2.bias"]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.asarray(out / np.maximum(norms, 1e-12), dtype=np.float32)

    def _trained_user_vectors(self) -> np.ndarray:
        """Each trained user's vector from their id and the stored history, as served."""
        n_users, n_items = len(self.user_map), len(self.item_map)
        counts = np.diff(self.history_indptr)
        owner = np.repeat(np.arange(n_users), counts)
        ages = self.history_indptr[owner + 1] - 1 - np.arange(len(owner))
        window = ages < self.params.history_length
        owner, ages = owner[window], ages[window]
        decayed = self.history_weights[window] * np.power(0.5, ages / self.params.recency_half_life)
        totals = np.bincount(owner, weights=decayed, minlength=n_users)
        shares = decayed / np.where(totals > 0, totals, 1.0)[owner]
        pooling = sp.csr_matrix(
            (shares.astype(np.float32), (owner, self.history_items[window])),
            shape=(n_users, n_items),
        )
        return self._user_tower_np(np.arange(n_users), pooling)

    # ----- scoring ----------------------------------------------------------------------------

    def score_users(self, users: np.ndarray) -> np.ndarray:
        scores: np.ndarray = self.user_factors[users] @ self.item_factors.T
        return scores

    def score_history(self, history: History) -> np.ndarray | None:
        """The user tower on the history alone, as the unknown user (it gets no user id)."""
        if not len(history):
            return None
        window = slice(-self.params.history_length, None)
        items = np.asarray(history.items[window], dtype=np.int64)
        ages = np.arange(len(items))[::-1].astype(np.float64)
        weights = recency_weights(
            np.asarray(history.weights[window], dtype=np.float64),
            ages,
            np.ones(len(items), dtype=bool),
            self.params.recency_half_life,
        )
        pooling = sp.csr_matrix(
            (weights, (np.zeros(len(items), dtype=np.int64), items)),
            shape=(1, len(self.item_map)),
        )
        user = self._user_tower_np(np.array([len(self.user_map)]), pooling)[0]
        scores: np.ndarray = self.item_factors @ user
        return scores

    def item_vectors(self) -> np.ndarray:
        return self.item_factors

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_factors[users])

    # ----- persistence ------------------------------------------------------------------------

    def _model_state(self) -> dict[str, np.ndarray]:
        return {
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
            **{f"item_{name}": codes for name, codes in self.features.as_dict().items()},
            **{NET_PREFIX + name: array for name, array in self.net.items()},
        }

    def _load_model_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors = arrays["user_factors"]
        self.item_factors = arrays["item_factors"]
        self.features = ItemFeatures(*(arrays[f"item_{name}"] for name in FEATURES))
        self.net = {
            key.removeprefix(NET_PREFIX): value
            for key, value in arrays.items()
            if key.startswith(NET_PREFIX)
        }
        self._history_inputs = None
