"""DNS blocklists (RFC 5782): IPs and domains listed under a zone, as the fake DNS serves them."""

from __future__ import annotations

import ipaddress

from dnslib import A

from fakes.dns.store import Store
from fakes.dns.zone import DEFAULT_TTL, Record, normalize_name, txt_record


class Blocklist:
    """One DNSBL zone: a listed entry has an A record (the return code) and maybe a TXT reason."""

    def __init__(self, store: Store, zone: str) -> None:
        self._store = store
        self.zone = normalize_name(zone)

    def name_for(self, ip: str) -> str:
        """The name a client queries for ip: reversed octets (IPv4) or nibbles (IPv6)."""
        pointer = ipaddress.ip_address(ip).reverse_pointer  # RFC 5782 2.1, 2.4
        return f"{pointer.rsplit('.', 2)[0]}.{self.zone}"

    def list(self, ip: str, code: str = "127.0.0.2", txt: str | None = None) -> None:
        """List an IP address; several codes may be listed for one address."""
        self._list(self.name_for(ip), code, txt)

    def unlist(self, ip: str) -> None:
        self._store.remove(self.name_for(ip))

    def list_name(self, domain: str, code: str = "127.0.0.2", txt: str | None = None) -> None:
        """List a domain, for URI/domain blocklists (RFC 5782 2.3)."""
        self._list(f"{normalize_name(domain)}.{self.zone}", code, txt)

    def unlist_name(self, domain: str) -> None:
        self._store.remove(f"{normalize_name(domain)}.{self.zone}")

    def _list(self, name: str, code: str, txt: str | None) -> None:
        name = normalize_name(name)
        self._store.add(Record(name, "A", DEFAULT_TTL, A(str(ipaddress.IPv4Address(code)))))
        if txt is not None:
            reason = txt_record(name, [txt.encode("utf-8")])
            self._store.add(reason, replace=lambda r: True)  # one reason per entry
