"""IMAP4rev1 access to the mailbox store: a pure command parser and a server doing the I/O."""

from reference.imap.parser import Command, ParseError, parse_command
from reference.imap.server import ImapServer

__all__ = ["Command", "ImapServer", "ParseError", "parse_command"]
