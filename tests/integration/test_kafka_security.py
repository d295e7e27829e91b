"""dealflow's Kafka clients against a broker that demands SASL/SCRAM-SHA-512.

The shared broker has no authentication, so this test runs a second, throw-away Kafka (single-node KRaft,
from the jars `deploy/local/infra.sh` caches) whose client listener is SASL_PLAINTEXT with SCRAM-SHA-512
and one user created at format time. It binds to loopback ports of its own, lives in a tmp dir and is
stopped by the test.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from cli.kafka_io import publish, read_all
from contracts import Topic
from contracts.events import Company, Contact, DealWon, LeadCaptured, Money
from shared.envelope import encode
from shared.kafka import client_options, ensure_topics, make_broker
from shared.settings import Settings
from tests.ports import free_port, listening

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "deploy" / "local" / "infra.sh"
KAFKA_LOG4J = REPO / "deploy" / "local" / "kafka" / "log4j2.properties"
USER, PASSWORD = "alice", "alice-scram-secret"
START_TIMEOUT_SECONDS = 50


def _kafka_libs() -> Path:
    state_dir = Path(os.environ.get("DEALFLOW_STATE_DIR", REPO / ".local"))
    libs = state_dir / "cache" / "kafka-libs"
    if not (libs / ".complete").exists():
        # Downloads the jars into the cache (once); it starts nothing.
        subprocess.run(["bash", str(INFRA), "fetch", "kafka"], check=True, timeout=600)
    return libs


def _cluster_id() -> str:
    # Kafka's cluster ids are a random UUID in URL-safe base64 that must not start with a dash.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass(frozen=True)
class ScramBroker:
    bootstrap_servers: str
    log: Path


@pytest.fixture(scope="module")
def scram_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScramBroker]:
    home = tmp_path_factory.mktemp("scram-kafka")
    client_port, internal_port, controller_port = free_port(), free_port(), free_port()
    config = home / "server.properties"
    config.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
                # Clients must authenticate; the broker talks to itself on a loopback-only plain listener.
                f"listeners=SASL_PLAINTEXT://127.0.0.1:{client_port},INTERNAL://127.0.0.1:{internal_port},"
                f"CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{client_port},"
                f"INTERNAL://127.0.0.1:{internal_port},CONTROLLER://127.0.0.1:{controller_port}",
                "listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,INTERNAL:PLAINTEXT,"
                "CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=INTERNAL",
                "controller.listener.names=CONTROLLER",
                "sasl.enabled.mechanisms=SCRAM-SHA-512",
                "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                f"log.dirs={home / 'data'}",
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
            ]
        )
        + "\n"
    )
    java = ["java", f"-Dlog4j2.configurationFile={KAFKA_LOG4J}", "-cp", f"{_kafka_libs()}/*"]
    log = home / "kafka.log"
    with log.open("ab") as output:
        subprocess.run(
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _cluster_id(),
                "-c",
                str(config),
                "--standalone",
                "--add-scram",
                f"SCRAM-SHA-512=[name={USER},password={PASSWORD}]",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=60,
        )
        broker = subprocess.Popen(
            [*java[:1], "-Xms128m", "-Xmx256m", "-XX:+UseSerialGC", *java[1:], "kafka.Kafka", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_port(client_port, broker, log)
        yield ScramBroker(f"127.0.0.1:{client_port}", log)
    finally:
        broker.send_signal(signal.SIGTERM)
        try:
            broker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()


def _wait_for_port(port: int, broker: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if broker.poll() is not None:
            pytest.fail(f"the SCRAM broker exited during startup:\n{log.read_text()[-3000:]}")
        if listening(port):
            return
        time.sleep(0.3)
    pytest.fail(f"the SCRAM broker did not listen in {START_TIMEOUT_SECONDS} s:\n{log.read_text()[-3000:]}")


def scram_settings(broker: ScramBroker, password: str) -> Settings:
    return Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=USER,
        kafka_sasl_password=password,
        namespace=f"t{uuid.uuid4().hex[:12]}",
        partitions=1,
    )


@pytest.fixture
async def authenticated(scram_broker: ScramBroker) -> Settings:
    settings = scram_settings(scram_broker, PASSWORD)
    # The listener opens before the broker can serve requests; the admin client waits for that.
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            await ensure_topics(settings, [settings.topic(Topic.LEADS)])
            break
        except KafkaError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.5)
    return settings


async def test_every_dealflow_client_authenticates_with_scram(authenticated: Settings) -> None:
    settings = authenticated
    lead = LeadCaptured(lead_id="lead-scram", email="scram@example.com")
    cli_record = encode(lead, topic=settings.topic(Topic.LEADS), source="/test", event_id="via-cli")
    service_record = encode(lead, topic=settings.topic(Topic.LEADS), source="/test", event_id="via-broker")

    # The CLI's producer and the services' FastStream broker both publish through the SCRAM listener...
    assert await publish(settings, [cli_record]) == 1
    broker = make_broker(settings, client_id="dealflow-scram-test")
    await broker.start()
    try:
        await broker.publish(
            service_record.value,
            service_record.topic,
            key=service_record.key,
            headers=service_record.headers,
        )
    finally:
        await broker.stop()

    # ...and the CLI's consumer and admin client read both records back.
    seen = await read_all(settings, [settings.topic(Topic.LEADS)])
    assert sorted(event.id for event in seen) == ["via-broker", "via-cli"]
    assert {event.key for event in seen} == {"lead-scram"}


async def test_a_wrong_password_is_refused_by_the_broker(
    scram_broker: ScramBroker, authenticated: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = scram_settings(scram_broker, "not-the-password")
    producer = AIOKafkaProducer(**client_options(wrong))

    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()
    broker = make_broker(wrong, client_id="dealflow-scram-test")
    with pytest.raises(KafkaConnectionError):
        await broker.start()
    await broker.stop()

    # aiokafka gives up with a generic connection error; the reason is in its log, and no password is.
    assert "SaslAuthenticationFailed" in caplog.text
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in caplog.text
    assert "not-the-password" not in caplog.text


async def test_the_integrators_example_consumer_reads_with_the_same_variables(
    scram_broker: ScramBroker, authenticated: Settings
) -> None:
    settings = authenticated
    won = DealWon(
        deal_id="deal-scram",
        customer=Company(name="Scram Corp"),
        contact=Contact(email="buyer@scram.example"),
        owner="anna.schmidt",
        lines=[],
        amount=Money(amount_minor=120_000, currency="EUR"),
        won_at=datetime(2026, 1, 5, tzinfo=UTC),
        stage_history=[],
    )
    await publish(settings, [encode(won, topic=settings.topic(Topic.DEALS_WON), source="/dealflow/proposal")])
    environment = os.environ | {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": USER,
        "KAFKA_SASL_PASSWORD": PASSWORD,
    }

    example = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            str(REPO / "contracts" / "examples" / "deal_won_consumer.py"),
            *("--bootstrap", scram_broker.bootstrap_servers, "--topic", settings.topic(Topic.DEALS_WON)),
            *("--group", f"{settings.namespace}.billing", "--limit", "1"),
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert "won deal-scram: Scram Corp pays 1200.00 EUR" in example.stdout
