"""Who may read deal data over HTTP: a bearer token, and a Host allow-list against DNS rebinding.

`protected(app, access, pages=...)` wraps an ASGI app that shows deal data (the insights page and its
JSON API). Every request, in this order:

1. its Host header (port ignored) must be in `DEALFLOW_ALLOWED_HOSTS`, else 421: a web page on another
   origin cannot read the API by pointing its own DNS name at 127.0.0.1 (DNS rebinding);
2. a token must be configured (`DEALFLOW_API_TOKEN` or `DEALFLOW_API_TOKEN_FILE`), else 503: without
   one deal data is never served, rather than served to everyone;
3. it must carry the token as `Authorization: Bearer <token>`, or the page's session cookie, else 401.

A browser cannot add a header when it opens a page, so a page path also takes the token once as
`?token=`: the answer is a redirect to the same URL without it, setting an HttpOnly, SameSite=Strict
cookie; the page's own requests then carry the cookie. The cookie holds an HMAC of the token, not the
token itself. Tokens are compared in constant time (`hmac.compare_digest` over SHA-256 digests, so
neither their content nor their length shows in the time an answer takes).

Health, readiness, metrics and the event docs are not wrapped: probes and scrapers need no token.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.datastructures import Headers, MutableHeaders, QueryParams
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.settings import Settings

TOKEN_PARAMETER = "token"
SESSION_COOKIE = "dealflow_session"
ANY_HOST = "*"
# On every answer of a protected app: no caching of deal data, no leaking the URL (which may carry
# `?token=`) in a Referer, no framing, no guessing content types.
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
}


def tokens_equal(presented: str, expected: str) -> bool:
    """Whether two tokens are equal, in time that depends on neither: both are hashed to 32 bytes first."""
    return hmac.compare_digest(_digest(presented), _digest(expected))


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def host_name(host_header: str) -> str:
    """The name in a Host header, lower-case, without its port or a trailing dot; IPv6 keeps brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host if end < 0 else host[: end + 1]
    name, _, port = host.rpartition(":")
    if name and port.isdigit():
        host = name
    return host.rstrip(".")


@dataclass(frozen=True)
class ApiAccess:
    """The token deal-data endpoints demand (None: none configured, so they are closed) and the Host
    names they answer to."""

    token: str | None
    allowed_hosts: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiAccess:
        return cls(settings.api_token_value(), allowed_host_names(settings.allowed_hosts))

    def host_allowed(self, host_header: str | None) -> bool:
        if ANY_HOST in self.allowed_hosts:
            return True
        return host_header is not None and host_name(host_header) in self.allowed_hosts

    def token_matches(self, presented: str) -> bool:
        return self.token is not None and tokens_equal(presented, self.token)

    def session_value(self) -> str:
        """What the page's cookie holds: derived from the token, so the cookie is not the token."""
        assert self.token is not None
        return hmac.new(self.token.encode(), b"dealflow page session", hashlib.sha256).hexdigest()

    def session_matches(self, presented: str) -> bool:
        return self.token is not None and tokens_equal(presented, self.session_value())


def allowed_host_names(names: Iterable[str]) -> frozenset[str]:
    return frozenset(name if name == ANY_HOST else host_name(name) for name in names)


def bearer_token(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _refusal(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


HOST_REFUSED = (421, "host_not_allowed", "this Host header is not in DEALFLOW_ALLOWED_HOSTS")
NOT_CONFIGURED = (
    503,
    "no_api_token",
    "no API token is configured (DEALFLOW_API_TOKEN or DEALFLOW_API_TOKEN_FILE), so deal data is not served",
)
UNAUTHORIZED = (
    401,
    "unauthorized",
    "send the API token as `Authorization: Bearer <token>`, or open the page once as /?token=<token>",
)
CHALLENGE = {"www-authenticate": 'Bearer realm="dealflow"'}


def protected(app: ASGIApp, access: ApiAccess, *, pages: Collection[str] = ()) -> ASGIApp:
    """`app` behind the Host check and the token; `pages` are the paths a browser opens (see above)."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan; these apps serve nothing else
            await app(scope, receive, send)
            return

        async def with_security_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        answer = _check(scope, access, pages)
        if answer is None:
            await app(scope, receive, with_security_headers)
        else:
            await answer(scope, receive, with_security_headers)

    return guarded


def _check(scope: Scope, access: ApiAccess, pages: Collection[str]) -> Response | None:
    """The refusal or redirect for this request, or None to let it through."""
    headers = Headers(scope=scope)
    if not access.host_allowed(headers.get("host")):
        return _refusal(*HOST_REFUSED)
    if access.token is None:
        return _refusal(*NOT_CONFIGURED)
    query = QueryParams(scope.get("query_string", b""))
    if scope["path"] in pages and TOKEN_PARAMETER in query:
        if not access.token_matches(query[TOKEN_PARAMETER]):
            return _refusal(*UNAUTHORIZED, headers=CHALLENGE)
        return _sign_in(scope, access, query)
    presented = bearer_token(headers.get("authorization"))
    if presented is not None and access.token_matches(presented):
        return None
    session = _cookie(headers, SESSION_COOKIE)
    if session is not None and access.session_matches(session):
        return None
    return _refusal(*UNAUTHORIZED, headers=CHALLENGE)


def _sign_in(scope: Scope, access: ApiAccess, query: QueryParams) -> Response:
    """Set the session cookie and send the browser to the same URL without the token in it."""
    rest = urlencode([(name, value) for name, value in query.multi_items() if name != TOKEN_PARAMETER])
    location = scope["path"] + (f"?{rest}" if rest else "")
    response = Response(status_code=303, headers={"location": location})
    response.set_cookie(
        SESSION_COOKIE,
        access.session_value(),
        path="/",
        httponly=True,
        samesite="strict",
        # Behind a proxy that ends TLS the app sees http; the proxy's header says what the browser used.
        # (Trusting it can only add the flag: a client that fakes it loses its own cookie, nothing more.)
        secure="https" in (scope.get("scheme"), Headers(scope=scope).get("x-forwarded-proto")),
    )
    return response


def _cookie(headers: Headers, name: str) -> str | None:
    for header in headers.getlist("cookie"):
        for pair in header.split(";"):
            key, _, value = pair.strip().partition("=")
            if key == name:
                return value.strip().strip('"')
    return None
