"""Requests that arrive together share one pass of the costly step (group commit).

A shop's pages post an event per view. Each post used to pay on its own for a DuckDB
validation (milliseconds: a statement's fixed cost, not the rows), a Parquet file with two
fsyncs, and later one drain and one bus read per file; under a few dozen concurrent posts the
API managed about 50 a second. A ``Group`` runs its step for every request that arrived while
the previous run was busy: a lone request starts at once (no added latency); under load, one
run serves many requests, and each request still gets its own result or its own error.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# One run's results, in the order of its items: a result, or the exception that item raises.
Step = Callable[[list[Item]], Awaitable[list[Result | Exception]]]


class Group(Generic[Item, Result]):
    def __init__(self, step: Step[Item, Result], size: Callable[[Item], int], limit: int):
        """``size(item)`` counts an item against ``limit`` per run (e.g. its rows); an item
        over the limit still runs, alone."""
        self.step = step
        self.size = size
        self.limit = limit
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._running: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._running is None:
            # a context of its own: the run outlives the request that started it, whose
            # request id and trace span would otherwise label every later run
            self._running = asyncio.create_task(self._run(), context=contextvars.Context())
        return await future

    async def _run(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        try:
            while self._waiting:
                taken, total = 0, 0
                for item, _ in self._waiting:
                    total += self.size(item)
                    if taken and total > self.limit:
                        break
                    taken += 1
                batch, self._waiting = self._waiting[:taken], self._waiting[taken:]
                try:
                    results = await self.step([item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"{len(results)} results for {len(batch)} requests")
                except Exception as exc:  # the step itself failed: every request hears it
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # its request went away (client disconnected)
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                batch = []
        finally:
            # cancelled (the server stopping): nobody waits forever for a run that will not come
            for _, future in [*batch, *self._waiting]:
                if not future.done():
                    future.set_exception(RuntimeError("the server stopped before this request"))
            self._waiting = []
            self._running = None
