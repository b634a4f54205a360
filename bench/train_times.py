"""How long does each model take to train on a 1M-event shop? (target: under 10 minutes each)

Ingests the synthetic 1M-event shop of bench/als_end_to_end.py (50k users, 20k items) once, then
runs ``training.train`` for every registered model with its default params and
``test_size=0``: read, interaction matrix, fit, Faiss index and artifact, which is what
``recsys-lite train MODEL --test-size 0`` does. CPU time over wall time shows how much of the
two cores each library kept busy.

    python bench/train_times.py [--models ease item2vec ...] [--seed 42]
        [--variant 'gru4rec two-threads={"torch_threads": 2}' --name NAME]
"""

from __future__ import annotations

import os

# One BLAS thread: implicit runs its own thread pool, and BLAS threads underneath only contend
# with it. Set before numpy loads OpenBLAS, which reads it once.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import shutil
from pathlib import Path
from typing import Any

from _common import (
    Recipe,
    console,
    empty_work_folder,
    million_event_shop,
    parse_variant,
    table,
    timed,
    verdict,
    warn_if_busy,
    write_results,
)
from recsys_lite.data.ingest import ingest
from recsys_lite.data.store import Store
from recsys_lite.models import MODELS
from recsys_lite.models.versions import versions_folder
from recsys_lite.training import train

NAME = "train_times"
TARGET_SECONDS = 600.0


def directory_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    models = list(MODELS)
    parser.add_argument("--models", nargs="+", choices=models, default=models)
    parser.add_argument("--variant", type=parse_variant, action="append", default=[])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--name", default=NAME, help="results file name (bench/results/NAME.json)")
    args = parser.parse_args()
    recipes = [Recipe(m, m, None) for m in args.models] + args.variant
    start_load = warn_if_busy()

    folder = empty_work_folder(args.name)
    events, items = million_event_shop(args.seed)
    store = Store(folder / "store.db")
    ingest(store, events, items, show_progress=False)
    counts = store.counts()

    rows: list[dict[str, Any]] = []
    for recipe in recipes:
        console.print(f"training {recipe.label} on {counts['events']:,} events...")
        output = folder / recipe.label.replace(" ", "-")
        with timed() as clock:
            result = train(
                store, recipe.model, output, params=recipe.params, test_size=0.0,
                show_progress=True,
            )  # fmt: skip
        rows.append(
            {
                "model": recipe.label,
                "seconds": round(clock.seconds, 2),
                "cpu_seconds": round(clock.cpu_seconds, 2),
                "cores_busy": round(clock.cpu_seconds / clock.seconds, 2),
                "timings": result.timings,
                "artifact_mb": round(directory_mb(output), 1),
                "params": result.model.params.model_dump(mode="json"),
                "target_met": clock.seconds <= TARGET_SECONDS,
            }
        )
        shutil.rmtree(versions_folder(output))  # a 20k-item EASE artifact alone is 1.6 GB
        output.unlink()
        console.print(f"  {recipe.label}: {clock.seconds:.1f} s")

    console.print(
        table(
            f"training on {counts['events']:,} events, {counts['users']:,} users,"
            f" {counts['items_with_events']:,} items (test_size=0)",
            ["model", "wall s", "CPU s", "cores busy", "fit s", "artifact MB", "≤ 10 min"],
            [
                [
                    r["model"],
                    r["seconds"],
                    r["cpu_seconds"],
                    r["cores_busy"],
                    r["timings"].get("fit"),
                    r["artifact_mb"],
                    verdict(r["target_met"]),
                ]
                for r in rows
            ],
        )
    )
    write_results(
        args.name,
        {
            "dataset": {"generator": "recsys_lite.data.demo.generate", "seed": args.seed, **counts},
            "load_average_1m_at_start": start_load,
            "target_seconds": TARGET_SECONDS,
            "rows": rows,
            "all_met": all(r["target_met"] for r in rows),
        },
    )


if __name__ == "__main__":
    main()
