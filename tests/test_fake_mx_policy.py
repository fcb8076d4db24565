"""Fake MX policies: matching, first match wins, defaults, validation and the TOML format."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fakes.mx.policy as policy_module
from fakes.mx import ACCEPT, STAGES, Context, Greylist, HangUp, Policy, Reply, Rule, catalogue
from fakes.mx.policy import match_address, parse_action


@pytest.mark.parametrize(
    ("pattern", "address", "expected"),
    [
        ("bob@gmail.test", "bob@gmail.test", True),
        ("bob@gmail.test", "BOB@Gmail.Test", True),
        ("bob@gmail.test", "bobby@gmail.test", False),
        ("@gmail.test", "anyone@gmail.test", True),
        ("@gmail.test", "anyone@mail.gmail.test", False),
        ("@*.gmail.test", "anyone@mail.gmail.test", True),
        ("gmail.test", "anyone@gmail.test", True),
        ("unknown-*@", "unknown-42@outlook.test", True),
        ("unknown-*@", "known@outlook.test", False),
        ("b?b@", "bob@x.test", True),
        ("*", "bob@x.test", True),
        ("<>", "", True),
        ("*", "", False),
        ("<>", "bob@x.test", False),
    ],
)
def test_address_patterns(pattern: str, address: str, expected: bool) -> None:
    assert match_address(pattern, address) is expected


@given(st.ip_addresses(v=4), st.integers(0, 32), st.ip_addresses(v=4))
def test_source_matches_exactly_the_addresses_of_the_network(
    base: ipaddress.IPv4Address, prefix: int, client: ipaddress.IPv4Address
) -> None:
    net = ipaddress.ip_network(f"{base}/{prefix}", strict=False)
    rule = Rule("connect", "554 5.7.1 no", source=str(net))
    assert rule.matches("connect", Context(str(client))) is (client in net)


def test_ipv6_and_bare_addresses() -> None:
    rule = Rule("connect", HangUp(), source=["::1", "127.0.1.5"])
    assert rule.matches("connect", Context("::1"))
    assert rule.matches("connect", Context("127.0.1.5"))
    assert not rule.matches("connect", Context("127.0.1.6"))


networks = st.builds(
    lambda a, p: ipaddress.ip_network(f"{a}/{p}", strict=False),
    st.ip_addresses(v=4, network="127.0.0.0/8"),
    st.integers(8, 32),
)


@given(st.lists(networks, max_size=6), st.ip_addresses(v=4, network="127.0.0.0/8"))
def test_first_matching_rule_wins(nets: list[ipaddress.IPv4Network], client: object) -> None:
    rules = [Rule("rcpt", f"550 5.7.1 rule {i}", source=n) for i, n in enumerate(nets)]
    decision = Policy(rules).decide("rcpt", Context(str(client), recipients=("a@b.test",)))
    first = next((i for i, n in enumerate(nets) if client in n), None)
    if first is None:
        assert decision.action == ACCEPT and decision.rule is None
    else:
        assert decision.action == Reply(550, "5.7.1", f"rule {first}")
        assert decision.rule == f"rule {first + 1}"


def test_all_conditions_must_hold_and_stage_must_match() -> None:
    rule = Rule(
        "rcpt", "gmail.nouser.5xx", source="127.0.1.0/24", recipient="@gmail.test", sender="<>"
    )
    ctx = Context("127.0.1.9", sender="", recipients=("bob@gmail.test",))
    assert rule.matches("rcpt", ctx)
    assert not rule.matches("mail", ctx)
    assert not rule.matches("rcpt", Context("127.0.2.9", sender="", recipients=ctx.recipients))
    assert not rule.matches("rcpt", Context("127.0.1.9", sender="a@b", recipients=ctx.recipients))
    assert not rule.matches("rcpt", Context("127.0.1.9", sender="", recipients=("b@yahoo.test",)))
    data_rule = Rule("data", "451 4.3.0 later", recipient="bob@")
    assert data_rule.matches("data", Context("127.0.0.1", sender="", recipients=("a@x", "bob@y")))
    tls_rule = Rule("mail", "gmail.tls.5xx", tls=False)
    assert tls_rule.matches("mail", Context("127.0.0.1", tls=False))
    assert not tls_rule.matches("mail", Context("127.0.0.1", tls=True))


def test_default_applies_at_its_stage_only() -> None:
    policy = Policy([Rule("rcpt", source="127.0.1.77")], "outlook.blocklist.5xx")
    assert policy.decide("connect", Context("127.0.1.5")).action == ACCEPT
    assert policy.decide("rcpt", Context("127.0.1.5")).action.name == "outlook.blocklist.5xx"  # type: ignore[union-attr]
    assert policy.decide("rcpt", Context("127.0.1.77")).action == ACCEPT
    hang_up = Policy(default="hangup", default_stage="connect")
    assert hang_up.decide("connect", Context("127.0.0.1")).action == HangUp()


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("accept", ACCEPT),
        ("greylist", Greylist(300.0)),
        ("greylist:60", Greylist(60.0)),
        ("hangup", HangUp(0)),
        ("hangup:512", HangUp(512)),
        ("tempfail.452", Reply(452, "4.3.1", "Insufficient system storage")),
        ("550 5.1.1 No such user", Reply(550, "5.1.1", "No such user")),
    ],
)
def test_actions_parse_from_text(text: str, action: object) -> None:
    assert parse_action(text) == action


@pytest.mark.parametrize("text", ["reject", "greylist:soon", "hangup:-x", "accept:1", "6 x"])
def test_bad_actions_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_action(text)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stage": "mail", "recipient": "bob@"}, "recipient"),
        ({"stage": "connect", "sender": "<>"}, "sender"),
        ({"stage": "data", "action": "greylist"}, "greylist"),
        ({"stage": "rcpt", "action": "hangup:10"}, "data stage"),
        ({"stage": "quit"}, "unknown stage"),
        ({"source": "300.1.2.3"}, "does not appear"),
        ({"delay": -1.0}, "negative"),
    ],
)
def test_invalid_rules_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        Rule(**kwargs)  # type: ignore[arg-type]


def documented_example() -> str:
    """The TOML example in fakes.mx.policy's docstring, de-indented."""
    doc = policy_module.__doc__ or ""
    lines = []
    for line in doc.split("::\n\n", 1)[1].splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines)


