"""Retraining behind a forward-test gate, and swapping models under load without a failure."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import copy_shop, running_server
from recsys_lite.data.ingest import ingest
from recsys_lite.data.store import Store
from recsys_lite.jobs.worker import retrain_cycle
from recsys_lite.training import train


def serve_before_new_data(
    shop_files: tuple[Path, Path], folder: Path, model: str, params: dict[str, int] | None
) -> tuple[Store, Path, Path]:
    """A model trained on the older 70% of the shop, and the newer 30% arriving afterwards."""
    events = pq.read_table(shop_files[0])
    cut = int(sorted(events.column("ts").to_numpy())[int(events.num_rows * 0.7)])
    pq.write_table(events.filter(pc.less(events.column("ts"), cut)), folder / "old.parquet")
    pq.write_table(
        events.filter(pc.greater_equal(events.column("ts"), cut)), folder / "new.parquet"
    )
    store = Store(folder / "shop.db")
    ingest(store, folder / "old.parquet", shop_files[1], show_progress=False)
    train(store, model, folder / "model", params=params, test_size=0, show_progress=False)
    return store, folder / "model", folder / "new.parquet"


@pytest.fixture
def served_before_new_data(
    shop_files: tuple[Path, Path], tmp_path: Path
) -> tuple[Store, Path, Path]:
    return serve_before_new_data(shop_files, tmp_path, "als", {"iterations": 6})


def manifest(model_dir: Path) -> dict[str, object]:
    return json.loads((model_dir / "manifest.json").read_text())


def test_nothing_happens_without_new_events(
    served_before_new_data: tuple[Store, Path, Path],
) -> None:
    store, model_dir, _ = served_before_new_data
    report = retrain_cycle(store, model_dir, min_new_events=10)
    assert report.decision == "waiting" and report.new_events == 0


def test_a_cycle_without_enough_new_events_reads_only_the_manifest(
    served_before_new_data: tuple[Store, Path, Path],
) -> None:
    """Checksumming every file of the served model each cycle cost more than the cycle: the
    model is loaded only when a retrain is due."""
    store, model_dir, _ = served_before_new_data
    (model_dir / "model.npz").unlink()
    report = retrain_cycle(store, model_dir, min_new_events=10)
    assert report.decision == "waiting"


def test_the_gate_swaps_a_candidate_that_is_not_worse(
    served_before_new_data: tuple[Store, Path, Path],
) -> None:
    store, model_dir, new_events = served_before_new_data
    before = manifest(model_dir)
    ingest(store, new_events, show_progress=False)
    report = retrain_cycle(store, model_dir, min_new_events=100, tolerance=1.0)
    assert report.decision == "swapped" and report.new_events > 1000
    assert 0 < report.served["ndcg@10"] < 1 and 0 < report.candidate["ndcg@10"] < 1
    after = manifest(model_dir)
    assert after["trained_until_ts"] > before["trained_until_ts"]  # type: ignore[operator]
    assert after["training_events"] > before["training_events"]  # type: ignore[operator]


def test_the_gate_keeps_the_served_model_when_the_candidate_is_worse(
    served_before_new_data: tuple[Store, Path, Path],
) -> None:
    store, model_dir, new_events = served_before_new_data
    before = (model_dir / "manifest.json").read_text()
    ingest(store, new_events, show_progress=False)
    # a negative tolerance demands a candidate ten times better: it cannot be, so it is kept
    report = retrain_cycle(store, model_dir, min_new_events=100, tolerance=-9.0)
    assert report.decision == "kept"
    assert (model_dir / "manifest.json").read_text() == before


def test_the_gate_accepts_a_retrained_model_of_the_same_quality_at_its_default_tolerance(
    served_before_new_data: tuple[Store, Path, Path],
) -> None:
    store, model_dir, new_events = served_before_new_data
    ingest(store, new_events, show_progress=False)
    report = retrain_cycle(store, model_dir, min_new_events=100)
    # the same recipe with more data scores within noise of the served model on one holdout
    assert report.holdout_users > 100
    assert abs(report.candidate["ndcg@10"] - report.served["ndcg@10"]) < 0.02
    assert report.decision == "swapped"


def test_the_gate_refuses_a_clearly_worse_candidate_at_its_default_tolerance(
    shop_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """Bots buying the same junk right after the served model's training make a retrained
    popularity model recommend that junk to everyone: it is refused."""
    store, model_dir, new_events = serve_before_new_data(shop_files, tmp_path, "popular", None)
    real = pq.read_table(new_events)
    cut = pc.min(real.column("ts")).as_py()
    later = real.set_column(real.column_names.index("ts"), "ts", pc.add(real.column("ts"), 86_400))
    bots = [f"BOT{n:05d}" for n in range(800)]
    junk = [f"JUNK{n:02d}" for n in range(10)]
    burst = pa.table(
        {
            "user_id": [bot for bot in bots for _ in junk],
            "item_id": junk * len(bots),
            "ts": pa.array([cut] * (len(bots) * len(junk)), pa.int64()),
            "qty": pa.array([1] * (len(bots) * len(junk)), pa.int32()),
            "event_type": ["purchase"] * (len(bots) * len(junk)),
        }
    )
    arriving = pa.concat_tables([burst, later.select(burst.column_names).cast(burst.schema)])
    pq.write_table(arriving, tmp_path / "arriving.parquet")
    ingest(store, tmp_path / "arriving.parquet", show_progress=False)
    before = manifest(model_dir)
    report = retrain_cycle(store, model_dir, min_new_events=100)
    assert report.decision == "kept", report
    assert report.candidate["ndcg@10"] < 0.5 * report.served["ndcg@10"]
    assert manifest(model_dir) == before


def test_swapping_models_under_load_fails_no_request(
    shop_db: Path, als_artifact: Path, tmp_path: Path
) -> None:
    db, model = copy_shop(shop_db, als_artifact, tmp_path)
    env = {"MODEL_WATCH_INTERVAL": "0.2", "INBOX_DRAIN_INTERVAL": "0"}
    failures: list[str] = []
    served = 0
    stop = threading.Event()
    with running_server(model, db, tmp_path, env) as url:

        def hammer(worker: int) -> None:
            nonlocal served
            with httpx.Client(base_url=url, timeout=10) as client:
                n = 0
                while not stop.is_set():
                    n += 1
                    try:
                        r = client.get(
                            "/recommend", params={"user_id": f"U{(worker * 97 + n) % 600:05d}"}
                        )
                        if r.status_code != 200 or len(r.json()["recommendations"]) != 10:
                            failures.append(f"{r.status_code}: {r.text[:200]}")
                        served += 1
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))

        threads = [threading.Thread(target=hammer, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        # a different model type written over the served artifact, as the worker does
        train(
            Store(db),
            "popular",
            model,
            test_size=0,
            show_progress=False,
        )
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/health").json()["model_type"] != "popular":
            assert time.monotonic() < deadline, "the new model was never swapped in"
            time.sleep(0.1)
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert served > 100
