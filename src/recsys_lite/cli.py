"""The ``recsys-lite`` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from recsys_lite.cli_artifacts import rollback
from recsys_lite.cli_options import DbOption, ModelDirOption
from recsys_lite.config import get_settings
from recsys_lite.data.archive_commands import archive_app
from recsys_lite.errors import InvalidInputError, RecsysError
from recsys_lite.evaluation.metrics import METRIC_HELP
from recsys_lite.evaluation.split import SPLIT_METHODS, check_split_method
from recsys_lite.experiments.commands import experiments_app
from recsys_lite.models.registry import MODELS, check_model_name
from recsys_lite.privacy.commands import gdpr_app
from recsys_lite.search import command as search_command
from recsys_lite.security.commands import keys_app
from recsys_lite.security.keys import KeyRing
from recsys_lite.serving import commands as serving_commands

MODEL_HELP = f"one of {', '.join(MODELS)} (`recsys-lite models` says when to use each)"
SPLIT_HELP = " or ".join(SPLIT_METHODS)

app = typer.Typer(
    help="RecSys-Lite: recommendations for one shop on one machine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(keys_app, name="keys")
app.add_typer(gdpr_app, name="gdpr")
app.add_typer(archive_app, name="archive")
app.add_typer(experiments_app, name="experiments")
app.command()(rollback)
app.command()(serving_commands.profile)
app.command()(serving_commands.status)
app.command()(search_command.search)
console = Console(stderr=True)
# Piped output gets a fixed, wide layout instead of rich's 80-column default.
out = Console() if sys.stdout.isatty() else Console(width=140)


METRICS_PORT = typer.Option(
    0, min=0, max=65535, help="serve Prometheus metrics on this port at /metrics (0: off)"
)
METRICS_HOST = typer.Option("127.0.0.1", help="address the metrics port listens on")


def _db(db: Path | None) -> Path:
    return db or get_settings().db_path


def _fail(exc: RecsysError) -> None:
    console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2 if isinstance(exc, InvalidInputError) else 1)


def _metrics_table(title: str, metrics: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}")
    return table


@app.command("demo-data")
def demo_data(
    out_dir: Annotated[Path, typer.Option("--out", help="folder for events.parquet, items.csv")],
    users: int = typer.Option(5_000, min=1),
    items: int = typer.Option(2_000, min=1),
    events: int = typer.Option(100_000, min=1),
    seed: int = typer.Option(42),
) -> None:
    """Generate a synthetic shop (deterministic for a seed)."""
    from recsys_lite.data import demo

    shop = demo.generate(users, items, events, seed)
    events_path, items_path = demo.write(shop, out_dir)
    out.print(f"wrote {shop.events.num_rows:,} events to {events_path}")
    out.print(f"wrote {shop.items.num_rows:,} items to {items_path}")


@app.command()
def ingest(
    events: Annotated[Optional[Path], typer.Option(help="events file or folder")] = None,  # noqa: UP045
    items: Annotated[Optional[Path], typer.Option(help="item catalog file or folder")] = None,  # noqa: UP045
    db: DbOption = None,
) -> None:
    """Validate and load events and/or items into the store, all or nothing."""
    from recsys_lite.data.ingest import ingest as run_ingest
    from recsys_lite.data.store import Store

    try:
        report = run_ingest(Store(_db(db)), events, items, show_progress=console.is_terminal)
    except RecsysError as exc:
        _fail(exc)
        return
    out.print(
        f"ingested {report.events_added:,} new events and {report.items_upserted:,} items from"
        f" {len(report.files)} file(s) into {_db(db)}"
    )
    if report.duplicates_in_input or report.already_stored:
        out.print(
            f"skipped {report.duplicates_in_input:,} rows repeating an earlier row of the same"
            f" input and {report.already_stored:,} events already in the store"
        )


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


@app.command()
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
            Store(_db(db)),
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
        _fail(exc)
        return
    if result.metrics:
        out.print(_metrics_table(f"{model} on the holdout", result.metrics["metrics"]))
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
    out.print(f"saved {model} artifact to {output} ({timings})")


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Option("--model-dir", help="artifact directory")],
    db: DbOption = None,
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Evaluate an artifact: on events newer than it if any, else its recipe on the holdout."""
    from recsys_lite.data.store import Store
    from recsys_lite.training import evaluate_artifact

    try:
        result = evaluate_artifact(model_dir, Store(_db(db)), show_progress=console.is_terminal)
    except RecsysError as exc:
        _fail(exc)
        return
    if as_json:
        out.print_json(json.dumps(result))
        return
    out.print(_metrics_table(f"{result['model']} ({result['split']['method']})", result["metrics"]))
    out.print(
        f"{result['users_evaluated']:,} users evaluated;"
        f" {result['cold_start']['users']:,} test users were new (popular fallback)"
    )


