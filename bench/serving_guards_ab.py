"""What do keys, limits and rate limiting cost the serving benchmark's throughput ratio?

An A/B of two source trees on one machine: this tree (keys and the rate limiter on; or a clean
checkout of a commit, ``--new-src``) against the version before keys and limits (6c11907,
checked out elsewhere with ``git worktree add``). Both serve copies of the same 100k-item ALS
artifact and store (serving_load's catalog, built once), each run from a fresh copy, with the
same interpreter and dependencies; only ``PYTHONPATH`` tells them apart. Runs alternate old,
new, old, new (``--pairs``), and each run is what serving_load measures under load:
``--rounds`` interleaved wrk pairs (/health, then /recommend, ``-t2 -c32``, the same Lua), the
ratio being /recommend requests/s ÷ /health requests/s of the same server, median over the
rounds.

The server gets ``ADMIN_API_KEY`` and ``RATE_LIMIT_PER_IP=1000000`` in both trees (the old one
ignores the limit): the new one then checks the client's address against its rate limiter on
every request, with a budget no load generator here reaches. Each server prints where it
imported recsys_lite from and its rate limit settings, and is asked ``GET /users/x/profile``
(a route the old tree lacks: 404 there, 401 without a key on the new one).

Target: the ratio drops by no more than 5% with keys, limits and rate limiting on. /health
passes the same guards as /recommend, so a fixed cost per request hardly moves the ratio; the
server's CPU time per request of each endpoint (from /proc) is reported beside it.

``--ablation`` measures the guards alone: one tree (``--new-src``) served with no key, no rate
limit and the guard middleware bypassed by the launcher ("off"), against the same tree with the
key and the rate limiter on ("on"); everything else in the request path is the same code.

    python bench/serving_guards_ab.py --ablation [--new-src SRC] --name serving_guards_ablation
    python bench/serving_guards_ab.py --old-src /work/serving_old/src [--new-src SRC]
        [--pairs 2] [--rounds 5] [--duration 10] [--name serving_guards_ab]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from _common import (
    ROOT,
    WORK,
    console,
    load_average,
    prepare_catalog,
    table,
    verdict,
    warn_if_busy,
    write_results,
)
from serving_load import (
    BENCH_KEY,
    LUA_DONE,
    LUA_RANDOM_USER,
    LUA_USER_IDS,
    free_port,
    process_cpu_seconds,
    run_wrk,
    stop,
    wait_until_healthy,
)

NAME = "serving_guards_ab"
MAX_DROP = 0.05
WARMUP = 300
SOURCE_MARKER = "SERVED-FROM "
GUARDS_OFF_ENV = "RECSYS_BENCH_GUARDS_OFF"

# The entry point's own code (recsys_lite.cli's app), after one line naming what was imported:
# the venv's recsys-lite script would import the editable install, i.e. always this tree.
LAUNCHER = f"""
import sys
GUARDS_OFF_ENV = {GUARDS_OFF_ENV!r}
import recsys_lite
from recsys_lite.config import get_settings
settings = get_settings()
print({SOURCE_MARKER!r} + recsys_lite.__file__ + " rate_limit_per_ip="
      + str(getattr(settings, "rate_limit_per_ip", None)) + " admin_key="
      + str(bool(getattr(settings, "admin_api_key", None))), flush=True)
import os
if os.environ.get(GUARDS_OFF_ENV) == "1":
    # the ablation's "off" server: the guard middleware hands every request straight on
    from recsys_lite.serving import guards

    async def pass_through(self, scope, receive, send):
        await self.app(scope, receive, send)

    guards.GuardMiddleware.__call__ = pass_through
    print({SOURCE_MARKER!r} + "guards=off", flush=True)
