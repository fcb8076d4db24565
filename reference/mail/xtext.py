"""xtext (RFC 3461 4): how DSN and AUTH parameters carry any octet in an ESMTP value."""

from __future__ import annotations

import re

__all__ = ["is_xtext", "xtext_decode", "xtext_encode"]

# RFC 3461 4: xtext = *( xchar / hexchar ); xchar is "!".."~" but "+" and "=";
# hexchar = "+" 2(%x30-39 / %x41-46).
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")


def is_xtext(text: str) -> bool:
    return bool(_XTEXT.fullmatch(text))


def xtext_decode(text: str) -> str:
    """RFC 3461 4: ``+XX`` is the octet XX; everything else stands for itself."""
    return re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def xtext_encode(text: str) -> str:
    """The inverse of :func:`xtext_decode` for ASCII text: ``+``, ``=``, controls as ``+XX``."""
    return "".join(c if "!" <= c <= "~" and c not in "+=" else f"+{ord(c):02X}" for c in text)
