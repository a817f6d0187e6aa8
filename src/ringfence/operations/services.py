"""Who may read the metrics, and the metrics as Prometheus reads them."""

from __future__ import annotations

import hmac
import ipaddress
import os

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

#: headers a reverse proxy adds: a request carrying one came from further than its peer
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def may_read_metrics(
    *, metrics_token: str | None, bearer: str | None, peer: str | None, forwarded: bool
) -> bool:
    """Whether a scrape is answered: the metrics token when one is set, else loopback only.

    Metrics name routes, volumes and failure rates: not secrets, but nothing to show the
    world. Without `RINGFENCE_METRICS_TOKEN` only a scraper on the same machine reads them;
    a proxied request (forwarding headers) is not "the same machine" even though its peer,
    the proxy, is. With the token set it is required from everyone, loopback included.
    """
    if metrics_token:
        return bearer is not None and hmac.compare_digest(bearer.encode(), metrics_token.encode())
    if forwarded or peer is None:
        return False
    try:
        return ipaddress.ip_address(peer).is_loopback
    except ValueError:  # not an address (a test client's name, a Unix socket)
        return False


def exposition() -> tuple[bytes, str]:
    """The metrics in the Prometheus text format, and its content type.

    Under `PROMETHEUS_MULTIPROC_DIR` the values are every server process's, summed (gauges
    as their metric says); otherwise this process's.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
