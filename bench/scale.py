"""How do ingest, training and serving grow from 1M to 10M events? (100k items, 1M users at 10M)

For each size (1M, 3M, 10M events; 10 events per user, a 100k-item catalog; generated once by
the product's synthetic shop into bench/work/scale/, not timed) each stage runs in a child
process of its own (bench/_scale_stages.py), so its peak RSS is its own:

1. ingest: ``ingest`` of the events Parquet and items CSV into a fresh DuckDB file;
2. train, embedded ALS, with the default holdout (``test_size=0.2``: a fit on 80% and a
   full-ranking evaluation, then the final fit) and without it (``test_size=0``);
3. train, Spark ALS (``--engine spark``, ``local[2]``, ``test_size=0``), at the sizes given;
4. serve (10M by default): ``recsys-lite serve`` on the embedded artifact; start-up time, RSS,
   sequential /recommend latency and wrk throughput for known and unknown users.

The text index for /search is left out of training (SEARCH_INDEX=off): it encodes the catalog's
titles and does not depend on the events. Each measurement is kept in
bench/work/scale/<size>/<stage>.json, so sizes and stages can be run apart (Spark at 10M takes
long); every run writes bench/results/scale.json from all of them, each with its own load
average.

Target: at 10M events, ingest + embedded ALS train ≤ 180 s on the two cores, peak RSS ≤ 8 GB.

    python bench/scale.py [--sizes 1 3 10] [--stages ingest train-holdout train spark serve]
        [--spark-sizes 1 3] [--serve-size 10] [--duration 20]

`--sizes --stages` (both empty) measures nothing and rewrites the results from the kept files.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import time
from typing import Any

from _common import WORK, console, table, verdict, warn_if_busy, write_results
from _scale_serve import measure_serving
from _scale_stages import ITEMS, Size, run_stage, shop_files

NAME = "scale"
SCALE = WORK / "scale"
TARGET_SECONDS = 180.0
TARGET_RSS_MB = 8 * 1024
STAGES = ("ingest", "train-holdout", "train", "spark", "serve")


def load_measured() -> dict[str, dict[str, Any]]:
    """Every stage measured so far, by size label and stage (one file each, so runs of
    different stages can go on side by side)."""
    measured: dict[str, dict[str, Any]] = {}
    for millions in sorted(int(p.name.removesuffix("M")) for p in SCALE.glob("*M")):
        label = f"{millions}M"
        for stage in STAGES:
            path = SCALE / label / f"{stage}.json"
            if path.is_file():
                measured.setdefault(label, {})[stage] = json.loads(path.read_text())
    return measured


def record(measured: dict[str, dict[str, Any]], size: Size, stage: str, result: Any) -> None:
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    measured.setdefault(size.label, {})[stage] = result
    size.folder.mkdir(parents=True, exist_ok=True)
    (size.folder / f"{stage}.json").write_text(json.dumps(result, indent=2) + "\n")


def run_size(
    size: Size, stages: list[str], spark: bool, measured: dict[str, dict[str, Any]]
) -> None:
    events, items = shop_files(size)
    db, folder = size.folder / "store.db", size.folder
    if "ingest" in stages:
        console.print(f"[bold]{size.label}[/]: ingest")
        record(measured, size, "ingest", run_stage(
            "ingest", "--events", str(events), "--items", str(items), "--db", str(db),
            log=folder / "ingest.log",
        ))  # fmt: skip
    plans = [("train-holdout", "embedded", "0.2"), ("train", "embedded", "0")]
    if spark:
        plans.append(("spark", "spark", "0"))
    for stage, engine, test_size in plans:
        if stage not in stages:
            continue
        console.print(f"[bold]{size.label}[/]: {stage}")
        output = folder / ("als-spark" if engine == "spark" else "als")
        record(measured, size, stage, run_stage(
            "train", "--db", str(db), "--output", str(output), "--engine", engine,
            "--test-size", test_size, log=folder / f"{stage}.log",
        ))  # fmt: skip


def stage_rows(measured: dict[str, dict[str, Any]]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for label, stages in measured.items():
        for stage in STAGES[:-1]:
            r = stages.get(stage)
            if r is None:
                continue
            rows.append([
                f"{label} {stage}", r["seconds"], cpu_seconds(r), peak_mb(r),
                f"{r['load_average_1m_before']:.1f}",
            ])  # fmt: skip
    return rows


def peak_mb(result: dict[str, Any]) -> float:
    """The larger of the child's exact ``ru_maxrss`` and its process tree's sampled sum."""
    return float(max(result["own_peak_rss_mb"], result["tree_peak_rss_mb"]))


def cpu_seconds(result: dict[str, Any]) -> float:
    """CPU time of the stage's process tree; NaN for a Spark stage measured without its JVM's."""
    if "tree_cpu_seconds" in result:
        return float(max(result["cpu_seconds"], result["tree_cpu_seconds"]))
    return float("nan") if result.get("engine") == "spark" else float(result["cpu_seconds"])


def growth(measured: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """10M over 1M, per stage: wall seconds, CPU seconds and peak RSS."""
    small, large = measured.get("1M", {}), measured.get("10M", {})
    out: dict[str, dict[str, float]] = {}
    for stage in STAGES[:-1]:
        if stage in small and stage in large:
            a, b = small[stage], large[stage]
            out[stage] = {
                "seconds": round(b["seconds"] / a["seconds"], 2),
                "cpu_seconds": round(cpu_seconds(b) / cpu_seconds(a), 2),
                "peak_rss": round(peak_mb(b) / peak_mb(a), 2),
            }
    return out


def targets(measured: dict[str, dict[str, Any]]) -> dict[str, Any]:
    at = measured.get("10M", {})
    if "ingest" not in at:
        return {"measured": False}
    out: dict[str, Any] = {"measured": True, "seconds": TARGET_SECONDS, "rss_mb": TARGET_RSS_MB}
    for stage in ("train", "train-holdout"):
        if stage not in at:
            continue
        seconds = at["ingest"]["seconds"] + at[stage]["seconds"]
        cpu = cpu_seconds(at["ingest"]) + cpu_seconds(at[stage])
        rss = max(peak_mb(at["ingest"]), peak_mb(at[stage]))
        out[stage] = {
            "ingest_plus_train_seconds": round(seconds, 2),
            "ingest_plus_train_cpu_seconds": round(cpu, 2),
            # CPU time over two cores: the wall time an idle machine could not beat
            "idle_machine_floor_seconds": round(cpu / 2, 2),
            "peak_rss_mb": rss,
            "seconds_met": seconds <= TARGET_SECONDS,
            "rss_met": rss <= TARGET_RSS_MB,
        }
    return out


def sizes(label: str) -> dict[str, int]:
    size = Size(int(label.removesuffix("M")) * 1_000_000)
    return {"events": size.events, "users": size.users, "items": ITEMS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1, 3, 10], help="M events")
    parser.add_argument("--stages", nargs="*", choices=STAGES, default=list(STAGES))
    parser.add_argument("--spark-sizes", type=int, nargs="*", default=[1, 3])
    parser.add_argument("--serve-size", type=int, default=10)
    parser.add_argument("--duration", type=int, default=20, help="seconds of wrk per user kind")
    parser.add_argument("--requests", type=int, default=1_000, help="sequential requests")
    args = parser.parse_args()
    start_load = warn_if_busy()
    measured = load_measured()

    for millions in args.sizes:
        run_size(Size(millions * 1_000_000), args.stages, millions in args.spark_sizes, measured)
    serve_size = Size(args.serve_size * 1_000_000)
    if "serve" in args.stages:
        console.print(f"[bold]{serve_size.label}[/]: serve")
        record(measured, serve_size, "serve", measure_serving(
            serve_size.folder / "als", serve_size.folder / "store.db", serve_size.folder,
            duration=args.duration, requests=args.requests,
        ))  # fmt: skip

    console.print(
        table(
            "stages in child processes (wall s, CPU s of the whole child, peak RSS MB)",
            ["size stage", "wall s", "CPU s", "peak RSS MB", "load at start"],
            stage_rows(measured),
        )
    )
    grown = growth(measured)
    console.print(
        table(
            "growth from 1M to 10M events (10M / 1M)",
            ["stage", "wall", "CPU", "peak RSS"],
            [[s, g["seconds"], g["cpu_seconds"], g["peak_rss"]] for s, g in grown.items()],
        )
    )
    verdicts = targets(measured)
    for stage in ("train", "train-holdout"):
        if stage in verdicts:
            v = verdicts[stage]
            console.print(
                f"10M ingest + {stage}: {v['ingest_plus_train_seconds']:.0f} s"
                f" ({v['ingest_plus_train_cpu_seconds']:.0f} CPU s) ≤ {TARGET_SECONDS:.0f} s"
                f" {verdict(v['seconds_met'])}; peak RSS {v['peak_rss_mb']:,.0f} MB"
                f" ≤ 8 GB {verdict(v['rss_met'])}"
            )
    serving = measured.get(serve_size.label, {}).get("serve")
    write_results(
        NAME,
        {
            "dataset": {
                "generator": "recsys_lite.data.demo.generate",
                "items": ITEMS,
                "sizes": {label: sizes(label) for label in measured},
            },
            "search_index": "off (SEARCH_INDEX=off): it depends on the catalog, not the events",
            "load_average_1m_at_start": start_load,
            "stages": {
                label: {s: v for s, v in stages.items() if s != "serve"}
                for label, stages in measured.items()
            },
            "growth_1m_to_10m": grown,
            "targets": verdicts,
            "serve": serving,
        },
    )


if __name__ == "__main__":
    main()
