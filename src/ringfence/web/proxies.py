"""Which reverse proxies are believed about the client's address (RINGFENCE_TRUSTED_PROXIES).

X-Forwarded-For is a list any client can start: `X-Forwarded-For: 1.2.3.4` costs nothing to
send. Only the entries appended by proxies we run say anything, so the list is read from its
right end, past every trusted hop, and only when the peer itself is a trusted proxy.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TrustedProxies:
    """Addresses or networks (CIDR) of the proxies in front of ringfence; "*" trusts any peer."""

    networks: tuple[Network, ...] = ()
    names: frozenset[str] = frozenset()
    anyone: bool = False

    @classmethod
    def parse(cls, spec: str) -> TrustedProxies:
        """From a comma-separated setting: `127.0.0.1, 10.0.0.0/8` (empty: trust nobody)."""
        networks: list[Network] = []
        names: set[str] = set()
        for entry in (e.strip() for e in spec.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry)  # a literal peer name, e.g. a unix socket's
        return cls(tuple(networks), frozenset(names - {"*"}), "*" in names)

    def __bool__(self) -> bool:
        return self.anyone or bool(self.networks or self.names)

    def trusts(self, address: str) -> bool:
        """Whether `address` is one of the trusted proxies."""
        if self.anyone or address in self.names:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def uvicorn_allow(self) -> list[str]:
        """The same list as uvicorn's `forwarded_allow_ips`."""
        if self.anyone:
            return ["*"]
        return [str(n) for n in self.networks] + sorted(self.names)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address: the peer's, or the nearest untrusted hop a trusted peer names."""
        if not forwarded_for or not self.trusts(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop
        return hops[0] if hops else peer


@functools.cache
def trusted_proxies(spec: str) -> TrustedProxies:
    """The parsed setting (cached: a pure function of the setting's text)."""
    return TrustedProxies.parse(spec)
