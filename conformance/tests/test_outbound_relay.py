"""The intelligent relay, seen from the fake internet: reputation retries, the smarthost,
bounces (RFC 3464), null MX (RFC 7505), and the 24-hour retry story on the target's clock.

Each test mails recipients of its own at a fake provider and steers that provider only for
them. The relay's source pool is the target's business: the reputation test refuses half
of 127.0.1.0/24 (the default target's pool) and checks, whatever addresses the relay
picked, that what was refused was retried at once from an address that was not.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import pytest

from conformance import not_applicable, requirement
from conformance.target import Account, ClockControl, Target
from conformance.tests.outbound_support import (
    DsnReport,
    dsn_reports,
    fresh_user,
    inbox,
    steer,
    submission,
    submit,
    token,
    wait_until,
)

REFUSED = ipaddress.ip_network("127.0.1.0/25")
LOOPBACK = "127.0.0.0/8"


def sessions_for(mx: Any, rcpt: str) -> list[Any]:
    """The fake MX's sessions in which the relay offered ``rcpt``."""
    return [
        a for a in mx.attempts if any(e.stage == "rcpt" and e.argument == rcpt for e in a.events)
    ]


def delivered(mx: Any, rcpt: str) -> list[Any]:
    return [d for d in mx.deliveries if rcpt in d.rcpt_tos]


@requirement(
    "PLATFORM",
    "outbound.reputation",
    "MUST",
    "a receiver's refusal of a source address for its reputation is retried at once from "
    "another address of the pool, and the mail is delivered",
    needs=("fake-dns", "admin"),
)
def test_reputation_refusal_is_retried_from_another_address(
    target: Target, fake_internet: Any
) -> None:
    from fakes.mx import Rule

    user = fresh_user(target)
    gmail = fake_internet.mx["gmail"]
    tag = token()
    rule = Rule("rcpt", "gmail.reputation.5xx", source=[str(REFUSED)], recipient=[f"rep-{tag}-*@"])
    client = submission(target, user)
    seen_in_range = False
    with steer(gmail, rule):
        # The relay picks its source at random: mail until one was refused first and then
        # delivered directly (each message has one chance in two or so).
        for i in range(30):
            rcpt = f"rep-{tag}-{i}@{fake_internet.providers['gmail'].domain}"
            submit(client, user.address, [rcpt], f"reputation {tag} {i}")
            wait_until(
                lambda r=rcpt: delivered(gmail, r) or delivered(fake_internet.smarthost, r),
                10,
                f"{rcpt} delivered (directly or through the smarthost)",
            )
            sessions = sessions_for(gmail, rcpt)
            sources = [ipaddress.ip_address(a.source) for a in sessions]
            seen_in_range = seen_in_range or any(s in REFUSED for s in sources)
            refused = [a for a in sessions if a.refusals]
            if not refused or not delivered(gmail, rcpt):
                continue  # not refused this time, or refused from every address it tried
            (delivery,) = delivered(gmail, rcpt)
            assert all(ipaddress.ip_address(a.source) in REFUSED for a in refused)
            assert ipaddress.ip_address(delivery.source) not in REFUSED
            assert len({a.source for a in sessions}) == len(sessions), "an address reused"
            assert not delivered(fake_internet.smarthost, rcpt)
            return
    if not seen_in_range:
        not_applicable("the relay's source addresses are not in 127.0.1.0/24")
    raise AssertionError("no message was refused for reputation and then delivered directly")


@requirement(
    "PLATFORM",
    "outbound.smarthost",
    "MUST",
    "when a receiver refuses every source address tried, the mail goes to the smarthost",
    needs=("fake-dns", "admin"),
)
def test_whole_pool_refused_goes_to_the_smarthost(target: Target, fake_internet: Any) -> None:
    from fakes.mx import Rule

    user = fresh_user(target)
    outlook = fake_internet.mx["outlook"]
    rcpt = f"sh-{token()}@{fake_internet.providers['outlook'].domain}"
    rule = Rule("rcpt", "outlook.blocklist.5xx", source=[LOOPBACK], recipient=[rcpt])
    with steer(outlook, rule):
        submit(submission(target, user), user.address, [rcpt], "via the smarthost")
        wait_until(lambda: delivered(fake_internet.smarthost, rcpt), 10, "smarthost delivery")
    sessions = sessions_for(outlook, rcpt)
    assert sessions and all(a.refusals for a in sessions), "outlook refused every attempt"
    assert len({a.source for a in sessions}) == len(sessions) >= 2, (
        f"several source addresses tried before the smarthost: {[a.source for a in sessions]}"
    )
    assert not delivered(outlook, rcpt)
    (relayed,) = delivered(fake_internet.smarthost, rcpt)
    assert relayed.mail_from == user.address


