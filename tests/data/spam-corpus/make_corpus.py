"""Writes the labelled spam corpus next to this script: ham/*.eml and spam/*.eml.

    python tests/data/spam-corpus/make_corpus.py           # (re)write the files
    python tests/data/spam-corpus/make_corpus.py --check   # exit 1 if they differ

Every message is invented for the project (names, companies and domains under the
reserved .example and .test names, addresses from the documentation ranges), in the
kinds real mailboxes hold. Ham: personal mail, work threads, newsletters, receipts with
PDFs, password resets, sign-in alerts, shipping notices, mailing-list posts, invitations,
travel bookings, company announcements, bank notices. Spam: bank and mailbox phishing
(deceptive links, raw IPs, lookalike domains), lottery, pharmacy, advance fee, crypto
investment, invoices carrying scripts, extortion, money-mule job offers, prize surveys,
marketing blasts, parcel-fee scams. Some ham says what spam says ("verify", "offer",
"click here") and some spam says little a rule would catch: the corpus is meant to
measure, not to flatter.

Deterministic: one seeded generator per family, fixed dates, fixed zip timestamps; the
same script writes the same bytes. ``tests/test_spam_corpus.py`` checks that it does.
"""

from __future__ import annotations

import argparse
import base64
import io
import random
import sys
import zipfile
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
PER_FAMILY = 5
BASE = datetime(2026, 3, 2, 8, 0, tzinfo=timezone(timedelta(hours=1)))

FIRST = [
    "Anna",
    "Ben",
    "Chloé",
    "David",
    "Elif",
    "Farid",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Kasia",
    "Luca",
    "Maya",
    "Noah",
    "Olga",
    "Pedro",
    "Rosa",
    "Sven",
    "Tariq",
    "Ulla",
]
LAST = [
    "Adler",
    "Brandt",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "García",
    "Hansen",
    "Ivanova",
    "Jensen",
    "Keller",
    "Lindqvist",
    "Moreau",
    "Novak",
    "Olsen",
    "Peters",
]
CITIES = ["Lisbon", "Utrecht", "Lyon", "Gdańsk", "Porto", "Ghent", "Bergen", "Graz", "Turin"]
ME = ("Sam Weber", "sam.weber@example.test")


def person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return f"{first} {last}", first


def slug(text: str) -> str:
    return "".join(c for c in text.lower() if c.isascii() and c.isalnum())


class Mail:
    """One message being written: headers, a plain part, optional HTML and attachments."""

    def __init__(self, rng: random.Random, n: int, sender: tuple[str, str], subject: str) -> None:
        self.rng = rng
        self.n = n
        self.sender = sender
        self.subject = subject
        self.to = ME
        self.text = ""
        self.html = ""
        self.headers: list[tuple[str, str]] = []
        self.files: list[tuple[str, str, bytes]] = []
        self.date = True
        self.message_id = True

    def build(self) -> bytes:
        m = EmailMessage(policy=policy.SMTP)
        name, addr = self.sender
        m["From"] = f"{name} <{addr}>" if name else addr
        m["To"] = f"{self.to[0]} <{self.to[1]}>"
        m["Subject"] = self.subject
        if self.date:
            when = BASE + timedelta(hours=7 * self.n, minutes=self.rng.randrange(60))
            m["Date"] = format_datetime(when)
        if self.message_id:
            m["Message-ID"] = f"<{self.rng.getrandbits(64):016x}.{self.n}@{addr.split('@')[1]}>"
        for k, v in self.headers:
            m[k] = v
        m.set_content(self.text)
        if self.html:
            m.add_alternative(self.html, subtype="html")
        for filename, ctype, data in self.files:
            main, sub = ctype.split("/")
            m.add_attachment(data, maintype=main, subtype=sub, filename=filename)
        # Boundaries are random unless set: set them, so the same script writes the same bytes.
        for k, part in enumerate(p for p in m.walk() if p.is_multipart()):
            part.set_boundary(f"=-mailspec-{self.n}-{k}-{self.rng.getrandbits(32):08x}")
        return m.as_bytes()


def html_page(paragraphs: list[str], links: list[tuple[str, str]], footer: str = "") -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    body += "".join(f'<p><a href="{href}">{text}</a></p>' for text, href in links)
    if footer:
        body += f'<p style="font-size:11px;color:#777">{footer}</p>'
    return f'<html><body style="font-family:sans-serif">{body}</body></html>'


