"""Is our GRU4Rec as good as the official one? (target: within 5% on Recall@20 and MRR@20)

Builds one session split from a public data set, trains the authors' official PyTorch
implementation (github.com/hidasib/GRU4Rec_PyTorch_Official) with one of its published tuned
parameter files, and ours with its defaults and with the official file's parameters, then
evaluates all of them with the same code:

* sessions: a user's time-ordered events cut at 30 minutes of inactivity (the default
  ``session_gap_minutes``); sessions of one event are dropped;
* split: sessions ending in the last ``--test-days`` are the test set, those ending in the
  ``--train-days`` before it the training set; test events on items never trained on are
  dropped, as in the authors' preprocessing of their public data sets;
* evaluation: every event of a test session after its first is predicted from the events before
  it, over all items; its rank is one plus the number of items scored above it (the official
  "standard" mode); Recall@20 and MRR@20 are averaged over those events.

The official code needs numpy < 2, so it runs in its own virtualenv: this script starts that
virtualenv's python on itself (``official`` command), which imports the checkout given by
``--official-dir``, reads the training sessions from the tab-separated file its ``run.py``
reads, and evaluates with the evaluator below (and, as a cross-check, with its own). Both train
with one torch thread.

    python bench/gru4rec_reference.py --official-dir /path/to/GRU4Rec_PyTorch_Official \\
        --official-python /path/to/venv/bin/python [--dataset online_retail] [--train-days 91]
        [--test-days 7] [--official-params paramfiles/rsc15_xe_shared_100_best.py]
        [--epochs N] [--variant 'gru4rec LABEL=JSON'] [--name NAME]
"""

from __future__ import annotations

import os

# Set before numpy loads OpenBLAS, which reads it once.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import importlib
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

NAME = "gru4rec_reference"
CUTOFF = 20
TARGET_RATIO = 0.95  # ours must reach 95% of the official figure on both metrics
SESSION_GAP_SECONDS = 30 * 60
DAY = 86_400
DEFAULT_PARAMS = "paramfiles/rsc15_xe_shared_100_best.py"
# Our names of the official parameters (the rest are spelt alike).
OFFICIAL_TO_OURS = {"dropout_p_embed": "dropout_embed", "dropout_p_hidden": "dropout_hidden"}
OFFICIAL_ONLY = {"n_epochs"}


# ----- evaluation (runs under both virtualenvs: numpy and torch only) --------------------------

Step = Callable[["torch.Tensor", list["torch.Tensor"]], tuple["torch.Tensor", list["torch.Tensor"]]]


@dataclass(frozen=True)
class TestSessions:
    """Item indices of the test sessions, concatenated: the sessions start at ``offsets``."""

    items: np.ndarray
    offsets: np.ndarray


def evaluate(
    step: Step, zero_state: Callable[[int], list[torch.Tensor]], test: TestSessions
) -> dict[str, float]:
    """Recall and MRR at CUTOFF of predicting each event of a session from its prefix.

    ``step(items, hidden)`` feeds one event per row and returns the scores of every item and
    the new hidden state. Sessions run side by side, longest first, so the rows still running
    at a position are always the first ones.
    """
    import torch

    lengths = np.diff(test.offsets)
    ranks: list[np.ndarray] = []
    with torch.no_grad():
        for first in range(0, len(lengths), 512):
            chunk = np.arange(first, min(first + 512, len(lengths)))
            chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
            starts, sizes = test.offsets[chunk], lengths[chunk]
            hidden = zero_state(len(chunk))
            for position in range(int(sizes.max()) - 1):
                rows = int((sizes > position + 1).sum())
                hidden = [h[:rows] for h in hidden]
                inputs = torch.from_numpy(test.items[starts[:rows] + position])
                targets = torch.from_numpy(test.items[starts[:rows] + position + 1])
                scores, hidden = step(inputs, hidden)
                target_scores = scores.gather(1, targets[:, None])
                ranks.append(((scores > target_scores).sum(dim=1) + 1).numpy())
    rank = np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)
    hit = rank <= CUTOFF
    return {
        f"recall@{CUTOFF}": float(hit.mean()) if len(rank) else float("nan"),
        f"mrr@{CUTOFF}": float(np.where(hit, 1.0 / rank, 0.0).mean()) if len(rank) else 0.0,
        "predictions": len(rank),
    }


