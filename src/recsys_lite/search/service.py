"""Search in an API process: the artifact's text index and the encoder, loaded in the
background, kept current with catalog writes and new artifacts.

Nothing slow happens on the request path or at start-up: the index and the model (seconds of
imports) load in a thread after the server answers, and /search says 503 until they are ready.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys_lite.config import Settings
from recsys_lite.search.build import SEARCH_FILE
from recsys_lite.search.embedder import SearchUnavailableError
from recsys_lite.search.text import semantic_text, text_key

if TYPE_CHECKING:
    from recsys_lite.search.embedder import Encoder
    from recsys_lite.search.engine import SearchRequest, SearchResult
    from recsys_lite.search.index import TextIndex

log = logging.getLogger(__name__)
NEIGHBOURS = 10  # text neighbours whose model vectors place a brand-new item


class SearchService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.index: TextIndex | None = None
        self.encoder: Encoder | None = None
        self.status = "off" if settings.search_index == "off" else "idle"
        self.error: str | None = None
        # catalog rows accepted by this process, re-applied to the index of each new artifact
        # (which may have been built before they reached the store)
        self._accepted: dict[str, dict[str, Any]] = {}
        self._lock = asyncio.Lock()  # one index update at a time: none may be lost
        self._tasks: set[asyncio.Task[None]] = set()

    # ----- lifecycle ---------------------------------------------------------------------------

    def start(self, artifact: Path) -> None:
        """Load the artifact's index in the background (a new artifact: replace it once
        loaded, serving the previous one meanwhile)."""
        if self.status == "off":
            return
        if not (artifact / SEARCH_FILE).is_file():
            if self.index is None:
                self.status = "missing"
            return
        if self.index is None:
            self.status = "loading"
        self._spawn(self._load(artifact))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def _load(self, artifact: Path) -> None:
        try:
            index = await asyncio.to_thread(self._read, artifact)
            async with self._lock:
                pending = [
                    row for item, row in self._accepted.items()
                    if (n := index.positions.get(item)) is None or index.keys[n] != text_key(row)
                ]  # fmt: skip
                if pending:
                    index = await asyncio.to_thread(self._grow, index, pending)
                self.index = index
                self.status = "ready"
            log.info("search ready: %d items", len(index))
        except Exception as exc:
            log.exception("search index not loaded")
            if self.index is None:
                self.status, self.error = "failed", str(exc)

    def _read(self, artifact: Path) -> TextIndex:
        from recsys_lite.search.embedder import Encoder
        from recsys_lite.search.index import TextIndex

        index = TextIndex.from_bytes((artifact / SEARCH_FILE).read_bytes())
        if self.encoder is None:
            # one thread: a query is one short text, and the server's other work needs the core
            encoder = Encoder(threads=1)
            encoder.encode_query("warm up")  # the first pass allocates; no request should pay it
            self.encoder = encoder
        return index

    def _grow(self, index: TextIndex, rows: list[dict[str, Any]]) -> TextIndex:
        assert self.encoder is not None
        reusable = {
            n: index.vectors[p] for n, row in enumerate(rows)
            if (p := index.positions.get(row["item_id"])) is not None
            and index.keys[p] == text_key(row)
        }  # fmt: skip
        missing = [n for n in range(len(rows)) if n not in reusable]
        vectors = np.zeros((len(rows), index.vectors.shape[1]), dtype=np.float32)
        if missing:
            vectors[missing] = self.encoder.encode([semantic_text(rows[n]) for n in missing])
        for n, vector in reusable.items():
            vectors[n] = vector
        return index.with_rows(rows, vectors)

    # ----- writes ------------------------------------------------------------------------------

    async def add(self, rows: list[dict[str, Any]]) -> None:
        """New or changed full catalog rows: searchable when this returns (if search is ready;
        otherwise applied when the index loads)."""
        if self.status == "off" or not rows:
            return
        for row in rows:
            self._accepted[row["item_id"]] = row
        async with self._lock:
            if self.index is None:
                return
            self.index = await asyncio.to_thread(self._grow, self.index, rows)

    def add_later(self, rows: list[dict[str, Any]]) -> None:
        """``add`` from synchronous code running on the event loop (rows from a replica)."""
        if self.status != "off" and rows:
            self._spawn(self.add(rows))

    # ----- reads -------------------------------------------------------------------------------

    def ready(self) -> tuple[TextIndex, Encoder]:
        if self.index is None or self.encoder is None:
            raise SearchUnavailableError(self.describe())
        return self.index, self.encoder

    def describe(self) -> str:
        return {
            "off": "search is off (SEARCH_INDEX=off)",
            "idle": "search has not started",
            "missing": "the served artifact has no search index; train with SEARCH_INDEX=on"
            " (needs the search extra)",
            "loading": "the search index is loading; retry in a few seconds",
            "failed": f"the search index failed to load: {self.error}",
            "ready": "ready",
        }[self.status]

    async def search(self, request: SearchRequest) -> SearchResult:
        from recsys_lite.search.engine import run

        index, encoder = self.ready()
        # encoding takes milliseconds: off the event loop, which keeps answering meanwhile
        return await asyncio.to_thread(run, index, encoder, request)

    def neighbours(
        self, item_ids: list[str], usable: Callable[[str], bool]
    ) -> dict[str, tuple[list[str], np.ndarray]]:
        """For each item in the index, its nearest items in text that ``usable`` accepts
        (ids and cosine similarities): where a new item belongs before anyone has touched it."""
        index = self.index
        if index is None:
            return {}
        found: dict[str, tuple[list[str], np.ndarray]] = {}
        for item in item_ids:
            position = index.positions.get(item)
            if position is None:
                continue
            near, similarity = index.nearest(position, 4 * NEIGHBOURS)
            keep = [n for n, p in enumerate(near.tolist()) if usable(index.ids[p])][:NEIGHBOURS]
            if keep:
                found[item] = ([index.ids[p] for p in near[keep].tolist()], similarity[keep])
        return found
