"""The command line, as a shop's developer runs it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from recsys_lite.cli import app

runner = CliRunner()


def test_demo_ingest_train_evaluate(tmp_path: Path) -> None:
    data, db, model = tmp_path / "demo", tmp_path / "shop.db", tmp_path / "model"
    result = runner.invoke(
        app,
        ["demo-data", "--out", str(data), "--users", "300", "--items", "200", "--events", "6000"],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "ingest",
            "--events",
            str(data / "events.parquet"),
            "--items",
            str(data / "items.csv"),
            "--db",
            str(db),
        ],
    )
    assert result.exit_code == 0 and "200 items" in result.output, result.output
    result = runner.invoke(app, ["train", "popular", "--db", str(db), "--output", str(model)])
    assert result.exit_code == 0 and "ndcg@10" in result.output, result.output
    result = runner.invoke(app, ["evaluate", "--model-dir", str(model), "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["model"] == "popular" and report["split"]["method"] == "temporal"
    assert 0 < report["metrics"]["hr@10"] <= 1


def test_errors_are_plain_messages_with_nonzero_exit(tmp_path: Path) -> None:
    bad = tmp_path / "events.csv"
    bad.write_text("user_id,item_id,ts,qty\nu1,i1,1700000000,-2\n")
    result = runner.invoke(app, ["ingest", "--events", str(bad), "--db", str(tmp_path / "x.db")])
    assert result.exit_code != 0
    assert "row 1, column qty: negative quantity" in result.output

    result = runner.invoke(
        app, ["train", "als", "--db", str(tmp_path / "x.db"), "--params", "{not json"]
    )
    assert result.exit_code != 0 and "not valid JSON" in result.output

    result = runner.invoke(app, ["serve", "--model-dir", str(tmp_path / "none")])
    assert result.exit_code != 0 and "not a model artifact" in result.output


def test_help_lists_what_the_registries_define() -> None:
    from recsys_lite.evaluation.metrics import REPORTED_METRICS
    from recsys_lite.evaluation.split import SPLIT_METHODS
    from recsys_lite.models import MODELS

    train_help = " ".join(
        runner.invoke(app, ["train", "--help"], terminal_width=200).output.split()
    )
    assert all(name in train_help for name in MODELS), train_help
    assert all(method in train_help for method in SPLIT_METHODS)
    optimize_help = runner.invoke(app, ["optimize", "--help"], terminal_width=200).output
    assert all(metric in " ".join(optimize_help.split()) for metric in REPORTED_METRICS)


def test_models_lists_every_model_and_its_parameters() -> None:
    from recsys_lite.models import MODELS, model_class

    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert list(listed) == list(MODELS)
    for name, entry in listed.items():
        assert entry["summary"] == MODELS[name].summary
        fields = model_class(name).params_type.model_fields
        top_level = {p["name"].split(".")[0] for p in entry["params"]}
        assert top_level == set(fields), name
    als = {p["name"]: p for p in listed["als"]["params"]}
    assert als["factors"]["default"] == 64 and als["factors"]["type"] == "int"
    assert als["factors"]["bounds"] == ">= 1, <= 1024"
    assert als["factors"]["tuning_range"] == "16 to 512 (log)"
    assert als["weighting.qty"]["type"] == "one of 'linear'/'log'/'ignore'"
    table = runner.invoke(app, ["models", "ease"], terminal_width=200).output
    assert "l2" in table and "recsys-lite train ease --params" in table


def test_bad_params_are_named_with_a_suggestion(tmp_path: Path) -> None:
    db = str(tmp_path / "none.db")
    result = runner.invoke(app, ["train", "als", "--db", db, "--params", '{"factor": 3}'])
    assert result.exit_code == 2
    assert "unknown parameter 'factor' (did you mean 'factors'?)" in result.output
    assert "valid names: weighting, factors, regularization, alpha" in result.output
    result = runner.invoke(app, ["train", "als", "--db", db, "--params", '{"factors": "many"}'])
    assert result.exit_code == 2 and "factors:" in result.output
    assert "(expected int), got 'many'" in " ".join(result.output.split())
    nested = '{"weighting": {"qtyy": "log"}}'
    result = runner.invoke(app, ["train", "bpr", "--db", db, "--params", nested])
    assert "unknown parameter 'weighting.qtyy' (did you mean 'qty'?)" in result.output


def test_unknown_models_metrics_and_splits_are_refused_with_the_real_lists(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "none.db")
    result = runner.invoke(app, ["train", "alss", "--db", db])
    assert result.exit_code == 2 and "unknown model 'alss' (did you mean 'als'?)" in result.output
    result = runner.invoke(app, ["compare", "--models", "als,eas", "--db", db])
    assert result.exit_code == 2 and "(did you mean 'ease'?)" in result.output
    result = runner.invoke(app, ["optimize", "als", "--output", db, "--metric", "ndcg20"])
    assert result.exit_code == 2 and "one of hr, ndcg, recall, map, coverage" in result.output
    result = runner.invoke(app, ["train", "als", "--db", db, "--split", "loo"])
    assert result.exit_code == 2 and "use temporal or leave-last" in result.output


def test_ingest_tells_repeated_rows_from_stored_events(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,ts\nu1,i1,1700000000\nu1,i1,1700000000\n")
    db = str(tmp_path / "shop.db")
    first = runner.invoke(app, ["ingest", "--events", str(events), "--db", db])
    assert "skipped 1 rows repeating an earlier row of the same input and 0 events already" in (
        " ".join(first.output.split())
    )
    second = runner.invoke(app, ["ingest", "--events", str(events), "--db", db])
    assert "ingested 0 new events" in second.output
    assert "and 1 events already in the store" in " ".join(second.output.split())
