"""docker-compose.yml keeps `docker compose up --scale <stage>=N` working and checks replicas' health."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.topics import STAGE_SERVICES

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


@pytest.mark.parametrize("service", STAGE_SERVICES)
def test_stage_service_can_be_scaled_and_reports_readiness(service: str) -> None:
    definition = compose_services()[service]
    # A fixed container name or host port would make the second replica fail to start.
    assert "container_name" not in definition
    assert "ports" not in definition
    assert definition["command"] == ["python", "-m", f"services.{service}"]
    port = str(definition["environment"]["DEALFLOW_HTTP_PORT"])
    assert definition["environment"]["DEALFLOW_HTTP_HOST"] == "0.0.0.0"
    assert definition["expose"] == [port]
    probe = " ".join(definition["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/readyz" in probe


def test_the_demo_has_no_health_endpoint_to_check() -> None:
    assert compose_services()["demo"]["healthcheck"] == {"disable": True}
