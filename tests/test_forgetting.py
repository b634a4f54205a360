"""Each model forgetting an erased shopper, against the same model retrained without them.

The shopper is one nobody could miss in a model: they buy the same eight rarely bought items
from different categories together, month after month, so every model that learns item
relations learns that those items go together. Exact methods must equal the retrain; the others
must agree with it, for every other shopper, about as well as two retrains with different seeds
agree with each other, and the models that claim to undo the item side must have made the
shopper's items no more alike than the retrain finds them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from conftest import SMALL_SHOP
from recsys_lite.data import demo
from recsys_lite.data.audit import AuditLog, audit_path
from recsys_lite.data.ingest import ingest
from recsys_lite.data.store import Store
from recsys_lite.models import create_model
from recsys_lite.models.artifact import load_artifact
from recsys_lite.models.base import Recommender
from recsys_lite.models.forgetting import forget_users
from recsys_lite.training import train

ERASED = "U-ERASED"
SIGNATURE_ITEMS = 8
OTHER_USERS = 200
K = 10
FAST = {
    path.stem: json.loads(path.read_text())
    for path in (Path(__file__).parent / "fast_params").glob("*.json")
}


@dataclass(frozen=True)
class Shop:
    events: pa.Table  # with the erased shopper
    without: pa.Table  # the same events without them
    items: pa.Table
    signature: list[str]  # what the erased shopper kept buying together
    others: list[str]  # shoppers whose recommendations are compared


@pytest.fixture(scope="module")
def shop() -> Shop:
    generated = demo.generate(**SMALL_SHOP)
    events, items = generated.events, generated.items
    category = dict(
        zip(items.column("item_id").to_pylist(), items.column("category").to_pylist(), strict=True)
    )
    counts = pc.value_counts(events.column("item_id")).to_pylist()
    # rare but not the rarest: items others still buy, so no model drops them on a retrain
    by_rarity = [c["values"] for c in sorted(counts, key=lambda c: c["counts"])][40:]
    signature: list[str] = []
    for item in by_rarity:  # one per category first, so nothing else ties them together
        if category[item] not in {category[s] for s in signature}:
            signature.append(item)
    signature = (signature + [i for i in by_rarity if i not in signature])[:SIGNATURE_ITEMS]
    ts = events.column("ts").to_numpy()
    first, last = int(ts.min()), int(ts.max())
    visits = [first + (last - first) * n // 12 for n in range(12)]
    rows = {
        "user_id": [ERASED] * (12 * SIGNATURE_ITEMS),
        "item_id": signature * 12,
        "ts": [visit + 60 * n for visit in visits for n in range(SIGNATURE_ITEMS)],
        "qty": [1] * (12 * SIGNATURE_ITEMS),
        "event_type": ["purchase"] * (12 * SIGNATURE_ITEMS),
    }
    erased = pa.table(rows).select(events.column_names).cast(events.schema)
    others = sorted(set(events.column("user_id").to_pylist()))[:OTHER_USERS]
    return Shop(pa.concat_tables([events, erased]), events, items, signature, others)


def fitted(name: str, events: pa.Table, items: pa.Table, seed: int = 42) -> Recommender:
    params = dict(FAST[name])
    fields = create_model(name).params_type.model_fields
    for key in ("random_state", "seed"):
        if key in fields:
            params[key] = seed
    model = create_model(name, params)
    model.threads = 1  # multi-threaded SGD (BPR, item2vec) is not repeatable
    return model.fit(events, items)


def forgotten(name: str, shop: Shop) -> Recommender:
    model = fitted(name, shop.events, shop.items)
    forget_users(model, np.array([model.user_map.index(ERASED, "user")]), relearn=True)
    return model


def top_k_overlap(a: Recommender, b: Recommender, users: list[str]) -> float:
    shares = []
    for user in users:
        mine = set(a.item_map.ids[a.recommend(user, K).items].tolist())
        theirs = set(b.item_map.ids[b.recommend(user, K).items].tolist())
        shares.append(len(mine & theirs) / K)
    return float(np.mean(shares))


def alikeness(model: Recommender, items: list[str]) -> float:
    """Mean cosine between the items' similarity vectors, over every pair."""
    vectors = model.similarity_vectors()
    assert vectors is not None
    chosen = vectors[model.item_map.to_index(pa.array(items))]
    cosines = chosen @ chosen.T
    return float((cosines.sum() - np.trace(cosines)) / (len(items) * (len(items) - 1)))


