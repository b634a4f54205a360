"""item2vec: skip-gram with negative sampling over browsing sessions (Barkan & Koenigstein 2016).

Each user's time-ordered events are cut into sessions at gaps of inactivity, and every session is
a sentence for gensim's Word2Vec. Items that appear in the same sessions end up with similar input
vectors: their cosine is the item-to-item similarity.

A user is the recency-weighted mean of the unit input vectors of their recent items, so a shopper's
current intent outweighs what they browsed weeks ago. Items are scored against that profile with
the output (context) vectors: skip-gram trains input . output to predict which items occur
around an item, and with uniform negative sampling (ns_exponent=0) that inner product approximates
log P(item | context) up to a constant (Levy & Goldberg 2014), popularity included. Cosine between
input vectors has no notion of popularity and ranks poorly as a recommendation score (NDCG@10
about 0.02 against 0.12 on the default demo shop).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recsys_lite.models.base import Recommender
from recsys_lite.models.histories import history_events, recency_decay
from recsys_lite.models.params import ModelParams
from recsys_lite.models.registry import register
from recsys_lite.models.sessions import not_repeated, session_ids
from recsys_lite.models.types import ForgottenEvents, History, TrainingData
from recsys_lite.models.vectors import unit_rows


class Item2VecParams(ModelParams):
    vector_size: int = Field(64, ge=2, le=1024)
    window: int = Field(5, ge=1, le=100, description="context items on each side")
    min_count: int = Field(
        1, ge=1, description="rarer items get no vector; 1 keeps every item recommendable"
    )
    negative: int = Field(5, ge=1, le=100, description="negative samples per positive pair")
    epochs: int = Field(10, ge=1, le=500)
    alpha: float = Field(0.025, gt=0, le=1, description="initial learning rate")
    sample: float = Field(
        0.0, ge=0, description="downsampling threshold for frequent items (0: off)"
    )
    ns_exponent: float = Field(
        0.0,
        ge=-1,
        le=1,
        description="negatives drawn in proportion to frequency^ns_exponent; 0 is uniform",
    )
    session_gap_minutes: float = Field(
        30.0, gt=0, description="inactivity that ends a session (a sentence)"
    )
    collapse_repeats: bool = Field(
        True, description="merge consecutive events on the same item within a session"
    )
    recency_half_life: float = Field(
        10.0, gt=0, description="in events: an item this many events old counts half"
    )
    seed: int = 42


def session_sentences(
    users: np.ndarray,
    items: np.ndarray,
    ts: np.ndarray,
    gap_seconds: float,
    *,
    collapse_repeats: bool = True,
) -> list[np.ndarray]:
    """Item sequences of each user's sessions, in time order.

    A session ends when the user's next event comes more than ``gap_seconds`` later. Repeated
    consecutive events on one item (view, click, cart of the same product) say nothing about
    which items go together, so they are merged when ``collapse_repeats`` is set.
    """
    if len(items) == 0:
        return []
    order = np.lexsort((ts, users))
    users, items, ts = users[order], items[order], ts[order]
    session = session_ids(users, ts, gap_seconds, strict=True)
    if collapse_repeats:
        keep = not_repeated(session, items)
        session, items = session[keep], items[keep]
    return np.split(items, np.flatnonzero(np.diff(session)) + 1)


@register("item2vec")
class Item2VecModel(Recommender):
    params_type = Item2VecParams
    params: Item2VecParams
    vectors: np.ndarray  # input vectors: item similarity and user profiles
    context_vectors: np.ndarray  # output vectors: what user profiles are scored against
    _unit: np.ndarray | None = None

    def _fit(self, data: TrainingData, show_progress: bool) -> None:
        from gensim.models import Word2Vec

        p = self.params
        sessions = session_sentences(
            data.event_users,
            data.event_items,
            data.events.column("ts").to_numpy(),
            p.session_gap_minutes * 60.0,
            collapse_repeats=p.collapse_repeats,
        )
        tokens = np.arange(len(self.item_map)).astype(str)
        model = Word2Vec(
            sentences=[tokens[session].tolist() for session in sessions],
            vector_size=p.vector_size,
            window=p.window,
            min_count=p.min_count,
            sg=1,
            hs=0,
            negative=p.negative,
            ns_exponent=p.ns_exponent,
            sample=p.sample,
            alpha=p.alpha,
            epochs=p.epochs,
            seed=p.seed,
            workers=self.threads or 2,
        )
        shape = (len(self.item_map), p.vector_size)
        vectors = np.zeros(shape, dtype=np.float32)
        context_vectors = np.zeros(shape, dtype=np.float32)
        known = np.array(model.wv.index_to_key, dtype=np.int64)
        vectors[known] = model.wv.vectors
        context_vectors[known] = model.syn1neg
        # An item seen only in one-item sessions never had a context: its input vector is still
        # the random initialisation, which would make it look similar to arbitrary items. Its
        # output vector is meaningful (it was trained as a negative), so it stays.
        longer = [session for session in sessions if len(session) > 1]
        in_context = np.zeros(len(self.item_map), dtype=bool)
        if longer:
            in_context[np.concatenate(longer)] = True
        vectors[~in_context] = 0.0
        self.vectors = vectors
        self.context_vectors = context_vectors
        self._unit = None

    # ----- scoring ---------------------------------------------------------------------------

    def _unit_vectors(self) -> np.ndarray:
        if self._unit is None:
            self._unit = unit_rows(self.vectors)
        return self._unit

    def _profiles(
        self, rows: np.ndarray, items: np.ndarray, ages: np.ndarray, n_rows: int
    ) -> np.ndarray:
        """Recency-weighted mean unit vector of each row's items (``ages`` in events, 0 newest)."""
        weights = recency_decay(ages, self.params.recency_half_life).astype(np.float32)
        mixing = sp.csr_matrix((weights, (rows, items)), shape=(n_rows, len(self.item_map)))
        totals = np.asarray(mixing.sum(axis=1), dtype=np.float32)
        profiles = np.asarray(mixing @ self._unit_vectors(), dtype=np.float32)
        return np.asarray(profiles / np.maximum(totals, 1e-12), dtype=np.float32)

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        rows, positions, ages = history_events(self.history_indptr, users)
        return self._profiles(rows, self.history_items[positions], ages, len(users))

    def item_vectors(self) -> np.ndarray:
        return self.context_vectors

    def similarity_vectors(self) -> np.ndarray:
        """Similar items are judged on the input vectors, the classic item2vec similarity."""
        return self._unit_vectors()

    def score_users(self, users: np.ndarray) -> np.ndarray:
        scores: np.ndarray = self.user_vectors(users) @ self.context_vectors.T
        return scores

    def history_vector(self, history: History) -> np.ndarray | None:
        if not len(history):
            return None
        ages = np.arange(len(history))[::-1]
        profile = self._profiles(np.zeros(len(history), dtype=np.int64), history.items, ages, 1)
        user: np.ndarray = profile[0]
        return user

    def _forget_users(
        self, keep: np.ndarray, removed: sp.csr_matrix, events: ForgottenEvents
    ) -> None:
        """Co-occurrence learned by SGD cannot be subtracted: the vectors keep what the users'
        sessions taught them until the full retrain. Only items nobody else touched are
        treated as a retrain would leave them: with no context, so similar to nothing (their
        vectors would otherwise say which items the users had alongside them)."""
        orphaned = (np.asarray(removed.sum(axis=0)).ravel() > 0) & (self.item_popularity <= 0)
        if orphaned.any():
            self.vectors = np.array(self.vectors, copy=True)
            self.vectors[orphaned] = 0.0
            self._unit = None

    # ----- persistence -------------------------------------------------------------------------

    def _model_state(self) -> dict[str, np.ndarray]:
        return {"item2vec_vectors": self.vectors, "item2vec_context": self.context_vectors}

    def _load_model_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.vectors = np.ascontiguousarray(arrays["item2vec_vectors"], dtype=np.float32)
        self.context_vectors = np.ascontiguousarray(arrays["item2vec_context"], dtype=np.float32)
        self._unit = None
