"""The one registry of models: names, where each lives, when to use it, and how to build one.

It imports no model code: listing models (help texts, errors, ``recsys-lite models``) stays
cheap, and a model's module (torch, gensim, ...) is imported the first time it is used.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from recsys_lite.errors import InvalidInputError, ModelUnavailableError

if TYPE_CHECKING:
    from recsys_lite.models.base import Recommender
    from recsys_lite.models.params import ModelParams


@dataclass(frozen=True)
class ModelEntry:
    module: str
    summary: str  # when to use it, in one line


MODELS: dict[str, ModelEntry] = {
    "popular": ModelEntry(
        "recsys_lite.models.popular",
        "most bought (or trending) items; the baseline and the fallback for new shoppers",
    ),
    "als": ModelEntry(
        "recsys_lite.models.implicit_mf",
        "implicit-feedback matrix factorisation; fast, a strong first choice for any shop",
    ),
    "bpr": ModelEntry(
        "recsys_lite.models.implicit_mf",
        "pairwise-ranking matrix factorisation; an alternative to ALS worth comparing",
    ),
    "ease": ModelEntry(
        "recsys_lite.models.ease",
        "closed-form item-item model; often the most accurate up to ~30k items (memory: items²)",
    ),
    "item2vec": ModelEntry(
        "recsys_lite.models.item2vec",
        "word2vec over browsing sessions; item similarity and what fits the current session",
    ),
    "lightfm": ModelEntry(
        "recsys_lite.models.lightfm_hybrid",
        "hybrid with category, brand and price features; recommends items without events",
    ),
    "gru4rec": ModelEntry(
        "recsys_lite.models.gru4rec",
        "recurrent network over the current session; best at the next click or purchase",
    ),
    "two_tower": ModelEntry(
        "recsys_lite.models.two_tower",
        "neural user and item towers over ids, recent items and catalog features",
    ),
    "ranker": ModelEntry(
        "recsys_lite.ranking.ranker",
        "LightGBM re-ranking of several retrievers' candidates; served only if it beats them",
    ),
}

MODEL_REGISTRY: dict[str, type[Recommender]] = {}

R = TypeVar("R", bound="type[Recommender]")


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_model_name(name: str) -> str:
    if name not in MODELS:
        raise InvalidInputError(
            f"unknown model {name!r}{did_you_mean(name, MODELS)}; known models: {', '.join(MODELS)}"
        )
    return name


def register(name: str) -> Callable[[R], R]:
    def decorate(cls: R) -> R:
        cls.name = name
        MODEL_REGISTRY[name] = cls
        return cls

    return decorate


def model_class(name: str) -> type[Recommender]:
    check_model_name(name)
    if name not in MODEL_REGISTRY:
        try:
            importlib.import_module(MODELS[name].module)
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.startswith("recsys_lite"):
                raise
            raise ModelUnavailableError(
                f"the {name} model needs the {exc.name} package, which this installation lacks"
                " (an image built with --build-arg TORCH=none leaves torch out)"
            ) from exc
    return MODEL_REGISTRY[name]


def create_model(name: str, params: ModelParams | dict[str, Any] | None = None) -> Recommender:
    """The one way to turn a model name and its params into a model."""
    return model_class(name)(params)
