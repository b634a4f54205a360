"""One settings object, read from environment variables (documented in the README)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

IndexKind = Literal["auto", "flat", "hnsw", "ivf"]
BusKind = Literal["embedded", "redis", "kafka"]
SearchIndexMode = Literal["auto", "on", "off"]
VectorStoreKind = Literal["faiss", "qdrant"]


class Settings(BaseSettings):
    """Runtime settings. Every field maps to the upper-case environment variable of its name."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    db_path: Path = Field(Path("data/recsys.db"), description="DuckDB store file")
    model_dir: Path = Field(Path("artifacts/current"), description="Artifact directory served")
    experiment_file: Path | None = Field(
        None, description="A/B test or interleaving between artifacts (TOML or JSON; README)"
    )
    log_level: str = Field("INFO", description="Python logging level")
    log_format: Literal["text", "json"] = Field(
        "text", description="json: one JSON object per line, with request ids"
    )
    slow_request_seconds: float = Field(
        1.0, ge=0, description="LOG_FORMAT=json logs requests slower than this (0: every one)"
    )
    tracing: bool = Field(False, description="OpenTelemetry spans (needs the tracing extra)")
    tracing_exporter: Literal["otlp", "console"] = Field(
        "otlp", description="where spans go; OTLP reads the OTEL_EXPORTER_OTLP_* variables"
    )
    service_name: str = Field("recsys-lite", description="service.name of spans")
    max_recommendations: int = Field(100, ge=1, le=10_000, description="Upper bound for k")
    faiss_index: IndexKind = Field("auto", description="Index kind built at training time")
    exact_search_max_items: int = Field(
        50_000, ge=0, description="auto: exact search up to this many items, HNSW above"
    )
    faiss_nprobe: int = Field(32, ge=1, description="IVF lists probed per query")
    index_recall_target: float = Field(
        0.95, gt=0, le=1,
        description="HNSW is calibrated at training to find this share of the exact top 10",
    )  # fmt: skip
    faiss_ef_search: int = Field(32, ge=1, description="HNSW candidate list size per query")
    faiss_hnsw_m: int = Field(8, ge=2, le=64, description="HNSW links per node (at training)")
    vector_store: VectorStoreKind = Field(
        "faiss",
        description="where loaded models search item vectors: faiss (in-process, the artifact's"
        " own indexes) or qdrant (needs the qdrant extra)",
    )
    qdrant_url: str | None = Field(
        None,
        description="the Qdrant server of VECTOR_STORE=qdrant; unset: Qdrant's local mode, in"
        " memory in each process",
    )
    qdrant_api_key: SecretStr | None = Field(None, description="the Qdrant server's API key")
    qdrant_collection: str = Field(
        "recsys-lite",
        description="prefix of the collections on the Qdrant server (one per artifact and role)",
    )
    qdrant_timeout: int = Field(10, ge=1, description="seconds a Qdrant server request may take")
    threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    training_job_nice: int = Field(
        10, ge=0, le=19,
        description="niceness of jobs started by POST /training (0: the API's own priority)",
    )  # fmt: skip
    search_index: SearchIndexMode = Field(
        "auto",
        description="text index for /search, built at training time: auto (when the search"
        " extra is installed and the catalog has text), on, off (also: no /search when serving)",
    )
    inbox_dir: Path | None = Field(
        None, description="where accepted events are spooled (default: inbox/ beside DB_PATH)"
    )
    event_archive: Path | None = Field(
        None,
        description="Delta Lake table (a folder) every accepted event is also appended to,"
        " partitioned by day (off when unset; needs the archive extra)",
    )
    event_bus: BusKind = Field("embedded", description="how replicas share events")
    redis_url: str = Field("redis://127.0.0.1:6379/0")
    kafka_bootstrap: str = Field("127.0.0.1:9092")
    bus_topic: str = Field("recsys-events", description="Redis stream / Kafka topic name")
    bus_poll_interval: float = Field(0.1, gt=0, description="seconds between bus polls")
    spark_driver_memory: str = Field(
        "2g",
        pattern=r"^[0-9]+[kmgt]?$",
        description="spark.driver.memory of train --engine spark (e.g. 8g for a larger export)",
    )
    spark_als_blocks: int = Field(
        4, ge=1, description="user and item blocks of Spark's ALS (about the executors' cores)"
    )
    inbox_drain_interval: float = Field(
        2.0, ge=0, description="the API folds its inbox into the store this often (0: never)"
    )
    admin_api_key: SecretStr | None = Field(
        None, description="the full-scope admin key (Authorization: Bearer); unset: admin off"
    )
    api_keys: SecretStr | None = Field(
        None, description="more keys: name:secret[:scope+scope],... (default scopes: writes)"
    )
    api_keys_file: Path | None = Field(
        None, description="a TOML file of hashed keys (recsys-lite keys add writes it)"
    )
    max_body_bytes: int = Field(2_000_000, ge=1, description="larger request bodies get 413")
    max_clock_skew: int = Field(
        300, ge=0, description="seconds an event time may lie in the future (files and API)"
    )
    rate_limit_per_ip: float = Field(
        100.0, ge=0, description="requests/s per client address without a key (0: no limit)"
    )
    rate_limit_per_key: float = Field(
        1000.0, ge=0, description="requests/s per API key (0: no limit)"
    )
    rate_limit_burst_seconds: float = Field(
        2.0, gt=0, description="a client may burst this many seconds' worth of requests"
    )
    public_events_per_user: float = Field(
        10.0, ge=0, description="browser events/s one user id may send without a key (0: none)"
    )
    public_events_per_ip: float = Field(
        20.0, ge=0, description="browser events/s one client address may send without a key"
    )
    online_max_users: int = Field(
        100_000, ge=1, description="shoppers with events since training kept per API process"
    )
    online_state: Literal["auto", "memory", "redis"] = Field(
        "auto",
        description="where shoppers' online state lives: memory (each API process) or redis"
        " (REDIS_URL, shared by every replica); auto: redis when EVENT_BUS=redis",
    )
    online_state_ttl_hours: float = Field(
        24.0, gt=0, description="Redis online state expires this long after its last write"
    )
    bus_retention_hours: float = Field(
        24.0, gt=0, description="how long the Kafka topic this product creates keeps messages"
    )
    event_retention_days: float | None = Field(
        None, gt=0, description="events older than this are deleted by the worker (unset: kept)"
    )
    watch_dir: Path | None = Field(
        None, description="the folder stream-ingest watches (erasure rewrites its processed/)"
    )
    erasure_retrain_hours: float = Field(
        24.0, gt=0, description="a full retrain without an erased shopper is due within this"
    )
    cors_origins: str = Field(
        "", description="comma-separated origins allowed to call the API from a browser"
    )
    model_watch_interval: float = Field(
        1.0, ge=0, description="seconds between checks for a new artifact (0: never)"
    )
    demo_site_dir: Path = Field(
        # the widget's built demo shop in a source checkout (`make demo` builds it)
        Path(__file__).resolve().parents[2] / "widget" / "dist-demo",
        description="static demo shop served at /demo when the folder exists",
    )

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def shared_online_state(self) -> bool:
        return self.online_state == "redis" or (
            self.online_state == "auto" and self.event_bus == "redis"
        )

    @property
    def online_state_prefix(self) -> str:
        """Replicas sharing a stream share online state; other streams, other state."""
        return f"{self.bus_topic}:online:"

    @property
    def inbox(self) -> Path:
        return self.inbox_dir or self.db_path.parent / "inbox"

    @property
    def worker_status_file(self) -> Path:
        """Where the worker reports its cycles, for the API's /ready and /metrics."""
        return self.db_path.parent / "worker-status.json"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
