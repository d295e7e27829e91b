"""Settings every dealflow process reads from its environment."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
# The names the insights API answers to by default: this machine (any port), the Compose service, and the
# Kubernetes Service in the `dealflow` namespace. Any other Host header is refused (DNS rebinding).
DEFAULT_ALLOWED_HOSTS = (
    "127.0.0.1",
    "localhost",
    "[::1]",
    "insights",
    "dealflow-insights",
    "dealflow-insights.dealflow",
    "dealflow-insights.dealflow.svc",
    "dealflow-insights.dealflow.svc.cluster.local",
)
MIN_API_TOKEN_LENGTH = 16


class Settings(BaseSettings):
    """Where the servers are and how this deployment names its topics and databases.

    The unprefixed names (`KAFKA_BOOTSTRAP_SERVERS`, `KAFKA_SASL_*`, `MONGODB_URI`, ...) are the ones ops
    already use for other tools; everything specific to dealflow starts with `DEALFLOW_`. Secrets are
    `SecretStr`, so printing or logging the settings shows `**********` instead.
    """

    # A refused setting is reported by name, never with the values read, which include the secrets.
    model_config = SettingsConfigDict(
        env_prefix="DEALFLOW_", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        default="PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL"
    )
    kafka_sasl_mechanism: KafkaSaslMechanism = Field(
        default="SCRAM-SHA-512", validation_alias="KAFKA_SASL_MECHANISM"
    )
    kafka_sasl_username: str | None = Field(default=None, validation_alias="KAFKA_SASL_USERNAME")
    kafka_sasl_password: SecretStr | None = Field(default=None, validation_alias="KAFKA_SASL_PASSWORD")
    kafka_ssl_cafile: FilePath | None = Field(
        default=None,
        validation_alias="KAFKA_SSL_CAFILE",
        description="CA certificates (PEM) that signed the brokers' certificates; default: the system's",
    )
    kafka_ssl_certfile: FilePath | None = Field(
        default=None, validation_alias="KAFKA_SSL_CERTFILE", description="client certificate (PEM), for mTLS"
    )
    kafka_ssl_keyfile: FilePath | None = Field(
        default=None, validation_alias="KAFKA_SSL_KEYFILE", description="the client certificate's key (PEM)"
    )
    kafka_ssl_key_password: SecretStr | None = Field(default=None, validation_alias="KAFKA_SSL_KEY_PASSWORD")
    # The URI may carry a user and password (mongodb://user:pass@host/?tls=true), so it is a secret too.
    mongodb_uri: SecretStr = Field(
        default=SecretStr("mongodb://127.0.0.1:27017/"), validation_alias="MONGODB_URI"
    )
    mongodb_tls_ca_file: FilePath | None = Field(
        default=None,
        validation_alias="MONGODB_TLS_CA_FILE",
        description="turns TLS on with this CA file (PEM); the same as tls=true&tlsCAFile= in the URI",
    )
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
    max_document_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=64 * 1024,
        description="A deal's stored document may not grow past this; the event that would is dead-lettered.",
    )
    max_parked_events: int = Field(
        default=100, ge=1, description="Events that may wait for one deal to open; more are dead-lettered."
    )
    retry_budget_seconds: float = Field(
        default=60.0,
        gt=0,
        description=(
            "How long a transient fault is retried in place before the servers are asked: if they answer,"
            " the fault is the record's own and it is dead-lettered; if not, retrying goes on."
        ),
    )
    parked_max_age_seconds: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="How long an event may wait for its deal to open before it is dead-lettered.",
    )
    startup_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        description="How long the producer and consumers may take to start once both servers answer.",
    )

    batch_max_records: int = Field(
        default=500, ge=1, description="Records applied per bulk write and commit."
    )
    batch_wait_ms: int = Field(default=20, ge=0, description="How long a poll waits to fill a batch.")
    cache_max_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=0,
        description="Stored size of the aggregates a stage keeps in memory (their next event needs no read).",
    )
    timer_tick_seconds: float = Field(
        default=5.0,
        gt=0,
        # Deadlines are hours or days away; each look is a query that FerretDB answers by a scan.
        description="How often due deadlines are looked for.",
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

    # Who may read deal data over HTTP (the insights page and API); see shared/http_access.py.
    api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token the deal-data endpoints demand; unset (and no file): they answer 503.",
    )
    api_token_file: FilePath | None = Field(
        default=None,
        description="A file holding that token (a mounted secret), instead of DEALFLOW_API_TOKEN.",
    )
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_ALLOWED_HOSTS,
        description="Host header names (any port) the deal-data endpoints answer; comma-separated; `*`: any.",
    )
    report_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a computed insights report is served again before it is computed afresh.",
    )

    @field_validator("api_token", "api_token_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # A deployment's placeholder (`DEALFLOW_API_TOKEN: ${DEALFLOW_API_TOKEN:-}`) means no token yet.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @model_validator(mode="after")
    def _api_token_is_usable(self) -> Self:
        """One source of the token, and one long enough to be worth checking; read from the file now."""
        if self.api_token is not None and self.api_token_file is not None:
            raise ValueError("set DEALFLOW_API_TOKEN or DEALFLOW_API_TOKEN_FILE, not both")
        token = self.api_token_value()
        if (self.api_token is not None or self.api_token_file is not None) and (
            token is None or len(token) < MIN_API_TOKEN_LENGTH
        ):
            source = "DEALFLOW_API_TOKEN" if self.api_token is not None else "DEALFLOW_API_TOKEN_FILE"
            raise ValueError(f"{source} must hold a token of at least {MIN_API_TOKEN_LENGTH} characters")
        return self

    def api_token_value(self) -> str | None:
        """The API token: DEALFLOW_API_TOKEN, or the content of DEALFLOW_API_TOKEN_FILE without its line
        end; None when neither is set (or the file is empty)."""
        if self.api_token_file is not None:
            token = self.api_token_file.read_text().strip()
        elif self.api_token is not None:
            token = self.api_token.get_secret_value().strip()
        else:
            return None
        return token or None

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> Self:
        """Refuse to start half-configured rather than connect with less security than ops asked for."""
        sasl = self.kafka_security_protocol.startswith("SASL_")
        tls = self.kafka_security_protocol.endswith("SSL")
        if sasl and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs KAFKA_SASL_USERNAME "
                "and KAFKA_SASL_PASSWORD"
            )
        if not sasl and (self.kafka_sasl_username or self.kafka_sasl_password):
            raise ValueError(
                "KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL="
                f"{self.kafka_security_protocol} does not authenticate: use SASL_SSL or SASL_PLAINTEXT"
            )
        tls_files = (self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
        if not tls and any(tls_files):
            raise ValueError(
                "KAFKA_SSL_* files are set but KAFKA_SECURITY_PROTOCOL="
                f"{self.kafka_security_protocol} does not use TLS: use SSL or SASL_SSL"
            )
        return self

    def environment(self) -> dict[str, str]:
        """The variables that point a child process (a service, the CLI) at these servers and namespace."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "MONGODB_URI": self.mongodb_uri.get_secret_value(),
            "DEALFLOW_NAMESPACE": self.namespace,
            "DEALFLOW_PARTITIONS": str(self.partitions),
            # The API token by the variable it came from, the other one emptied: the child reads what
            # this process reads, whatever its own environment holds.
            "DEALFLOW_API_TOKEN": self.api_token.get_secret_value() if self.api_token else "",
            "DEALFLOW_API_TOKEN_FILE": str(self.api_token_file) if self.api_token_file else "",
        }

    def topic(self, name: str) -> str:
        return f"{self.namespace}.{name}"

    def database_name(self, service: str) -> str:
        return f"{self.namespace}_{service}"

    def consumer_group(self, service: str) -> str:
        return f"{self.namespace}.{service}"
