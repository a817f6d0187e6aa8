"""The download client's retries: a refused connection gives up early, a broken one keeps trying."""

from __future__ import annotations

import httpx
import pytest

from ringfence.distribution import client


def test_a_refused_connection_gives_up_after_a_few_tries() -> None:
    calls: list[int] = []

    def refused() -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("connection refused")

    with pytest.raises(httpx.ConnectError):
        client._with_retries(refused)
    assert len(calls) == client.CONNECT_RETRIES < client.RETRIES


def test_a_broken_connection_is_retried_until_it_answers() -> None:
    calls: list[int] = []

    def flaky() -> httpx.Response:
        calls.append(1)
        if len(calls) < client.CONNECT_RETRIES + 1:
            raise httpx.ReadError("connection reset")
        return httpx.Response(200)

    assert client._with_retries(flaky).status_code == 200
    assert len(calls) == client.CONNECT_RETRIES + 1
