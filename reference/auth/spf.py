"""SPF (RFC 7208): check_host() over our async resolver, with its limits, macros and exp=."""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
import urllib.parse
from dataclasses import dataclass, field

from reference.auth.lookup import Answer, DnsTempError, IPAddress, Lookup

__all__ = ["SpfCheck", "SpfResult", "check_helo", "check_host", "check_mail_from"]

MAX_DNS_MECHANISMS = 10  # RFC 7208 4.6.4: include, a, mx, ptr, exists, redirect
MAX_VOID_LOOKUPS = 2  # RFC 7208 4.6.4
MAX_MX_NAMES = 10  # RFC 7208 4.6.4: more MX names is a permerror
MAX_PTR_NAMES = 10  # RFC 7208 4.6.4: further PTR names are ignored
MAX_DOMAIN = 253  # RFC 7208 7.3: longer expansions are cut from the left


class SpfResult(enum.StrEnum):
    """RFC 7208 2.6."""

    NONE = "none"
    NEUTRAL = "neutral"
    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True)
class SpfCheck:
    """The outcome of one check_host(): result, why, and the explanation on fail."""

    result: SpfResult
    domain: str  # the identity's domain that was checked
    identity: str  # "mailfrom" or "helo"
    sender: str  # the full identity checked (postmaster@helo for HELO)
    reason: str = ""  # for logs and Authentication-Results comments
    mechanism: str = ""  # the directive that matched
    explanation: str = ""  # exp= text (RFC 7208 6.2), only on fail


class _PermError(Exception):
    pass


class _TempError(Exception):
    pass


_QUALIFIERS = {
    "+": SpfResult.PASS,
    "-": SpfResult.FAIL,
    "~": SpfResult.SOFTFAIL,
    "?": SpfResult.NEUTRAL,
}
_MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
_MACRO = re.compile(r"%(?:\{([A-Za-z])([0-9]*)(r?)([-.+,/_=]*)\}|(.)|$)")
_TOPLABEL = re.compile(
    r"^(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9])\Z"
)


@dataclass
class _State:
    """Counters shared by the whole evaluation, nested includes and redirects alike."""

    ip: IPAddress
    sender: str
    helo: str
    lookups: int = 0
    voids: int = 0
    receiver: str = "unknown"
    now: float = 0.0
    ptr_cache: dict[str, str] = field(default_factory=dict)

    def count_lookup(self) -> None:
        self.lookups += 1
        if self.lookups > MAX_DNS_MECHANISMS:
            raise _PermError("too many DNS lookups (more than 10)")

    def count_void(self, answer: Answer) -> None:
        if answer.void:
            self.voids += 1
            if self.voids > MAX_VOID_LOOKUPS:
                raise _PermError("too many void DNS lookups (more than 2)")


@functools.lru_cache(maxsize=4096)
def _valid_domain(domain: str) -> bool:
    """RFC 7208 4.3: a multi-label name with labels of 1-63 octets."""
    d = domain.rstrip(".") if domain.endswith(".") and not domain.endswith("..") else domain
    labels = d.split(".")
    if len(labels) < 2 or len(d) > MAX_DOMAIN:
        return False
    return all(0 < len(label) <= 63 for label in labels)


def _split_sender(sender: str, helo: str) -> tuple[str, str]:
    """(local-part, domain); RFC 7208 4.3: an empty local part is "postmaster"."""
    local, at, domain = sender.rpartition("@")
    if not at:
        local, domain = "", sender or helo
    return (local or "postmaster"), domain


async def check_host(
    lookup: Lookup,
    ip: str | IPAddress,
    domain: str,
    sender: str,
    *,
    helo: str = "",
    receiver: str = "unknown",
    now: float = 0.0,
    identity: str = "mailfrom",
) -> SpfCheck:
    """RFC 7208 4: the SPF result for ``ip`` sending as ``sender`` of ``domain``.

    ``now`` feeds the %{t} macro of exp= (the caller's clock); ``receiver`` feeds %{r}.
    """
    addr = _address(ip) if isinstance(ip, str) else ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # RFC 7208 5: an IPv4-mapped address is an IPv4 client
    state = _State(addr, sender, helo, receiver=receiver, now=now)
    try:
        result, mech, expl = await _check(lookup, state, domain, top=True)
    except _PermError as e:
        return SpfCheck(SpfResult.PERMERROR, domain, identity, sender, str(e))
    except _TempError as e:
        return SpfCheck(SpfResult.TEMPERROR, domain, identity, sender, str(e))
    reason = f"matched {mech}" if mech else "no mechanism matched"
    if result is SpfResult.NONE:
        reason = mech or "no SPF record"
        mech = ""
    return SpfCheck(result, domain, identity, sender, reason, mech, expl)


