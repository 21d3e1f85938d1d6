"""The operator console (docs/operations.md (the console)): server-rendered pages at ``/console/``
for the people who run a program — Spaces, Secret keys, Events, Customers, Program, Back-tests,
Webhooks, Usage and the Audit log — with operators, sessions and roles of its own."""

from perkamo.console.core import PREFIX, Console
from perkamo.console.routes import ROUTES

__all__ = ["PREFIX", "ROUTES", "Console"]
