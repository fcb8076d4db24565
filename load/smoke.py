"""`tox -e load`: two short locust runs with their thresholds, on loopback, in under a minute.

1. One node: inbound MTAs, submission users, IMAP readers, rate-limited users.
2. A cluster of three nodes sharing Redis, the directory and the mailboxes, with the same
   users; node2 is killed (SIGKILL) while its spool holds accepted mail, and restarted by
   `mailspec cluster` on the same spool.

Each run ends with the locustfile's checks (p99 accept-to-mailbox and accept-to-IMAP under
1 s, nothing accepted lost, rate limits exact, no failure but the killed node's, the killed
node's mail delivered by the others once and in time); any miss fails the smoke. Reports go
to reports/load/ (locust CSV and HTML, and our summary JSON).
"""

from __future__ import annotations

import argparse
import sys
import time

from load import run

SMOKE = [
    ["--nodes", "1", "--time", "8", "--name", "smoke-1node"],
    [
        "--nodes", "3", "--time", "12", "--kill-node", "node2", "--kill-after", "4",
        "--name", "smoke-3node-kill",
    ],
]  # fmt: skip
# A smoke run on a shared 2-core machine checks that the promises hold (none lost, limits
# exact, sub-second delivery, a killed node recovered) at a load the machine carries while
# other jobs run: 8 MTAs at 2 msg/s each, the limited users' sessions at 2 RCPTs/s, and a
# limit of 20 recipients, which they always reach in 8 s (at 60, on a busy machine, they did
# not: nothing was proven).
# On a machine carrying more than three times its cores (load average per core above 3),
# the gates that need spare CPU (p99, limits reached) are reported as not judged: a false
# alarm about the machine is no finding about the code. Full runs of `python -m load.run`
# judge them always.
# Capacity itself is measured by `tox -e bench` and the full runs of `python -m load.run`.
# Accept-to-IMAP is gated at 1 s here, as accept-to-mailbox is: the 200 ms of issue 19 is
# the full runs' gate (python -m load.run with several nodes), on a machine not shared.
COMMON = [
    "--inbound-users", "8", "--inbound-rate", "2", "--limited-rate", "2", "--limit", "20/5m",
    "--drain-timeout", "15", "--busy-load", "3", "--max-imap-p99-ms", "1000", "--quiet",
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m load.smoke", description=__doc__)
    ap.epilog = "Other options are passed to both runs (see python -m load.run --help)."
    _, extra = ap.parse_known_args(argv)
    t0 = time.monotonic()
    failed = []
    for spec in SMOKE:
        rc = run.main([*spec, *COMMON, *extra])
        if rc:
            failed.append(spec[spec.index("--name") + 1])
    took = time.monotonic() - t0
    verdict = f"failed: {', '.join(failed)}" if failed else "passed"
    print(f"load smoke: {len(SMOKE)} runs in {took:.0f}s, {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