# -- bounces --------------------------------------------------------------------------------


def wait_for_dsns(
    target: Target, user: Account, rcpt: str, count: int, timeout: float = 10.0
) -> list[DsnReport]:
    return wait_until(  # type: ignore[no-any-return]
        lambda: (lambda found: found if len(found) >= count else None)(
            dsn_reports(inbox(target, user), rcpt)
        ),
        timeout,
        f"{count} DSN(s) about {rcpt} in {user.address}'s INBOX",
    )


@pytest.fixture(scope="module")
def permanent_bounce(target: Target) -> tuple[DsnReport, str, str]:
    """A message to two recipients of which the receiver refuses one for good (550 5.1.1).

    The bounce must come at once: the clock is not moved.
    """
    from fakes.mx import Rule

    target.require("fake-dns", "admin")
    net = target.fake_internet
    if net is None:
        not_applicable(f"target {target.name!r} runs without the fake internet")
    user = fresh_user(target)
    domain = net.providers["yahoo"].domain
    tag = token()
    bad, good = f"nobody-{tag}@{domain}", f"erin-{tag}@{domain}"
    rule = Rule("rcpt", f"550 5.1.1 No such user here ({tag})", recipient=[bad])
    with steer(net.mx["yahoo"], rule):
        submit(submission(target, user), user.address, [bad, good], f"partly bounced {tag}")
        wait_until(lambda: delivered(net.mx["yahoo"], good), 10, "the good recipient's copy")
        (report,) = wait_for_dsns(target, user, bad, 1)
    return report, bad, good


@requirement(
    "RFC3464",
    "2",
    "MUST",
    "a bounce is a multipart/report (report-type=delivery-status) with a human-readable "
    "part, a message/delivery-status part and the original's header",
    needs=("fake-dns", "admin"),
)
def test_bounce_is_a_multipart_report(permanent_bounce: tuple[DsnReport, str, str]) -> None:
    report, _, _ = permanent_bounce
    msg = report.message
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) >= 2
    assert parts[0].get_content_maintype() == "text"
    assert parts[1].get_content_type() == "message/delivery-status"
    if len(parts) > 2:
        assert parts[2].get_content_type() in ("text/rfc822-headers", "message/rfc822")
        assert "partly bounced" in parts[2].as_string()
    assert report.per_message.get("reporting-mta", "").startswith("dns;")


@requirement(
    "RFC3464",
    "2.3",
    "MUST",
    "each failed recipient has Final-Recipient, Action: failed, Status and the remote's "
    "reply as Diagnostic-Code; recipients delivered are not in the bounce",
    needs=("fake-dns", "admin"),
)
def test_bounce_names_the_failed_recipient(permanent_bounce: tuple[DsnReport, str, str]) -> None:
    report, bad, good = permanent_bounce
    about = report.about(bad)
    assert about is not None
    assert about.get("action", "").lower() == "failed"
    assert about.get("status") == "5.1.1"
    diagnostic = about.get("diagnostic-code", "")
    assert diagnostic.lower().startswith("smtp;") and "550 5.1.1 No such user here" in diagnostic
    assert report.about(good) is None


@requirement(
    "RFC5321",
    "4.5.5",
    "MUST",
    "a bounce is sent with the null reverse-path (Return-Path: <>)",
    needs=("fake-dns", "admin"),
)
def test_bounce_has_a_null_sender(permanent_bounce: tuple[DsnReport, str, str]) -> None:
    report, _, _ = permanent_bounce
    return_path = report.message.get("Return-Path")
    if return_path is None:
        not_applicable("the delivered bounce carries no Return-Path to read the sender from")
    assert return_path.strip() == "<>", return_path


