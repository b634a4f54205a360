"""How the ranker learns: a time split inside the training events, at a few cuts. Retrievers
are fitted on the events up to a cut, features are computed at the cut from those events
alone, and labels are the items each user chose after it (up to the next cut), so no feature
can see a label. A share of those (cut, user) groups is held out: the ranker is served only if
its NDCG@10 there beats the best single source's; otherwise the model serves that source's
ranking (``validation`` records which, and the figures).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_lite.data.interactions import build_interactions
from recsys_lite.evaluation.metrics import ndcg
from recsys_lite.models.base import HISTORY_LENGTH
from recsys_lite.models.registry import create_model
from recsys_lite.models.types import History
from recsys_lite.ranking.candidates import Candidates, CoVisitation, recall_by_source
from recsys_lite.ranking.ranker_features import RankerFeatures
from recsys_lite.ranking.ranker_stage import FirstStage

VALIDATION_K = 10


class RankerTraining(RankerFeatures):
    """The ranker model's (ranking/ranker.py) first stages, its examples at a cut and its
    booster's training and validation."""

    booster_text: str
    fallback: int  # the source served instead of the booster (-1: the booster)
    validation: dict[str, Any]

    def training_examples(
        self, before: pa.Table, after: pa.Table, catalog: pa.Table | None
    ) -> Examples | None:
        """Features at the cut from ``before`` alone; labels from ``after`` (later events)."""
        stage = self._build_stage(before, catalog)
        interactions = build_interactions(before, self.params.weighting, item_map=self.item_map)
        seen_matrix = interactions.matrix
        histories = _histories(before, interactions.user_map.to_index(before.column("user_id")),
                               self.item_map.to_index(before.column("item_id")))  # fmt: skip
        label_users = interactions.user_map.to_index(after.column("user_id"), strict=False)
        label_items = self.item_map.to_index(after.column("item_id"), strict=False)
        known = (label_users >= 0) & (label_items >= 0)
        pairs = np.unique(np.stack([label_users[known], label_items[known]], axis=1), axis=0)
        if not len(pairs):
            return None
        pairs = pairs[np.asarray(seen_matrix[pairs[:, 0], pairs[:, 1]]).ravel() == 0]
        users = np.unique(pairs[:, 0])
        rng = np.random.default_rng(self.params.random_state)
        if len(users) > self.params.max_train_users:
            users = np.sort(rng.choice(users, self.params.max_train_users, replace=False))
        starts = np.searchsorted(pairs[:, 0], users)
        ends = np.searchsorted(pairs[:, 0], users, side="right")
        targets = [pairs[s:e, 1] for s, e in zip(starts, ends, strict=True)]
        user_ids = interactions.user_map.ids[users]
        rows = self._rows_for(stage, user_ids, [histories(u) for u in users],
                              [seen_matrix[u].indices for u in users])  # fmt: skip
        labels = [np.isin(found.items, wanted).astype(np.float32)
                  for (found, _), wanted in zip(rows, targets, strict=True)]  # fmt: skip
        return Examples(user_ids, rows, labels, targets, stage.instant)

    def _train_booster(self, examples: Examples, lightgbm: Any) -> None:
        n = len(examples.rows)
        rng = np.random.default_rng(self.params.random_state)
        held_out = rng.random(n) < self.params.validation_share
        useful = np.array([label.any() for label in examples.labels])
        fit_users = np.flatnonzero(useful & ~held_out)
        if not len(fit_users):
            return
        features = np.vstack([examples.rows[u][1] for u in fit_users])
        labels = np.concatenate([examples.labels[u] for u in fit_users])
        groups = [len(examples.labels[u]) for u in fit_users]
        p = self.params
        booster = lightgbm.train(
            {
                "objective": "lambdarank",
                "learning_rate": p.learning_rate,
                "num_leaves": p.leaves,
                "min_data_in_leaf": p.min_rows_in_leaf,
                "lambdarank_truncation_level": 20,
                "num_threads": max(self.threads, 1),
                "seed": p.random_state,
                "deterministic": True,
                "verbose": -1,
            },
            lightgbm.Dataset(features, labels, group=groups, feature_name=self.feature_names()),
            num_boost_round=p.trees,
        )
        self.booster_text = booster.model_to_string()
        names = self.source_names()
        check = np.flatnonzero(held_out)
        candidates = [examples.rows[u][0] for u in range(n)]
        self.validation["recall_at_n"] = recall_by_source(
            candidates, examples.targets, names
        )  # fmt: skip
        self.validation["train_users"] = len(fit_users)
        self.validation["validation_users"] = len(check)
        if not len(check):
            return
        scores: dict[str, float] = {}
        for source, name in enumerate(names):
            scores[name] = _ndcg(
                [(-examples.rows[u][0].ranks[:, source], examples.rows[u][0].items) for u in check],
                [examples.targets[u] for u in check],
            )
        predicted = [
            (booster.predict(examples.rows[u][1]), examples.rows[u][0].items) for u in check
        ]
        scores["ranker"] = _ndcg(predicted, [examples.targets[u] for u in check])
        self.validation["ndcg@10"] = scores
        best = max(range(len(names)), key=lambda s: scores[names[s]])
        if scores["ranker"] <= scores[names[best]]:
            self.fallback = best
            self.validation["served"] = names[best]

    def _build_stage(self, events: pa.Table, catalog: pa.Table | None) -> FirstStage:
        retrievers, positions = [], []
        for name in self.params.retrievers:
            model = create_model(name, self.params.retriever_params.get(name))
            model.threads = self.threads
            model.fit(events, _catalog_for(catalog, events))
            retrievers.append(model)
            positions.append(self.item_map.to_index(model.item_map.ids, strict=False))
        interactions = build_interactions(events, self.params.weighting, item_map=self.item_map)
        items = self.item_map.to_index(events.column("item_id"))
        ts = events.column("ts").to_numpy().astype(np.int64)
        instant = int(ts.max())
        return FirstStage(
            retrievers,
            positions,
            CoVisitation.build(interactions.matrix, self.params.together_neighbours),
            self._trending(items, ts, instant),
            self._item_features(items, ts, instant),
            instant,
        )