def fake_pdf(title: str, lines: list[str]) -> bytes:
    text = " ".join(f"({line}) Tj T*" for line in lines)
    return (
        f"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        f"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
        f"3 0 obj << /Type /Page /Parent 2 0 R /Contents 4 0 R >> endobj\n"
        f"4 0 obj << >> stream\nBT /F1 11 Tf 72 720 Td ({title}) Tj T* {text} ET\nendstream "
        f"endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    ).encode("latin-1", "replace")


def zipped(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo(name, date_time=(2026, 3, 1, 9, 30, 0))
        z.writestr(info, data)
    return buf.getvalue()


# -- ham ---------------------------------------------------------------------------------------


def ham_personal(rng: random.Random, n: int) -> Mail:
    name, first = person(rng)
    city = rng.choice(CITIES)
    topics = [
        (
            f"Dinner on {rng.choice(['Friday', 'Saturday'])}?",
            f"Hi Sam,\n\nWe finally unpacked the last boxes, so come over for dinner. I'm making "
            f"the lentil soup you liked, and {rng.choice(['Mira', 'Tom', 'Jo'])} is bringing "
            f"dessert. Around seven? Let me know if you can't eat anything.\n\n{first}",
        ),
        (
            f"Photos from {city}",
            f"Sam!\n\nHere are the photos from the weekend in {city}, the ones from the market "
            f"came out best. The album link is the same as last time, I added twenty more.\n\n"
            f"Say hi to everyone,\n{first}",
        ),
        (
            "Birthday present for Mum",
            f"Hey,\n\nI was thinking we could get Mum the pottery class she kept talking about. "
            f"It's {rng.randint(80, 140)} euros for the two of us if we go halves. Thoughts?\n\n"
            f"{first}",
        ),
        (
            "Your bike",
            f"Hi Sam,\n\nThanks again for lending me the bike. The back tyre was a bit flat so I "
            f"pumped it up. I can drop it off on {rng.choice(['Tuesday', 'Wednesday'])} evening "
            f"if that works.\n\nCheers,\n{first}",
        ),
        (
            "Re: hiking in May",
            f"Sounds great. I checked the huts and the one above {city} still has beds on the "
            f"{rng.randint(10, 28)}th. I'll book two nights unless you say otherwise.\n\n"
            f"> Shall we do the ridge walk again?\n\n{first}",
        ),
    ]
    subject, text = topics[n % len(topics)]
    m = Mail(rng, n, (name, f"{slug(first)}.{slug(name.split()[1])}@mailbox.example"), subject)
    m.text = text
    return m


def ham_work(rng: random.Random, n: int) -> Mail:
    name, first = person(rng)
    project = rng.choice(["Atlas", "Harbour", "Quill", "Beacon", "Nimbus"])
    items = [
        (
            f"Notes from the {project} planning meeting",
            f"Hi all,\n\nNotes from today's meeting:\n\n1. The {project} migration moves to "
            f"week {rng.randint(12, 20)}.\n2. {rng.choice(FIRST)} owns the rollback plan.\n3. We "
            f"review the budget draft on Thursday.\n\nPlease add anything I missed to the "
            f"document.\n\n{first}",
        ),
        (
            f"Code review: {project} retry logic",
            f"Sam,\n\nI left a few comments on the pull request. Mostly small things: the backoff "
            f"should cap at ten minutes and the tests need a case for a closed connection. "
            f"Otherwise it looks good to merge.\n\n{first}",
        ),
        (
            f"{project}: status for week {rng.randint(10, 30)}",
            f"Team,\n\nDone this week: the schema change and the new export. In progress: the "
            f"report for finance, due on the {rng.randint(3, 28)}th. Blocked: nothing.\n\n"
            f"Thanks,\n{first}",
        ),
        (
            "Agenda for Monday",
            f"Hi Sam,\n\nFor Monday I'd like to go through the hiring plan, then the quarterly "
            f"numbers, then any other business. Thirty minutes should do.\n\nBest,\n{first}",
        ),
        (
            f"Re: {project} deadline",
            f"Agreed, let's move the deadline by a week rather than cut the testing. I'll let "
            f"the customer know today and send you the revised schedule.\n\n{first}",
        ),
    ]
    subject, text = items[n % len(items)]
    m = Mail(rng, n, (name, f"{slug(first)}@northwind.example"), subject)
    m.text = text
    return m


def ham_newsletter(rng: random.Random, n: int) -> Mail:
    shops = [
        ("The Green Thumb", "greenthumb.example", "gardening"),
        ("Kestrel Books", "kestrelbooks.example", "books"),
        ("Cycle Works", "cycleworks.example", "cycling"),
        ("Pantry & Co", "pantry.example", "cooking"),
        ("Trailhead Outdoor", "trailhead.example", "hiking"),
    ]
    shop, domain, topic = shops[n % len(shops)]
    issue = rng.randint(40, 180)
    tips = {
        "gardening": ["Sow tomatoes indoors now", "Mulch your beds before the dry weeks"],
        "books": ["Five novels for long train rides", "Our staff picks for March"],
        "cycling": ["How to true a wheel at home", "Spring service checklist"],
        "cooking": ["Three soups for cold evenings", "Sourdough: the second week"],
        "hiking": ["Layering for changeable weather", "Ten quiet trails near the coast"],
    }[topic]
    sale = rng.choice(
        [
            "Members save 15% this week.",
            "Free delivery on orders over 40 euros.",
            "Our spring sale ends Sunday.",
        ]
    )
    m = Mail(rng, n, (shop, f"news@{domain}"), f"{shop} newsletter #{issue}: {tips[0]}")
    m.headers.append(("List-Unsubscribe", f"<https://www.{domain}/unsubscribe?id={issue}>"))
    m.text = (
        f"{shop}, issue {issue}\n\n{tips[0]}\n{tips[1]}\n\n{sale}\n\nRead online: "
        f"https://www.{domain}/letters/{issue}\n\nYou receive this because you subscribed at "
        f"{domain}. Unsubscribe: https://www.{domain}/unsubscribe"
    )
    m.html = html_page(
        [f"<b>{shop}</b>, issue {issue}", tips[0], tips[1], sale],
        [
            ("Read the full letter", f"https://www.{domain}/letters/{issue}"),
            ("Click here to unsubscribe", f"https://www.{domain}/unsubscribe"),
        ],
        f"{shop}, 12 Market Street, {rng.choice(CITIES)}",
    )
    return m


def ham_invoice(rng: random.Random, n: int) -> Mail:
    vendors = [
        ("Cloudnest", "cloudnest.example", "hosting plan"),
        ("Ledgerly", "ledgerly.example", "accounting subscription"),
        ("Fibrelink", "fibrelink.example", "broadband"),
        ("Printwell", "printwell.example", "business cards"),
        ("Voltaic Energy", "voltaic.example", "electricity"),
    ]
    vendor, domain, what = vendors[n % len(vendors)]
    number = f"INV-{rng.randint(2026000, 2026999)}"
    amount = f"{rng.randint(9, 240)}.{rng.randint(0, 99):02d}"
    m = Mail(rng, n, (f"{vendor} Billing", f"billing@{domain}"), f"Your {vendor} invoice {number}")
    m.text = (
        f"Hello Sam,\n\nThank you for your payment. Your invoice {number} for your {what} "
        f"({amount} EUR) is attached as a PDF. The amount was charged to the card ending in "
        f"{rng.randint(1000, 9999)}.\n\nYou can also find all invoices in your account at "
        f"https://{domain}/billing\n\n{vendor}"
    )
    pdf = fake_pdf(f"{vendor} invoice {number}", [f"{what}: {amount} EUR", "Paid, thank you"])
    m.files.append((f"{number}.pdf", "application/pdf", pdf))
    return m


def ham_password_reset(rng: random.Random, n: int) -> Mail:
    services = [
        ("Ledgerly", "ledgerly.example"),
        ("Kestrel Books", "kestrelbooks.example"),
        ("Trailhead Outdoor", "trailhead.example"),
        ("Cloudnest", "cloudnest.example"),
        ("Fibrelink", "fibrelink.example"),
    ]
    service, domain = services[n % len(services)]
    code = base64.b32encode(rng.randbytes(10)).decode().rstrip("=").lower()
    m = Mail(rng, n, (service, f"no-reply@{domain}"), f"Reset your {service} password")
    link = f"https://accounts.{domain}/reset?token={code}"
    m.text = (
        f"Hi Sam,\n\nSomeone (hopefully you) asked to reset the password of your {service} "
        f"account. To choose a new password, open this link within 30 minutes:\n\n{link}\n\n"
        f"If you did not ask for this, you can ignore this message: your password stays the "
        f"same.\n\nThe {service} team"
    )
    m.html = html_page(
        [
            "Hi Sam,",
            f"Someone asked to reset the password of your {service} account.",
            "If you did not ask for this, ignore this message.",
        ],
        [("Choose a new password", link)],
    )
    return m


def ham_signin_alert(rng: random.Random, n: int) -> Mail:
    services = [
        ("Ledgerly", "ledgerly.example"),
        ("Cloudnest", "cloudnest.example"),
        ("Mailbox", "mailbox.example"),
        ("Northwind SSO", "northwind.example"),
        ("Fibrelink", "fibrelink.example"),
    ]
    service, domain = services[n % len(services)]
    device = rng.choice(["Firefox on Linux", "Safari on iPhone", "Chrome on Windows"])
    m = Mail(rng, n, (f"{service} Security", f"security@{domain}"), "New sign-in to your account")
    m.text = (
        f"Hi Sam,\n\nWe noticed a new sign-in to your {service} account from {device} near "
        f"{rng.choice(CITIES)}. If this was you, there is nothing to do.\n\nIf you don't "
        f"recognise this activity, review your recent sign-ins and change your password at "
        f"https://{domain}/security\n\nThe {service} security team"
    )
    return m


def ham_shipping(rng: random.Random, n: int) -> Mail:
    shops = [
        ("Kestrel Books", "kestrelbooks.example"),
        ("Cycle Works", "cycleworks.example"),
        ("Pantry & Co", "pantry.example"),
        ("Trailhead Outdoor", "trailhead.example"),
        ("The Green Thumb", "greenthumb.example"),
    ]
    shop, domain = shops[n % len(shops)]
    order = rng.randint(100000, 999999)
    track = f"{rng.choice(['JD', 'PX', 'TT'])}{rng.randint(10**9, 10**10 - 1)}"
    m = Mail(rng, n, (shop, f"orders@{domain}"), f"Your order {order} has shipped")
    m.text = (
        f"Good news, Sam!\n\nYour order {order} left our warehouse today and should arrive "
        f"in {rng.randint(2, 4)} working days. Tracking number: {track}\n\nTrack it at "
        f"https://www.{domain}/orders/{order}\n\nThanks for shopping with {shop}."
    )
    return m


def ham_mailing_list(rng: random.Random, n: int) -> Mail:
    name, first = person(rng)
    threads = [
        (
            "[py-users] Re: asyncio timeouts in 3.11",
            "asyncio.timeout() is the way to go in 3.11; wait_for still works but creates an "
            "extra task. Note that the context manager cancels the inner task, so clean up in a "
            "finally block.",
        ),
        (
            "[py-users] packaging a CLI with entry points",
            "Put the function in [project.scripts] in pyproject.toml and reinstall in editable "
            "mode. The console script is generated at install time, which is why your change "
            "did not show up.",
        ),
        (
            "[garden-club] seed swap on Saturday",
            "Reminder that the seed swap is on Saturday at the community hall from ten. Bring "
            "labelled envelopes; there will be coffee and the usual chaos.",
        ),
        (
            "[py-users] Re: sqlite WAL and several processes",
            "WAL lets readers and one writer work together, but writers still queue. Use BEGIN "
            "IMMEDIATE for read-modify-write so two processes never both read the old value.",
        ),
        (
            "[bike-commuters] new cycle lane consultation",
            "The council opened the consultation on the river lane. It closes at the end of the "
            "month, so please add your comments; the more specific, the better.",
        ),
    ]
    subject, body = threads[n % len(threads)]
    list_id = subject[1 : subject.index("]")]
    m = Mail(
        rng, n, (name, f"{slug(first)}@{rng.choice(['mailbox', 'post', 'inbox'])}.example"), subject
    )
    m.headers += [
        ("List-Id", f"<{list_id}.lists.example>"),
        ("List-Unsubscribe", f"<mailto:{list_id}-leave@lists.example>"),
        ("Precedence", "list"),
    ]
    m.text = f"{body}\n\n-- \n{first}\n\n_______\n{list_id} mailing list\n{list_id}@lists.example"
    return m


def ham_invitation(rng: random.Random, n: int) -> Mail:
    name, first = person(rng)
    events = ["Quarterly review", "Team lunch", "Design workshop", "Book club", "Parents' evening"]
    event = events[n % len(events)]
    day = rng.randint(3, 27)
    m = Mail(
        rng, n, (name, f"{slug(first)}@northwind.example"), f"Invitation: {event} on {day} April"
    )
    m.text = (
        f"{first} invited you to {event}.\n\nWhen: {day} April 2026, "
        f"{rng.randint(9, 16)}:00-{rng.randint(17, 18)}:00\nWhere: Room {rng.randint(1, 9)}.0"
        f"{rng.randint(1, 9)}, or online\n\nPlease reply to let {first} know whether you "
        f"can come.\n\nAccept: https://calendar.northwind.example/rsvp?e={n}&a=yes\nDecline: "
        f"https://calendar.northwind.example/rsvp?e={n}&a=no"
    )
    ics = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Northwind//Calendar//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{n}@northwind.example\r\nDTSTART:202604{day:02d}T090000Z\r\nSUMMARY:{event}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()
    m.files.append(("invite.ics", "text/calendar", ics))
    return m


def ham_travel(rng: random.Random, n: int) -> Mail:
    city = rng.choice(CITIES)
    ref = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6))
    kinds = [
        ("Skylark Air", "skylark.example", f"Your flight to {city}: booking {ref}"),
        ("Rail Europa", "raileuropa.example", f"Your tickets to {city} ({ref})"),
        ("Harbour Hotels", "harbourhotels.example", f"Booking confirmed: {city}, ref {ref}"),
        ("Skylark Air", "skylark.example", f"Check-in is open for {city}"),
        ("CityCar Rental", "citycar.example", f"Your car in {city} is reserved"),
    ]
    company, domain, subject = kinds[n % len(kinds)]
    m = Mail(rng, n, (company, f"bookings@{domain}"), subject)
    m.text = (
        f"Dear Sam Weber,\n\nThank you for booking with {company}. Your reference is {ref}.\n\n"
        f"Destination: {city}\nDate: {rng.randint(1, 28)} May 2026\nTotal paid: "
        f"{rng.randint(60, 480)} EUR\n\nManage your booking: https://www.{domain}/manage/{ref}"
        f"\n\nHave a good trip,\n{company}"
    )
    return m


