"""A service started before its servers waits for them, and still stops at once when asked to."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.processes import REPO
from tests.ports import free_port

pytestmark = pytest.mark.e2e


def test_a_service_waiting_for_its_servers_stops_promptly_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "onboarding.log"
    nobody_listens = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "services.onboarding"],
        cwd=REPO,
        env={
            "PATH": "/usr/bin:/bin",
            "KAFKA_BOOTSTRAP_SERVERS": nobody_listens,
            "DEALFLOW_HTTP_PORT": "0",
            "DEALFLOW_NAMESPACE": "startup-test",
        },
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while "transient_fault" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "transient_fault" in log.read_text(), log.read_text()[-2000:]
        time.sleep(2)
        assert process.poll() is None, "it must keep waiting for its servers, not give up"

        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)  # before the fix it waited for the servers, ignoring the signal
        assert "Application startup failed" in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
