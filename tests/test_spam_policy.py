"""SpamCheck: the score becomes a refusal, a Junk filing or nothing; config and wiring."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from test_spam_macros import AUTO_ONLY, DROPPER, docm, message_with

from fakes.dns import FakeDNS
from reference import config
from reference.app import App
from reference.clock import ManualClock
from reference.config import ConfigError
from reference.policy import KEEP, Action, CheckResult, Filing, Policy, Session, transaction
from reference.policy.dnsbl import BlocklistZone, Dnsbl
from reference.policy.spam import SpamCheck
from reference.scan.bayes import Bayes, Classifiers
from reference.scan.rules import GTUBE, GTUBE_JUNK
from reference.scan.spam import UriZone
from reference.state.tokens import SqliteTokenDB

MX = Session(role="mx", peer="203.0.113.7", helo="mx.remote.example")
SUBMISSION = Session(role="submission", peer="198.51.100.4", tls=True, user="alice@example.test")


def message(body: str = "Shall we meet at noon?", extra: str = "") -> bytes:
    return (
        "From: Alice <alice@remote.example>\r\nTo: bob@example.test\r\nSubject: lunch\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <1@remote.example>\r\n"
        f"{extra}\r\n{body}\r\n"
    ).encode()


async def decide(check: SpamCheck, msg: bytes, s: Session = MX) -> CheckResult:
    return await check.data(transaction(s, "alice@remote.example", ["bob@example.test"], msg))


async def test_clean_mail_passes_with_a_status_field() -> None:
    r = await decide(SpamCheck(), message())
    assert r.action is Action.CONTINUE and r.filing == KEEP
    assert r.prepend_headers == (
        b"X-Spam-Status: No, score=0.0 required=5 tests=none\r\nX-Spam-Score: 0.0\r\n"
    )


async def test_spam_is_refused_stating_score_and_threshold(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "mailspec.spam")
    r = await decide(SpamCheck(), message(GTUBE))
    assert r.action is Action.REJECT and r.reply is not None
    assert str(r.reply) == "550 5.7.1 Message refused as spam (score 1000.0, threshold 10)"
    # Which rules fired: in the log and the reason, never on the wire.
    assert "GTUBE=1000" in r.reason and "GTUBE" not in r.reply.text
    assert "event=spam.refused" in caplog.text and "rules=GTUBE=1000" in caplog.text


async def test_between_the_thresholds_is_junk() -> None:
    r = await decide(SpamCheck(reject_score=10, junk_score=5), message(GTUBE_JUNK))
    assert r.action is Action.CONTINUE
    assert r.filing == Filing(folder="Junk")
    head = r.edit(message(GTUBE_JUNK)).decode()
    assert head.startswith("X-Spam-Status: Yes, score=5.0 required=5 tests=GTUBE_JUNK\r\n")
    assert "X-Spam-Score: 5.0\r\nX-Spam-Flag: YES\r\n" in head


async def test_junk_variant_follows_the_configured_junk_score() -> None:
    r = await decide(SpamCheck(reject_score=20, junk_score=8.5), message(GTUBE_JUNK))
    assert r.filing == Filing(folder="Junk") and b"score=8.5 required=8.5" in r.prepend_headers


async def test_forged_spam_fields_are_replaced() -> None:
    forged = message(extra="X-Spam-Status: No, score=-100\r\nX-Spam-Flag: NO\r\n", body=GTUBE_JUNK)
    r = await decide(SpamCheck(), forged)
    out = r.edit(forged)
    assert b"score=-100" not in out and b"X-Spam-Flag: NO" not in out
    assert out.count(b"X-Spam-Status:") == 1


async def test_submission_is_refused_in_words_the_user_understands() -> None:
    r = await decide(SpamCheck(), message(GTUBE), SUBMISSION)
    assert r.reply is not None and (r.reply.code, r.reply.enhanced) == (550, "5.7.1")
    assert r.reply.text.startswith("Your message was not sent because it looks like spam")
    assert "(score 1000.0, threshold 10)" in r.reply.text


async def test_submission_is_never_filed_or_tagged() -> None:
    r = await decide(SpamCheck(), message(GTUBE_JUNK), SUBMISSION)
    assert r == CheckResult(Action.CONTINUE)


async def test_phishing_adds_up_to_junk() -> None:
    html = (
        "Content-Type: text/html\r\n\r\n<p>Dear customer, please log in to keep your account.</p>"
        '<a href="http://203.0.113.9/login">https://www.bank.example/login</a>'
    )
    raw = message(body="").replace(b"\r\n\r\n", b"\r\n" + html.encode(), 1)
    r = await decide(SpamCheck(), raw)
    assert r.filing == Filing(folder="Junk")
    assert b"PHISH_LINK_MISMATCH" in r.prepend_headers and b"URL_IP_LITERAL" in r.prepend_headers


async def test_engine_failure_fails_open(monkeypatch: pytest.MonkeyPatch) -> None:
    check = SpamCheck()

    def broken(msg: bytes) -> object:
        raise RuntimeError("bug")

    monkeypatch.setattr(check, "_local", broken)
    assert (await decide(check, message(GTUBE))).action is Action.CONTINUE


async def test_bayes_adds_its_band(monkeypatch: pytest.MonkeyPatch) -> None:
    bayes = Classifiers.memory()
    monkeypatch.setattr(Bayes, "score_parsed", lambda self, p: 0.995)
    r = await decide(SpamCheck(bayes=bayes), message())
    assert b"tests=BAYES_99" in r.prepend_headers and b"score=3.5" in r.prepend_headers


async def test_a_broken_bayes_database_is_no_opinion(tmp_path: Path) -> None:
    db = SqliteTokenDB(tmp_path / "bayes.sqlite3")
    db.close()  # every query now fails
    r = await decide(SpamCheck(bayes=Classifiers(db, min_spam=1, min_ham=1)), message())
    assert r.action is Action.CONTINUE and b"tests=none" in r.prepend_headers


@pytest.mark.parametrize(
    ("code", "action", "folder"),
    [(AUTO_ONLY, Action.CONTINUE, "Junk"), (DROPPER, Action.REJECT, None)],
)
async def test_office_macros_add_score(code: str, action: Action, folder: str | None) -> None:
    r = await decide(SpamCheck(macro_score=3.0), message_with("invoice.docm", docm(code)))
    assert r.action is action
    assert r.filing.folder == folder
    if action is Action.REJECT:
        assert "OFFICE_MACRO_DROPPER=3" in r.reason


async def test_macro_check_off() -> None:
    r = await decide(SpamCheck(macro_score=0), message_with("invoice.docm", docm(DROPPER)))
    assert r.action is Action.CONTINUE and b"OFFICE_MACRO" not in r.prepend_headers


# -- with the fake DNS -------------------------------------------------------------------------


async def test_uribl_listed_link_is_refused(dns_server: FakeDNS) -> None:
    dns_server.blocklist("uribl.test").list_name("spammy.example")
    check = SpamCheck(resolver=dns_server.resolver(1.0), uribl=[UriZone("uribl.test")])
    r = await decide(check, message("Offer: http://www.spammy.example/buy"))
    assert r.action is Action.REJECT and "URIBL_URIBL_TEST=10" in r.reason
    assert (await decide(check, message("See http://fine.example/"))).action is Action.CONTINUE


async def test_uribl_failure_never_refuses(dns_server: FakeDNS) -> None:
    dns_server.fail("spammy.example.uribl.test", mode="timeout")
    check = SpamCheck(resolver=dns_server.resolver(1.0), uribl=[UriZone("uribl.test")])
    assert (await decide(check, message("http://spammy.example/"))).action is Action.CONTINUE


async def test_dnsbl_light_listing_counts_as_score(dns_server: FakeDNS) -> None:
    dns_server.blocklist("pbl.test").list("203.0.113.7", "127.0.0.10")
    dnsbl = Dnsbl(dns_server.resolver(1.0), [BlocklistZone("pbl.test", {"127.0.0.10": 3.0})])
    check = SpamCheck(dnsbl=dnsbl)
    r = await decide(check, message("Act now"))  # URGENCY 1.5 + the listing's 3
    assert b"RCVD_IN_DNSBL" in r.prepend_headers and b"score=4.5" in r.prepend_headers
    # Authenticated users are not judged by their network's reputation.
    submitted = Session(role="submission", peer="203.0.113.7", user="alice@example.test")
    assert "RCVD_IN_DNSBL" not in (await check.score(submitted, message("Act now"))).rules


# -- configuration and wiring ------------------------------------------------------------------


def test_config_defaults_and_validation() -> None:
    cfg = config.load(None)
    assert (cfg.spam.enabled, cfg.spam.reject_score, cfg.spam.junk_score) == (True, 10.0, 5.0)
    assert config.load(None, overrides={"spam.reject_score": 12}).spam.reject_score == 12.0
    bad = {
        "spam.junk_score": 11.0,
        "spam.reject_score": 0,
        "spam.uribl_zones": ["not a zone"],
        "spam.macro_score": -1,
        "spam.bayes_min": 0,
    }
    for key, value in bad.items():
        with pytest.raises(ConfigError) as e:
            config.load(None, overrides={key: value})
        assert key in str(e.value)
    with pytest.raises(ConfigError, match="expected a number"):
        config.load(None, overrides={"spam.junk_score": "5"})


def test_rendered_config_reads_back() -> None:
    cfg = config.load(None, overrides={"spam.junk_score": 6.5, "spam.uribl_zones": ["u.test"]})
    text = config.render(cfg)
    assert "junk_score = 6.5" in text
    import tomllib

    again = config.from_dict(tomllib.loads(text))
    assert again.spam == cfg.spam


def _app(tmp_path: Path, **overrides: object) -> App:
    settings = {"dns.nameservers": ["127.0.0.1:9"], **overrides}
    return App(config.load(None, data_dir=str(tmp_path), overrides=settings), ManualClock())


def test_chain_order_spam_before_auth_and_signing_last(tmp_path: Path) -> None:
    app = _app(tmp_path, **{"dnsbl.zones": ["zen.test"], "spam.uribl_zones": ["uribl.test"]})
    names = [c.name for c in app.policy.checks]
    assert names.index("spam") < names.index("sender-authentication")
    assert names[-1] == "dkim-signing"
    spam = next(c for c in app.policy.checks if isinstance(c, SpamCheck))
    dnsbl = next(c for c in app.policy.checks if isinstance(c, Dnsbl))
    assert spam.dnsbl is dnsbl  # reused, not duplicated
    assert [z.zone for z in spam.uribl] == ["uribl.test"]
    assert spam.bayes is app.bayes and app.bayes is not None
    assert (tmp_path / "bayes.sqlite3").exists()
    app.directory.close()
    app.bayes.close()


def test_disabled_means_no_check_and_no_database(tmp_path: Path) -> None:
    app = _app(tmp_path, **{"spam.enabled": False})
    assert not any(isinstance(c, SpamCheck) for c in app.policy.checks)
    assert app.bayes is None
    app.directory.close()


async def test_policy_chain_refuses_before_later_checks() -> None:
    class Later(SpamCheck):
        called = False

        async def data(self, *a: object) -> CheckResult:  # type: ignore[override]
            Later.called = True
            return CheckResult(Action.CONTINUE)

    policy = Policy([SpamCheck(), Later()])
    r = await policy.data(transaction(MX, "a@remote.example", ["b@example.test"], message(GTUBE)))
    assert r.action is Action.REJECT and not Later.called


def test_status_field_is_folded() -> None:
    from reference.policy.spam import _fold

    out = _fold(
        "X-Spam-Status", "Yes, score=21.0 tests=" + ",".join(f"R_{i:02}" for i in range(40))
    )
    lines = out.decode().split("\r\n")
    assert lines[-1] == "" and all(len(line) <= 78 for line in lines)
    assert all(line.startswith("\t") for line in lines[1:-1])
    assert out.replace(b"\r\n\t", b"").count(b",") == 40
