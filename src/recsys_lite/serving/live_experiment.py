"""An experiment in a serving process: the variants' models, the choice per request, shadows.

The file names every artifact loaded, so memory is bounded by the operator's choice. Variants
with their own artifact keep the model they loaded (the hot swap replaces only the default);
a variant without one serves whatever MODEL_DIR serves. Shadow variants are scored after the
answer is sent, by one background task fed through a bounded queue: when it is full the
request is dropped from the shadow log (and counted), never delayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from recsys_lite.config import Settings
from recsys_lite.experiments.design import (
    Experiment,
    interleaved_id,
    load_experiment,
    recommendation_id,
    team_draft,
)
from recsys_lite.models.types import Ranked
from recsys_lite.serving import lists
from recsys_lite.serving.runtime import ServingState
from recsys_lite.serving.schemas import RecommendQuery

log = logging.getLogger(__name__)
SHADOW_QUEUE = 256
SHADOW_LOG_BYTES = 5_000_000  # then the log moves to .1 (one old file kept)


class LiveExperiment:
    def __init__(self, experiment: Experiment, settings: Settings) -> None:
        self.experiment = experiment
        self.states: dict[str, ServingState] = {
            v.name: ServingState.load(settings.model_copy(update={"model_dir": v.artifact}))
            for v in experiment.variants
            if v.artifact is not None
        }
        self.shadow_log = settings.db_path.parent / f"shadow-{experiment.name}.jsonl"
        self.queue: asyncio.Queue[RecommendQuery] = asyncio.Queue(SHADOW_QUEUE)
        self.shadow_counts = {"queued": 0, "logged": 0, "dropped": 0, "failed": 0}
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> LiveExperiment | None:
        path = settings.experiment_file
        return None if path is None else cls(load_experiment(Path(path)), settings)

    def state_of(self, variant: str, default: ServingState) -> ServingState:
        return self.states.get(variant, default)

    def recommend(
        self, query: RecommendQuery, default: ServingState
    ) -> tuple[str, ServingState, lists.Served, str]:
        """The variant shown, the state whose catalog encodes the list, the list, its id."""
        experiment = self.experiment
        if experiment.shadows and not self.queue.full():
            self.queue.put_nowait(query)
            self.shadow_counts["queued"] += 1
        elif experiment.shadows:
            self.shadow_counts["dropped"] += 1
        if experiment.mode == "interleave":
            state, served, teams = self._interleave(query, default)
            return "interleaved", state, served, interleaved_id(teams)
        variant = experiment.assign(query.user_id)
        state = self.state_of(variant, default)
        return variant, state, lists.recommend(state, query), recommendation_id(variant)

    def _interleave(
        self, query: RecommendQuery, default: ServingState
    ) -> tuple[ServingState, lists.Served, list[int]]:
        first, second = (self.state_of(v.name, default) for v in self.experiment.live)
        a, b = lists.recommend(first, query), lists.recommend(second, query)
        # the answer is encoded by the first variant's catalog: the second's items by id
        second_ids = second.model.item_map.ids[b.ranked.items]
        mapped = [first.model.item_map.get(str(i)) for i in second_ids]
        b_items = [i for i in mapped if i is not None]
        coin = os.urandom(4)
        items, teams = team_draft(
            a.ranked.items.tolist(), b_items, len(a.ranked.items) or query.k, coin
        )
        scores = np.array([1.0 / (1 + rank) for rank in range(len(items))], dtype=np.float32)
        ranked = Ranked(np.array(items, dtype=np.int64), scores)
        return first, lists.Served("interleaved", ranked), teams

    def start(self) -> None:
        if self.experiment.shadows:
            self._task = asyncio.create_task(self._score_shadows())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _score_shadows(self) -> None:
        while True:
            query = await self.queue.get()
            try:
                lines = await asyncio.to_thread(self._shadow_lines, query)
                await asyncio.to_thread(self._append, lines)
                self.shadow_counts["logged"] += 1
            except Exception:
                self.shadow_counts["failed"] += 1
                log.exception("shadow variant failed; its list is not logged")

    def _shadow_lines(self, query: RecommendQuery) -> list[str]:
        lines = []
        for variant in self.experiment.shadows:
            state = self.states.get(variant.name)
            if state is None:
                continue
            served = lists.recommend(state, query)
            ids = state.model.item_map.ids[served.ranked.items].tolist()
            # the shopper's bucket, not their id: the log is outside erasure's reach
            bucket = self.experiment.bucket(query.user_id)
            lines.append(
                json.dumps(
                    {
                        "ts": int(time.time()),
                        "variant": variant.name,
                        "bucket": bucket,
                        "source": served.source,
                        "items": ids,
                    }
                )
            )
        return lines

    def _append(self, lines: list[str]) -> None:
        path = self.shadow_log
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size > SHADOW_LOG_BYTES:
                os.replace(path, path.with_suffix(".jsonl.1"))
        with path.open("a") as out:
            out.write("".join(line + "\n" for line in lines))

    def report(self) -> dict[str, Any]:
        return {**self.shadow_counts, "log": str(self.shadow_log)}