def aligned(values: np.ndarray, model: Recommender, reference: Recommender) -> np.ndarray:
    """``values`` (one per item of ``model``) in ``reference``'s item order."""
    return values[model.item_map.to_index(pa.array(reference.item_map.ids))]


def assert_gone(model: Recommender) -> None:
    assert not model.knows_user(ERASED)
    assert len(model.user_map) == model.user_items.shape[0]
    assert model.history_indptr[-1] == len(model.history_items)


def test_popularity_forgets_exactly(shop: Shop) -> None:
    for params in ({}, {"distinct_users": False}, {"window_days": 30.0}):
        model = create_model("popular", params).fit(shop.events, shop.items)
        forget_users(model, np.array([model.user_map.index(ERASED, "user")]), relearn=True)
        retrained = create_model("popular", params).fit(shop.without, shop.items)
        assert_gone(model)
        np.testing.assert_allclose(
            aligned(model.scores, model, retrained), retrained.scores, rtol=1e-6, atol=1e-6
        )


def test_ease_forgets_exactly_by_a_downdate_of_its_inverse(shop: Shop) -> None:
    model = forgotten("ease", shop)
    retrained = fitted("ease", shop.without, shop.items)
    assert_gone(model)
    order = model.item_map.to_index(pa.array(retrained.item_map.ids))
    weights = model.weights[np.ix_(order, order)]
    assert np.allclose(weights, retrained.weights, rtol=1e-3, atol=1e-6)
    assert top_k_overlap(model, retrained, shop.others) == 1.0


def test_ease_from_an_artifact_without_pivots_recomputes(shop: Shop) -> None:
    model = fitted("ease", shop.events, shop.items)
    model.pivots = None  # as in artifacts written before the pivots were kept
    forget_users(model, np.array([model.user_map.index(ERASED, "user")]), relearn=True)
    retrained = fitted("ease", shop.without, shop.items)
    order = model.item_map.to_index(pa.array(retrained.item_map.ids))
    assert np.allclose(model.weights[np.ix_(order, order)], retrained.weights, atol=1e-6)


@pytest.mark.parametrize("name", ["als", "bpr", "item2vec", "lightfm", "two_tower", "gru4rec"])
def test_others_keep_the_recommendations_a_retrain_gives_them(name: str, shop: Shop) -> None:
    """Other shoppers' top 10 agree with a retrain without the shopper about as well as two
    retrains (different seeds) agree: forgetting costs them no more than retraining would."""
    model = forgotten(name, shop)
    retrained = fitted(name, shop.without, shop.items)
    reseeded = fitted(name, shop.without, shop.items, seed=7)
    assert_gone(model)
    agreement = top_k_overlap(model, retrained, shop.others)
    noise = top_k_overlap(retrained, reseeded, shop.others)
    print(f"{name}: top-{K} overlap with the retrain {agreement:.3f} (two retrains: {noise:.3f})")
    if model.similarity_vectors() is not None:  # what the item side still holds (the README)
        print(
            f"{name}: the shopper's items' mean cosine {alikeness(model, shop.signature):.3f}"
            f" forgotten, {alikeness(retrained, shop.signature):.3f} and"
            f" {alikeness(reseeded, shop.signature):.3f} retrained"
        )
    assert agreement >= noise - 0.1


