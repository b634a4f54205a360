"""Several models trained and evaluated on one split: a leaderboard as a table, JSON and PNG."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from recsys_lite.config import Settings, get_settings
from recsys_lite.data.store import Store
from recsys_lite.errors import EmptyDataError
from recsys_lite.evaluation.evaluate import evaluate_model
from recsys_lite.evaluation.split import SplitMethod, make_split
from recsys_lite.models import create_model
from recsys_lite.models.registry import check_model_name

COLUMNS = (
    "ndcg@10", "hr@10", "recall@10", "map@10", "ndcg@20", "hr@20", "recall@20", "map@20",
    "coverage@10",
)  # fmt: skip


def compare(
    store: Store,
    models: list[str],
    out_dir: Path,
    *,
    test_size: float = 0.2,
    split_method: SplitMethod = "temporal",
    last_n: int = 1,
    tune_trials: int = 0,
    metric: str = "ndcg@20",
    settings: Settings | None = None,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """Train each model on the same training window and rank them on the same test window.

    With ``tune_trials`` each model is first tuned on a validation part carved from the
    training part the same way (see tuning.search); the test part is only used for the final
    numbers. ``split_method`` is temporal (the last ``test_size`` of time) or leave-last (each
    user's last ``last_n`` baskets).
    """
    from recsys_lite.tuning.search import tune  # optuna is only needed when tuning

    for name in models:  # a typo fails now, not after the models before it have trained
        check_model_name(name)
    settings = settings or get_settings()
    events, items = store.read_events(), store.read_items()
    if events.num_rows == 0:
        raise EmptyDataError(f"{store.path}: the store holds no events; ingest some first")
    split = make_split(events, split_method, test_size, last_n)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in models:
        params: dict[str, Any] | None = None
        tuning_seconds = 0.0
        if tune_trials:
            started = time.perf_counter()
            params = tune(
                name,
                events,
                items,
                metric=metric,
                trials=tune_trials,
                test_size=test_size,
                split_method=split_method,
                last_n=last_n,
                study_path=out_dir / f"{name}.study.jsonl",
                study_name=f"{name}:{metric}:{store.fingerprint()}",
                settings=settings,
                show_progress=show_progress,
            ).best_params
            tuning_seconds = time.perf_counter() - started
        model = create_model(name, params)
        model.threads = settings.threads
        started = time.perf_counter()
        model.fit(split.train, split.catalog(items), show_progress=show_progress)
        train_seconds = time.perf_counter() - started
        result = evaluate_model(model, split.test, show_progress=show_progress)
        rows.append(
            {
                "model": name,
                **{c: result["metrics"][c] for c in COLUMNS},
                "train_seconds": round(train_seconds, 2),
                "tuning_seconds": round(tuning_seconds, 2),
                "model_mb": round(sum(a.nbytes for a in model.state().values()) / 1e6, 2),
                "users_evaluated": result["users_evaluated"],
                "params": model.params.model_dump(mode="json"),
            }
        )
    rows.sort(key=lambda row: row["ndcg@10"], reverse=True)
    (out_dir / "leaderboard.json").write_text(
        json.dumps({"split": split.description, "tune_trials": tune_trials, "rows": rows}, indent=2)
    )
    plot(rows, out_dir / "leaderboard.png")
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on a server
    import matplotlib.pyplot as plt

    metrics = ("ndcg@10", "hr@10", "recall@10", "map@10")
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 4))
    width = 0.8 / len(metrics)
    for n, metric in enumerate(metrics):
        positions = [i + n * width for i in range(len(rows))]
        ax.bar(positions, [row[metric] for row in rows], width, label=metric)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))])
    ax.set_xticklabels([row["model"] for row in rows])
    ax.set_ylabel("score on the test window")
    ax.set_title("RecSys-Lite leaderboard")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
