"""IMAP access to the mailbox store: a pure command parser and a server doing the I/O.

Where things are: ``parser`` turns bytes into command values, ``response`` renders values;
``server`` holds the settings and starts a ``session`` per connection, which runs the command
loop and dispatches. ``core`` is what every command family shares (state, the selected
mailbox's view, change reporting, buffered output); each family is a mixin in its own module:
``auth`` (STARTTLS, LOGIN, AUTHENTICATE), ``selection`` (SELECT, EXAMINE, CLOSE, UNSELECT),
``mailboxes`` (CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS, NAMESPACE), ``listing``
(LIST, LSUB), ``quota`` (GETQUOTA, GETQUOTAROOT, SETQUOTA), ``append`` (with CATENATE),
``idle``, ``fetch``, ``search`` (with CONTEXT=SEARCH updates), ``sort`` (SORT, THREAD) and
``messages`` (STORE, COPY, MOVE, EXPUNGE). ``mime`` gives body structures and envelopes,
``threads`` base subjects and thread trees, ``mutf7`` mailbox names, ``stream`` the bounded
socket I/O (POP3 uses it too). ``searchable_text`` is what the store's text index keeps.
"""

from reference.imap.parser import Command, ParseError, parse_command
from reference.imap.search import searchable_text
from reference.imap.server import ImapServer

__all__ = ["Command", "ImapServer", "ParseError", "parse_command", "searchable_text"]
