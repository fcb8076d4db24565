"""Property-based: a state model of the SMTP session, and fuzzed command lines.

The model follows RFC 5321 3.3 and 4.1.4 (what each command needs before it, what it
resets) and checks each reply's class against it. The fuzzer sends lines no client would
and wants one well-formed reply to each, from a server that stays usable. Example counts
are modest and derandomised: the suite stays fast and a failure repeats.

Each property test keeps to the target's budget ([budget] in its description: seconds and
examples): the example count is cut to what fits in the seconds at the time the server takes
to answer an error (measured first: Postfix waits smtpd_error_sleep_time, 1 s by default,
before each reply past an error), and the fuzzer stops drawing work when the time is out.
"""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from conformance.plugin import SMTPConnector
from conformance.requirements import requirement
from conformance.smtp_client import Reply, SMTPClient, SMTPProtocolError, dot_stuff
from conformance.target import Target
from conformance.tests.support import marker, message, postmaster

MODEL_SETTINGS = settings(
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
FUZZ_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def error_cost(smtp: SMTPConnector) -> float:
    """Seconds the server takes to answer a command after an error (the slow case)."""
    client = smtp.session("smtp")
    try:
        client.command("QZVTFROB x")
        start = time.monotonic()
        client.command("QZVTFROB y")
        return time.monotonic() - start
    finally:
        client.close()


def budgeted(base: settings, target: Target, cost: float, commands: int) -> settings:
    """``base`` with no more examples than the target's budget allows: its example cap, and
    what fits in its seconds at ``cost`` seconds for each of an example's ``commands``."""
    n = base.max_examples
    if target.budget.examples is not None:
        n = min(n, target.budget.examples)
    fit = int(target.budget.seconds / max(cost * commands, 1e-3))
    return settings(base, max_examples=max(1, min(n, fit)))


NAMES = st.sampled_from(["client.example.test", "[192.0.2.1]", "[IPv6:2001:db8::1]", "x"])
SENDERS = st.sampled_from(["", "sender@client.example.test", "a.b-c+d@sub.client.example.test"])
BAD_MAIL = st.sampled_from(
    ["MAIL FROM:", "MAIL FROM:<broken", "MAIL TO:<a@client.example.test>", "MAIL"]
)
BAD_RCPT = st.sampled_from(["RCPT TO:", "RCPT TO:<broken", "RCPT FROM:<a@b.test>", "RCPT"])


class SessionModel(RuleBasedStateMachine):
    """One connection; the model: greeted? a transaction? how many recipients?"""

    connector: SMTPConnector
    target: Target

    def __init__(self) -> None:
        super().__init__()
        self.client: SMTPClient
        self._connect()

    def _connect(self) -> None:
        self.client = self.connector("smtp")
        assert self.client.greeting is not None
        self.client.greeting.expect(220, doing="greeting")
        self.greeted = False
        self.in_mail = False
        self.rcpts = 0

    def _reset(self) -> None:
        self.in_mail = False
        self.rcpts = 0

    def send(self, line: str) -> Reply:
        reply = self.client.command(line)
        if reply.code == 421:
            # Any command may get 421 when the server must close (RFC 5321 3.8): start over.
            self.client.close()
            self._connect()
        return reply

    def expect(self, reply: Reply, allowed: set[int], doing: str) -> None:
        if reply.code == 421:
            return
        assert reply.code in allowed, (
            f"{doing} (greeted={self.greeted}, transaction={self.in_mail}, "
            f"recipients={self.rcpts}): expected one of {sorted(allowed)}, got {reply}"
        )

    def teardown(self) -> None:
        self.client.close()

    # -- session ------------------------------------------------------------------------

    @rule(name=NAMES)
    def ehlo(self, name: str) -> None:
        reply = self.send(f"EHLO {name}")
        self.expect(reply, {250}, "EHLO")
        if reply.code == 250:
            self.greeted = True
            self._reset()  # 4.1.4: EHLO resets the transaction

    @rule(name=NAMES)
    def helo(self, name: str) -> None:
        reply = self.send(f"HELO {name}")
        self.expect(reply, {250}, "HELO")
        if reply.code == 250:
            self.greeted = True
            self._reset()

    @rule()
    def rset(self) -> None:
        self.expect(self.send("RSET"), {250}, "RSET")
        self._reset()

    @rule()
    def noop(self) -> None:
        self.expect(self.send("NOOP"), {250}, "NOOP")

    @rule()
    def unknown(self) -> None:
        self.expect(self.send("QZVTFROB x"), {500, 502}, "an unknown command")

    @rule()
    def quit(self) -> None:
        self.expect(self.send("QUIT"), {221}, "QUIT")
        self.client.close()
        self._connect()

    # -- transaction --------------------------------------------------------------------

    @rule(sender=SENDERS)
    def mail(self, sender: str) -> None:
        reply = self.send(f"MAIL FROM:<{sender}>")
        if self.in_mail:
            self.expect(reply, {503}, "a nested MAIL")
        elif not self.greeted:
            # RFC 5321 lets a server take MAIL before EHLO; the platform refuses it.
            self.expect(reply, {250, 503}, "MAIL before EHLO")
        else:
            self.expect(reply, {250}, "MAIL")
        if reply.code == 250:
            self.in_mail = True

    @rule(line=BAD_MAIL)
    def bad_mail(self, line: str) -> None:
        reply = self.send(line)
        self.expect(reply, {500, 501, 503, 553, 555}, f"malformed {line!r}")

    @precondition(lambda self: self.rcpts < 20)
    @rule()
    def rcpt(self) -> None:
        reply = self.send(f"RCPT TO:<{postmaster(self.target)}>")
        if not self.in_mail:
            self.expect(reply, {503}, "RCPT without MAIL")
        else:
            self.expect(reply, {250}, "RCPT TO postmaster")
            if reply.code == 250:
                self.rcpts += 1

    @rule()
    def rcpt_unknown(self) -> None:
        reply = self.send(f"RCPT TO:<nobody-{marker()}@{self.target.domain}>")
        if not self.in_mail:
            self.expect(reply, {503}, "RCPT without MAIL")
        else:
            self.expect(reply, {550, 551, 553, 450, 451}, "RCPT to an unknown mailbox")

    @rule(line=BAD_RCPT)
    def bad_rcpt(self, line: str) -> None:
        reply = self.send(line)
        self.expect(reply, {500, 501, 503, 553, 555}, f"malformed {line!r}")

    @rule()
    def data(self) -> None:
        reply = self.send("DATA")
        if not self.in_mail or not self.rcpts:
            # 3.3: DATA without a transaction or recipients is 503 (or 554).
            self.expect(reply, {503, 554}, "DATA without MAIL and RCPT")
            return
        self.expect(reply, {354}, "DATA")
        if reply.code != 354:
            return
        self.client.send(dot_stuff(message(marker())) + b".\r\n")
        end = self.client.read_reply()
        self.expect(end, {250}, "end of data")
        self._reset()


@requirement(
    "RFC5321",
    "4.1.4",
    "MUST",
    "any sequence of commands is answered as the session state calls for (state model)",
)
def test_session_state_model(smtp: SMTPConnector, target: Target) -> None:
    SessionModel.connector = smtp
    SessionModel.target = target
    cost = error_cost(smtp)
    # An example runs to its end: on a slow server, shorter ones (5 steps at least).
    steps = MODEL_SETTINGS.stateful_step_count
    steps = max(5, min(steps, int(target.budget.seconds / max(cost, 1e-3))))
    chosen = budgeted(MODEL_SETTINGS, target, cost, steps)
    run_state_machine_as_test(SessionModel, settings=settings(chosen, stateful_step_count=steps))


# -- fuzzed command lines ---------------------------------------------------------------------

# Verbs whose reply starts something the fuzzer cannot finish blindly (data, TLS, an AUTH
# exchange) or ends the session: those lines are left out.
_STATEFUL = {"DATA", "BDAT", "STARTTLS", "AUTH", "QUIT"}
_VERBS = ["EHLO", "HELO", "MAIL", "RCPT", "RSET", "NOOP", "VRFY", "EXPN", "HELP", "ETRN"]

_NO_NEWLINE = st.binary(max_size=700).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=300
).map(lambda t: t.encode("utf-8"))
_PARAMS = st.lists(
    st.sampled_from(
        [
            "FROM:<>",
            "TO:<a@b.test>",
            "SIZE=1",
            "BODY=8BITMIME",
            "SMTPUTF8",
            "NOTIFY=NEVER",
            "RET=HDRS",
            "ORCPT=rfc822;a@b",
            "AUTH=<>",
            "=",
            "<<>>",
            "FROM:<@a,@b:c@d>",
            "\x00",
            "é",
            "x" * 600,
        ]
    ),
    max_size=5,
).map(lambda ps: " ".join(ps).encode())
LINES = st.one_of(
    _NO_NEWLINE,
    _TEXT,
    st.builds(
        lambda verb, upper, rest: (verb if upper else verb.lower()).encode() + b" " + rest,
        st.sampled_from(_VERBS),
        st.booleans(),
        st.one_of(_PARAMS, _NO_NEWLINE, _TEXT),
    ),
)


