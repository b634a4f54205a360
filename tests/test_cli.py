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