@functools.lru_cache(maxsize=4096)
def _address(ip: str) -> IPAddress:
    """An address parsed once: the same peers and ip4: terms come with message after message."""
    return ipaddress.ip_address(ip)


async def check_mail_from(
    lookup: Lookup,
    ip: str,
    sender: str,
    helo: str,
    *,
    receiver: str = "unknown",
    now: float = 0.0,
) -> SpfCheck:
    """RFC 7208 2.4: the MAIL FROM identity; a null sender is checked as postmaster@helo."""
    local, domain = _split_sender(sender, helo)
    full = f"{local}@{domain}"
    if not sender:
        return await check_host(
            lookup, ip, helo, full, helo=helo, receiver=receiver, now=now, identity="helo"
        )
    return await check_host(lookup, ip, domain, full, helo=helo, receiver=receiver, now=now)


async def check_helo(
    lookup: Lookup, ip: str, helo: str, *, receiver: str = "unknown", now: float = 0.0
) -> SpfCheck:
    """RFC 7208 2.3: the HELO identity (an address literal has no SPF: none)."""
    if not helo or helo.startswith("[") or not _valid_domain(helo):
        return SpfCheck(SpfResult.NONE, helo, "helo", f"postmaster@{helo}", "HELO is not a domain")
    return await check_host(
        lookup,
        ip,
        helo,
        f"postmaster@{helo}",
        helo=helo,
        receiver=receiver,
        now=now,
        identity="helo",
    )


# -- evaluation ------------------------------------------------------------------------------


async def _record(lookup: Lookup, domain: str) -> str | None:
    """RFC 7208 4.4-4.5: the one SPF record of a domain, None if it has none."""
    try:
        answer = await lookup.query(domain, "TXT")
    except DnsTempError as e:
        raise _TempError(f"DNS error fetching the SPF record of {domain}: {e}") from None
    records: list[bytes] = []
    for r in answer.records:
        text = b"".join(r.strings)
        low = text.lower()
        if low == b"v=spf1" or low.startswith(b"v=spf1 "):
            records.append(text)
    if not records:
        return None
    if len(records) > 1:
        raise _PermError(f"{domain} has more than one SPF record")
    try:
        return records[0].decode("ascii")
    except UnicodeDecodeError:
        raise _PermError(f"SPF record of {domain} is not 7-bit ASCII") from None


@dataclass(frozen=True)
class _Directive:
    qualifier: SpfResult
    name: str
    arg: str  # domain-spec or address, "" when absent
    cidr4: int | None
    cidr6: int | None
    text: str


@dataclass
class _Record:
    directives: list[_Directive] = field(default_factory=list)
    redirect: str | None = None
    exp: str | None = None


_CIDR = re.compile(r"^(.*?)(?:/(\d+))?(?://(\d+))?\Z", re.S)


def _cidrs(arg: str) -> tuple[str, int | None, int | None]:
    m = _CIDR.match(arg)
    assert m is not None
    spec, c4, c6 = m.group(1), m.group(2), m.group(3)
    for c in (c4, c6):
        if c is not None and (len(c) > 1 and c.startswith("0")):
            raise _PermError(f"bad CIDR length in {arg!r}")
    v4 = int(c4) if c4 is not None else None
    v6 = int(c6) if c6 is not None else None
    if (v4 is not None and v4 > 32) or (v6 is not None and v6 > 128):
        raise _PermError(f"bad CIDR length in {arg!r}")
    return spec, v4, v6


def _check_domain_spec(spec: str, term: str) -> None:
    """RFC 7208 7.1: domain-spec = macro-string domain-end (syntax before expansion)."""
    if not spec:
        raise _PermError(f"empty domain in {term!r}")
    _validate_macros(spec, term, exp=False)
    if re.search(r"%\{[^}]*\}\Z", spec):
        return  # ends with a macro-expand
    body = spec[:-1] if spec.endswith(".") else spec
    top = body.rpartition(".")[2]
    if "." not in body or not _TOPLABEL.match(top):
        raise _PermError(f"bad domain {spec!r} in {term!r}")