def ham_company(rng: random.Random, n: int) -> Mail:
    notes = [
        (
            "Office closed on Monday",
            "The office is closed on Monday for the public holiday. "
            "The support rota is on the intranet; urgent issues go to the on-call number.",
        ),
        (
            "Benefits enrolment opens",
            "Benefits enrolment for next year is open until the end of the month. Review "
            "your choices in the HR portal; nothing changes if you do nothing.",
        ),
        (
            "New expense policy",
            "From April, expenses are submitted in the finance tool within "
            "30 days. Receipts can be photographed; paper copies are no longer needed.",
        ),
        (
            "Fire drill on Thursday",
            "There is a fire drill on Thursday at 11:00. Please leave by "
            "the nearest exit and gather in the car park until the wardens give the all clear.",
        ),
        (
            "Welcome our new colleagues",
            "Please welcome the four people who joined the "
            "engineering and support teams this month. Say hello at Friday's breakfast.",
        ),
    ]
    subject, body = notes[n % len(notes)]
    m = Mail(rng, n, ("Northwind People Team", "people@northwind.example"), subject)
    m.text = f"Hello everyone,\n\n{body}\n\nThanks,\nThe People Team"
    return m


def ham_bank(rng: random.Random, n: int) -> Mail:
    banks = [
        ("Fjord Savings Bank", "fjordbank.example"),
        ("Meridian Bank", "meridian.example"),
        ("Fjord Savings Bank", "fjordbank.example"),
        ("Meridian Bank", "meridian.example"),
        ("Copperleaf Credit Union", "copperleaf.example"),
    ]
    bank, domain = banks[n % len(banks)]
    month = rng.choice(["January", "February", "March"])
    m = Mail(rng, n, (bank, f"statements@{domain}"), f"Your {month} statement is ready")
    m.text = (
        f"Dear customer,\n\nYour statement for {month} is ready in online banking. For your "
        f"security we never send statements as attachments and never ask for your password "
        f"by email.\n\nSign in as usual at https://www.{domain}/ to read it.\n\n{bank}"
    )
    m.html = html_page(
        [
            "Dear customer,",
            f"Your statement for {month} is ready in online banking.",
            "We never ask for your password by email.",
        ],
        [(f"www.{domain}", f"https://www.{domain}/statements")],
        f"{bank} is authorised and regulated.",
    )
    return m


