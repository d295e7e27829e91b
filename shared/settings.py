"""Settings every dealflow process reads from its environment."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the servers are and how this deployment names its topics and databases.

    The unprefixed names (`KAFKA_BOOTSTRAP_SERVERS`, `MONGODB_URI`) are the ones ops already use for
    other tools; everything specific to dealflow starts with `DEALFLOW_`.
    """

    model_config = SettingsConfigDict(env_prefix="DEALFLOW_", extra="ignore", populate_by_name=True)

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    mongodb_uri: str = Field(default="mongodb://127.0.0.1:27017/", validation_alias="MONGODB_URI")
    namespace: str = Field(
        default="dealflow",
        pattern=r"^[a-z][a-z0-9_-]{0,30}$",
        description="Prefix of every topic, consumer group and database, so deployments can share servers.",
    )
    partitions: int = Field(default=6, ge=1, description="Partitions of each topic this process creates.")
    replication_factor: int = Field(default=1, ge=1)
    log_level: str = "INFO"
    max_event_bytes: int = Field(
        default=1_048_576, ge=1024, description="Larger records are dead-lettered, not processed."
    )
    retry_budget_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a transient fault is retried in place before the record is redelivered.",
    )

    batch_max_records: int = Field(
        default=500, ge=1, description="Records applied per bulk write and commit."
    )
    batch_wait_ms: int = Field(default=20, ge=0, description="How long a poll waits to fill a batch.")
    timer_tick_seconds: float = Field(
        default=1.0, gt=0, description="How often due deadlines are looked for."
    )

    http_host: str = Field(
        default="127.0.0.1",
        description="Address of the health, metrics and docs endpoints; 0.0.0.0 in a container.",
    )
    http_port: int | None = Field(
        default=None, ge=0, le=65535, description="Port of those endpoints; unset means the service's own."
    )
    traces_exporter: Literal["none", "console", "otlp"] = Field(
        default="none",
        description="Where spans go; `otlp` reads the standard OTEL_EXPORTER_OTLP_* variables.",
    )

    def topic(self, name: str) -> str:
        return f"{self.namespace}.{name}"

    def database_name(self, service: str) -> str:
        return f"{self.namespace}_{service}"

    def consumer_group(self, service: str) -> str:
        return f"{self.namespace}.{service}"
