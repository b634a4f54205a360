"""GRU4Rec: sessions, session-parallel batching, its loss, learning, fold-in and persistence."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from recsys_lite.models import History, create_model
from recsys_lite.models.gru4rec import (
    GRU4RecModel,
    GRU4RecNet,
    GRU4RecParams,
    carry_hidden,
    session_parallel_steps,
    split_sessions,
)
from recsys_lite.models.gru4rec_training import step_loss

MINUTE = 60
TINY = {"layers": [16], "n_sample": 8, "batch_size": 4, "epochs": 1}


def table(rows: list[tuple[str, str, int]]) -> pa.Table:
    return pa.table(
        {
            "user_id": [u for u, _, _ in rows],
            "item_id": [i for _, i, _ in rows],
            "ts": pa.array([t for _, _, t in rows], pa.int64()),
            "qty": pa.array([1] * len(rows), pa.int32()),
            "event_type": ["view"] * len(rows),
        }
    )


def gru4rec(params: dict[str, object]) -> GRU4RecModel:
    model = create_model("gru4rec", params)
    assert isinstance(model, GRU4RecModel)
    return model


# ----- sessions ------------------------------------------------------------------------------


def test_sessions_split_at_inactivity_drop_repeats_and_singletons() -> None:
    # user 0: [10, 11, 11, 12] | 50 min gap | [13] (too short) | 30 min gap | [14, 15]
    # user 1 (starts earliest): [20, 21]; a gap just under 30 minutes does not split it.
    users = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1])
    items = np.array([10, 11, 11, 12, 13, 14, 15, 20, 21])
    ts = np.array([1000, 1060, 1070, 1100, 4100, 5900, 5910, 5, 1794])
    sessions = split_sessions(users, items, ts, 30 * MINUTE, drop_repeats=True)
    got = [
        sessions.items[a:b].tolist()
        for a, b in zip(sessions.offsets[:-1], sessions.offsets[1:], strict=True)
    ]
    assert got == [[20, 21], [10, 11, 12], [14, 15]], "ordered by start time"
    assert sessions.start_ts.tolist() == [5, 1000, 5900]

    kept = split_sessions(users, items, ts, 30 * MINUTE, drop_repeats=False)
    assert kept.items[kept.offsets[1] : kept.offsets[2]].tolist() == [10, 11, 11, 12]
    whole = split_sessions(users, items, ts, math.inf, drop_repeats=True)
    assert len(whole) == 2  # no gap splits: one session per user


def test_session_parallel_steps_switch_sessions_exactly_at_their_ends() -> None:
    offsets = np.array([0, 3, 5, 9, 11])  # sessions of 3, 2, 4 and 2 events
    steps = list(session_parallel_steps(offsets, batch_size=2))
    assert [s.inputs.tolist() for s in steps] == [[0, 3], [1, 5], [9, 6], [7]]
    assert [s.reset.tolist() for s in steps] == [
        [True, True],
        [False, True],  # slot 1 finished session 1 (3→4) and took session 2
        [True, False],  # slot 0 finished session 0 and took session 3
        [False],  # no session left for slot 0: it is dropped
    ]
    assert [None if s.keep is None else s.keep.tolist() for s in steps] == [None, None, None, [1]]


@pytest.mark.parametrize("batch_size", [1, 3, 7, 50])
def test_every_transition_is_trained_once_in_order(batch_size: int) -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 9, size=23)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    slot_session: list[int] = []
    last_input: list[int] = []
    inputs = []
    for step in session_parallel_steps(offsets, batch_size):
        if step.keep is not None:
            slot_session = [slot_session[k] for k in step.keep]
            last_input = [last_input[k] for k in step.keep]
        session = np.searchsorted(offsets, step.inputs, side="right") - 1
        for slot, (position, s, reset) in enumerate(
            zip(step.inputs, session, step.reset, strict=True)
        ):
            if slot == len(slot_session):
                assert reset
                slot_session.append(-1)
                last_input.append(-1)
            assert reset == (s != slot_session[slot])
            if reset:
                assert position == offsets[s], "a session starts at its first event"
            else:
                assert position == last_input[slot] + 1, "and runs through them in order"
            assert position + 1 < offsets[s + 1], "every input has a target in its session"
            slot_session[slot], last_input[slot] = int(s), int(position)
        inputs.extend(step.inputs.tolist())
    assert sorted(inputs) == sorted(set(range(offsets[-1])) - set((offsets[1:] - 1).tolist()))


def test_hidden_state_restarts_at_zero_exactly_at_session_boundaries() -> None:
    """Running sessions side by side gives each event the state its own session alone gives."""
    torch.manual_seed(0)
    params = GRU4RecParams(layers=[8, 6], dropout_hidden=0.3)
    net = GRU4RecNet(30, params).eval()
    rng = np.random.default_rng(1)
    lengths = rng.integers(2, 7, size=9)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    items = torch.from_numpy(rng.integers(0, 30, size=offsets[-1]))
    parallel = {}
    with torch.no_grad():
        hidden = net.zero_state(3)
        for step in session_parallel_steps(offsets, batch_size=3):
            hidden = carry_hidden(hidden, step)
            rows = net.input_table()[items[torch.from_numpy(step.inputs)]]
            out, hidden = net.step(rows, hidden)
            parallel.update(zip(step.inputs.tolist(), out, strict=True))
        for s in range(len(lengths)):
            state = net.zero_state(1)
            for position in range(offsets[s], offsets[s + 1] - 1):
                out, state = net.step(net.input_table()[items[position : position + 1]], state)
                torch.testing.assert_close(parallel[position], out[0])


@pytest.mark.parametrize("carry_dropout", [True, False])
def test_training_carries_the_dropped_out_state_unless_asked_not_to(carry_dropout: bool) -> None:
    torch.manual_seed(0)
    params = GRU4RecParams(layers=[32, 24], dropout_hidden=0.5, carry_dropout=carry_dropout)
    net = GRU4RecNet(30, params).train()
    rows = net.input_table()[torch.arange(16)]
    out, hidden = net.step(rows, net.zero_state(16))
    assert (out == 0).any(), "half of the output is dropped"
    assert torch.equal(hidden[-1], out) == carry_dropout
    assert (hidden[-1] == 0).any() == carry_dropout
    net.eval()  # serving never drops: the state carried is the output either way
    out, hidden = net.step(rows, net.zero_state(16))
    assert torch.equal(hidden[-1], out)


# ----- loss ----------------------------------------------------------------------------------


class FixedSamples:
    def __init__(self, samples: list[int]) -> None:
        self.samples = torch.tensor(samples)

    def draw(self) -> torch.Tensor:
        return self.samples


def reference_loss(
    net: GRU4RecNet,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    samples: list[int],
    p: GRU4RecParams,
    log_q: torch.Tensor,
) -> torch.Tensor:
    """The loss as the papers write it: every column scored, repeats and all."""
    out, _ = net.step(net.input_table()[inputs], net.zero_state(len(inputs)))
    columns = torch.cat([targets, torch.tensor(samples)])
    scores = out @ net.item_out[columns].T + net.item_bias[columns]
    diagonal = torch.eye(len(inputs), len(columns), dtype=torch.bool)
    accidental = (columns[None, :] == targets[:, None]) & ~diagonal
    if not p.mask_accidental_hits:
        accidental[:] = False
    rows = torch.arange(len(inputs))
    if p.loss == "cross-entropy":
        scores = scores - p.logq * log_q[columns]
        scores = scores.masked_fill(accidental, -math.inf)
        total = torch.nn.functional.cross_entropy(scores, rows, reduction="sum")
    else:
        scores = torch.nn.functional.elu(scores, p.elu_param)
        weights = torch.softmax(scores.masked_fill(accidental | diagonal, -math.inf), dim=1)
        positive = scores[rows, rows][:, None]
        bpr = (weights * torch.sigmoid(positive - scores)).sum(dim=1)
        total = (-torch.log(bpr) + p.bpreg * (weights * scores**2).sum(dim=1)).sum()
    return total / p.batch_size


@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
@pytest.mark.parametrize("mask", [True, False])
def test_scoring_each_distinct_item_once_gives_the_every_column_loss(loss: str, mask: bool) -> None:
    torch.manual_seed(0)
    model = GRU4RecModel(
        {
            "loss": loss,
            "layers": [8],
            "batch_size": 5,
            "bpreg": 0.5,
            "logq": 0.7,
            "mask_accidental_hits": mask,
        }
    )
    p = model.params
    net = GRU4RecNet(12, p).eval()
    with torch.no_grad():
        net.item_bias.normal_()
    log_q = torch.rand(12).log()
    inputs, targets = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([5, 6, 5, 7, 8])
    samples = [5, 5, 9, 9, 9, 10, 6, 11, 0]  # repeats, and copies of the rows' targets
    got, _, _ = step_loss(p, net, inputs, targets, net.zero_state(5), FixedSamples(samples), log_q)
    expected = reference_loss(net, inputs, targets, samples, p, log_q)
    torch.testing.assert_close(got, expected)


# ----- learning and serving -------------------------------------------------------------------


def successor_sessions(n_items: int, n_sessions: int, seed: int) -> pa.Table:
    """Sessions in which item i is always followed by item i + 1 (mod n_items)."""
    rng = np.random.default_rng(seed)
    rows = []
    clock = 0
    for s in range(n_sessions):
        item = int(rng.integers(n_items))
        for _ in range(int(rng.integers(3, 9))):
            rows.append((f"u{s % 97}", f"i{item}", clock))
            item = (item + 1) % n_items
            clock += 30
        clock += 2 * 60 * MINUTE
    return table(rows)


@pytest.fixture(scope="module")
def successor_model() -> GRU4RecModel:
    model = gru4rec({"layers": [48], "n_sample": 32, "batch_size": 32, "epochs": 6})
    return model.fit(successor_sessions(40, 500, seed=0))


def history_of(model: GRU4RecModel, item_ids: list[str], ts: list[int]) -> History:
    return History(
        model.item_map.to_index(pa.array(item_ids)),
        np.ones(len(item_ids), dtype=np.float32),
        np.array(ts, dtype=np.int64),
    )


def test_learns_a_deterministic_next_item_pattern(successor_model: GRU4RecModel) -> None:
    model = successor_model
    rng = np.random.default_rng(1)
    hits = []
    for _ in range(200):
        start, length = int(rng.integers(40)), int(rng.integers(1, 6))
        items = [f"i{(start + k) % 40}" for k in range(length)]
        scores = model.score_history(history_of(model, items, list(range(length))))
        assert scores is not None
        hits.append(model.item_map.ids[int(np.argmax(scores))] == f"i{(start + length) % 40}")
    assert np.mean(hits) >= 0.95


def test_serves_a_user_it_never_saw_from_their_latest_session(
    successor_model: GRU4RecModel,
) -> None:
    model = successor_model
    assert not model.knows_user("stranger")
    now = 10_000_000
    latest = history_of(model, ["i7", "i8"], [now, now + 60])
    earlier = history_of(model, ["i30", "i31", "i7", "i8"], [0, 60, now, now + 60])
    ranked = model.recommend_history(latest, 3, exclude=latest.items)
    assert ranked is not None and model.item_map.ids[ranked.items[0]] == "i9"
    first, second = model.score_history(latest), model.score_history(earlier)
    assert first is not None and second is not None
    np.testing.assert_allclose(first, second, rtol=1e-6, err_msg="only the last session counts")
    assert model.score_history(History(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))) is None


def repeat_sessions(n_pairs: int, n_sessions: int) -> pa.Table:
    """Sessions x, x, y: the first click on x is always followed by a second one, then y."""
    rows = []
    clock = 0
    for s in range(n_sessions):
        x = 2 * (s % n_pairs)
        for item in (x, x, x + 1):
            rows.append((f"u{s}", f"i{item}", clock))
            clock += 30
        clock += 2 * 60 * MINUTE
    return table(rows)


def test_by_default_learns_that_shoppers_click_the_same_item_again() -> None:
    events = repeat_sessions(8, 240)
    fast = {"layers": [32], "n_sample": 16, "batch_size": 16, "epochs": 8}
    model = gru4rec(fast).fit(events)
    collapsing = gru4rec({**fast, "drop_repeats": True}).fit(events)

    def best(model: GRU4RecModel, items: list[str]) -> str:
        scores = model.score_history(history_of(model, items, list(range(len(items)))))
        assert scores is not None
        return str(model.item_map.ids[int(np.argmax(scores))])

    pairs = [(f"i{2 * k}", f"i{2 * k + 1}") for k in range(8)]
    assert [best(model, [x]) for x, _ in pairs] == [x for x, _ in pairs]
    assert [best(model, [x, x]) for x, _ in pairs] == [y for _, y in pairs]
    # collapsing repeats hides them from training and serving: x is never predicted after x
    assert [best(collapsing, [x]) for x, _ in pairs] == [y for _, y in pairs]


def test_batch_scores_match_one_user_at_a_time(successor_model: GRU4RecModel) -> None:
    model = successor_model
    users = np.arange(len(model.user_map))
    batch = model.score_users(users)
    for user in users[::10]:
        alone = model.score_history(model.history(int(user)))
        assert alone is not None
        np.testing.assert_allclose(batch[user], alone, rtol=1e-5, atol=1e-5)
    vectors = model.user_vectors(users) @ model.item_vectors().T
    np.testing.assert_allclose(batch, vectors, rtol=1e-6)


def test_save_and_load_keep_the_scores(successor_model: GRU4RecModel) -> None:
    arrays = successor_model.state()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays.values())
    loaded = create_model("gru4rec", successor_model.params)
    loaded.load_state(arrays)
    users = np.arange(len(successor_model.user_map))
    np.testing.assert_array_equal(loaded.score_users(users), successor_model.score_users(users))
    history = successor_model.history(3)
    np.testing.assert_array_equal(
        loaded.score_history(history), successor_model.score_history(history)
    )


@pytest.mark.parametrize(
    "variant",
    [
        {"loss": "bpr-max", "dropout_embed": 0.2, "dropout_hidden": 0.1, "momentum": 0.3},
        {"constrained_embedding": False, "embedding": 12, "logq": 1.0},
        {"constrained_embedding": False, "layers": [16, 8], "n_sample": 0},
        {"session_gap_minutes": None, "drop_repeats": False},
    ],
)
def test_variants_train_and_score(variant: dict[str, object]) -> None:
    events = successor_sessions(20, 60, seed=2)
    epochs: list[int] = []
    model = gru4rec({**TINY, "epochs": 2, **variant})
    model.epoch_callback = epochs.append
    model.fit(events)
    assert epochs == [0, 1]
    scores = model.score_users(np.arange(len(model.user_map)))
    assert scores.shape == (len(model.user_map), 20) and np.isfinite(scores).all()
    similar = model.similar_items("i3", 5)
    assert similar is not None and len(similar.items) == 5


def test_training_is_reproducible_for_a_seed_and_leaves_torch_as_it_was() -> None:
    events = successor_sessions(20, 60, seed=3)
    threads, rng_state = torch.get_num_threads(), torch.random.get_rng_state()
    first, second = gru4rec(TINY).fit(events), gru4rec(TINY).fit(events)
    np.testing.assert_array_equal(first.item_vectors(), second.item_vectors())
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), rng_state)
