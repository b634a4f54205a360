"""The two-tower model's parameters (the model is described in ``two_tower``)."""

from __future__ import annotations

from pydantic import Field

from recsys_lite.models.base import HISTORY_LENGTH
from recsys_lite.models.params import ModelParams


class TwoTowerParams(ModelParams):
    embedding_dim: int = Field(64, ge=2, le=1024, description="size of each id/feature embedding")
    hidden_dim: int = Field(128, ge=1, le=4096, description="hidden layer of each tower's MLP")
    output_dim: int = Field(64, ge=2, le=1024, description="size of user and item vectors")
    history_length: int = Field(
        20, ge=1, le=HISTORY_LENGTH, description="most recent events the user tower pools"
    )
    recency_half_life: float = Field(
        20.0, gt=0, description="in events: an event counts half as much this many events later"
    )
    temperature: float = Field(0.05, gt=0, le=10, description="softmax temperature on cosines")
    logq_correction: bool = Field(
        True, description="subtract log(sampling probability) from the in-batch logits"
    )
    # High by default: known users with events since training are served through
    # score_history, which has no id, and their ranking should not jump when they act.
    user_id_dropout: float = Field(
        0.8, ge=0, le=1, description="share of examples trained as an unknown user"
    )
    item_id_dropout: float = Field(
        0.25, ge=0, le=1, description="share of target items trained from features alone"
    )
    repeat_targets: bool = Field(
        True,
        description="learn from every event; False keeps only each user's first event with an"
        " item (for funnels where views, carts and purchases of one item follow each other)",
    )
    price_buckets: int = Field(10, ge=1, le=1000, description="quantile buckets of price")
    epochs: int = Field(5, ge=1, le=1000)
    max_examples: int | None = Field(
        1_000_000,
        ge=1,
        description="fewer epochs when they would train on more examples than this (at least"
        " one epoch); None: always ``epochs``",
    )
    batch_size: int = Field(1024, ge=2, le=65_536, description="also the negatives per example")
    learning_rate: float = Field(3e-3, gt=0)
    seed: int = 42
