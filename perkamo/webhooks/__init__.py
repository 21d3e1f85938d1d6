"""Webhooks: the signed payloads written to the outbox with what they announce, each Space's
endpoint state, and the dispatcher that delivers them."""

from perkamo.webhooks.dispatcher import WebhookDispatcher
from perkamo.webhooks.payloads import (
    SpaceHook,
    event_delivery,
    new_secret,
    redemption_delivery,
    settlement_deliveries,
    sign,
    support_delivery,
    test_delivery,
)
from perkamo.webhooks.registry import WebhookRegistry

__all__ = [
    "SpaceHook",
    "WebhookDispatcher",
    "WebhookRegistry",
    "event_delivery",
    "new_secret",
    "redemption_delivery",
    "settlement_deliveries",
    "sign",
    "support_delivery",
    "test_delivery",
]
