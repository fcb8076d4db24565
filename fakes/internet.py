"""The fake internet: the fake DNS plus named mail providers, each a fake MX on 127.0.2.N.

Every provider's MX listens on its own loopback address and all share one port, so a relay
configured with that single remote port reaches any of them through DNS::

    with FakeInternet() as internet:          # gmail.test, outlook.test, yahoo.test, smarthost
        relay_config(nameserver=internet.nameserver, smtp_port=internet.smtp_port,
                     smarthost=(internet.smarthost.host, internet.smtp_port))
        internet.mx["gmail"].policy = Policy([Rule("rcpt", "gmail.reputation.5xx",
                                                   source="127.0.1.0/28")])
        ...
        assert internet.mx["gmail"].deliveries[0].source == "127.0.1.77"

For each provider ``NAME`` the DNS holds: ``NAME.test MX 10 mx.NAME.test``, its A record
and PTR, SPF ``v=spf1 ip4:ADDRESS -all``, a DMARC ``p=reject`` record and a DKIM key at
``fake._domainkey.NAME.test`` (a real RSA-2048 key; the private half is on
:class:`Provider` for tests that send mail "from" that provider). The smarthost is a
provider without an MX record, reached at ``smtp.smarthost.test``. Every MX checks SPF for
MAIL FROM against the fake DNS, as a receiver does (``Delivery.spf``, and rules with an
``spf`` condition such as ``Rule("mail", "gmail.unauthenticated.5xx", spf=["fail"])``).
"""

from __future__ import annotations

import base64
import errno
import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fakes.dns import FakeDNS
from fakes.mx import FakeMX, Policy
from reference.auth.lookup import Lookup
from reference.auth.spf import check_mail_from
from reference.clock import Clock

__all__ = ["DEFAULT_PROVIDERS", "DKIM_SELECTOR", "FakeInternet", "Provider"]

DEFAULT_PROVIDERS = ("gmail", "outlook", "yahoo")
DKIM_SELECTOR = "fake"
_BIND_ATTEMPTS = 5  # a shared port can be taken on one address by someone else: try another


@dataclass(frozen=True)
class Provider:
    """A fake mail provider: its domain, MX and the keys published for it."""

    name: str
    domain: str
    address: str
    mx_host: str
    mx: FakeMX
    dkim_selector: str
    dkim_private_key: bytes  # PEM (PKCS#8), for signing mail "from" this provider


@functools.cache
def _dkim_key(domain: str) -> tuple[bytes, str]:
    """A private key (PEM) and its DKIM p= value; made once per process (RSA is slow)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, base64.b64encode(spki).decode("ascii")


class FakeInternet:
    """The fake DNS and a set of fake providers, started and stopped together."""

    def __init__(
        self,
        providers: Iterable[str] | Mapping[str, Policy] = DEFAULT_PROVIDERS,
        *,
        clock: Clock | None = None,
        smarthost_auth: Mapping[str, str] | None = None,
        starttls: bool = True,
        first_address: str = "127.0.2.1",
        dns_host: str = "127.0.0.1",
        dns_port: int = 0,
    ) -> None:
        policies = providers if isinstance(providers, Mapping) else dict.fromkeys(providers)
        self._initial: dict[str, Policy | None] = dict(policies)
        self._smarthost_policy = Policy.accept_all(smarthost_auth)
        self.clock = clock
        self.starttls = starttls
        self._first_address = ipaddress.ip_address(first_address)
        self.dns = FakeDNS(dns_host, dns_port, clock)
        self._providers: dict[str, Provider] = {}
        self._smtp_port = 0
        self._running = False

    # -- what tests use -----------------------------------------------------------------

    @property
    def nameserver(self) -> str:
        """HOST:PORT of the fake DNS."""
        return self.dns.nameserver

    @property
    def smtp_port(self) -> int:
        """The one port every fake MX listens on."""
        return self._smtp_port

    @property
    def providers(self) -> Mapping[str, Provider]:
        return MappingProxyType(self._providers)

    @property
    def mx(self) -> Mapping[str, FakeMX]:
        """The fake MXs by provider name ("gmail", ..., "smarthost")."""
        return MappingProxyType({name: p.mx for name, p in self._providers.items()})

    @property
    def smarthost(self) -> FakeMX:
        return self._providers["smarthost"].mx

    def add_provider(
        self, name: str, policy: Policy | None = None, *, domain: str | None = None
    ) -> FakeMX:
        """Start one more provider (on the next 127.0.2.N, same port) and publish its DNS."""
        if not self._running:
            raise RuntimeError("start the FakeInternet first")
        return self._add(name, policy, domain, with_mx=True)

    async def check_spf(self, source: str, sender: str, helo: str) -> str:
        """What a receiver's SPF check (RFC 7208) says of ``source`` sending as ``sender``,
        against the fake DNS: every fake MX records it and its rules may act on it."""
        checked = await check_mail_from(Lookup(self.dns.resolver(5.0)), source, sender, helo)
        return str(checked.result)

    def clear(self) -> None:
        """Forget what every fake MX recorded."""
        for provider in self._providers.values():
            provider.mx.clear()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeInternet:
        self.dns.start()
        self._running = True
        try:
            for attempt in range(_BIND_ATTEMPTS):
                try:
                    self._start_providers()
                    break
                except OSError as e:
                    self._stop_providers()
                    if e.errno != errno.EADDRINUSE or attempt == _BIND_ATTEMPTS - 1:
                        raise
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._stop_providers()
        self.dns.stop()
        self._running = False

    def __enter__(self) -> FakeInternet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start_providers(self) -> None:
        self._smtp_port = 0  # the first MX picks a free port; the others take the same
        for name, policy in self._initial.items():
            self._add(name, policy, None, with_mx=True)
        self._add("smarthost", self._smarthost_policy, None, with_mx=False)

    def _stop_providers(self) -> None:
        for provider in self._providers.values():
            provider.mx.stop()
        self._providers.clear()

    def _add(self, name: str, policy: Policy | None, domain: str | None, with_mx: bool) -> FakeMX:
        if name in self._providers:
            raise ValueError(f"provider {name!r} exists already")
        domain = domain or f"{name}.test"
        address = str(self._first_address + len(self._providers))
        host = f"mx.{domain}" if with_mx else f"smtp.{domain}"
        mx = FakeMX(
            address,
            self._smtp_port,
            policy,
            self.clock,
            name=name,
            starttls=self.starttls,
            hostname=host,
            spf=self.check_spf,
        ).start()
        self._smtp_port = mx.port
        pem, public = _dkim_key(domain)
        self._providers[name] = Provider(name, domain, address, host, mx, DKIM_SELECTOR, pem)
        if with_mx:
            self.dns.add(domain, "MX", f"10 {host}.")
        self.dns.add(host, "A", address)
        self.dns.ptr(address, f"{host}.")
        self.dns.spf(domain, f"v=spf1 ip4:{address} -all")
        self.dns.dkim(domain, DKIM_SELECTOR, f"v=DKIM1; k=rsa; p={public}")
        self.dns.dmarc(domain, f"v=DMARC1; p=reject; rua=mailto:dmarc-reports@{domain}")
        return mx
