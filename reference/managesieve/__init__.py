"""ManageSieve (RFC 5804): users upload, check and activate their Sieve scripts; a pure
command parser and a server doing the I/O."""

from reference.managesieve.parser import Command, ParseError, parse_command
from reference.managesieve.server import ManageSieveServer

__all__ = ["Command", "ManageSieveServer", "ParseError", "parse_command"]
