"""Experiments: assignment, answers that carry their variant, shadows, attribution of events,
the figures of /ab/status, and promoting a variant, against a real server on real files."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from conftest import AUTH, running_server
from recsys_lite.data.audit import audit_path
from recsys_lite.data.store import Store
from recsys_lite.experiments import stats
from recsys_lite.experiments.commands import publish_copy
from recsys_lite.experiments.design import Experiment, Variant, team_draft, team_of
from recsys_lite.experiments.report import interleaving
from recsys_lite.training import train

EXPERIMENT = Experiment(
    name="home",
    salt="s1",
    control="als",
    variants=(
        Variant("als", None, 0.7),
        Variant("pop", None, 0.3),
        Variant("shadowpop", None, 0.0, shadow=True),
    ),
)


def test_assignment_is_deterministic_and_honours_weights() -> None:
    users = [f"u{n}" for n in range(20_000)]
    first = [EXPERIMENT.assign(u) for u in users]
    assert first == [EXPERIMENT.assign(u) for u in users]
    share = Counter(first)["pop"] / len(users)
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / len(users))
    assert "shadowpop" not in first  # a shadow is never assigned
    resalted = Experiment("home", "s2", "als", EXPERIMENT.variants)
    moved = sum(a != resalted.assign(u) for a, u in zip(first, users, strict=True))
    assert moved > len(users) * 0.3  # another salt is another, independent split


def _planted(n: int, a: int, b: int, extra: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-shopper clicks and impressions, from a formula (the same on every machine)."""
    y = [5 + (i * a) % 7 for i in range(n)]
    x = [min(y[i], (i * b) % 5 + (i % 3 < extra)) for i in range(n)]
    return np.array(x, dtype=np.float64), np.array(y, dtype=np.float64)


def test_lift_and_srm_match_gbstats() -> None:
    control = stats.RatioStat.of(*_planted(40, 3, 2))
    treatment = stats.RatioStat.of(*_planted(45, 2, 3, extra=2))
    lift = stats.relative_lift(control, treatment)
    # gbstats 0.8.0 on the same shoppers: TwoSidedTTest(RatioStatistic control, RatioStatistic
    # treatment, FrequentistConfig(difference_type="relative")).compute_result()
    assert lift.relative == pytest.approx(0.3487394957983194, rel=1e-9)
    assert lift.ci_low == pytest.approx(-0.04237143587240372, rel=1e-6)
    assert lift.ci_high == pytest.approx(0.7398504274690425, rel=1e-6)
    assert lift.p_value == pytest.approx(0.07981653631545327, rel=1e-6)
    assert not lift.significant()
    # Pearson's chi-square: (100^2 / 5100) * 2 = 3.9216 on 1 df, p = 0.04767
    p, flagged = stats.sample_ratio_mismatch([5000, 5200], [0.5, 0.5])
    assert p == pytest.approx(0.0476703806561615, rel=1e-9) and not flagged  # gbstats check_srm
    p, flagged = stats.sample_ratio_mismatch([5000, 5400], [0.5, 0.5])
    assert p < 0.001 and flagged
    p, flagged = stats.sample_ratio_mismatch([7020, 2980], [0.7, 0.3])
    assert p == pytest.approx(0.6625205835400574, rel=1e-9) and not flagged  # gbstats check_srm
    assert stats.sign_test(60, 40) == pytest.approx(0.05689, abs=1e-4)


def test_team_draft_interleaves_both_lists_fairly() -> None:
    first, second = list(range(20)), [5, 19, 0, 7, 30, 31, 32, 33, 34, 35]
    items, teams = team_draft(first, second, 10, b"\x5a\x13")
    assert len(items) == len(set(items)) == 10
    assert abs(teams.count(0) - teams.count(1)) <= 1
    for team, ranked in ((0, first), (1, second)):
        picked = [i for i, t in zip(items, teams, strict=True) if t == team]
        assert picked == [i for i in ranked if i in picked]  # each team keeps its own order
    # clicks land on the team of their position, through the id alone
    from recsys_lite.experiments.design import interleaved_id

    rid = interleaved_id(teams)
    assert [team_of(rid, p) for p in range(10)] == teams
    experiment = Experiment(
        "il", "s", "a", (Variant("a", None, 1), Variant("b", None, 1)), "interleave"
    )
    one = teams.index(1)
    report = interleaving(experiment, [(rid, one, "u1"), (rid, one, "u1")])
    assert report["wins"] == {"a": 0, "b": 1} and report["preference"] == 1.0


