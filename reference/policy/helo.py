"""HELO sanity at the MX: a well-formed name that does not claim to be us."""

from __future__ import annotations

import ipaddress
import re

from reference.mail import replies
from reference.policy import CONTINUE, Check, CheckResult, Transaction, refuse

__all__ = ["HeloCheck"]

# RFC 5321 4.1.2: Domain (LDH labels, with "_" tolerated as real MTAs send it) or an
# address literal. A bare single label is tolerated: RFC 5321 4.1.4 forbids refusing mail
# because the name does not resolve or match, only a malformed or forged one is refused.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")


def _literal(helo: str) -> str | None:
    if not (helo.startswith("[") and helo.endswith("]")):
        return None
    inner = helo[1:-1]
    return inner[5:] if inner.lower().startswith("ipv6:") else inner


class HeloCheck(Check):
    """MAIL (MX only): ``501 5.5.2`` for a malformed name, ``550 5.7.1`` for one forging us."""

    name = "helo"

    def __init__(self, hostname: str, own_addresses: tuple[str, ...] = ()) -> None:
        self.hostname = hostname.lower().rstrip(".")
        self.own = {ipaddress.ip_address(a) for a in own_addresses}

    async def mail(self, tx: Transaction) -> CheckResult:
        if tx.role != "mx" or tx.user is not None:
            return CONTINUE
        helo = tx.helo.strip()
        literal = _literal(helo)
        if literal is not None:
            try:
                addr = ipaddress.ip_address(literal)
            except ValueError:
                return refuse(replies.HELO_BAD_LITERAL.format(helo=helo))
            if addr in self.own and literal != tx.peer:
                return refuse(replies.HELO_OUR_ADDRESS.format(helo=helo))
            return CONTINUE
        if not _DOMAIN.match(helo) or len(helo) > 255:
            return refuse(replies.HELO_BAD_NAME.format(helo=repr(helo[:64])), "bad helo")
        if helo.lower().rstrip(".") == self.hostname:
            return refuse(replies.HELO_OUR_NAME.format(helo=helo), "forged helo")
        return CONTINUE