def _runs_something_stateful(line: bytes) -> bool:
    tokens = {line.partition(b" ")[0].strip(), *(line.split()[:1])}
    return any(t.upper().decode("latin-1") in _STATEFUL for t in tokens)


@requirement(
    "PLATFORM",
    "smtp.robustness",
    "MUST",
    "every command line, however malformed, gets one well-formed reply; the session goes on",
)
def test_fuzzed_command_lines(smtp: SMTPConnector, target: Target) -> None:
    state: dict[str, SMTPClient] = {}

    def client() -> SMTPClient:
        c = state.get("c")
        if c is None or c.closed:
            c = state["c"] = smtp.session("smtp")
        return c

    def drop() -> None:
        state.pop("c").close()

    # A line and the NOOP behind it: two commands an example.
    chosen = budgeted(FUZZ_SETTINGS, target, error_cost(smtp), 2)
    stop = time.monotonic() + target.budget.seconds

    @chosen
    @given(line=LINES)
    def one_line(line: bytes) -> None:
        if _runs_something_stateful(line) or time.monotonic() > stop:
            return
        c = client()
        c.send(line + b"\r\n")
        # The reply parser fails the test on anything that is not an SMTP reply.
        reply = c.read_reply()
        assert 200 <= reply.code < 600, f"{line!r}: reply code {reply.code}"
        if reply.code in (221, 421):
            # A clean close: the server has had enough of this client (too many errors;
            # Postfix's "221 2.7.0 Error: I can break rules, too").
            assert c.closed_by_peer(timeout=5.0), f"{line!r}: {reply} but the connection stays"
            drop()
            return
        # One line, one reply: were there a second, the NOOP would read it, and its own
        # reply would be left over.
        try:
            after = c.noop()
        except SMTPProtocolError:
            # Closed after a refusal, without a 421: tolerated, as a clean end.
            assert c.closed and reply.permanent, f"{line!r}: {reply}, then the connection broke"
            drop()
            return
        if after.code == 421:
            drop()
            return
        after.expect(250, doing=f"NOOP after {line!r} (a second reply to it?)")
        left = c.pending(wait=0.005)
        assert not left, f"{line!r} got more than one reply: {reply}; {after}; {left!r}"

    one_line()