@pytest.fixture(scope="module")
def experiment_server(
    tmp_path_factory: pytest.TempPathFactory, shop_db: Path, als_artifact: Path
) -> Iterator[tuple[str, Path, Path, Path]]:
    folder = tmp_path_factory.mktemp("experiment")
    db = folder / "recsys.db"
    shutil.copy(shop_db, db)
    pop = folder / "pop"
    train(Store(db), "popular", pop, show_progress=False)
    served = folder / "served"
    publish_copy(als_artifact, served)
    file = folder / "home.toml"
    file.write_text(
        f'name = "home"\nsalt = "s1"\ncontrol = "als"\n'
        f'[[variants]]\nname = "als"\nweight = 0.7\n'
        f'[[variants]]\nname = "pop"\nartifact = "{pop}"\nweight = 0.3\n'
        f'[[variants]]\nname = "shadowpop"\nartifact = "{pop}"\nshadow = true\n'
    )
    env = {
        "EXPERIMENT_FILE": str(file), "INBOX_DRAIN_INTERVAL": "0.3",
        "MODEL_WATCH_INTERVAL": "0.3",
    }  # fmt: skip
    with running_server(served, db, folder, env=env) as url:
        yield url, db, served, file


def _status(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/ab/status", headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_experiment_end_to_end(experiment_server: tuple[str, Path, Path, Path]) -> None:
    url, db, served, file = experiment_server
    assert httpx.get(f"{url}/ab/status").status_code == 401
    with Store(db).connect(read_only=True) as con:
        known = con.execute("SELECT DISTINCT user_id FROM events ORDER BY 1 LIMIT 60").fetchall()
    users = [row[0] for row in known]  # known to the control's model: personal lists
    answers = {}
    for user in users:
        body = httpx.get(f"{url}/recommend", params={"user_id": user, "k": 5}).json()
        assert body["variant"] == EXPERIMENT.assign(user)
        assert body["recommendation_id"].startswith(body["variant"] + ".")
        again = httpx.get(f"{url}/recommend", params={"user_id": user, "k": 5}).json()
        assert again["variant"] == body["variant"]  # sticky, with nothing stored
        answers[user] = body
    assert {a["variant"] for a in answers.values()} == {"als", "pop"}
    sources = {a["variant"]: a["source"] for a in answers.values()}
    assert sources["pop"] == "popular" and sources["als"] != "popular"

    # the shadow is scored after the answers, into its log; never in an answer
    shadow_log = db.parent / "shadow-home.jsonl"
    deadline = time.monotonic() + 20
    while not shadow_log.exists() or len(shadow_log.read_text().splitlines()) < len(users):
        assert time.monotonic() < deadline, "shadow lists were not logged"
        time.sleep(0.2)
    line = json.loads(shadow_log.read_text().splitlines()[0])
    assert line["variant"] == "shadowpop" and len(line["items"]) == 5 and "user_id" not in line

    # planted events citing the answers: impressions of all 5 items, clicks, purchases
    events: list[dict[str, Any]] = []
    expected: dict[str, dict[str, float]] = {
        v: {"users": 0, "impressions": 0, "clicks": 0, "purchases": 0, "revenue": 0.0}
        for v in ("als", "pop")
    }
    for n, (user, body) in enumerate(answers.items()):
        rid, variant, items = body["recommendation_id"], body["variant"], body["recommendations"]
        figures = expected[variant]
        figures["users"] += 1
        for position, item in enumerate(items):
            events.append(_event(user, item["item_id"], "impression", rid, position))
            figures["impressions"] += 1
        clicks = (n % 3) + (variant == "pop")
        for position in range(clicks):
            events.append(_event(user, items[position]["item_id"], "click", rid, position))
            figures["clicks"] += 1
        if n % 4 == 0:
            item = items[0]
            events.append(_event(user, item["item_id"], "purchase", rid, 0, qty=2))
            figures["purchases"] += 1
            figures["revenue"] += 2 * (item.get("price") or 0.0)
    events.append(_event(users[0], answers[users[0]]["recommendations"][0]["item_id"], "click"))
    response = httpx.post(f"{url}/events", json={"events": events}, headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text

    deadline = time.monotonic() + 30
    while (status := _status(url))["variants"]["als"]["impressions"] < expected["als"][
        "impressions"
    ]:
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
    for variant, figures in expected.items():
        got = status["variants"][variant]
        for key in ("users", "impressions", "clicks", "purchases"):
            assert got[key] == figures[key], (variant, key)
        assert got["revenue"] == pytest.approx(figures["revenue"], abs=0.01)
        assert got["ctr"] == pytest.approx(figures["clicks"] / figures["impressions"])
        assert got["conversion"] == pytest.approx(figures["purchases"] / figures["impressions"])
        assert got["revenue_per_impression"] == pytest.approx(
            figures["revenue"] / figures["impressions"], abs=1e-4
        )
    ctr = {v: f["clicks"] / f["impressions"] for v, f in expected.items()}
    lift = status["variants"]["pop"]["lift"]["ctr"]
    assert lift["relative"] == pytest.approx(ctr["pop"] / ctr["als"] - 1)
    assert lift["ci_low"] < lift["relative"] < lift["ci_high"]
    assert status["srm"]["expected_shares"] == {"als": 0.7, "pop": 0.3}
    assert status["shadow"]["dropped"] == 0 and status["shadow"]["logged"] >= len(users)

    # the export tells a shopper their variant, computed (nothing is stored)
    user = users[1]
    document = httpx.get(f"{url}/admin/users/{user}/export", headers=AUTH, timeout=30).json()
    assert document["not_kept"]["experiment_assignments"]["variant"] == answers[user]["variant"]

    # promote: the running server swaps the variant's model in as the default
    assert httpx.get(f"{url}/health").json()["model_type"] == "als"
    result = subprocess.run(
        [
            sys.executable, "-m", "recsys_lite.cli", "experiments", "promote",
            "--variant", "pop", "--experiment-file", str(file), "--db", str(db),
            "--model-dir", str(served),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/health").json()["model_type"] != "popular":
        assert time.monotonic() < deadline, "the promoted model was not swapped in"
        time.sleep(0.3)
    entries = [json.loads(line) for line in audit_path(db).read_text().splitlines()]
    promoted = [e for e in entries if e.get("action") == "experiment.promote"]
    assert promoted and promoted[-1]["details"]["variant"] == "pop"


def _event(
    user: str, item: str, kind: str, rid: str | None = None, position: int | None = None,
    qty: int = 1,
) -> dict[str, Any]:  # fmt: skip
    return {
        "user_id": user, "item_id": item, "event_type": kind, "recommendation_id": rid,
        "position": position, "qty": qty,
    }  # fmt: skip


def test_interleaving_serves_one_merged_list_and_credits_clicks_by_team(
    tmp_path: Path, shop_db: Path, als_artifact: Path
) -> None:
    db = tmp_path / "recsys.db"
    shutil.copy(shop_db, db)
    pop = tmp_path / "pop"
    train(Store(db), "popular", pop, show_progress=False)
    file = tmp_path / "il.json"
    file.write_text(
        json.dumps(
            {
                "name": "il",
                "salt": "x",
                "control": "als",
                "mode": "interleave",
                "variants": [{"name": "als"}, {"name": "pop", "artifact": str(pop)}],
            }
        )
    )
    with Store(db).connect(read_only=True) as con:
        known = con.execute("SELECT DISTINCT user_id FROM events ORDER BY 1 LIMIT 30").fetchall()
    env = {"EXPERIMENT_FILE": str(file), "INBOX_DRAIN_INTERVAL": "0.3"}
    with running_server(als_artifact, db, tmp_path, env=env) as url:
        events = []
        for (user,) in known:
            body = httpx.get(f"{url}/recommend", params={"user_id": user, "k": 10}).json()
            assert body["variant"] == "interleaved" and body["recommendation_id"].startswith("il.")
            ids = [item["item_id"] for item in body["recommendations"]]
            assert len(ids) == len(set(ids)) == 10
            teams = [team_of(body["recommendation_id"], p) for p in range(10)]
            assert abs(teams.count(0) - teams.count(1)) <= 1
            # these shoppers click only what the popularity model placed
            position = teams.index(1)
            events.append(_event(user, ids[position], "click", body["recommendation_id"], position))
        response = httpx.post(f"{url}/events", json={"events": events}, headers=AUTH, timeout=30)
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + 30
        while (report := (status := _status(url))["interleaving"])["answers_with_clicks"] < len(
            known
        ):
            assert time.monotonic() < deadline, report
            time.sleep(0.3)
    assert report["wins"] == {"als": 0, "pop": len(known)}
    assert report["preference"] == 1.0 and report["p_value"] < 0.001
    assert status["winner"] == "pop"  # what `experiments promote` would serve
