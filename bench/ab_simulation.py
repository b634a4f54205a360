"""Does the experiment machinery find the better variant, and keep quiet when there is none?

Simulated shoppers have ground-truth preferences (latent factors); a "model" ranks items by
those preferences seen through noise, so the variant with less noise is, by construction, the
better one. Each shopper is assigned by the real salted-hash assignment, sees their variant's
list in a few sessions, and clicks each shown item with a probability from their true
preference and the item's position (some clicks lead to purchases at a catalog price). The
per-shopper counts go through the same statistics as GET /ab/status (report.ab_status).

Reported: the power (share of repetitions in which the better variant is the significant
winner on CTR) at the sample size used; the A/A false-positive rate (identical variants, a
significant CTR difference at 5%) and SRM flags over many repetitions; and team-draft
interleaving's power with far fewer shoppers.

    python bench/ab_simulation.py            # about a minute on one core
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats as scipy_stats

from _common import console, table, write_results
from recsys_lite.experiments.design import Experiment, Variant, team_draft
from recsys_lite.experiments.report import ab_status

N_ITEMS, DIM, K = 300, 8, 10
GOOD_NOISE, BAD_NOISE = 0.6, 0.9  # the models: how blurred their view of the truth is
POSITION_BIAS = 1 / np.log2(np.arange(K) + 2)
BUY_GIVEN_CLICK = 0.1


class World:
    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.items = rng.normal(size=(N_ITEMS, DIM))
        self.prices = np.round(rng.lognormal(3, 0.6, N_ITEMS), 2)

    def shoppers(self, n: int) -> np.ndarray:
        return self.rng.normal(size=(n, DIM))

    def utility(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(users @ self.items.T / np.sqrt(DIM))

    def shown(self, utility: np.ndarray, noise: float) -> np.ndarray:
        """Each shopper's top-K by a noisy view of their true utility."""
        seen = utility + self.rng.normal(scale=noise, size=utility.shape)
        top = np.argpartition(-seen, K, axis=1)[:, :K]
        order = np.argsort(-np.take_along_axis(seen, top, axis=1), axis=1)
        return np.take_along_axis(top, order, axis=1)

    def click_probability(self, utility: np.ndarray, lists: np.ndarray) -> np.ndarray:
        liked = np.take_along_axis(utility, lists, axis=1)
        return 0.25 / (1 + np.exp(-(2 * liked - 2))) * POSITION_BIAS


def ab_rows(
    world: World, n_users: int, noises: dict[str, float], salt: str
) -> tuple[Experiment, list[tuple[object, ...]]]:
    names = list(noises)
    experiment = Experiment(
        "sim", salt, names[0], tuple(Variant(name, None, 1.0) for name in names)
    )
    users = world.shoppers(n_users)
    utility = world.utility(users)
    ids = [f"u{n}" for n in range(n_users)]
    assigned = np.array([names.index(experiment.assign(u)) for u in ids])
    sessions = world.rng.poisson(2, n_users) + 1
    rows: list[tuple[object, ...]] = []
    for index, name in enumerate(names):
        members = np.flatnonzero(assigned == index)
        lists = world.shown(utility[members], noises[name])
        p = world.click_probability(utility[members], lists)
        s = sessions[members][:, None]
        clicks = world.rng.binomial(s * np.ones_like(p, dtype=np.int64), p)
        buys = world.rng.binomial(clicks, BUY_GIVEN_CLICK)
        revenue = (buys * world.prices[lists]).sum(axis=1)
        for n, member in enumerate(members):
            rows.append(
                (
                    name,
                    ids[member],
                    int(s[n, 0] * K),
                    int(clicks[n].sum()),
                    int(buys[n].sum()),
                    float(revenue[n]),
                )
            )
    return experiment, rows


