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

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from recsys_lite.models.base import Recommender
from recsys_lite.models.catalog_features import FEATURES, CatalogEncoder, ItemFeatures
from recsys_lite.models.histories import history_events, recency_decay
from recsys_lite.models.params import ModelParams
from recsys_lite.models.progress import training_progress
from recsys_lite.models.registry import register
from recsys_lite.models.torch_runtime import seeded_torch
from recsys_lite.models.two_tower_examples import Examples, history_bags, recency_weights
from recsys_lite.models.two_tower_net import (
    as_tensors,
    build_net,
    feature_tensors,
    in_batch_softmax_loss,
    item_tower,
    tower_mlp,
    user_tower,
)
from recsys_lite.models.two_tower_params import TwoTowerParams
from recsys_lite.models.types import ForgottenEvents, History, TrainingData

if TYPE_CHECKING:
    import torch

__all__ = ["ItemFeatures", "TwoTowerModel", "TwoTowerParams"]

NET_PREFIX = "net."


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
        # torch is imported lazily so that serving a saved model never loads it; seeded_torch
        # loads it with passive OpenMP workers (see torch_runtime)
        p = self.params
        n_users, n_items = len(self.user_map), len(self.item_map)
        self.encoder = CatalogEncoder.fit(data.catalog, p.price_buckets)
        self.features = self.encoder.encode(data.catalog, n_items)
        examples = Examples(data, p.history_length, p.recency_half_life, p.repeat_targets)
        counts = np.bincount(examples.items[examples.targets], minlength=n_items)
        with seeded_torch(self.threads or 2, p.seed):
            net = build_net(n_users, n_items, self.encoder.sizes(), p)
            self._train(net, examples, counts, show_progress)

    def _train(
        self,
        net: torch.nn.ModuleDict,
        examples: Examples,
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
        steps = epochs * len(examples)
        with training_progress("two_tower", steps, show_progress) as (progress, task):
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
        examples: Examples,
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
        user_vectors = user_tower(net, torch.from_numpy(users), as_tensors(bags))
        item_vectors = item_tower(
            net, torch.from_numpy(target_ids), feature_tensors(self.features.take(targets))
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
        return tower_mlp(net, "item_mlp", np.concatenate(parts, axis=1))

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
        return tower_mlp(self.net, "user_mlp", inputs)

    def _trained_user_vectors(self) -> np.ndarray:
        """Each trained user's vector from their id and stored history, as served."""
        n_users = len(self.user_map)
        owner, index, ages = history_events(self.history_indptr, np.arange(n_users))
        window = ages < self.params.history_length
        owner, index, ages = owner[window], index[window], ages[window]
        decayed = self.history_weights[index] * recency_decay(ages, self.params.recency_half_life)
        totals = np.bincount(owner, weights=decayed, minlength=n_users)
        shares = decayed / np.where(totals > 0, totals, 1.0)[owner]
        pooling = sp.csr_matrix(
            (shares.astype(np.float32), (owner, self.history_items[index])),
            shape=(n_users, len(self.item_map)),
        )
        return self._user_tower_np(np.arange(n_users), pooling)

    # ----- scoring ----------------------------------------------------------------------------

    def score_users(self, users: np.ndarray) -> np.ndarray:
        scores: np.ndarray = self.user_factors[users] @ self.item_factors.T
        return scores

    def history_vector(self, history: History) -> np.ndarray | None:
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
        user: np.ndarray = self._user_tower_np(np.array([-1]), pooling)[0]
        return user

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
                ItemFeatures.unknown(count),
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