def test_documented_example_parses() -> None:
    policy = Policy.from_toml(documented_example())
    assert policy.default == ACCEPT and policy.default_stage == "rcpt"
    assert dict(policy.auth) == {"relay": "secret"} and policy.auth_require_tls
    first, nouser, grey, hang, tls, spf = policy.rules
    assert first.name == "bad neighbourhood" and first.action == catalogue.reply(
        "gmail.reputation.5xx"
    )
    assert first.source == (
        ipaddress.ip_network("127.0.1.0/28"),
        ipaddress.ip_network("127.0.1.200/32"),
    )
    assert nouser.stage == "rcpt" and nouser.action == Reply(550, "5.1.1", "No such user")
    assert grey.action == Greylist(300.0)
    assert hang.stage == "data" and hang.action == HangUp(512) and hang.delay == 2.5
    assert tls.tls is False and tls.stage == "mail"
    assert spf.spf == ("fail", "softfail") and spf.action == catalogue.reply(
        "gmail.unauthenticated.5xx"
    )


def test_spf_condition() -> None:
    rule = Rule("mail", "550 5.7.26 unauthenticated", spf=["Fail"])
    assert rule.matches("mail", Context("127.0.1.1", sender="a@b.test", spf="fail"))
    assert not rule.matches("mail", Context("127.0.1.1", sender="a@b.test", spf="pass"))
    assert not rule.matches("mail", Context("127.0.1.1", sender="a@b.test"))  # not checked
    assert Policy.from_toml(Policy([rule]).to_toml()).rules[0].spf == ("fail",)
    with pytest.raises(ValueError, match="unknown SPF result"):
        Rule("mail", "accept", spf=["failed"])
    with pytest.raises(ValueError, match="cannot be checked at ehlo"):
        Rule("ehlo", "accept", spf=["fail"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("defualt = 'accept'", "unknown key"),
        ("[[rules]]\nstage = 'rcpt'\nactoin = 'accept'", r"rules\[1\]: unknown key"),
        ("[[rules]]\naction = 'no such thing'", r"rules\[1\]: unknown action"),
        ("[[rules]]\ntls = 'yes'", "tls must be"),
        ("auth = 'secret'", "auth must be"),
        ("default = ", "not valid TOML"),
    ],
)
def test_bad_toml_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Policy.from_toml(text)


chars = st.characters(min_codepoint=32, max_codepoint=0x3FF, exclude_categories=("Cc", "Cs"))
patterns = st.from_regex(re.compile(r"[a-z0-9*?.-]{0,8}@[a-z0-9*.-]{0,10}|<>"), fullmatch=True)
actions = st.one_of(
    st.just("accept"),
    st.sampled_from(sorted(catalogue.ENTRIES)),
    st.builds(
        lambda c, t: f"{c} {c // 100}.7.1 {t}",
        st.sampled_from([421, 450, 451, 550, 554]),
        st.text(chars, min_size=1, max_size=30).map(str.strip).filter(bool),
    ),
    st.just("hangup"),
)


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    stage = draw(st.sampled_from(STAGES))
    action = draw(actions)
    if stage == "rcpt" and draw(st.booleans()):
        action = f"greylist:{draw(st.floats(0, 1e6, allow_nan=False))}"
    if stage == "data" and draw(st.booleans()):
        action = f"hangup:{draw(st.integers(0, 10**6))}"
    return Rule(
        stage,
        action,
        source=draw(st.lists(networks, max_size=3)),
        recipient=draw(st.lists(patterns, max_size=3)) if stage in ("rcpt", "data") else (),
        sender=draw(st.lists(patterns, max_size=2)) if stage not in ("connect", "ehlo") else (),
        tls=draw(st.sampled_from([None, True, False])),
        delay=draw(st.floats(0, 100, allow_nan=False)),
        name=draw(st.text(chars | st.sampled_from('\x7f\n\t"\\'), max_size=20)),
    )


@given(st.lists(rules(), max_size=5), st.sampled_from(["accept", "tempfail.421"]), st.booleans())
def test_toml_round_trip(rule_list: list[Rule], default: str, with_auth: bool) -> None:
    auth = {"relay": 'se"cret\\'} if with_auth else None
    policy = Policy(rule_list, default, auth=auth, auth_require_tls=not with_auth)
    assert Policy.from_toml(policy.to_toml()) == policy
