"""The ranker's booster compiled to native code scores as LightGBM does, is compiled once per
model and machine (then loaded from the cache), and where it cannot be compiled LightGBM
scores, with the reason logged once."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lightgbm")
pytest.importorskip("lleaves")

from recsys_lite.data.store import Store
from recsys_lite.models import create_model
from recsys_lite.models.artifact import load_artifact, save_artifact
from recsys_lite.ranking.compiled_trees import CompiledTrees, default_cache_dir
from recsys_lite.ranking.ranker import RankerModel, _booster

PARAMS = {
    **json.loads((Path(__file__).parent / "fast_params" / "ranker.json").read_text()),
    "trees": 30,
}


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The compiled models of this module go to its own cache, not the user's."""
    home = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def ranker(shop_db: Path, cache_home: Path) -> RankerModel:
    store = Store(shop_db)
    model = create_model("ranker", PARAMS).fit(store.read_events(), store.read_items())
    assert isinstance(model, RankerModel) and model.booster_text
    if model.fallback >= 0:
        # on this small shop validation may choose a retriever; these tests are about the
        # booster, so it serves regardless, and is compiled as training compiles it
        model.fallback = -1
        model._prepare_booster()
    return model


def request_rows(model: RankerModel, users: range) -> list[np.ndarray]:
    """The feature rows the booster is given for these shoppers, one array per shopper."""
    rows: list[np.ndarray] = []
    predict = model._predict

    def recording(features: np.ndarray) -> np.ndarray:
        rows.append(features.copy())
        return predict(features)

    model._predict = recording  # type: ignore[method-assign]
    try:
        model.score_users(np.array(users))
    finally:
        del model._predict
    assert len(rows) == len(users)
    return rows


def test_compiled_scores_and_rankings_equal_lightgbm_on_request_rows(ranker: RankerModel) -> None:
    compiled = ranker._compiled  # as the ranker compiled it
    assert compiled is not None
    booster = _booster(ranker.booster_text)
    all_rows = request_rows(ranker, range(40))
    stacked = np.vstack(all_rows)
    assert np.isnan(stacked).any(), "rows with missing values should be among those compared"
    for rows in all_rows:
        expected = booster.predict(rows, num_threads=1)
        got = compiled.predict(rows)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
        # what the ranker ranks by: the float32 scores, in the same order
        ours, theirs = got.astype(np.float32), expected.astype(np.float32)
        np.testing.assert_array_equal(
            np.argsort(-ours, kind="stable")[:20], np.argsort(-theirs, kind="stable")[:20]
        )
    assert len(np.unique(booster.predict(stacked))) > 50, "the trees should tell rows apart"


def test_the_ranker_serves_the_compiled_trees_and_recommends_as_with_lightgbm(
    ranker: RankerModel, cache_home: Path, tmp_path: Path
) -> None:
    assert ranker._compiled is not None
    assert ranker._compiled.cache_file is not None
    assert ranker._compiled.cache_file.parent == default_cache_dir()
    assert default_cache_dir().is_relative_to(cache_home)
    save_artifact(ranker, tmp_path / "m")
    loaded = load_artifact(tmp_path / "m").model
    assert isinstance(loaded, RankerModel) and loaded._compiled is not None
    users = np.arange(12)
    compiled_scores = loaded.score_users(users)
    compiled_top = [loaded.recommend(loaded.user_map.ids[u], 10).items for u in users]
    loaded._compiled = None  # as where the trees cannot be compiled: LightGBM scores
    np.testing.assert_allclose(loaded.score_users(users), compiled_scores, rtol=1e-6)
    for user, top in zip(users, compiled_top, strict=True):
        np.testing.assert_array_equal(loaded.recommend(loaded.user_map.ids[user], 10).items, top)


def test_a_model_is_compiled_once_then_loaded_from_the_cache(
    ranker: RankerModel, tmp_path: Path
) -> None:
    started = time.perf_counter()
    first = CompiledTrees.build(ranker.booster_text, tmp_path)
    compile_seconds = time.perf_counter() - started
    assert first is not None and first.cache_file is not None and first.cache_file.is_file()
    written = first.cache_file.stat().st_mtime_ns
    started = time.perf_counter()
    again = CompiledTrees.build(ranker.booster_text, tmp_path)
    load_seconds = time.perf_counter() - started
    assert again is not None and again.cache_file == first.cache_file
    assert first.cache_file.stat().st_mtime_ns == written, "the cached code was compiled again"
    assert load_seconds < compile_seconds
    rows = request_rows(ranker, range(3))[0]
    np.testing.assert_array_equal(again.predict(rows), first.predict(rows))
    # another model (its first 5 trees) is another entry; no partial file is left behind
    other_text = _booster(ranker.booster_text).model_to_string(num_iteration=5)
    other = CompiledTrees.build(other_text, tmp_path)
    assert other is not None and other.cache_file is not None
    assert other.cache_file != first.cache_file
    assert sorted(tmp_path.iterdir()) == sorted([first.cache_file, other.cache_file])


def test_a_cache_folder_that_cannot_be_written_still_compiles(
    ranker: RankerModel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="recsys_lite.ranking.compiled_trees"):
        compiled = CompiledTrees.build(ranker.booster_text, blocked / "cache")
    assert compiled is not None and compiled.cache_file is None
    assert "compiled at every start" in caplog.text


def test_without_lleaves_lightgbm_scores_and_the_reason_is_logged_once(
    ranker: RankerModel,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    monkeypatch.setitem(sys.modules, "lleaves", None)  # import lleaves raises ImportError
    with caplog.at_level(logging.WARNING, logger="recsys_lite.ranking.compiled_trees"):
        assert CompiledTrees.build(ranker.booster_text, tmp_path / "cache") is None
        assert CompiledTrees.build(ranker.booster_text, tmp_path / "cache") is None
        save_artifact(ranker, tmp_path / "m")
        loaded = load_artifact(tmp_path / "m").model
    assert isinstance(loaded, RankerModel) and loaded._compiled is None
    assert caplog.text.count("lleaves is not installed") == 1
    assert not (tmp_path / "cache").exists()
    rows = request_rows(ranker, range(1))[0]
    np.testing.assert_array_equal(
        loaded._predict(rows),
        np.asarray(_booster(ranker.booster_text).predict(rows, num_threads=1), np.float32),
    )
