"""Does the experiment machinery find the better variant, and keep quiet when there is none?

Simulated shoppers have ground-truth preferences (latent factors); a "model" ranks items by
those preferences seen through noise, so the variant with less noise is, by construction, the
better one. Every repetition draws one set of shoppers with their sessions (1 + Poisson(2) list
views each) and runs both methods on that same budget:

* A/B: each shopper is assigned by the real salted-hash assignment and sees their variant's list
  in every session; the per-shopper counts go through the code of GET /ab/status
  (report.ab_status) and the better variant must be the significant CTR winner.
* Interleaving: each session is one answer, a fresh team draft (design.team_draft) of the two
  lists; clicks cite the answer's real id (design.interleaved_id) and go through the same
  report code (each shopper prefers the variant that won more of their answers; a sign test
  over shoppers). Also shown: a sign test over answers, which takes one shopper's answers as
  independent, on the same clicks.

Clicks: each shown item with a probability from the shopper's true preference and the position;
some clicks lead to purchases at a catalog price. Reported per shopper count: the power (share
of repetitions in which the better variant is the significant winner at 5%) for a clear and a
small true difference, the shoppers needed for 80% power, and the A/A false-positive rate (two
different models of equal quality; for A/B also sample-ratio mismatch flags), also for
interleaving with shoppers who see many lists.

    python bench/ab_simulation.py            # about 14 minutes of CPU
    python bench/ab_simulation.py --sizes 500 1500 --repetitions 50
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from _common import console, load_average, table, warn_if_busy, write_results
from recsys_lite.experiments.design import Experiment, Variant, interleaved_id, team_draft
from recsys_lite.experiments.report import ab_status
from recsys_lite.experiments.stats import sign_test

N_ITEMS, DIM, K = 300, 8, 10
# the models: how blurred their view of the truth is (better, worse)
SCENARIOS = {"clear": (0.6, 0.9), "small": (0.6, 0.7)}
AA_NOISE = 0.6  # A/A: two models equally blurred, each with its own noise
POSITION_BIAS = 1 / np.log2(np.arange(K) + 2)
BUY_GIVEN_CLICK = 0.1
METHODS = ("ab", "interleave", "interleave_by_answer")
TARGET_POWER = 0.8


class World:
    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.items = rng.normal(size=(N_ITEMS, DIM))
        self.prices = np.round(rng.lognormal(3, 0.6, N_ITEMS), 2)

    def shoppers(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """True utilities of n new shoppers for every item, and their list views."""
        users = self.rng.normal(size=(n, DIM))
        return np.asarray(users @ self.items.T / np.sqrt(DIM)), self.rng.poisson(2, n) + 1

    def shown(self, utility: np.ndarray, noise: float) -> np.ndarray:
        """Each shopper's top-K by a noisy view of their true utility (one model's lists)."""
        seen = utility + self.rng.normal(scale=noise, size=utility.shape)
        top = np.argpartition(-seen, K, axis=1)[:, :K]
        order = np.argsort(-np.take_along_axis(seen, top, axis=1), axis=1)
        return np.take_along_axis(top, order, axis=1)

    def click_probability(self, utility: np.ndarray, lists: np.ndarray) -> np.ndarray:
        liked = np.take_along_axis(utility, lists, axis=1)
        return 0.25 / (1 + np.exp(-(2 * liked - 2))) * POSITION_BIAS


def ab_test(
    world: World, utility: np.ndarray, sessions: np.ndarray, lists: dict[str, np.ndarray], salt: str
) -> dict[str, Any]:
    """/ab/status of an A/B test; the first variant is the control."""
    names = list(lists)
    experiment = Experiment(
        "sim", salt, names[0], tuple(Variant(name, None, 1.0) for name in names)
    )
    ids = [f"u{n}" for n in range(len(utility))]
    assigned = np.array([names.index(experiment.assign(u)) for u in ids])
    rows: list[tuple[object, ...]] = []
    for index, name in enumerate(names):
        members = np.flatnonzero(assigned == index)
        shown = lists[name][members]
        p = world.click_probability(utility[members], shown)
        s = sessions[members]
        clicks = world.rng.binomial(np.broadcast_to(s[:, None], p.shape), p)
        buys = world.rng.binomial(clicks, BUY_GIVEN_CLICK)
        revenue = (buys * world.prices[shown]).sum(axis=1)
        rows += [
            (name, ids[m], int(s[n] * K), int(clicks[n].sum()), int(buys[n].sum()), revenue[n])
            for n, m in enumerate(members)
        ]
    return ab_status(experiment, rows, [])


def interleave_test(
    world: World, utility: np.ndarray, sessions: np.ndarray, lists: dict[str, np.ndarray]
) -> tuple[dict[str, Any], float]:
    """Every session a new team draft of the two variants' lists. Returns /ab/status (its sign
    test counts shoppers) and the p-value of a sign test over answers (what /ab/status counted
    before: one shopper's answers taken as independent)."""
    names = list(lists)
    first, second = lists[names[0]], lists[names[1]]
    owners = np.repeat(np.arange(len(utility)), sessions)
    coins = world.rng.bytes(4 * len(owners))
    items = np.empty((len(owners), K), dtype=np.int64)
    teams = np.empty((len(owners), K), dtype=np.int64)
    for answer, shopper in enumerate(owners.tolist()):
        drafted, team = team_draft(
            first[shopper].tolist(), second[shopper].tolist(), K, coins[4 * answer : 4 * answer + 4]
        )
        items[answer], teams[answer] = drafted, team
    clicked = world.rng.random(items.shape) < world.click_probability(utility[owners], items)
    experiment = Experiment(
        "sim", "s", names[0], tuple(Variant(name, None, 1.0) for name in names), "interleave"
    )
    answers, positions = np.nonzero(clicked)
    ids = {a: interleaved_id(teams[a].tolist()) for a in np.unique(answers).tolist()}
    clicks = [
        (ids[a], p, f"u{owners[a]}")
        for a, p in zip(answers.tolist(), positions.tolist(), strict=True)
    ]
    status = ab_status(experiment, [], clicks)
    wins = status["interleaving"]["wins"]
    return status, sign_test(wins[names[1]], wins[names[0]])


def verdicts(
    world: World, utility: np.ndarray, sessions: np.ndarray, worse: float, better: float, tag: str
) -> dict[str, Any]:
    """Per method: +1 if the better (second) variant is the significant winner at 5%, -1 if
    the worse one is, 0 if neither."""
    lists = {"worse": world.shown(utility, worse), "better": world.shown(utility, better)}
    status = ab_test(world, utility, sessions, lists, tag)
    interleaved, p_answers = interleave_test(world, utility, sessions, lists)
    wins = interleaved["interleaving"]["wins"]
    verdict = {"better": 1, "worse": -1, None: 0}
    return {
        "ab": verdict[status["winner"]],
        "interleave": verdict[interleaved["winner"]],
        "interleave_by_answer": int(np.sign(wins["better"] - wins["worse"]))
        if p_answers < 0.05
        else 0,
        "srm": int(status["srm"]["flagged"]),
        "lift": status["variants"]["better"]["lift"]["ctr"]["relative"],
    }


def heavy_aa(world: World, shoppers: int, repetitions: int) -> dict[str, Any]:
    """Interleaving A/A with shoppers who see many lists (1 + Poisson(20)): where counting
    answers as independent goes wrong."""
    flagged = {"interleave": 0, "interleave_by_answer": 0}
    for _ in range(repetitions):
        utility, _ = world.shoppers(shoppers)
        sessions = world.rng.poisson(20, shoppers) + 1
        lists = {"a": world.shown(utility, AA_NOISE), "b": world.shown(utility, AA_NOISE)}
        status, p_answers = interleave_test(world, utility, sessions, lists)
        flagged["interleave"] += status["winner"] is not None
        flagged["interleave_by_answer"] += p_answers < 0.05
    return {
        "shoppers": shoppers,
        "sessions_per_user": "1 + Poisson(20)",
        **{method: share(count, repetitions) for method, count in flagged.items()},
    }


def share(k: int, n: int) -> dict[str, Any]:
    ci = scipy_stats.binomtest(k, n).proportion_ci(0.95) if n else None
    return {
        "share": k / n if n else None,
        "count": k,
        "of": n,
        "ci95": [round(ci.low, 4), round(ci.high, 4)] if ci else None,
    }


def shoppers_for(power: dict[int, float], target: float = TARGET_POWER) -> int | None:
    """Shoppers at which the power curve first reaches the target, interpolated linearly in
    log(shoppers) between the two sizes around it; None when no size reaches it."""
    sizes = sorted(power)
    for n, size in enumerate(sizes):
        if power[size] >= target:
            if n == 0:
                return size
            low, high = sizes[n - 1], size
            fraction = (target - power[low]) / (power[high] - power[low])
            return round(math.exp(math.log(low) + fraction * math.log(high / low)))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 1500, 3000])
    parser.add_argument("--repetitions", type=int, default=200, help="per size and scenario")
    parser.add_argument(
        "--aa-repetitions", type=int, default=1000, help="A/A tests per size (the <= 5%% claim)"
    )
    parser.add_argument("--heavy-shoppers", type=int, default=500)
    parser.add_argument("--heavy-repetitions", type=int, default=1000, help="0: skip")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    load_at_start = warn_if_busy()
    world = World(args.seed)
    started, cpu_started = time.perf_counter(), time.process_time()
    # outcome[check][size] = list of per-repetition verdicts; check: a scenario or "aa"
    outcome: dict[str, dict[int, list[dict[str, Any]]]] = {
        check: {size: [] for size in args.sizes} for check in (*SCENARIOS, "aa")
    }
    views: dict[int, list[int]] = {size: [] for size in args.sizes}
    for size in args.sizes:
        for r in range(max(args.repetitions, args.aa_repetitions)):
            utility, sessions = world.shoppers(size)
            views[size].append(int(sessions.sum()))
            checks = [*SCENARIOS.items()] if r < args.repetitions else []
            checks += [("aa", (AA_NOISE, AA_NOISE))] if r < args.aa_repetitions else []
            for check, (better, worse) in checks:
                tag = f"{check}-{size}-{r}"
                outcome[check][size].append(verdicts(world, utility, sessions, worse, better, tag))
        console.print(
            f"{size:,} shoppers: {args.repetitions} + {args.aa_repetitions} A/A repetitions done,"
            f" {time.process_time() - cpu_started:.0f} s CPU so far"
        )
    heavy = heavy_aa(world, args.heavy_shoppers, args.heavy_repetitions)
    cpu_seconds, seconds = time.process_time() - cpu_started, time.perf_counter() - started

    results: dict[str, Any] = {}
    rows = []
    for check in SCENARIOS:
        per_method: dict[str, Any] = {}
        for method in METHODS:
            curve = {}
            for size in args.sizes:
                found = [v[method] for v in outcome[check][size]]
                curve[size] = {
                    "power": share(found.count(1), len(found)),
                    "wrong_winner": share(found.count(-1), len(found)),
                }
            needed = shoppers_for({s: c["power"]["share"] for s, c in curve.items()})
            per_method[method] = {"curve": curve, f"shoppers_for_{TARGET_POWER:.0%}_power": needed}
            rows.append(
                [
                    f"{check}: {method}",
                    *(f"{curve[s]['power']['share']:.3f}" for s in args.sizes),
                    "not reached" if needed is None else f"{needed:,}",
                ]
            )
        lifts = [v["lift"] for size in args.sizes for v in outcome[check][size]]
        results[check] = {
            "noise_better_worse": list(SCENARIOS[check]),
            "observed_ctr_lift_median": float(np.nanmedian(np.array(lifts, dtype=float))),
            **per_method,
        }
    aa: dict[str, Any] = {}
    for method in (*METHODS, "srm"):
        by_size = {
            size: share(sum(v[method] != 0 for v in outcome["aa"][size]), args.aa_repetitions)
            for size in args.sizes
        }
        flagged = sum(b["count"] for b in by_size.values())
        aa[method] = {
            "by_size": by_size,
            "pooled": share(flagged, len(args.sizes) * args.aa_repetitions),
        }
        rows.append(
            [
                f"A/A flagged: {method}",
                *(f"{by_size[s]['share']:.3f}" for s in args.sizes),
                f"pooled {aa[method]['pooled']['share']:.3f}",
            ]
        )
    results["aa"] = {"noise": AA_NOISE, **aa}
    results["aa_heavy_shoppers"] = heavy
    console.print(
        table(
            f"A/B test and interleaving on the same shoppers and list views"
            f" ({args.repetitions} repetitions per cell, A/A {args.aa_repetitions})",
            ["check: method", *(f"{s:,} shoppers" for s in args.sizes), "for 80% power"],
            rows,
        )
    )
    if args.heavy_repetitions:
        console.print(
            table(
                f"Interleaving A/A, {args.heavy_shoppers} shoppers of 1 + Poisson(20) lists"
                f" ({args.heavy_repetitions} repetitions)",
                ["sign test over", "flagged at 5%", "95% CI"],
                [
                    [label, heavy[method]["share"], heavy[method]["ci95"]]
                    for label, method in (
                        ("shoppers", "interleave"),
                        ("answers", "interleave_by_answer"),
                    )
                ],
            )
        )
    reference = 1500 if 1500 in args.sizes else args.sizes[-1]
    clear = results["clear"]
    write_results(
        "ab_simulation",
        {
            "setup": {
                "items": N_ITEMS,
                "latent_dim": DIM,
                "k": K,
                "scenarios": {name: list(pair) for name, pair in SCENARIOS.items()},
                "aa_noise": AA_NOISE,
                "sessions_per_user": "1 + Poisson(2)",
                "mean_list_views_per_test": {s: float(np.mean(v)) for s, v in views.items()},
                "buy_given_click": BUY_GIVEN_CLICK,
                "sizes": args.sizes,
                "repetitions": args.repetitions,
                "aa_repetitions": args.aa_repetitions,
                "assignment": "experiments.design.Experiment.assign, 50/50, new salt each test",
                "statistics": "experiments.report.ab_status (delta-method lift, chi-square SRM;"
                " interleaving: sign test over shoppers, each preferring the variant that won"
                " more of their answers); interleave_by_answer: sign test over answers",
                "same_budget": "both methods run on the same shoppers and sessions: A/B shows"
                " the assigned variant's list in every session, interleaving a new team draft",
                "seed": args.seed,
            },
            **results,
            # the figures of the earlier single-size run, at the reference size
            "users_per_test": reference,
            "observed_ctr_lift_median": clear["observed_ctr_lift_median"],
            "power": clear["ab"]["curve"][reference]["power"],
            "wrong_winner": clear["ab"]["curve"][reference]["wrong_winner"],
            "aa_false_positive_rate": aa["ab"]["by_size"][reference],
            "aa_srm_flags": aa["srm"]["by_size"][reference],
            "interleaving": {
                "users_per_test": reference,
                "power": clear["interleave"]["curve"][reference]["power"],
            },
            "load_average_1m_at_start": load_at_start,
            "load_average_1m_at_end": load_average(),
            "cpu_seconds": round(cpu_seconds, 1),
            "seconds": round(seconds, 1),
        },
    )


if __name__ == "__main__":
    main()
