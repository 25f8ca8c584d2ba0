"""How a registered device is woken: APNs, or the push relay of an Android pkpass app.

Pure functions over strings (no I/O): the device endpoints tell the transport from the
registration request, the worker and the PassWallet sender check where a push may go.
Sources and what is unconfirmed: docs/decisions/0017-android-wallet-apps.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from urllib.parse import urlsplit

APNS = "apns"
WALLETPASSES = "walletpasses"  # Wallet Passes, io.walletpasses.android
PASSWALLET = "passwallet"  # PassWallet, com.attidomobile.passwallet
PASS2U = "pass2u"  # Pass2U Wallet
PASSWORKS = "passworks"  # Passworks Wallet

# The app a transport stands for, as the registrations view names it.
APPS = {
    APNS: "Apple Wallet",
    WALLETPASSES: "Wallet Passes",
    PASSWALLET: "PassWallet",
    PASS2U: "Pass2U Wallet",
    PASSWORKS: "Passworks Wallet",
}
TRANSPORTS = tuple(APPS)

# Authorization schemes of the device endpoints; the token after it is what is checked.
SCHEMES = ("ApplePass", "AndroidPass", "AttidoPass")

MAX_PUSH_SERVICE_URL = 2048
ALLOW_LIST = "PASSHOUSE_PASSWALLET_PUSH_HOSTS"

Address = IPv4Address | IPv6Address


def registration_transport(scheme: str, pass_client: str | None, user_agent: str | None) -> str:
    """The transport of a registration made on Apple's register endpoint.

    Pass2U and Passworks say who they are in X-Pass-Client; Wallet Passes by its
    `AndroidPass` scheme or its user agent. Anything else is Apple Wallet. (PassWallet
    registers on its own endpoint, with a pushServiceUrl.)
    """
    if pass_client is not None:
        if pass_client == "Passes":  # noqa: S105 - an app's name, not a secret
            return PASS2U
        if pass_client == "Passworks":  # noqa: S105 - an app's name, not a secret
            return PASSWORKS
    if scheme == "AndroidPass" or (user_agent is not None and "WalletPasses/" in user_agent):
        return WALLETPASSES
    return APNS


def _listed(address: Address, allowed: Sequence[str]) -> bool:
    """The address is named on the allow-list, alone or in a network."""
    for entry in allowed:
        try:
            network = ip_network(entry, strict=False)
        except ValueError:  # a host name
            continue
        if address in network:
            return True
    return False


def address_refusal(address: Address, allowed: Sequence[str]) -> str | None:
    """Why a push service may not be reached at this address, or None.

    Public addresses are fine for any allowed host; loopback, private, link-local,
    multicast and reserved ones only when the allow-list names them as addresses.
    """
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if (address.is_global and not address.is_multicast) or _listed(address, allowed):
        return None
    return f"{address} is not a public address; list it in {ALLOW_LIST} to allow it."


def push_service_refusal(url: str, allowed: Sequence[str]) -> str | None:
    """Why PassWallet's pushServiceUrl may not be called, or None when it may.

    Only http(s) URLs without credentials whose host is on the allow-list: a host name
    listed as a name, an address listed as an address or in a listed network. What a
    name resolves to is checked (`address_refusal`) when the push is sent.
    """
    if len(url) > MAX_PUSH_SERVICE_URL:
        return f"pushServiceUrl is longer than {MAX_PUSH_SERVICE_URL} characters."
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return "pushServiceUrl is not a valid URL."
    if parts.scheme not in ("http", "https") or not host:
        return "pushServiceUrl must be an http:// or https:// URL."
    if parts.username is not None or parts.password is not None:
        return "pushServiceUrl must not carry credentials."
    where = "pushServiceUrl's host"
    try:
        literal: Address | None = ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        return None if _listed(literal, allowed) else f"{where} {host} is not in {ALLOW_LIST}."
    if host.rstrip(".") in allowed:
        return None
    return f"{where} {host} is not in {ALLOW_LIST}."
