"""`mailspec fake-dns`: the fake DNS server from the command line, for staging and manual tests."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from fakes.dns.server import FakeDNS


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    """Add the fake-dns subcommand to the mailspec command line."""
    p = sub.add_parser("fake-dns", parents=parents, help="serve zone files on a local DNS port")
    p.add_argument(
        "--listen",
        default="127.0.0.1:5353",
        metavar="HOST:PORT",
        help="address for UDP and TCP (default 127.0.0.1:5353; port 0 picks a free one)",
    )
    p.add_argument(
        "--zone",
        action="append",
        default=[],
        metavar="[ORIGIN=]FILE",
        help="RFC 1035 master file to serve (repeatable); ORIGIN= for a file without $ORIGIN",
    )
    p.set_defaults(func=run)


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT or [IPv6]:PORT."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen wants HOST:PORT, not {text!r}")
    return host, int(port)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; 2 for a bad zone or an address we cannot bind."""
    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        return _fail(str(exc))
    dns = FakeDNS(host, port)
    loaded = []
    for spec in args.zone:
        origin, sep, path = spec.partition("=")
        if not sep or os.path.exists(spec):
            origin, path = "", spec
        before = len(dns.records())
        try:
            dns.load_zone_file(path, origin or None)
        except (OSError, ValueError) as exc:
            return _fail(f"cannot load zone: {exc}")
        count = len(dns.records()) - before
        loaded.append(f"{path} ({count} record{'' if count == 1 else 's'})")
    signals = {signal.SIGINT, signal.SIGTERM}
    # Blocked before start(), so the server thread inherits the mask and sigwait() below,
    # not an arbitrary thread, receives the signal.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        try:
            dns.start()
        except OSError as exc:
            return _fail(f"cannot listen on {args.listen}: {exc.strerror or exc}")
        zones = ", ".join(loaded) or "none"
        print(f"fake-dns listening on {dns.nameserver} (udp, tcp); zones: {zones}", flush=True)
        signal.sigwait(signals)
        return 0
    finally:
        dns.stop()
        while signals & signal.sigpending():  # a second Ctrl-C must not turn into a traceback
            signal.sigwait(signals)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _fail(message: str) -> int:
    print(f"mailspec fake-dns: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (python -m fakes.dns.cli fake-dns ...), until mailspec wires it."""
    parser = argparse.ArgumentParser(prog="mailspec")
    register(parser.add_subparsers(required=True), [])
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
