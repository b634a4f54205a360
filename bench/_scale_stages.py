"""The scale benchmark's data and stages: each stage runs in a child process of its own.

A stage is this file run as a script (``python bench/_scale_stages.py STAGE ...``): it does one
thing through the product's API (ingest, train) and prints one JSON line with its timings and
its own peak RSS (``ru_maxrss`` of a process that did nothing else). The parent samples the RSS
of the child's whole process tree from /proc as well, since a Spark stage's JVM is a grandchild
that ``ru_maxrss`` does not see.
"""

from __future__ import annotations

import os

# One BLAS thread: implicit runs its own thread pool, and BLAS threads underneath only contend
# with it. Set before numpy loads OpenBLAS, which reads it once.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import WORK, console

MARKER = "SCALEJSON "
TICKS = os.sysconf("SC_CLK_TCK")
ITEMS = 100_000
EVENTS_PER_USER = 10  # users grow with events: 1M users at 10M events
SEED = 11


@dataclass(frozen=True)
class Size:
    events: int

    @property
    def label(self) -> str:
        return f"{self.events // 1_000_000}M"

    @property
    def users(self) -> int:
        return self.events // EVENTS_PER_USER

    @property
    def folder(self) -> Path:
        return WORK / "scale" / self.label


def shop_files(size: Size) -> tuple[Path, Path]:
    """The size's events (Parquet) and items (CSV), generated once and then reused."""
    from recsys_lite.data import demo

    data = size.folder / "data"
    done = data / "complete"  # written last: a run stopped halfway leaves no usable files
    if not done.is_file():
        console.print(
            f"generating {size.events:,} events ({size.users:,} users, {ITEMS:,} items)..."
        )
        shutil.rmtree(data, ignore_errors=True)
        started = time.perf_counter()
        paths = demo.write(demo.generate(size.users, ITEMS, size.events, SEED), data)
        done.write_text(json.dumps([p.name for p in paths]))
        console.print(f"  generated in {time.perf_counter() - started:.1f} s (not timed)")
    events, items = (data / name for name in json.loads(done.read_text()))
    return events, items


# ----- measuring a child from the parent ---------------------------------------------------


def _children_of() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone since the listing
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeRss:
    """Peak of the summed RSS of a process and its descendants, sampled from /proc.

    Sampling misses a peak shorter than the interval; the stage's own ``ru_maxrss`` (exact, for
    its Python process) and each process's VmHWM seen are kept as well, and each process's CPU
    time at its last sample (a JVM's CPU time is nowhere else: ``RUSAGE_CHILDREN`` counts only
    the children a process waited for).
    """

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval = pid, interval
        self.peak_kb = 0
        self.hwm_kb: dict[int, int] = {}
        self.cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        children = _children_of()
        tree, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo += children.get(pid, [])
        self.peak_kb = max(self.peak_kb, sum(_status_kb(p, "VmRSS") for p in tree))
        for pid in tree:
            self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), _status_kb(pid, "VmHWM"))
            self.cpu[pid] = max(self.cpu.get(pid, 0.0), _cpu_seconds(pid))

    @property
    def cpu_seconds(self) -> float:
        return round(sum(self.cpu.values()), 2)

    @property
    def peak_mb(self) -> float:
        return round(self.peak_kb / 1024, 1)


def run_stage(stage: str, *args: str, log: Path) -> dict[str, Any]:
    """Run one stage in a fresh child; its JSON result plus wall time, RSS and load."""
    command = [sys.executable, str(Path(__file__).resolve()), stage, *args]
    # The text index for /search (a sentence encoder over the catalog's titles) is built by
    # training too, but depends on the catalog alone, not on the events: it is left out.
    env = dict(os.environ, SEARCH_INDEX="off")
    load_before = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    with log.open("w") as log_file:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log_file, text=True, env=env
        )
        with TreeRss(process.pid) as tree:
            out, _ = process.communicate()
    wall = time.perf_counter() - started
    lines = [x for x in out.splitlines() if x.startswith(MARKER)]
    if process.returncode != 0 or not lines:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"stage {stage} failed ({process.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1][len(MARKER) :])
    result.update(
        {
            "process_wall_seconds": round(wall, 2),  # including interpreter start and imports
            "tree_peak_rss_mb": tree.peak_mb,
            "largest_process_hwm_mb": round(max(tree.hwm_kb.values(), default=0) / 1024, 1),
            # up to the last sample of each process: a lower bound
            "tree_cpu_seconds": tree.cpu_seconds,
            "load_average_1m_before": load_before,
            "load_average_1m_after": round(os.getloadavg()[0], 2),
        }
    )
    return result


# ----- the stages, run in the child --------------------------------------------------------


def _emit(payload: dict[str, Any]) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    payload["own_peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux: kilobytes
    payload["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 2)
    print(MARKER + json.dumps(payload), flush=True)


def _ingest(args: argparse.Namespace) -> None:
    from recsys_lite.data.ingest import ingest
    from recsys_lite.data.store import Store

    db = Path(args.db)
    for stale in (db, Path(f"{db}.wal")):
        stale.unlink(missing_ok=True)  # a first load, not a duplicate check against old rows
    store = Store(db)
    started = time.perf_counter()
    report = ingest(store, Path(args.events), Path(args.items), show_progress=False)
    seconds = time.perf_counter() - started
    _emit(
        {
            "seconds": round(seconds, 2),
            "events_read": report.events_read,
            "events_added": report.events_added,
            "items_upserted": report.items_upserted,
            "db_mb": round(db.stat().st_size / 1e6, 1),
        }
    )


def _train(args: argparse.Namespace) -> None:
    from recsys_lite.data.store import Store
    from recsys_lite.engines.spark import model_factory, spark_session
    from recsys_lite.training import train

    session_seconds = 0.0
    if args.engine == "spark":
        # the JVM's start, paid once per training command, timed apart from the fit
        started = time.perf_counter()
        spark_session(args.master).sparkContext.setLogLevel("ERROR")
        session_seconds = time.perf_counter() - started
    started = time.perf_counter()
    result = train(
        Store(Path(args.db)),
        "als",
        Path(args.output),
        test_size=args.test_size,
        show_progress=False,
        model_factory=model_factory(args.engine, args.master),
    )
    seconds = time.perf_counter() - started
    metrics = result.metrics
    _emit(
        {
            "engine": args.engine,
            "test_size": args.test_size,
            "spark_session_seconds": round(session_seconds, 2) if args.engine == "spark" else None,
            "seconds": round(seconds + session_seconds, 2),
            "timings": result.timings,
            "holdout_fit_seconds": metrics.get("train_seconds"),
            "holdout_evaluate_seconds": metrics.get("seconds"),
            "holdout_users_evaluated": metrics.get("users_evaluated"),
            "holdout_ndcg@10": metrics.get("metrics", {}).get("ndcg@10"),
            "n_users": len(result.model.user_map),
            "n_items": len(result.model.item_map),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="one stage of bench/scale.py")
    stages = parser.add_subparsers(dest="stage", required=True)
    ingest = stages.add_parser("ingest")
    ingest.add_argument("--events", required=True)
    ingest.add_argument("--items", required=True)
    ingest.add_argument("--db", required=True)
    train = stages.add_parser("train")
    train.add_argument("--db", required=True)
    train.add_argument("--output", required=True)
    train.add_argument("--engine", choices=("embedded", "spark"), default="embedded")
    train.add_argument("--master", default="local[2]")
    train.add_argument("--test-size", type=float, default=0.2)
    args = parser.parse_args()
    {"ingest": _ingest, "train": _train}[args.stage](args)


if __name__ == "__main__":
    main()
