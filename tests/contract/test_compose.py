"""docker-compose.yml runs every service, keeps `docker compose up --scale <stage>=N` working and checks
replicas' health; the image's DEALFLOW_SERVICE switch knows every service."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.topics import SERVICES, STAGE_SERVICES
from services.insights.service import definition as insights_definition
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_runs_its_module_and_reports_readiness(service: str) -> None:
    definition = compose_services()[service]
    # A fixed container name would make a second replica fail to start.
    assert "container_name" not in definition
    assert definition["command"] == ["python", "-m", f"services.{service}"]
    port = str(definition["environment"]["DEALFLOW_HTTP_PORT"])
    assert definition["environment"]["DEALFLOW_HTTP_HOST"] == "0.0.0.0"
    assert definition["expose"] == [port]
    probe = " ".join(definition["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/readyz" in probe


@pytest.mark.parametrize("service", STAGE_SERVICES)
def test_stage_service_can_be_scaled(service: str) -> None:
    # A fixed host port would make the second replica fail to start.
    assert "ports" not in compose_services()[service]


def test_insights_publishes_its_page_on_its_own_port_on_the_host_only() -> None:
    insights = compose_services()["insights"]
    container_port = str(insights["environment"]["DEALFLOW_HTTP_PORT"])

    assert insights["ports"] == [f"127.0.0.1:{insights_definition().http_port}:{container_port}"]


def test_the_demo_waits_for_every_service_and_has_no_health_endpoint_to_check() -> None:
    demo = compose_services()["demo"]
    assert demo["healthcheck"] == {"disable": True}
    assert set(SERVICES) <= set(demo["depends_on"])


def image_command() -> list[str]:
    [command] = re.findall(r"^CMD (\[.*\])$", DOCKERFILE.read_text(), re.M)
    parsed: list[str] = json.loads(command)
    return parsed


def test_the_image_runs_exactly_the_services_named_by_dealflow_service() -> None:
    [switch] = re.findall(r"case .* in ([a-z|]+)\)", image_command()[2])
    assert set(switch.split("|")) == set(SERVICES)


def test_the_image_refuses_an_unknown_service_and_names_every_known_one() -> None:
    sh = shutil.which("sh")
    assert sh is not None
    shell, flag, script = image_command()
    assert (shell, flag) == ("sh", "-c")
    refused = subprocess.run(
        [sh, "-c", script], env={"DEALFLOW_SERVICE": "billing"}, capture_output=True, text=True, timeout=10
    )
    assert refused.returncode == 64
    assert all(service in refused.stderr for service in SERVICES), refused.stderr


def test_only_insights_gets_the_api_token_from_the_environment_and_answers_to_its_service_name() -> None:
    services = compose_services()
    # A placeholder, empty unless DEALFLOW_API_TOKEN is set in the shell or .env: no secret in the file.
    assert services["insights"]["environment"]["DEALFLOW_API_TOKEN"] == "${DEALFLOW_API_TOKEN:-}"
    for service in STAGE_SERVICES:
        assert "DEALFLOW_API_TOKEN" not in services[service]["environment"], service
    # The rest of the shared environment still reaches insights.
    assert services["insights"]["environment"]["DEALFLOW_HTTP_PORT"] == 8080
    # Its Host allow-list takes the compose service name and the host port's loopback, by default.
    assert {"insights", "127.0.0.1", "localhost"} <= set(Settings.model_fields["allowed_hosts"].default)
