"""Each metric against cases computed by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from recsys_lite.data.store import Store
from recsys_lite.evaluation import evaluate
from recsys_lite.evaluation.evaluate import evaluate_model
from recsys_lite.evaluation.metrics import coverage, ranking_metrics
from recsys_lite.evaluation.split import make_split
from recsys_lite.models import create_model

HITS = np.array([[True, False, True, False], [False, False, False, False]])
N_RELEVANT = np.array([3, 1])


def test_metrics_at_4() -> None:
    m = ranking_metrics(HITS, N_RELEVANT, 4)
    idcg = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert m["hr"] == pytest.approx([1.0, 0.0])
    assert m["recall"] == pytest.approx([2 / 3, 0.0])
    assert m["ndcg"] == pytest.approx([1.5 / idcg, 0.0])
    assert m["map"] == pytest.approx([(1 / 1 + 2 / 3) / 3, 0.0])


def test_metrics_at_2_cut_the_list_and_the_ideal() -> None:
    m = ranking_metrics(HITS, N_RELEVANT, 2)
    assert m["hr"] == pytest.approx([1.0, 0.0])
    assert m["recall"] == pytest.approx([1 / 3, 0.0])
    assert m["ndcg"] == pytest.approx([1 / (1 + 1 / np.log2(3)), 0.0])
    assert m["map"] == pytest.approx([0.5, 0.0])  # one hit at rank 1, normalised by min(3, 2)


def test_coverage_counts_distinct_items_in_the_top_k() -> None:
    recommended = np.array([[0, 1], [1, 2], [-1, -1]])
    assert coverage(recommended, 10, 2) == pytest.approx(0.3)
    assert coverage(recommended, 10, 1) == pytest.approx(0.2)


def _events(rows: list[tuple[str, str, int]]) -> pa.Table:
    users, items, ts = zip(*rows, strict=True)
    return pa.table(
        {
            "user_id": list(users),
            "item_id": list(items),
            "ts": pa.array(ts, pa.int64()),
            "qty": pa.array([1] * len(rows), pa.int32()),
            "event_type": ["purchase"] * len(rows),
        }
    )


def test_full_ranking_evaluation_by_hand() -> None:
    """popular ranks a (3 users) > b (2) > c (1); each user's training items are removed."""
    train = _events(
        [
            ("u1", "a", 1),
            ("u2", "a", 1),
            ("u2", "b", 1),
            ("u3", "a", 1),
            ("u3", "b", 1),
            ("u3", "c", 1),
        ]
    )
    test = _events(
        [
            ("u1", "b", 2),  # ranked [b, c]: hit at rank 1
            ("u2", "c", 2),  # ranked [c]: hit at rank 1 ...
            ("u2", "d", 2),  # ... and d, a new item, is relevant but unreachable
            ("u3", "a", 2),  # already bought: no target left, u3 is not evaluated
            ("u4", "a", 2),  # never seen: cold start, gets the popular list
        ]
    )
    model = create_model("popular").fit(train)
    result = evaluate_model(model, test, ks=(10,))
    metrics = result["metrics"]
    assert result["users_evaluated"] == 2
    assert metrics["hr@10"] == pytest.approx(1.0)
    assert metrics["recall@10"] == pytest.approx((1 + 0.5) / 2)
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / (1 + 1 / np.log2(3))) / 2)
    assert metrics["map@10"] == pytest.approx((1 + 0.5) / 2)
    assert metrics["coverage@10"] == pytest.approx(2 / 3)
    assert result["cold_start"]["users"] == 1
    assert result["cold_start"]["metrics"]["hr@10"] == pytest.approx(1.0)


def test_evaluation_on_threads_ranks_every_batch_as_one_thread_does(
    shop_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    split = make_split(Store(shop_db).read_events(), "temporal", 0.3, 1)
    model = create_model("als", {"factors": 16, "iterations": 3}).fit(split.train)
    # batches of 20 users, so the test users span many batches shared out between threads
    monkeypatch.setattr(evaluate, "SCORE_BUDGET", 20 * len(model.item_map))
    one = evaluate_model(model, split.test, threads=1)
    three = evaluate_model(model, split.test, threads=3)
    assert one["users_evaluated"] > 100
    assert three["metrics"] == one["metrics"]
    assert one["metrics"]["recall@10"] > 0
