"""``GET /metrics``: the service's metrics in Prometheus' text format, for allowed
addresses only.

A scraper has no token, so the route is public of tokens (the auth middleware's public
resources); instead the client's address must be in ``LAMBDA_METRICS_ALLOW`` (loopback
by default). The address is the connection's peer, never a header a client can write
(``X-Forwarded-For``). Any other client gets a 403 in the contract's error body: the
route is in the OpenAPI document and the README, so a 404 would hide nothing and would
only mislead an operator whose scraper's address is missing from the list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import falcon

NOT_ALLOWED = "Metrics are served only to the addresses the service allows."


class AddressAllowList:
    """Whether a peer address is in any of the networks (an IPv4-mapped IPv6 address,
    as a dual-stack socket reports an IPv4 client, is checked as the IPv4 one)."""

    def __init__(self, networks: Iterable[IPv4Network | IPv6Network]):
        self.networks = tuple(networks)

    def __contains__(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            ip: IPv4Address | IPv6Address = ip_address(address)
        except ValueError:  # a Unix socket's peer, a scoped IPv6 address: not allowed
            return False
        if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)


def peer_address(scope) -> str | None:
    """The connection's peer as the ASGI scope gives it (an iterable host, port), or None.
    Not Falcon's ``remote_addr``, which says 127.0.0.1 when the server does not know."""
    client = scope.get("client")
    return next(iter(client), None) if client else None


class MetricsResource:
    def __init__(self, exposition: Callable[[], tuple[str, bytes]],
                 allow: AddressAllowList):
        self.exposition = exposition
        self.allow = allow

    async def on_get(self, req, resp):
        if peer_address(req.scope) not in self.allow:
            raise falcon.HTTPForbidden(description=NOT_ALLOWED)
        # On the loop: a few small files read through mmap, well under a millisecond.
        resp.content_type, resp.data = self.exposition()
