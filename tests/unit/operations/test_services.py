"""Who may read the metrics: the metrics token when set, else a loopback peer not proxied."""

from __future__ import annotations

import pytest

from ringfence.operations.services import may_read_metrics

TOKEN = "metrics-secret"


@pytest.mark.parametrize(
    ("peer", "forwarded", "allowed"),
    [
        ("127.0.0.1", False, True),
        ("::1", False, True),
        ("127.8.9.10", False, True),
        ("10.0.0.7", False, False),
        ("203.0.113.5", False, False),
        # behind a proxy on this machine the peer is loopback, the caller is not
        ("127.0.0.1", True, False),
        ("testclient", False, False),
        (None, False, False),
    ],
)
def test_without_a_token_only_loopback_reads(
    peer: str | None, forwarded: bool, allowed: bool
) -> None:
    assert (
        may_read_metrics(metrics_token=None, bearer=None, peer=peer, forwarded=forwarded) is allowed
    )


@pytest.mark.parametrize(
    ("bearer", "peer", "allowed"),
    [
        (TOKEN, "203.0.113.5", True),
        (TOKEN, "127.0.0.1", True),
        # once a token is set, loopback alone no longer reads: a proxy would expose it
        (None, "127.0.0.1", False),
        ("wrong", "127.0.0.1", False),
        (TOKEN + "x", "203.0.113.5", False),
        ("", "203.0.113.5", False),
    ],
)
def test_with_a_token_everyone_needs_it(bearer: str | None, peer: str, allowed: bool) -> None:
    assert (
        may_read_metrics(metrics_token=TOKEN, bearer=bearer, peer=peer, forwarded=False) is allowed
    )
