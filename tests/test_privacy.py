"""Export and erasure of one shopper, proven on real files and a real server: after an erasure
no persisted byte the product owns holds the shopper's id (the same scan finds it before), the
running API serves them as unknown at once and after a restart, old files cannot bring them
back, an erasure killed half-way is finished by the next start, and the audit trail catches
every kind of tampering."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import running_server, serving_client
from recsys_lite.data.audit import AuditLog
from recsys_lite.data.ingest import ingest
from recsys_lite.data.store import Store
from recsys_lite.models import create_model
from recsys_lite.models.forgetting import forget_users
from recsys_lite.training import train

SHOPPER = "U00077"


def known_shopper_files(folder: Path, shop_files: tuple[Path, Path]) -> tuple[Path, Path]:
    events, items = shop_files
    db, model = folder / "shop.db", folder / "model"
    ingest(Store(db), events, items, show_progress=False)
    train(Store(db), "als", model, params={"iterations": 4}, test_size=0, show_progress=False)
    return db, model


def found_in(root: Path, needle: str) -> list[str]:
    """Every file under ``root`` holding ``needle``: as raw bytes, or once decoded (DuckDB,
    Parquet and .npz compress strings, so a byte scan alone could miss them)."""
    raw = needle.encode()
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if raw in data:
            hits.append(str(path))
            continue
        try:
            if path.suffix == ".db":
                con = duckdb.connect(str(path), read_only=True)
                try:
                    tables = [r[0] for r in con.execute("SHOW TABLES").fetchall()]
                    for table in tables:
                        text = con.execute(f"SELECT string_agg(t::VARCHAR, '|') FROM {table} t")
                        if needle in str(text.fetchone()):
                            hits.append(f"{path}:{table}")
                finally:
                    con.close()
            elif path.suffix == ".parquet":
                if needle in str(pq.read_table(path).to_pylist()):
                    hits.append(str(path))
            elif path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as arrays:
                    for name in arrays.files:
                        if arrays[name].dtype.kind == "U" and needle in arrays[name]:
                            hits.append(f"{path}:{name}")
        except (duckdb.Error, OSError, ValueError, zipfile.BadZipFile, pa.ArrowInvalid):
            continue
    return hits


def test_an_erased_shopper_is_gone_from_every_byte_and_unknown_to_the_api(
    shop_files: tuple[Path, Path], tmp_path: Path
) -> None:
    db, model = known_shopper_files(tmp_path, shop_files)
    watch = tmp_path / "watch"
    (watch / "processed").mkdir(parents=True)
    (watch / "rejected").mkdir()
    shutil.copy(shop_files[0], watch / "processed" / "events.parquet")
    (watch / "rejected" / "bad.csv").write_text(f"user_id,item_id,ts\n{SHOPPER},I00001,x\n")
    (watch / "rejected" / "bad.csv.error.txt").write_text(f"row 1: {SHOPPER!r} bad ts\n")
    env = {"WATCH_DIR": str(watch), "INBOX_DRAIN_INTERVAL": "0.3", "MODEL_WATCH_INTERVAL": "0.3"}
    with serving_client(model, db, tmp_path, env, timeout=30) as client:
        assert client.get("/recommend", params={"user_id": SHOPPER}).json()["source"] == "als"
        assert client.post("/events", json={"user_id": SHOPPER, "item_id": "I00003"}).is_success
        exported = client.get(f"/admin/users/{SHOPPER}/export").json()
        assert exported["profile"]["events"] > 0 and exported["model"]["knows_user"]
        assert exported["online"]["events_since_training"][0]["item_id"] == "I00003"
        time.sleep(1.0)  # the inbox file reaches the store
        assert found_in(tmp_path, SHOPPER), "the scan must find the shopper before erasure"

        erased = client.delete(f"/admin/users/{SHOPPER}")
        assert erased.status_code == 200, erased.text
        answer = client.get("/recommend", params={"user_id": SHOPPER}).json()
        assert answer["source"] == "popular"
        # the server swaps in the model published without the shopper
        deadline = time.monotonic() + 30
        while client.get("/status").json()["online"]["swaps"] < 1:
            assert time.monotonic() < deadline, "the forgotten model was never swapped in"
            time.sleep(0.2)
        assert client.get("/recommend", params={"user_id": SHOPPER}).json()["source"] == "popular"
    leftovers = [hit for hit in found_in(tmp_path, SHOPPER) if "server-" not in hit]
    assert leftovers == []
    logs = "".join(p.read_text() for p in tmp_path.glob("server-*.log"))
    assert SHOPPER not in logs

    # old files cannot bring the shopper back, and a restarted API still does not know them
    ingest(Store(db), shop_files[0], show_progress=False)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM events WHERE user_id = ?", [SHOPPER]).fetchone() == (
        0,
    )
    con.close()
    with running_server(model, db, tmp_path, env) as url:
        answer = httpx.get(f"{url}/recommend", params={"user_id": SHOPPER}).json()
        assert answer["source"] == "popular"
    verify = subprocess.run(
        [sys.executable, "-m", "recsys_lite.cli", "gdpr", "verify-audit", "--db", str(db)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert verify.returncode == 0 and "intact" in verify.stdout


def test_an_erasure_killed_half_way_is_finished_by_the_next_start(
    shop_files: tuple[Path, Path], tmp_path: Path
) -> None:
    db, model = known_shopper_files(tmp_path, shop_files)
    journal = tmp_path / "erasures"
    for _attempt in range(5):
        process = subprocess.Popen(
            [sys.executable, "-m", "recsys_lite.cli", "gdpr", "delete-user", "--user-id",
             SHOPPER, "--db", str(db), "--model-dir", str(model)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        while process.poll() is None and not list(journal.glob("*.json")):
            time.sleep(0.002)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGSTOP)
            if list(journal.glob("*.json")):
                break  # stopped half-way: the journal is still there
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    else:
        pytest.skip("the erasure always finished before it could be stopped")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    pending = json.loads(next(journal.glob("*.json")).read_text())
    assert len(pending["done"]) < 6

    status = subprocess.run(
        [sys.executable, "-m", "recsys_lite.cli", "gdpr", "status", "--user-id", SHOPPER,
         "--db", str(db), "--model-dir", str(model)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(status.stdout)["erasure_pending"] is True
    with running_server(model, db, tmp_path, {"MODEL_WATCH_INTERVAL": "0.3"}) as url:
        deadline = time.monotonic() + 30
        while list(journal.glob("*.json")):
            assert time.monotonic() < deadline, "the next start did not finish the erasure"
            time.sleep(0.2)
        assert httpx.get(f"{url}/recommend", params={"user_id": SHOPPER}).json()["source"] == (
            "popular"
        )
    report = json.loads(
        subprocess.run(
            [sys.executable, "-m", "recsys_lite.cli", "gdpr", "status", "--user-id", SHOPPER,
             "--db", str(db), "--model-dir", str(model)],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    assert report["erased"] and report["store_events"] == 0
    assert report["served_model_knows_user"] is False and report["older_versions_kept"] == 0
    assert report["full_retrain"]["done"] is False  # the forgotten model is not a retrain


@pytest.mark.parametrize("tamper", ["edit", "remove", "insert", "reorder"])
def test_the_audit_trail_detects_tampering(tmp_path: Path, tamper: str) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    for n in range(4):
        log.append("erase.completed", actor="admin", subject=f"{n:064x}")
    assert log.verify().ok and log.verify().entries == 4
    lines = log.path.read_text().splitlines()
    if tamper == "edit":
        lines[1] = lines[1].replace('"admin"', '"someone-else"')
    elif tamper == "remove":
        del lines[2]
    elif tamper == "insert":
        lines.insert(2, lines[1])
    else:
        lines[1], lines[2] = lines[2], lines[1]
    log.path.write_text("\n".join(lines) + "\n")
    result = log.verify()
    assert not result.ok and result.problem


def test_forgetting_removes_the_shopper_and_their_share_of_popularity(
    shop_files: tuple[Path, Path], tmp_path: Path
) -> None:
    events = pq.read_table(shop_files[0])
    model = create_model("als", {"iterations": 3}).fit(events)
    user = model.user_map.index(SHOPPER)
    forget_users(model, np.array([user]))
    without = pa.Table.from_pylist(
        [row for row in events.to_pylist() if row["user_id"] != SHOPPER], schema=events.schema
    )
    retrained = create_model("als", {"iterations": 3}).fit(without)
    assert SHOPPER not in model.user_map
    assert list(model.user_map.ids) == list(retrained.user_map.ids)
    assert model.user_factors.shape[0] == len(model.user_map)
    # item ids are numbered by first appearance, so compare by id
    popularity = dict(zip(model.item_map.ids.tolist(), model.item_popularity.tolist(), strict=True))
    expected = dict(
        zip(retrained.item_map.ids.tolist(), retrained.item_popularity.tolist(), strict=True)
    )
    assert {item: count for item, count in popularity.items() if count} == expected
    order = model.item_map.to_index(pa.array(retrained.item_map.ids))
    assert (model.user_items[:, order] != retrained.user_items).nnz == 0


def test_retention_deletes_older_events_and_files_and_is_audited(
    shop_files: tuple[Path, Path], tmp_path: Path
) -> None:
    db = tmp_path / "shop.db"
    ingest(Store(db), *shop_files, show_progress=False)
    con = duckdb.connect(str(db), read_only=True)
    newest, total = con.execute("SELECT max(ts), count(*) FROM events").fetchone() or (0, 0)
    (older,) = con.execute(
        "SELECT count(*) FROM events WHERE ts < ?", [newest - 30 * 86_400]
    ).fetchone() or (0,)
    con.close()
    assert 0 < older < total
    stale = tmp_path / "inbox" / "processed" / "events-old.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    os.utime(stale, (newest - 40 * 86_400, newest - 40 * 86_400))
    # keep what is younger than 30 days before the newest event
    days = (time.time() - (newest - 30 * 86_400)) / 86_400
    run = subprocess.run(
        [sys.executable, "-m", "recsys_lite.cli", "gdpr", "retention", "--days", str(days),
         "--db", str(db)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(run.stdout)["events_deleted"] == older
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM events").fetchone() == (total - older,)
    con.close()
    assert not stale.exists()
    assert AuditLog(tmp_path / "audit.jsonl").entries()[-1]["action"] == "retention"


def test_the_worker_applies_retention_and_retrains_so_the_model_forgets_too(
    shop_files: tuple[Path, Path], tmp_path: Path
) -> None:
    db, model = known_shopper_files(tmp_path, shop_files)
    con = duckdb.connect(str(db), read_only=True)
    (newest,) = con.execute("SELECT max(ts) FROM events").fetchone() or (0,)
    cutoff = newest - 30 * 86_400
    (gone,) = con.execute(
        "SELECT user_id FROM events GROUP BY user_id HAVING max(ts) < ? LIMIT 1", [cutoff]
    ).fetchone() or (None,)
    con.close()
    assert gone is not None, "a shopper with only older events"
    before = json.loads((model / "manifest.json").read_text())["version"]
    days = (time.time() - cutoff) / 86_400
    subprocess.run(
        [sys.executable, "-m", "recsys_lite.cli", "worker", "--model-dir", str(model),
         "--db", str(db), "--once", "--min-new-events", "1000000"],
        check=True, capture_output=True, text=True,
        env={**os.environ, "EVENT_RETENTION_DAYS": str(days)},
    )  # fmt: skip
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["version"] != before
    with np.load(model / "model.npz", allow_pickle=False) as arrays:
        assert gone not in arrays["user_ids"]
    actions = [entry["action"] for entry in AuditLog(tmp_path / "audit.jsonl").entries()]
    assert actions[-2:] == ["retention", "retrain.after_retention"]


def test_erasure_reaches_an_experiments_variant_artifacts(
    shop_files: tuple[Path, Path], tmp_path: Path
) -> None:
    db, model = known_shopper_files(tmp_path, shop_files)
    variant = tmp_path / "variant"
    train(Store(db), "bpr", variant, params={"iterations": 5}, test_size=0, show_progress=False)
    experiment = tmp_path / "experiment.toml"
    experiment.write_text(
        'name = "home"\nsalt = "s"\ncontrol = "als"\n'
        '[[variants]]\nname = "als"\nweight = 0.5\n'
        f'[[variants]]\nname = "bpr"\nartifact = "{variant}"\nweight = 0.5\n'
    )
    subprocess.run(
        [sys.executable, "-m", "recsys_lite.cli", "gdpr", "delete-user", "--user-id", SHOPPER,
         "--db", str(db), "--model-dir", str(model)],
        check=True, capture_output=True, text=True,
        env={**os.environ, "EXPERIMENT_FILE": str(experiment)},
    )  # fmt: skip
    for served in (model, variant):
        with np.load(served / "model.npz", allow_pickle=False) as arrays:
            assert SHOPPER not in arrays["user_ids"], served
