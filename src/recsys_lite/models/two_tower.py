"""Two-tower retrieval: Covington et al. 2016, trained as in Yi et al. 2019 (RecSys).

A user tower (user id + recency-weighted pooling of the items the user touched before) and an
item tower (item id + catalog features) each end in an L2-normalised vector; their inner product
is the score, so Faiss retrieves with it directly. Each event is one training example: the
user's state just before it and the item it was about. The other targets of the batch are the
negatives, with the logQ correction for how often popular items turn up among them.

Torch is needed only to train. Serving reads precomputed vectors and runs the towers in numpy
for new users and new catalog items, so a server holding this model never imports torch.
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
    ForgottenEvents,
    History,
    Recommender,
    TrainingData,
)
from recsys_lite.models.params import ModelParams
from recsys_lite.models.registry import register
from recsys_lite.models.torch_runtime import load_torch

if TYPE_CHECKING:
    import torch

NET_PREFIX = "net."
FEATURES = ("category", "brand", "price")
POOLED = ("history_item", *FEATURES)  # the tables the user tower pools over a history

Bags = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]


class TwoTowerParams(ModelParams):
    embedding_dim: int = Field(64, ge=2, le=1024, description="size of each id/feature embedding")
    hidden_dim: int = Field(128, ge=1, le=4096, description="hidden layer of each tower's MLP")
    output_dim: int = Field(64, ge=2, le=1024, description="size of user and item vectors")
    history_length: int = Field(
        20, ge=1, le=HISTORY_LENGTH, description="most recent events the user tower pools"
    )
    recency_half_life: float = Field(
        20.0, gt=0, description="in events: an event counts half as much this many events later"
    )
    temperature: float = Field(0.05, gt=0, le=10, description="softmax temperature on cosines")
    logq_correction: bool = Field(
        True, description="subtract log(sampling probability) from the in-batch logits"
    )
    # High by default: known users with events since training are served through
    # score_history, which has no id, and their ranking should not jump when they act.
    user_id_dropout: float = Field(
        0.8, ge=0, le=1, description="share of examples trained as an unknown user"
    )
    item_id_dropout: float = Field(
        0.25, ge=0, le=1, description="share of target items trained from features alone"
    )
    repeat_targets: bool = Field(
        True,
        description="learn from every event; False keeps only each user's first event with an"
        " item (for funnels where views, carts and purchases of one item follow each other)",
    )
    price_buckets: int = Field(10, ge=1, le=1000, description="quantile buckets of price")
    epochs: int = Field(5, ge=1, le=1000)
    max_examples: int | None = Field(
        1_000_000,
        ge=1,
        description="fewer epochs when they would train on more examples than this (at least"
        " one epoch); None: always ``epochs``",
    )
    batch_size: int = Field(1024, ge=2, le=65_536, description="also the negatives per example")
    learning_rate: float = Field(3e-3, gt=0)
    seed: int = 42


# ----- catalog features ----------------------------------------------------------------------


@dataclass(frozen=True)
class ItemFeatures:
    """Embedding codes of catalog features per item; 0 where the catalog is silent."""

    category: np.ndarray
    brand: np.ndarray
    price: np.ndarray

    def code(self, name: str) -> np.ndarray:
        codes: np.ndarray = getattr(self, name)
        return codes

    def take(self, items: np.ndarray) -> ItemFeatures:
        return ItemFeatures(*(self.code(name)[items] for name in FEATURES))

    def grow(self, count: int) -> ItemFeatures:
        return ItemFeatures(
            *(np.concatenate([self.code(name), np.zeros(count, np.int64)]) for name in FEATURES)
        )


@dataclass(frozen=True)
class CatalogEncoder:
    """Catalog rows to feature codes, with the vocabulary and price buckets of training.

    Code 0 is "unknown": a missing value, or a category or brand first seen after training.
    """

    categories: np.ndarray
    brands: np.ndarray
    price_edges: np.ndarray

    @classmethod
    def fit(cls, catalog: pa.Table | None, price_buckets: int) -> CatalogEncoder:
        if catalog is None or catalog.num_rows == 0:
            empty = np.zeros(0, dtype=str)
            return cls(empty, empty.copy(), np.zeros(0, dtype=np.float64))
        price = _prices(catalog)
        known = price[np.isfinite(price)]
        # Quantile edges: each bucket holds about as many items, whatever the price scale.
        quantiles = np.linspace(0, 1, price_buckets + 1)[1:-1]
        edges = np.unique(np.quantile(known, quantiles)) if len(known) else np.zeros(0)
        return cls(_vocabulary(catalog, "category"), _vocabulary(catalog, "brand"), edges)

    def sizes(self) -> dict[str, int]:
        """Rows of each feature's embedding table, the unknown code included."""
        return {
            "category": len(self.categories) + 1,
            "brand": len(self.brands) + 1,
            "price": len(self.price_edges) + 2,
        }

    def encode(self, catalog: pa.Table | None, n_items: int) -> ItemFeatures:
        if catalog is None:
            return ItemFeatures(*(np.zeros(n_items, dtype=np.int64) for _ in FEATURES))
        price = _prices(catalog)
        price_codes = np.searchsorted(self.price_edges, price, side="right") + 1
        return ItemFeatures(
            category=_codes(catalog, "category", self.categories),
            brand=_codes(catalog, "brand", self.brands),
            price=np.where(np.isfinite(price), price_codes, 0).astype(np.int64),
        )


