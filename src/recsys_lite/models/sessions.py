"""Sessions: a user's time-ordered events cut at gaps of inactivity, and the session-parallel
mini-batches that train over them (numpy only: the session models share it, torch or not)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sessions:
    """Items of each session, sessions concatenated; session s is items[offsets[s]:offsets[s+1]]."""

    items: np.ndarray
    offsets: np.ndarray
    start_ts: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1


def session_ids(
    groups: np.ndarray, ts: np.ndarray, gap_seconds: float, *, strict: bool = False
) -> np.ndarray:
    """Session number of each event; events come grouped (by user), each group time-ordered.

    A gap of ``gap_seconds`` or more ends a session; with ``strict``, only a longer one.
    """
    if len(groups) == 0:
        return np.zeros(0, dtype=np.int64)
    gaps = np.diff(ts.astype(np.float64))
    new = np.ones(len(groups), dtype=bool)
    new[1:] = (groups[1:] != groups[:-1]) | (gaps > gap_seconds if strict else gaps >= gap_seconds)
    return np.cumsum(new) - 1


def not_repeated(session: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Mask of the events that do not repeat the previous event's item in the same session."""
    keep = np.ones(len(items), dtype=bool)
    keep[1:] = (items[1:] != items[:-1]) | (session[1:] != session[:-1])
    return keep


def split_sessions(
    users: np.ndarray,
    items: np.ndarray,
    ts: np.ndarray,
    gap_seconds: float,
    *,
    drop_repeats: bool = False,
    min_length: int = 2,
) -> Sessions:
    """Cut time-ordered events into sessions of at least ``min_length`` events."""
    order = np.argsort(users, kind="stable")  # stable: each user's events stay time-ordered
    users, items, ts = users[order], items[order], ts[order]
    session = session_ids(users, ts, gap_seconds)
    if drop_repeats:
        keep = not_repeated(session, items)
        session, items, ts = session[keep], items[keep], ts[keep]
    lengths = np.bincount(session) if len(session) else np.zeros(0, dtype=np.int64)
    long_enough = (lengths >= min_length)[session]
    session, items, ts = session[long_enough], items[long_enough], ts[long_enough]
    _, first, compact = np.unique(session, return_index=True, return_inverse=True)
    by_start = np.argsort(ts[first], kind="stable")
    # Sessions are laid out in order of their start, the order they enter the mini-batches.
    rank = np.empty(len(by_start), dtype=np.int64)
    rank[by_start] = np.arange(len(by_start))
    positions = np.argsort(rank[compact], kind="stable")
    lengths = np.bincount(compact, minlength=len(first))[by_start]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return Sessions(items[positions].astype(np.int64), offsets, ts[first][by_start])


def last_sessions(
    groups: np.ndarray, items: np.ndarray, ts: np.ndarray, gap_seconds: float, drop_repeats: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Items and group of the events in each group's most recent session, in time order.

    ``groups`` holds contiguous runs (one per user), each time-ordered.
    """
    session = session_ids(groups, ts, gap_seconds)
    if drop_repeats:
        keep = not_repeated(session, items)
        session, items, groups = session[keep], items[keep], groups[keep]
    if len(session) == 0:
        return items, groups
    last_of_group = np.ones(len(groups), dtype=bool)
    last_of_group[:-1] = groups[1:] != groups[:-1]
    newest = np.zeros(int(groups.max()) + 1, dtype=np.int64)
    newest[groups[last_of_group]] = session[last_of_group]
    recent = session == newest[groups]
    return items[recent], groups[recent]


@dataclass(frozen=True)
class Step:
    """One step of session-parallel training.

    ``inputs`` are positions (into ``Sessions.items``) of the event each active slot feeds in;
    its target is the next position. ``keep`` lists the rows of the previous step's hidden
    state whose slots are still active (None: all of them); ``reset`` marks slots whose session
    begins at this step and whose hidden state therefore restarts from zero.
    """

    inputs: np.ndarray
    reset: np.ndarray
    keep: np.ndarray | None


def session_parallel_steps(offsets: np.ndarray, batch_size: int) -> Iterator[Step]:
    """Steps over sessions taken in order, ``batch_size`` at a time, each in its own slot.

    When a slot's session has no next event left, the next unused session takes the slot;
    once no session is left, the slot is dropped and the batch narrows.
    """
    n_sessions = len(offsets) - 1
    width = min(batch_size, n_sessions)
    cursor = offsets[:width].copy()
    end = offsets[1 : width + 1].copy()
    waiting = width
    reset = np.ones(width, dtype=bool)
    keep: np.ndarray | None = None
    while len(cursor):
        yield Step(cursor.copy(), reset, keep)
        cursor += 1
        finished = np.flatnonzero(cursor + 1 >= end)
        reset = np.zeros(len(cursor), dtype=bool)
        keep = None
        if len(finished) == 0:
            continue
        refill = finished[: n_sessions - waiting]
        taken = np.arange(waiting, waiting + len(refill))
        waiting += len(refill)
        cursor[refill], end[refill], reset[refill] = offsets[taken], offsets[taken + 1], True
        if len(refill) < len(finished):
            alive = np.ones(len(cursor), dtype=bool)
            alive[finished[len(refill) :]] = False
            keep = np.flatnonzero(alive)
            cursor, end, reset = cursor[keep], end[keep], reset[keep]
