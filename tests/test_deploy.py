"""The deployment files, checked without a container engine: hadolint on the Dockerfile, the
docker compose client's own validation of the compose file, promtool on the Prometheus config
and alert rules (with unit tests of the alerts), and every metric the dashboard and the alerts
name is one the code exports."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import require_component

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent  # hadolint and docker-compose come with the dev extra


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def compose_config(**env: str) -> subprocess.CompletedProcess[str]:
    return run(
        BIN / "docker-compose", "-f", DEPLOY / "compose.yaml", "config", "--format", "json",
        env=env,
    )  # fmt: skip


def test_dockerfile_passes_hadolint_at_style_level() -> None:
    result = run(BIN / "hadolint", "--failure-threshold", "style", DEPLOY / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_slim_cpu_torch_and_runs_as_a_user() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = text.replace("\\\n", " ").splitlines()
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) >= 2
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    final = text[text.rindex("\nFROM ") :]
    users = re.findall(r"^USER (\S+)", final, flags=re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # the final stage copies the environment only: no compiler, no pip cache, no source tree
    assert "COPY --from=build /opt/venv /opt/venv" in final
    assert "COPY src" not in final
    torch = next(line for line in lines if "pip install" in line and "torch==" in line)
    assert "/whl/cpu" in torch
    # the build context is cut to what the build reads (the virtual environment is gigabytes)
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignored and "!src/" in ignored


def test_compose_file_is_valid_for_the_compose_client_and_needs_an_admin_key() -> None:
    refused = compose_config()
    assert refused.returncode != 0
    assert "ADMIN_API_KEY" in refused.stderr
    accepted = compose_config(ADMIN_API_KEY="a-key-for-the-check")
    assert accepted.returncode == 0, accepted.stderr


def test_compose_starts_everything_in_a_health_checked_order() -> None:
    result = compose_config(ADMIN_API_KEY="a-key-for-the-check")
    services: dict[str, Any] = json.loads(result.stdout)["services"]
    assert {"api", "worker", "redis", "broker", "prometheus", "init"} <= set(services)
    assert services["api"]["deploy"]["replicas"] == 2

    def waits_for(service: str) -> dict[str, str]:
        return {k: v["condition"] for k, v in services[service].get("depends_on", {}).items()}

    for service in ("api", "worker"):
        assert waits_for(service) == {
            "init": "service_completed_successfully",
            "redis": "service_healthy",
            "broker": "service_healthy",
        }
    assert waits_for("prometheus") == {"api": "service_healthy", "worker": "service_healthy"}
    # everything waited on as healthy has a health check of its own
    for service in ("api", "worker", "redis", "broker", "prometheus"):
        check = services[service]["healthcheck"]
        assert check.get("test") and not check.get("disable"), service
    # the worker's health check asks its metrics port, which its command opens
    worker = services["worker"]
    assert "--metrics-port" in worker["command"]
    port = worker["command"][worker["command"].index("--metrics-port") + 1]
    assert f":{port}/metrics" in " ".join(worker["healthcheck"]["test"])
    assert services["api"]["environment"]["EVENT_BUS"] in ("kafka", "redis")


def test_prometheus_config_and_alert_rules_pass_promtool() -> None:
    promtool = require_component("promtool")
    for check in (
        ("check", "config", DEPLOY / "prometheus.yml"),
        ("check", "rules", DEPLOY / "alerts.yml"),
        # the alerts fire on the series they are written for, and not before their time
        ("test", "rules", DEPLOY / "alerts.test.yml"),
    ):
        result = run(promtool, *check)
        assert result.returncode == 0, result.stdout + result.stderr


def exported_metric_names() -> set[str]:
    """Metric names the source defines (the first argument of a metric or metric family)."""
    names = set()
    for path in (ROOT / "src" / "recsys_lite").rglob("*.py"):
        names.update(re.findall(r'"(recsys_[a-z_]+)"', path.read_text()))
    return names


def referenced_metric_names(text: str) -> set[str]:
    suffixes = ("_total", "_bucket", "_count", "_sum", "_created")
    found = set()
    for name in re.findall(r"\b(recsys_[a-z_]+)", text):
        for suffix in suffixes:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        found.add(name)
    return found


@pytest.mark.parametrize("file", ["alerts.yml", "grafana-dashboard.json"])
def test_alerts_and_dashboard_name_only_exported_metrics(file: str) -> None:
    referenced = referenced_metric_names((DEPLOY / file).read_text())
    assert referenced, "no metric referenced"
    assert referenced <= exported_metric_names(), referenced - exported_metric_names()


def test_dashboard_panels_each_have_a_query_and_the_datasource_input() -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"]["uid"] == "${DS_PROMETHEUS}"


@pytest.mark.parametrize(("torch", "extras"), [("cpu", "tracing"), ("none", "tracing")])
def test_the_image_installs_every_dependency_of_pyproject(torch: str, extras: str) -> None:
    """The Dockerfile's own requirement list, run as the build runs it: every dependency and
    the extras asked for, torch only when wanted (its CPU build is installed before)."""
    import tomllib

    joined = (DEPLOY / "Dockerfile").read_text().replace("\\\n", "")
    line = next(line for line in joined.splitlines() if "tomllib" in line)
    command = line.split("RUN ", 1)[1].split(" > /tmp/requirements.txt")[0]
    result = run("sh", "-c", command, env={"TORCH": torch, "EXTRAS": extras})
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["tracing"]
    if torch == "none":
        wanted = [r for r in wanted if not r.startswith("torch")]
    assert sorted(listed) == sorted(wanted)


WITHOUT_TORCH = """
import importlib.abc, json, sys


class NoTorch(importlib.abc.MetaPathFinder):  # an image built with TORCH=none: no torch at all
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NoTorch())
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from recsys_lite.cli import app
from recsys_lite.config import Settings
from recsys_lite.serving.app import create_app

db, model_dir, user = sys.argv[1:4]
runner = CliRunner()
als = runner.invoke(app, ["train", "als", "--db", db, "--output", model_dir, "--test-size", "0",
                          "--params", '{"iterations": 3}'])
gru = runner.invoke(app, ["train", "gru4rec", "--db", db, "--output", model_dir + "-gru"])
settings = Settings(db_path=db, model_dir=model_dir, search_index="off")
with TestClient(create_app(settings)) as client:
    answer = client.get("/recommend", params={"user_id": user, "k": 5}).json()
print(json.dumps({"als": als.exit_code, "gru": gru.exit_code, "gru_output": gru.output,
                  "torch_loaded": "torch" in sys.modules, "answer": answer}))
"""


def test_without_torch_als_trains_and_serves_and_gru4rec_says_why_not(
    shop_db: Path, tmp_path: Path
) -> None:
    """The TORCH=none image: every model but the torch ones trains and serves."""
    import duckdb

    db = tmp_path / "shop.db"
    db.write_bytes(shop_db.read_bytes())
    with duckdb.connect(str(db), read_only=True) as con:
        user = con.execute(
            "SELECT user_id FROM events GROUP BY 1 ORDER BY count(*) DESC"
        ).fetchone()
    assert user is not None
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, str(db), str(tmp_path / "als"), user[0]],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["als"] == 0 and not report["torch_loaded"]
    assert report["answer"]["source"] == "als" and len(report["answer"]["recommendations"]) == 5
    assert report["gru"] != 0 and "needs the torch package" in report["gru_output"]
