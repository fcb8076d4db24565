"""The resolver: built once from `dns.nameservers`, passed to whatever resolves names."""

from __future__ import annotations

import dns.asyncresolver
import dns.resolver

from reference.config import Config


def make_resolver(cfg: Config) -> dns.asyncresolver.Resolver:
    """A dnspython async resolver on the configured nameservers (or the system's)."""
    if not cfg.dns.nameservers:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        hosts: list[str] = []
        ports: dict[str, int] = {}
        for ns in cfg.dns.nameservers:
            hosts.append(ns.host)
            ports[ns.host] = ns.port
        resolver.nameservers = hosts
        resolver.nameserver_ports = ports
    timeout = cfg.dns.timeout
    resolver.lifetime = timeout
    resolver.timeout = min(timeout, 2.0)
    resolver.cache = dns.resolver.Cache()
    return resolver
