"""POP3 access to the INBOX (RFC 1939, 2449, 2595): a pure parser and a server doing the I/O."""

from reference.pop3.parser import Command, ParseError, parse_command
from reference.pop3.server import Pop3Server

__all__ = ["Command", "ParseError", "Pop3Server", "parse_command"]
