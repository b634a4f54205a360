"""`recsys-lite` commands about models: train, evaluate, optimize, compare, and describe them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from recsys_lite.cli_console import console, fail, metrics_table, out
from recsys_lite.cli_options import DbOption, db_path
from recsys_lite.config import get_settings
from recsys_lite.errors import InvalidInputError, RecsysError
from recsys_lite.evaluation.metrics import METRIC_HELP
from recsys_lite.evaluation.split import SPLIT_METHODS, check_split_method
from recsys_lite.models.registry import MODELS, check_model_name

MODEL_HELP = f"one of {', '.join(MODELS)} (`recsys-lite models` says when to use each)"
SPLIT_HELP = " or ".join(SPLIT_METHODS)


def _parse_params(params: str | None) -> dict[str, Any] | None:
    if not params:
        return None
    try:
        value = json.loads(params)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--params is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInputError("--params must be a JSON object")
    return value


def train(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    output: Annotated[Path, typer.Option("--output", help="artifact directory")] = Path(
        "artifacts/current"
    ),
    db: DbOption = None,
    test_size: float = typer.Option(0.2, min=0.0, max=0.9, help="0 skips the evaluation"),
    split: str = typer.Option("temporal", help=SPLIT_HELP),
    last_n: int = typer.Option(
        1, min=1, help="baskets (events sharing a second) held out per user with leave-last"
    ),
    params: Optional[str] = typer.Option(  # noqa: UP045
        None, help="model parameters as JSON (`recsys-lite models NAME` lists them)"
    ),
    engine: str = typer.Option(
        "embedded", help="embedded (in this process) or spark (pyspark ALS; als only)"
    ),
    spark_master: str = typer.Option("local[2]", help="Spark master URL for --engine spark"),
    source: str = typer.Option(
        "store", help="store, or archive (the EVENT_ARCHIVE table; Spark reads it itself)"
    ),
) -> None:
    """Train a model, evaluate it on a time-aware holdout, and write an artifact."""
    from recsys_lite.data.store import Store
    from recsys_lite.engines.choice import training_inputs
    from recsys_lite.training import train as run_train

    try:
        factory, events = training_inputs(engine, spark_master, source, get_settings())
        result = run_train(
            Store(db_path(db)),
            check_model_name(model),
            output,
            params=_parse_params(params),
            test_size=test_size,
            split_method=check_split_method(split),
            last_n=last_n,
            show_progress=console.is_terminal,
            model_factory=factory,
            events=events,
        )
    except RecsysError as exc:
        fail(exc)
        return
    if result.metrics:
        out.print(metrics_table(f"{model} on the holdout", result.metrics["metrics"]))
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
    out.print(f"saved {model} artifact to {output} ({timings})")


def evaluate(
    model_dir: Annotated[Path, typer.Option("--model-dir", help="artifact directory")],
    db: DbOption = None,
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Evaluate an artifact: on events newer than it if any, else its recipe on the holdout."""
    from recsys_lite.data.store import Store
    from recsys_lite.training import evaluate_artifact

    try:
        result = evaluate_artifact(model_dir, Store(db_path(db)), show_progress=console.is_terminal)
    except RecsysError as exc:
        fail(exc)
        return
    if as_json:
        out.print_json(json.dumps(result))
        return
    out.print(metrics_table(f"{result['model']} ({result['split']['method']})", result["metrics"]))
    out.print(
        f"{result['users_evaluated']:,} users evaluated;"
        f" {result['cold_start']['users']:,} test users were new (popular fallback)"
    )


def optimize(
    # first in the signature only so that it can stay required after the optional argument
    output: Annotated[Path, typer.Option("--output", help="artifact directory")],
    model: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(help=f"model to tune (or give --models): {MODEL_HELP}"),
    ] = None,
    db: DbOption = None,
    models: Optional[str] = typer.Option(  # noqa: UP045
        None,
        help="comma-separated model types tuned in equal shares of --trials (and --timeout); "
        "the best on validation is trained and served",
    ),
    trials: int = typer.Option(20, min=1, help="trials in all, over every model type"),
    metric: str = typer.Option("ndcg@20", help=METRIC_HELP),
    timeout: Optional[float] = typer.Option(None, help="stop tuning after S seconds"),  # noqa: UP045
    split: str = typer.Option("temporal", help=SPLIT_HELP),
    test_size: float = typer.Option(
        0.2, min=0.01, max=0.9, help="temporal: share of events (by time) in test and validation"
    ),
    last_n: int = typer.Option(
        1, min=1, help="leave-last: baskets per user in test, and as many before them in validation"
    ),
    study: Optional[Path] = typer.Option(None, help="study journal (default: beside output)"),  # noqa: UP045
) -> None:
    """Tune with Optuna on training data only, then train the best into an artifact."""
    from recsys_lite.data.store import Store
    from recsys_lite.evaluation.metrics import parse_metric
    from recsys_lite.tuning.search import optimize as run_optimize

    names = [m.strip() for m in (models or "").split(",") if m.strip()]
    try:
        if model and names:
            raise InvalidInputError("give a model or --models, not both")
        if model:
            names = [model]
        if not names:
            raise InvalidInputError("give a model to tune, or several with --models")
        for name in names:
            check_model_name(name)
        parse_metric(metric)
        outcome, result = run_optimize(
            Store(db_path(db)),
            names,
            output,
            metric=metric,
            trials=trials,
            timeout=timeout,
            test_size=test_size,
            split_method=check_split_method(split),
            last_n=last_n,
            study_path=study,
            show_progress=console.is_terminal,
        )
    except RecsysError as exc:
        fail(exc)
        return
    winner, best, test = outcome.model, outcome.best_params, result.metrics["metrics"]
    out.print(f"best validation {metric}: {outcome.best_value:.4f} ({winner} {best})")
    out.print(metrics_table(f"{winner} (best params) on the test split", test))
    out.print(f"saved the tuned {winner} to {output}; study in {outcome.study_path}")


