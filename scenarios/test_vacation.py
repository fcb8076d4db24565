"""Story: "my vacation reply went out once to each sender and never to the list".

Bob sets his out-of-office with the CLI (no Sieve written). Two people write to him, one of
them twice, and a mailing list posts to him: each person gets exactly one reply (threaded
under their first message, marked Auto-Submitted), the list none, and every message is in
his INBOX. After the period (the injected clock moves on) a sender hears it once more; after
`mailspec vacation clear`, nobody does.
"""

from __future__ import annotations

import contextlib
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.internet import FakeInternet
from reference.clock import ManualClock
from reference.testing import ReferenceServer, mailspec

BOB = "bob@example.test"


@pytest.fixture
def internet() -> Iterator[FakeInternet]:
    with FakeInternet(providers=["gmail"], clock=ManualClock()) as net:
        net.dns.add("remote.test", "MX", "10 mx.gmail.test.")
        net.dns.add("lists.remote.test", "MX", "10 mx.gmail.test.")
        yield net


def send(ref: ReferenceServer, sender: str, n: int, extra: str = "") -> None:
    data = (
        f"From: <{sender}>\r\nTo: <{BOB}>\r\nSubject: question {n}\r\n"
        f"Message-ID: <q{n}@remote.test>\r\n{extra}\r\nHi Bob.\r\n"
    )
    with smtplib.SMTP("127.0.0.1", ref.port("mx"), timeout=10) as s:
        s.sendmail(sender, [BOB], data.encode())
    ref.wait_delivered()


@contextlib.contextmanager
def bobs_server(data_dir: Path, internet: FakeInternet) -> Iterator[ReferenceServer]:
    """A node with Bob's account, whose replies reach the fake internet."""
    with ReferenceServer(
        data_dir, nameservers=[internet.nameserver], overrides={"relay.port": internet.smtp_port}
    ) as ref:
        ref.add_domain("example.test")
        ref.add_user(BOB, "bob-pw")
        yield ref


def test_vacation_once_per_sender_never_to_the_list(tmp_path: Path, internet: FakeInternet) -> None:
    data_dir = tmp_path / "var"
    with bobs_server(data_dir, internet) as ref:
        mailspec(
            "vacation", "set", BOB,
            "--subject", "Out of office",
            "--text", "I am away until Monday.",
            "--days", "7",
            data_dir=data_dir,
        )  # fmt: skip
        send(ref, "alice@remote.test", 1)
        send(ref, "alice@remote.test", 2)
        send(ref, "carol@remote.test", 3)
        send(ref, "team-bounces@lists.remote.test", 4, "List-Id: <team.lists.remote.test>\r\n")
        send(ref, "news@lists.remote.test", 5, "Precedence: bulk\r\n")

        mx = internet.mx["gmail"]
        replies = [(d.mail_from, d.rcpt_tos, d.data) for d in mx.deliveries]
        assert sorted(r for _, (r,), _ in replies) == ["alice@remote.test", "carol@remote.test"]
        for mail_from, (rcpt,), data in replies:
            assert mail_from == ""  # RFC 3834 3.3: from the null sender
            assert b"Auto-Submitted: auto-replied" in data
            assert b"Subject: Out of office" in data
            first = b"<q1@remote.test>" if rcpt.startswith("alice") else b"<q3@remote.test>"
            assert b"In-Reply-To: " + first in data and b"References: " + first in data
        assert len(ref.mailbox_messages(BOB)) == 5  # the reply never costs a message

        ref.clock.advance(7 * 86400 + 60)  # a week later: alice may hear it again
        send(ref, "alice@remote.test", 6)
        assert len(mx.deliveries) == 3

        mailspec("vacation", "clear", BOB, data_dir=data_dir)
        send(ref, "dave@remote.test", 7)
        assert len(mx.deliveries) == 3
        assert len(ref.mailbox_messages(BOB)) == 7


def test_vacation_beside_my_own_filters(tmp_path: Path, internet: FakeInternet) -> None:
    """Story: "my filters kept sorting my mail while I was away, and the reply still went".

    Bob has his own script (work mail into Work, newsletters discarded) and sets his
    out-of-office: both apply. The script files each message; the reply goes to the person
    whose mail he kept, never for mail his own filter discarded.
    """
    data_dir = tmp_path / "var"
    with bobs_server(data_dir, internet) as ref:
        script = tmp_path / "mine.sieve"
        script.write_text(
            'require ["fileinto"];\r\n'
            'if header :contains "subject" "question 1" { fileinto "Work"; }\r\n'
            'elsif header :contains "subject" "question 2" { discard; }\r\n'
        )
        mailspec("sieve", "put", BOB, "mine", str(script), "--activate", data_dir=data_dir)
        mailspec(
            "vacation", "set", BOB, "--subject", "Away", "--text", "Back soon.", data_dir=data_dir
        )
        send(ref, "alice@remote.test", 1)  # filed in Work by his script, and answered
        send(ref, "news@remote.test", 2)  # discarded by his own filter: no reply
        mx = internet.mx["gmail"]
        assert [list(d.rcpt_tos) for d in mx.deliveries] == [["alice@remote.test"]]
        assert b"Subject: Away" in mx.deliveries[0].data
        assert ref.mailbox_messages(BOB) == []
        assert len(ref.mailbox_messages(BOB, "Work")) == 1