@requirement(
    "RFC7505",
    "3",
    "MUST",
    "mail to a domain publishing a null MX is not tried: it is refused (556 5.1.10) or "
    "bounced at once with status 5.1.10",
    needs=("fake-dns", "admin"),
)
def test_null_mx_bounces_at_once(target: Target, fake_internet: Any) -> None:
    user = fresh_user(target)
    domain = f"nomail-{token()}.test"
    fake_internet.dns.add(domain, "MX", "0 .")
    rcpt = f"someone@{domain}"
    client = submission(target, user)
    client.mail(user.address).expect(250, doing="MAIL FROM")
    reply = client.rcpt(rcpt)
    if reply.code >= 500:
        assert reply.enhanced == "5.1.10", str(reply)  # refused in the dialogue: also right
        return
    reply.expect(250, doing="RCPT TO a null-MX domain")
    client.data(
        f"From: <{user.address}>\r\nTo: <{rcpt}>\r\nSubject: nowhere\r\n\r\nx\r\n".encode()
    ).expect(250, doing="DATA")
    (report,) = wait_for_dsns(target, user, rcpt, 1)
    about = report.about(rcpt)
    assert about is not None and about.get("action", "").lower() == "failed"
    assert about.get("status") == "5.1.10", about


# -- 24 hours of tempfails, on the target's clock --------------------------------------------


def walk_the_clock(clock: ClockControl, mx: Any, rcpt: str, hours: int) -> None:
    """Advance ``hours`` in one-hour steps, letting each due retry happen."""
    for _ in range(hours):
        clock.advance(3600)
        time.sleep(0.05)  # the target notices the time and connects
        deadline = time.monotonic() + 2
        while any(not a.closed for a in sessions_for(mx, rcpt)):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)


@pytest.fixture(scope="module")
def expired(target: Target) -> tuple[list[DsnReport], str, str, int]:
    """A message the receiver tempfails for 27 hours of the target's clock."""
    from fakes.mx import Rule

    target.require("fake-dns", "admin", "clock")
    net = target.fake_internet
    if net is None:
        not_applicable(f"target {target.name!r} runs without the fake internet")
    assert target.clock is not None
    user = fresh_user(target)
    gmail = net.mx["gmail"]
    tag = token()
    rcpt = f"later-{tag}@{net.providers['gmail'].domain}"
    reply = f"451 4.4.1 Queue full here, come back later ({tag})"
    with steer(gmail, Rule("rcpt", reply, recipient=[rcpt])):
        submit(submission(target, user), user.address, [rcpt], f"never arrives {tag}")
        wait_until(lambda: sessions_for(gmail, rcpt), 10, "a first delivery attempt")
        walk_the_clock(target.clock, gmail, rcpt, 27)
        reports = wait_for_dsns(target, user, rcpt, 2)
        time.sleep(0.3)  # anything more would show now
        reports = dsn_reports(inbox(target, user), rcpt)
    attempts = len(sessions_for(gmail, rcpt))
    assert not delivered(gmail, rcpt)
    return reports, rcpt, reply, attempts


@requirement(
    "PLATFORM",
    "outbound.max-age",
    "MUST",
    "mail a receiver tempfails for 24 hours bounces: exactly one failure DSN, with the "
    "receiver's last reply, after retries on a backoff schedule",
    needs=("fake-dns", "admin", "clock"),
)
def test_tempfail_for_a_day_bounces_once(
    expired: tuple[list[DsnReport], str, str, int],
) -> None:
    reports, rcpt, reply, attempts = expired
    failed = [r for r in reports if r.actions == ["failed"]]
    assert len(failed) == 1, f"failure DSNs: {len(failed)}"
    about = failed[0].about(rcpt)
    assert about is not None
    assert about.get("status", "").startswith(("4.", "5.")), about
    assert reply in about.get("diagnostic-code", ""), about
    assert 3 <= attempts <= 60, f"{attempts} attempts in 27 hours: not a backoff schedule"


@requirement(
    "PLATFORM",
    "outbound.delay-warning",
    "SHOULD",
    "the sender of mail still undelivered after some hours gets one 'delayed' DSN (RFC 3464 "
    "Action: delayed), not one per retry",
    needs=("fake-dns", "admin", "clock"),
)
def test_one_delay_warning(expired: tuple[list[DsnReport], str, str, int]) -> None:
    reports, rcpt, _, _ = expired
    delayed = [r for r in reports if r.actions == ["delayed"]]
    assert len(delayed) == 1, f"delay warnings: {len(delayed)}"
    about = delayed[0].about(rcpt)
    assert about is not None and about.get("status", "").startswith("4."), about
