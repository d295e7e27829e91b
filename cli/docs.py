"""`dealflow docs`: the AsyncAPI document as an HTML page on 127.0.0.1, and the YAML next to it."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from contracts.asyncapi import document, render
from contracts.asyncapi_html import asyncapi_page

HOST = "127.0.0.1"


def pages() -> dict[str, tuple[bytes, str]]:
    """Path -> body and content type."""
    html = (asyncapi_page().encode(), "text/html; charset=utf-8")
    return {
        "/": html,
        "/asyncapi": html,
        "/asyncapi.yaml": (render(document()).encode(), "application/yaml; charset=utf-8"),
    }


def serve(port: int, on_ready: Callable[[str], None]) -> None:
    """Serve the pages until interrupted; `on_ready` gets the address (port 0 picks a free port)."""
    routes = pages()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = routes.get(self.path.split("?", 1)[0])
            if found is None:
                self.send_error(HTTPStatus.NOT_FOUND, "try / or /asyncapi.yaml")
                return
            body, content_type = found
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with ThreadingHTTPServer((HOST, port), Handler) as server:
        on_ready(f"http://{HOST}:{server.server_address[1]}/")
        server.serve_forever()