def _prices(catalog: pa.Table) -> np.ndarray:
    column = catalog.column("price").cast(pa.float64())
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def _vocabulary(catalog: pa.Table, name: str) -> np.ndarray:
    values = pc.unique(catalog.column(name).cast(pa.string()).drop_null())
    return np.sort(np.asarray(values.to_numpy(zero_copy_only=False), dtype=str))


def _codes(catalog: pa.Table, name: str, vocabulary: np.ndarray) -> np.ndarray:
    column = catalog.column(name).cast(pa.string())
    found = pc.index_in(column, value_set=pa.array(vocabulary.tolist(), type=pa.string()))
    return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), np.int64) + 1


# ----- histories -----------------------------------------------------------------------------


def recency_weights(
    event_weights: np.ndarray, ages: np.ndarray, valid: np.ndarray, half_life: float
) -> np.ndarray:
    """Pooling weights of history events (the last axis is one history), summing to one.

    ``ages`` counts the newer events of the history (0 for the newest). A history whose events
    all weigh nothing pools to zero, like an empty one.
    """
    weights = np.where(valid, event_weights * np.power(0.5, ages / half_life), 0.0)
    totals = weights.sum(axis=-1, keepdims=True)
    return np.asarray(weights / np.where(totals > 0, totals, 1.0), dtype=np.float32)


def history_bags(
    owner: np.ndarray, items: np.ndarray, weights: np.ndarray, n_rows: int, features: ItemFeatures
) -> Bags:
    """What the user tower pools from each table: per row, codes, summed weights and offsets.

    ``owner`` gives the row of each (item, weight) history entry. A row's repeats of a code are
    merged: the pooled sum stays the same, but the bags get several times shorter (a history
    spans a few categories and prices), and their backward pass sorts every entry.
    """
    bags: Bags = {}
    for name in POOLED:
        codes = items if name == "history_item" else features.code(name)[items]
        shape = (n_rows, int(codes.max(initial=0)) + 1)
        merged = sp.csr_matrix((weights, (owner, codes)), shape=shape)
        bags[name] = (
            merged.indices.astype(np.int64),
            merged.data.astype(np.float32),
            merged.indptr[:-1].astype(np.int64),
        )
    return bags


