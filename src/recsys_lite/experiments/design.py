"""The experiment file, assignment of shoppers to variants, and recommendation ids.

Assignment is a salted hash of the user id: the same shopper always lands in the same variant,
in every API process and after restarts, and nothing per shopper is stored. The variant (and,
when interleaving, the team of every position) is written into the recommendation id, so an
event citing an answer is attributed from the store alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from recsys_lite.errors import InvalidInputError

BUCKETS = 10_000
NAME = re.compile(r"^[a-z0-9_-]{1,20}$")
INTERLEAVED = "il"  # the variant field of an interleaved answer's id
MAX_TEAM_POSITIONS = 100  # positions whose team fits in an id (100 bits as 25 hex characters)
Mode = Literal["ab", "interleave"]


@dataclass(frozen=True)
class Variant:
    name: str
    artifact: Path | None  # None: the artifact served at MODEL_DIR
    weight: float
    shadow: bool = False


@dataclass(frozen=True)
class Experiment:
    name: str
    salt: str
    control: str
    variants: tuple[Variant, ...]
    mode: Mode = "ab"
    primary_metric: str = "ctr"

    @property
    def live(self) -> tuple[Variant, ...]:
        """Variants whose lists are shown."""
        return tuple(v for v in self.variants if not v.shadow)

    @property
    def shadows(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if v.shadow)

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise InvalidInputError(f"experiment {self.name!r} has no variant {name!r}")

    def bucket(self, user_id: str) -> int:
        digest = hashlib.sha256(f"{self.salt}{user_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % BUCKETS

    def assign(self, user_id: str) -> str:
        """The live variant a shopper sees: buckets split in proportion to the weights."""
        point = self.bucket(user_id) / BUCKETS * sum(v.weight for v in self.live)
        for variant in self.live:
            point -= variant.weight
            if point < 0:
                return variant.name
        return self.live[-1].name

    def expected_shares(self) -> dict[str, float]:
        total = sum(v.weight for v in self.live)
        return {v.name: v.weight / total for v in self.live}


def load_experiment(path: Path) -> Experiment:
    """Read an experiment file (TOML, or JSON by its suffix); relative artifact paths are
    relative to the file."""
    try:
        text = path.read_text()
        raw: dict[str, Any] = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{path}: cannot read the experiment file: {exc}") from None
    try:
        variants = tuple(
            Variant(
                name=str(v["name"]),
                artifact=None if v.get("artifact") is None else path.parent / str(v["artifact"]),
                weight=float(v.get("weight", 1.0)),
                shadow=bool(v.get("shadow", False)),
            )
            for v in raw["variants"]
        )
        experiment = Experiment(
            name=str(raw.get("name", path.stem)),
            salt=str(raw["salt"]),
            control=str(raw["control"]),
            variants=variants,
            mode=raw.get("mode", "ab"),
            primary_metric=str(raw.get("primary_metric", "ctr")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{path}: invalid experiment file: {exc!r}") from None
    _check(path, experiment)
    return experiment


def _check(path: Path, experiment: Experiment) -> None:
    names = [v.name for v in experiment.variants]
    problems = []
    if len(set(names)) != len(names):
        problems.append("variant names repeat")
    problems += [
        f"variant name {n!r} is not [a-z0-9_-]{{1,20}}" for n in names if not NAME.match(n)
    ]
    if INTERLEAVED in names:
        problems.append(f"{INTERLEAVED!r} is reserved for interleaved answers")
    if experiment.control not in names:
        problems.append(f"control {experiment.control!r} is not a variant")
    elif experiment.variant(experiment.control).shadow:
        problems.append("the control cannot be a shadow variant")
    if any(v.weight < 0 for v in experiment.variants) or not any(
        v.weight > 0 for v in experiment.live
    ):
        problems.append("weights must be >= 0, and some live variant's > 0")
    if experiment.mode not in ("ab", "interleave"):
        problems.append(f"mode {experiment.mode!r} is not ab or interleave")
    if experiment.mode == "interleave" and len(experiment.live) != 2:
        problems.append("interleave compares exactly two live variants")
    if experiment.primary_metric not in ("ctr", "conversion", "revenue_per_impression"):
        problems.append("primary_metric is one of ctr, conversion, revenue_per_impression")
    if not experiment.salt:
        problems.append("salt is empty")
    if problems:
        raise InvalidInputError(f"{path}: " + "; ".join(problems))


def recommendation_id(variant: str) -> str:
    return f"{variant}.{os.urandom(8).hex()}"


def interleaved_id(teams: list[int]) -> str:
    """Team of every position (1: the second live variant's) as a bit mask in hex, then how
    many positions the answer had: a click cited at a position past the list credits no one."""
    teams = teams[:MAX_TEAM_POSITIONS]
    mask = sum(1 << i for i, team in enumerate(teams) if team)
    return f"{INTERLEAVED}.{mask:x}.{len(teams):x}.{os.urandom(6).hex()}"


def variant_of(recommendation_id: str) -> str | None:
    head, dot, _ = recommendation_id.partition(".")
    return head if dot else None


def team_of(recommendation_id: str, position: int) -> int | None:
    """0 or 1 for a position of an interleaved answer; None if the id does not say."""
    parts = recommendation_id.split(".")
    # ids written before the length was part of them (three parts) say only the mask
    if len(parts) not in (3, 4) or parts[0] != INTERLEAVED:
        return None
    try:
        length = int(parts[2], 16) if len(parts) == 4 else MAX_TEAM_POSITIONS
        if not 0 <= position < min(length, MAX_TEAM_POSITIONS):
            return None
        return (int(parts[1], 16) >> position) & 1
    except ValueError:
        return None


def team_draft(
    first: list[int], second: list[int], k: int, coin: bytes
) -> tuple[list[int], list[int]]:
    """Team-draft interleaving (Radlinski et al., 2008): in each round the team with fewer
    picks (a coin toss on ties) adds its best item not yet chosen. Returns items and teams."""
    items: list[int] = []
    teams: list[int] = []
    chosen: set[int] = set()
    lists, cursor, picks = (first, second), [0, 0], [0, 0]
    round_ = 0
    while len(items) < k:
        if picks[0] != picks[1]:
            team = 0 if picks[0] < picks[1] else 1
        else:
            team = (coin[round_ % len(coin)] >> (round_ // len(coin) % 8)) & 1
            round_ += 1
        ranked = lists[team]
        while cursor[team] < len(ranked) and ranked[cursor[team]] in chosen:
            cursor[team] += 1
        if cursor[team] >= len(ranked):
            other = 1 - team
            while cursor[other] < len(lists[other]) and lists[other][cursor[other]] in chosen:
                cursor[other] += 1
            if cursor[other] >= len(lists[other]):
                break
            team = other
        item = lists[team][cursor[team]]
        chosen.add(item)
        items.append(item)
        teams.append(team)
        picks[team] += 1
    return items, teams
