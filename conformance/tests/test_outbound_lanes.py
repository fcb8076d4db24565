"""PLATFORM outbound.bulk-lane: mass mail never holds up a person's mail.

A user queues a newsletter backlog (Precedence: bulk, List-Unsubscribe) towards a receiver
that answers each of them only after seconds; then a person-to-person message to the same
receiver. With one shared set of delivery slots the backlog fills them all and the person's
message waits for a slow answer; with a bulk lane of its own it leaves at once.
"""

from __future__ import annotations

import time
from typing import Any

from conformance import requirement
from conformance.target import Target
from conformance.tests.outbound_support import fresh_user, submission, submit, token, wait_until

BACKLOG = 24  # more than any sane number of delivery slots in one lane
SLOW = 4.0  # seconds the receiver takes to answer each newsletter (real time)
PROMPT = 2.0  # seconds within which the regular message must be delivered


@requirement(
    "PLATFORM",
    "outbound.bulk-lane",
    "MUST",
    "a backlog of bulk mail towards a slow receiver does not delay a regular message",
    needs=("fake-dns", "admin"),
)
def test_bulk_backlog_does_not_delay_regular_mail(target: Target, fake_internet: Any) -> None:
    from fakes.mx import Rule

    user = fresh_user(target)
    gmail = fake_internet.mx["gmail"]
    domain = fake_internet.providers["gmail"].domain
    tag = token()
    slow = Rule("rcpt", "accept", recipient=[f"news-{tag}-*@"], delay=SLOW)
    bulk_headers = ["Precedence: bulk", f"List-Unsubscribe: <mailto:unsubscribe-{tag}@x.test>"]
    regular = f"friend-{tag}@{domain}"
    with gmail_policy(gmail, slow), submission(target, user) as client:
        for i in range(BACKLOG):
            news = f"news-{tag}-{i}@{domain}"
            submit(client, user.address, [news], f"newsletter {i}", headers=bulk_headers)
        submit(client, user.address, [regular], "hello, a person writes")
        accepted = time.monotonic()
        wait_until(lambda: delivered(gmail, regular), 10, "the regular message delivered")
        took = time.monotonic() - accepted
        bulk_done = sum(1 for i in range(BACKLOG) if delivered(gmail, f"news-{tag}-{i}@{domain}"))
    assert took < PROMPT, f"the regular message took {took:.1f} s behind the bulk backlog"
    assert bulk_done < BACKLOG, "the backlog was gone already: nothing was shown"


def delivered(mx: Any, rcpt: str) -> bool:
    return any(rcpt in d.rcpt_tos for d in mx.deliveries)


def gmail_policy(mx: Any, rule: Any) -> Any:
    from conformance.tests.outbound_support import steer

    return steer(mx, rule)
