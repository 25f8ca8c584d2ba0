"""Who is calling: the client's address, believed from a forwarding header only when a
trusted proxy wrote it (ADR 0010)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection

from passhouse.settings import Settings

IPAddress = IPv4Address | IPv6Address


def client_address(connection: HTTPConnection, settings: Settings) -> str:
    """The address the per-client limits count and device logs record.

    The direct peer, unless it is one of `trusted_proxies`: then the configured header is
    read from the right (each proxy appends the peer it saw), past every trusted proxy, to
    the first address that is not one. Entries further left were written by the client
    itself and prove nothing.
    """
    peer = connection.client.host if connection.client else ""
    peer_ip = _parse(peer)
    if peer_ip is None:
        return peer or "unknown"
    trusted = settings.trusted_proxies
    if not trusted or not _is_trusted(peer_ip, trusted):
        return _text_of(peer_ip)
    client = peer_ip
    for hop in reversed(_forwarded_for(connection.headers, settings.forwarded_header)):
        hop_ip = _parse(hop)
        if hop_ip is None:
            # "unknown" or an obfuscated name: the nearest address known stands for it.
            break
        client = hop_ip
        if not _is_trusted(hop_ip, trusted):
            break
    return _text_of(client)


def _is_trusted(address: IPAddress, trusted: Sequence[IPv4Network | IPv6Network]) -> bool:
    return any(address in network for network in trusted)


def _forwarded_for(headers: Headers, header: str) -> list[str]:
    """The hops a forwarding header lists, client first, proxies after."""
    values = ",".join(headers.getlist(header))
    if header == "x-forwarded-for":
        return [hop.strip() for hop in values.split(",") if hop.strip()]
    hops = []  # RFC 7239: Forwarded: for=192.0.2.60;proto=https, for="[2001:db8::17]:4711"
    for element in values.split(","):
        for pair in element.split(";"):
            name, _, value = pair.partition("=")
            if name.strip().lower() == "for":
                hops.append(value.strip().strip('"'))
    return hops


# Parsed and printed through bounded caches: a client sends many requests from one address.
@lru_cache(maxsize=4096)
def _parse(value: str) -> IPAddress | None:
    """An address from "1.2.3.4", "1.2.3.4:5678", "::1" or "[::1]:5678"; None otherwise."""
    value = value.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ip_address(value)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    return address


@lru_cache(maxsize=4096)
def _text_of(address: IPAddress) -> str:
    return str(address)


def limit_key(address: str) -> str:
    """What a per-client limit counts: the address, or its /64 for IPv6, since one IPv6
    host is routinely given a whole /64 to pick addresses from."""
    if ":" not in address:
        return address
    try:
        network = IPv6Network(f"{address.partition('%')[0]}/64", strict=False)
    except ValueError:
        return address
    return str(network)
