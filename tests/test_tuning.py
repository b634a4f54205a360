"""Tuning never sees the test period, resumes from its journal, and leaves a servable model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from recsys_lite.cli import app
from recsys_lite.data.ingest import ingest
from recsys_lite.data.store import Store
from recsys_lite.errors import InvalidInputError
from recsys_lite.evaluation.metrics import parse_metric
from recsys_lite.evaluation.split import SPLIT_METHODS, leave_last_split, temporal_split
from recsys_lite.models import MODELS, Recommender, create_model
from recsys_lite.models.artifact import load_artifact
from recsys_lite.tuning import search as search_module
from recsys_lite.tuning.leaderboard import compare
from recsys_lite.tuning.search import SearchSpace, optimize, tune


def test_trials_train_and_validate_before_the_test_period(
    shop_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = Store(shop_db).read_events()
    cutoff = temporal_split(events, 0.2).description["cutoff_ts"]
    seen_max_ts: list[int] = []
    original_fit = Recommender.fit

    def spying_fit(self: Recommender, train: pa.Table, *args: Any, **kwargs: Any) -> Recommender:
        seen_max_ts.append(pa.compute.max(train.column("ts")).as_py())
        return original_fit(self, train, *args, **kwargs)

    monkeypatch.setattr(Recommender, "fit", spying_fit)
    outcome = tune(
        "als", events, None, trials=3, study_path=tmp_path / "s.jsonl", show_progress=False
    )
    assert len(seen_max_ts) == 3 and max(seen_max_ts) < cutoff
    assert set(outcome.best_params) >= {"factors", "regularization", "alpha", "weighting"}


def test_trials_know_only_the_catalog_items_their_training_part_mentions(
    shop_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(shop_db)
    events, items = store.read_events(), store.read_items()
    never_sold = set(items.column("item_id").to_pylist()) - set(
        events.column("item_id").to_pylist()
    )
    unknown: list[set[str]] = []
    original_fit = Recommender.fit

    def spying_fit(
        self: Recommender, train: pa.Table, catalog: pa.Table | None = None, **kwargs: Any
    ) -> Recommender:
        assert catalog is not None
        known = set(train.column("item_id").to_pylist()) | never_sold
        unknown.append(set(catalog.column("item_id").to_pylist()) - known)
        return original_fit(self, train, catalog, **kwargs)

    monkeypatch.setattr(Recommender, "fit", spying_fit)
    tune("popular", events, items, trials=2, study_path=tmp_path / "s.jsonl", show_progress=False)
    # items first sold in the test period or the validation window reach no trial
    assert unknown == [set(), set()]


def test_a_study_resumes_from_its_file(shop_db: Path, tmp_path: Path) -> None:
    events = Store(shop_db).read_events()
    journal = tmp_path / "study.jsonl"
    tune("popular", events, None, trials=2, study_path=journal, show_progress=False)
    again = tune("popular", events, None, trials=2, study_path=journal, show_progress=False)
    assert len(again.study.trials) == 4


def test_optimize_writes_a_servable_tuned_artifact(shop_db: Path, tmp_path: Path) -> None:
    outcome, _ = optimize(Store(shop_db), "bpr", tmp_path / "tuned", trials=2, show_progress=False)
    artifact = load_artifact(tmp_path / "tuned")
    assert artifact.model.params.model_dump()["factors"] == outcome.best_params["factors"]
    tuning = json.loads((tmp_path / "tuned" / "tuning.json").read_text())
    assert tuning["best_params"] == outcome.best_params and len(tuning["trials"]) == 2
    assert 0 <= artifact.metrics["metrics"]["ndcg@20"] <= 1  # evaluated once on the test split
    assert "tuning.json" in artifact.manifest["checksums"]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_has_a_search_space_within_its_params(name: str) -> None:
    space = SearchSpace.for_model(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):  # often enough to reach a range's edges
        # params refuse unknown keys and out-of-range values, so a typo or a range wider than
        # the model accepts fails here rather than in the middle of a user's study
        create_model(name, space.sample(study.ask()))


def test_metric_names_are_checked() -> None:
    assert parse_metric("NDCG@20") == ("ndcg", 20)
    for bad in ("ndcg", "ndcg@0", "auc@10", "recall@ten"):
        with pytest.raises(InvalidInputError):
            parse_metric(bad)


def test_compare_writes_a_leaderboard(shop_db: Path, tmp_path: Path) -> None:
    rows = compare(Store(shop_db), ["popular", "als"], tmp_path, show_progress=False)
    assert [r["model"] for r in rows] == sorted(
        ["popular", "als"], key=lambda m: -next(r["ndcg@10"] for r in rows if r["model"] == m)
    )
    assert all(r["train_seconds"] >= 0 and r["model_mb"] > 0 for r in rows)
    saved = json.loads((tmp_path / "leaderboard.json").read_text())
    assert saved["rows"] == rows
    assert (tmp_path / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _rows(table: pa.Table) -> set[tuple[str, str, int]]:
    return set(
        zip(
            table.column("user_id").to_pylist(),
            table.column("item_id").to_pylist(),
            table.column("ts").to_pylist(),
            strict=True,
        )
    )


def test_leave_last_trials_never_see_a_users_test_basket(
    shop_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = Store(shop_db).read_events()
    test_rows = _rows(leave_last_split(events, 1).test)
    fitted: list[set[tuple[str, str, int]]] = []
    targets: list[set[tuple[str, str, int]]] = []
    original_fit = Recommender.fit
    original_evaluate = search_module.evaluate_model

    def spying_fit(self: Recommender, train: pa.Table, *args: Any, **kwargs: Any) -> Recommender:
        fitted.append(_rows(train))
        return original_fit(self, train, *args, **kwargs)

    def spying_evaluate(model: Recommender, test: pa.Table, **kwargs: Any) -> dict[str, Any]:
        targets.append(_rows(test))
        return original_evaluate(model, test, **kwargs)

    monkeypatch.setattr(Recommender, "fit", spying_fit)
    monkeypatch.setattr(search_module, "evaluate_model", spying_evaluate)
    tune(
        "popular",
        events,
        None,
        trials=2,
        split_method="leave-last",
        study_path=tmp_path / "s.jsonl",
        show_progress=False,
    )
    assert len(fitted) == 2 and targets and all(targets)
    # a model that memorised what it was fitted on, or was scored against, learns nothing of
    # the baskets the final test holds out
    assert all(not (rows & test_rows) for rows in fitted + targets)


def test_a_study_on_another_split_is_another_study(shop_db: Path, tmp_path: Path) -> None:
    events = Store(shop_db).read_events()
    journal = tmp_path / "study.jsonl"
    tune("popular", events, None, trials=2, study_path=journal, show_progress=False)
    other = tune(
        "popular",
        events,
        None,
        trials=2,
        split_method="leave-last",
        study_path=journal,
        show_progress=False,
    )
    assert len(other.study.trials) == 2  # not resumed from the temporal study's trials


def _grouped_shop(tmp_path: Path) -> Store:
    """Shoppers in eight groups, each buying only its group's items, one basket a day: the
    next basket is predictable from the last ones, and all items are equally popular."""
    rng = np.random.default_rng(0)
    rows: dict[str, list[Any]] = {"user_id": [], "item_id": [], "ts": [], "event_type": []}
    for user in range(240):
        group = user % 8
        for day, item in enumerate(rng.permutation(6)[:4]):
            rows["user_id"].append(f"u{user}")
            rows["item_id"].append(f"g{group}i{item}")
            rows["ts"].append(1_700_000_000 + day * 86_400 + user)
            rows["event_type"].append("purchase")
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table(rows), path)
    store = Store(tmp_path / "shop.db")
    ingest(store, path, show_progress=False)
    return store


def test_optimize_several_models_serves_the_one_that_wins_on_validation(tmp_path: Path) -> None:
    store = _grouped_shop(tmp_path)
    outcome, result = optimize(
        store,
        ["popular", "ease"],
        tmp_path / "tuned",
        metric="ndcg@10",
        trials=4,
        split_method="leave-last",
        show_progress=False,
    )
    tuning = json.loads((tmp_path / "tuned" / "tuning.json").read_text())
    candidates = tuning["candidates"]
    assert outcome.model == tuning["model"] == "ease"
    assert candidates["ease"]["best_value"] > candidates["popular"]["best_value"]
    assert [c["trials"] for c in candidates.values()] == [2, 2]  # the budget in equal shares
    artifact = load_artifact(tmp_path / "tuned")
    assert artifact.manifest["model_type"] == "ease"
    assert artifact.manifest["evaluation"]["method"] == "leave-last"
    assert result.metrics["metrics"]["hr@10"] > 0.5


def test_a_budget_smaller_than_the_model_list_is_refused(shop_db: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        optimize(Store(shop_db), ["popular", "als"], tmp_path / "x", trials=1, show_progress=False)


def test_optimize_and_compare_offer_the_split_module_s_splits() -> None:
    runner = CliRunner()
    for command in ("optimize", "compare"):
        help_text = " ".join(
            runner.invoke(app, [command, "--help"], terminal_width=200).output.split()
        )
        assert all(method in help_text for method in SPLIT_METHODS), help_text
        assert "--split" in help_text and "--last-n" in help_text
    optimize_help = runner.invoke(app, ["optimize", "--help"], terminal_width=200).output
    assert "--models" in optimize_help
