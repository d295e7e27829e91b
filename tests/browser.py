"""Headless Chromium (Debian's chromium package) for the tests of the insights page.

The page is loaded with `--dump-dom` under a virtual-time budget: Chromium runs the page's scripts, lets
its requests to the report API finish, and prints the DOM as the page left it.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# Elements without an end tag: they must not count as nesting.
VOID_ELEMENTS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


def chromium() -> str:
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    raise AssertionError("no Chromium: install Debian's chromium package (apt-get install chromium)")


async def _headless(url: str, *options: str, budget_ms: int, timeout: float) -> bytes:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        process = await asyncio.create_subprocess_exec(
            chromium(),
            "--headless=new",
            "--no-sandbox",  # the tests run as root; the sandbox refuses root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            *options,
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    return stdout


async def rendered_dom(url: str, *, budget_ms: int = 6000, timeout: float = 90) -> str:
    return (await _headless(url, "--dump-dom", budget_ms=budget_ms, timeout=timeout)).decode()


async def screenshot(
    url: str, path: Path, *, width: int = 1400, height: int = 2400, budget_ms: int = 6000, timeout: float = 90
) -> Path:
    """A PNG of the page as a person at that window size sees it, once its scripts have run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = (f"--screenshot={path}", f"--window-size={width},{height}")
    await _headless(url, *options, budget_ms=budget_ms, timeout=timeout)
    return path


@dataclass
class PageView:
    """What the page shows: the board's columns with their deal ids, and the texts of elements by id."""

    columns: dict[str, list[str]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    month_totals: dict[str, str] = field(default_factory=dict)
    loaded: bool = False


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.view = PageView()
        self._stage: str | None = None
        self._stage_depth = 0
        self._depth = 0
        self._capturing: tuple[dict[str, str], str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "body" and attributes.get("data-loaded") == "true":
            self.view.loaded = True
        if tag in VOID_ELEMENTS:
            return
        self._depth += 1
        if "data-stage" in attributes:
            self._stage, self._stage_depth = attributes["data-stage"], self._depth
            self.view.columns[self._stage] = []
        if self._stage is not None and "data-deal-id" in attributes:
            self.view.columns[self._stage].append(attributes["data-deal-id"])
        if "id" in attributes:
            self._capturing = (self.view.texts, attributes["id"])
            self.view.texts[attributes["id"]] = ""
        if "data-month" in attributes:
            self._capturing = (self.view.month_totals, attributes["data-month"])
            self.view.month_totals[attributes["data-month"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_ELEMENTS:
            return
        if self._stage is not None and self._depth == self._stage_depth:
            self._stage = None
        self._depth -= 1
        self._capturing = None

    def handle_data(self, data: str) -> None:
        if self._capturing is not None:
            into, key = self._capturing
            into[key] += data.strip()


def page_view(dom: str) -> PageView:
    parser = _PageParser()
    parser.feed(dom)
    return parser.view
