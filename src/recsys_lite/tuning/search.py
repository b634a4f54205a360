"""Tuning any registered model with Optuna TPE.

Honesty rules: the test part is cut first and never seen while tuning; trials train on the
rest minus a validation part and are scored on that validation part, which is cut from the rest
exactly as the test part is cut from the whole. With the temporal split that is the last
``test_size`` of time, then the last ``validation_size`` of what remains; with leave-last it is
each user's last ``last_n`` baskets, then each user's last ``last_n`` baskets before those, the
protocol of the public leave-one-out benchmarks. Items first seen in the validation part are
neither in a trial's catalog nor among its targets. The study lives in a journal file keyed by
model, metric, split and data fingerprint, so rerunning the same command resumes it, and a
study run with another split is another study.

Several model types share one budget in equal shares, one study each (``optimize``): a
categorical "model" parameter in one TPE study would spend the early trials on whichever type
the random start drew, and types with long fits would eat the others' share of a timeout.
"""

from __future__ import annotations

import json
import logging
import math
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pyarrow as pa
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from rich.progress import Progress

from recsys_lite.config import Settings, get_settings
from recsys_lite.data.store import Store
from recsys_lite.errors import EmptyDataError, InvalidInputError
from recsys_lite.evaluation.evaluate import evaluate_model
from recsys_lite.evaluation.metrics import parse_metric
from recsys_lite.evaluation.split import SplitMethod, make_split
from recsys_lite.models import create_model, model_class
from recsys_lite.training import TrainResult, train

SPACES = Path(__file__).parent / "spaces"


@dataclass(frozen=True)
class SearchSpace:
    params: dict[str, dict[str, Any]]
    report_every: int | None  # None: the model is not iterative, no pruning

    @classmethod
    def for_model(cls, name: str) -> SearchSpace:
        model_class(name)  # unknown names fail with the registry's message
        path = SPACES / f"{name}.toml"
        if not path.is_file():
            raise InvalidInputError(f"model {name!r} has no search space ({path.name})")
        spec = tomllib.loads(path.read_text())
        tuning = spec.pop("tuning", {})
        return cls(params=spec, report_every=tuning.get("report_every"))

    def describe(self, name: str) -> str:
        """The range ``optimize`` searches for one (dotted) parameter, or '' if it is fixed."""
        spec = self.params.get(name)
        if spec is None:
            return ""
        if spec["type"] == "categorical":
            return " | ".join(str(choice) for choice in spec["choices"])
        scale = " (log)" if spec.get("log") else ""
        return f"{spec['low']} to {spec['high']}{scale}"

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Draw one configuration; dotted names ("weighting.qty") become nested dicts."""
        flat: dict[str, Any] = {}
        for name, spec in self.params.items():
            kind = spec["type"]
            if kind == "int":
                flat[name] = trial.suggest_int(
                    name, spec["low"], spec["high"], log=spec.get("log", False)
                )
            elif kind == "float":
                flat[name] = trial.suggest_float(
                    name, spec["low"], spec["high"], log=spec.get("log", False)
                )
            else:
                flat[name] = trial.suggest_categorical(name, spec["choices"])
        return nest(flat)


def split_key(method: SplitMethod, test_size: float, last_n: int) -> str:
    """The split as part of a study's name: trials scored on another split are another study."""
    return f"leave-last{last_n}" if method == "leave-last" else f"temporal{test_size:g}"


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    # a trending window of 0 days means "all time" in the search space
    if nested.get("window_days") == 0:
        nested["window_days"] = None
    return nested


@dataclass
class TuningOutcome:
    best_params: dict[str, Any]
    best_value: float
    study: optuna.Study
    study_path: Path
    model: str


def tune(
    name: str,
    events: pa.Table,
    items: pa.Table | None,
    *,
    metric: str = "ndcg@20",
    trials: int = 20,
    timeout: float | None = None,
    test_size: float = 0.2,
    validation_size: float = 0.2,
    study_path: Path,
    study_name: str | None = None,
    seed: int = 42,
    split_method: SplitMethod = "temporal",
    last_n: int = 1,
    settings: Settings | None = None,
    show_progress: bool = True,
) -> TuningOutcome:
    settings = settings or get_settings()
    space = SearchSpace.for_model(name)
    _, k = parse_metric(metric)
    test_split = make_split(events, split_method, test_size, last_n)  # the test part is cut here
    split = make_split(test_split.train, split_method, validation_size, last_n)
    # the catalog loses the items first seen in the test part, then those first seen in the
    # validation part: a trial knows only the items its own training part mentions
    catalog = split.catalog(test_split.catalog(items))

    def score(model: Any) -> float:
        result = evaluate_model(model, split.test, ks=(k,))
        return float(result["metrics"][metric.lower()])

    def objective(trial: optuna.Trial) -> float:
        model = create_model(name, space.sample(trial))
        model.threads = settings.threads
        if space.report_every:
            every = space.report_every

            def report(epoch: int) -> None:
                if (epoch + 1) % every:
                    return
                trial.report(score(model), epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()

            model.epoch_callback = report
        model.fit(split.train, catalog)
        value = score(model)
        return value if math.isfinite(value) else 0.0

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_path.parent.mkdir(parents=True, exist_ok=True)
    # the split is always part of the name, whatever the caller passed
    study_name = f"{study_name or f'{name}:{metric}'}:{split_key(split_method, test_size, last_n)}"
    study = optuna.create_study(
        study_name=study_name,
        storage=JournalStorage(JournalFileBackend(str(study_path))),
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3),
    )
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task(f"tuning {name}", total=trials)

        def advance(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            best = study.best_value if study.best_trial else float("nan")
            progress.update(task, advance=1, description=f"tuning {name} (best {best:.4f})")

        study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=[advance])
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise EmptyDataError("no tuning trial completed; raise --trials or --timeout")
    best = study.best_trial
    return TuningOutcome(
        best_params=nest(dict(best.params)),
        best_value=float(best.value or 0.0),
        study=study,
        study_path=study_path,
        model=name,
    )


