"""The HTTP client the client-side commands use (`licence accept`, `request`, `download`).

It talks to a ringfence server's JSON API under /api/v1 with a bearer token, and turns the
server's error documents back into the matching RingfenceError, so a client command fails
with the same one-line message the server wrote:

    client = ApiClient.from_env(server=None)          # RINGFENCE_URL, RINGFENCE_TOKEN
    status = client.get("/api/v1/access/releases/smollm2/1.0")
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from ringfence import errors
from ringfence.errors import AuthenticationRequired, InvalidInput, RingfenceError

#: error types the server names, mapped back to exceptions
_ERRORS: dict[str, type[RingfenceError]] = {
    name: cls
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, RingfenceError)
}


class ServerUnreachable(RingfenceError):
    """The server did not answer."""

    exit_code = 4


class ApiClient:
    """A bearer-token client for one ringfence server."""

    def __init__(self, server: str, token: str | None, *, timeout: float = 30.0) -> None:
        if not server.startswith(("http://", "https://")):
            raise InvalidInput(
                f"{server!r} is not a server URL",
                hint="give --server https://host or RINGFENCE_URL",
            )
        self.server = server.rstrip("/")
        self.token = token
        self.http = httpx.Client(base_url=self.server, timeout=timeout, follow_redirects=False)

    @classmethod
    def from_env(cls, server: str | None) -> ApiClient:
        """A client for `server` (or RINGFENCE_URL) with RINGFENCE_TOKEN."""
        url = server or os.environ.get("RINGFENCE_URL")
        if not url:
            raise InvalidInput("no server given", hint="pass --server URL or set RINGFENCE_URL")
        return cls(url, os.environ.get("RINGFENCE_TOKEN"))

    def _headers(self) -> dict[str, str]:
        if not self.token:
            raise AuthenticationRequired(
                "no API token", hint="set RINGFENCE_TOKEN to a token created for you"
            )
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the API; a server error becomes the RingfenceError it names."""
        try:
            response = self.http.request(method, path, headers=self._headers(), **kwargs)
        except httpx.HTTPError as exc:
            raise ServerUnreachable(
                f"cannot reach {self.server}: {exc}", hint="check --server and the network"
            ) from exc
        if response.is_success:
            return response.json() if response.content else None
        try:
            error = response.json()["error"]
            kind, message = str(error["type"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            kind, message = "RingfenceError", f"the server answered {response.status_code}"
        exc_type = _ERRORS.get(kind, RingfenceError)
        raised = exc_type(message.rstrip("."))
        raised.exit_code = exc_type.exit_code
        raise raised

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET `path`."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any = None) -> Any:
        """POST a JSON body to `path`."""
        return self.request("POST", path, json=json)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()
