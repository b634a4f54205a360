"""A synthetic shop: deterministic for a seed, vectorised so a million events take seconds.

What makes it realistic enough to tell models apart: item popularity follows a power law; each
user prefers a few categories and one brand; browsing comes in sessions that stay within a
category and often move to a complementary item; some purchases repeat; events follow a
view → click → cart → purchase funnel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

CATEGORIES = {
    "Shoes": "Sneakers",
    "Outerwear": "Jacket",
    "Kitchen": "Pan",
    "Coffee": "Espresso Beans",
    "Garden": "Planter",
    "Toys": "Puzzle",
    "Books": "Novel",
    "Audio": "Headphones",
    "Beauty": "Serum",
    "Sports": "Yoga Mat",
    "Pets": "Dog Treats",
    "Baby": "Onesie",
    "Office": "Notebook",
    "Lighting": "Desk Lamp",
    "Bedding": "Duvet Cover",
    "Bath": "Towel",
    "Tea": "Green Tea",
    "Snacks": "Granola",
    "Cycling": "Bike Light",
    "Camping": "Tent",
    "Watches": "Watch",
    "Bags": "Backpack",
    "Gaming": "Controller",
    "Phones": "Phone Case",
    "Art": "Sketchbook",
    "Music": "Guitar Strings",
    "Tools": "Screwdriver Set",
    "Cleaning": "Sponge Pack",
    "Wine": "Red Wine",
    "Hats": "Beanie",
}
ADJECTIVES = (
    "Classic",
    "Everyday",
    "Premium",
    "Compact",
    "Organic",
    "Ultra",
    "Soft",
    "Vintage",
    "Smart",
    "Eco",
    "Deluxe",
    "Light",
    "Pro",
    "Cozy",
    "Bold",
    "Mini",
)
SYLLABLES = ("ka", "lo", "mi", "ra", "ven", "tor", "sa", "nu", "bel", "quo", "zi", "dor")
EVENT_TYPES = np.array(["view", "click", "add_to_cart", "purchase"])
EVENT_TYPE_SHARES = (0.55, 0.20, 0.13, 0.12)


@dataclass(frozen=True)
class DemoShop:
    events: pa.Table
    items: pa.Table


def _categorical_rows(cumulative: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of a matrix of cumulative distributions."""
    draws = rng.random(len(cumulative))[:, None] * cumulative[:, -1:]
    return np.asarray(np.minimum((cumulative < draws).sum(axis=1), cumulative.shape[1] - 1))


