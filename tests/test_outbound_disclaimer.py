"""Disclaimers appended MIME-safely, and the header rules of submitted mail."""

from __future__ import annotations

import base64
import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from reference.directory import Directory
from reference.policy import (
    CONTINUE,
    Action,
    Check,
    CheckResult,
    Policy,
    Session,
    Transaction,
    transaction,
)
from reference.policy.disclaimer import (
    Disclaimer,
    DisclaimerCheck,
    DisclaimerStore,
    append_disclaimer,
)
from reference.policy.submission import HeaderRules
from reference.values import FieldName, HeaderField, parse_header_rules

D = Disclaimer.from_text("Confidential: for the addressee only.\nExample Ltd, Registered in Test")
UTF8 = Disclaimer.from_text("Vertraulich, nur für den Empfänger (1 €).")


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def parse(raw: bytes) -> EmailMessage:
    """Parsed; CRLF turned into LF first, as a mail reader sees it."""
    raw = raw.replace(b"\r\n", b"\n")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def plain(body: bytes = b"Hello Bob,\r\nsee you.\r\n", headers: bytes = b"") -> bytes:
    return (
        b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: hi\r\n"
        + headers
        + b"\r\n"
        + body
    )


def test_plain_ascii_message_gets_the_text_and_nothing_else_changes() -> None:
    raw = plain()
    out = append_disclaimer(raw, D)
    assert out is not None
    assert out.startswith(raw)  # the header and the old body, byte for byte
    assert out.endswith(
        b"\r\nConfidential: for the addressee only.\r\nExample Ltd, Registered in Test\r\n"
    )
    assert b"\n" not in out.replace(b"\r\n", b"")


def test_non_ascii_disclaimer_in_an_ascii_message_becomes_utf8_quoted_printable() -> None:
    out = append_disclaimer(plain(), UTF8)
    assert out is not None
    msg = parse(out)
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_charset() == "utf-8"
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert out.isascii()
    text = msg.get_content()
    assert text.startswith("Hello Bob,\nsee you.\n")
    assert "Vertraulich, nur für den Empfänger (1 €)." in text


def test_latin1_quoted_printable_keeps_its_charset_when_it_can() -> None:
    body = "Grüße, Alice\r\n".encode("latin-1")
    qp = b"Gr=FC=DFe, Alice\r\n"
    assert body
    raw = plain(
        qp,
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n",
    )
    out = append_disclaimer(raw, Disclaimer.from_text("Société Exemple"))
    assert out is not None
    msg = parse(out)
    assert msg.get_content_charset() == "iso-8859-1"
    assert msg.get_content() == "Grüße, Alice\n\nSociété Exemple\n"


def alternative(html_cte: str = "base64") -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "alice@example.test", "bob@remote.test", "alt"
    m.set_content("Plain body, naïve café.\n", charset="iso-8859-1", cte="quoted-printable")
    m.add_alternative(
        "<html><body><p>HTML body ✓</p></body></html>\n", subtype="html", cte=html_cte
    )
    return crlf(m.as_bytes())


def test_alternative_gets_it_in_both_parts() -> None:
    raw = alternative()
    out = append_disclaimer(raw, UTF8)
    assert out is not None
    msg = parse(out)
    text_part, html_part = list(msg.iter_parts())
    assert text_part.get_content_charset() == "utf-8"  # latin-1 cannot carry the euro sign
    assert text_part.get_content().endswith("Vertraulich, nur für den Empfänger (1 €).\n")
    assert "naïve café" in text_part.get_content()
    body = html_part.get_content()
    assert body.index("Vertraulich") < body.index("</body>")
    assert "HTML body ✓" in body
    assert html_part["Content-Transfer-Encoding"] == "base64"
    # base64 lines stay short
    encoded = html_part.get_payload()
    assert isinstance(encoded, str)
    assert all(len(line) <= 76 for line in encoded.splitlines())


def test_html_in_a_charset_that_cannot_carry_the_text_uses_references() -> None:
    raw = plain(
        b"<p>hi</p>\r\n",
        b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=us-ascii\r\n",
    )
    out = append_disclaimer(raw, UTF8)
    assert out is not None and out.isascii()
    assert b"&#8364;" in out  # the euro sign
    assert b"charset=us-ascii" in out


def test_mixed_only_the_body_not_the_attachments() -> None:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "alice@example.test", "bob@remote.test", "files"
    m.set_content("See the attached notes.\n")
    m.add_attachment("attached notes\n", filename="notes.txt")
    m.add_attachment(b"\x00\x01binary", maintype="application", subtype="octet-stream")
    raw = crlf(m.as_bytes())
    out = append_disclaimer(raw, D)
    assert out is not None
    parts = list(parse(out).iter_parts())
    assert "Confidential" in parts[0].get_content()
    assert parts[1].get_content() == "attached notes\n"
    # Everything after the first part is byte for byte what it was.
    boundary = parse(raw).get_boundary()
    assert boundary is not None
    tail = raw[raw.index(f"--{boundary}".encode(), raw.index(b"See the attached")) :]
    assert out.endswith(tail)


