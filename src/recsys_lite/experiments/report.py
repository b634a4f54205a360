"""What GET /ab/status and `recsys-lite experiments status` report, computed from the store.

Every figure comes from events that cite a recommendation id: the id names the variant (or,
for an interleaved answer, the team of each position), so the report needs no state kept by
the API and survives restarts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys_lite.data.store import Store
from recsys_lite.experiments import stats
from recsys_lite.experiments.design import INTERLEAVED, Experiment, team_of

METRICS = ("ctr", "conversion", "revenue_per_impression")
PER_USER = """
    SELECT split_part(e.recommendation_id, '.', 1) AS variant, e.user_id,
        count(*) FILTER (WHERE e.event_type = 'impression') AS impressions,
        count(*) FILTER (WHERE e.event_type = 'click') AS clicks,
        count(*) FILTER (WHERE e.event_type = 'purchase') AS purchases,
        coalesce(sum(e.qty * coalesce(i.price, 0)) FILTER (WHERE e.event_type = 'purchase'), 0)
            AS revenue
    FROM events e LEFT JOIN items i ON i.item_id = e.item_id
    WHERE e.recommendation_id LIKE '%.%'
    GROUP BY ALL
"""
CLICKS_BY_POSITION = """
    SELECT recommendation_id, position, user_id FROM events
    WHERE event_type = 'click' AND recommendation_id LIKE 'il.%' AND position IS NOT NULL
"""


def read_events(store: Store) -> tuple[list[tuple[Any, ...]], list[tuple[str, int, str]]]:
    with store.connect(read_only=True) as con:
        per_user = con.execute(PER_USER).fetchall()
        clicks = con.execute(CLICKS_BY_POSITION).fetchall()
    return per_user, clicks


def ab_status(
    experiment: Experiment,
    per_user: list[tuple[Any, ...]],
    interleaved_clicks: list[tuple[str, int, str]],
    shadow: dict[str, Any] | None = None,
) -> dict[str, Any]:
    names = [v.name for v in experiment.live]
    rows: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in names}
    for variant, _user, impressions, clicks, purchases, revenue in per_user:
        if variant in rows:
            rows[variant].append((impressions, clicks, purchases, float(revenue)))
    arrays = {
        name: np.array(values, dtype=np.float64).reshape(-1, 4) for name, values in rows.items()
    }
    ratio = {
        name: {
            metric: stats.RatioStat.of(a[:, column], a[:, 0])
            for metric, column in zip(METRICS, (1, 2, 3), strict=True)
        }
        for name, a in arrays.items()
    }
    control = experiment.control
    variants: dict[str, Any] = {}
    for name in names:
        a = arrays[name]
        entry: dict[str, Any] = {
            "users": len(a),
            "impressions": int(a[:, 0].sum()),
            "clicks": int(a[:, 1].sum()),
            "purchases": int(a[:, 2].sum()),
            "revenue": round(float(a[:, 3].sum()), 2),
            **{metric: ratio[name][metric].value for metric in METRICS},
        }
        if name != control:
            entry["lift"] = {
                metric: stats.relative_lift(ratio[control][metric], ratio[name][metric]).__dict__
                for metric in METRICS
            }
        variants[name] = entry
    shares = experiment.expected_shares()
    p, mismatch = stats.sample_ratio_mismatch(
        [variants[name]["users"] for name in names], [shares[name] for name in names]
    )
    document: dict[str, Any] = {
        "experiment": experiment.name,
        "mode": experiment.mode,
        "control": control,
        "primary_metric": experiment.primary_metric,
        "variants": variants,
        "srm": {
            "p_value": p,
            "flagged": mismatch,
            "threshold": stats.SRM_P,
            "expected_shares": shares,
        },
        "winner": winner(experiment, variants),
    }
    if experiment.mode == "interleave":
        preference = interleaving(experiment, interleaved_clicks)
        document["interleaving"] = preference
        first, second = (v.name for v in experiment.live)
        significant = preference["p_value"] is not None and preference["p_value"] < 0.05
        document["winner"] = (
            (second if preference["shopper_preference"] > 0 else first) if significant else None
        )
    if shadow is not None:
        document["shadow"] = shadow
    return document


def winner(experiment: Experiment, variants: dict[str, Any]) -> str | None:
    """The variant best on the primary metric whose lift over the control is significant at
    5% (the control if every significant lift is negative); None while nothing is."""
    metric = experiment.primary_metric
    significant = [
        (entry["lift"][metric]["relative"], name)
        for name, entry in variants.items()
        if "lift" in entry
        and entry["lift"][metric]["p_value"] is not None
        and entry["lift"][metric]["p_value"] < 0.05
    ]
    if not significant:
        return None
    best_lift, best = max(significant)
    return best if best_lift > 0 else experiment.control


def interleaving(experiment: Experiment, clicks: list[tuple[str, int, str]]) -> dict[str, Any]:
    """Per answer, the team with more clicked positions wins it (Radlinski et al., 2008: a
    position clicked twice counts once). Per shopper, the variant that won more of their
    answers is preferred; the sign test counts shoppers, not answers: one shopper's answers
    lean the same way, and counting them as independent calls equally good variants different
    more often than 5% when shoppers see many lists."""
    first, second = (v.name for v in experiment.live)
    clicked: dict[str, set[tuple[int, int]]] = {}
    shopper_of: dict[str, str] = {}
    for recommendation_id, position, user_id in clicks:
        team = team_of(recommendation_id, position)
        if team is not None:
            clicked.setdefault(recommendation_id, set()).add((position, team))
            shopper_of.setdefault(recommendation_id, user_id)
    wins = {first: 0, second: 0}
    ties = 0
    net: dict[str, int] = {}  # per shopper: answers won by the second minus by the first
    for recommendation_id, positions in clicked.items():
        b = sum(team for _, team in positions)
        a = len(positions) - b
        if a == b:
            ties += 1
            continue
        wins[first if a > b else second] += 1
        shopper = shopper_of[recommendation_id]
        net[shopper] = net.get(shopper, 0) + (1 if b > a else -1)
    prefer = {first: sum(v < 0 for v in net.values()), second: sum(v > 0 for v in net.values())}
    shoppers = len(set(shopper_of.values()))
    decided = prefer[first] + prefer[second]
    return {
        "answers_with_clicks": len(clicked),
        "wins": wins,
        "ties": ties,
        # > 0 when the second variant is preferred: twice Chapelle et al.'s delta
        "preference": (wins[second] - wins[first]) / len(clicked) if clicked else None,
        "shoppers_with_clicks": shoppers,
        "shoppers_prefer": prefer,
        "shopper_preference": (prefer[second] - prefer[first]) / shoppers if shoppers else None,
        "p_value": stats.sign_test(prefer[second], prefer[first]) if decided else None,
        "variant_field": INTERLEAVED,
    }
