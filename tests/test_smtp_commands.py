"""The pure parsers of MAIL, RCPT and BDAT arguments: RFC rules, and no input crashes them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.mail import replies
from reference.mail.xtext import is_xtext, xtext_decode, xtext_encode
from reference.smtp.commands import (
    CommandError,
    MailFrom,
    RcptTo,
    _parsed_path,
    _plain_path,
    control_refusal,
    has_control,
    parse_bdat,
    parse_mail,
    parse_rcpt,
    split_params,
)


def code(fn: object, *args: object, **kw: object) -> tuple[int, str]:
    with pytest.raises(CommandError) as e:
        fn(*args, **kw)  # type: ignore[operator]
    return e.value.reply.code, e.value.reply.enhanced


def test_mail_paths() -> None:
    assert parse_mail("FROM:<a@b.test>") == MailFrom("a@b.test")
    assert parse_mail("FROM:<>").address == ""  # RFC 5321 4.5.5: the null reverse-path
    assert parse_mail("from: <a@b.test>").address == "a@b.test"
    assert parse_mail("FROM:a@b.test").address == "a@b.test"  # bare, as servers take it
    # RFC 5321 C: a source route is accepted and dropped.
    assert parse_mail("FROM:<@x.test,@y.test:a@b.test>").address == "a@b.test"
    assert parse_mail('FROM:<"a b"@c.test>').address == '"a b"@c.test'


@pytest.mark.parametrize(
    "arg",
    [None, "", "FROM:", "TO:<a@b>", "FROM:<a@b", "FROM:<a@b>SIZE=1", "FROM:<>x", "FROM:<<>>"],
)
def test_mail_syntax_errors_are_501(arg: str | None) -> None:
    assert code(parse_mail, arg)[0] == 501


def test_mail_parameters() -> None:
    m = parse_mail("FROM:<a@b.test> SIZE=100 body=8bitmime RET=hdrs ENVID=Q+2Bx AUTH=<>")
    assert (m.size, m.body, m.ret, m.envid, m.auth) == (100, "8BITMIME", "HDRS", "Q+2Bx", "<>")
    assert parse_mail("FROM:<>").body == "7BIT"
    assert parse_mail("FROM:<ü@b.test> SMTPUTF8").smtputf8


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("FROM:<> FOO=1", (555, "5.5.4")),  # RFC 5321 4.1.1.11
        ("FROM:<> SIZE=x", (501, "5.5.4")),
        ("FROM:<> SIZE=1 SIZE=2", (501, "5.5.4")),
        ("FROM:<> BODY=BINARYMIME", (501, "5.5.4")),
        ("FROM:<> SMTPUTF8=yes", (501, "5.5.4")),
        ("FROM:<> RET=ALL", (501, "5.5.4")),
        ("FROM:<> ENVID=a+zz", (501, "5.5.4")),  # not xtext
        ("FROM:<> ENVID=" + "x" * 101, (501, "5.5.4")),
        ("FROM:<ü@b.test>", (553, "5.6.7")),  # RFC 6531: needs SMTPUTF8
    ],
)
def test_mail_parameter_errors(arg: str, expected: tuple[int, str]) -> None:
    assert code(parse_mail, arg) == expected


def test_parameters_need_ehlo() -> None:
    assert code(parse_mail, "FROM:<> SIZE=1", extended=False)[0] == 501
    assert parse_mail("FROM:<>", extended=False).address == ""


def test_rcpt() -> None:
    r = parse_rcpt("TO:<a@b.test> NOTIFY=failure,delay ORCPT=rfc822;a+2Bx@b.test")
    assert r == RcptTo("a@b.test", "FAILURE,DELAY", "rfc822;a+2Bx@b.test")
    assert parse_rcpt("TO:<Postmaster>").address == "Postmaster"
    assert parse_rcpt("TO:<a@b.test> NOTIFY=never").notify == "NEVER"
    assert parse_rcpt("TO:<ü@b.test>", smtputf8=True).address == "ü@b.test"


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("TO:<>", 501),
        ("TO:", 501),
        ("TO:<a@b.test> NOTIFY=NEVER,SUCCESS", 501),  # RFC 3461 4.1: NEVER is alone
        ("TO:<a@b.test> NOTIFY=SUCCESS,SUCCESS", 501),
        ("TO:<a@b.test> NOTIFY=SOMETIMES", 501),
        ("TO:<a@b.test> ORCPT=a@b.test", 501),  # no addr-type
        ("TO:<a@b.test> ORCPT=rfc822;", 501),
        ("TO:<a@b.test> XFOO", 555),
        ("TO:<ü@b.test>", 553),
    ],
)
def test_rcpt_errors(arg: str, expected: int) -> None:
    assert code(parse_rcpt, arg)[0] == expected


CONTROLS = ["\x00", "\x01", "\t", "\x0b", "\x1b", "\x1f", "\x7f"]


@pytest.mark.parametrize("ctl", CONTROLS)
def test_control_character_in_a_path_is_553(ctl: str) -> None:
    # RFC 5321 4.1.2: no CTL in a path, quoted or not; RFC 5321 4.2.2 553 "mailbox name not
    # allowed", with RFC 3463's X.1.7 (sender) or X.1.3 (recipient).
    for arg in (f"FROM:<a{ctl}b@c.test>", f"FROM: <a@c{ctl}.test>", f'FROM:<"a {ctl}b"@c.test>',
                f"FROM:<a@c.test>{ctl}", f"FROM:a{ctl}@c.test SIZE=1"):  # fmt: skip
        assert code(parse_mail, arg) == (553, "5.1.7"), repr(arg)
        assert code(parse_rcpt, "TO:" + arg[5:]) == (553, "5.1.3"), repr(arg)


@pytest.mark.parametrize("ctl", CONTROLS)
def test_control_character_elsewhere_is_501(ctl: str) -> None:
    for arg in (f"FROM:<a@c.test> SIZE=1{ctl}", f"FROM:<a@c.test> SIZE=1 {ctl}BODY=7BIT",
                f'FROM:<"a b"@c.test> RET=HDRS{ctl}', f"FR{ctl}OM:<a@c.test>"):  # fmt: skip
        assert code(parse_mail, arg) == (501, "5.5.4"), repr(arg)
    assert code(parse_rcpt, f"TO:<a@c.test> NOTIFY=NEVER{ctl}") == (501, "5.5.4")


def test_control_refusal_names_the_reply() -> None:
    assert control_refusal("EHLO", "a\x00b.test") is replies.CONTROL_IN_ARGUMENT
    assert control_refusal("vrfy", "post\x1bmaster") is replies.CONTROL_IN_ARGUMENT
    assert control_refusal("MAIL", "FROM:<a\x00b@c>") is replies.CONTROL_IN_SENDER
    assert control_refusal("rcpt", "TO:<a\x7fb@c>") is replies.CONTROL_IN_RECIPIENT
    assert control_refusal("RCPT", "TO:<a@c> NOTIFY=\x00") is replies.CONTROL_IN_ARGUMENT
    assert control_refusal("EHLO", "client.example.test") is None
    assert control_refusal("MAIL", "FROM:<ü@c.test> SMTPUTF8") is None  # RFC 6531: not a CTL
    assert control_refusal("NOOP", None) is None
    assert has_control("a\x00") and has_control("\x7f") and not has_control("a b\u00e9")


def test_bdat() -> None:
    assert parse_bdat("0 LAST") == (0, True)
    assert parse_bdat("1234") == (1234, False)
    assert parse_bdat("12 last") == (12, True)
    for bad in (None, "", "x", "-1", "12 LATER", "1 2"):
        assert code(parse_bdat, bad)[0] == 501


def test_xtext() -> None:
    assert is_xtext("abc+2B+3D") and not is_xtext("a+b") and not is_xtext("a=b")
    assert xtext_decode("a+2Bb+3Dc") == "a+b=c"
    assert xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d"
    assert split_params("A=1 b") == {"A": "1", "B": None}


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_xtext_roundtrip(text: str) -> None:
    encoded = xtext_encode(text)
    assert is_xtext(encoded) and xtext_decode(encoded) == text


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_no_argument_crashes_a_parser(text: str) -> None:
    # Whatever arrives after a verb, the answer is a value or a CommandError with a reply.
    for fn in (parse_mail, parse_rcpt, parse_bdat):
        for arg in (text, "FROM:" + text, "TO:" + text, "FROM:<a@b> " + text):
            try:
                fn(arg)  # type: ignore[operator]
            except CommandError as e:
                assert 500 <= e.reply.code < 600


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.sampled_from(CONTROLS), st.text(max_size=60))
def test_no_control_character_gets_into_an_envelope(head: str, ctl: str, tail: str) -> None:
    # Wherever it is, a control character is refused: parse_mail/parse_rcpt never return
    # a value that holds one.
    for fn, keyword in ((parse_mail, "FROM:"), (parse_rcpt, "TO:")):
        for arg in (f"{keyword}<{head}{ctl}{tail}>", f"{keyword}<a@b.test> {head}{ctl}{tail}"):
            with pytest.raises(CommandError) as e:
                fn(arg)  # type: ignore[operator]
            assert e.value.reply.code in (501, 553)


_ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
_PLAIN_PATHS = st.builds(
    lambda local, labels, rest: f"<{local}@{'.'.join(labels)}>{rest}",
    st.lists(st.text(_ATEXT, min_size=1, max_size=8), min_size=1, max_size=3).map(".".join),
    st.lists(st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True), max_size=3).map(
        lambda labels: ["example", *labels]
    ),
    st.sampled_from(["", " ", " SIZE=10", "  BODY=8BITMIME", "SIZE=1", " (c) SIZE=1", "\tX", ">"]),
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(_PLAIN_PATHS, st.text(max_size=40).map(lambda t: "<a@b.test>" + t)))
def test_the_plain_path_shortcut_agrees_with_the_parser(text: str) -> None:
    # MAIL and RCPT take a plain <local@domain> without the email package's parser: where
    # the shortcut answers, it answers what the parser does.
    plain = _plain_path(text)
    if plain is None:
        return
    try:
        assert _parsed_path(text, sender=True) == plain
    except CommandError:
        pytest.fail(f"the parser refuses {text!r}, the shortcut took it")
