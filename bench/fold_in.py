"""What a shopper with events since training costs: the folded-in path, exact against indexed.

Every shopper who has clicked or bought since the model was trained is served from their
history (``recommend_history``): ALS solves their factor from it. Scoring that factor against
every item of a 100k catalog costs about a millisecond; searching the model's HNSW index with
it, as for a trained shopper, a tenth of that. The ranker folds the shopper into its ALS
retriever the same way. In process on the 100k-item shop of serving_load and ranker_serving
(its ALS artifact, and the ranker artifact ranker_serving trains), for --users random trained
shoppers each described by their whole history (so the answers can be compared):

* CPU per answer through the exact scores (``use_index=False``; for the ranker, the code
  before the index was used for fold-ins, kept here as the reference: the retriever's scores
  over the catalog) and through the index, interleaved over --rounds;
* how many of the exact top 10 the indexed answer keeps, and how often it is the same list.

--models adds other models that fold a history into a user vector (bpr, item2vec, lightfm,
two_tower), each trained once on the same store with its default parameters into
``artifact-NAME`` beside the ALS artifact and reused afterwards.

    python bench/fold_in.py [--users 1000] [--rounds 3] [--models bpr,item2vec] [--name NAME]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# the models trained here need no text index (for 155k items it would take longer than they do)
os.environ.setdefault("SEARCH_INDEX", "off")

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from _common import console, prepare_catalog, table, warn_if_busy, write_results
from recsys_lite.config import Settings
from recsys_lite.models.base import Recommender
from recsys_lite.models.types import History, Ranked
from recsys_lite.ranking import ranker_stage
from recsys_lite.ranking.ranker_stage import FirstStage
from recsys_lite.serving.runtime import ServingState

NAME = "fold_in"
K = 10


def trained(folder: Path, db: Path, name: str) -> Path:
    """The store's model of this kind with default parameters, trained on first use."""
    from recsys_lite.data.store import Store
    from recsys_lite.training import train

    artifact = folder / f"artifact-{name}"
    if not (artifact / "manifest.json").is_file():
        console.print(f"training {name} on the 100k-item shop (once)...")
        train(Store(db), name, artifact, test_size=0, show_progress=True)
    return artifact


def load(artifact: Path, db: Path) -> Recommender:
    model: Recommender = ServingState.load(Settings(model_dir=artifact, db_path=db)).model
    return model


def cpu_ms(answer: Callable[[History, np.ndarray], Ranked | None], shoppers: list[Any]) -> float:
    started = time.process_time()
    for history, seen in shoppers:
        answer(history, seen)
    return (time.process_time() - started) / len(shoppers) * 1000


def lists(
    answer: Callable[[History, np.ndarray], Ranked | None], shoppers: list[Any]
) -> list[list[int]]:
    out = []
    for history, seen in shoppers:
        ranked = answer(history, seen)
        assert ranked is not None
        out.append(ranked.items.tolist())
    return out


def agreement(
    exact: list[list[int]], indexed: list[list[int]], scores: list[np.ndarray] | None
) -> dict[str, float | None]:
    """Of the exact top 10, the share the indexed answer holds, and how often the lists are
    equal; with the exact scores, also the share of indexed items that score at least the
    exact 10th (an item tied with it counts: where many items share a vector, as feature-built
    vectors do, which of the tied ones a list shows is arbitrary)."""
    pairs = list(zip(exact, indexed, strict=True))
    tie_aware = None
    if scores is not None:
        shares = []
        for (best, found), row in zip(pairs, scores, strict=True):
            tenth = row[best[-1]]
            shares.append(float(np.mean(row[found] >= tenth - 1e-6 * abs(tenth))))
        tie_aware = round(statistics.mean(shares), 4)
    return {
        "top10_kept": round(statistics.mean(len(set(a) & set(b)) / K for a, b in pairs), 4),
        "top10_kept_ties_counted": tie_aware,
        "same_list": round(statistics.mean(a == b for a, b in pairs), 4),
    }