@dataclass(frozen=True)
class Examples:
    user_ids: np.ndarray
    rows: list[tuple[Candidates, np.ndarray]]  # per user: candidates and their features
    labels: list[np.ndarray]  # per user: 1 where the candidate was chosen after the cut
    targets: list[np.ndarray]  # per user: every item chosen after the cut (not seen before)
    instant: int  # the cut: newest event the features saw

    @staticmethod
    def concatenate(parts: list[Examples]) -> Examples:
        return Examples(
            np.concatenate([p.user_ids for p in parts]),
            [row for p in parts for row in p.rows],
            [label for p in parts for label in p.labels],
            [target for p in parts for target in p.targets],
            max(p.instant for p in parts),
        )


def _ndcg(ranked: list[tuple[np.ndarray, np.ndarray]], targets: list[np.ndarray]) -> float:
    """Mean NDCG@10 over users of (score per candidate, candidate items) against targets."""
    hits = np.zeros((len(ranked), VALIDATION_K), dtype=bool)
    for row, ((scores, items), wanted) in enumerate(zip(ranked, targets, strict=True)):
        order = np.argsort(-scores, kind="stable")[:VALIDATION_K]
        order = order[np.isfinite(scores[order])]
        hits[row, : len(order)] = np.isin(items[order], wanted)
    n_relevant = np.array([len(t) for t in targets])
    return float(ndcg(hits, n_relevant, VALIDATION_K).mean()) if len(ranked) else 0.0


def _histories(events: pa.Table, users: np.ndarray, items: np.ndarray) -> Any:
    """Each user's last HISTORY_LENGTH events (events are time-ordered), as the served model
    keeps them: a function of the user index."""
    ts = events.column("ts").to_numpy()
    order = np.argsort(users, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=users.max() + 1))])

    def history(user: int) -> History:
        picked = order[indptr[user] : indptr[user + 1]][-HISTORY_LENGTH:]
        return History(items[picked], np.ones(len(picked), dtype=np.float32), ts[picked])

    return history


def _catalog_for(catalog: pa.Table | None, events: pa.Table) -> pa.Table | None:
    """The catalog rows of the items ``events`` mention: a retriever fitted before the cut
    must not learn of items first seen after it."""
    if catalog is None:
        return None
    return catalog.filter(
        pc.is_in(catalog.column("item_id"), value_set=pc.unique(events.column("item_id")))
    )
