"""The client's address: forwarded headers count only from a trusted proxy."""

from __future__ import annotations

from types import SimpleNamespace

from starlette.requests import Request

from ringfence.web.proxies import TrustedProxies
from ringfence.web.security import client_ip
from ringfence.wiring import Services


def test_nobody_is_trusted_by_default_so_a_forged_header_changes_nothing() -> None:
    none = TrustedProxies.parse("")
    assert not none
    assert none.client("203.0.113.9", "1.2.3.4") == "203.0.113.9"


def test_the_list_is_read_from_the_right_past_trusted_hops_only() -> None:
    trusted = TrustedProxies.parse("127.0.0.1, 10.0.0.0/8")
    # A client that starts the list itself ("6.6.6.6") gets only its real address recorded.
    assert trusted.client("127.0.0.1", "6.6.6.6, 198.51.100.7, 10.1.2.3") == "198.51.100.7"
    assert trusted.client("127.0.0.1", None) == "127.0.0.1"
    assert trusted.client("192.0.2.1", "6.6.6.6") == "192.0.2.1"  # an untrusted peer
    assert trusted.client("127.0.0.1", "10.0.0.1") == "10.0.0.1"  # only proxies: the first
    assert trusted.uvicorn_allow() == ["127.0.0.1/32", "10.0.0.0/8"]
    assert TrustedProxies.parse("*").trusts("anything")


def _request(services: Services, peer: str, forwarded: str) -> Request:
    app = SimpleNamespace(state=SimpleNamespace(services=services))
    scope = {
        "type": "http",
        "app": app,
        "client": (peer, 5000),
        "headers": [(b"x-forwarded-for", forwarded.encode())],
    }
    return Request(scope)


def test_client_ip_reads_the_setting(services: Services) -> None:
    assert client_ip(_request(services, "127.0.0.1", "198.51.100.7")) == "127.0.0.1"
    services.settings.trusted_proxies = "127.0.0.1"
    assert client_ip(_request(services, "127.0.0.1", "198.51.100.7")) == "198.51.100.7"
