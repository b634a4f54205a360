"""What the second-stage ranker costs over HTTP, next to plain ALS on the same shop.

The 100k-item shop shared with serving_load and index_recall (100,000 users, 100,341 items in
the model, 1.5M events; built on first use) gets a ranker artifact: LightGBM LambdaRank over
200 candidates from each of ALS (64 factors; served through the HNSW index ``train`` builds
for it, trained on exact scores), trending and bought-together (the co-visitation table), 150
trees; trained once and reused while its params match. Each artifact is then served by
``recsys-lite serve`` (the product's server, one process unless --workers, keys and rate
limits on) and measured

a) over one kept-alive connection (httpx, sequential): /recommend for random known users and
   for users the model has never seen (the popular fallback);
b) under load with wrk -t2 -c32 (--rounds runs of --duration seconds each, known users): the
   requests per second, wrk's latencies and the server's CPU time per request (from /proc,
   every process of ``serve --workers N``), the figure that does not depend on how busy the
   shared machine is.

In process on the same artifact: each stage's CPU per request, and how much of ALS's exact top
200 the index finds (and how often the served top 10 is the one exact ALS scores would give).
``--quality`` instead holds out the shop's last 20% of events (by time), trains the ranker on
the rest and scores NDCG@10 on them with ALS's candidates exact and through the index
(``ranker_serving_quality.json``).

The same is measured for the shop's ALS artifact, through its HNSW index (how ALS is served)
and exactly (``use_faiss=false``, the ALS scores the ranker's first stage computes), so the
difference is the ranker's own cost. Target: single-connection p99 ≤ 20 ms and ≥ 1,500
requests/s under 32 connections. wrk shares the two cores with the server, so throughput is a
lower bound for load that comes over the network.

    python bench/ranker_serving.py [--requests 1000] [--duration 10] [--rounds 3] [--retrain]
        [--workers 1] [--only ranker|als] [--name NAME] [--quality]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from _common import (
    WORK,
    Catalog,
    console,
    prepare_catalog,
    table,
    verdict,
    warn_if_busy,
    write_results,
)
from ranker_latency import stage_cpu
from recsys_lite.config import Settings
from recsys_lite.data.store import Store
from recsys_lite.evaluation.evaluate import evaluate_model
from recsys_lite.evaluation.split import temporal_split
from recsys_lite.models.artifact import load_artifact
from recsys_lite.ranking.candidates import best_of
from recsys_lite.ranking.ranker import RankerModel
from recsys_lite.ranking.ranker_stage import searchable
from recsys_lite.training import train
from serving_load import (
    LUA_DONE,
    LUA_RANDOM_USER,
    free_port,
    required_wrk,
    run_wrk,
    running_server,
    sequential_latency,
)

NAME = "ranker_serving"
P99_TARGET_MS = 20.0
RPS_TARGET = 1_500.0
LUA_USER_IDS = 5_000
RANKER_PARAMS: dict[str, Any] = {
    "retrievers": ["als"],
    "retriever_params": {"als": {"factors": 64}},
    "candidates": 200,
    "cuts": 1,
    "trees": 150,
    "max_train_users": 2_000,
}


def ranker_artifact(catalog: Catalog, retrain: bool) -> tuple[Path, float]:
    """The ranker trained on the shared shop (once); the seconds it took, 0 when reused."""
    path = catalog.folder / "artifact-ranker"
    manifest = path / "manifest.json"
    if not retrain and manifest.is_file():
        params = json.loads(manifest.read_text())["params"]
        if all(params.get(key) == value for key, value in RANKER_PARAMS.items()):
            return path, 0.0
    console.print("training the ranker on the 100k-item shop (once)...")
    started = time.perf_counter()
    # no /search index: it embeds every catalog text and has no part in /recommend
    settings = Settings(search_index="off")
    train(
        Store(catalog.db),
        "ranker",
        path,
        params=RANKER_PARAMS,
        test_size=0,
        settings=settings,
        show_progress=False,
    )
    return path, time.perf_counter() - started


def index_agreement(model: RankerModel, users: np.ndarray) -> dict[str, Any]:
    """ALS's top N through the retriever's index against its exact top N (the share of the
    exact items found), and the served top 10 against the one exact candidates give."""
    als = model.stage.retrievers[0]
    index = searchable(als)
    if index is None:
        return {"index": None}
    n = model.params.candidates
    found, same_top, overlap = [], 0, []
    for user in users.tolist():
        seen = model.seen_items(user)
        exact = best_of(als.score_users(np.array([user]))[0], n, seen)
        searched = model.stage.searched(0, index, user, seen, n)
        found.append(len(np.intersect1d(exact.items, searched.items)) / max(len(exact.items), 1))
        served = model.recommend(model.user_map.ids[user], 10).items
        als.user_index = None  # the same request with ALS's exact top N
        try:
            wanted = model.recommend(model.user_map.ids[user], 10).items
        finally:
            als.user_index = index
        same_top += bool(np.array_equal(served, wanted))
        overlap.append(len(np.intersect1d(served, wanted)) / max(len(wanted), 1))
    return {
        "index": index.kind,
        "links": model.params.index_links,
        "ef_search": model.params.index_ef_search,
        "users": len(users),
        "als_recall_of_exact_top_n": round(float(np.mean(found)), 4),
        "als_recall_of_exact_top_n_p5": round(float(np.percentile(found, 5)), 4),
        "served_top_10_equal_to_exact": round(same_top / len(users), 4),
        "served_top_10_overlap_with_exact": round(float(np.mean(overlap)), 4),
    }


def quality(catalog: Catalog, start_load: float) -> None:
    """NDCG@10 on the shop's last 20% of events of a ranker trained on the rest, with ALS's
    candidates exact and through its index."""
    store = Store(catalog.db)
    split = temporal_split(store.read_events(), 0.2)
    started = time.perf_counter()
    model = RankerModel(RANKER_PARAMS).fit(split.train, split.catalog(store.read_items()))
    fit_seconds = time.perf_counter() - started
    rows: dict[str, Any] = {"exact": evaluate_model(model, split.test)}
    started = time.perf_counter()
    model.build_indexes("auto")
    index_seconds = time.perf_counter() - started
    rows["index"] = evaluate_model(model, split.test)
    users = np.random.default_rng(0).choice(len(model.user_map), 300, replace=False)
    agreement = index_agreement(model, users)
    console.print(
        table(
            "ranker NDCG@10 on the last 20% of the 100k shop's events",
            ["ALS candidates", "users", "ndcg@10", "recall@10", "hr@10", "seconds"],
            [
                [k, v["users_evaluated"], *(v["metrics"][m] for m in ("ndcg@10", "recall@10",
                 "hr@10")), v["seconds"]]
                for k, v in rows.items()
            ],
        )
    )  # fmt: skip
    console.print(agreement)
    write_results(
        f"{NAME}_quality",
        {
            "load_average_1m_at_start": start_load,
            "split": split.description,
            "ranker_params": RANKER_PARAMS,
            "fit_seconds": round(fit_seconds, 1),
            "index_build_seconds": round(index_seconds, 1),
            "served": model.validation["served"],
            "validation": model.validation,
            "metrics": rows,
            "index_agreement": agreement,
        },
    )


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants (``serve --workers N`` answers
    from child processes), from /proc (Linux)."""
    parents: dict[int, int] = {}
    spent: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while the table was read
            continue
        child = int(stat.parent.name)
        parents[child] = int(fields[1])
        spent[child] = (int(fields[11]) + int(fields[12])) / tick
    total, found = 0.0, [pid]
    while found:
        current = found.pop()
        total += spent.get(current, 0.0)
        found += [child for child, parent in parents.items() if parent == current]
    return total