def read_tsv_sessions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Item ids (as text) and session offsets of a SessionId/ItemId/Time file, session-ordered."""
    session, items = [], []
    with path.open() as f:
        next(f)
        for line in f:
            s, item, _ = line.rstrip("\n").split("\t")
            session.append(int(s))
            items.append(item)
    ids = np.asarray(session, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    return np.asarray(items, dtype=object), np.r_[starts, len(ids)].astype(np.int64)


# ----- the official implementation (runs under its own virtualenv) -----------------------------


def run_official(args: argparse.Namespace) -> None:
    """Train the official GRU4Rec on train.tsv, evaluate on test.tsv, write official.json."""
    import torch

    pd = importlib.import_module("pandas")  # the official code's own dependency

    torch.set_num_threads(1)
    work = Path(args.work)
    sys.path.insert(0, str(Path(args.official_dir).resolve()))
    official = importlib.import_module("gru4rec_pytorch")
    official_eval = importlib.import_module("evaluation")
    spec = importlib.util.spec_from_file_location("params", Path(args.official_dir) / args.params)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params = dict(module.gru4rec_params)
    if args.epochs is not None:
        params["n_epochs"] = args.epochs
    # as run.py reads its training file
    columns = ["SessionId", "ItemId", "Time"]
    dtypes = {"SessionId": "int32", "ItemId": "str"}
    train = pd.read_csv(work / "train.tsv", sep="\t", usecols=columns, dtype=dtypes)
    test = pd.read_csv(work / "test.tsv", sep="\t", usecols=columns, dtype=dtypes)
    torch.manual_seed(args.seed)
    gru = official.GRU4Rec(device=torch.device("cpu"))
    gru.set_params(**params)
    started = time.perf_counter()
    gru.fit(train)
    seconds = time.perf_counter() - started
    model = gru.model
    model.eval()

    def step(items: torch.Tensor, hidden: list[torch.Tensor]) -> tuple[Any, list[Any]]:
        state = list(hidden)
        scores = model.forward(items, state, None, training=False)  # updates state in place
        return scores, state

    def zero_state(rows: int) -> list[torch.Tensor]:
        return [torch.zeros(rows, size) for size in gru.layers]

    item_ids, offsets = read_tsv_sessions(work / "test.tsv")
    index = gru.data_iterator.itemidmap[item_ids].to_numpy().astype(np.int64)
    metrics = evaluate(step, zero_state, TestSessions(index, offsets))
    recall, mrr = official_eval.batch_eval(gru, test, cutoff=[CUTOFF], mode="standard")
    result = {
        "params": {k: v for k, v in params.items()},
        "train_seconds": round(seconds, 2),
        **metrics,
        "own_evaluation": {
            f"recall@{CUTOFF}": float(recall[CUTOFF]),
            f"mrr@{CUTOFF}": float(mrr[CUTOFF]),
        },
    }
    (work / "official.json").write_text(json.dumps(result, indent=2, default=str))


# ----- the split and our model (project virtualenv) --------------------------------------------


@dataclass(frozen=True)
class Split:
    train: Any  # pa.Table: user_id (one per session), item_id, ts, qty, event_type
    test_items: np.ndarray  # item ids (text), test sessions concatenated
    test_offsets: np.ndarray
    stats: dict[str, Any]


def build_split(dataset: str, train_days: float, test_days: float, folder: Path) -> Split:
    """Sessions of the data set, the last days held out; writes train.tsv and test.tsv."""
    import pyarrow as pa

    from _datasets import prepare

    data = prepare(dataset)
    if data is None:
        raise SystemExit(f"{dataset} is not available")
    events = data.events  # time-ordered; the store's order breaks ties (lines of one invoice)
    users = events.column("user_id").to_numpy(zero_copy_only=False)
    items = events.column("item_id").to_numpy(zero_copy_only=False)
    ts = events.column("ts").to_numpy().astype(np.int64)
    order = np.argsort(users, kind="stable")
    users, items, ts = users[order], items[order], ts[order]
    new = np.ones(len(users), dtype=bool)
    new[1:] = (users[1:] != users[:-1]) | (np.diff(ts) >= SESSION_GAP_SECONDS)
    session = np.cumsum(new) - 1
    n_sessions = int(session[-1]) + 1
    session_end = np.zeros(n_sessions, dtype=np.int64)
    np.maximum.at(session_end, session, ts)
    test_start = int(ts.max()) - int(test_days * DAY)
    train_start = test_start - int(train_days * DAY)
    is_test = session_end >= test_start
    is_train = ~is_test & (session_end >= train_start)

    def long_enough(mask: np.ndarray) -> np.ndarray:
        counts = np.bincount(session[mask], minlength=n_sessions)
        return np.asarray(mask & (counts[session] >= 2), dtype=bool)

    train_event = long_enough(is_train[session])
    known_items = set(items[train_event].tolist())
    known = np.fromiter((i in known_items for i in items), dtype=bool, count=len(items))
    test_event = long_enough(is_test[session] & known)
    start = np.full(n_sessions, np.iinfo(np.int64).max)
    np.minimum.at(start, session, ts)

    def write(mask: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sessions in order of their start; Time is unique and increases within a session
        by one second per event, so both implementations read the same order back."""
        idx = np.flatnonzero(mask)
        idx = idx[np.lexsort((idx, session[idx], start[session[idx]]))]
        sid, it = session[idx], items[idx]
        firsts = np.r_[True, sid[1:] != sid[:-1]]
        rank = np.cumsum(firsts) - 1
        position = np.arange(len(idx)) - np.flatnonzero(firsts)[rank]
        time_ = rank * 1_000_000 + position
        with path.open("w") as f:
            f.write("SessionId\tItemId\tTime\n")
            f.writelines(f"{s}\t{i}\t{t}\n" for s, i, t in zip(rank, it, time_, strict=True))
        return rank, it, time_

    tr_session, tr_items, tr_time = write(train_event, folder / "train.tsv")
    te_session, te_items, _ = write(test_event, folder / "test.tsv")
    train = pa.table(
        {
            "user_id": pa.array(tr_session.astype(str)),
            "item_id": pa.array(tr_items.astype(str)),
            "ts": pa.array(tr_time, pa.int64()),
            "qty": pa.array(np.ones(len(tr_time), dtype=np.int32)),
            "event_type": pa.array(["view"] * len(tr_time)),
        }
    )
    firsts = np.flatnonzero(np.r_[True, te_session[1:] != te_session[:-1]])
    offsets = np.r_[firsts, len(te_session)].astype(np.int64)
    target = np.ones(len(te_items), dtype=bool)
    target[firsts] = False
    repeat = np.zeros(len(te_items), dtype=bool)
    repeat[1:] = te_items[1:] == te_items[:-1]
    stats = {
        "dataset": dataset,
        "train_days": train_days,
        "test_days": test_days,
        "train_sessions": len(np.unique(tr_session)),
        "train_events": len(tr_items),
        "test_sessions": len(offsets) - 1,
        "test_predictions": int(target.sum()),
        "items": len(known_items),
        "repeat_targets_share": round(float(repeat[target].mean()), 4),
    }
    return Split(train, te_items, offsets, stats)


