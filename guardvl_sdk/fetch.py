"""Fetching http(s) images, safely: off by default, and guarded against SSRF when turned on.

An attacker who controls an image URL must not make the guard reach your internal network or
hang on a slow server. :class:`ImageFetcher`:

- resolves the host itself and refuses every address :func:`refusal` names (one rule: anything
  but a global unicast address, including IPv6 forms that embed an IPv4 address), then connects
  to the address it checked (no second DNS lookup that could be rebound), with TLS still
  verified against the host name; the address is checked once more at the connection itself;
- follows redirects itself, checking every hop the same way (at most ``max_redirects``);
- caps the body at ``max_bytes`` (streamed, never buffered past the cap) and the whole fetch,
  headers and redirects included, at ``timeout`` seconds (a server dripping bytes cannot hold
  it longer; see :mod:`guardvl_sdk.bounded_http`);
- requires an ``image/*`` content type.

Every refusal is an :class:`~guardvl_sdk.errors.InvalidInputError` naming the reason.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from guardvl_sdk.errors import InvalidInputError

if TYPE_CHECKING:
    import httpx2

    from guardvl_sdk.bounded_http import ConnectHook

__all__ = ["ImageFetcher", "refusal"]

Resolver = Callable[[str, int], Sequence[str]]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: mapped, 6to4, Teredo, NAT64, ISATAP."""
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    low32 = ipaddress.IPv4Address(ip.packed[12:])
    if ip in _NAT64 or ip.packed[8:12] in (b"\x00\x00\x5e\xfe", b"\x02\x00\x5e\xfe"):
        found.append(low32)  # NAT64 well-known prefix; ISATAP interface identifier
    return [v4 for v4 in found if v4 is not None]


def refusal(ip: IPAddress) -> str | None:
    """Why an image may not be fetched from ``ip``, or None when it may (one rule, complete).

    Only global unicast addresses pass: not private, loopback, link-local, site-local, shared,
    multicast, reserved or unspecified (the ``ipaddress`` module's properties), and for IPv6
    not carrying a refused IPv4 address (IPv4-mapped, 6to4, Teredo, NAT64, ISATAP forms).
    """
    checks = {
        "multicast": ip.is_multicast,
        "unspecified": ip.is_unspecified,
        "loopback": ip.is_loopback,
        "link-local": ip.is_link_local,
        "private": ip.is_private,
        "reserved": ip.is_reserved,
        "not global": not ip.is_global,
    }
    if isinstance(ip, ipaddress.IPv6Address):
        checks["site-local"] = ip.is_site_local
    reason = next((name for name, hit in checks.items() if hit), None)
    if reason is not None:
        return reason
    if isinstance(ip, ipaddress.IPv6Address):
        for v4 in _embedded_ipv4(ip):
            inner = refusal(v4)
            if inner is not None:
                return f"embeds {v4}, {inner}"
    return None


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _host_header(host: str, port: int | None) -> str:
    """The ``Host`` header of a request to ``host`` (ASCII), with the URL's explicit port."""
    name = f"[{host}]" if ":" in host else host
    return name if port is None else f"{name}:{port}"