def measure(
    artifact: Path,
    db: Path,
    label: str,
    known: list[str],
    lua_ids: list[str],
    args: argparse.Namespace,
    extra: str = "",
) -> dict[str, Any]:
    folder = WORK / NAME
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / f"{label.replace(' ', '_')}.lua"
    quoted = ", ".join(f'"{u}"' for u in lua_ids)
    script.write_text(LUA_RANDOM_USER % (quoted, "/recommend") + LUA_DONE)
    if extra:  # the Lua builds "/recommend?k=10&user_id=..."; options go before the id
        text = script.read_text().replace("?k=10&user_id=", f"?k=10{extra}&user_id=")
        script.write_text(text)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = folder / f"{label.replace(' ', '_')}.log"
    out: dict[str, Any] = {"label": label, "artifact": artifact.name}
    with running_server(artifact, db, port, log, None, args.workers) as server:
        with httpx.Client(base_url=base, timeout=30) as client:
            paths = [f"/recommend?k=10{extra}&user_id={u}" for u in known]
            out["known_user"] = sequential_latency(client, paths, "/recommend known user")
            newcomers = [f"/recommend?k=10{extra}&user_id=newcomer-{n}" for n in range(len(known))]
            out["unknown_user"] = sequential_latency(client, newcomers, "/recommend unknown user")
            source = client.get(paths[0]).json()
            out["served_by"] = source.get("source") or source.get("model")
        out["wrk"] = []
        for round_number in range(1, args.rounds + 1):
            cpu_before = tree_cpu_seconds(server.pid)
            stats = run_wrk(args.wrk, f"{base}/recommend", script, args.duration, label)
            cpu_ms = (tree_cpu_seconds(server.pid) - cpu_before) * 1000
            stats["server_cpu_ms_per_request"] = round(cpu_ms / max(stats["requests"], 1), 4)
            stats["round"] = round_number
            stats.pop("wrk_output", None)
            out["wrk"].append(stats)
    rps = [w["requests_per_second"] for w in out["wrk"]]
    cpu = [w["server_cpu_ms_per_request"] for w in out["wrk"]]
    out["requests_per_second_median"] = float(np.median(rps)) if rps else None
    out["server_cpu_ms_per_request_median"] = float(np.median(cpu)) if cpu else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000, help="sequential requests")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per server")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain", action="store_true", help="train the ranker again")
    parser.add_argument("--name", default=NAME, help="results file name (bench/results/NAME.json)")
    parser.add_argument("--workers", type=int, default=1, help="serve --workers for every server")
    parser.add_argument(
        "--only", choices=("ranker", "als"), default=None, help="measure one model's servers only"
    )
    parser.add_argument(
        "--quality", action="store_true", help="NDCG@10 with exact and indexed candidates only"
    )
    args = parser.parse_args()
    args.wrk = required_wrk()

    start_load = warn_if_busy()
    catalog = prepare_catalog()
    if args.quality:
        quality(catalog, start_load)
        return
    ranker, train_seconds = ranker_artifact(catalog, args.retrain)
    ranker_manifest = json.loads((ranker / "manifest.json").read_text())
    with np.load(ranker / "model.npz", allow_pickle=False) as arrays:
        known_users = arrays["user_ids"].astype(str)
        validation = json.loads(str(arrays["validation"][0]))
    rng = np.random.default_rng(args.seed)
    picked = rng.choice(known_users, size=args.requests + 100).tolist()
    lua_ids = rng.choice(known_users, size=LUA_USER_IDS, replace=False).tolist()

    # where one answer's CPU goes, in this process on the same artifact (the server runs the
    # same functions): the stages of ``recommend`` for known users
    model = load_artifact(ranker).model
    assert isinstance(model, RankerModel)
    users = np.array([model.user_map.index(u) for u in picked[:300]])
    model.recommend(picked[0], 10)  # the booster is parsed on first use
    stages, candidates = stage_cpu(model, users)
    agreement = index_agreement(model, users)
    del model
    console.print(
        table(
            "ranker CPU per request by stage (ms, mean)",
            ["stage", "ms"],
            [[name, ms] for name, ms in stages.items()],
        )
    )

    runs = []
    if args.only in (None, "ranker"):
        runs.append(measure(ranker, catalog.db, "ranker", picked, lua_ids, args))
    if args.only in (None, "als"):
        als = catalog.artifact
        runs.append(measure(als, catalog.db, "als hnsw", picked, lua_ids, args))
        exact = "&use_faiss=false"
        runs.append(measure(als, catalog.db, "als exact", picked, lua_ids, args, exact))

    rows = []
    for run in runs:
        known, unknown = run["known_user"]["latency_ms"], run["unknown_user"]["latency_ms"]
        rows.append(
            [
                run["label"],
                known["p50"],
                known["p99"],
                unknown["p50"],
                unknown["p99"],
                run["requests_per_second_median"],
                run["server_cpu_ms_per_request_median"],
            ]
        )
    console.print(
        table(
            f"/recommend, {args.requests:,} sequential requests; wrk -t2 -c32 x{args.rounds}",
            [
                "served",
                "known p50 ms",
                "known p99 ms",
                "unknown p50 ms",
                "unknown p99 ms",
                "requests/s (median)",
                "server CPU ms/request",
            ],
            rows,
        )
    )
    ranked = [run for run in runs if run["label"] == "ranker"]
    p99 = ranked[0]["known_user"]["latency_ms"]["p99"] if ranked else None
    rps = (ranked[0]["requests_per_second_median"] or 0.0) if ranked else None
    if p99 is not None and rps is not None:
        console.print(
            f"ranker: single-connection p99 {p99:.2f} ms (target ≤ {P99_TARGET_MS:.0f})"
            f" {verdict(p99 <= P99_TARGET_MS)}; {rps:,.0f} requests/s under 32 connections"
            f" (target ≥ {RPS_TARGET:,.0f}) {verdict(rps >= RPS_TARGET)}"
        )
    write_results(
        args.name,
        {
            "load_average_1m_at_start": start_load,
            "shop": {
                "n_items": ranker_manifest["n_items"],
                "n_users": ranker_manifest["n_users"],
                "events": 1_500_000,
            },
            "ranker_params": RANKER_PARAMS,
            "ranker_served": validation["served"],
            "ranker_train_seconds": round(train_seconds, 1) if train_seconds else "reused",
            "ranker_validation": validation,
            "ranker_cpu_ms_by_stage_in_process": stages,
            "ranker_candidates_per_request_mean": candidates,
            "ranker_index_agreement": agreement,
            "server_workers": args.workers,
            "wrk_rounds": args.rounds,
            "wrk_seconds_per_run": args.duration,
            "targets": {"p99_ms": P99_TARGET_MS, "requests_per_second": RPS_TARGET},
            "runs": runs,
            "single_connection_p99_met": None if p99 is None else p99 <= P99_TARGET_MS,
            "requests_per_second_met": None if rps is None else rps >= RPS_TARGET,
        },
    )


if __name__ == "__main__":
    main()
