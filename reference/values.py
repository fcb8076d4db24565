"""Config values as types: durations, host:port pairs, rate limits, header rules, DNSBL zones.

The config layer validates every key with these parsers at load; the composition root
hands their results (numbers, pairs, ``Limit``s) to the parts it builds. Nothing here
imports the rest of the reference.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Duration",
    "FieldName",
    "HeaderField",
    "HeloName",
    "HostPort",
    "Limit",
    "LimitOverride",
    "Limits",
    "Nameserver",
    "Network",
    "RateLimitSpec",
    "SocketAddress",
    "Spelled",
    "ZoneSpec",
    "network",
    "parse_dnsbl",
    "parse_duration",
    "parse_header_rules",
    "parse_hostport",
    "parse_limit",
    "parse_overrides",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(text: str) -> float:
    """'24h' -> 86400.0; a bare number is seconds."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 24h, 36d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _seconds_text(seconds: float) -> str:
    """A bare number of seconds, written out plainly ("3110400s", never "3.1e+06s")."""
    return f"{seconds:f}".rstrip("0").rstrip(".") + "s"


class Duration(float):
    """A number of seconds that remembers how the configuration wrote it ("5m")."""

    text: str

    def __new__(cls, text: str | float) -> Duration:
        spelled = text if isinstance(text, str) else _seconds_text(text)
        seconds = parse_duration(spelled)  # ValueError names the bad text
        value = super().__new__(cls, seconds)
        value.text = spelled
        return value

    def __reduce__(self) -> tuple[type[Duration], tuple[str]]:
        # Copies (dataclasses.asdict deep-copies) keep the spelling, not only the number.
        return (Duration, (self.text,))

    def __repr__(self) -> str:
        return f"Duration({self.text!r})"


def parse_hostport(text: str) -> tuple[str, int]:
    """'127.0.0.1:2525' or '[::1]:2525' -> (host, port); port 0 means any free port."""
    m = re.match(r"^\[([0-9A-Fa-f:.]+)\]:(\d+)$", text) or re.match(r"^([^:\s]+):(\d+)$", text)
    if not m:
        raise ValueError(f"expected host:port, got {text!r}")
    port = int(m.group(2))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range 0-65535")
    return m.group(1), port


def parse_dnsbl(spec: str) -> tuple[str, dict[str, float]]:
    """'zen.example=127.0.0.2:10,127.0.0.4:3' -> ('zen.example', {'127.0.0.2': 10.0, …})."""
    zone, _, codes = spec.partition("=")
    zone = zone.strip().rstrip(".").lower()
    if not re.fullmatch(r"([a-z0-9-]+\.)+[a-z0-9-]+", zone):
        raise ValueError(f"not a zone name: {zone!r}")
    table: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in codes.split(","))):
        code, _, weight = part.partition(":")
        ipaddress.IPv4Address(code)
        table[code] = float(weight) if weight else 10.0
    return zone, table


_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")


@dataclass(frozen=True)
class Limit:
    """``count`` units per ``window`` seconds."""

    count: int
    window: float

    def __str__(self) -> str:
        w = self.window
        unit = f"{w / 60:g} minutes" if w % 60 == 0 and w < 3600 else f"{w / 3600:g} hours"
        return f"{self.count} per {unit}" if w >= 60 else f"{self.count} per {w:g} seconds"


def parse_overrides(specs: Sequence[str]) -> dict[str, Limits]:
    """['alice@example.test: recipients=100/5m, bytes=50000000/1d', 'example.test: …']."""
    out: dict[str, Limits] = {}
    for spec in specs:
        who, sep, rest = spec.partition(":")
        if not sep or not who.strip():
            raise ValueError(f"expected 'ADDRESS-OR-DOMAIN: kind=COUNT/DURATION, …': {spec!r}")
        values: dict[str, Limit | None] = {}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            kind, eq, limit = part.partition("=")
            if not eq or kind.strip() not in ("recipients", "messages", "bytes"):
                raise ValueError(f"expected recipients=, messages= or bytes=: {part!r}")
            values[kind.strip()] = parse_limit(limit)
        out[who.strip().lower()] = Limits(**values)
    return out


def parse_limit(text: str) -> Limit | None:
    """'60/5m' -> Limit(60, 300); '' or 'none' -> None (unlimited)."""
    if text.strip().lower() in ("", "none", "unlimited"):
        return None
    m = _LIMIT.match(text)
    if not m:
        raise ValueError(f"not a limit: {text!r} (use COUNT/DURATION, e.g. 60/5m)")
    return Limit(int(m.group(1)), parse_duration(m.group(2)))


@dataclass(frozen=True)
class Limits:
    recipients: Limit | None = None
    messages: Limit | None = None
    bytes: Limit | None = None


def _field_name(spec: str) -> str:
    name = spec.strip().rstrip(":").strip()
    if not name or any(c <= " " or c == ":" or c > "~" for c in name):
        raise ValueError(f"not a header field name: {spec!r}")
    return name


