"""Office macros: documents made here (an OLE2 writer and MS-OVBA records), read by olevba."""

from __future__ import annotations

import io
import struct
import zipfile
from email.message import EmailMessage
from typing import Any

import pytest

from reference.scan import macros
from reference.scan.analysis import parse
from reference.scan.macros import MacroReport, analyse_document

# -- making documents --------------------------------------------------------------------------
# A compound file (MS-CFB, version 3) with a mini stream, and a VBA project (MS-OVBA) whose
# streams are "compressed" as literal tokens only: both are what olevba reads in real files.

SECTOR = 512
MINI = 64
CUTOFF = 4096
END, FREE, FATSECT = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD
NOSTREAM = 0xFFFFFFFF

Tree = dict[str, "bytes | Tree"]


def ovba_compress(data: bytes) -> bytes:
    """MS-OVBA 2.4.1: a compressed container of literal-only chunks (4096 bytes each)."""
    out = bytearray(b"\x01")
    for i in range(0, max(len(data), 1), 4096):
        chunk = data[i : i + 4096]
        body = bytearray()
        for j in range(0, len(chunk), 8):
            body += b"\x00" + chunk[j : j + 8]  # flag byte 0: eight literal tokens
        out += struct.pack("<H", 0xB000 | (len(body) + 2 - 3)) + body
    return bytes(out)