def _validate_macros(text: str, term: str, *, exp: bool) -> None:
    pos = 0
    while True:
        i = text.find("%", pos)
        if i < 0:
            return
        m = _MACRO.match(text, i)
        if m is None or m.group(0) == "%":
            raise _PermError(f"bad macro in {term!r}")
        if m.group(1):
            letter = m.group(1).lower()
            allowed = "slodiphvcrt" if exp else "slodiphv"
            if letter not in allowed:
                raise _PermError(f"bad macro letter {m.group(1)!r} in {term!r}")
            if m.group(2) and int(m.group(2)) == 0:
                raise _PermError(f"bad macro transformer in {term!r}")
        elif m.group(5) not in ("%", "_", "-"):
            raise _PermError(f"bad macro in {term!r}")
        pos = m.end()


@functools.lru_cache(maxsize=1024)
def _parse(text: str) -> _Record:
    """RFC 7208 4.6: the whole record is parsed first; any syntax error is a permerror.

    Kept by its text (never changed after parsing): a record is asked for again with every
    message from its domain, and whether it changed is the DNS answer's TTL's business."""
    rec = _Record()
    terms = text.split(" ")[1:]
    for term in terms:
        if not term:
            continue
        m = re.match(r"^([A-Za-z][A-Za-z0-9_.-]*)=(.*)\Z", term)
        if m:
            name, value = m.group(1).lower(), m.group(2)
            if name in ("redirect", "exp"):
                if getattr(rec, name) is not None:
                    raise _PermError(f"more than one {name}= modifier")
                _check_domain_spec(value, term)
                setattr(rec, name, value)
            else:
                _validate_macros(value, term, exp=False)  # unknown modifiers are ignored
            continue
        qualifier = SpfResult.PASS
        if term[0] in _QUALIFIERS:
            qualifier, term_body = _QUALIFIERS[term[0]], term[1:]
        else:
            term_body = term
        m = re.match(r"^([A-Za-z0-9]+)(?:([:/])(.*))?\Z", term_body)
        if not m or m.group(1).lower() not in _MECHANISMS:
            raise _PermError(f"unknown mechanism {term!r}")
        name = m.group(1).lower()
        sep, rest = m.group(2) or "", m.group(3) or ""
        arg, c4, c6 = "", None, None
        if name == "all":
            if sep:
                raise _PermError(f"bad mechanism {term!r}")
        elif name in ("include", "exists"):
            if sep != ":":
                raise _PermError(f"{name} needs a domain: {term!r}")
            arg = rest
            _check_domain_spec(arg, term)
        elif name in ("a", "mx"):
            full = sep + rest
            if sep == ":":
                arg, c4, c6 = _cidrs(rest)
                _check_domain_spec(arg, term)
            elif sep == "/":
                _, c4, c6 = _cidrs(full)
        elif name == "ptr":
            if sep == "/":
                raise _PermError(f"ptr takes no CIDR: {term!r}")
            if sep == ":":
                arg = rest
                _check_domain_spec(arg, term)
        elif name in ("ip4", "ip6"):
            if sep != ":":
                raise _PermError(f"{name} needs an address: {term!r}")
            addr, _, prefix = rest.partition("/")
            try:
                if name == "ip4":
                    if not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", addr):
                        raise ValueError
                    ipaddress.IPv4Address(addr)
                else:
                    ipaddress.IPv6Address(addr)
                if "/" in rest:
                    if not prefix.isdigit() or (len(prefix) > 1 and prefix.startswith("0")):
                        raise ValueError
                    if int(prefix) > (32 if name == "ip4" else 128):
                        raise ValueError
                arg = addr
                c4 = int(prefix) if "/" in rest and name == "ip4" else None
                c6 = int(prefix) if "/" in rest and name == "ip6" else None
            except ValueError:
                raise _PermError(f"bad address in {term!r}") from None
        rec.directives.append(_Directive(qualifier, name, arg, c4, c6, term))
    return rec