def test_nested_alternative_inside_mixed() -> None:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "alice@example.test", "bob@remote.test", "nested"
    m.set_content("plain\n")
    m.add_alternative("<p>html</p>\n", subtype="html")
    m.add_attachment(b"PDF", maintype="application", subtype="pdf", filename="a.pdf")
    out = append_disclaimer(crlf(m.as_bytes()), D)
    assert out is not None
    alt, pdf = list(parse(out).iter_parts())
    assert all("Confidential" in p.get_content() for p in alt.iter_parts())
    assert pdf.get_content() == b"PDF"


@pytest.mark.parametrize(
    "ctype",
    [
        'multipart/signed; protocol="application/pgp-signature"; micalg=pgp-sha256; boundary="b"',
        'multipart/encrypted; protocol="application/pgp-encrypted"; boundary="b"',
        "application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m",
    ],
)
def test_signed_or_encrypted_mail_is_left_alone(ctype: str) -> None:
    raw = plain(
        b"--b\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n--b\r\n"
        b"Content-Type: application/pgp-signature\r\n\r\nSIG\r\n--b--\r\n",
        f"MIME-Version: 1.0\r\nContent-Type: {ctype}\r\n".encode(),
    )
    assert append_disclaimer(raw, D) is None


def test_inline_pgp_is_left_alone() -> None:
    raw = plain(b"-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nhi\r\n")
    assert append_disclaimer(raw, D) is None


def test_malformed_multipart_is_left_alone() -> None:
    raw = plain(
        b"--b\r\nContent-Type: text/plain\r\n\r\nno closing delimiter\r\n",
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n',
    )
    assert append_disclaimer(raw, D) is None


def test_base64_text_part_round_trips() -> None:
    body = base64.encodebytes(b"Hallo\r\nWelt\r\n").replace(b"\n", b"\r\n")
    raw = plain(
        body,
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n",
    )
    out = append_disclaimer(raw, UTF8)
    assert out is not None
    text = parse(out).get_content().replace("\r\n", "\n")  # base64 keeps CRLF inside
    assert text == "Hallo\nWelt\n\nVertraulich, nur für den Empfänger (1 €).\n"


# -- the checks, in a chain with DKIM-like followers


USER = Session(role="submission", peer="192.0.2.1", tls=True, user="alice@example.test")


@pytest.fixture
def directory(tmp_path: Path) -> Directory:
    d = Directory(tmp_path / "dir.sqlite3")
    d.add_domain("example.test")
    d.add_user("alice@example.test", "pw")
    return d


class Seen(Check):
    """Records what it was given, as DKIM signing would sign it."""

    name = "seen"

    def __init__(self) -> None:
        self.msg = b""

    async def data(self, tx: Transaction) -> CheckResult:
        self.msg = tx.msg.raw
        return CONTINUE


async def test_rewrites_reach_the_checks_after_them(directory: Directory, tmp_path: Path) -> None:
    (tmp_path / "disclaimers").mkdir()
    (tmp_path / "disclaimers" / "example.test.txt").write_text("Example disclaimer\n")
    seen = Seen()
    policy = Policy(
        [
            HeaderRules(
                remove=[FieldName("X-Originating-IP"), FieldName("User-Agent")],
                add=[HeaderField("X-Mailspec-Submitted: yes")],
            ),
            DisclaimerCheck(DisclaimerStore(tmp_path / "disclaimers"), directory),
            seen,
        ]
    )
    raw = plain(headers=b"X-Originating-IP: [198.51.100.7]\r\nUser-Agent: Mutt\r\n")
    result = await policy.data(transaction(USER, "alice@example.test", ["bob@remote.test"], raw))
    assert result.action is Action.CONTINUE
    final = result.edit(raw)
    assert final == seen.msg  # what DKIM would sign is what is spooled
    assert final.startswith(b"X-Mailspec-Submitted: yes\r\nFrom: alice@example.test\r\n")
    assert b"X-Originating-IP" not in final and b"User-Agent" not in final
    assert final.endswith(b"\r\nExample disclaimer\r\n")


async def test_inbound_mail_is_not_rewritten(directory: Directory, tmp_path: Path) -> None:
    (tmp_path / "example.test.txt").write_text("Example disclaimer\n")
    mx = Session(role="mx", peer="192.0.2.1")
    raw = plain(headers=b"X-Originating-IP: [198.51.100.7]\r\n")
    for check in (
        HeaderRules(remove=[FieldName("X-Originating-IP")]),
        DisclaimerCheck(DisclaimerStore(tmp_path), directory),
    ):
        r = await check.data(transaction(mx, "alice@example.test", ["bob@example.test"], raw))
        assert r.message is None


async def test_no_disclaimer_file_no_change(directory: Directory, tmp_path: Path) -> None:
    check = DisclaimerCheck(DisclaimerStore(tmp_path / "none"), directory)
    r = await check.data(transaction(USER, "alice@example.test", ["bob@remote.test"], plain()))
    assert r.message is None


def test_header_rules_are_validated() -> None:
    with pytest.raises(ValueError):
        parse_header_rules(["Bad Name"], [])
    with pytest.raises(ValueError):
        parse_header_rules([], ["NoColon"])
    rules = parse_header_rules(["X-Originating-IP:"], ["X-A: 1"])
    assert rules == ({"x-originating-ip"}, b"X-A: 1\r\n")