def interleaved_preference(world: World, n_users: int) -> float:
    """p-value of the sign test: the better model's team against the worse one's."""
    users = world.shoppers(n_users)
    utility = world.utility(users)
    good, bad = world.shown(utility, GOOD_NOISE), world.shown(utility, BAD_NOISE)
    wins = losses = 0
    for n in range(n_users):
        items, teams = team_draft(good[n].tolist(), bad[n].tolist(), K, world.rng.bytes(4))
        lists = np.array([items])
        clicked = world.rng.random(K) < world.click_probability(utility[n : n + 1], lists)[0]
        by_team = np.bincount(np.array(teams)[clicked], minlength=2)
        wins += int(by_team[0] > by_team[1])
        losses += int(by_team[1] > by_team[0])
    if wins + losses == 0:
        return 1.0
    p = float(scipy_stats.binomtest(wins, wins + losses, 0.5).pvalue)
    return p if wins > losses else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1500, help="shoppers per A/B test")
    parser.add_argument("--power-repetitions", type=int, default=200)
    parser.add_argument("--aa-repetitions", type=int, default=400)
    parser.add_argument("--interleave-users", type=int, default=1500)
    parser.add_argument("--interleave-repetitions", type=int, default=200)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    world = World(args.seed)
    started = time.perf_counter()

    found = wrong = 0
    lifts = []
    for r in range(args.power_repetitions):
        experiment, rows = ab_rows(
            world, args.users, {"bad": BAD_NOISE, "good": GOOD_NOISE}, f"p{r}"
        )
        status = ab_status(experiment, rows, [])
        lifts.append(status["variants"]["good"]["lift"]["ctr"]["relative"])
        found += status["winner"] == "good"
        wrong += status["winner"] == "bad"
    aa_flags = srm_flags = 0
    for r in range(args.aa_repetitions):
        experiment, rows = ab_rows(world, args.users, {"a": GOOD_NOISE, "b": GOOD_NOISE}, f"a{r}")
        status = ab_status(experiment, rows, [])
        p = status["variants"]["b"]["lift"]["ctr"]["p_value"]
        aa_flags += p is not None and p < 0.05
        srm_flags += status["srm"]["flagged"]
    interleave_found = sum(
        interleaved_preference(world, args.interleave_users) < 0.05
        for _ in range(args.interleave_repetitions)
    )
    seconds = time.perf_counter() - started

    def share(k: int, n: int) -> dict[str, float]:
        ci = scipy_stats.binomtest(k, n).proportion_ci(0.95)
        return {"share": k / n, "count": k, "of": n, "ci95": [round(ci.low, 4), round(ci.high, 4)]}

    power, fpr = share(found, args.power_repetitions), share(aa_flags, args.aa_repetitions)
    interleave = share(interleave_found, args.interleave_repetitions)
    console.print(
        table(
            "A/B simulation",
            ["check", "users per test", "repetitions", "share", "95% CI"],
            [
                [
                    "power: better variant is the significant winner",
                    args.users,
                    args.power_repetitions,
                    power["share"],
                    power["ci95"],
                ],
                [
                    "A/A: significant CTR difference at 5%",
                    args.users,
                    args.aa_repetitions,
                    fpr["share"],
                    fpr["ci95"],
                ],
                [
                    "interleaving: better team preferred at 5%",
                    args.interleave_users,
                    args.interleave_repetitions,
                    interleave["share"],
                    interleave["ci95"],
                ],
            ],
        )
    )
    write_results(
        "ab_simulation",
        {
            "setup": {
                "items": N_ITEMS,
                "latent_dim": DIM,
                "k": K,
                "good_noise": GOOD_NOISE,
                "bad_noise": BAD_NOISE,
                "sessions_per_user": "1 + Poisson(2)",
                "buy_given_click": BUY_GIVEN_CLICK,
                "users_per_test": args.users,
                "assignment": "experiments.design.Experiment.assign, 50/50, new salt each test",
                "statistics": "experiments.report.ab_status (delta-method lift, chi-square SRM)",
                "seed": args.seed,
            },
            "observed_ctr_lift_median": float(np.median(lifts)),
            "power": power,
            "wrong_winner": share(wrong, args.power_repetitions),
            "aa_false_positive_rate": fpr,
            "aa_srm_flags": share(srm_flags, args.aa_repetitions),
            "interleaving": {"users_per_test": args.interleave_users, "power": interleave},
            "seconds": round(seconds, 1),
        },
    )


if __name__ == "__main__":
    main()
