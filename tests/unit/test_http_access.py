"""The API token and the Host allow-list of the deal-data endpoints (shared/http_access.py), the settings
they come from, and the insights report cache; no servers."""

from __future__ import annotations

import asyncio
import hmac
import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from pydantic import SecretStr, ValidationError

from services.insights.api import ReportCache, TimelineSnapshot
from shared import http_access
from shared.http_access import ApiAccess, allowed_host_names, bearer_token, host_name, tokens_equal
from shared.settings import DEFAULT_ALLOWED_HOSTS, Settings

TOKEN = "s3cret-token-of-sufficient-length"


def test_tokens_are_compared_with_compare_digest_over_digests_of_one_length(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    compare_digest = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return compare_digest(a, b)

    monkeypatch.setattr(http_access.hmac, "compare_digest", spy)

    assert tokens_equal(TOKEN, TOKEN)
    assert not tokens_equal(TOKEN[:-1], TOKEN)  # a prefix
    assert not tokens_equal(TOKEN + "x", TOKEN)
    assert not tokens_equal("", TOKEN)
    assert not tokens_equal("ünïcödé", TOKEN)  # no TypeError, as compare_digest gives for non-ASCII str
    assert not tokens_equal(TOKEN.upper(), TOKEN)
    # Every comparison went through compare_digest, and always over 32 bytes: neither the content nor
    # the length of what was presented changes the work done.
    assert len(compared) == 6
    assert {len(side) for pair in compared for side in pair} == {32}


def test_an_access_without_a_token_lets_nothing_through() -> None:
    closed = ApiAccess(token=None, allowed_hosts=frozenset({"localhost"}))
    assert not closed.token_matches("")
    assert not closed.token_matches("None")
    assert not closed.session_matches("")


def test_the_session_cookie_is_derived_from_the_token_and_is_not_the_token() -> None:
    access = ApiAccess(token=TOKEN, allowed_hosts=frozenset())
    session = access.session_value()
    assert session != TOKEN
    assert TOKEN not in session
    assert access.session_matches(session)
    assert not access.session_matches(TOKEN)
    assert ApiAccess(token=TOKEN + "2", allowed_hosts=frozenset()).session_value() != session


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:8085", "127.0.0.1"),
        ("localhost", "localhost"),
        ("LocalHost:80", "localhost"),
        ("localhost.:8085", "localhost"),
        ("[::1]:8085", "[::1]"),
        ("[::1]", "[::1]"),
        ("dealflow-insights.dealflow.svc:8085", "dealflow-insights.dealflow.svc"),
        ("evil.example:8085", "evil.example"),
        ("127.0.0.1.evil.example", "127.0.0.1.evil.example"),
    ],
)
def test_a_host_header_is_named_without_its_port(header: str, name: str) -> None:
    assert host_name(header) == name


def test_the_default_allow_list_takes_loopback_on_any_port_and_the_deployments_names_only() -> None:
    access = ApiAccess(token=TOKEN, allowed_hosts=allowed_host_names(DEFAULT_ALLOWED_HOSTS))
    for allowed in ("127.0.0.1:8085", "localhost:1", "[::1]:8085", "insights:8080", "dealflow-insights:8085"):
        assert access.host_allowed(allowed), allowed
    for refused in (None, "", "evil.example", "127.0.0.2", "localhost.evil.example", "[::2]", "insight"):
        assert not access.host_allowed(refused), refused
    anywhere = ApiAccess(token=TOKEN, allowed_hosts=allowed_host_names(["*"]))
    assert anywhere.host_allowed("evil.example")


@pytest.mark.parametrize(
    ("authorization", "token"),
    [
        (f"Bearer {TOKEN}", TOKEN),
        (f"bearer   {TOKEN} ", TOKEN),
        (f"Basic {TOKEN}", None),
        ("Bearer", None),
        ("Bearer ", None),
        (None, None),
    ],
)
def test_the_bearer_token_is_read_from_the_authorization_header(
    authorization: str | None, token: str | None
) -> None:
    assert bearer_token(authorization) == token


def settings_from(environment: dict[str, str]) -> Settings:
    with mock.patch.dict(os.environ, environment, clear=True):
        return Settings()


def test_the_token_is_read_from_a_mounted_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "api-token"
    secret.write_text(TOKEN + "\n")  # as `kubectl create secret --from-file` or an editor leaves it

    settings = settings_from({"DEALFLOW_API_TOKEN_FILE": str(secret)})

    assert settings.api_token_value() == TOKEN
    assert ApiAccess.from_settings(settings).token_matches(TOKEN)
    assert TOKEN not in repr(settings)
    # A child process (the services `make run` starts, a test's) is pointed at the same file.
    assert settings.environment()["DEALFLOW_API_TOKEN_FILE"] == str(secret)
    assert settings.environment()["DEALFLOW_API_TOKEN"] == ""


