"""Delivery: the queue runner that takes spooled messages to mailboxes (and, later, the relay)."""

from reference.delivery.forward import Forwarder
from reference.delivery.local import LocalDelivery
from reference.delivery.outcome import Outcome
from reference.delivery.runner import QueueRunner, RemoteDelivery, lane_of

__all__ = ["Forwarder", "LocalDelivery", "Outcome", "QueueRunner", "RemoteDelivery", "lane_of"]