async def _check(
    lookup: Lookup, st: _State, domain: str, *, top: bool = False
) -> tuple[SpfResult, str, str]:
    """check_host() proper: (result, matching directive or reason, explanation)."""
    if not _valid_domain(domain):
        return SpfResult.NONE, f"{domain!r} is not a valid domain", ""
    text = await _record(lookup, domain)
    if text is None:
        return SpfResult.NONE, f"{domain} has no SPF record", ""
    rec = _parse(text)
    for d in rec.directives:
        if await _matches(lookup, st, domain, d):
            expl = ""
            if d.qualifier is SpfResult.FAIL and rec.exp is not None:
                expl = await _explanation(lookup, st, domain, rec.exp)
            return d.qualifier, d.text, expl
    if rec.redirect is not None:
        st.count_lookup()
        target = await _expand(lookup, st, domain, rec.redirect)
        if not _valid_domain(target):
            raise _PermError(f"redirect to an invalid domain {target!r}")
        result, mech, expl = await _check(lookup, st, target)
        if result is SpfResult.NONE:
            raise _PermError(f"redirect={target} has no SPF record")
        return result, mech, expl
    return SpfResult.NEUTRAL, "", ""


def _in_network(ip: IPAddress, addr: IPAddress, c4: int | None, c6: int | None) -> bool:
    if ip.version != addr.version:
        return False
    prefix = (32 if c4 is None else c4) if ip.version == 4 else (128 if c6 is None else c6)
    return ip in _network(addr, prefix)


