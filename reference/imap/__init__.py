"""IMAP access to the mailbox store: a pure command parser and a server doing the I/O.

Where things are: ``parser`` turns bytes into command values, ``response`` renders values;
``server`` holds the settings and starts a ``session`` per connection, which runs the command
loop and dispatches. ``core`` is what every command family shares (state, the selected
mailbox's view, change reporting, buffered output); each family is a mixin in its own module:
``auth`` (STARTTLS, LOGIN, AUTHENTICATE), ``selection`` (SELECT, EXAMINE, CLOSE, UNSELECT),
``mailboxes`` (CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS, NAMESPACE), ``listing``
(LIST, LSUB), ``quota`` (GETQUOTA, GETQUOTAROOT, SETQUOTA), ``append``, ``idle``, ``fetch``,
``search`` and ``messages`` (STORE, COPY, MOVE, EXPUNGE). ``mime`` gives body structures and
envelopes, ``mutf7`` mailbox names, ``stream`` the bounded socket I/O (POP3 uses it too).
"""

from reference.imap.parser import Command, ParseError, parse_command
from reference.imap.server import ImapServer

__all__ = ["Command", "ImapServer", "ParseError", "parse_command"]