HAM: list[tuple[str, Callable[[random.Random, int], Mail]]] = [
    ("personal", ham_personal),
    ("work", ham_work),
    ("newsletter", ham_newsletter),
    ("invoice", ham_invoice),
    ("password-reset", ham_password_reset),
    ("signin-alert", ham_signin_alert),
    ("shipping", ham_shipping),
    ("mailing-list", ham_mailing_list),
    ("invitation", ham_invitation),
    ("travel", ham_travel),
    ("company", ham_company),
    ("bank-notice", ham_bank),
]


# -- spam --------------------------------------------------------------------------------------


def ip(rng: random.Random) -> str:
    return f"{rng.choice(['203.0.113', '198.51.100', '192.0.2'])}.{rng.randint(2, 250)}"


def spam_bank_phish(rng: random.Random, n: int) -> Mail:
    banks = [
        ("Fjord Savings Bank", "fjordbank.example"),
        ("Meridian Bank", "meridian.example"),
        ("Copperleaf Credit Union", "copperleaf.example"),
    ]
    bank, domain = banks[n % len(banks)]
    href = rng.choice(
        [
            f"http://{ip(rng)}/{slug(bank)}/login.php",
            f"http://secure-{slug(bank)}.{rng.choice(['top', 'xyz'])}.example/auth",
        ]
    )
    subject = rng.choice(
        [
            "Important: confirm your details",
            "Security notice for your account",
            "Action required on your online banking",
        ]
    )
    sender = (f"{bank}", f"alert@{slug(bank)}-online.{rng.choice(['info', 'support'])}.example")
    m = Mail(rng, n, sender, subject)
    m.text = (
        f"Dear valued customer,\n\nWe detected an irregular payment attempt on your {bank} "
        f"account. To protect you, online access has been limited. Please confirm your "
        f"identity within 24 hours to avoid permanent closure.\n\n{href}\n\n{bank} Security"
    )
    m.html = html_page(
        [
            "Dear valued customer,",
            f"We detected an irregular payment attempt on your {bank} account. Online access "
            "has been limited. Please confirm your identity within 24 hours to avoid closure.",
        ],
        [(f"https://www.{domain}/secure-login", href)],
        f"(c) {bank}",
    )
    return m


