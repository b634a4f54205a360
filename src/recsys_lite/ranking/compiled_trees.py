"""A LightGBM model compiled to machine code, to score a request's candidates cheaply.

LightGBM's own ``Booster.predict`` walks its trees through a generic interpreter and pays a
fixed cost per call; on the few hundred rows of one request that is most of a millisecond.
lleaves compiles the model's text to native code through LLVM (llvmlite ships it, so no C
compiler is needed on the machine), with the same comparisons in double precision as
LightGBM's: the scores agree to float64 rounding, which the ranker's float32 scores do not see.

Compiling takes seconds, so the object code is cached in a folder, under a name derived from
the model text, the compiler's versions and the CPU it was compiled for: a served process
loads it in milliseconds instead of compiling again, and a copy of the cache on another CPU is
never used there. Where lleaves is missing or compiling fails, ``build`` returns None and says
why in the log, once per reason; the caller then scores with LightGBM.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
_reported: set[str] = set()


def default_cache_dir() -> Path:
    """Per user, as other programs cache compiled code (XDG_CACHE_HOME, else ~/.cache)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "recsys-lite" / "compiled-trees"


class CompiledTrees:
    """The trees of one LightGBM model as a native function; ``predict`` uses one thread."""

    def __init__(self, model: Any, cache_file: Path | None) -> None:
        self._model = model
        self.cache_file = cache_file  # where the object code is kept (None: not cached)
        self.n_features = int(model.num_feature())

    @classmethod
    def build(cls, model_text: str, cache_dir: Path | None = None) -> CompiledTrees | None:
        """The compiled model (from ``cache_dir`` when compiled there before), or None when
        it cannot be compiled here."""
        try:
            import lleaves  # type: ignore[import-untyped,unused-ignore]
        except ImportError as exc:
            _report_once(f"lleaves is not installed ({exc}): LightGBM scores instead")
            return None
        try:
            return cls._compile(lleaves, model_text, cache_dir)
        except Exception as exc:  # any failure of the compiler: LightGBM still scores
            _report_once(f"compiling failed ({type(exc).__name__}: {exc}): LightGBM scores instead")
            return None

    @classmethod
    def _compile(cls, lleaves: Any, model_text: str, cache_dir: Path | None) -> CompiledTrees:
        cache_file = _cache_file(model_text, cache_dir) if cache_dir is not None else None
        with tempfile.TemporaryDirectory(prefix="compiled-trees-") as folder:
            # lleaves reads the model from a file
            text_file = Path(folder) / "model.txt"
            text_file.write_text(model_text)
            model = lleaves.Model(model_file=str(text_file))
            if cache_file is not None and cache_file.is_file():
                try:
                    model.compile(cache=str(cache_file))
                    return cls(model, cache_file)
                except Exception as exc:  # an unreadable cache entry: compile again
                    _report_once(f"{cache_file} could not be loaded ({exc}); compiling again")
                    cache_file.unlink(missing_ok=True)
                    model = lleaves.Model(model_file=str(text_file))
            if cache_file is None or not _writable(cache_file.parent):
                model.compile()
                return cls(model, None)
            # written under a private name, then renamed: processes starting together each
            # compile, and none ever loads a half-written file
            partial = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.partial")
            try:
                model.compile(cache=str(partial))
                os.replace(partial, cache_file)
            finally:
                partial.unlink(missing_ok=True)
            return cls(model, cache_file)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Scores of the rows (one row of the model's features each), float64 as LightGBM's."""
        if features.ndim != 2 or features.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got {features.shape}")
        rows = np.ascontiguousarray(features, dtype=np.float64)
        return np.asarray(self._model.predict(rows, n_jobs=1), dtype=np.float64)


def _cache_file(model_text: str, cache_dir: Path) -> Path:
    import llvmlite.binding as llvm  # type: ignore[import-untyped,unused-ignore]

    llvm.initialize()
    llvm.initialize_native_target()
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot always list them; the CPU name still tells most apart
        features = ""
    key = hashlib.sha256()
    for part in (
        model_text,
        metadata.version("lleaves"),
        metadata.version("llvmlite"),
        llvm.get_process_triple(),
        llvm.get_host_cpu_name(),
        features,
    ):
        key.update(part.encode())
        key.update(b"\0")
    return cache_dir / f"{key.hexdigest()[:32]}.o"


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _report_once(f"cannot create {folder} ({exc}); the trees are compiled at every start")
        return False
    if not os.access(folder, os.W_OK):
        _report_once(f"{folder} is not writable; the trees are compiled at every start")
        return False
    return True


def _report_once(reason: str) -> None:
    """Logged once per process: a server would otherwise repeat it at every model load."""
    if reason not in _reported:
        _reported.add(reason)
        log.warning("ranker trees: %s", reason)
