"""Our Authentication-Results rendering is authres's, for any results (STYLE.md 4): the
field is rendered by hand for speed, authres (the library the tests parse it with) is the
oracle."""

from __future__ import annotations

import authres  # type: ignore[import-untyped]
import authres.arc  # type: ignore[import-untyped]
import authres.dmarc  # type: ignore[import-untyped]
from hypothesis import given
from hypothesis import strategies as st

from reference.auth.arc import ArcChain, ArcResult
from reference.auth.dkim import DkimResult, DkimSignature
from reference.auth.dmarc import Disposition, DmarcEvaluation, DmarcRecord, DmarcResult
from reference.auth.results import _comment, authentication_results
from reference.auth.spf import SpfCheck, SpfResult

# Values as they come: domains, addresses, and what a hostile peer can put in them.
TEXT = st.one_of(
    st.sampled_from(["", "example.test", "a@example.test", "rsa-sha256", "abc+/=", "x y"]),
    st.text(alphabet='ab@.;"\\() =\t-$\n\xe9', max_size=12),
)


def _prop(ptype: str, name: str, value: str) -> authres.core.AuthenticationResultProperty:
    return authres.core.AuthenticationResultProperty(ptype, name, value)


def oracle(
    spf: list[SpfCheck],
    dkim: list[DkimSignature],
    dmarc: list[tuple[DmarcEvaluation, str]],
    arc: ArcChain | None,
    remote_ip: str,
) -> bytes:
    """The field as authres renders it (what this module did before it rendered by hand)."""
    results: list[authres.core.BaseAuthenticationResult] = []
    for c in spf:
        prop = "helo" if c.identity == "helo" else "mailfrom"
        value = c.domain if prop == "helo" else c.sender
        results.append(
            authres.AuthenticationResult(
                "spf",
                result=c.result.value,
                result_comment=_comment(c.reason or None),
                properties=[_prop("smtp", prop, value)] if value else [],
            )
        )
    for s in dkim:
        tags = (("d", s.domain), ("s", s.selector), ("a", s.algorithm), ("b", s.b))
        results.append(
            authres.AuthenticationResult(
                "dkim",
                result=s.result.value,
                result_comment=_comment(s.reason or None),
                properties=[_prop("header", k, v) for k, v in tags if v],
            )
        )
    for ev, action in dmarc:
        comment = ev.reason or None
        if ev.record is not None:
            comment = f"p={ev.record.p.value} sp={ev.record.sp.value} dis={action}"
        results.append(
            authres.dmarc.DMARCAuthenticationResult(
                result=ev.result.value,
                result_comment=_comment(comment),
                header_from=ev.from_domain,
            )
        )
    if arc is not None:
        comment = None
        if arc.result is not ArcResult.NONE:
            comment = f"i={arc.instances}" + (f" {arc.reason}" if arc.reason else "")
        r = authres.arc.ARCAuthenticationResult(
            result=arc.result.value, result_comment=_comment(comment)
        )
        if remote_ip:
            r.smtp_remote_ip = remote_ip
        results.append(r)
    value = "mx.test;" + (";".join(f"\r\n\t{r}" for r in results) if results else " none")
    return f"Authentication-Results: {value}\r\n".encode("utf-8", "replace")


SPF = st.builds(
    SpfCheck,
    st.sampled_from(SpfResult),
    TEXT,
    st.sampled_from(["mailfrom", "helo"]),
    TEXT,
    TEXT,
)
DKIM = st.builds(DkimSignature, st.sampled_from(DkimResult), TEXT, TEXT, TEXT, TEXT, TEXT, TEXT)
RECORD = st.none() | st.builds(
    DmarcRecord,
    st.sampled_from(Disposition),
    st.sampled_from(Disposition),
    st.just(Disposition.NONE),
)
DMARC = st.tuples(
    st.builds(DmarcEvaluation, st.sampled_from(DmarcResult), TEXT, record=RECORD, reason=TEXT),
    st.sampled_from(["none", "quarantine", "reject"]),
)
ARC = st.none() | st.builds(
    ArcChain, st.sampled_from(ArcResult), st.integers(0, 3), st.just(()), TEXT
)


@given(
    st.lists(SPF, max_size=2),
    st.lists(DKIM, max_size=3),
    st.lists(DMARC, max_size=2),
    ARC,
    st.sampled_from(["", "192.0.2.1", "2001:db8::1"]),
)
def test_the_field_is_rendered_as_authres_renders_it(
    spf: list[SpfCheck],
    dkim: list[DkimSignature],
    dmarc: list[tuple[DmarcEvaluation, str]],
    arc: ArcChain | None,
    remote_ip: str,
) -> None:
    ours = authentication_results(
        "mx.test", spf=spf, dkim=dkim, dmarc=dmarc, arc=arc, remote_ip=remote_ip
    )
    assert ours == oracle(spf, dkim, dmarc, arc, remote_ip)