def spam_mailbox_phish(rng: random.Random, n: int) -> Mail:
    brands = [
        ("Microsoft 365", "rnicrosoft-365.example"),
        ("PayPal", "paypa1-service.example"),
        ("Mail Administrator", "mail-quota.example"),
        ("Apple ID", "appie-id.example"),
        ("DocuSign", "docusign-files.example"),
    ]
    brand, domain = brands[n % len(brands)]
    lines = {
        "Microsoft 365": (
            "Your mailbox is almost full",
            "Your mailbox has reached 98% of its "
            "quota. Messages will be deleted unless you verify your account.",
        ),
        "PayPal": (
            "Your account has been limited",
            "We noticed unusual login activity. Your "
            "account has been suspended until you update your payment information.",
        ),
        "Mail Administrator": (
            "Password expiry notice",
            "The password for sam.weber@example."
            "test expires today. Keep your current password below.",
        ),
        "Apple ID": (
            "Your Apple ID was locked",
            "Your Apple ID was locked for security reasons. Confirm your identity to unlock it.",
        ),
        "DocuSign": (
            "You have a document to review",
            "A payment document was shared with you. Sign in with your email password to view it.",
        ),
    }
    subject, line = lines[brand]
    link = f"https://{domain}/{rng.choice(['verify', 'login', 'secure'])}?u=sam.weber"
    m = Mail(rng, n, (brand, f"no-reply@{domain}"), subject)
    m.text = f"Dear user,\n\n{line}\n\nContinue: {link}\n\n{brand} Team"
    m.html = html_page(
        ["Dear user,", line], [("Keep my password" if "Password" in subject else "Continue", link)]
    )
    return m


