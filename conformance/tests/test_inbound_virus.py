"""PLATFORM inbound.virus / outbound.virus: viruses are refused in the dialogue, never dropped."""

from __future__ import annotations

import base64
from email.message import EmailMessage

from conformance import requirement
from conformance.plugin import SMTPConnector
from conformance.target import Target

# The EICAR test file (a harmless string every scanner treats as a virus).
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def infected(sender: str, rcpt: str) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, rcpt, "invoice"
    m.set_content("Please see the attached invoice.")
    m.add_attachment(EICAR, maintype="application", subtype="octet-stream", filename="invoice.com")
    return m.as_bytes().replace(b"\n", b"\r\n")


@requirement(
    "PLATFORM",
    "inbound.virus",
    "MUST",
    "a message carrying a virus is refused at DATA with 554 5.7.1 naming the virus",
    needs=("antivirus",),
)
def test_inbound_virus_is_refused(smtp: SMTPConnector, target: Target) -> None:
    client = smtp.session("smtp")
    client.mail("sender@remote.example").expect(250, doing="MAIL FROM")
    client.rcpt(target.account.address).expect(250, doing="RCPT TO")
    reply = client.data(infected("sender@remote.example", target.account.address))
    assert reply.code == 554 and reply.enhanced == "5.7.1", str(reply)
    assert "eicar" in reply.text.lower() or "virus" in reply.text.lower()


@requirement(
    "PLATFORM",
    "outbound.virus",
    "MUST",
    "a user submitting a virus gets 550 5.7.1 saying so; nothing is sent",
    needs=("antivirus",),
)
def test_outbound_virus_is_refused(smtp: SMTPConnector, target: Target) -> None:
    client = smtp.session("submission", tls=True)
    acc = target.account
    token = base64.b64encode(f"\0{acc.address}\0{acc.password}".encode()).decode()
    client.command(f"AUTH PLAIN {token}").expect(235, doing="AUTH PLAIN")
    client.mail(acc.address).expect(250, doing="MAIL FROM")
    client.rcpt("friend@remote.example").expect(250, doing="RCPT TO")
    reply = client.data(infected(acc.address, "friend@remote.example"))
    assert reply.code == 550 and reply.enhanced == "5.7.1", str(reply)
    assert "virus" in reply.text.lower()
