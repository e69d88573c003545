"""Which push endpoints the relay may send wake-ups to (no server-side request forgery).

A device registers a URL; the relay will POST to it. Unchecked, a device could make the relay
call its own admin port, a metadata service or a machine on the operator's private network.
:func:`check_endpoint` takes the URL and every address its host resolved to (resolution is the
caller's I/O) and refuses, unless the operator allowed private endpoints (a UnifiedPush
distributor on the LAN, the tests' local receiver):

* anything but ``https://`` (``http://`` only with private endpoints allowed), user info in the
  URL, a URL over :data:`MAX_ENDPOINT` bytes;
* any resolved address that is loopback, private, link-local, multicast, reserved, unspecified,
  or an IPv4-mapped form of one (all of them must be public, or the host could answer one way
  to the check and another to the request).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["MAX_ENDPOINT", "EndpointRefused", "check_endpoint", "endpoint_host"]

#: Bytes of an endpoint URL: push services' URLs are a few hundred bytes.
MAX_ENDPOINT = 1024


class EndpointRefused(ValueError):
    """A push endpoint the relay will not call; the message says why."""


def endpoint_host(url: str, allow_private: bool = False) -> tuple[str, int]:
    """The host and port to resolve for ``url``.

    Raises:
        EndpointRefused: not a URL the relay calls (scheme, user info, length).
    """
    if len(url.encode()) > MAX_ENDPOINT:
        raise EndpointRefused(f"a push endpoint is at most {MAX_ENDPOINT} bytes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise EndpointRefused("not a URL") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise EndpointRefused(f"a push endpoint is {' or '.join(schemes)}://")
    if parts.username is not None or parts.password is not None:
        raise EndpointRefused("a push endpoint carries no user name or password")
    if not parts.hostname:
        raise EndpointRefused("a push endpoint names a host")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check_endpoint(url: str, addresses: Iterable[str], allow_private: bool = False) -> None:
    """Raise :class:`EndpointRefused` unless the relay may POST to ``url``, whose host
    resolved to ``addresses``."""
    endpoint_host(url, allow_private)
    resolved = list(addresses)
    if not resolved:
        raise EndpointRefused("the push endpoint's host does not resolve")
    if allow_private:
        return
    for text in resolved:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise EndpointRefused(f"not an address: {text!r}") from None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            raise EndpointRefused(
                f"the push endpoint resolves to {address}, which is not a public address"
                " (allow private push endpoints in the relay's config to use one)"
            )