def spam_lottery(rng: random.Random, n: int) -> Mail:
    prize = f"{rng.choice(['1,500,000', '850,000', '2,000,000', '950,000'])}"
    org = rng.choice(["Euro Millions Promo", "International Lotto Board", "Global Sweepstakes"])
    name, _ = person(rng)
    m = Mail(
        rng,
        n,
        (org, f"claims.{rng.randint(10, 99)}@winners-desk.example"),
        rng.choice(
            ["CONGRATULATIONS YOU ARE A WINNER", "Winning notification", "Your email has won"]
        ),
    )
    m.text = (
        f"Dear Winner,\n\nYour email address was selected in our annual e-mail lottery draw "
        f"and you have won the sum of EUR {prize}. Ticket number: {rng.randint(10**7, 10**8)}."
        f"\n\nTo claim your prize, contact our claims agent {name} with your full name, "
        f"address, phone number and a copy of your passport. A processing fee applies.\n\n"
        f"Congratulations once again!!!\n{org}"
    )
    return m


def spam_pharma(rng: random.Random, n: int) -> Mail:
    drug = rng.choice(["V1agra", "Cialis", "Viagra", "Levitra", "weight-loss pills"])
    domain = f"{rng.choice(['pharma', 'meds', 'rx'])}{rng.randint(100, 999)}.example"
    m = Mail(
        rng,
        n,
        ("", f"{rng.choice(['sales', 'info', 'shop'])}@{domain}"),
        rng.choice([f"Cheap {drug} online", "Men's health special", f"{drug} -80%"]),
    )
    m.text = (
        f"Best prices for {drug} and 200 more medications.\nNo prescription needed, discreet "
        f"shipping worldwide, 100% satisfaction.\n\nOrder: http://www.{domain}/?ref={n}\n"
    )
    m.html = html_page(
        [f"<b>{drug}</b> from 0.99 per pill", "Online pharmacy - no prescription needed"],
        [("ORDER NOW", f"http://www.{domain}/?ref={n}")],
    )
    m.date = n % 2 == 0
    return m


def spam_advance_fee(rng: random.Random, n: int) -> Mail:
    name, _ = person(rng)
    amount = rng.choice(["10.5 million", "7.2 million", "18 million"])
    title = rng.choice(["Barrister", "Dr.", "Mrs.", "Engr."])
    m = Mail(
        rng,
        n,
        (f"{title} {name}", f"{slug(name)}{rng.randint(1, 99)}@freemail.example"),
        rng.choice(
            ["Confidential business proposal", "Urgent reply needed", "Re: inheritance transfer"]
        ),
    )
    m.text = (
        f"Dear Friend,\n\nI am {title} {name}, personal attorney to a late client who died "
        f"with his family in an accident, leaving a deposit of {amount} US dollars with no "
        f"next of kin. I seek your consent to present you as the beneficiary so that the "
        f"inheritance fund can be transferred to your account. You will receive 40% of the "
        f"total sum.\n\nPlease reply with your full name and direct phone number for more "
        f"details. This transaction is 100% risk free.\n\nRegards,\n{title} {name}"
    )
    return m


