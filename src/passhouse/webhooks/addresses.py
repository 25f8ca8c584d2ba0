"""Which webhook URLs and addresses passhouse may call: https to public addresses, unless
PASSHOUSE_WEBHOOKS_ALLOW_PRIVATE=true (so an API key cannot probe the internal network)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

ALLOW_PRIVATE_SETTING = "PASSHOUSE_WEBHOOKS_ALLOW_PRIVATE=true"
MAX_URL_LENGTH = 2000


class AddressRefused(Exception):
    """A URL or address passhouse will not call; the message says why and what allows it."""


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, *, allow_private: bool) -> tuple[str, int]:
    """(host, port) of an acceptable webhook URL; raises AddressRefused otherwise."""
    if len(url) > MAX_URL_LENGTH or not url.isprintable() or any(c.isspace() for c in url):
        raise AddressRefused(f"url must be at most {MAX_URL_LENGTH} printable characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise AddressRefused(f"url is not a valid URL: {error}.") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise AddressRefused("url must be an https:// URL with a host name.")
    if parts.scheme == "http" and not allow_private:
        raise AddressRefused(
            f"url must use https://; http:// is refused unless {ALLOW_PRIVATE_SETTING} "
            "(for local development)."
        )
    if parts.fragment:
        raise AddressRefused("url must not have a #fragment.")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def refuse_private(host: str, addresses: list[str]) -> None:
    private = [a for a in addresses if not is_public(a)]
    if private:
        shown = host if host == private[0] else f"{host} resolves to {private[0]}, which"
        raise AddressRefused(
            f"{shown} is a loopback, private or otherwise non-public address; "
            f"{ALLOW_PRIVATE_SETTING} allows it (for local development and tests)."
        )


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [host]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise AddressRefused(f"{host} does not resolve: {error}.") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def check_destination(url: str, *, allow_private: bool) -> None:
    """What is checked when a webhook is saved: the URL's form and where its name leads
    now. The sender checks the address again at every connection (DNS can change)."""
    host, port = check_url(url, allow_private=allow_private)
    if allow_private:
        return
    refuse_private(host, await resolve(host, port))