class ImageFetcher:
    """Fetches images over http(s) with SSRF protection and size, time and type limits.

    Args:
        max_bytes: Largest body accepted.
        timeout: Seconds for the whole fetch, redirects included.
        max_redirects: Redirect hops followed.
        allow_networks: Networks exempt from the private-address block (CIDR strings), for an
            explicitly trusted internal image host. Empty by default.
        resolver: ``(host, port) -> addresses``; the system resolver by default.
        connect: Called with ``(address, port)`` of every connection, after the address check
            and before connecting; raise to refuse it (tests record attempts this way).
    """

    def __init__(
        self,
        *,
        max_bytes: int = 10 * 1024 * 1024,
        timeout: float = 5.0,
        max_redirects: int = 3,
        allow_networks: Sequence[str] = (),
        resolver: Resolver | None = None,
        connect: ConnectHook | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.allow_networks = [ipaddress.ip_network(n, strict=False) for n in allow_networks]
        self.resolver = resolver or _system_resolver
        self.connect = connect

    def __call__(self, url: str) -> bytes:
        """Fetch ``url`` and return the image bytes, or raise ``InvalidInputError``."""
        import httpx2

        from guardvl_sdk.bounded_http import deadline, transport

        with (
            deadline(self.timeout),
            httpx2.Client(
                transport=transport(connect=self._connecting),
                follow_redirects=False,
                trust_env=False,
                timeout=self.timeout,
            ) as client,
        ):
            for _ in range(self.max_redirects + 1):
                request = self._pinned_request(client, url)
                try:
                    response = client.send(request, stream=True)
                except httpx2.TimeoutException as exc:
                    raise InvalidInputError(
                        f"image fetch timed out after {self.timeout} s: {url}"
                    ) from exc
                except httpx2.HTTPError as exc:
                    raise InvalidInputError(f"image fetch failed: {url}: {exc}") from exc
                try:
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        url = urljoin(url, location)
                        continue
                    return self._read_body(response, url)
                finally:
                    response.close()
        raise InvalidInputError(f"image fetch: more than {self.max_redirects} redirects")

    def _connecting(self, address: str, port: int) -> None:
        """At the connection itself: the address must still be one the rule allows."""
        self._check_address(address, address)
        if self.connect is not None:
            self.connect(address, port)

    def _pinned_request(self, client: httpx2.Client, url: str) -> httpx2.Request:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInputError(f"image URL must be http(s) with a host, got {url!r}")
        try:
            # An internationalised name is resolved, sent (Host) and verified (SNI) as ASCII.
            host = parts.hostname.encode("idna").decode("ascii")
        except UnicodeError as exc:  # an empty or over-long label, a surrogate
            raise InvalidInputError(f"cannot resolve image host {parts.hostname!r}: {exc}") from exc
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:  # a port out of 0-65535, or not a number
            raise InvalidInputError(f"image URL has an invalid port: {url!r}") from exc
        try:
            addresses = self.resolver(host, port)
        except (OSError, UnicodeError, ValueError) as exc:  # UnicodeError: an unencodable name
            raise InvalidInputError(f"cannot resolve image host {host!r}: {exc}") from exc
        if not addresses:
            raise InvalidInputError(f"cannot resolve image host {host!r}")
        for address in addresses:
            self._check_address(host, address)
        ip = ipaddress.ip_address(addresses[0])
        netloc = f"[{ip}]" if ip.version == 6 else str(ip)
        pinned = parts._replace(netloc=f"{netloc}:{port}").geturl()
        return client.build_request(
            "GET",
            pinned,
            headers={"Host": _host_header(host, parts.port), "Accept": "image/*"},
            extensions={"sni_hostname": host},
        )

    def _check_address(self, host: str, address: str) -> None:
        try:
            ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
        except ValueError as exc:
            raise InvalidInputError(f"image host {host!r}: not an IP address {address!r}") from exc
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.allow_networks):
            return
        reason = refusal(ip)
        if reason is not None:
            raise InvalidInputError(
                f"image host {host!r} resolves to a non-public address ({ip}, {reason}): refused"
            )

    def _read_body(self, response: httpx2.Response, url: str) -> bytes:
        import httpx2

        from guardvl_sdk.bounded_http import BodyTooLarge, read_body

        if response.status_code != 200:
            raise InvalidInputError(f"image fetch: HTTP {response.status_code} from {url}")
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if not content_type.startswith("image/"):
            raise InvalidInputError(f"image fetch: content type {content_type!r} is not image/*")
        try:
            return read_body(response, self.max_bytes)
        except BodyTooLarge as exc:
            raise InvalidInputError(f"image fetch: {exc}") from exc
        except httpx2.TimeoutException as exc:
            raise InvalidInputError(f"image fetch timed out after {self.timeout} s: {url}") from exc
        except httpx2.HTTPError as exc:
            raise InvalidInputError(f"image fetch failed: {url}: {exc}") from exc
