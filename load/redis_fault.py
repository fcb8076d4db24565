"""The Redis fault of a load run: SIGKILL the cluster's redis-server mid-run, start it again
on the same port and data a few seconds later, and watch each node's /readyz meanwhile.

Runs in a thread of ``python -m load.run`` (which owns the redis-server); what it saw is
written as JSON for the locustfile's checks: when Redis died and came back, and what each
node's /readyz said while it was away and until it was ready again.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from load.stack import Stack, loopback_only
from reference.state.server import RedisServer

__all__ = ["RedisFault"]

_PROBE_EVERY = 0.5  # seconds between looks at the nodes' /readyz
_READY_WITHIN = 30.0  # seconds after the restart for every node to be ready again


class RedisFault(threading.Thread):
    """Kill ``redis`` ``after`` seconds from start, restart it ``down`` seconds later."""

    def __init__(
        self, redis: RedisServer, stack: Stack, after: float, down: float, out: Path
    ) -> None:
        super().__init__(name="redis-fault", daemon=True)
        self.redis, self.stack, self.after, self.down, self.out = redis, stack, after, down, out
        self.ctx = ssl.create_default_context(cafile=str(stack.cafile))
        self.ctx.check_hostname = False  # loopback addresses, the cluster's own CA
        self.result: dict[str, Any] = {}
        # Not "_stop": threading.Thread has a method of that name, which join() calls.
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def run(self) -> None:
        if self._halt.wait(self.after) or self.redis.proc is None:
            return
        os.kill(self.redis.proc.pid, signal.SIGKILL)
        killed = time.time()
        self.redis.proc.wait()
        self.result = {"killed_at": killed, "readyz_while_down": {}, "ready_again_s": None}
        while time.time() < killed + self.down and not self._halt.is_set():
            for name, said in self.probe().items():
                self.result["readyz_while_down"].setdefault(name, said)
            self._halt.wait(_PROBE_EVERY)
        self.redis.start()  # the same port and data (append-only file)
        self.result["restarted_at"] = time.time()
        deadline = time.monotonic() + _READY_WITHIN
        while time.monotonic() < deadline and not self._halt.is_set():
            if all(said == "ready" for said in self.probe().values()):
                self.result["ready_again_s"] = round(time.time() - self.result["restarted_at"], 1)
                break
            self._halt.wait(_PROBE_EVERY)
        self.out.write_text(json.dumps(self.result, indent=2) + "\n")

    def probe(self) -> dict[str, str]:
        """Each node's /readyz: "ready", or its failing checks with their reasons."""
        said = {}
        for node in self.stack.nodes:
            if "web" not in node.endpoints:
                continue
            host, port = node.endpoints["web"]
            url = f"https://{loopback_only(host)}:{port}/readyz"
            try:
                with urllib.request.urlopen(url, timeout=5, context=self.ctx) as r:
                    body = json.loads(r.read())
            except urllib.error.HTTPError as e:  # 503: not ready, and why
                body = json.loads(e.read() or b"{}")
            except (OSError, ValueError) as e:
                said[node.name] = f"no answer: {e}"
                continue
            failing = body.get("failing") or []
            checks = body.get("checks") or {}
            said[node.name] = (
                "ready" if not failing else "; ".join(f"{n}: {checks.get(n)}" for n in failing)
            )
        return said