def run_ours(split: Split, params: dict[str, Any] | None) -> dict[str, Any]:
    import torch

    from _common import timed
    from recsys_lite.models import create_model
    from recsys_lite.models.gru4rec import GRU4RecModel

    model = create_model("gru4rec", params)
    assert isinstance(model, GRU4RecModel)
    with timed() as clock:
        model.fit(split.train, show_progress=True)
    net = model.net
    assert net is not None
    table = net.input_table()

    def step(items: torch.Tensor, hidden: list[torch.Tensor]) -> tuple[Any, list[Any]]:
        # what GRU4RecModel._encode does, one event at a time
        output, hidden = net.step(table[items], hidden)
        return torch.addmm(net.item_bias, output, net.item_out.T), hidden

    index = model.item_map.to_index(list(split.test_items))
    metrics = evaluate(step, net.zero_state, TestSessions(index, split.test_offsets))
    return {
        "params": model.params.model_dump(mode="json"),
        "train_seconds": round(clock.seconds, 2),
        **metrics,
    }


def ours_from_official(official: dict[str, Any]) -> dict[str, Any]:
    return {
        OFFICIAL_TO_OURS.get(k, k): v for k, v in official.items() if k not in OFFICIAL_ONLY
    } | {"epochs": official["n_epochs"]}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "official":
        parser = argparse.ArgumentParser()
        parser.add_argument("command")
        parser.add_argument("--official-dir", required=True)
        parser.add_argument("--work", required=True)
        parser.add_argument("--params", required=True)
        parser.add_argument("--epochs", type=int)
        parser.add_argument("--seed", type=int, default=42)
        run_official(parser.parse_args())
        return

    from _common import (
        Recipe,
        console,
        empty_work_folder,
        parse_variant,
        table,
        verdict,
        warn_if_busy,
        write_results,
    )

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--official-dir", type=Path, required=True)
    parser.add_argument("--official-python", type=Path, required=True)
    parser.add_argument("--official-params", default=DEFAULT_PARAMS)
    parser.add_argument("--dataset", default="online_retail")
    parser.add_argument("--train-days", type=float, default=91.0)
    parser.add_argument("--test-days", type=float, default=7.0)
    parser.add_argument("--epochs", type=int, help="epochs of every run (default: each its own)")
    parser.add_argument("--variant", type=parse_variant, action="append", default=[])
    parser.add_argument("--name", default=NAME, help="results file name (bench/results/NAME.json)")
    args = parser.parse_args()
    start_load = warn_if_busy()

    folder = empty_work_folder(args.name)
    split = build_split(args.dataset, args.train_days, args.test_days, folder)
    console.print(split.stats)

    console.print(f"training the official GRU4Rec ({args.official_params})...")
    command = [
        str(args.official_python),
        str(Path(__file__).resolve()),
        "official",
        "--official-dir",
        str(args.official_dir),
        "--work",
        str(folder),
        "--params",
        args.official_params,
    ]
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    subprocess.run(command, check=True)
    official = json.loads((folder / "official.json").read_text())

    tuned = ours_from_official(official["params"])
    recipes = [
        Recipe("ours, defaults", "gru4rec", {}),
        Recipe("ours, official params", "gru4rec", tuned),
        *args.variant,
    ]
    runs: list[dict[str, Any]] = [{"label": "official", "implementation": "official", **official}]
    for recipe in recipes:
        params = dict(recipe.params or {})
        if args.epochs is not None:
            params["epochs"] = args.epochs
        console.print(f"training {recipe.label}...")
        runs.append({"label": recipe.label, "implementation": "ours", **run_ours(split, params)})

    recall, mrr = f"recall@{CUTOFF}", f"mrr@{CUTOFF}"
    for run in runs:
        run["ratio_to_official"] = {
            metric: round(run[metric] / official[metric], 4) for metric in (recall, mrr)
        }
        run["within_target"] = all(v >= TARGET_RATIO for v in run["ratio_to_official"].values())
    console.print(
        table(
            f"GRU4Rec on {args.dataset}: {split.stats['train_events']:,} training events,"
            f" {split.stats['test_predictions']:,} test predictions over"
            f" {split.stats['items']:,} items",
            ["run", "Recall@20", "MRR@20", "train s", "epochs", "vs official", "≥ 95%"],
            [
                [
                    r["label"],
                    r[recall],
                    r[mrr],
                    r["train_seconds"],
                    r["params"].get("epochs", r["params"].get("n_epochs")),
                    " / ".join(f"{v:.3f}" for v in r["ratio_to_official"].values()),
                    verdict(r["within_target"]),
                ]
                for r in runs
            ],
        )
    )
    write_results(
        args.name,
        {
            "split": split.stats,
            "official_params_file": args.official_params,
            "load_average_1m_at_start": start_load,
            "target_ratio": TARGET_RATIO,
            "runs": runs,
            "defaults_within_target": runs[1]["within_target"],
        },
    )


if __name__ == "__main__":
    main()
