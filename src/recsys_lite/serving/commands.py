"""``recsys-lite profile`` and ``recsys-lite status``: the API's answers, from the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from recsys_lite.cli_options import DbOption, ModelDirOption
from recsys_lite.config import get_settings
from recsys_lite.data.ids import normalise_id
from recsys_lite.data.store import Store
from recsys_lite.errors import RecsysError
from recsys_lite.models.artifact import load_artifact
from recsys_lite.serving.catalog import Catalog
from recsys_lite.serving.profile import user_profile
from recsys_lite.serving.status import status_document

console = Console(stderr=True)
out = Console()


def profile(
    user_id: Annotated[str, typer.Option("--user-id", help="the shopper's id")],
    recent_limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
    top_categories: Annotated[int, typer.Option(min=1, max=50)] = 5,
    db: DbOption = None,
    model_dir: ModelDirOption = None,
) -> None:
    """What the shop knows about one shopper (as GET /users/{id}/profile)."""
    settings = get_settings()
    store = Store(db or settings.db_path)
    try:
        model = load_artifact(model_dir or settings.model_dir, settings).model
        document = user_profile(
            store, model, Catalog.from_store(model.item_map, store), normalise_id(user_id),
            online_events=[], recent_limit=recent_limit, top_categories=top_categories,
        )  # fmt: skip
    except (RecsysError, ValueError) as exc:
        console.print(f"[bold red]error:[/] {getattr(exc, 'message', exc)}", highlight=False)
        raise typer.Exit(code=1) from None
    out.print_json(data=document)


def status(db: DbOption = None, model_dir: ModelDirOption = None) -> None:
    """The store, the served model, the worker and any training job (as GET /status; online
    state and the bus live in API processes and are null here)."""
    settings = get_settings()
    try:
        artifact = load_artifact(model_dir or settings.model_dir, settings)
        document = status_document(settings, Store(db or settings.db_path), artifact)
    except RecsysError as exc:
        console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(code=1) from None
    out.print_json(data=document)
