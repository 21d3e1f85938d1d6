"""Program: the six modules (active version, drafts, history), editing a module as JSON
with its validation errors at their paths, the diff of a draft against the active body,
activating several modules together, and trying an event against a draft."""

from __future__ import annotations

import difflib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
from quart import Response

from perkamo.configuration import versions
from perkamo.console.core import NotFound, Page, error_message, pretty, seg
from perkamo.errors import PerkamoError
from perkamo.program import MODULES
from perkamo.usecases.simulate import simulate_document
from storage import config as config_store
from storage import console as audit_store

Conn = psycopg.Connection[Any]
_decoder = msgspec.json.Decoder(float_hook=Decimal)


def _overview(conn: Conn, space_id: int) -> dict[str, Any]:
    active = {r.module: r for r in config_store.active_versions(conn, space_id)}
    return {m: (active.get(m), config_store.list_versions(conn, space_id, m)) for m in MODULES}


async def program(page: Page) -> Response:
    assert page.space is not None
    modules = await page.runtime.db.run(_overview, page.space.id)
    current = await page.runtime.programs.get(page.space.id)
    return page.render("program.html", modules=modules, program=current,
                       notice=page.query.get("notice"), error=page.query.get("error"))  # fmt: skip


async def module(page: Page, body_text: str | None = None, version: str = "",
                 problems: list[str] | None = None, trial: Any = None) -> Response:  # fmt: skip
    assert page.space is not None
    name = page.params["module"]
    if name not in MODULES:
        raise NotFound(f"No module {name!r}.")
    active, stored = await page.runtime.db.run(versions.describe_module, page.space.id, name)
    draft_version = page.query.get("draft") or version
    draft = next((v for v in stored if v.version == draft_version), None)
    active_text = pretty(active.body) if active else "{}"
    if body_text is None:
        body_text = pretty(draft.body) if draft else active_text
    diff = list(difflib.unified_diff(active_text.splitlines(), body_text.splitlines(),
                                     "active", draft_version or "draft", lineterm=""))  # fmt: skip
    return page.render(
        "module.html", module=name, active=active, stored=stored, body=body_text,
        version=draft_version or f"draft-{datetime.now(UTC):%Y%m%d-%H%M%S}", diff=diff,
        problems=problems or [], trial=trial, modules=MODULES,
    )  # fmt: skip


async def save_draft(page: Page) -> Response:
    assert page.space is not None
    name, text = page.params["module"], page.form.get("body", "")
    version = page.form.get("version", "").strip()[:64]
    try:
        body = _decoder.decode(text.encode())
    except msgspec.DecodeError as exc:
        return await module(page, text, version, [f"The body is not JSON: {exc}"])
    if not isinstance(body, dict) or not version:
        problem = "The body must be a JSON object and the version a label."
        return await module(page, text, version, [problem])
    space = page.space

    def store(conn: Conn) -> None:
        versions.store(conn, space.id, version, {name: body}, False, "body")
        audit_store.audit(conn, page.operator, "program.draft", space.id, f"{name}@{version}")

    try:
        await page.runtime.db.run(store)
    except PerkamoError as exc:
        found = [f"{d['path']}: {d['message']}" for d in (exc.details or [])] or [str(exc)]
        return await module(page, text, version, found)
    return page.redirect(f"/spaces/{seg(page.space.slug)}/program/{name}", draft=version)


async def activate(page: Page) -> Response:
    """Activate the chosen version of one or more modules together (with a reason)."""
    assert page.space is not None
    chosen = {m: v for m in MODULES if (v := page.form.get(f"module:{m}", "").strip())}
    reason = page.form.get("reason", "").strip()
    back = f"/spaces/{seg(page.space.slug)}/program"
    if not chosen or not reason:
        return page.redirect(back, error="Choose a version and say why (a reason).")
    space = page.space

    def apply(conn: Conn) -> Any:
        program = versions.activate_versions(conn, space.id, chosen)
        audit_store.audit(conn, page.operator, "program.activate", space.id,
                          ", ".join(f"{m}@{v}" for m, v in chosen.items()), reason)  # fmt: skip
        return program

    try:
        compiled = await page.runtime.db.run(apply)
    except PerkamoError as exc:
        return page.redirect(back, error=error_message(exc))
    page.runtime.programs.install(page.space.id, compiled)
    done = ", ".join(f"{m} {v}" for m, v in chosen.items())
    return page.redirect(back, notice=f"Activated {done}")


async def try_event(page: Page) -> Response:
    """Simulate one event against the draft (API.md §7) for a chosen customer."""
    assert page.space is not None
    name, version = page.params["module"], page.form.get("version", "")
    try:
        context = json.loads(page.form.get("context") or "{}")
    except json.JSONDecodeError as exc:
        return await module(page, None, version, [f"context: not JSON: {exc}"])
    body: dict[str, Any] = {"events": [{"event": page.form.get("event", ""), "context": context}],
                            "program": {name: version}}  # fmt: skip
    if page.form.get("user_id"):
        body["user_id"] = page.form["user_id"]
    raw = msgspec.json.encode(body)
    try:
        result = await simulate_document(
            page.runtime, page.space.id, page.space.slug, _decoder.decode(raw), len(raw),
            datetime.now(UTC),
        )  # fmt: skip
    except PerkamoError as exc:
        return await module(page, None, version, [error_message(exc)])
    return await module(page, None, version, [], trial=result)