class ExactFoldIn:
    """The ranker's first stage without its retrievers' indexes, so every fold-in is scored
    over the catalog, as before the index was used for them: the reference the indexed
    answers are compared with (a ranker's fold-in touches no trained user's path)."""

    def __enter__(self) -> None:
        self.searchable = ranker_stage.searchable
        ranker_stage.searchable = lambda model: None

    def __exit__(self, *exc: object) -> None:
        ranker_stage.searchable = self.searchable


def exact_scores(model: Recommender, shoppers: list[Any]) -> list[np.ndarray] | None:
    if isinstance(getattr(model, "stage", None), FirstStage):
        return None  # the ranker's answer is not a score over the catalog
    rows = []
    for history, _ in shoppers:
        row = model.score_history(history)
        if row is None:
            return None
        rows.append(row)
    return rows


def _index_kind(model: Recommender) -> str:
    if isinstance(getattr(model, "stage", None), FirstStage):
        return "its retrievers' indexes"
    return model.user_index.kind if model.user_index is not None else "exact"


def measure(model: Recommender, shoppers: list[Any], rounds: int) -> dict[str, Any]:
    def indexed(history: History, seen: np.ndarray) -> Ranked | None:
        return model.recommend_history(history, K, exclude=seen)

    def exact(history: History, seen: np.ndarray) -> Ranked | None:
        return model.recommend_history(history, K, exclude=seen, use_index=False)

    stage = getattr(model, "stage", None)
    if isinstance(stage, FirstStage):  # the ranker: its retrievers' fold-in is what changes

        def exact(history: History, seen: np.ndarray) -> Ranked | None:
            with ExactFoldIn():
                return model.recommend_history(history, K, exclude=seen)

    warm = shoppers[: min(100, len(shoppers))]
    cpu_ms(exact, warm), cpu_ms(indexed, warm)
    exact_ms, indexed_ms = [], []
    for _ in range(rounds):
        exact_ms.append(cpu_ms(exact, shoppers))
        indexed_ms.append(cpu_ms(indexed, shoppers))
    return {
        "model": model.name,
        "index": _index_kind(model),
        "exact_cpu_ms_per_answer": [round(v, 4) for v in exact_ms],
        "indexed_cpu_ms_per_answer": [round(v, 4) for v in indexed_ms],
        "exact_median_ms": round(statistics.median(exact_ms), 4),
        "indexed_median_ms": round(statistics.median(indexed_ms), 4),
        **agreement(
            lists(exact, shoppers), lists(indexed, shoppers), exact_scores(model, shoppers)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default="", help="comma-separated: bpr,item2vec,...")
    parser.add_argument("--name", default=NAME)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)  # as the server runs it: one query at a time needs no team
    start_load = warn_if_busy()
    catalog = prepare_catalog()
    ranker_dir = catalog.folder / "artifact-ranker"
    artifacts = [catalog.artifact]
    if (ranker_dir / "manifest.json").is_file():
        artifacts.append(ranker_dir)
    else:
        console.print("no ranker artifact yet: run bench/ranker_serving.py once to train it")
    artifacts += [
        trained(catalog.folder, catalog.db, name) for name in args.models.split(",") if name
    ]
    rows, results = [], []
    for artifact in artifacts:
        model = load(artifact, catalog.db)
        rng = np.random.default_rng(args.seed)
        users = rng.choice(len(model.user_map), args.users, replace=False)
        shoppers = [(model.history(int(u)), model.seen_items(int(u))) for u in users]
        console.print(f"{model.name}: {args.users} shoppers, {args.rounds} rounds")
        result = measure(model, shoppers, args.rounds)
        results.append(result)
        rows.append(
            [
                result["model"], result["index"], result["exact_median_ms"],
                result["indexed_median_ms"], result["top10_kept"],
                result["top10_kept_ties_counted"], result["same_list"],
            ]
        )  # fmt: skip
    console.print(
        table(
            "a shopper with events since training (in process, CPU per answer)",
            [
                "model",
                "index",
                "exact ms",
                "indexed ms",
                "top 10 kept",
                "ties counted",
                "same list",
            ],
            rows,
        )
    )
    write_results(
        args.name,
        {
            "load_average_1m_at_start": start_load,
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "shop": str(catalog.folder.name),
            "users": args.users,
            "rounds": args.rounds,
            "k": K,
            "index_kinds": {r["model"]: r["index"] for r in results},
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