@app.command()
def serve(
    model_dir: ModelDirOption = None,
    db: DbOption = None,
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000, min=1, max=65535),
    workers: int = typer.Option(1, min=1),
) -> None:
    """Serve recommendations over HTTP (docs at /docs)."""
    import uvicorn

    from recsys_lite.models.artifact import read_manifest
    from recsys_lite.observability.logs import configure_logging, uvicorn_log_config

    settings = get_settings()
    configure_logging(settings)
    out.quiet = settings.log_format == "json"  # every line on the console is then JSON
    resolved_model_dir = model_dir or settings.model_dir
    try:
        read_manifest(resolved_model_dir)  # fail here, clearly, not inside a worker
        keys = KeyRing.from_settings(settings)
    except RecsysError as exc:
        _fail(exc)
        return
    # Workers are separate processes that build their app from the environment.
    os.environ["MODEL_DIR"] = str(resolved_model_dir)
    os.environ["DB_PATH"] = str(_db(db))
    get_settings.cache_clear()
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    out.print(
        f"RecSys-Lite serves {resolved_model_dir} on {base} once loaded; open\n"
        f"  {base}/docs                     the API, to try in the browser\n"
        f"  {base}/recommend?user_id=U00042  recommendations for a shopper\n"
        f"  {base}/health                   the served model",
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    if settings.demo_site_dir.is_dir():
        out.print(f"  {base}/demo/                   the demo shop (widget)", highlight=False)
    if keys.keys:
        names = ", ".join(f"{key.name} ({'+'.join(sorted(key.scopes))})" for key in keys.keys)
        out.print(f"API keys: {names}", highlight=False, soft_wrap=True)
    else:
        out.print(
            "No API key is configured: reads and browser events only. Catalog writes, purchases"
            " and the admin API need one (ADMIN_API_KEY, API_KEYS or `recsys-lite keys add`).",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
    uvicorn.run(
        "recsys_lite.serving.app:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        access_log=False,
        log_config=uvicorn_log_config(settings),
    )


@app.command()
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
            Store(_db(db)),
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
        _fail(exc)
        return
    winner, best, test = outcome.model, outcome.best_params, result.metrics["metrics"]
    out.print(f"best validation {metric}: {outcome.best_value:.4f} ({winner} {best})")
    out.print(_metrics_table(f"{winner} (best params) on the test split", test))
    out.print(f"saved the tuned {winner} to {output}; study in {outcome.study_path}")


@app.command()
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
            Store(_db(db)),
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
        _fail(exc)
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


@app.command()
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
        _fail(exc)
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


@app.command("stream-ingest")
def stream_ingest(
    watch: Annotated[Path, typer.Option("--watch", help="folder to pick up files from")],
    db: DbOption = None,
    interval: float = typer.Option(1.0, min=0.05, help="seconds between scans"),
    settle_seconds: float = typer.Option(
        1.0, min=0.0, help="leave files modified more recently than this alone"
    ),
    once: bool = typer.Option(False, "--once", help="ingest what is there, then exit"),
    metrics_port: int = METRICS_PORT,
    metrics_host: str = METRICS_HOST,
) -> None:
    """Ingest new Parquet/CSV/JSONL files from a folder, each exactly once (items*.csv: catalog)."""
    from recsys_lite.data.store import Store
    from recsys_lite.observability.process import observe_stream_ingest
    from recsys_lite.online.inbox import Inbox
    from recsys_lite.online.inbox import watch as run_watch

    observe_stream_ingest(get_settings(), watch, metrics_port, metrics_host)
    try:
        run_watch(
            Store(_db(db)), Inbox(watch), interval=interval, settle_seconds=settle_seconds,
            once=once,
        )  # fmt: skip
    except KeyboardInterrupt:
        return
    except RecsysError as exc:
        _fail(exc)


@app.command()
def worker(
    model_dir: ModelDirOption = None,
    db: DbOption = None,
    interval: float = typer.Option(60.0, min=0.1, help="seconds between micro-batches"),
    retrain_every: float = typer.Option(3600.0, min=1.0, help="retrain at least this often"),
    min_new_events: int = typer.Option(1000, min=2, help="retrain once this many have arrived"),
    once: bool = typer.Option(False, "--once", help="one cycle, then exit"),
    metrics_port: int = METRICS_PORT,
    metrics_host: str = METRICS_HOST,
) -> None:
    """Fold new events into the store, retrain in the background, swap in if not worse."""
    from recsys_lite.data.store import Store
    from recsys_lite.jobs.worker import run_worker
    from recsys_lite.observability.process import observe_worker

    settings = get_settings()
    served = model_dir or settings.model_dir
    observe_worker(settings, served, _db(db), metrics_port, metrics_host)
    try:
        reports = run_worker(
            served, Store(_db(db)), interval=interval,
            retrain_every=retrain_every, min_new_events=min_new_events, once=once,
        )  # fmt: skip
    except KeyboardInterrupt:
        return
    except RecsysError as exc:
        _fail(exc)
        return
    for report in reports:
        out.print(f"{report.new_events:,} new events: {report.decision}")


@app.command()
def info(db: DbOption = None) -> None:
    """What the store holds."""
    from recsys_lite.data.store import Store

    try:
        counts = Store(_db(db)).counts()
    except RecsysError as exc:
        _fail(exc)
        return
    for name, value in counts.items():
        out.print(f"{name}: {value:,}")


if __name__ == "__main__":
    app()
