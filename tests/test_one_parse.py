"""The inbound chain splits a message once: every check reads the one message value.

What is counted is our header split (``reference.mail.message.split_header``) and the MIME
parse (``Message.mime``, which the spam engine reads). One parser still reads the message on
its own: dkimpy canonicalises it for DKIM and ARC.
"""

from __future__ import annotations

from pathlib import Path

from fakes.dns.server import FakeDNS
from reference import config
from reference.app import App
from reference.auth import dkim
from reference.auth.keys import KeyStore
from reference.clock import ManualClock
from reference.mail.message import Message, mime_parses, splits
from reference.policy import Action, Session

MX = Session(role="mx", peer="192.0.2.10", helo="mail.bank.example")


async def test_the_whole_inbound_chain_splits_the_message_once(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "bank").generate("bank.example", "k")
    raw = (
        b"From: alice@bank.example\r\nTo: bob@example.test\r\nSubject: lunch\r\n"
        b"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <1@bank.example>\r\n"
        b"List-Id: <team.bank.example>\r\n\r\nSee you at noon.\r\n"
    )
    with FakeDNS() as dns:
        dns.spf("bank.example", "v=spf1 ip4:192.0.2.10 -all")
        dns.dmarc("bank.example", "v=DMARC1; p=reject")
        for k in keys:
            v = k.public_record()
            dns.add_txt(k.record_name, *[v[i : i + 255] for i in range(0, len(v), 255)])
        signed = dkim.sign(raw, keys, now=ManualClock().now()) + raw
        cfg = config.load(
            None,
            data_dir=str(tmp_path / "var"),
            overrides={"dns.nameservers": [f"{dns.host}:{dns.port}"], "greylist.enabled": False},
        )
        app = App(cfg, ManualClock())
        try:
            app.directory.add_domain("example.test")
            app.directory.add_user("bob@example.test", "pw")
            names = {c.name for c in app.policy.checks}
            # The checks that read the header: authentication (SPF, DKIM, ARC, DMARC and the
            # Authentication-Results), spam, the bulk lane.
            assert {"sender-authentication", "spam", "bulk-lane"} <= names
            tx = app.policy.begin(MX, "alice@bank.example")
            assert (await app.policy.mail(tx)).action is Action.CONTINUE
            assert (await app.policy.rcpt(tx, "bob@example.test")).action is Action.CONTINUE
            tx.recipients.append("bob@example.test")
            before, mime_before = splits.value, mime_parses.value
            tx.message = received = Message(signed)
            result = await app.policy.data(tx)
            spooled = result.edit(received)
            assert splits.value - before == 1
            assert mime_parses.value - mime_before == 1
            assert "mime" in vars(received)  # the spam engine read the transaction's parse
            assert result.action is Action.CONTINUE
            assert b"dkim=pass" in spooled and b"dmarc=pass" in spooled
            tx.close()
        finally:
            app.directory.close()
            if app.bayes is not None:
                app.bayes.close()
