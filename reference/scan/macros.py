"""Office macros in attachments, with oletools' olevba: present, auto-executing, suspicious.

Mechanism only: :func:`scan` reports what each Office document holds; the spam check
turns reports into score (:func:`hits`). Documents are recognised by their bytes, never
by their names alone: an OLE2 compound file (``.doc``, ``.xls``) or an Office Open XML zip
holding a ``vbaProject.bin`` (``.docm``, ``.xlsm``, or either renamed). olevba runs on a
worker thread (it is synchronous and CPU-bound) with a size cap, and anything it cannot
read is a fact about the document, never an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from reference.log import event
from reference.scan.analysis import Attachment
from reference.scan.rules import Hit

log = logging.getLogger("mailspec.macros")

# oletools 0.60.2 builds its pyparsing grammar with names pyparsing 3 deprecates; the
# warnings say nothing about mail. Imported here, once, in the main thread. Should a
# future pyparsing break the import, the check falls back to the zip directory alone.
olevba: Any
try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from oletools import olevba  # type: ignore[import-untyped,no-redef]
except Exception as _e:  # pragma: no cover - depends on the installed packages
    olevba = None
    log.warning("oletools unavailable (%r): macros are found by structure only", _e)

__all__ = ["MacroReport", "analyse_document", "hits", "scan"]

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
MAX_DOCUMENTS = 5  # Office documents analysed per message
DEFAULT_MAX_SIZE = 10 << 20  # bytes of one document (and of a zip's declared contents)


@dataclass(frozen=True)
class MacroReport:
    """What one attachment holds; ``note`` says why it was not fully analysed, if it was not."""

    filename: str
    macros: bool
    autoexec: tuple[str, ...] = ()
    suspicious: tuple[str, ...] = ()
    note: str = ""


def _ooxml_vba(data: bytes, max_size: int) -> tuple[bool, str]:
    """(holds a VBA project, note) for an OOXML zip, from its directory alone."""
    try:
        with zipfile.ZipFile(BytesIO(data)) as z:
            infos = z.infolist()
    except Exception:
        return False, "not a readable zip"
    vba = any(i.filename.lower().rsplit("/", 1)[-1] == "vbaproject.bin" for i in infos)
    declared = sum(i.file_size for i in infos)
    if declared > max_size:
        # A zip bomb stays a zip bomb for olevba, which reads every member whole.
        return vba, f"declares {declared} bytes uncompressed, over {max_size}"
    return vba, ""


def analyse_document(
    filename: str, data: bytes, *, max_size: int = DEFAULT_MAX_SIZE
) -> MacroReport | None:
    """Synchronous: None when ``data`` is not an Office document that can hold VBA."""
    ole = data.startswith(OLE_MAGIC)
    zipped = data.startswith(b"PK\x03\x04")
    if not (ole or zipped):
        return None
    structural, note = (False, "") if ole else _ooxml_vba(data, max_size)
    if zipped and not structural:
        return None  # a zip without a VBA project: olevba would find nothing either
    if len(data) > max_size:
        note = note or f"{len(data)} bytes, over {max_size}"
    if olevba is None:
        note = note or "oletools unavailable"
    if note:
        return MacroReport(filename, structural, note=note) if structural or ole else None
    try:
        parser = olevba.VBA_Parser(filename or "attachment", data=data, disable_pcode=True)
    except Exception as e:
        return MacroReport(filename, structural, note=f"unreadable: {type(e).__name__}")
    try:
        # olevba reads anything it cannot place as VBA source text: not a document.
        if parser.type not in (olevba.TYPE_OLE, olevba.TYPE_OpenXML):
            return MacroReport(filename, structural, note=f"olevba type {parser.type}")
        if not parser.detect_vba_macros():
            return MacroReport(filename, structural) if structural else None
        autoexec: list[str] = []
        suspicious: list[str] = []
        for kind, keyword, _description in parser.analyze_macros() or ():
            if kind == "AutoExec" and keyword not in autoexec:
                autoexec.append(str(keyword))
            elif kind == "Suspicious" and keyword not in suspicious:
                suspicious.append(str(keyword))
        return MacroReport(filename, True, tuple(autoexec[:10]), tuple(suspicious[:10]))
    except Exception as e:  # hostile documents break parsers; that is itself telling
        return MacroReport(filename, True, note=f"analysis failed: {type(e).__name__}")
    finally:
        with contextlib.suppress(Exception):
            parser.close()


async def scan(
    attachments: Iterable[Attachment],
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_documents: int = MAX_DOCUMENTS,
    time_limit: float = 20.0,
) -> list[MacroReport]:
    """Reports for the Office documents among ``attachments`` (off the event loop)."""
    docs = [a for a in attachments if a.data.startswith((OLE_MAGIC, b"PK\x03\x04"))]
    docs = docs[:max_documents]
    if not docs:
        return []

    def run() -> list[MacroReport]:
        out: list[MacroReport] = []
        for a in docs:
            r = analyse_document(a.filename, a.data, max_size=max_size)
            if r is not None:
                out.append(r)
        return out

    try:
        reports = await asyncio.wait_for(asyncio.to_thread(run), time_limit)
    except TimeoutError:
        # The thread runs on to its end; the message does not wait for it. What the zip
        # directories say is known without olevba.
        event(log, "macros.timeout", level=logging.WARNING, documents=len(docs))
        reports = [
            MacroReport(a.filename, True, note=f"analysis took over {time_limit:g} s")
            for a in docs
            if a.data.startswith(b"PK\x03\x04") and _ooxml_vba(a.data, max_size)[0]
        ]
    for r in reports:
        if r.note:
            event(log, "macros.partial", filename=r.filename, note=r.note)
    return reports


def hits(reports: Sequence[MacroReport], weight: float) -> list[Hit]:
    """Score: ``weight`` for VBA macros, once more for auto-execution, once more for
    suspicious calls (Shell, CreateObject, downloads), and once more when both are there
    (a document that runs a downloader when opened)."""
    if weight <= 0 or not any(r.macros for r in reports):
        return []
    with_macros = [r for r in reports if r.macros]
    names = ",".join(r.filename or "?" for r in with_macros)[:120]
    out = [Hit("OFFICE_MACRO", weight, names)]
    auto = sorted({k for r in with_macros for k in r.autoexec})
    sus = sorted({k for r in with_macros for k in r.suspicious})
    if auto:
        out.append(Hit("OFFICE_MACRO_AUTOEXEC", weight, ",".join(auto)[:120]))
    if sus:
        out.append(Hit("OFFICE_MACRO_SUSPICIOUS", weight, ",".join(sus)[:120]))
    if any(r.autoexec and r.suspicious for r in with_macros):
        out.append(Hit("OFFICE_MACRO_DROPPER", weight, names))
    return out
