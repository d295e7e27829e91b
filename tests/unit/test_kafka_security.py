"""Kafka authentication settings become the options of FastStream's broker and of aiokafka's clients."""

from __future__ import annotations

import ssl

import pytest

from shared.kafka import kafka_client_options, make_broker
from shared.settings import Settings


def test_without_security_settings_the_clients_connect_in_plaintext() -> None:
    assert kafka_client_options(Settings()) == {}


def test_sasl_over_tls_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "dealflow")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret")
    settings = Settings()

    options = kafka_client_options(settings)

    assert {key: value for key, value in options.items() if key != "ssl_context"} == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "dealflow",
        "sasl_plain_password": "s3cret",
    }
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert "s3cret" not in repr(settings)
    make_broker(settings, client_id="test")  # FastStream accepts the same security object


def test_sasl_plaintext_with_the_plain_mechanism() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="dealflow",
        kafka_sasl_password="s3cret",
    )

    options = kafka_client_options(settings)

    assert (options["security_protocol"], options["sasl_mechanism"], options["ssl_context"]) == (
        "SASL_PLAINTEXT",
        "PLAIN",
        None,
    )


def test_tls_without_sasl() -> None:
    options = kafka_client_options(Settings(kafka_security_protocol="SSL"))

    assert options["security_protocol"] == "SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_sasl_without_credentials_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"):
        kafka_client_options(Settings(kafka_security_protocol="SASL_SSL"))
