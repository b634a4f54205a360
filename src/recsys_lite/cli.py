"""The ``recsys-lite`` command line: the app, and its commands for data and for running the
service (the model commands are in ``cli_models``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from recsys_lite import cli_models
from recsys_lite.cli_artifacts import rollback
from recsys_lite.cli_console import console, fail, out
from recsys_lite.cli_options import DbOption, ModelDirOption, db_path
from recsys_lite.config import get_settings
from recsys_lite.data.archive_commands import archive_app
from recsys_lite.errors import RecsysError
from recsys_lite.experiments.commands import experiments_app
from recsys_lite.privacy.commands import gdpr_app
from recsys_lite.search import command as search_command
from recsys_lite.security.commands import keys_app
from recsys_lite.security.keys import KeyRing
from recsys_lite.serving import commands as serving_commands

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


METRICS_PORT = typer.Option(
    0, min=0, max=65535, help="serve Prometheus metrics on this port at /metrics (0: off)"
)
METRICS_HOST = typer.Option("127.0.0.1", help="address the metrics port listens on")


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
        report = run_ingest(Store(db_path(db)), events, items, show_progress=console.is_terminal)
    except RecsysError as exc:
        fail(exc)
        return
    out.print(
        f"ingested {report.events_added:,} new events and {report.items_upserted:,} items from"
        f" {len(report.files)} file(s) into {db_path(db)}"
    )
    if report.duplicates_in_input or report.already_stored:
        out.print(
            f"skipped {report.duplicates_in_input:,} rows repeating an earlier row of the same"
            f" input and {report.already_stored:,} events already in the store"
        )


app.command()(cli_models.train)
app.command()(cli_models.evaluate)


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
        fail(exc)
        return
    # Workers are separate processes that build their app from the environment.
    os.environ["MODEL_DIR"] = str(resolved_model_dir)
    os.environ["DB_PATH"] = str(db_path(db))
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


app.command()(cli_models.optimize)
app.command()(cli_models.compare)
app.command()(cli_models.models)


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
    from recsys_lite.online.inbox import Inbox
    from recsys_lite.online.inbox import watch as run_watch
    from recsys_lite.online.observe import observe_stream_ingest

    observe_stream_ingest(get_settings(), watch, metrics_port, metrics_host)
    try:
        run_watch(
            Store(db_path(db)), Inbox(watch), interval=interval, settle_seconds=settle_seconds,
            once=once,
        )  # fmt: skip
    except KeyboardInterrupt:
        return
    except RecsysError as exc:
        fail(exc)


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
    from recsys_lite.online.observe import observe_worker

    settings = get_settings()
    served = model_dir or settings.model_dir
    observe_worker(settings, served, db_path(db), metrics_port, metrics_host)
    try:
        reports = run_worker(
            served, Store(db_path(db)), interval=interval,
            retrain_every=retrain_every, min_new_events=min_new_events, once=once,
        )  # fmt: skip
    except KeyboardInterrupt:
        return
    except RecsysError as exc:
        fail(exc)
        return
    for report in reports:
        out.print(f"{report.new_events:,} new events: {report.decision}")


@app.command()
def info(db: DbOption = None) -> None:
    """What the store holds."""
    from recsys_lite.data.store import Store

    try:
        counts = Store(db_path(db)).counts()
    except RecsysError as exc:
        fail(exc)
        return
    for name, value in counts.items():
        out.print(f"{name}: {value:,}")


if __name__ == "__main__":
    app()
