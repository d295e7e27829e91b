"""Every dealflow service as its own process on the real servers, each on a free HTTP port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from contracts.topics import SERVICES
from shared.settings import Settings
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def service_processes(
    settings: Settings, log_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[dict[str, int]]:
    """Run the five services until the block ends; yield each one's HTTP port.

    `extra_env` adds variables (e.g. DEALFLOW_PLAYBOOK). Leaving the block normally also checks that
    none of them died meanwhile.
    """
    env = os.environ | settings.environment() | (extra_env or {})
    ports = {service: free_port() for service in SERVICES}
    processes = {
        service: subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            cwd=REPO,
            env=env | {"DEALFLOW_HTTP_PORT": str(ports[service])},
            stdout=(log_dir / f"{service}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for service in SERVICES
    }
    try:
        yield ports
        for service, process in processes.items():
            assert process.poll() is None, (
                f"{service} died: {(log_dir / f'{service}.log').read_text()[-3000:]}"
            )
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            process.wait(timeout=30)
