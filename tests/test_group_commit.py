"""Requests that arrive together share one run of a costly step, each with its own answer."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest

from recsys_lite.data import validation
from recsys_lite.serving.group_commit import Group


def test_requests_arriving_during_a_run_share_the_next_one() -> None:
    runs: list[list[int]] = []

    async def step(items: list[int]) -> list[int | Exception]:
        runs.append(items)
        await asyncio.sleep(0.01)  # the costly part, while more requests arrive
        return [ValueError(f"odd {n}") if n % 2 else n * 10 for n in items]

    async def scenario() -> list[object]:
        group: Group[int, int] = Group(step, lambda n: 1, limit=3)
        first = asyncio.create_task(group.submit(0))
        await asyncio.sleep(0.001)  # its run has started
        later = [group.submit(n) for n in range(1, 6)]
        return await asyncio.gather(first, *later, return_exceptions=True)

    answers = asyncio.run(scenario())
    # the first starts alone at once; the five that queued behind it go at most three a run
    assert runs == [[0], [1, 2, 3], [4, 5]]
    assert answers[0] == 0 and answers[2] == 20 and answers[4] == 40
    assert [str(a) for a in answers[1::2]] == ["odd 1", "odd 3", "odd 5"]
    assert all(isinstance(a, ValueError) for a in answers[1::2])


def test_a_failing_step_fails_every_request_of_its_run_and_the_next_run_still_goes() -> None:
    calls = 0

    async def step(items: list[str]) -> list[str | Exception]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk full")
        return [item.upper() for item in items]

    async def scenario() -> tuple[list[object], str]:
        group: Group[str, str] = Group(step, lambda item: len(item), limit=100)
        first = await asyncio.gather(group.submit("a"), return_exceptions=True)
        return list(first), await group.submit("b")

    first, later = asyncio.run(scenario())
    assert isinstance(first[0], OSError) and later == "B"


def test_an_item_over_the_limit_runs_alone() -> None:
    runs: list[list[str]] = []

    async def step(items: list[str]) -> list[str | Exception]:
        runs.append(items)
        await asyncio.sleep(0)
        return list(items)

    async def scenario() -> None:
        group: Group[str, str] = Group(step, len, limit=4)
        await asyncio.gather(*(group.submit(s) for s in ["x", "toolong", "y", "z"]))

    asyncio.run(scenario())
    assert runs == [["x"], ["toolong"], ["y", "z"]]


def test_requests_validated_together_keep_their_own_rows_and_errors() -> None:
    """The real validation of several requests as one batch: a refused request among
    accepted ones names its own rows; the accepted ones come back with their own rows."""
    concurrent = 24

    def request(n: int, qty: str) -> pa.Table:
        rows = n % 3 + 1
        return pa.table(
            {
                "user_id": [f"U{n}"] * rows,
                "item_id": [f"I{k}" for k in range(rows)],
                "ts": ["1700000000"] * rows,
                "qty": [qty] * rows,
            }
        )

    requests = [request(n, "-3" if n == 5 else "1") for n in range(concurrent)]
    results = validation.validate_event_requests(requests)
    for n, (sent, result) in enumerate(zip(requests, results, strict=True)):
        if n == 5:
            assert isinstance(result, Exception)
            assert "request: rows 1, 2, 3, column qty: negative quantity" in str(result)
        else:
            assert isinstance(result, pa.Table) and result.num_rows == sent.num_rows
            assert result.column("user_id").to_pylist() == [f"U{n}"] * sent.num_rows


def test_a_stopped_run_leaves_no_request_waiting() -> None:
    async def step(items: list[int]) -> list[int | Exception]:
        await asyncio.sleep(10)
        return list(items)

    async def scenario() -> list[object]:
        group: Group[int, int] = Group(step, lambda n: 1, limit=10)
        first = asyncio.create_task(group.submit(1))
        await asyncio.sleep(0.01)  # its run is in the step
        second = asyncio.create_task(group.submit(2))  # waiting for the next run
        await asyncio.sleep(0)
        assert group._running is not None
        group._running.cancel()  # the server stops
        both = asyncio.gather(first, second, return_exceptions=True)
        return list(await asyncio.wait_for(both, 2))

    answers = asyncio.run(scenario())
    assert all(isinstance(a, RuntimeError) and "stopped" in str(a) for a in answers), answers


def test_one_bad_request_among_many_costs_a_few_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    passes: list[int] = []
    validate = validation.validate_events

    def counted(events: pa.Table, *args: object, **kwargs: object) -> pa.Table:
        passes.append(events.num_rows)
        return validate(events)

    monkeypatch.setattr(validation, "validate_events", counted)
    requests = [
        pa.table({"user_id": [f"U{n}"], "item_id": ["I1"], "ts": ["nope" if n == 40 else "1"]})
        for n in range(64)
    ]
    results = validation.validate_event_requests(requests)
    assert [n for n, r in enumerate(results) if isinstance(r, Exception)] == [40]
    assert "row 1, column ts: unparseable timestamp 'nope'" in str(results[40])
    assert len(passes) <= 2 * 6 + 1, len(passes)  # halving down to the bad one, not 64