from recsys_lite.cli import app
sys.argv[0] = "recsys-lite"
app()
"""


def tree_commit(src: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    commit = done.stdout.strip() or "unknown"
    changed = subprocess.run(
        ["git", "-C", str(src), "status", "--porcelain", "--", "."],
        capture_output=True,
        text=True,
        check=False,
    )
    return commit + ("+uncommitted" if changed.stdout.strip() else "")


def fresh_copy(artifact: Path, db: Path, folder: Path) -> tuple[Path, Path]:
    """The shared artifact and store copied into an empty folder (a server may write beside
    its store, and the catalog's own store may be open in other benchmarks)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    copied_artifact = folder / "artifact"
    shutil.copytree(artifact.resolve(), copied_artifact)
    copied_db = folder / "store.db"
    shutil.copy2(db, copied_db)
    return copied_artifact, copied_db


@contextlib.contextmanager
def tree_server(
    src: Path, artifact: Path, db: Path, port: int, log: Path, guards_off: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(
        os.environ,
        LOG_LEVEL="WARNING",
        ADMIN_API_KEY=BENCH_KEY,
        RATE_LIMIT_PER_IP="1000000",
        PYTHONPATH=str(src),
    )
    if guards_off:  # no key, no limit, and the middleware itself bypassed (LAUNCHER)
        env.pop("ADMIN_API_KEY")
        env.update(RATE_LIMIT_PER_IP="0", **{GUARDS_OFF_ENV: "1"})
    command = [sys.executable, "-c", LAUNCHER, "serve", "--model-dir", str(artifact)]
    command += ["--db", str(db), "--port", str(port)]
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=log.parent
        )
        try:
            wait_until_healthy(process, port, log)
            yield process
        finally:
            stop(process)


def served_from(log: Path) -> str:
    found = [
        line[len(SOURCE_MARKER) :]
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith(SOURCE_MARKER)
    ]
    return " ".join(found) or "unknown"


def one_run(
    tree: str,
    src: Path,
    number: int,
    catalog_artifact: Path,
    catalog_db: Path,
    scripts: dict[str, Path],
    warm_paths: list[str],
    wrk: str,
    rounds: int,
    duration: int,
) -> dict[str, Any]:
    folder = WORK / NAME / f"run{number}-{tree}"
    artifact, db = fresh_copy(catalog_artifact, catalog_db, folder)
    load_before = load_average()
    console.rule(f"run {number}: {tree} tree ({src}), load average {load_before}")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = folder / "server.log"
    loaded: list[dict[str, Any]] = []
    loads: list[float] = []
    with tree_server(src, artifact, db, port, log, guards_off=tree == "off") as server:
        with httpx.Client(base_url=base, timeout=10) as client:
            profile_status = client.get("/users/x/profile").status_code
            for path in warm_paths:
                client.get(path).raise_for_status()
                client.get("/health").raise_for_status()
        for round_number in range(1, rounds + 1):
            for path in ("/health", "/recommend"):
                loads.append(load_average())
                cpu_before = process_cpu_seconds(server.pid)
                stats = run_wrk(wrk, f"{base}{path}", scripts[path], duration, f"{tree} {path}")
                cpu_ms = (process_cpu_seconds(server.pid) - cpu_before) * 1000
                stats["server_cpu_ms_per_request"] = round(cpu_ms / max(stats["requests"], 1), 4)
                stats["round"] = round_number
                stats.pop("wrk_output", None)
                loaded.append(stats)
    health = [w for w in loaded if w["endpoint"].endswith("/health")]
    recommend = [w for w in loaded if w["endpoint"].endswith("/recommend")]
    ratios = [
        r["requests_per_second"] / h["requests_per_second"]
        for h, r in zip(health, recommend, strict=True)
    ]
    return {
        "run": number,
        "tree": tree,
        "src": str(src),
        "commit": tree_commit(src),
        "served_from": served_from(log),
        "profile_route_status": profile_status,
        "ratio_per_round": [round(r, 4) for r in ratios],
        "median_ratio": round(float(np.median(ratios)), 4),
        "health_rps_per_round": [h["requests_per_second"] for h in health],
        "recommend_rps_per_round": [r["requests_per_second"] for r in recommend],
        "median_health_rps": round(float(np.median([h["requests_per_second"] for h in health])), 1),
        "median_recommend_rps": round(
            float(np.median([r["requests_per_second"] for r in recommend])), 1
        ),
        "server_cpu_ms_per_request": {
            "health": round(float(np.median([h["server_cpu_ms_per_request"] for h in health])), 4),
            "recommend": round(
                float(np.median([r["server_cpu_ms_per_request"] for r in recommend])), 4
            ),
        },
        "non_2xx": sum(w["non_2xx"] for w in loaded),
        "socket_errors": sum(w["socket_errors"] for w in loaded),
        "load_average_1m_before": load_before,
        "load_average_1m_during": {
            "mean": round(float(np.mean(loads)), 2),
            "min": min(loads),
            "max": max(loads),
        },
        "wrk": loaded,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-src", type=Path, help="src/ of the version before keys and limits")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="one tree (--new-src) with its guards off (no key, no limit, the middleware"
        " bypassed) against on, instead of an old tree against a new one",
    )
    parser.add_argument(
        "--new-src",
        type=Path,
        default=ROOT / "src",
        help="src/ with keys and limits (default: this tree's; a clean checkout of a commit"
        " keeps work in progress out of the measurement)",
    )
    parser.add_argument("--pairs", type=int, default=2, help="old, new pairs of runs")
    parser.add_argument("--rounds", type=int, default=5, help="wrk /health, /recommend pairs")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=NAME, help="results file name (bench/results/NAME.json)")
    args = parser.parse_args()

    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    if args.ablation:
        trees = {"off": args.new_src.resolve(), "on": args.new_src.resolve()}
    elif args.old_src is None:
        raise SystemExit("--old-src is needed unless --ablation")
    else:
        trees = {"old": args.old_src.resolve(), "new": args.new_src.resolve()}
    base_tree, tested_tree = trees
    for src in trees.values():
        if not (src / "recsys_lite" / "cli.py").is_file():
            raise SystemExit(f"{src} holds no recsys_lite package")

    start_load = warn_if_busy()
    catalog = prepare_catalog()
    with np.load(catalog.artifact / "model.npz", allow_pickle=False) as arrays:
        known_users = arrays["user_ids"].astype(str)
    rng = np.random.default_rng(args.seed)
    folder = WORK / NAME
    folder.mkdir(parents=True, exist_ok=True)
    lua_ids = rng.choice(known_users, size=min(LUA_USER_IDS, len(known_users)), replace=False)
    quoted_ids = ", ".join(f'"{u}"' for u in lua_ids.tolist())
    scripts = {path: folder / f"{path.strip('/')}.lua" for path in ("/health", "/recommend")}
    for path, script in scripts.items():
        script.write_text(LUA_RANDOM_USER % (quoted_ids, path) + LUA_DONE)
    warm_paths = [f"/recommend?k=10&user_id={u}" for u in rng.choice(known_users, size=WARMUP)]

    runs: list[dict[str, Any]] = []
    order = [base_tree, tested_tree] * args.pairs
    for number, tree in enumerate(order, start=1):
        runs.append(
            one_run(
                tree,
                trees[tree],
                number,
                catalog.artifact,
                catalog.db,
                scripts,
                warm_paths,
                wrk,
                args.rounds,
                args.duration,
            )
        )

    # each server must be the tree it stands for: imported from its src, and the profile route
    # (added with keys and limits) absent on the old one and behind a key on the new one
    # (in the ablation: the same tree, with the guards bypassed on exactly the "off" server)
    expected_profile = {"old": 404, "new": 401, "on": 401}
    checks = {
        tree: all(
            run["served_from"].startswith(str(trees[tree]))
            and run["profile_route_status"]
            == expected_profile.get(tree, run["profile_route_status"])
            and run["served_from"].endswith("guards=off") == (tree == "off")
            for run in runs
            if run["tree"] == tree
        )
        for tree in trees
    }
    limiter_on = all(
        "rate_limit_per_ip=1000000.0" in run["served_from"]
        for run in runs
        if run["tree"] == tested_tree
    )

    console.print(
        table(
            f"/recommend ÷ /health requests/s, wrk -t2 -c32 -d{args.duration}s,"
            f" {args.rounds} interleaved rounds per run",
            [
                "run",
                "tree",
                "commit",
                "ratio per round",
                "median ratio",
                "/health req/s",
                "/recommend req/s",
                "CPU ms/req health · rec",
                "non-2xx",
                "load before · during",
                "profile route",
            ],
            [
                [
                    r["run"],
                    r["tree"],
                    r["commit"],
                    " ".join(f"{x:.3f}" for x in r["ratio_per_round"]),
                    r["median_ratio"],
                    r["median_health_rps"],
                    r["median_recommend_rps"],
                    f"{r['server_cpu_ms_per_request']['health']:.3f} ·"
                    f" {r['server_cpu_ms_per_request']['recommend']:.3f}",
                    r["non_2xx"],
                    f"{r['load_average_1m_before']:.2f} ·"
                    f" {r['load_average_1m_during']['mean']:.2f}",
                    r["profile_route_status"],
                ]
                for r in runs
            ],
        )
    )

    # The ratio divides by /health, which passes the same guards as /recommend: a fixed cost
    # per request hardly moves it. The server's CPU time per request shows that cost directly.
    per_tree: dict[str, dict[str, Any]] = {}
    for tree in trees:
        mine = [r for r in runs if r["tree"] == tree]
        medians = [r["median_ratio"] for r in mine]
        per_tree[tree] = {
            "run_median_ratios": medians,
            "ratio": round(float(np.mean(medians)), 4),
            "spread": round(max(medians) - min(medians), 4),
            "server_cpu_ms_per_request": {
                path: round(float(np.mean([r["server_cpu_ms_per_request"][path] for r in mine])), 4)
                for path in ("health", "recommend")
            },
        }
    old, new = per_tree[base_tree]["ratio"], per_tree[tested_tree]["ratio"]
    change = new / old - 1
    met = change >= -MAX_DROP
    spread = max(per_tree[base_tree]["spread"], per_tree[tested_tree]["spread"])
    within_noise = abs(new - old) < spread
    during = [r["load_average_1m_during"]["mean"] for r in runs]
    console.print(
        table(
            f"keys, limits and rate limiting: the throughput ratio, {base_tree} against"
            f" {tested_tree}",
            [
                "tree",
                "run medians",
                "mean of run medians",
                "run-to-run spread",
                "server CPU ms/req health · rec",
                "server checked",
            ],
            [
                [
                    tree,
                    " ".join(f"{x:.3f}" for x in per_tree[tree]["run_median_ratios"]),
                    per_tree[tree]["ratio"],
                    per_tree[tree]["spread"],
                    f"{per_tree[tree]['server_cpu_ms_per_request']['health']:.4f} ·"
                    f" {per_tree[tree]['server_cpu_ms_per_request']['recommend']:.4f}",
                    verdict(checks[tree]),
                ]
                for tree in trees
            ],
        )
    )
    console.print(
        f"relative change {change:+.1%} (target: no drop beyond {MAX_DROP:.0%}) {verdict(met)};"
        f" difference {new - old:+.4f} against a run-to-run spread of {spread:.4f}"
        f" ({'within' if within_noise else 'beyond'} the noise); new tree's rate limiter on:"
        f" {limiter_on}; load average during the runs {min(during):.2f}-{max(during):.2f}"
    )

    write_results(
        args.name,
        {
            "what": "/recommend requests/s ÷ /health requests/s of the same server, median over"
            " interleaved wrk rounds; "
            + (
                "off = --new-src with no key, RATE_LIMIT_PER_IP=0 and the guard middleware"
                " bypassed, on = the same tree with ADMIN_API_KEY set and"
                " RATE_LIMIT_PER_IP=1000000"
                if args.ablation
                else "old = the version before keys and limits, new = --new-src with"
                " ADMIN_API_KEY set and RATE_LIMIT_PER_IP=1000000"
            ),
            "catalog": {"artifact": catalog.artifact.resolve().name, "db": "store.db (copied)"},
            "order": order,
            "wrk_rounds": args.rounds,
            "wrk_seconds_per_run": args.duration,
            "load_average_1m_at_start": start_load,
            "target_max_drop": MAX_DROP,
            "per_tree": per_tree,
            "relative_change": round(change, 4),
            "met": met,
            "difference_within_run_to_run_spread": within_noise,
            "servers_checked": checks,
            "new_rate_limiter_on": limiter_on,
            "load_average_1m_during_runs": {"min": min(during), "max": max(during)},
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
