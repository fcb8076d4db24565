"""PROXY protocol (HAProxy's v1 text line and v2 binary header): pure parsers, bytes in,
client address out."""

from __future__ import annotations

import ipaddress
import struct

__all__ = ["MAX_PAYLOAD", "V2_SIGNATURE", "ProxyError", "parse_v1", "parse_v2", "render_v2"]

# The 12-byte signature: it starts with CRLF CRLF, so a line reader sees an empty line first.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
MAX_PAYLOAD = 536  # addresses (216 for AF_UNIX) plus TLVs: anything larger is not a proxy


class ProxyError(ValueError):
    """A malformed PROXY header."""


def parse_v1(line: bytes) -> tuple[str, int] | None:
    """The client (address, port) of a ``PROXY TCP4|TCP6 src dst sport dport`` line
    (without its CRLF); ``None`` for ``PROXY UNKNOWN``: the proxy does not say."""
    parts = line.decode("ascii", "replace").split(" ")
    try:
        if parts[1] == "UNKNOWN":
            return None
        family, src, sport = parts[1], parts[2], int(parts[4])
        addr = ipaddress.ip_address(src)
    except (IndexError, ValueError) as e:
        raise ProxyError(str(e)) from None
    if (family, addr.version) not in (("TCP4", 4), ("TCP6", 6)) or len(parts) != 6:
        raise ProxyError(f"not a TCP4 or TCP6 line: {family}")
    return str(addr), sport


def parse_v2(head: bytes, payload: bytes) -> tuple[str, int] | None:
    """The client (address, port) from the 4 bytes after the signature and the payload.

    ``None`` for LOCAL (a health check from the proxy itself) or an unspecified family.
    """
    if len(head) != 4:
        raise ProxyError("short header")
    ver_cmd, family, length = struct.unpack("!BBH", head)
    if ver_cmd >> 4 != 2:
        raise ProxyError(f"version {ver_cmd >> 4}, not 2")
    if len(payload) != length:
        raise ProxyError("payload length does not match the header")
    command = ver_cmd & 0x0F
    if command == 0:  # LOCAL
        return None
    if command != 1:
        raise ProxyError(f"unknown command {command}")
    fam, proto = family >> 4, family & 0x0F
    if proto not in (1, 2):  # STREAM or DGRAM; only the addresses matter here
        return None
    if fam == 1:
        if length < 12:
            raise ProxyError("short IPv4 addresses")
        src = ipaddress.IPv4Address(payload[0:4])
        (sport,) = struct.unpack("!H", payload[8:10])
        return str(src), sport
    if fam == 2:
        if length < 36:
            raise ProxyError("short IPv6 addresses")
        src6 = ipaddress.IPv6Address(payload[0:16])
        (sport,) = struct.unpack("!H", payload[32:34])
        return str(src6), sport
    return None  # AF_UNIX or unspecified: keep the connection's own address


def render_v2(src: str, sport: int, dst: str, dport: int) -> bytes:
    """A PROXY v2 header (for tests and load clients)."""
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if a.version == 4:
        payload = a.packed + b.packed + struct.pack("!HH", sport, dport)
        family = 0x11
    else:
        payload = a.packed + b.packed + struct.pack("!HH", sport, dport)
        family = 0x21
    return V2_SIGNATURE + struct.pack("!BBH", 0x21, family, len(payload)) + payload
