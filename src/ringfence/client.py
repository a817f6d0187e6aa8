"""Talking to a ringfence server: one HTTP session, one reading of its errors.

Every client command (`request`, `licence accept`, `download`, `verify`) goes through here.
`session()` builds the httpx client (base URL, token, timeouts, user agent); `error_from()`
turns an error answer back into the RingfenceError the server raised, so the client fails
with the server's one line and that error's exit code; `transport_errors()` turns a server
that does not answer (refused, timed out, TLS) into one line naming it:

    with ApiClient.from_env(server=None) as api:      # RINGFENCE_URL, RINGFENCE_TOKEN
        status = api.get("/api/v1/access/releases/smollm2/1.0")
"""

from __future__ import annotations

import os
import ssl
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import httpx

from ringfence import __version__, errors
from ringfence.errors import (
    AuthenticationRequired,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RingfenceError,
    ServerUnreachable,
    TokenExpired,
)

USER_AGENT = f"ringfence/{__version__}"
#: long reads (a server streaming a fingerprinted shard), a short wait for the connection
TIMEOUT = httpx.Timeout(60.0, connect=10.0)

#: the server names the class of the error it raised (`{"error": {"type": ...}}`)
_BY_TYPE: dict[str, type[RingfenceError]] = {
    name: cls
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, RingfenceError)
}
#: what an answer without a known type means, by status (the Hub's errors, proxies)
_BY_STATUS: dict[int, type[RingfenceError]] = {
    400: InvalidInput,
    401: AuthenticationRequired,
    403: PermissionDenied,
    404: NotFound,
    409: errors.Conflict,
    415: errors.UnsupportedFormat,
    422: InvalidInput,
    429: errors.RateLimited,
}
#: the Hub's X-Error-Code values (see distribution/hub.py)
_HUB_CODES: dict[str, type[RingfenceError]] = {
    "RepoNotFound": NotFound,
    "RevisionNotFound": NotFound,
    "EntryNotFound": NotFound,
}


def server_url(given: str | None) -> str | None:
    """The server to talk to: `given`, else RINGFENCE_URL (RINGFENCE_SERVER, deprecated)."""
    url = given or os.environ.get("RINGFENCE_URL")
    if not url and os.environ.get("RINGFENCE_SERVER"):
        url = os.environ["RINGFENCE_SERVER"]
        # FutureWarning is the category Python shows to the people running a program.
        warnings.warn(
            "RINGFENCE_SERVER is deprecated and will be ignored in a later release; "
            "set RINGFENCE_URL instead",
            FutureWarning,
            stacklevel=2,
        )
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        raise InvalidInput(
            f"{url!r} is not a server URL", hint="give --server https://host or RINGFENCE_URL"
        )
    return url.rstrip("/")


def session(
    base_url: str = "",
    token: str | None = None,
    *,
    timeout: httpx.Timeout = TIMEOUT,
    follow_redirects: bool = False,
) -> httpx.Client:
    """An httpx client for one server: JSON errors, our user agent, the token if given."""
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(
        base_url=base_url, headers=headers, timeout=timeout, follow_redirects=follow_redirects
    )


def error_from(response: httpx.Response) -> RingfenceError:
    """The RingfenceError an error answer stands for, carrying the server's message."""
    status = response.status_code
    kind: str | None = None
    try:
        error = response.json()["error"]
        if isinstance(error, dict):  # the API: {"error": {"type": ..., "message": ...}}
            kind, message = str(error.get("type", "")), str(error["message"])
        else:  # the Hub: {"error": "..."} with X-Error-Code
            message = str(error)
    except (ValueError, KeyError, TypeError):
        message = f"the server answered {status} {response.reason_phrase}".rstrip()
    cls = _BY_TYPE.get(kind or "") or _HUB_CODES.get(response.headers.get("x-error-code", ""))
    if cls is None:
        cls = _BY_STATUS.get(status, RingfenceError)
        if cls is PermissionDenied and ("expired" in message or "used up" in message):
            cls = TokenExpired
    # The server's message is already its one line, hint included: add nothing to it.
    return cls(message.rstrip("."), hint="")


def unreachable(server: str, exc: httpx.TransportError) -> ServerUnreachable:
    """One line for a server that did not answer: which one, what happened, what to do."""
    if isinstance(exc, httpx.TimeoutException):
        return ServerUnreachable(
            f"{server} did not answer in time ({type(exc).__name__})",
            hint="retry later, or check the network and the server's load",
        )
    if _tls_failure(exc):
        return ServerUnreachable(
            f"the TLS handshake with {server} failed: {exc}",
            hint="check that the URL's scheme is right and the server's certificate is valid",
        )
    if isinstance(exc, httpx.ConnectError):
        return ServerUnreachable(
            f"cannot reach {server}: {_reason(exc)}",
            hint="check the URL (--server or RINGFENCE_URL) and that the server is running",
        )
    return ServerUnreachable(
        f"the connection to {server} broke: {_reason(exc)}", hint="retry the command"
    )


def _tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "SSL" in str(seen) or "CERTIFICATE" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    if "name or service not known" in text.lower() or "nodename nor servname" in text.lower():
        return "no such host"
    return text


@contextmanager
def transport_errors(server: str) -> Iterator[None]:
    """Within this block, a server that does not answer raises one ServerUnreachable line."""
    try:
        yield
    except httpx.TransportError as exc:
        raise unreachable(server, exc) from exc


class ApiClient:
    """A bearer-token client for the JSON API (/api/v1) of one ringfence server."""

    def __init__(self, server: str | None, token: str | None) -> None:
        url = server_url(server)
        if url is None:
            raise InvalidInput("no server given", hint="pass --server URL or set RINGFENCE_URL")
        self.server = url
        self.token = token
        self.http = session(self.server, token)

    @classmethod
    def from_env(cls, server: str | None) -> ApiClient:
        """A client for `server` (or RINGFENCE_URL) with RINGFENCE_TOKEN."""
        return cls(server, os.environ.get("RINGFENCE_TOKEN"))

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the API; an error answer raises the RingfenceError the server raised."""
        if not self.token:
            raise AuthenticationRequired(
                "no API token", hint="set RINGFENCE_TOKEN to a token created for you"
            )
        with transport_errors(self.server):
            response = self.http.request(method, path, **kwargs)
        if not response.is_success:
            raise error_from(response)
        return response.json() if response.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET `path`."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any = None) -> Any:
        """POST a JSON body to `path`."""
        return self.request("POST", path, json=json)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
