"""``mailspec fake-mx``: serve fake remote MXs from the command line until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from fakes.mx import policy as policy_doc
from fakes.mx.policy import Policy
from fakes.mx.records import Delivery
from fakes.mx.server import FakeMX

__all__ = ["main", "register", "run"]

_DEFAULT_LISTEN = ("127.0.0.2", 2525)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """Add the ``fake-mx`` subcommand to the ``mailspec`` command line."""
    p = sub.add_parser(
        "fake-mx",
        parents=parents,
        help="run a fake remote MX that accepts, tempfails, greylists or rejects by policy",
        description="Run fake remote MXs on loopback addresses, answering by a TOML policy "
        "(its format below).",
        epilog=policy_doc.__doc__.replace("``", "").replace("::", ":")
        if policy_doc.__doc__
        else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        action="append",
        type=_host_port,
        help="address to listen on; repeat for several MXs sharing the policy "
        "(default 127.0.0.2:2525)",
    )
    p.add_argument("--policy", metavar="FILE", type=Path, help="TOML policy (default: accept)")
    p.add_argument("--name", default="fake-mx", help="name in logs and queue ids")
    p.add_argument("--hostname", default="fake-mx.test", help="name in the greeting and cert")
    p.add_argument("--no-starttls", dest="starttls", action="store_false", help="no STARTTLS")
    p.add_argument(
        "--record", metavar="DIR", type=Path, help="write each delivery as DIR/ID.eml + ID.json"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM (exit 0); 2 when the policy or an address is unusable."""
    try:
        policy = Policy.from_file(args.policy) if args.policy else Policy.accept_all()
    except (OSError, ValueError) as e:
        print(f"mailspec fake-mx: policy {args.policy}: {e}", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    # aiosmtpd logs every command at INFO; our own event lines say what matters.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    stop = threading.Event()
    # Handlers first: a signal sent as soon as "listening" is printed must stop us cleanly.
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    mxs: list[FakeMX] = []
    try:
        recorder = _recorder(args.record) if args.record else None
        for host, port in args.listen or [_DEFAULT_LISTEN]:
            mx = FakeMX(
                host,
                port,
                policy,
                name=args.name,
                starttls=args.starttls,
                hostname=args.hostname,
                on_delivery=recorder,
            )
            try:
                mxs.append(mx.start())
            except OSError as e:
                why = "address already in use" if e.errno == errno.EADDRINUSE else e.strerror
                print(f"mailspec fake-mx: cannot listen on {host}:{port}: {why}", file=sys.stderr)
                return 2
            print(f"fake-mx {mx.name} listening on {mx.host}:{mx.port}", flush=True)
        stop.wait()
        return 0
    finally:
        for mx in mxs:
            mx.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"want HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _recorder(directory: Path) -> Callable[[Delivery], None]:
    directory.mkdir(parents=True, exist_ok=True)

    def record(delivery: Delivery) -> None:
        meta = asdict(delivery)
        del meta["data"]
        (directory / f"{delivery.queue_id}.eml").write_bytes(delivery.data)
        (directory / f"{delivery.queue_id}.json").write_text(json.dumps(meta, indent=2) + "\n")

    return record


def main(argv: list[str] | None = None) -> int:
    """``python -m fakes.mx.cli [options]``, for use before the ``mailspec`` wiring."""
    parser = argparse.ArgumentParser(prog="python -m fakes.mx.cli")
    register(parser.add_subparsers(required=True), [])
    args = parser.parse_args(["fake-mx", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
