"""The IMAP server: its settings, and one :class:`Session` per connection.

IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) over the mailbox store, with IDLE (RFC 2177),
UIDPLUS (RFC 4315), MOVE (RFC 6851), SPECIAL-USE and CREATE-SPECIAL-USE (RFC 6154), QUOTA
(RFC 9208), NAMESPACE (RFC 2342), ID, ENABLE, LIST-EXTENDED/LIST-STATUS, ESEARCH/SEARCHRES,
BINARY, CONDSTORE and QRESYNC (RFC 7162), MULTIAPPEND (RFC 3502), CATENATE (RFC 4469), SORT
and THREAD (RFC 5256, RFC 5957), ESORT and CONTEXT=SEARCH/SORT (RFC 5267), COMPRESS=DEFLATE
(RFC 4978) and NOTIFY (RFC 5465). A session sees its mailbox through a list of UIDs
(sequence number n is ``uids[n - 1]``) and the mod-sequence it has reported up to; everything
else is asked of the store, so a mailbox of 100,000 messages costs an index query, not a
directory scan.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from reference.clock import Clock
from reference.credentials import Authenticator
from reference.imap.session import Session
from reference.mailbox import MailStore
from reference.stream import Stream

# Called with (account address, message bytes, is_spam) when a message is moved or copied
# into Junk (spam) or out of it to anywhere but Trash (ham): the spam classifier's trainer.
JunkHook = Callable[[str, bytes, bool], None]


class ImapServer:
    """Serves IMAP sessions from a :class:`MailStore`; one ``handle`` call per connection."""

    def __init__(
        self,
        store: MailStore,
        auth: Authenticator,
        *,
        hostname: str,
        tls_context: ssl.SSLContext | None,
        clock: Clock,
        idle_timeout: float = 30 * 60.0,  # RFC 3501 5.4: at least 30 minutes once logged in
        login_timeout: float = 60.0,  # before login a short timer, as Exchange and Stalwart do
        # Dovecot's imap_max_line_length: room for an RFC 2971 ID at its limits (30 pairs of
        # 30-octet fields and 1024-octet values, ~32 kB) and long UID sets (RFC 7162 4).
        max_line: int = 64 * 1024,
        max_literal: int = 64 * 1024 * 1024,
        allow_plaintext: bool = False,  # LOGIN without TLS: only behind a TLS-terminating proxy
        idle_poll: float = 5.0,  # seconds between cheap looks for other processes' changes
        on_junk: JunkHook | None = None,
        read_only: Callable[[str], bool] = lambda user: False,
    ) -> None:
        self.store = store
        self.auth = auth
        self.hostname = hostname
        self.tls_context = tls_context
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.login_timeout = login_timeout
        self.max_line = max_line
        self.max_literal = max_literal
        self.allow_plaintext = allow_plaintext
        self.idle_poll = idle_poll
        self.on_junk = on_junk
        self.read_only = read_only  # whether an account is an archive: read, never changed

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tls: bool
    ) -> None:
        """Run one session; ``tls`` is True on an implicit-TLS (993) connection."""
        await Session(self, Stream(reader, writer, self.clock), tls=tls).run()
