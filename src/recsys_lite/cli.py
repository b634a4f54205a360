"""The ``recsys-lite`` command line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from recsys_lite.config import get_settings
from recsys_lite.errors import InvalidInputError, RecsysError

app = typer.Typer(
    help="RecSys-Lite: recommendations for one shop on one machine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

DbOption = Annotated[
    Optional[Path], typer.Option("--db", help="DuckDB store (default: $DB_PATH)")  # noqa: UP045
]


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
        f"ingested {report.events_added:,} new events ({report.duplicates_skipped:,} already"
        f" stored) and {report.items_upserted:,} items from {len(report.files)} file(s)"
        f" into {_db(db)}"
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
    model: Annotated[str, typer.Argument(help="popular, als or bpr")],
    output: Annotated[Path, typer.Option("--output", help="artifact directory")] = Path(
        "artifacts/current"
    ),
    db: DbOption = None,
    test_size: float = typer.Option(0.2, min=0.0, max=0.9, help="0 skips the evaluation"),
    split: str = typer.Option("temporal", help="temporal or leave-last"),
    last_n: int = typer.Option(1, min=1, help="events held out per user with leave-last"),
    params: Optional[str] = typer.Option(None, help="model parameters as JSON"),  # noqa: UP045
) -> None:
    """Train a model, evaluate it on a time-aware holdout, and write an artifact."""
    from recsys_lite.data.store import Store
    from recsys_lite.training import train as run_train

    try:
        if split not in ("temporal", "leave-last"):
            raise InvalidInputError(f"unknown split {split!r}; use temporal or leave-last")
        result = run_train(
            Store(_db(db)),
            model,
            output,
            params=_parse_params(params),
            test_size=test_size,
            split_method=split,  # type: ignore[arg-type]
            last_n=last_n,
            show_progress=console.is_terminal,
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
    model_dir: Annotated[
        Optional[Path], typer.Option("--model-dir", help="artifact (default: $MODEL_DIR)")  # noqa: UP045
    ] = None,
    db: DbOption = None,
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000, min=1, max=65535),
    workers: int = typer.Option(1, min=1),
) -> None:
    """Serve recommendations over HTTP (docs at /docs)."""
    import uvicorn

    from recsys_lite.models.artifact import read_manifest

    settings = get_settings()
    resolved_model_dir = model_dir or settings.model_dir
    try:
        read_manifest(resolved_model_dir)  # fail here, clearly, not inside a worker
    except RecsysError as exc:
        _fail(exc)
        return
    # Workers are separate processes that build their app from the environment.
    os.environ["MODEL_DIR"] = str(resolved_model_dir)
    os.environ["DB_PATH"] = str(_db(db))
    get_settings.cache_clear()
    uvicorn.run(
        "recsys_lite.serving.app:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


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