def test_the_token_from_the_environment_is_a_secret() -> None:
    settings = settings_from({"DEALFLOW_API_TOKEN": TOKEN})
    assert settings.api_token_value() == TOKEN
    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings.model_dump())
    assert settings.environment()["DEALFLOW_API_TOKEN"] == TOKEN
    assert settings.environment()["DEALFLOW_API_TOKEN_FILE"] == ""
    assert settings_from(settings.environment()).api_token_value() == TOKEN  # what a child reads


def test_no_token_or_an_empty_placeholder_means_none(tmp_path: Path) -> None:
    assert settings_from({}).api_token_value() is None
    # docker-compose.yml's `DEALFLOW_API_TOKEN: ${DEALFLOW_API_TOKEN:-}` when the variable is not set
    assert settings_from({"DEALFLOW_API_TOKEN": "", "DEALFLOW_API_TOKEN_FILE": " "}).api_token_value() is None
    assert ApiAccess.from_settings(settings_from({})).token is None


def test_a_token_setting_that_cannot_be_used_stops_the_process_without_showing_it(tmp_path: Path) -> None:
    secret = tmp_path / "api-token"
    secret.write_text(TOKEN)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for environment, reason in (
        ({"DEALFLOW_API_TOKEN": TOKEN, "DEALFLOW_API_TOKEN_FILE": str(secret)}, "not both"),
        ({"DEALFLOW_API_TOKEN": "short-token"}, "at least 16 characters"),
        ({"DEALFLOW_API_TOKEN_FILE": str(empty)}, "at least 16 characters"),
        ({"DEALFLOW_API_TOKEN_FILE": str(tmp_path / "missing")}, "api_token_file"),
    ):
        with pytest.raises(ValidationError, match=reason) as refused:
            settings_from(environment)
        assert TOKEN not in str(refused.value)
        assert "short-token" not in str(refused.value)


def test_allowed_hosts_are_a_comma_separated_list() -> None:
    assert settings_from({}).allowed_hosts == DEFAULT_ALLOWED_HOSTS
    listed = settings_from({"DEALFLOW_ALLOWED_HOSTS": "pipeline.example.com, localhost:8085,,"})
    assert listed.allowed_hosts == ("pipeline.example.com", "localhost:8085")
    access = ApiAccess.from_settings(listed.model_copy(update={"api_token": SecretStr(TOKEN)}))
    assert access.host_allowed("pipeline.example.com:443")
    assert access.host_allowed("localhost:9999")
    assert not access.host_allowed("127.0.0.1:8085")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_report_cache_computes_once_per_period_and_age_and_keeps_a_few_periods() -> None:
    computed: list[str | None] = []
    release = asyncio.Event()

    async def compute(period: str | None) -> bytes:
        computed.append(period)
        await release.wait()
        return f"{period}#{len(computed)}".encode()

    clock = Clock()
    cache = ReportCache(compute, max_age_seconds=5, kept=2, monotonic=clock)
    waiting = [asyncio.create_task(cache.get("all")) for _ in range(5)]
    await asyncio.sleep(0.01)
    release.set()
    assert {await task for task in waiting} == {b"all#1"}  # five requests at once, one computation
    clock.now += 4.9
    assert await cache.get("all") == b"all#1"
    clock.now += 0.1
    assert await cache.get("all") == b"all#2"  # past its age: computed afresh
    assert await cache.get("2026-10") == b"2026-10#3"
    assert await cache.get(None) == b"None#4"  # a third period: the least recently used one goes
    assert await cache.get("2026-10") == b"2026-10#3"
    assert await cache.get("all") == b"all#5"
    assert cache.computations == len(computed) == 5


async def test_the_timelines_are_read_once_for_every_answer_computed_within_their_age() -> None:
    reads: list[int] = []
    release = asyncio.Event()

    async def load() -> list[Any]:
        reads.append(len(reads) + 1)
        await release.wait()
        return [f"read {len(reads)}"]

    clock = Clock()
    snapshot = TimelineSnapshot(load, max_age_seconds=5, monotonic=clock)
    waiting = [asyncio.create_task(snapshot.get()) for _ in range(4)]  # a page's four requests
    await asyncio.sleep(0.01)
    release.set()
    assert [await task for task in waiting] == [["read 1"]] * 4
    clock.now += 4.9
    assert await snapshot.get() == ["read 1"]
    clock.now += 0.1
    assert await snapshot.get() == ["read 2"]  # past its age: read afresh
    assert snapshot.reads == len(reads) == 2