def study_summary(outcome: TuningOutcome, metric: str) -> dict[str, Any]:
    return {
        "metric": metric,
        "best_value": outcome.best_value,
        "best_params": outcome.best_params,
        "study_file": str(outcome.study_path),
        "study_name": outcome.study.study_name,
        "trials": [
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "params": t.params,
                "seconds": t.duration.total_seconds() if t.duration else None,
            }
            for t in outcome.study.trials
        ],
    }


def shares(trials: int, models: int) -> list[int]:
    """Equal shares of a trial budget; the first models get the remainder."""
    if trials < models:
        raise InvalidInputError(f"{trials} trials cannot tune {models} models: one each at least")
    return [trials // models + (n < trials % models) for n in range(models)]


def optimize(
    store: Store,
    name: str | Sequence[str],
    output: Path,
    *,
    metric: str = "ndcg@20",
    trials: int = 20,
    timeout: float | None = None,
    test_size: float = 0.2,
    split_method: SplitMethod = "temporal",
    last_n: int = 1,
    study_path: Path | None = None,
    settings: Settings | None = None,
    show_progress: bool = True,
) -> tuple[TuningOutcome, TrainResult]:
    """Tune one model type, or several in equal shares of ``trials`` (and of ``timeout``), then
    train the configuration with the best validation score into a servable artifact.

    The artifact's metrics are the winner evaluated once on the test part, which no trial has
    seen; tuning.json beside them holds the winner's best params and study summary and, with
    several types, each type's best. The returned outcome is the winner's.
    """
    names = [name] if isinstance(name, str) else list(dict.fromkeys(name))
    if not names:
        raise InvalidInputError("optimize needs at least one model")
    for model_name in names:  # a typo or a missing space fails before any trial runs
        SearchSpace.for_model(model_name)
    if split_method == "temporal" and not 0 < test_size < 1:
        raise InvalidInputError("optimize needs a test split: --test-size between 0 and 1")
    events, items = store.read_events(), store.read_items()
    if events.num_rows == 0:
        raise EmptyDataError(f"{store.path}: the store holds no events; ingest some first")
    started = time.perf_counter()
    study_path = study_path or output.parent / f"{output.name}.study.jsonl"
    fingerprint = store.fingerprint()
    outcomes: dict[str, TuningOutcome] = {}
    for model_name, share in zip(names, shares(trials, len(names)), strict=True):
        outcomes[model_name] = tune(
            model_name,
            events,
            items,
            metric=metric,
            trials=share,
            timeout=timeout / len(names) if timeout else None,
            test_size=test_size,
            split_method=split_method,
            last_n=last_n,
            study_path=study_path,
            study_name=f"{model_name}:{metric}:{fingerprint}",
            settings=settings,
            show_progress=show_progress,
        )
    # every type was scored on the same validation part, so the values compare directly
    winner = max(outcomes, key=lambda n: outcomes[n].best_value)
    outcome = outcomes[winner]
    summary = {"model": winner, **study_summary(outcome, metric)}
    summary["split"] = {"method": split_method, "test_size": test_size, "last_n": last_n}
    if len(names) > 1:
        summary["candidates"] = {
            n: {
                "best_value": o.best_value,
                "best_params": o.best_params,
                "trials": len(o.study.trials),
                "study_name": o.study.study_name,
            }
            for n, o in outcomes.items()
        }
    summary["tuning_seconds"] = round(time.perf_counter() - started, 3)
    result = train(
        store,
        winner,
        output,
        params=outcome.best_params,
        test_size=test_size,
        split_method=split_method,
        last_n=last_n,
        settings=settings,
        show_progress=show_progress,
        extra_files={"tuning.json": json.dumps(summary, indent=2)},
    )
    logging.getLogger(__name__).info("tuned %s: %s", winner, outcome.best_params)
    return outcome, result
