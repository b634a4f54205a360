"""What every benchmark shares: where scratch data and results go, and how results are written.

The scripts import this module by its bare name: ``python bench/NAME.py`` puts bench/ first on
the import path, so no package or install step is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from recsys_lite.models.artifact import library_versions

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / "work"  # git-ignored scratch space
RESULTS = BENCH / "results"

# Piped output gets Rich's 80-column default, which truncates the wider tables to ellipses.
console = Console(width=None if sys.stdout.isatty() else 160)


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def warn_if_busy() -> float:
    """The 1-minute load average, with a warning when other work competes for the cores.

    Timings taken while other processes keep the cores busy can be several times slower (worst
    for Faiss's OpenMP searches, which wait at a barrier for every thread); the load is recorded
    with the results so a slow figure can be told apart from a slow machine.
    """
    load = load_average()
    cores = os.cpu_count() or 1
    if load > 0.5 * cores:
        console.print(
            f"[yellow]warning:[/] load average {load:.2f} on {cores} cores before starting:"
            " other processes compete for the CPU and the timings will suffer"
        )
    return load


def machine() -> dict[str, Any]:
    """Enough context to tell whether two result files are comparable."""
    return {
        "cpu_count": os.cpu_count(),
        "load_average_1m_at_end": load_average(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "libraries": library_versions(),
    }


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {
        "benchmark": name,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        **payload,
    }
    path.write_text(json.dumps(document, indent=2, default=_jsonable) + "\n")
    console.print(f"results written to {path.relative_to(ROOT)}")
    return path


def _jsonable(value: Any) -> Any:
    # numpy scalars and paths turn up in result dicts; json refuses both
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


@dataclass
class Stopwatch:
    seconds: float = 0.0
    # CPU time of this process (all its threads): on a machine shared with other work, wall
    # time stretches while CPU time barely moves, so it tells a slow run from a busy machine
    cpu_seconds: float = 0.0


@contextmanager
def timed() -> Iterator[Stopwatch]:
    watch = Stopwatch()
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        yield watch
    finally:
        watch.seconds = time.perf_counter() - started
        watch.cpu_seconds = time.process_time() - cpu_started


def percentiles_ms(samples_seconds: Sequence[float] | np.ndarray) -> dict[str, float]:
    values = np.asarray(samples_seconds, dtype=np.float64) * 1000.0
    if values.size == 0:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "mean": 0.0}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(values.mean()), 3),
    }


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A rich table whose first column is left-aligned and the rest right-aligned (numbers)."""
    result = Table(title=title)
    for n, column in enumerate(columns):
        result.add_column(column, justify="left" if n == 0 else "right")
    for row in rows:
        result.add_row(*(_cell(value) for value in row))
    return result


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN: nothing measured
            return "-"
        # metrics live below 1 and want four decimals; seconds and rates above 1 want two
        return f"{value:,.4f}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(ok: bool) -> str:
    return "[green]met[/]" if ok else "[red]missed[/]"


@dataclass(frozen=True)
class Recipe:
    label: str
    model: str
    params: dict[str, Any] | None


def parse_variant(text: str) -> Recipe:
    """``MODEL LABEL=JSON``, e.g. ``als tuned={"alpha": 10}``."""
    try:
        head, params = text.split("=", 1)
        model, label = head.split()
        parsed = json.loads(params)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected 'MODEL LABEL=JSON', got {text!r}") from exc
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("the params must be a JSON object")
    return Recipe(f"{model} {label}", model, parsed)


def empty_work_folder(*parts: str) -> Path:
    """``bench/work/<parts>``, emptied: each run starts from nothing left by the last one."""
    folder = WORK.joinpath(*parts)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


# ----- the 1M-event shop shared by als_end_to_end and train_times ------------------------------

SHOP_USERS, SHOP_ITEMS, SHOP_EVENTS = 50_000, 20_000, 1_000_000


def million_event_shop(seed: int = 42) -> tuple[Path, Path]:
    """Events and items files of the synthetic 1M-event shop, generated once per seed."""
    from recsys_lite.data import demo

    folder = WORK / "shop1m" / f"seed{seed}"
    done = folder / "complete"  # written last: a run stopped halfway leaves no usable files
    if not done.is_file():
        console.print(
            f"generating {SHOP_EVENTS:,} events ({SHOP_USERS:,} users, {SHOP_ITEMS:,} items)..."
        )
        shutil.rmtree(folder, ignore_errors=True)
        paths = demo.write(demo.generate(SHOP_USERS, SHOP_ITEMS, SHOP_EVENTS, seed), folder)
        done.write_text(json.dumps([p.name for p in paths]))
    events, items = (folder / name for name in json.loads(done.read_text()))
    return events, items


# ----- the 100k-item catalog shared by index_recall and serving_load -----------------------------

# Popularity follows a power law, so a quarter of a generated catalog is never interacted with and
# never reaches the model: 155k generated items give the model (and its index) 100,341 items.
CATALOG_SPEC: dict[str, int] = {
    "n_users": 100_000,
    "n_items": 155_000,
    "n_events": 1_500_000,
    "seed": 7,
    "factors": 64,
}


@dataclass(frozen=True)
class Catalog:
    folder: Path
    db: Path
    artifact: Path
    build_seconds: float  # 0 when an earlier run's files were reused


def prepare_catalog(*, rebuild: bool = False) -> Catalog:
    """Synthetic 100k-item shop, its store and an ALS artifact, built once and then reused.

    Generating, ingesting and fitting take most of a minute; the benchmarks that use this only
    measure what happens after, so an earlier run's files are reused when the spec still matches.
    """
    from recsys_lite.data import demo
    from recsys_lite.data.ingest import ingest
    from recsys_lite.data.store import Store
    from recsys_lite.training import train

    folder = WORK / "catalog100k"
    db, artifact, spec_file = folder / "store.db", folder / "artifact", folder / "spec.json"
    spec = json.dumps(CATALOG_SPEC, sort_keys=True)
    built = spec_file.is_file() and spec_file.read_text() == spec
    if not rebuild and built and (artifact / "manifest.json").is_file() and db.is_file():
        return Catalog(folder, db, artifact, 0.0)

    console.print("building the 100k-item catalog, its store and an ALS artifact (once)...")
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    spec_file.unlink(missing_ok=True)  # written last: a half-built folder is never reused
    db.unlink(missing_ok=True)
    shop = demo.generate(
        CATALOG_SPEC["n_users"],
        CATALOG_SPEC["n_items"],
        CATALOG_SPEC["n_events"],
        CATALOG_SPEC["seed"],
    )
    events_path, items_path = demo.write(shop, folder / "data")
    store = Store(db)
    ingest(store, events_path, items_path, show_progress=False)
    train(
        store,
        "als",
        artifact,
        params={"factors": CATALOG_SPEC["factors"]},
        test_size=0,
        show_progress=False,
    )
    spec_file.write_text(spec)
    return Catalog(folder, db, artifact, time.perf_counter() - started)
