"""Response headers built from input stay ASCII, and every response carries security headers.

HTTP header values are Latin-1 on the wire and Starlette encodes them so: a message holding
any other character (a model name `€` echoed back) raised UnicodeEncodeError, a 500. Every
header ringfence builds from input goes through `header_value`.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: pages: nothing from elsewhere, no inline scripts or styles, never inside a frame
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: FastAPI's Swagger page loads its script and style from jsDelivr and starts it inline;
#: it shows no stored data, so that page alone gets those sources
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PATHS = ("/api/v1/docs", "/api/v1/docs/oauth2-redirect")
HSTS = "max-age=31536000; includeSubDomains"


def header_value(text: str, limit: int = 500) -> str:
    """`text` as one line of printable ASCII: other characters become `\\uXXXX` escapes."""
    one_line = " ".join(text.split())
    escaped = one_line.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c for c in escaped if c.isprintable())[:limit]


def content_disposition(filename: str) -> str:
    """An attachment header for any file name: an ASCII fallback and the UTF-8 name (RFC 6266)."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    if fallback == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


class SecurityHeaders:
    """Adds CSP, nosniff, Referrer-Policy, X-Frame-Options (and HSTS on https) to responses.

    Pure ASGI: it edits the response's start message and passes body chunks straight on, so
    a download of many gigabytes streams as before (BaseHTTPMiddleware would buffer it).
    A route that sets its own Content-Security-Policy keeps it (the trace report does).
    """

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.https = https

    def _headers(self, path: str) -> Iterable[tuple[bytes, bytes]]:
        policy = DOCS_POLICY if path in DOCS_PATHS else PAGE_POLICY
        yield b"content-security-policy", policy.encode()
        yield b"x-content-type-options", b"nosniff"
        yield b"referrer-policy", b"no-referrer"
        yield b"x-frame-options", b"DENY"
        if self.https:
            yield b"strict-transport-security", HSTS.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in self._headers(path) if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