def test_als_items_are_no_more_alike_than_after_a_retrain(shop: Shop) -> None:
    model = forgotten("als", shop)
    original = fitted("als", shop.events, shop.items)
    retrained = fitted("als", shop.without, shop.items)
    reseeded = fitted("als", shop.without, shop.items, seed=7)
    spread = abs(alikeness(retrained, shop.signature) - alikeness(reseeded, shop.signature))
    print(
        f"als: the shopper's items' mean cosine {alikeness(original, shop.signature):.3f}"
        f" trained with them, {alikeness(model, shop.signature):.3f} forgotten,"
        f" {alikeness(retrained, shop.signature):.3f} retrained (seed spread {spread:.3f})"
    )
    assert alikeness(original, shop.signature) > alikeness(retrained, shop.signature) + spread
    assert alikeness(model, shop.signature) <= alikeness(retrained, shop.signature) + spread


def test_bpr_removes_most_of_what_the_shopper_made_alike(shop: Shop) -> None:
    """BPR's restarted items relearn from everyone else in three epochs:
    most, not all, of the excess likeness goes at once; the full retrain removes the rest."""
    model = forgotten("bpr", shop)
    original = alikeness(fitted("bpr", shop.events, shop.items), shop.signature)
    retrained = alikeness(fitted("bpr", shop.without, shop.items), shop.signature)
    now = alikeness(model, shop.signature)
    print(
        f"bpr: mean cosine {original:.3f} trained, {now:.3f} forgotten, {retrained:.3f} retrained"
    )
    assert original > retrained
    assert original - now >= 0.5 * (original - retrained)


def cli(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "recsys_lite.cli", *args], capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_worker_retrains_without_the_shopper_when_due_and_audits_it(
    shop_files: tuple[Path, Path], tmp_path: Path
) -> None:
    db, model_dir = tmp_path / "shop.db", tmp_path / "model"
    ingest(Store(db), *shop_files, show_progress=False)
    train(Store(db), "als", model_dir, params={"iterations": 4}, test_size=0, show_progress=False)
    paths = ("--db", str(db), "--model-dir", str(model_dir))
    shopper = "U00077"
    erased_at = time.time()
    cli("gdpr", "delete-user", "--user-id", shopper, *paths)
    status = json.loads(cli("gdpr", "status", "--user-id", shopper, *paths))
    assert status["served_model_knows_user"] is False
    assert status["full_retrain"]["done"] is False and status["full_retrain"]["overdue"] is False
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["forgotten_users"] == 1

    # not due yet (half of 24 hours): no new events and no erasure retrain, so nothing runs
    worker = ("worker", "--once", "--min-new-events", "1000000", "--db", str(db),
              "--model-dir", str(model_dir))  # fmt: skip
    assert "waiting" in cli(*worker)
    assert "forgotten_users" in json.loads((model_dir / "manifest.json").read_text())

    # due (a 10-second allowance, so due 5 s after the erasure): the worker retrains from the
    # store though no event arrived
    due = {"ERASURE_RETRAIN_HOURS": str(10 / 3600)}
    time.sleep(max(0.0, erased_at + 6 - time.time()))
    assert "retrained after erasure" in cli(*worker, env=due)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert "forgotten_users" not in manifest
    retrained = load_artifact(model_dir).model
    assert shopper not in retrained.user_map
    status = json.loads(cli("gdpr", "status", "--user-id", shopper, *paths, env=due))
    assert status["full_retrain"]["done"] is True and status["full_retrain"]["overdue"] is False
    entries = [
        e for e in AuditLog(audit_path(db)).entries() if e["action"] == "retrain.after_erasure"
    ]
    assert len(entries) == 1 and entries[0]["actor"] == "worker"
    assert entries[0]["details"]["subjects"] == [status["subject"]]
    assert entries[0]["details"]["model"] == "als" and entries[0]["details"]["seconds"] > 0
    assert "intact" in cli("gdpr", "verify-audit", "--db", str(db))

    # done once: the next cycle has nothing due
    assert "waiting" in cli(*worker, env=due)