def spam_crypto(rng: random.Random, n: int) -> Mail:
    coin = rng.choice(["Bitcoin", "crypto", "Ethereum"])
    domain = f"{rng.choice(['quantum', 'alpha', 'apex'])}-{rng.choice(['trade', 'yield'])}.example"
    pct = rng.choice([250, 320, 400, 180])
    m = Mail(
        rng,
        n,
        (f"{rng.choice(['Elena', 'Mark', 'Victor'])} from the trading desk", f"desk@{domain}"),
        rng.choice(
            [
                f"Make {pct}% on {coin} this month",
                "The AI robot that trades for you",
                f"Your {coin} account is ready",
            ]
        ),
    )
    m.text = (
        f"Hello,\n\nOur AI trading robot made members {pct}% last month on {coin}. Start with "
        f"only 250 euros and watch your balance grow every day. Guaranteed returns, withdraw "
        f"any time.\n\nPlaces are limited: open your account today at https://{domain}/join"
        f"\n\nTo your success,\nThe Team"
    )
    return m


def spam_malware_invoice(rng: random.Random, n: int) -> Mail:
    number = rng.randint(10000, 99999)
    company = rng.choice(["Global Logistics", "Swift Accounts", "Prime Supplies", "DHL Express"])
    m = Mail(
        rng,
        n,
        (company, f"accounts@{slug(company)}-{rng.randint(1, 9)}.example"),
        rng.choice(
            [f"Overdue invoice {number}", f"Payment {number} remittance", f"Re: invoice {number}"]
        ),
    )
    m.text = (
        f"Hi,\n\nPlease find attached the overdue invoice {number}. Kindly arrange payment "
        f"today.\n\nThanks and regards\nAccounts Department"
    )
    script = b"var s=new ActiveXObject('WScript.Shell');s.Run('powershell -enc AAAA');"
    kind = n % 3
    if kind == 0:
        m.files.append(
            (f"invoice_{number}.zip", "application/zip", zipped(f"invoice_{number}.pdf.js", script))
        )
    elif kind == 1:
        m.files.append((f"INV{number}.pdf.exe", "application/octet-stream", b"MZ\x90\x00" + script))
    else:
        m.files.append(
            (
                f"remittance_{number}.html",
                "text/html",
                b"<script>location='http://" + ip(rng).encode() + b"/o365'</script>",
            )
        )
    return m


def spam_extortion(rng: random.Random, n: int) -> Mail:
    wallet = "bc1q" + "".join(rng.choice("023456789acdefghjklmnpqrstuvwxyz") for _ in range(38))
    amount = rng.choice([1250, 1450, 1900])
    m = Mail(
        rng,
        n,
        ("", "sam.weber@example.test"),
        rng.choice(
            ["I know your password", "Your device was hacked", "Payment required: read this"]
        ),
    )
    m.text = (
        f"Hello,\n\nI hacked your device some months ago and recorded you through your "
        f"camera. I have all your contacts. Send {amount} USD in Bitcoin to this bitcoin "
        f"wallet address within 48 hours:\n\n{wallet}\n\nIf I do not receive the payment, "
        f"the video goes to everyone you know. Do not reply, this address is not monitored."
    )
    m.message_id = n % 2 == 0
    return m


def spam_job(rng: random.Random, n: int) -> Mail:
    name, first = person(rng)
    pay = rng.choice([3500, 4200, 5000, 2800])
    m = Mail(
        rng,
        n,
        (name, f"{slug(first)}.hr{rng.randint(1, 99)}@freemail.example"),
        rng.choice(
            ["Part-time position available", "Remote assistant wanted", "Job offer - reply today"]
        ),
    )
    m.text = (
        f"Good day,\n\nWe found your profile online and would like to offer you a part-time "
        f"remote position as payment processing assistant. You receive transfers from our "
        f"clients into your bank account and forward them to our partners, keeping 10% as "
        f"your commission. Expected income: {pay} EUR per month, two hours a day, no "
        f"experience required.\n\nIf interested, reply with your name, age and WhatsApp "
        f"number.\n\n{first}\nRecruitment"
    )
    return m


