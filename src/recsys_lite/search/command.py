"""``recsys-lite search``: the /search answer from the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from recsys_lite.config import get_settings
from recsys_lite.errors import InvalidInputError, RecsysError
from recsys_lite.ranking.filters import FilterParams
from recsys_lite.search.engine import MODES

console = Console(stderr=True)


def _help(name: str) -> str:
    """The API's description of a filter parameter: one wording for both."""
    return FilterParams.model_fields[name].description or ""


def _values(name: str) -> Any:
    return typer.Option(f"--{name.replace('_', '-')}", help=_help(name))


def search(
    query: Annotated[str, typer.Argument(help="what a shopper would type")],
    k: Annotated[int, typer.Option("--k", min=1, help="number of items")] = 10,
    category: Annotated[Optional[str], _values("category")] = None,  # noqa: UP045
    brand: Annotated[Optional[str], _values("brand")] = None,  # noqa: UP045
    exclude_categories: Annotated[Optional[str], _values("exclude_categories")] = None,  # noqa: UP045
    exclude_brands: Annotated[Optional[str], _values("exclude_brands")] = None,  # noqa: UP045
    exclude_ids: Annotated[Optional[str], _values("exclude_ids")] = None,  # noqa: UP045
    min_price: Annotated[Optional[float], _values("min_price")] = None,  # noqa: UP045
    max_price: Annotated[Optional[float], _values("max_price")] = None,  # noqa: UP045
    user_id: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--user-id", help="lean to this shopper's taste (their trained history)"),
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help=" or ".join(MODES))] = "hybrid",
    model_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--model-dir", help="artifact (default: $MODEL_DIR)"),
    ] = None,
    db: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--db", help="DuckDB store, for item details (default: $DB_PATH)"),
    ] = None,
) -> None:
    """Search the catalog as GET /search does; prints the same JSON."""
    from pydantic import ValidationError

    from recsys_lite.data.store import Store
    from recsys_lite.models.artifact import load_artifact
    from recsys_lite.search.api import SearchQuery, shopper_taste
    from recsys_lite.search.build import SEARCH_FILE
    from recsys_lite.search.embedder import Encoder
    from recsys_lite.search.engine import answer, run
    from recsys_lite.search.index import TextIndex

    settings = get_settings()
    try:
        try:
            given = {
                "q": query, "k": k, "category": category, "brand": brand,
                "exclude_categories": exclude_categories, "exclude_brands": exclude_brands,
                "exclude_ids": exclude_ids, "min_price": min_price, "max_price": max_price,
                "user_id": user_id, "mode": mode,
            }  # fmt: skip
            parsed = SearchQuery.model_validate(
                given, context={"max_k": settings.max_recommendations}
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidInputError(problems) from None
        artifact = load_artifact(model_dir or settings.model_dir, settings)
        if not (artifact.path / SEARCH_FILE).is_file():
            raise RecsysError(
                f"{artifact.path}: no search index; train with SEARCH_INDEX=on (needs the search"
                " extra)"
            )
        index = TextIndex.from_bytes((artifact.path / SEARCH_FILE).read_bytes())
        items = Store(db or settings.db_path).read_items().to_pylist()
        rows = {row["item_id"]: row for row in items}
        model = artifact.model
        taste: tuple[list[str], list[float]] = ([], [])
        if parsed.user_id is not None:
            taste = shopper_taste(model, _NoOnlineEvents(), parsed.user_id)
        request = parsed.request(*taste)
        encoder = None if parsed.mode == "lexical" else Encoder()
        result = run(index, encoder, request)
    except RecsysError as exc:
        console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2 if isinstance(exc, InvalidInputError) else 1) from None
    sys.stdout.buffer.write(answer(request, result, rows.get, parsed.user_id) + b"\n")


class _NoOnlineEvents:
    """The command line sees the stored history only (events since training live in the API
    processes' memory)."""

    def has_events(self, user_id: str) -> bool:
        return False

    def recent_history(self, user_id: str) -> None:
        return None