def cfb(tree: Tree) -> bytes:
    """An OLE2 compound file holding ``tree`` (storages are dicts, streams are bytes)."""
    entries: list[dict[str, Any]] = []

    def add(name: str, node: bytes | Tree) -> int:
        idx = len(entries)
        entry: dict[str, Any] = {"name": name, "child": NOSTREAM, "right": NOSTREAM}
        entries.append(entry)
        if isinstance(node, bytes):
            entry.update(type=2, data=node)
        else:
            entry.update(type=5 if idx == 0 else 1, data=b"")
            # Children as a chain of right siblings, in the order MS-CFB compares names.
            kids = sorted(node, key=lambda n: (len(n), n.upper()))
            prev = None
            for k in kids:
                child = add(k, node[k])
                if prev is None:
                    entry["child"] = child
                else:
                    entries[prev]["right"] = child
                prev = child
        return idx

    add("Root Entry", tree)
    # Small streams live in the mini stream, big ones in sectors of their own.
    mini = bytearray()
    minifat: list[int] = []
    for e in entries:
        if e["type"] == 2 and len(e["data"]) < CUTOFF:
            n = -(-len(e["data"]) // MINI)
            e["start"] = len(minifat) if n else END
            minifat += [len(minifat) + k + 1 for k in range(n)]
            if n:
                minifat[-1] = END
            mini += e["data"].ljust(n * MINI, b"\0")
    sectors: list[bytes] = []
    fat: list[int] = []

    def place(data: bytes, mark: int | None = None) -> int:
        n = -(-len(data) // SECTOR)
        if n == 0:
            return END
        first = len(sectors)
        for k in range(n):
            sectors.append(data[k * SECTOR : (k + 1) * SECTOR].ljust(SECTOR, b"\0"))
            fat.append(mark if mark is not None else (first + k + 1 if k < n - 1 else END))
        return first

    root = entries[0]
    root["start"] = place(bytes(mini))
    root["size"] = len(mini)
    minifat_start = place(b"".join(struct.pack("<I", x) for x in minifat)) if minifat else END
    minifat_count = -(-len(minifat) * 4 // SECTOR)
    for e in entries:
        if e["type"] == 2:
            e["size"] = len(e["data"])
            if e["size"] >= CUTOFF:
                e["start"] = place(e["data"])
    dirdata = bytearray()
    for e in entries:
        name = e["name"].encode("utf-16-le") + b"\0\0"
        dirdata += struct.pack(
            "<64sHBBIII16sIQQIQ",
            name,
            len(name),
            e["type"],
            1,  # black
            NOSTREAM,
            e["right"],
            e["child"],
            b"\0" * 16,
            0,
            0,
            0,
            e.get("start", END) if e["type"] != 1 else 0,
            e.get("size", 0),
        )
    while len(dirdata) % SECTOR:
        dirdata += struct.pack("<64sHBBIII16sIQQIQ", b"", 0, 0, 0, NOSTREAM, NOSTREAM, NOSTREAM,
                               b"\0" * 16, 0, 0, 0, 0, 0)  # fmt: skip
    dir_start = place(bytes(dirdata))
    # FAT sectors hold the FAT itself too: grow until it fits.
    nfat = 1
    while (len(sectors) + nfat) > nfat * (SECTOR // 4):
        nfat += 1
    fat_start = len(sectors)
    fat += [FATSECT] * nfat
    fat += [FREE] * (nfat * (SECTOR // 4) - len(fat))
    fatbytes = b"".join(struct.pack("<I", x) for x in fat)
    for k in range(nfat):
        sectors.append(fatbytes[k * SECTOR : (k + 1) * SECTOR])
    difat = [fat_start + k for k in range(nfat)] + [FREE] * (109 - nfat)
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        b"\0" * 16,
        0x3E,
        3,
        0xFFFE,
        9,
        6,
        b"\0" * 6,
        0,
        nfat,
        dir_start,
        0,
        CUTOFF,
        minifat_start,
        minifat_count,
        END,
        0,
    ) + b"".join(struct.pack("<I", x) for x in difat)
    return header + b"".join(sectors)


def _rec(rid: int, data: bytes) -> bytes:
    return struct.pack("<HI", rid, len(data)) + data


def vba_project(modules: dict[str, str]) -> Tree:
    """The storages and streams of a VBA project (MS-OVBA 2.3) with these standard modules."""
    d = bytearray()
    d += _rec(0x01, struct.pack("<I", 1))  # PROJECTSYSKIND: 32-bit Windows
    d += _rec(0x02, struct.pack("<I", 0x409))  # PROJECTLCID
    d += _rec(0x14, struct.pack("<I", 0x409))  # PROJECTLCIDINVOKE
    d += _rec(0x03, struct.pack("<H", 1252))  # PROJECTCODEPAGE
    d += _rec(0x04, b"VBAProject")  # PROJECTNAME
    d += _rec(0x05, b"") + _rec(0x40, b"")  # PROJECTDOCSTRING (+ unicode)
    d += _rec(0x06, b"") + _rec(0x3D, b"")  # PROJECTHELPFILEPATH
    d += _rec(0x07, struct.pack("<I", 0))  # PROJECTHELPCONTEXT
    d += _rec(0x08, struct.pack("<I", 0))  # PROJECTLIBFLAGS
    d += struct.pack("<HIIH", 0x09, 4, 1, 0)  # PROJECTVERSION
    d += _rec(0x0C, b"") + _rec(0x3C, b"")  # PROJECTCONSTANTS
    d += _rec(0x0F, struct.pack("<H", len(modules)))  # PROJECTMODULES
    d += _rec(0x13, struct.pack("<H", 0xFFFF))  # PROJECTCOOKIE
    streams: dict[str, bytes | Tree] = {}
    for name in modules:
        n = name.encode()
        u = name.encode("utf-16-le")
        d += _rec(0x19, n) + _rec(0x47, u)  # MODULENAME, MODULENAMEUNICODE
        d += _rec(0x1A, n) + _rec(0x32, u)  # MODULESTREAMNAME (+ unicode)
        d += _rec(0x1C, b"") + _rec(0x48, b"")  # MODULEDOCSTRING
        d += _rec(0x31, struct.pack("<I", 0))  # MODULEOFFSET: source from byte 0
        d += _rec(0x1E, struct.pack("<I", 0))  # MODULEHELPCONTEXT
        d += _rec(0x2C, struct.pack("<H", 0xFFFF))  # MODULECOOKIE
        d += _rec(0x21, b"")  # MODULETYPE: procedural
        d += _rec(0x2B, b"")  # TERMINATOR
        source = f'Attribute VB_Name = "{name}"\r\n{modules[name]}'
        streams[name] = ovba_compress(source.encode("cp1252"))
    d += _rec(0x10, b"")  # end of the dir stream
    streams["dir"] = ovba_compress(bytes(d))
    streams["_VBA_PROJECT"] = b"\xcc\x61\xff\xff\x00\x00\x00"
    project = 'ID="{00000000-0000-0000-0000-000000000000}"\r\n'
    project += "".join(f"Module={m}\r\n" for m in modules) + 'Name="VBAProject"\r\n'
    return {"VBA": streams, "PROJECT": project.encode()}


def ooxml(vba: bytes | None, kind: str = "word") -> bytes:
    """A minimal .docm/.xlsm: content types, a part, and the VBA project if any."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        z.writestr(f"{kind}/document.xml", "<document/>")
        if vba is not None:
            z.writestr(f"{kind}/vbaProject.bin", vba)
    return buf.getvalue()


DROPPER = (
    "Sub AutoOpen()\r\n"
    '    Shell "powershell -enc AAAA"\r\n'
    '    Set x = CreateObject("WScript.Shell")\r\n'
    "End Sub\r\n"
)
AUTO_ONLY = 'Sub Workbook_Open()\r\n    MsgBox "hello"\r\nEnd Sub\r\n'
HARMLESS = "Function Add(a, b)\r\n    Add = a + b\r\nEnd Function\r\n"


def docm(code: str, kind: str = "word") -> bytes:
    return ooxml(cfb(vba_project({"Module1": code})), kind)


# -- detection ---------------------------------------------------------------------------------


def test_docm_with_an_auto_executing_dropper() -> None:
    r = analyse_document("invoice.docm", docm(DROPPER))
    assert r is not None and r.macros
    assert "AutoOpen" in r.autoexec
    assert {"Shell", "CreateObject"} <= set(r.suspicious)
    assert r.note == ""


def test_xlsm_with_workbook_open_only() -> None:
    r = analyse_document("book.xlsm", docm(AUTO_ONLY, "xl"))
    assert r is not None and r.macros
    assert r.autoexec == ("Workbook_Open",)
    assert r.suspicious == ()


def test_harmless_macro_is_still_a_macro() -> None:
    r = analyse_document("sums.xlsm", docm(HARMLESS, "xl"))
    assert r == MacroReport("sums.xlsm", True)


def test_word97_doc_with_macros_storage() -> None:
    doc = cfb({"WordDocument": b"\0" * 600, "Macros": vba_project({"NewMacros": DROPPER})})
    r = analyse_document("old.doc", doc)
    assert r is not None and r.macros and "AutoOpen" in r.autoexec


def test_documents_without_macros() -> None:
    assert analyse_document("plain.docx", ooxml(None)) is None
    assert analyse_document("data.doc", cfb({"WordDocument": b"\0" * 5000})) is None


def test_not_documents_are_ignored_whatever_their_name() -> None:
    # olevba reads any text as VBA source: only real containers go to it.
    assert analyse_document("evil.docm", b'Sub AutoOpen()\r\nShell "x"\r\nEnd Sub') is None
    assert analyse_document("x.xlsm", b"PK\x03\x04 not really a zip") is None


def test_broken_vba_project_counts_by_structure() -> None:
    r = analyse_document("broken.docm", ooxml(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\xff" * 700))
    assert r is not None and r.macros and r.note


def test_size_cap_and_zip_bomb() -> None:
    big = docm(DROPPER)
    r = analyse_document("big.docm", big, max_size=len(big) - 1)
    assert r is not None and r.macros and "over" in r.note and r.autoexec == ()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/vbaProject.bin", b"\0" * (4 << 20))  # compresses to a few KiB
    r = analyse_document("bomb.docm", buf.getvalue(), max_size=1 << 20)
    assert r is not None and r.macros and "declares" in r.note


# -- through a message, and into score ---------------------------------------------------------


def message_with(name: str, data: bytes) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "a@remote.example", "b@example.test", "invoice"
    m.set_content("See attached.")
    m.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return m.as_bytes()


async def test_scan_finds_documents_in_a_message() -> None:
    p = parse(message_with("Rechnung.docm", docm(DROPPER)))
    reports = await macros.scan(p.attachments)
    assert [r.filename for r in reports] == ["Rechnung.docm"]
    hits = macros.hits(reports, 3.0)
    assert [h.rule for h in hits] == [
        "OFFICE_MACRO",
        "OFFICE_MACRO_AUTOEXEC",
        "OFFICE_MACRO_SUSPICIOUS",
        "OFFICE_MACRO_DROPPER",
    ]
    assert sum(h.weight for h in hits) == 12.0


@pytest.mark.parametrize(
    ("code", "expected"),
    [(HARMLESS, 3.0), (AUTO_ONLY, 6.0), (DROPPER, 12.0)],
)
async def test_more_score_for_auto_execution_and_suspicious_calls(
    code: str, expected: float
) -> None:
    p = parse(message_with("a.xlsm", docm(code, "xl")))
    hits = macros.hits(await macros.scan(p.attachments), 3.0)
    assert sum(h.weight for h in hits) == expected


async def test_no_documents_no_work() -> None:
    p = parse(message_with("photo.bin", b"\x89PNG\r\n\x1a\n" + b"\0" * 100))
    assert await macros.scan(p.attachments) == []
    assert macros.hits([], 3.0) == []
    assert macros.hits([MacroReport("a.docm", True)], 0.0) == []


async def test_slow_analysis_does_not_hold_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    release = threading.Event()

    def stuck(*a: object, **kw: object) -> MacroReport | None:
        release.wait(5)
        return None

    monkeypatch.setattr(macros, "analyse_document", stuck)
    p = parse(message_with("a.docm", docm(DROPPER)))
    try:
        reports = await macros.scan(p.attachments, time_limit=0.05)
    finally:
        release.set()
    assert [(r.filename, r.macros) for r in reports] == [("a.docm", True)]
    assert "over 0.05 s" in reports[0].note


def test_without_oletools_the_zip_directory_still_tells(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(macros, "olevba", None)
    r = analyse_document("a.docm", docm(DROPPER))
    assert r == MacroReport("a.docm", True, note="oletools unavailable")
    assert analyse_document("a.docx", ooxml(None)) is None