def spam_prize_survey(rng: random.Random, n: int) -> Mail:
    brand = rng.choice(["SuperMart", "Amaz0n Rewards", "Netflix", "CoffeeHouse"])
    domain = f"{rng.choice(['reward', 'prize', 'gift'])}-{rng.randint(10, 99)}.example"
    m = Mail(
        rng,
        n,
        (f"{brand} Rewards", f"rewards@{domain}"),
        rng.choice(
            [
                "You've been selected!",
                f"Claim your {brand} gift card",
                "Your loyalty reward is waiting",
            ]
        ),
    )
    text = (
        f"Congratulations! You have been selected to receive a 500 EUR {brand} gift card. "
        f"Answer three quick questions and claim your reward before it expires today."
    )
    m.text = f"{text}\n\nhttp://{domain}/survey?id={rng.randint(1000, 9999)}"
    m.html = html_page([text], [("CLAIM NOW", f"http://{domain}/survey")])
    return m


def spam_marketing(rng: random.Random, n: int) -> Mail:
    product = rng.choice(
        [
            "SEO package",
            "email list of 2 million contacts",
            "web redesign",
            "LED lights",
            "solar panels",
        ]
    )
    domain = f"{rng.choice(['best', 'top', 'mega'])}{rng.choice(['deals', 'offers'])}.example"
    subjects = [
        f"BEST PRICE {product.upper()} GUARANTEED",
        f"Increase your sales with our {product}",
        "Last chance!!!",
        "Quick question",
        f"{product} - 70% off",
    ]
    m = Mail(
        rng,
        n,
        (rng.choice(["Marketing Team", "Deals", ""]), f"promo@{domain}"),
        subjects[n % len(subjects)],
    )
    m.text = (
        f"Hi,\n\nAre you looking for {product}? We offer the lowest price on the market, "
        f"limited time offer. Act now and get a free bonus. 100% guaranteed results or your "
        f"money back!!!\n\nClick here: http://www.{domain}/\n\nTo stop receiving, reply STOP."
    )
    return m


def spam_parcel(rng: random.Random, n: int) -> Mail:
    carrier = rng.choice(["Post Service", "ParcelNet", "FedEx Delivery", "Customs Office"])
    fee = f"{rng.randint(1, 3)}.{rng.randint(10, 99)}"
    link = rng.choice(
        [f"http://{ip(rng)}/track", f"http://parcel-{rng.randint(100, 999)}.example/pay"]
    )
    m = Mail(
        rng,
        n,
        (carrier, f"notice@{slug(carrier)}-{rng.randint(10, 99)}.example"),
        rng.choice(
            ["Your parcel is on hold", "Delivery attempt failed", "Customs fee outstanding"]
        ),
    )
    m.text = (
        f"Your parcel could not be delivered because an import fee of {fee} EUR is unpaid. "
        f"Pay the fee within 48 hours or the parcel returns to sender.\n\nPay now: {link}"
    )
    m.html = html_page(
        ["Your parcel could not be delivered.", f"Outstanding fee: {fee} EUR."],
        [("Track and pay", link)],
    )
    return m


SPAM: list[tuple[str, Callable[[random.Random, int], Mail]]] = [
    ("bank-phish", spam_bank_phish),
    ("mailbox-phish", spam_mailbox_phish),
    ("lottery", spam_lottery),
    ("pharma", spam_pharma),
    ("advance-fee", spam_advance_fee),
    ("crypto", spam_crypto),
    ("malware-invoice", spam_malware_invoice),
    ("extortion", spam_extortion),
    ("job-offer", spam_job),
    ("prize-survey", spam_prize_survey),
    ("marketing", spam_marketing),
    ("parcel-fee", spam_parcel),
]


def build() -> dict[str, bytes]:
    """Every file of the corpus: relative path -> bytes."""
    out: dict[str, bytes] = {}
    for kind, families in (("ham", HAM), ("spam", SPAM)):
        n = 0
        for family, make in families:
            rng = random.Random(f"{kind}:{family}")
            for i in range(PER_FAMILY):
                mail = make(rng, i)
                mail.n = n  # dates spread over the corpus, a few hours apart
                out[f"{kind}/{n:03d}-{family}.eml"] = mail.build()
                n += 1
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    args = p.parse_args(argv)
    files = build()
    on_disk = {str(f.relative_to(HERE)): f.read_bytes() for f in sorted(HERE.glob("*/*.eml"))}
    if args.check:
        if on_disk != files:
            differ = sorted(
                set(on_disk) ^ set(files) | {k for k in files if on_disk.get(k) != files[k]}
            )
            print(f"corpus differs from the generator: {differ[:5]}", file=sys.stderr)
            return 1
        print(f"corpus matches: {len(files)} messages")
        return 0
    for stale in set(on_disk) - set(files):
        (HERE / stale).unlink()
    for rel, data in files.items():
        path = HERE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    print(f"wrote {len(files)} messages under {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