class _Examples:
    """Training examples: an event as the target, the user's events just before it as input."""

    def __init__(
        self, data: TrainingData, history_length: int, half_life: float, repeats: bool = True
    ) -> None:
        order = np.argsort(data.event_users, kind="stable")  # per user, still in time order
        self.users = data.event_users[order].astype(np.int64)
        self.items = data.event_items[order].astype(np.int64)
        self.weights = data.event_weights[order].astype(np.float64)
        counts = np.bincount(self.users)
        self.starts = np.repeat(np.cumsum(counts) - counts, counts)
        self.back = np.arange(history_length, 0, -1)  # oldest slot first, like History
        self.half_life = half_life
        self.targets = np.arange(len(self.items))
        if not repeats:  # only each user's first event with an item
            pairs = self.users * (int(self.items.max(initial=0)) + 1) + self.items
            self.targets = np.sort(np.unique(pairs, return_index=True)[1])

    def __len__(self) -> int:
        return len(self.targets)

    def histories(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """History entries of the examples ``rows``: batch row, item and pooling weight of each,
        row by row, oldest first."""
        positions = rows[:, None] - self.back[None, :]
        valid = positions >= self.starts[rows][:, None]
        positions = np.where(valid, positions, 0)
        weights = recency_weights(self.weights[positions], self.back - 1.0, valid, self.half_life)
        owner = np.broadcast_to(np.arange(len(rows))[:, None], valid.shape)
        return owner[valid], self.items[positions[valid]], weights[valid]


# ----- torch: the towers and the loss (training only) -----------------------------------------


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

    logits = torch.addmm(-log_q.unsqueeze(0), user_vectors, item_vectors.T, alpha=1 / temperature)
    rows, cols = _repeated_pairs(items)
    if len(rows):
        logits[rows, cols] = float("-inf")
    return F.cross_entropy(logits, torch.arange(len(items)))


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
            # The last row of each id table stands for "no id": unknown users, cold items. Id
            # tables grow with the shop; sparse gradients let a step touch only its batch's rows.
            "user_id": nn.Embedding(n_users + 1, d, sparse=True),
            "item_id": nn.Embedding(n_items + 1, d, sparse=True),
            "history_item": nn.Embedding(n_items, d, sparse=True),
            **{name: nn.Embedding(size, d) for name, size in feature_sizes.items()},
            "user_mlp": mlp(1 + len(POOLED)),
            "item_mlp": mlp(1 + len(FEATURES)),
        }
    )
    for module in net.values():
        if isinstance(module, nn.Embedding):
            # Unit-variance defaults would swamp the MLPs with the concatenated embeddings.
            nn.init.normal_(module.weight, std=0.1)
    return net


