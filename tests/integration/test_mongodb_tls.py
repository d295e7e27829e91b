"""dealflow's database client over TLS, against a throw-away FerretDB that only speaks TLS.

The shared FerretDB has no TLS, so this test starts its own (the binary `deploy/local/infra.sh` caches)
on a loopback port, with a certificate for 127.0.0.1 signed by a CA made for the test, and stops it.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from shared.mongo import make_client
from shared.settings import Settings
from tests.ports import free_port, listening

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "deploy" / "local" / "infra.sh"
START_TIMEOUT_SECONDS = 30


def _ferretdb_binary() -> Path:
    state_dir = Path(os.environ.get("DEALFLOW_STATE_DIR", REPO / ".local"))
    binary = state_dir / "cache" / "bin" / "ferretdb"
    if not binary.exists():
        # Builds the binary into the cache (once); it starts nothing.
        subprocess.run(["bash", str(INFRA), "fetch", "ferretdb"], check=True, timeout=900)
    return binary


def _openssl(*arguments: str) -> None:
    subprocess.run(["openssl", *arguments], check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class TlsDatabase:
    port: int
    ca_file: Path


@pytest.fixture(scope="module")
def tls_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsDatabase]:
    home = tmp_path_factory.mktemp("tls-ferretdb")
    ca_key, ca_file = home / "ca.key", home / "ca.pem"
    key, request, certificate = home / "server.key", home / "server.csr", home / "server.pem"
    _openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=dealflow test CA"),
        *("-keyout", str(ca_key), "-out", str(ca_file)),
    )
    _openssl(
        *("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"),
        *("-keyout", str(key), "-out", str(request)),
    )
    extensions = home / "server.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        *("x509", "-req", "-in", str(request), "-CA", str(ca_file), "-CAkey", str(ca_key)),
        *("-CAcreateserial", "-days", "1", "-extfile", str(extensions), "-out", str(certificate)),
    )
    port = free_port()
    (home / "data").mkdir()
    log = home / "ferretdb.log"
    with log.open("ab") as output:
        server = subprocess.Popen(
            [
                str(_ferretdb_binary()),
                "--handler=sqlite",
                f"--sqlite-url=file:{home / 'data'}/",
                # The plain listener is required by FerretDB; it gets a port of its own nobody uses.
                f"--listen-addr=127.0.0.1:{free_port()}",
                f"--listen-tls=127.0.0.1:{port}",
                f"--listen-tls-cert-file={certificate}",
                f"--listen-tls-key-file={key}",
                f"--state-dir={home}",
                "--telemetry=disable",
                "--debug-addr=-",
                "--log-level=warn",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not listening(port):
            if server.poll() is not None or time.monotonic() >= deadline:
                pytest.fail(f"the TLS FerretDB did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield TlsDatabase(port, ca_file)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def _round_trip(settings: Settings) -> object:
    client = make_client(settings, app_name="dealflow-tls-test")
    try:
        collection = client[f"t{uuid.uuid4().hex[:12]}"]["probe"]
        await collection.insert_one({"_id": "tls", "encrypted": True})
        found = await collection.find_one({"_id": "tls"})
        return None if found is None else found["encrypted"]
    finally:
        await client.close()


@pytest.mark.parametrize("where", ["MONGODB_TLS_CA_FILE", "URI"])
async def test_the_client_talks_tls_with_a_trusted_ca(tls_database: TlsDatabase, where: str) -> None:
    address = f"mongodb://127.0.0.1:{tls_database.port}/"
    settings = (
        Settings(mongodb_uri=address, mongodb_tls_ca_file=tls_database.ca_file)
        if where == "MONGODB_TLS_CA_FILE"
        else Settings(mongodb_uri=f"{address}?tls=true&tlsCAFile={tls_database.ca_file}")
    )

    assert await _round_trip(settings) is True


async def test_a_server_certificate_from_an_untrusted_ca_is_refused(tls_database: TlsDatabase) -> None:
    # TLS on, but only the system's CAs trusted: the test CA's certificate must not be accepted.
    settings = Settings(mongodb_uri=f"mongodb://127.0.0.1:{tls_database.port}/?tls=true")

    with pytest.raises(ServerSelectionTimeoutError, match="CERTIFICATE_VERIFY_FAILED"):
        await _round_trip(settings)
