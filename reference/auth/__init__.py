"""Sender authentication mechanisms: SPF, DKIM, DMARC, ARC, Authentication-Results.

Mechanisms only: each returns RFC results (pass, fail, softfail, neutral, none, temperror,
permerror...). What a result means for the SMTP dialogue is decided in
``reference.policy.auth``.
"""

from reference.auth.arc import ArcChain, ArcResult
from reference.auth.dkim import DkimResult, DkimSignature
from reference.auth.dmarc import (
    Disposition,
    DmarcEvaluation,
    DmarcObservation,
    DmarcRecorder,
    DmarcResult,
    MemoryRecorder,
    NullRecorder,
)
from reference.auth.keys import KeyStore, KeyStoreError, SigningKey
from reference.auth.lookup import DnsTempError, Lookup
from reference.auth.spf import SpfCheck, SpfResult

__all__ = [
    "ArcChain",
    "ArcResult",
    "Disposition",
    "DkimResult",
    "DkimSignature",
    "DmarcEvaluation",
    "DmarcObservation",
    "DmarcRecorder",
    "DmarcResult",
    "DnsTempError",
    "KeyStore",
    "KeyStoreError",
    "Lookup",
    "MemoryRecorder",
    "NullRecorder",
    "SigningKey",
    "SpfCheck",
    "SpfResult",
]
