"""Sieve (RFC 5228 and extensions): scripts compiled, stored per user and run on values."""

from reference.sieve.grammar import EXTENSIONS, MAX_SCRIPT_SIZE, Script, SieveError, compile_script
from reference.sieve.interpreter import (
    Context,
    Filing,
    Limits,
    Reject,
    Result,
    SieveRuntimeError,
    Vacation,
    evaluate,
)
from reference.sieve.responses import error_notice, no_reply_reason, rejection, vacation_reply
from reference.sieve.store import ReplyLog, ScriptError, ScriptStore, valid_name

__all__ = [
    "EXTENSIONS",
    "MAX_SCRIPT_SIZE",
    "Context",
    "Filing",
    "Limits",
    "Reject",
    "ReplyLog",
    "Result",
    "Script",
    "ScriptError",
    "ScriptStore",
    "SieveError",
    "SieveRuntimeError",
    "Vacation",
    "compile_script",
    "error_notice",
    "evaluate",
    "no_reply_reason",
    "rejection",
    "vacation_reply",
    "valid_name",
]