def compare(
    db: DbOption = None,
    models: str = typer.Option("all", help=f"comma-separated, or all: {', '.join(MODELS)}"),
    tune_trials: int = typer.Option(0, min=0, help="tune each model first (0: defaults)"),
    metric: str = typer.Option("ndcg@20", help=f"tuning metric: {METRIC_HELP}"),
    split: str = typer.Option("temporal", help=SPLIT_HELP),
    test_size: float = typer.Option(0.2, min=0.01, max=0.9, help="temporal: share of events"),
    last_n: int = typer.Option(1, min=1, help="leave-last: baskets held out per user"),
    output: Path = typer.Option(Path("artifacts/leaderboard"), help="folder for JSON and PNG"),
) -> None:
    """Train and evaluate several models on one split and print a leaderboard."""
    from recsys_lite.data.store import Store
    from recsys_lite.evaluation.metrics import parse_metric
    from recsys_lite.tuning.leaderboard import compare as run_compare

    if models.strip() == "all":
        names = list(MODELS)
    else:
        names = [m.strip() for m in models.split(",") if m.strip()]
    try:
        parse_metric(metric)
        rows = run_compare(
            Store(db_path(db)),
            names,
            output,
            test_size=test_size,
            split_method=check_split_method(split),
            last_n=last_n,
            tune_trials=tune_trials,
            metric=metric,
            show_progress=console.is_terminal,
        )
    except RecsysError as exc:
        fail(exc)
        return
    table = Table(title="leaderboard (test window)")
    columns = ("ndcg@10", "hr@10", "recall@10", "map@10", "ndcg@20", "coverage@10")
    for column in ("model", *columns, "train s", "MB"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(
            row["model"],
            *(f"{row[c]:.4f}" for c in columns),
            f"{row['train_seconds']:.1f}",
            f"{row['model_mb']:.1f}",
        )
    out.print(table)
    out.print(f"wrote {output / 'leaderboard.json'} and {output / 'leaderboard.png'}")


def models(
    name: Annotated[
        Optional[str], typer.Argument(help="a model, for its parameters")  # noqa: UP045
    ] = None,
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The models, when to use each, and their parameters (what --params accepts)."""
    from recsys_lite.models.params import describe_params
    from recsys_lite.models.registry import model_class
    from recsys_lite.tuning.search import SearchSpace

    try:
        names = [check_model_name(name)] if name else list(MODELS)
        with console.status("loading model definitions"):
            described = {
                model: (
                    # the model's own parameters first, the shared weighting block after them
                    sorted(describe_params(model_class(model).params_type),
                           key=lambda p: p.name.startswith("weighting.")),
                    SearchSpace.for_model(model),
                )
                for model in names
            }  # fmt: skip
    except RecsysError as exc:
        fail(exc)
        return
    if as_json:
        out.print_json(
            json.dumps(
                {
                    model: {
                        "summary": MODELS[model].summary,
                        "params": [
                            {**vars(p), "tuning_range": space.describe(p.name) or None}
                            for p in params
                        ],
                    }
                    for model, (params, space) in described.items()
                },
                default=str,
            )
        )
        return
    if name is None:
        table = Table(title="models (recsys-lite models NAME for a model's parameters)")
        for column in ("model", "when to use it", "parameters"):
            table.add_column(column)
        for model, (params, _) in described.items():
            top = sorted({p.name.split(".")[0] for p in params}, key=[
                p.name.split(".")[0] for p in params].index)  # fmt: skip
            table.add_row(model, MODELS[model].summary, ", ".join(top))
        out.print(table)
        return
    params, space = described[name]
    table = Table(title=f"{name}: {MODELS[name].summary}")
    for column in ("parameter", "type", "default", "bounds", "optimize searches", "meaning"):
        table.add_column(column, overflow="fold")
    for p in params:
        table.add_row(
            p.name, escape(p.type), escape(json.dumps(p.default, default=str)), p.bounds,
            escape(space.describe(p.name)), escape(p.description),
        )  # fmt: skip
    out.print(table)
    out.print(f"example: recsys-lite train {name} --params '{_example_params(params)}'")


def _example_params(params: list[Any]) -> str:
    first = next((p for p in params if not p.name.startswith("weighting.")), params[0])
    return json.dumps({first.name: first.default})