def _field_line(spec: str) -> bytes:
    name, sep, value = spec.partition(":")
    if not sep:
        raise ValueError(f"expected 'Name: value', got {spec!r}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"a header field is one line: {spec!r}")
    return f"{_field_name(name)}: {value.strip()}\r\n".encode()


def parse_header_rules(remove: Sequence[str], add: Sequence[str]) -> tuple[set[str], bytes]:
    """Validated rules: names to remove (lower case) and the fields to add, as bytes."""
    return {_field_name(n).lower() for n in remove}, b"".join(_field_line(a) for a in add)


# -- configuration strings parsed once, at load ----------------------------------------------


class Spelled(str):
    """A configuration string parsed once, when the config is loaded: the value is still its
    spelling (what `mailspec config show` writes back), and the parsed parts are attributes,
    so nothing past the composition root parses it again."""


class HostPort(Spelled):
    """``host:port`` or ``[v6]:port``: ``.host`` and ``.port``."""

    host: str
    port: int

    def __new__(cls, text: str) -> HostPort:
        host, port = parse_hostport(text)
        value = super().__new__(cls, text)
        value.host, value.port = host, port
        return value

    @property
    def pair(self) -> tuple[str, int]:
        return self.host, self.port


class Nameserver(Spelled):
    """A resolver: an IP address, with a port (``127.0.0.1:5353``, ``[::1]:53``) or without
    (port 53)."""

    host: str
    port: int

    def __new__(cls, text: str) -> Nameserver:
        try:
            host, port = parse_hostport(text) if ":" in text else (text, 53)
            ipaddress.ip_address(host)
        except ValueError as e:
            raise ValueError(f"{e} (an IP address with a port)") from None
        value = super().__new__(cls, text)
        value.host, value.port = host, port
        return value


class SocketAddress(Spelled):
    """``host:port``, or the path of a Unix socket (it starts with ``/``): one of ``.path``
    and ``.pair`` is set."""

    path: str | None
    pair: tuple[str, int] | None

    def __new__(cls, text: str) -> SocketAddress:
        pair = None
        if not text.startswith("/"):
            try:
                pair = parse_hostport(text)
            except ValueError as e:
                raise ValueError(f"{e} (or a Unix socket path)") from None
        value = super().__new__(cls, text)
        value.path, value.pair = (None if pair else text), pair
        return value


class RateLimitSpec(Spelled):
    """``COUNT/DURATION`` (``60/5m``), or empty for unlimited: ``.limit``."""

    limit: Limit | None

    def __new__(cls, text: str) -> RateLimitSpec:
        limit = parse_limit(text)
        value = super().__new__(cls, text)
        value.limit = limit
        return value


class LimitOverride(Spelled):
    """``alice@example.test: recipients=500/5m, messages=100/1h``: ``.who`` (an address or
    a domain, lower case) and its ``.limits``."""

    who: str
    limits: Limits

    def __new__(cls, text: str) -> LimitOverride:
        ((who, limits),) = parse_overrides([text]).items()
        value = super().__new__(cls, text)
        value.who, value.limits = who, limits
        return value


class ZoneSpec(Spelled):
    """A DNS blocklist, ``zone`` or ``zone=127.0.0.2:10,127.0.0.4:3``: ``.zone`` and the
    ``.weights`` of its return codes."""

    zone: str
    weights: dict[str, float]

    def __new__(cls, text: str) -> ZoneSpec:
        zone, weights = parse_dnsbl(text)
        value = super().__new__(cls, text)
        value.zone, value.weights = zone, weights
        return value


class HeloName(Spelled):
    """``ADDRESS=NAME``: the EHLO name the relay gives from one source address."""

    address: str
    name: str

    def __new__(cls, text: str) -> HeloName:
        addr, sep, name = text.partition("=")
        if not sep:
            raise ValueError(f"expected ADDRESS=NAME, got {text!r}")
        address = str(ipaddress.ip_address(addr.strip()))
        name = name.strip().rstrip(".")
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", name):
            raise ValueError(f"not a host name: {name!r}")
        value = super().__new__(cls, text)
        value.address, value.name = address, name
        return value


class FieldName(Spelled):
    """A header field name to remove (``X-Originating-IP``): ``.lname``, lower case."""

    lname: str

    def __new__(cls, text: str) -> FieldName:
        lname = _field_name(text).lower()
        value = super().__new__(cls, text)
        value.lname = lname
        return value


class HeaderField(Spelled):
    """A header field to add, ``Name: value``: ``.line``, the field as bytes with its CRLF."""

    line: bytes

    def __new__(cls, text: str) -> HeaderField:
        line = _field_line(text)
        value = super().__new__(cls, text)
        value.line = line
        return value


class Network(Spelled):
    """An address or a CIDR range (``127.0.0.0/8``, ``::1``): ``.network``."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network

    def __new__(cls, text: str) -> Network:
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"not a network (an address or CIDR range): {text!r}") from None
        value = super().__new__(cls, text)
        value.network = network
        return value


def network(spec: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The network of a config value (parsed at load), or of a plain string (in tests)."""
    return spec.network if isinstance(spec, Network) else Network(spec).network
