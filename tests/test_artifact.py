"""Corrupt or incompatible artifacts fail loudly, with a message that says what is wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from recsys_lite.errors import ArtifactError
from recsys_lite.models.artifact import load_artifact


@pytest.fixture
def copy(als_artifact: Path, tmp_path: Path) -> Path:
    target = tmp_path / "artifact"
    shutil.copytree(als_artifact, target)
    return target


def test_artifact_is_self_describing(als_artifact: Path) -> None:
    manifest = json.loads((als_artifact / "manifest.json").read_text())
    assert manifest["model_type"] == "als"
    assert manifest["params"]["iterations"] == 8
    assert {"numpy", "implicit", "faiss-cpu", "recsys-lite"} <= set(manifest["libraries"])
    assert len(manifest["data_fingerprint"]) == 16 and manifest["created_at"].endswith("Z")
    metrics = json.loads((als_artifact / "metrics.json").read_text())
    assert 0 < metrics["metrics"]["ndcg@10"] < 1
    assert not list(als_artifact.parent.glob(".als.tmp-*")), "no staging directory left behind"


def test_flipped_bytes_are_detected(copy: Path) -> None:
    data = bytearray((copy / "model.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.npz").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"corrupt, model.npz does not match"):
        load_artifact(copy)


def test_missing_file_and_manifest(copy: Path) -> None:
    (copy / "user.faiss").unlink()
    with pytest.raises(ArtifactError, match=r"incomplete, user\.faiss is missing"):
        load_artifact(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="not a model artifact"):
        load_artifact(copy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format_version": 99}, "format 99 is not supported"),
        ({"model_type": "quantum"}, "incompatible artifact: unknown model 'quantum'"),
    ],
)
def test_incompatible_manifest(copy: Path, change: dict[str, object], message: str) -> None:
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps(manifest | change))
    with pytest.raises(ArtifactError, match=message):
        load_artifact(copy)