def _user_tower(
    net: torch.nn.ModuleDict,
    users: torch.Tensor,
    bags: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> torch.Tensor:
    """``bags`` holds, per pooled table, the codes, weights and offsets of ``history_bags``."""
    import torch
    import torch.nn.functional as F

    parts = [net["user_id"](users)]
    for name in POOLED:
        codes, weights, offsets = bags[name]
        table = net[name]
        parts.append(
            F.embedding_bag(
                codes,
                cast("torch.Tensor", table.weight),
                offsets,
                mode="sum",
                per_sample_weights=weights,
                sparse=bool(table.sparse),
            )
        )
    return F.normalize(net["user_mlp"](torch.cat(parts, dim=1)), dim=1)


def _item_tower(
    net: torch.nn.ModuleDict, ids: torch.Tensor, codes: dict[str, torch.Tensor]
) -> torch.Tensor:
    """``ids`` are id embedding rows: the item's own, or the "no id" row."""
    import torch
    import torch.nn.functional as F

    parts = [net["item_id"](ids)] + [net[name](codes[name]) for name in FEATURES]
    return F.normalize(net["item_mlp"](torch.cat(parts, dim=1)), dim=1)


def _as_tensors(bags: Bags) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    import torch

    return {
        name: (torch.from_numpy(codes), torch.from_numpy(weights), torch.from_numpy(offsets))
        for name, (codes, weights, offsets) in bags.items()
    }


def _feature_tensors(features: ItemFeatures) -> dict[str, torch.Tensor]:
    import torch

    return {name: torch.from_numpy(features.code(name)) for name in FEATURES}


# ----- numpy: the trained towers (serving) ---------------------------------------------------


def _mlp(net: dict[str, np.ndarray], prefix: str, inputs: np.ndarray) -> np.ndarray:
    """The tower MLP of ``_build_net`` and the L2 normalisation after it."""
    hidden = np.maximum(inputs @ net[f"{prefix}.0.weight"].T + net[f"{prefix}.0.bias"], 0.0)
    out = hidden @ net[f"{prefix}.2.weight"].T + net[f"{prefix}.2.bias"]
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.asarray(out / np.maximum(norms, 1e-12), dtype=np.float32)


@register("two_tower")
class TwoTowerModel(Recommender):
    params_type = TwoTowerParams
    params: TwoTowerParams
    include_catalog_items = True
    supports_new_items = True

    def __init__(self, params: ModelParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.net: dict[str, np.ndarray] = {}
        self.encoder = CatalogEncoder.fit(None, self.params.price_buckets)
        self.features = self.encoder.encode(None, 0)
        self.user_factors = np.zeros((0, 0), dtype=np.float32)
        self.item_factors = np.zeros((0, 0), dtype=np.float32)
        self._pooled: np.ndarray | None = None

    # ----- training ---------------------------------------------------------------------------

    def _fit(self, data: TrainingData, show_progress: bool) -> None:
        # torch is imported lazily so that serving a saved model never loads it; training loads
        # it with passive OpenMP workers (see torch_runtime)
        load_torch()
        import torch

        p = self.params
        n_users, n_items = len(self.user_map), len(self.item_map)
        self.encoder = CatalogEncoder.fit(data.catalog, p.price_buckets)
        self.features = self.encoder.encode(data.catalog, n_items)
        examples = _Examples(data, p.history_length, p.recency_half_life, p.repeat_targets)
        counts = np.bincount(examples.items[examples.targets], minlength=n_items)
        threads = torch.get_num_threads()
        torch.set_num_threads(self.threads or 2)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(p.seed)
                net = _build_net(n_users, n_items, self.encoder.sizes(), p)
                self._train(net, examples, counts, show_progress)
        finally:
            torch.set_num_threads(threads)

    def _train(
        self,
        net: torch.nn.ModuleDict,
        examples: _Examples,
        counts: np.ndarray,
        show_progress: bool,
    ) -> None:
        import torch

        p = self.params
        rng = np.random.default_rng(p.seed)
        # In-batch negatives are the batch's targets, so an item turns up as a negative as often
        # as it is a target: its share of the examples is its sampling probability q.
        log_q = torch.from_numpy(np.log(np.maximum(counts, 1) / len(examples)).astype(np.float32))
        if not p.logq_correction:
            log_q = torch.zeros_like(log_q)
        sparse = [m.weight for m in net.values() if isinstance(m, torch.nn.Embedding) and m.sparse]
        dense = [w for w in net.parameters() if all(w is not s for s in sparse)]
        optimizers = [
            torch.optim.SparseAdam(sparse, lr=p.learning_rate),
            torch.optim.Adam(dense, lr=p.learning_rate),
        ]
        warm = counts > 0
        epochs = self.epochs_for(len(examples))
        with Progress(disable=not show_progress, transient=True) as progress:
            task = progress.add_task("training two_tower", total=epochs * len(examples))
            for epoch in range(epochs):
                net.train()
                total = 0.0
                order = rng.permutation(examples.targets)
                for start in range(0, len(order), p.batch_size):
                    batch = order[start : start + p.batch_size]
                    loss = self._step(net, examples, batch, log_q, rng)
                    for optimizer in optimizers:
                        optimizer.zero_grad()
                    torch.autograd.backward(loss)
                    for optimizer in optimizers:
                        optimizer.step()
                    total += float(loss.detach()) * len(batch)
                    progress.update(
                        task,
                        advance=len(batch),
                        description=f"training two_tower: epoch {epoch + 1}/{epochs}",
                    )
                progress.update(
                    task,
                    description=f"training two_tower: epoch {epoch + 1}/{epochs}, "
                    f"loss {total / len(examples):.3f}",
                )
                if self.epoch_callback is not None or epoch == epochs - 1:
                    self._take_representations(net, warm)
                    self.end_epoch(epoch)

    def epochs_for(self, n_examples: int) -> int:
        """Epochs to train on ``n_examples`` examples.

        Quality follows the number of updates more than the number of passes: on the demo shop
        with 80k training events it still rose at the 5th epoch (about 400 batches), while with
        800k it peaked after the first (about 800) and fell with every further pass. Without
        user ids that fall was half as steep: it is mostly id embeddings (50k users with some
        16 events each) fitting their few events ever closer.
        """
        p = self.params
        if p.max_examples is None:
            return p.epochs
        return max(1, min(p.epochs, round(p.max_examples / max(n_examples, 1))))

    def _step(
        self,
        net: torch.nn.ModuleDict,
        examples: _Examples,
        batch: np.ndarray,
        log_q: torch.Tensor,
        rng: np.random.Generator,
    ) -> torch.Tensor:
        """The loss of one batch of examples, with id dropout on both towers."""
        import torch

        p = self.params
        n_users, n_items = len(self.user_map), len(self.item_map)
        bags = history_bags(*examples.histories(batch), len(batch), self.features)
        drop_user = rng.random(len(batch)) < p.user_id_dropout
        users = np.where(drop_user, n_users, examples.users[batch])
        targets = examples.items[batch]
        target_ids = np.where(rng.random(len(batch)) < p.item_id_dropout, n_items, targets)
        user_vectors = _user_tower(net, torch.from_numpy(users), _as_tensors(bags))
        item_vectors = _item_tower(
            net, torch.from_numpy(target_ids), _feature_tensors(self.features.take(targets))
        )
        targets_t = torch.from_numpy(targets)
        return in_batch_softmax_loss(
            user_vectors, item_vectors, targets_t, log_q[targets_t], p.temperature
        )

    def _take_representations(self, net: torch.nn.ModuleDict, warm: np.ndarray) -> None:
        """The trained weights as numpy, and from them every item's and trained user's vector."""
        self.net = {name: t.detach().numpy().copy() for name, t in net.state_dict().items()}
        self._pooled = None
        n_items = len(self.item_map)
        # Items without events never trained their id row: they get the "no id" row that id
        # dropout trained, which leaves their catalog features to place them.
        ids = np.where(warm, np.arange(n_items), n_items)
        self.item_factors = self._item_tower_np(ids, self.features)
        self.user_factors = self._trained_user_vectors()

    # ----- the towers in numpy ----------------------------------------------------------------

    def _item_tower_np(self, ids: np.ndarray, features: ItemFeatures) -> np.ndarray:
        net = self.net
        parts = [net["item_id.weight"][ids]] + [
            net[f"{name}.weight"][features.code(name)] for name in FEATURES
        ]
        return _mlp(net, "item_mlp", np.concatenate(parts, axis=1))

    def _pooled_table(self) -> np.ndarray:
        """Per item, what the user tower pools: its history embedding and feature embeddings."""
        if self._pooled is None:
            trained = self.net["history_item.weight"]
            # Items added after training have no history embedding yet: theirs is zero.
            history = np.zeros((len(self.item_map), trained.shape[1]), dtype=np.float32)
            history[: len(trained)] = trained
            parts = [history] + [
                self.net[f"{name}.weight"][self.features.code(name)] for name in FEATURES
            ]
            self._pooled = np.ascontiguousarray(np.concatenate(parts, axis=1))
        return self._pooled

    def _user_tower_np(self, users: np.ndarray, pooling: sp.csr_matrix) -> np.ndarray:
        """The user tower for rows of ``pooling`` (history weights over items); a user index
        of -1 is the unknown user."""
        table = self.net["user_id.weight"]
        inputs = np.concatenate(
            [table[np.where(users >= 0, users, len(table) - 1)], pooling @ self._pooled_table()],
            axis=1,
        )
        return _mlp(self.net, "user_mlp", inputs)

    def _trained_user_vectors(self) -> np.ndarray:
        """Each trained user's vector from their id and stored history, as served."""
        n_users = len(self.user_map)
        owner = np.repeat(np.arange(n_users), np.diff(self.history_indptr))
        ages = self.history_indptr[owner + 1] - 1 - np.arange(len(owner))
        window = ages < self.params.history_length
        owner, ages = owner[window], ages[window]
        decayed = self.history_weights[window] * np.power(0.5, ages / self.params.recency_half_life)
        totals = np.bincount(owner, weights=decayed, minlength=n_users)
        shares = decayed / np.where(totals > 0, totals, 1.0)[owner]
        pooling = sp.csr_matrix(
            (shares.astype(np.float32), (owner, self.history_items[window])),
            shape=(n_users, len(self.item_map)),
        )
        return self._user_tower_np(np.arange(n_users), pooling)

    # ----- scoring ----------------------------------------------------------------------------

    def score_users(self, users: np.ndarray) -> np.ndarray:
        scores: np.ndarray = self.user_factors[users] @ self.item_factors.T
        return scores

    def score_history(self, history: History) -> np.ndarray | None:
        """The user tower on the history as an unknown user: it is given no user id."""
        if not len(history):
            return None
        window = slice(-self.params.history_length, None)
        items = np.asarray(history.items[window], dtype=np.int64)
        weights = recency_weights(
            np.asarray(history.weights[window], dtype=np.float64),
            np.arange(len(items))[::-1].astype(np.float64),
            np.ones(len(items), dtype=bool),
            self.params.recency_half_life,
        )
        pooling = sp.csr_matrix(
            (weights, (np.zeros(len(items), dtype=np.int64), items)),
            shape=(1, len(self.item_map)),
        )
        user = self._user_tower_np(np.array([-1]), pooling)[0]
        scores: np.ndarray = self.item_factors @ user
        return scores

    def item_vectors(self) -> np.ndarray:
        return self.item_factors

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_factors[users])

    # ----- items added after training ---------------------------------------------------------

    def content_vectors(self, catalog_rows: pa.Table) -> np.ndarray:
        """The item tower on catalog features alone, as for catalog items without events."""
        features = self.encoder.encode(catalog_rows, catalog_rows.num_rows)
        no_id = np.full(catalog_rows.num_rows, len(self.net["item_id.weight"]) - 1)
        return self._item_tower_np(no_id, features)

    def _add_items(self, count: int, vectors: np.ndarray | None) -> None:
        if vectors is None:  # nothing known about them: the vector of an unknown item
            vectors = self._item_tower_np(
                np.full(count, len(self.net["item_id.weight"]) - 1),
                ItemFeatures(*(np.zeros(count, dtype=np.int64) for _ in FEATURES)),
            )
        self.item_factors = np.ascontiguousarray(
            np.vstack([self.item_factors, vectors]), dtype=np.float32
        )
        # In users' histories they count by features, and _add_items is not given those.
        self.features = self.features.grow(count)
        self._pooled = None

    # ----- persistence ------------------------------------------------------------------------

    def _forget_users(
        self, keep: np.ndarray, removed: sp.csr_matrix, events: ForgottenEvents
    ) -> None:
        # The network's weights keep what the users' events taught them until the full retrain.
        self.user_factors = np.ascontiguousarray(self.user_factors[keep])

    def _model_state(self) -> dict[str, np.ndarray]:
        return {
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
            **{f"item_{name}": self.features.code(name) for name in FEATURES},
            "categories": self.encoder.categories,
            "brands": self.encoder.brands,
            "price_edges": self.encoder.price_edges,
            **{NET_PREFIX + name: array for name, array in self.net.items()},
        }

    def _load_model_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors = arrays["user_factors"]
        self.item_factors = arrays["item_factors"]
        self.features = ItemFeatures(*(arrays[f"item_{name}"] for name in FEATURES))
        self.encoder = CatalogEncoder(arrays["categories"], arrays["brands"], arrays["price_edges"])
        self.net = {
            key.removeprefix(NET_PREFIX): value
            for key, value in arrays.items()
            if key.startswith(NET_PREFIX)
        }
        self._pooled = None
