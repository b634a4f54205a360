"""The widget in a real browser: the demo shop built on it (widget/dist-demo), served at /demo by
a real ``recsys-lite serve`` on the demo shop's data, driven by headless Chromium through
``widget/e2e/run.mjs``: cards with titles, prices and images; impressions and a click sent to
``POST /events`` under the public-events limits, and the next answer changing; keyboard
navigation; an axe audit with no violation; screenshots at three widths in
widget/test-artifacts/."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import require_component, running_server
from recsys_lite.config import Settings
from recsys_lite.serving.app import create_app

WIDGET = Path(__file__).resolve().parents[1] / "widget"
ARTIFACTS = WIDGET / "test-artifacts"


def require_built_widget() -> None:
    """The demo and the browser driver come from `make widget` (npm ci, npm run build)."""
    needed = (WIDGET / "node_modules" / "playwright-core", WIDGET / "dist-demo" / "index.html")
    missing = [path for path in needed if not path.exists()]
    if not missing:
        return
    reason = f"the widget is not built ({missing[0]} is missing): run make widget"
    if os.environ.get("RECSYS_REQUIRE_ALL") == "1":
        pytest.fail(f"{reason} (RECSYS_REQUIRE_ALL=1 requires every component)")
    pytest.skip(reason)


def test_demo_shop_in_chromium(shop_db: Path, als_artifact: Path, tmp_path: Path) -> None:
    node = require_component("node")
    chromium = require_component("chromium")
    require_built_widget()
    shutil.copy(shop_db, tmp_path / "shop.db")  # the test's clicks are written to the store
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    env = {"DEMO_SITE_DIR": str(WIDGET / "dist-demo")}
    with running_server(als_artifact, tmp_path / "shop.db", tmp_path, env=env) as url:
        run = subprocess.run(
            [node, str(WIDGET / "e2e" / "run.mjs")],
            env={**os.environ, "RECSYS_URL": url, "ARTIFACTS_DIR": str(ARTIFACTS),
                 "CHROMIUM": chromium},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    print(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    for width in (375, 768, 1280):
        assert (ARTIFACTS / f"home-{width}.png").stat().st_size > 10_000


def test_demo_shop_is_served_from_its_folder_only_when_built(
    shop_db: Path, als_artifact: Path, tmp_path: Path
) -> None:
    built = tmp_path / "dist-demo"
    built.mkdir()
    (built / "index.html").write_text("<h1>demo shop</h1>")
    settings = Settings(db_path=shop_db, model_dir=als_artifact, demo_site_dir=built)
    with TestClient(create_app(settings)) as http:
        assert http.get("/demo/").text == "<h1>demo shop</h1>"
        assert http.get("/demo", follow_redirects=True).text == "<h1>demo shop</h1>"
        missing = http.get("/demo/missing.js")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    absent = Settings(db_path=shop_db, model_dir=als_artifact, demo_site_dir=tmp_path / "absent")
    with TestClient(create_app(absent)) as http:
        assert http.get("/demo/").status_code == 404
