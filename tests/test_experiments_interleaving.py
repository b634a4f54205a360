"""Interleaving's verdict: credit per answer by distinct clicked positions, test per shopper."""

from __future__ import annotations

from recsys_lite.experiments.design import Experiment, Variant, interleaved_id
from recsys_lite.experiments.report import ab_status, interleaving

EXPERIMENT = Experiment(
    "il", "s", "a", (Variant("a", None, 1), Variant("b", None, 1)), "interleave"
)
TEAMS = [0, 1] * 5  # position 0 placed by a, position 1 by b
A, B = 0, 1


def answer(user: str, *positions: int) -> list[tuple[str, int, str]]:
    rid = interleaved_id(TEAMS)
    return [(rid, position, user) for position in positions]


def test_one_heavy_shopper_does_not_decide_the_experiment() -> None:
    # one shopper whose 20 answers all favour b, and ten shoppers split evenly with one each
    clicks = [click for _ in range(20) for click in answer("heavy", B)]
    for n in range(10):
        clicks += answer(f"u{n}", A if n % 2 else B)
    report = interleaving(EXPERIMENT, clicks)
    assert report["wins"] == {"a": 5, "b": 25} and report["answers_with_clicks"] == 30
    # counted by answers this would be p = 0.0003 for b; by shoppers it is 6 against 5
    assert report["shoppers_with_clicks"] == 11
    assert report["shoppers_prefer"] == {"a": 5, "b": 6}
    assert report["p_value"] == 1.0
    assert ab_status(EXPERIMENT, [], clicks)["winner"] is None


def test_a_shopper_counts_once_for_the_variant_that_won_more_of_their_answers() -> None:
    clicks = answer("u1", A) + answer("u1", B) + answer("u1", B) + answer("u2", A, B)
    report = interleaving(EXPERIMENT, clicks)
    assert report["wins"] == {"a": 1, "b": 2} and report["ties"] == 1
    assert report["shoppers_prefer"] == {"a": 0, "b": 1}  # u2's only answer is a tie
    assert report["shopper_preference"] == 0.5


def test_a_position_clicked_twice_credits_its_team_once() -> None:
    rid = interleaved_id(TEAMS)
    report = interleaving(EXPERIMENT, [(rid, A, "u1"), (rid, A, "u1"), (rid, B, "u1")])
    assert report["wins"] == {"a": 0, "b": 0} and report["ties"] == 1
    assert report["p_value"] is None


def test_many_shoppers_preferring_one_variant_make_it_the_winner() -> None:
    clicks = [click for n in range(30) for click in answer(f"u{n}", B, 3)]
    clicks += answer("u30", A)
    status = ab_status(EXPERIMENT, [], clicks)
    assert status["interleaving"]["shoppers_prefer"] == {"a": 1, "b": 30}
    assert status["interleaving"]["p_value"] < 1e-6
    assert status["winner"] == "b"


def test_a_click_past_the_answers_length_credits_no_one() -> None:
    short = interleaved_id([1, 0, 1])  # an answer of three items
    report = interleaving(EXPERIMENT, [(short, 2, "u1"), (short, 3, "u2"), (short, 7, "u3")])
    # position 2 was b's; positions 3 and 7 were never shown (they used to count for a)
    assert report["wins"] == {"a": 0, "b": 1} and report["answers_with_clicks"] == 1
    assert report["shoppers_with_clicks"] == 1


def test_ids_written_without_the_length_still_say_their_teams() -> None:
    from recsys_lite.experiments.design import team_of

    legacy = "il.5.0123456789ab"  # teams 1, 0, 1: the mask alone
    assert [team_of(legacy, p) for p in range(3)] == [1, 0, 1]
    assert team_of(interleaved_id([1, 0, 1]), 3) is None
