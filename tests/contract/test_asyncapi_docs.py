"""`dealflow docs`: the AsyncAPI document as a self-contained HTML page, written to a file or served."""

from __future__ import annotations

import copy
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from html import escape
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from contracts.asyncapi import ASYNCAPI_FILE, document
from contracts.asyncapi_html import render_html
from contracts.events import EVENT_TYPES
from contracts.flows import PARTIES

DEALFLOW = Path(sys.executable).with_name("dealflow")


def test_docs_output_writes_a_page_with_every_channel_message_and_party(tmp_path: Path) -> None:
    page_file = tmp_path / "asyncapi.html"

    result = CliRunner().invoke(app, ["docs", "--output", str(page_file)])

    assert result.exit_code == 0, result.output
    page = page_file.read_text()
    asyncapi = document()
    missing_channels = [
        channel["address"]
        for channel in asyncapi["channels"].values()
        if escape(channel["address"]) not in page
    ]
    missing_messages = [event_type for event_type in EVENT_TYPES if event_type not in page]
    missing_parties = [party.name for party in PARTIES if party.name not in page]
    assert (missing_channels, missing_messages, missing_parties) == ([], [], [])
    assert "sent by proposal" in page
    assert "received by onboarding" in page
    assert "dlq_error_code" in page


def test_the_page_loads_nothing_from_elsewhere() -> None:
    page = render_html(document())

    assert "<script" not in page
    assert "<link" not in page
    assert " src=" not in page
    assert "@import" not in page


def test_text_from_the_document_is_escaped() -> None:
    asyncapi = copy.deepcopy(document())
    asyncapi["info"]["description"] = "<script>alert(1)</script> and `code`"

    page = render_html(asyncapi)

    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; and <code>code</code>" in page


@pytest.fixture
def docs_server() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`dealflow docs` on a free port of 127.0.0.1, stopped after the test."""
    process = subprocess.Popen(
        [str(DEALFLOW), "docs", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    first_line = process.stdout.readline()
    assert first_line.startswith("serving http://127.0.0.1:"), first_line + process.stderr.read()
    yield process, first_line.split()[1]
    process.terminate()
    process.wait(timeout=10)


def test_docs_serves_the_page_and_the_yaml_on_localhost(
    docs_server: tuple[subprocess.Popen[str], str],
) -> None:
    _, address = docs_server

    with urllib.request.urlopen(address, timeout=10) as response:
        page = response.read().decode()
        page_type = response.headers["Content-Type"]
    with urllib.request.urlopen(address + "asyncapi.yaml", timeout=10) as response:
        yaml_text = response.read().decode()
    with pytest.raises(urllib.error.HTTPError) as not_found:
        urllib.request.urlopen(address + "nothing-here", timeout=10)

    assert page_type.startswith("text/html")
    assert page == render_html(document())
    assert yaml_text == ASYNCAPI_FILE.read_text()
    assert not_found.value.code == 404
