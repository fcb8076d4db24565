"""The fake internet's DNS: an authoritative server on loopback, fed from plain data."""

from fakes.dns.blocklist import Blocklist
from fakes.dns.server import FakeDNS, Query
from fakes.dns.zone import Record, ZoneError, parse_zone, render_zone

__all__ = ["Blocklist", "FakeDNS", "Query", "Record", "ZoneError", "parse_zone", "render_zone"]
