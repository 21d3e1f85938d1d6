"""``POST /v1/client/events``: one event a browser sent for its token's customer (docs/api.md "The
browser half").

Applied exactly like a server event (the same engine, answer and webhook), but kept apart:
its transaction id lives in a namespace of its own per customer (``client_event``; the
event log is unique on Space, source, customer and transaction id), so a page can never use
up, or collide with, a server event's id; and it says ``source: "client"`` wherever the
event is shown — the profile's ``events``, the webhook's ``data``, a live stream's change,
and the ``source`` a rule's condition may test."""

from __future__ import annotations

from typing import ClassVar

from perkamo.profiles.commands.event import Ingest


class ClientEvent(Ingest, tag="client_event", frozen=True, kw_only=True):
    namespace: ClassVar[str | None] = "client_event"
    source: ClassVar[str] = "client"
    table: ClassVar[str] = "client_events"
