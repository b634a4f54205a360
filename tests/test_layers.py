"""The layers contract in pyproject.toml ([tool.importlinter]): lower layers never import higher
ones. Checked here as well as in `make lint`, so that the test run catches a regression."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """pyproject.toml's contract, checked on the ``recsys_lite`` found in ``package_parent``."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_source_keeps_its_layers() -> None:
    result = lint_imports(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 1 kept, 0 broken." in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    copy = tmp_path / "recsys_lite"
    shutil.copytree(
        ROOT / "src" / "recsys_lite", copy, ignore=shutil.ignore_patterns("__pycache__")
    )
    # observability is a bottom layer; the API's instrumentation lives in serving for this reason
    (copy / "observability" / "upward.py").write_text(
        "from recsys_lite.serving.instrumentation import instrument_app\n"
    )
    # and a new top-level package must be given its place in the order
    (copy / "unplaced").mkdir()
    (copy / "unplaced" / "__init__.py").write_text("")

    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "recsys_lite.observability is not allowed to import recsys_lite.serving" in result.stdout
    assert "recsys_lite.observability.upward -> recsys_lite.serving.instrumentation" in (
        result.stdout
    )
    assert "unplaced" in result.stdout
