"""Fake remote MXs: real SMTP servers on loopback that accept, tempfail, greylist or reject."""

from fakes.mx import catalogue
from fakes.mx.catalogue import Category, Reply
from fakes.mx.policy import (
    ACCEPT,
    STAGES,
    Accept,
    Action,
    Context,
    Decision,
    Greylist,
    HangUp,
    Policy,
    Rule,
    Stage,
)
from fakes.mx.records import Attempt, Delivery, Event, Outcome
from fakes.mx.server import FakeMX

__all__ = [
    "ACCEPT",
    "STAGES",
    "Accept",
    "Action",
    "Attempt",
    "Category",
    "Context",
    "Decision",
    "Delivery",
    "Event",
    "FakeMX",
    "Greylist",
    "HangUp",
    "Outcome",
    "Policy",
    "Reply",
    "Rule",
    "Stage",
    "catalogue",
]
