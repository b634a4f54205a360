"""A fresh machine: the set-up step says what it installs or lacks, and tests that need a
missing component skip with the reason (or fail in CI, where everything must run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def bare_path(tmp_path: Path) -> str:
    """A PATH with only a shell and coreutils' id: no redis-server, no apt-get, no sudo."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for command in ("bash", "id"):
        found = shutil.which(command)
        assert found
        (folder / command).symlink_to(found)
    return str(folder)


def test_deps_reports_what_it_cannot_install(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "deps.sh")],
        env={"PATH": bare_path(tmp_path)}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "deps: MISSING redis-server" in result.stdout
    assert "sudo apt-get install redis-server" in result.stdout


def run_redis_test(tmp_path: Path, require_all: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": bare_path(tmp_path), "RECSYS_REQUIRE_ALL": require_all}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_bus.py::test_every_replica_sees_every_batch[redis]"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip


def test_a_missing_component_skips_with_a_summary(tmp_path: Path) -> None:
    result = run_redis_test(tmp_path, "0")
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "skipped for missing system components" in result.stdout
    assert "redis-server: 1 test(s) skipped; install it with sudo apt-get install redis-server" in (
        result.stdout
    )


def test_ci_turns_a_missing_component_into_a_failure(tmp_path: Path) -> None:
    result = run_redis_test(tmp_path, "1")
    assert result.returncode != 0
    assert "RECSYS_REQUIRE_ALL=1 requires every component" in result.stdout