def _pick_within_groups(
    groups: np.ndarray, members_of: list[np.ndarray], weights: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """For each entry, a member of its group drawn in proportion to ``weights``."""
    picked = np.empty(len(groups), dtype=np.int64)
    for group in np.unique(groups):
        rows = np.flatnonzero(groups == group)
        members = members_of[group]
        cumulative = np.cumsum(weights[members])
        draws = rng.random(len(rows)) * cumulative[-1]
        picked[rows] = members[np.minimum(np.searchsorted(cumulative, draws), len(members) - 1)]
    return picked


def generate(
    n_users: int = 5_000,
    n_items: int = 2_000,
    n_events: int = 100_000,
    seed: int = 42,
    days: int = 120,
    start_ts: int = 1_717_200_000,  # 2024-06-01
) -> DemoShop:
    rng = np.random.default_rng(seed)
    names = list(CATEGORIES)
    n_categories = int(np.clip(n_items // 60, 4, len(names)))

    # ----- catalog -------------------------------------------------------------------------
    item_category = rng.choice(
        n_categories, size=n_items, p=rng.dirichlet(np.full(n_categories, 3.0))
    )
    brands_per_category = 4
    brand_names = np.array(
        [
            "".join(rng.choice(SYLLABLES, size=2)).capitalize() + f" {names[c].split()[0]}"
            for c in range(n_categories)
            for _ in range(brands_per_category)
        ]
    )
    item_brand = item_category * brands_per_category + rng.integers(
        brands_per_category, size=n_items
    )
    base_price = np.exp(rng.normal(3.3, 0.8, size=n_categories))
    price = np.round(base_price[item_category] * np.exp(rng.normal(0, 0.35, n_items)), 0) - 0.01
    price = np.maximum(price, 0.99)
    popularity = 1.0 / (1.0 + rng.permutation(n_items)) ** 1.05
    item_ids = np.array([f"I{n:05d}" for n in range(n_items)])
    adjectives = rng.choice(ADJECTIVES, size=n_items)
    titles = [
        f"{adj} {brand_names[b].split()[0]} {CATEGORIES[names[c]]}"
        for adj, b, c in zip(adjectives, item_brand, item_category, strict=True)
    ]
    items_of_category = [np.flatnonzero(item_category == c) for c in range(n_categories)]
    items_of_brand = [
        np.flatnonzero(item_brand == b) for b in range(n_categories * brands_per_category)
    ]
    # complement: a popular item of the same category that people move on to
    complement = _pick_within_groups(item_category, items_of_category, popularity, rng)

    # ----- users -----------------------------------------------------------------------------
    affinity = rng.dirichlet(np.full(n_categories, 0.25), size=n_users)
    favourite_category = affinity.argmax(axis=1)
    favourite_brand = favourite_category * brands_per_category + rng.integers(
        brands_per_category, size=n_users
    )
    activity = rng.lognormal(0.0, 1.0, size=n_users)
    floor = min(3, n_events // max(n_users, 1))
    per_user = floor + rng.multinomial(n_events - floor * n_users, activity / activity.sum())
    event_user = np.repeat(np.arange(n_users), per_user)
    user_start = np.concatenate([[0], np.cumsum(per_user)[:-1]])
    position = np.arange(n_events) - user_start[event_user]

    # ----- sessions --------------------------------------------------------------------------
    new_session = (position == 0) | (rng.random(n_events) < 0.2)
    session = np.cumsum(new_session) - 1
    session_user = event_user[new_session]
    n_sessions = len(session_user)
    session_category = _categorical_rows(np.cumsum(affinity[session_user], axis=1), rng)
    starts = rng.random(n_sessions) * days * 86_400.0
    starts = starts[np.lexsort((starts, session_user))]  # sessions of a user in time order
    gaps = rng.exponential(90.0, size=n_events)
    gaps[new_session] = 0.0
    within = np.cumsum(gaps) - np.cumsum(gaps)[new_session][session]
    ts = start_ts + (starts[session] + within).astype(np.int64)

    # ----- items -----------------------------------------------------------------------------
    item = _pick_within_groups(session_category[session], items_of_category, popularity, rng)
    brand_has_items = np.array([len(members) > 0 for members in items_of_brand])
    # small catalogs can leave a brand without items: its fans then browse by category only
    brand_loyal = (rng.random(n_events) < 0.25) & brand_has_items[favourite_brand[event_user]]
    item[brand_loyal] = _pick_within_groups(
        favourite_brand[event_user[brand_loyal]], items_of_brand, popularity, rng
    )
    session_position = np.arange(n_events) - np.flatnonzero(new_session)[session]
    follows = rng.random(n_events) < 0.3
    for step in range(1, int(session_position.max()) + 1):
        rows = np.flatnonzero((session_position == step) & follows)
        item[rows] = complement[item[rows - 1]]
    repeat = (rng.random(n_events) < 0.08) & (position > 0)
    earlier = user_start[event_user] + (rng.random(n_events) * position).astype(np.int64)
    item[repeat] = item[earlier[repeat]]

    kinds = rng.choice(len(EVENT_TYPES), size=n_events, p=EVENT_TYPE_SHARES)
    qty = np.ones(n_events, dtype=np.int32)
    purchases = kinds == 3
    qty[purchases] = rng.geometric(0.7, size=int(purchases.sum())).astype(np.int32)

    user_ids = np.array([f"U{n:05d}" for n in range(n_users)])
    order = np.argsort(ts, kind="stable")
    events = pa.table(
        {
            "user_id": user_ids[event_user[order]],
            "item_id": item_ids[item[order]],
            "ts": ts[order],
            "qty": qty[order],
            "event_type": EVENT_TYPES[kinds[order]],
        }
    )
    items = pa.table(
        {
            "item_id": item_ids,
            "category": np.array(names)[item_category],
            "brand": brand_names[item_brand],
            "price": price,
            "img_url": [f"https://img.example.com/items/{i}.jpg" for i in item_ids],
            "title": titles,
            "description": [
                f"{t}: a {names[c].lower()} favourite."
                for t, c in zip(titles, item_category, strict=True)
            ],
        }
    )
    return DemoShop(events=events, items=items)


def write(shop: DemoShop, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    events_path, items_path = out / "events.parquet", out / "items.csv"
    pq.write_table(shop.events, events_path)
    pacsv.write_csv(shop.items, items_path)
    return events_path, items_path
