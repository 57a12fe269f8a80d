"""The address a room opens to join a shared demo, and its QR code (no Streamlit here).

A server started with ``make run ADDRESS=0.0.0.0`` listens on every interface, so the URL in
the presenter's own browser (``localhost:8501``) is no use to the class.  :func:`public_url`
gives the one to show: ``$ODENET_PUBLIC_URL`` when set (a reverse proxy, a DNS name), else this
machine's LAN IPv4 and the server's port.

The LAN address is found without sending a packet: :func:`route_source` asks the kernel which
source address it *would* use towards ``192.0.2.1`` (TEST-NET-1, RFC 5737: documentation only,
never routed) by ``connect`` on a UDP socket, which only looks up the route; where there is no
route (a classroom network without a gateway), :func:`interface_addresses` reads the interfaces'
addresses instead (Linux ``SIOCGIFADDR``).  :func:`join_qr_png` draws the URL as a QR code with
``segno`` (pure Python, offline).
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from odenet.app.access import is_public_address
from odenet.errors import OdenetError
from odenet.utils import BoundedLRU

__all__ = ["PROBE_ADDRESS", "AddressError", "route_source", "interface_addresses", "lan_ipv4", "public_url",
           "page_url", "join_qr", "join_qr_png"]

PROBE_ADDRESS = "192.0.2.1"  # TEST-NET-1 (RFC 5737): documentation only, never routed; nothing is sent to it
_SIOCGIFADDR = 0x8915  # Linux ioctl: an interface's IPv4 address
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})


class AddressError(OdenetError, ValueError):
    """``ODENET_PUBLIC_URL`` is not a usable http(s) URL; the message says why."""


def _usable(ip: str) -> str | None:
    """``ip`` as an IPv4 string when another machine could reach it (not loopback/unspecified)."""
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        return None
    return None if addr.is_loopback or addr.is_unspecified or addr.is_multicast else str(addr)


def route_source(probe: str = PROBE_ADDRESS,
                 socket_factory: Callable[..., socket.socket] = socket.socket) -> str | None:
    """The source IPv4 the kernel would use towards ``probe`` (None without a route).

    ``connect`` on a UDP socket sets the default destination and picks the route: no packet
    leaves the machine (nothing is sent, so nothing needs to answer)."""
    try:
        with socket_factory(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))  # port 9 (discard), never written to
            return _usable(sock.getsockname()[0])
    except OSError:
        return None


def interface_addresses() -> list[str]:
    """IPv4 addresses of this machine's network interfaces other than loopback (Linux; [] elsewhere
    or on error), private LAN addresses first.  Reads them with an ioctl: no packet is sent."""
    try:
        import fcntl
    except ImportError:  # Windows
        return []
    found: list[str] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _, name in socket.if_nameindex():
                with contextlib.suppress(OSError):
                    raw = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
                    ip = _usable(socket.inet_ntoa(raw[20:24]))
                    if ip and ip not in found:
                        found.append(ip)
    except OSError:
        return []
    return sorted(found, key=lambda ip: not ipaddress.IPv4Address(ip).is_private)


def lan_ipv4(route: Callable[[], str | None] = route_source,
             interfaces: Callable[[], Sequence[str]] = interface_addresses) -> str | None:
    """This machine's LAN IPv4: the default route's source address, else the first interface
    address; None when the machine has only loopback."""
    ip = route()
    if ip:
        return ip
    found = list(interfaces())
    return found[0] if found else None


def _override() -> str | None:
    raw = os.environ.get("ODENET_PUBLIC_URL", "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise AddressError(f"ODENET_PUBLIC_URL={raw!r} is not usable: give the address the room opens, such as "
                           "http://192.168.1.20:8501 or https://lab.example.org/odenet")
    return raw.rstrip("/")


def _origin(url: str | None) -> str | None:
    """``scheme://host[:port]`` of a browser URL whose host another machine can reach, else None."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not is_public_address(parts.hostname):
        return None
    return f"{parts.scheme}://{parts.netloc}"


def public_url(server_address: str | None, port: int, *, base_path: str = "", https: bool = False,
               browser_url: str | None = None, lan: Callable[[], str | None] | None = None) -> str | None:
    """The URL the room opens (no trailing slash), or None when it cannot be known.

    ``$ODENET_PUBLIC_URL`` wins (AddressError if malformed).  A server listening on every interface
    (``server_address`` empty or ``0.0.0.0``) is reached at this machine's LAN IPv4; one bound to a
    single address or name, at that.  A server on localhost (shared through a reverse proxy) is
    reached where the presenter's browser reached it (``browser_url``), unless that is localhost.
    ``lan``: the LAN lookup (default :func:`lan_ipv4`)."""
    override = _override()
    if override:
        return override
    host = (server_address or "").strip()
    if host.lower() in _WILDCARDS:
        host = (lan or lan_ipv4)() or ""
    elif not is_public_address(host):  # a proxy in front of a localhost server: only the browser knows
        host = ""
    if not host:
        return _origin(browser_url)
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host.strip("[]")).version == 6:
            host = f"[{host.strip('[]')}]"
    scheme = "https" if https else "http"
    netloc = host if (scheme, int(port)) in (("http", 80), ("https", 443)) else f"{host}:{int(port)}"
    base = base_path.strip("/")
    return f"{scheme}://{netloc}" + (f"/{base}" if base else "")


def page_url(base: str, url_path: str) -> str:
    """A page's address under ``base`` (``url_path`` "" is the home page)."""
    return f"{base.rstrip('/')}/{url_path.strip('/')}"


def join_qr(url: str):  # -> segno.QRCode (segno is imported only when a QR code is drawn)
    """The QR code of ``url`` (error correction M or better at the smallest version, byte mode)."""
    import segno

    return segno.make_qr(url, error="m", mode="byte")


_QR_PNGS: BoundedLRU[bytes] = BoundedLRU(8)


def join_qr_png(url: str, scale: int = 5, border: int = 4) -> bytes:
    """``url`` as a black-on-white QR code PNG: ``scale`` pixels per module, ``border`` modules of
    quiet zone (4 is the standard's minimum).  Cached: one address per server."""
    def draw() -> bytes:
        buf = io.BytesIO()
        join_qr(url).save(buf, kind="png", scale=scale, border=border, dark="#000000", light="#ffffff")
        return buf.getvalue()

    return _QR_PNGS.get_or_compute((url, scale, border), draw)
