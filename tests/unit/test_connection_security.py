"""Kafka and MongoDB connection security from the environment, mapped to each client's options."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from faststream.security import SASLPlaintext, SASLScram256, SASLScram512
from pydantic import ValidationError

from shared.kafka import client_options, kafka_security
from shared.settings import Settings


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No security variable from the developer's shell may leak into these tests."""
    for name in (
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SSL_CAFILE",
        "KAFKA_SSL_CERTFILE",
        "KAFKA_SSL_KEYFILE",
        "KAFKA_SSL_KEY_PASSWORD",
        "MONGODB_URI",
        "MONGODB_TLS_CA_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def client_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its unencrypted key, as an mTLS client would be given them."""
    directory = tmp_path_factory.mktemp("tls")
    certificate, key = directory / "client.pem", directory / "client.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=dealflow", "-keyout", str(key), "-out", str(certificate)),
        ],
        check=True,
        capture_output=True,
    )
    return certificate, key


def test_by_default_clients_connect_in_plaintext(clean_environment: pytest.MonkeyPatch) -> None:
    settings = Settings()

    assert kafka_security(settings) is None
    assert client_options(settings) == {"bootstrap_servers": "127.0.0.1:9092"}


def test_sasl_ssl_with_scram_comes_from_the_environment(
    clean_environment: pytest.MonkeyPatch, client_certificate: tuple[Path, Path]
) -> None:
    certificate, key = client_certificate
    clean_environment.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker1:9096,broker2:9096")
    clean_environment.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    clean_environment.setenv("KAFKA_SASL_USERNAME", "dealflow")
    clean_environment.setenv("KAFKA_SASL_PASSWORD", "s3cret-pa55")
    clean_environment.setenv("KAFKA_SSL_CAFILE", str(certificate))
    clean_environment.setenv("KAFKA_SSL_CERTFILE", str(certificate))
    clean_environment.setenv("KAFKA_SSL_KEYFILE", str(key))

    options = client_options(Settings())

    context = options.pop("ssl_context")
    assert options == {
        "bootstrap_servers": "broker1:9096,broker2:9096",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "dealflow",
        "sasl_plain_password": "s3cret-pa55",
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # the CA file was loaded


@pytest.mark.parametrize(
    ("mechanism", "security_type"),
    [("SCRAM-SHA-512", SASLScram512), ("SCRAM-SHA-256", SASLScram256), ("PLAIN", SASLPlaintext)],
)
def test_the_broker_and_the_raw_clients_get_the_same_sasl_mechanism(
    clean_environment: pytest.MonkeyPatch, mechanism: str, security_type: type[object]
) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="dealflow",
        kafka_sasl_password="pw",
    )

    security = kafka_security(settings)

    assert isinstance(security, security_type)
    assert not security.use_ssl
    assert client_options(settings)["sasl_mechanism"] == mechanism
    assert client_options(settings)["security_protocol"] == "SASL_PLAINTEXT"


def test_ssl_alone_encrypts_without_sasl(
    clean_environment: pytest.MonkeyPatch, client_certificate: tuple[Path, Path]
) -> None:
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=client_certificate[0])

    options = client_options(settings)

    assert options["security_protocol"] == "SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in options


@pytest.mark.parametrize(
    ("environment", "complaint"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"}, "needs KAFKA_SASL_USERNAME"),
        ({"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, "does not authenticate"),
        ({"KAFKA_SSL_CAFILE": __file__}, "does not use TLS"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/no/such/ca.pem"}, "KAFKA_SSL_CAFILE"),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
    ],
)
def test_incomplete_security_settings_stop_the_process(
    clean_environment: pytest.MonkeyPatch, environment: dict[str, str], complaint: str
) -> None:
    clean_environment.setenv("MONGODB_URI", "mongodb://dealflow:mongo-pa55@db1/")
    for name, value in environment.items():
        clean_environment.setenv(name, value)

    with pytest.raises(ValidationError, match=complaint) as refused:
        Settings()

    # The error is printed when the process stops: it must not show the secrets it was given.
    assert "mongo-pa55" not in str(refused.value)
    assert "KAFKA_SASL_PASSWORD': 'p'" not in str(refused.value)


def test_secrets_never_show_when_settings_are_printed(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    clean_environment.setenv("KAFKA_SASL_USERNAME", "dealflow")
    clean_environment.setenv("KAFKA_SASL_PASSWORD", "kafka-pa55")
    clean_environment.setenv("MONGODB_URI", "mongodb://dealflow:mongo-pa55@db1,db2/?replicaSet=rs0")

    settings = Settings()

    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert "kafka-pa55" not in shown
        assert "mongo-pa55" not in shown
    assert settings.mongodb_uri.get_secret_value().startswith("mongodb://dealflow:mongo-pa55@")
