"""Self-contained model artifacts: written atomically, verified when loaded.

Each artifact written to a served path is a new version directory and the path a symlink to it
(versions.py); directories written before versions existed are still read. Layout of an
artifact directory::

    manifest.json   model type, params, versions, data fingerprint, checksums of the files
    metrics.json    offline evaluation of the recipe (see evaluation.evaluate)
    model.npz       every array of the model, id maps included (loaded without pickle)
    user.faiss      user→item index, item.faiss item→item index (embedding models only)

The Faiss indexes are what an artifact carries whichever vector store serves it: with
``VECTOR_STORE=qdrant`` loading puts the model's vectors in Qdrant instead of reading them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from recsys_lite import __version__
from recsys_lite.config import Settings, get_settings
from recsys_lite.errors import ArtifactError, InvalidInputError, VectorStoreError
from recsys_lite.files import file_sha256
from recsys_lite.models.base import Recommender
from recsys_lite.models.index import Calibration, VectorIndex
from recsys_lite.models.registry import create_model
from recsys_lite.models.versions import new_version_id, publish_version, versions_folder

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
METRICS = "metrics.json"
ARRAYS = "model.npz"
USER_INDEX = "user.faiss"
ITEM_INDEX = "item.faiss"
TRACKED_LIBRARIES = (
    "numpy", "scipy", "implicit", "faiss-cpu", "duckdb", "pyarrow", "gensim", "rectools-lightfm",
    "torch", "qdrant-client",
)  # fmt: skip


@dataclass
class Artifact:
    model: Recommender
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    path: Path


def library_versions() -> dict[str, str]:
    versions = {"recsys-lite": __version__}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def save_artifact(
    model: Recommender,
    output: Path,
    *,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    extra_files: Mapping[str, str | bytes] | None = None,
) -> Path:
    """Write a new version beside the served one, then switch ``output`` to it.

    A reader never sees a half-written artifact, nor the path missing: it finds either the old
    version or the new.
    """
    output = Path(output)
    folder = versions_folder(output)
    folder.mkdir(parents=True, exist_ok=True)
    version = new_version_id()
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=folder))
    try:
        np.savez(staging / ARRAYS, **model.state())  # type: ignore[arg-type]
        indexes, calibrations = {}, {}
        for filename, index in ((USER_INDEX, model.user_index), (ITEM_INDEX, model.item_index)):
            if index is not None:
                if not isinstance(index, VectorIndex):
                    raise ArtifactError(
                        f"the model searches {index.kind}: build its Faiss indexes before saving"
                    )
                index.save(staging / filename)
                indexes[filename] = index.kind
                if index.calibration is not None:
                    calibrations[filename] = index.calibration.as_dict()
        (staging / METRICS).write_text(json.dumps(metrics or {}, indent=2))
        for filename, content in (extra_files or {}).items():
            if isinstance(content, bytes):
                (staging / filename).write_bytes(content)
            else:
                (staging / filename).write_text(content)
        manifest = {
            "format_version": FORMAT_VERSION,
            "model_type": model.name,
            "params": model.params.model_dump(mode="json"),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "version": version,
            "libraries": library_versions(),
            "n_users": len(model.user_map),
            "n_items": len(model.item_map),
            **(extra or {}),
            # after the caller's extras: what describes this save's indexes is computed here
            "indexes": indexes,
            "index_calibration": calibrations,
        }
        manifest["checksums"] = {
            p.name: file_sha256(p) for p in sorted(staging.iterdir()) if p.name != MANIFEST
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        publish_version(staging, output, version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output


def read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = Path(path) / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(
            f"{path}: not a model artifact (no {MANIFEST}); run `recsys-lite train`"
        )
    try:
        manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{manifest_path}: corrupt manifest ({exc})") from exc
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: artifact format {version!r} is not supported by recsys-lite {__version__}"
            f" (expects {FORMAT_VERSION}); retrain the model"
        )
    return manifest


def artifact_version(manifest: dict[str, Any]) -> str:
    """What tells one artifact from another without reading more than its manifest."""
    # artifacts written before versions existed have none; their checksums cover every file
    return str(manifest.get("version") or json.dumps(manifest.get("checksums"), sort_keys=True))


def load_artifact(path: Path, settings: Settings | None = None) -> Artifact:
    settings = settings or get_settings()
    # every file from one version, even if the served path is switched while they are read
    path = Path(path).resolve()
    manifest = read_manifest(path)
    for name, expected in manifest.get("checksums", {}).items():
        file = path / name
        if not file.is_file():
            raise ArtifactError(f"{path}: artifact is incomplete, {name} is missing")
        if file_sha256(file) != expected:
            raise ArtifactError(f"{path}: artifact is corrupt, {name} does not match its checksum")
    try:
        model = create_model(manifest["model_type"], manifest.get("params"))
    except (KeyError, InvalidInputError) as exc:
        raise ArtifactError(f"{path}: incompatible artifact: {exc}") from exc
    try:
        with np.load(path / ARRAYS, allow_pickle=False) as arrays:
            model.load_state({key: arrays[key] for key in arrays.files})
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"{path}: cannot load model arrays: {exc}") from exc
    kinds = manifest.get("indexes", {})
    if settings.vector_store == "qdrant":
        _open_qdrant(model, manifest, settings)
    else:
        calibrations = manifest.get("index_calibration", {})
        for filename, role in ((USER_INDEX, "user_index"), (ITEM_INDEX, "item_index")):
            if filename in kinds:
                calibration = Calibration.from_dict(calibrations.get(filename))
                index = VectorIndex.load(path / filename, kinds[filename], settings, calibration)
                setattr(model, role, index)
    metrics = json.loads((path / METRICS).read_text()) if (path / METRICS).is_file() else {}
    return Artifact(model=model, manifest=manifest, metrics=metrics, path=path)


def _open_qdrant(model: Recommender, manifest: dict[str, Any], settings: Settings) -> None:
    """Qdrant collections in place of the artifact's Faiss indexes, for the same roles."""
    try:
        # the qdrant extra, imported only by those who chose it
        from recsys_lite.models.qdrant_store import QdrantStore
    except ImportError as exc:
        raise VectorStoreError(
            "VECTOR_STORE=qdrant needs the qdrant extra: pip install 'recsys-lite[qdrant]'"
        ) from exc
    kinds = manifest.get("indexes", {})
    # named by content: one artifact's vectors, whichever process or copy loads it
    key = str(manifest.get("checksums", {}).get(ARRAYS) or artifact_version(manifest))
    key = hashlib.sha256(key.encode()).hexdigest()[:16]
    vectors = model.item_vectors() if USER_INDEX in kinds else None
    if vectors is not None:
        model.user_index = QdrantStore.open(vectors, f"{key}-user", settings)
    unit = model.similarity_vectors() if ITEM_INDEX in kinds else None
    if unit is not None:
        model.item_index = QdrantStore.open(unit, f"{key}-item", settings)