@functools.lru_cache(maxsize=4096)
def _network(addr: IPAddress, prefix: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Built once for the ip4:, ip6:, a and mx terms every message from a domain matches."""
    return ipaddress.ip_network((addr, prefix), strict=False)


async def _addresses(lookup: Lookup, st: _State, name: str) -> Answer:
    rtype = "A" if st.ip.version == 4 else "AAAA"
    try:
        return await lookup.addresses(name, rtype)
    except DnsTempError as e:
        raise _TempError(str(e)) from None


async def _matches(lookup: Lookup, st: _State, domain: str, d: _Directive) -> bool:
    ip = st.ip
    if d.name == "all":
        return True
    if d.name in ("ip4", "ip6"):
        return _in_network(ip, _address(d.arg), d.cidr4, d.cidr6)
    st.count_lookup()
    target = await _expand(lookup, st, domain, d.arg) if d.arg else domain
    if d.name == "include":
        result, _, _ = await _check(lookup, st, target)
        if result is SpfResult.PASS:
            return True
        if result in (SpfResult.FAIL, SpfResult.SOFTFAIL, SpfResult.NEUTRAL):
            return False
        if result is SpfResult.NONE:
            raise _PermError(f"include:{target} has no SPF record")
        return False  # pragma: no cover (errors raise)
    if d.name == "exists":
        try:
            answer = await lookup.addresses(target, "A")  # RFC 7208 5.7: always A
        except DnsTempError as e:
            raise _TempError(str(e)) from None
        st.count_void(answer)
        return bool(answer.records)
    if d.name == "a":
        answer = await _addresses(lookup, st, target)
        st.count_void(answer)
        return any(_in_network(ip, a, d.cidr4, d.cidr6) for a in answer.records)
    if d.name == "mx":
        try:
            mx = await lookup.mx(target)
        except DnsTempError as e:
            raise _TempError(str(e)) from None
        st.count_void(mx)
        if len(mx.records) > MAX_MX_NAMES:
            raise _PermError(f"{target} has more than {MAX_MX_NAMES} MX records")
        for _, host in sorted(mx.records):
            if not host:
                continue  # null MX (RFC 7505)
            answer = await _addresses(lookup, st, host)
            if any(_in_network(ip, a, d.cidr4, d.cidr6) for a in answer.records):
                return True
        return False
    if d.name == "ptr":
        name = await _validated_name(lookup, st, target)
        return name is not None
    raise _PermError(f"unknown mechanism {d.name}")  # pragma: no cover (parse refuses)


async def _validated_name(lookup: Lookup, st: _State, target: str) -> str | None:
    """RFC 7208 5.5: a PTR name of the client that resolves back to it and is in target."""
    try:
        ptr = await lookup.ptr(st.ip)
    except DnsTempError:
        return None  # RFC 7208 5.5: a DNS error here means no match
    st.count_void(ptr)
    target = target.lower().rstrip(".")
    names = list(ptr.records)[:MAX_PTR_NAMES]
    # Names equal to or under the target first, as RFC 7208 5.5 suggests.
    names.sort(key=lambda n: not _under(n, target))
    for name in names:
        try:
            answer = await lookup.addresses(name, "A" if st.ip.version == 4 else "AAAA")
        except DnsTempError:
            continue
        if st.ip in answer.records and _under(name, target):
            return str(name)
    return None


def _under(name: str, target: str) -> bool:
    n = name.lower().rstrip(".")
    return n == target or n.endswith("." + target)


# -- macros (RFC 7208 7) ---------------------------------------------------------------------


async def _macro_value(lookup: Lookup, st: _State, domain: str, letter: str) -> str:
    local, sender_domain = _split_sender(st.sender, st.helo)
    ip = st.ip
    if letter == "s":
        return f"{local}@{sender_domain}"
    if letter == "l":
        return local
    if letter == "o":
        return sender_domain
    if letter == "d":
        return domain
    if letter in ("i", "c"):
        if ip.version == 6 and letter == "i":
            return ".".join(ip.exploded.replace(":", ""))
        return str(ip)
    if letter == "v":
        return "in-addr" if ip.version == 4 else "ip6"
    if letter == "h":
        return st.helo
    if letter == "r":
        return st.receiver
    if letter == "t":
        return str(int(st.now))
    if letter == "p":
        key = domain.lower()
        if key not in st.ptr_cache:
            name = await _validated_name(lookup, st, domain)
            if name is None:
                # Any validated name will do; "unknown" when there is none.
                name = await _any_validated_name(lookup, st) or "unknown"
            st.ptr_cache[key] = name
        return st.ptr_cache[key]
    raise _PermError(f"bad macro letter {letter!r}")  # pragma: no cover


async def _any_validated_name(lookup: Lookup, st: _State) -> str | None:
    try:
        ptr = await lookup.ptr(st.ip)
    except DnsTempError:
        return None
    for name in list(ptr.records)[:MAX_PTR_NAMES]:
        try:
            answer = await lookup.addresses(name, "A" if st.ip.version == 4 else "AAAA")
        except DnsTempError:
            continue
        if st.ip in answer.records:
            return str(name)
    return None


async def _expand(lookup: Lookup, st: _State, domain: str, spec: str, *, exp: bool = False) -> str:
    """Expand the macros of a domain-spec (or of an explanation, with ``exp``)."""
    out: list[str] = []
    pos = 0
    while True:
        i = spec.find("%", pos)
        if i < 0:
            out.append(spec[pos:])
            break
        out.append(spec[pos:i])
        m = _MACRO.match(spec, i)
        if m is None or m.group(0) == "%":
            raise _PermError(f"bad macro in {spec!r}")
        if m.group(1):
            letter = m.group(1)
            if letter.lower() in "crt" and not exp:
                raise _PermError(f"macro %{{{letter}}} outside exp=")
            value = await _macro_value(lookup, st, domain, letter.lower())
            delims = m.group(4) or "."
            parts = re.split("[" + re.escape(delims) + "]", value)
            if m.group(3):
                parts.reverse()
            if m.group(2):
                keep = int(m.group(2))
                if keep == 0:
                    raise _PermError(f"bad macro transformer in {spec!r}")
                parts = parts[-keep:]
            value = ".".join(parts)
            if letter.isupper():
                value = urllib.parse.quote(value, safe="-._~")
            out.append(value)
        else:
            out.append({"%": "%", "_": " ", "-": "%20"}.get(m.group(5), ""))
            if m.group(5) not in ("%", "_", "-"):
                raise _PermError(f"bad macro in {spec!r}")
        pos = m.end()
    result = "".join(out)
    if not exp:
        # RFC 7208 7.3: cut labels from the left until the name fits.
        result = result.rstrip(".") if result.endswith(".") else result
        while len(result) > MAX_DOMAIN and "." in result:
            result = result.partition(".")[2]
    return result


async def _explanation(lookup: Lookup, st: _State, domain: str, exp: str) -> str:
    """RFC 7208 6.2: any trouble with exp= means no explanation, never another result."""
    try:
        target = await _expand(lookup, st, domain, exp)
        texts = await lookup.txt(target)
        if len(texts) != 1:
            return ""
        text = texts[0].decode("ascii")
        if not all(32 <= ord(c) < 127 for c in text):
            return ""
        return await _expand(lookup, st, domain, text, exp=True)
    except (_PermError, _TempError, DnsTempError, UnicodeDecodeError):
        return ""
