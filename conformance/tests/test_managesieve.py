"""ManageSieve (RFC 5804): users manage their Sieve scripts over TLS."""

from __future__ import annotations

from conformance import requirement
from conformance.managesieve_client import ManageSieveClient, quote
from conformance.target import Target
from conformance.tests.sieve_support import own_scripts, sieve_session, sieve_user

GOOD = 'require "fileinto";\r\nif header :contains "subject" "x" { fileinto "X"; }\r\n'
BAD = 'fileinto "X";\r\n'  # fileinto used without require: RFC 5228 3.2


@requirement(
    "PLATFORM",
    "sieve.managesieve-tls",
    "MUST",
    "ManageSieve offers STARTTLS and refuses AUTHENTICATE PLAIN before it",
)
def test_no_authentication_before_starttls(target: Target) -> None:
    account = target.account
    ep = target.endpoint("managesieve")
    client = ManageSieveClient.connect(ep.host, ep.port, target.timeout)
    try:
        assert "STARTTLS" in client.capabilities(), client.greeting.lines
        reply = client.authenticate(account.address, account.password)
        assert not reply.ok, f"AUTHENTICATE before STARTTLS: {reply}"
    finally:
        client.close()


@requirement(
    "RFC5804",
    "2.2",
    "MUST",
    "after STARTTLS the server sends its capabilities again, then OK",
)
def test_capabilities_again_after_starttls(target: Target) -> None:
    ep = target.endpoint("managesieve")
    client = ManageSieveClient.connect(ep.host, ep.port, target.timeout)
    try:
        reply, caps = client.starttls(target.ssl_context(), target.server_name(ep))
        assert reply.ok, str(reply)
        assert caps.ok and "SIEVE" in client.capabilities(caps), caps.lines
        assert "PLAIN" in client.capabilities(caps).get("SASL", "").upper().split()
    finally:
        client.close()


@requirement(
    "RFC5804",
    "2.6",
    "MUST",
    "PUTSCRIPT refuses a script that does not compile (NO) and stores nothing",
)
def test_putscript_refuses_a_bad_script(target: Target) -> None:
    with own_scripts(target) as s:
        assert not s.client.putscript(s.name("broken"), BAD).ok
        assert "broken" not in s.listing()


@requirement(
    "RFC5804",
    "2.12",
    "MUST",
    "CHECKSCRIPT answers OK for a valid script and NO for one that does not compile",
)
def test_checkscript(target: Target) -> None:
    with sieve_session(target, sieve_user(target)) as c:
        assert c.checkscript(GOOD).ok
        assert not c.checkscript(BAD).ok


@requirement(
    "RFC5804",
    "2.8",
    "MUST",
    "SETACTIVE makes a script the active one, LISTSCRIPTS marks it ACTIVE, and SETACTIVE "
    '"" leaves none active',
)
def test_setactive_and_listscripts(target: Target) -> None:
    with own_scripts(target) as s:
        c = s.client
        assert c.putscript(s.name("one"), GOOD).ok and c.putscript(s.name("two"), "keep;\r\n").ok
        assert c.command(b"SETACTIVE", quote(s.name("two"))).ok
        assert s.listing() == {"one": False, "two": True}
        assert c.command(b"SETACTIVE", quote("")).ok
        assert not any(c.listscripts()[1].values())
        assert not c.command(b"SETACTIVE", quote(s.name("nonexistent"))).ok


@requirement(
    "RFC5804",
    "2.9",
    "MUST",
    "GETSCRIPT returns the script as stored",
)
def test_getscript(target: Target) -> None:
    with own_scripts(target) as s:
        c = s.client
        assert c.putscript(s.name("mine"), GOOD).ok
        reply = c.command(b"GETSCRIPT", quote(s.name("mine")))
        assert reply.ok and reply.literals == [GOOD.encode()], str(reply)
        missing = c.command(b"GETSCRIPT", quote(s.name("nope")))
        assert not missing.ok and missing.code.upper() == "NONEXISTENT", str(missing)


@requirement(
    "RFC5804",
    "2.10",
    "MUST",
    "DELETESCRIPT removes a script but refuses the active one (ACTIVE)",
)
def test_deletescript(target: Target) -> None:
    with own_scripts(target) as s:
        c = s.client
        assert c.putscript(s.name("a"), GOOD).ok and c.putscript(s.name("b"), GOOD).ok
        assert c.command(b"SETACTIVE", quote(s.name("a"))).ok
        refused = c.command(b"DELETESCRIPT", quote(s.name("a")))
        assert not refused.ok and refused.code.upper() == "ACTIVE", str(refused)
        assert c.command(b"DELETESCRIPT", quote(s.name("b"))).ok
        assert s.listing() == {"a": True}


@requirement(
    "RFC5804",
    "2.11",
    "MUST",
    "RENAMESCRIPT renames a script, the active one stays active, and an existing name is refused",
)
def test_renamescript(target: Target) -> None:
    with own_scripts(target) as s:
        c = s.client
        assert c.putscript(s.name("old"), GOOD).ok and c.putscript(s.name("other"), GOOD).ok
        assert c.command(b"SETACTIVE", quote(s.name("old"))).ok
        assert c.command(b"RENAMESCRIPT", quote(s.name("old")), quote(s.name("new"))).ok
        assert s.listing() == {"new": True, "other": False}
        assert not c.command(b"RENAMESCRIPT", quote(s.name("new")), quote(s.name("other"))).ok


@requirement(
    "RFC5804",
    "2.5",
    "MUST",
    "HAVESPACE answers OK for a small script and NO with a QUOTA code for one over the limit",
)
def test_havespace(target: Target) -> None:
    with sieve_session(target, sieve_user(target)) as c:
        assert c.command(b"HAVESPACE", quote("s"), b"100").ok
        big = c.command(b"HAVESPACE", quote("s"), b"1000000000")
        assert not big.ok and big.code.upper().startswith("QUOTA"), str(big)


@requirement(
    "RFC5804",
    "2.13",
    "MUST",
    "NOOP with a tag answers OK with that TAG response code",
)
def test_noop_tag(target: Target) -> None:
    with sieve_session(target, sieve_user(target)) as c:
        reply = c.command(b"NOOP", quote("t-42"))
        assert reply.ok and reply.code == 'TAG "t-42"', str(reply)


@requirement(
    "RFC5804",
    "2.1",
    "MUST",
    "a wrong password is refused (NO)",
)
def test_wrong_password(target: Target) -> None:
    account = sieve_user(target)
    with sieve_session(target) as c:
        assert not c.authenticate(account.address, account.password + "x").ok
