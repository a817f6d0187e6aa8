"""A client command says what the server said, whichever error shape it answered with."""

from __future__ import annotations

import httpx

from ringfence.client import error_from
from ringfence.errors import NotFound, PermissionDenied, RingfenceError, TokenExpired


def test_api_and_hub_error_bodies_both_reach_the_user() -> None:
    api = error_from(httpx.Response(404, json={"error": {"message": "no release tiny@9"}}))
    assert isinstance(api, NotFound) and "no release tiny@9" in str(api)
    hub = error_from(httpx.Response(403, json={"error": "your access to lab/tiny was revoked"}))
    assert isinstance(hub, PermissionDenied) and "was revoked" in str(hub)
    spent = error_from(httpx.Response(403, json={"error": "this link is used up"}))
    assert isinstance(spent, TokenExpired)


def test_a_body_that_is_not_an_error_gives_the_status() -> None:
    error = error_from(httpx.Response(502, text="<html>bad gateway</html>"))
    assert type(error) is RingfenceError and "answered 502" in str(error)
