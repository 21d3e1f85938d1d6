"""Program: the six modules (active version, drafts, history); editing a module as JSON
with every validation problem at its path; "Try" on the unsaved body beside the active
program; reviewing an activation (the diff of each module, a reason) and activating
several modules together."""

from __future__ import annotations

import difflib

import msgspec
from quart import Response

from perkamo.configuration import versions
from perkamo.console import drafts, trial
from perkamo.console.core import NotFound, Page, pretty, seg
from perkamo.errors import PerkamoError
from perkamo.program import MODULES
from perkamo.program.json_walk import JsonObject
from storage import config as config_store
from storage.database import Conn

_decoder = trial._decoder


def _overview(conn: Conn, space_id: int) -> JsonObject:
    active = {r.module: r for r in config_store.active_versions(conn, space_id)}
    return {m: (active.get(m), config_store.list_versions(conn, space_id, m)) for m in MODULES}


async def program(page: Page) -> Response:
    assert page.space is not None
    modules = await page.runtime.db.run(_overview, page.space.id)
    current = await page.runtime.programs.get(page.space.id)
    return page.render("program.html", modules=modules, program=current)


def diff(before: str, after: str, label: str) -> list[str]:
    return list(
        difflib.unified_diff(before.splitlines(), after.splitlines(), "active", label, lineterm="")
    )


async def module(
    page: Page,
    trial_result: trial.Trial | None = None,
    problems: list[tuple[str, str]] | None = None,
) -> Response:
    assert page.space is not None
    name = page.params["module"]
    if name not in MODULES:
        raise NotFound(f"No module {name!r}.")
    active, stored = await page.runtime.db.run(versions.describe_module, page.space.id, name)
    shown = page.query.get("draft") or page.form.get("version") or ""
    draft = next((v for v in stored if v.version == shown), None)
    active_text = pretty(active.body) if active else "{}"
    body = (
        page.form.get("body") or page.kept("body") or (pretty(draft.body) if draft else active_text)
    )
    label = page.form.get("version") or page.kept("version") or shown or drafts.new_label()
    found = problems if problems is not None else page.flash.get("problems", [])
    parsed, unreadable = _decode(body)
    compared = body if unreadable else pretty(parsed)  # the diff compares like with like
    return page.render(
        "module.html",
        module=name,
        active=active,
        stored=stored,
        body=body,
        version=label,
        diff=diff(active_text, compared, label),
        problems=found,
        trial=trial_result,
        warnings=page.flash.get("warnings", []),
        modules=MODULES,
        saved=draft is not None,
        try_user=page.form.get("user_id", ""),
        try_event=page.form.get("event", ""),
        try_context=page.form.get("context", "{}"),
    )


def _decode(text: str) -> tuple[object, list[tuple[str, str]]]:
    try:
        return _decoder.decode(text.encode()), []
    except msgspec.DecodeError as exc:
        return None, [("body", f"not JSON: {exc}")]


async def save_draft(page: Page) -> Response:
    assert page.space is not None
    name, text = page.params["module"], page.form.get("body", "")
    if name not in MODULES:
        raise NotFound(f"No module {name!r}.")
    back = f"/spaces/{seg(page.space.slug)}/program/{name}"
    label = page.form.get("version", "").strip()[:64]
    body, problems = _decode(text)
    if not problems:
        problems = drafts.problems_of(name, body)
    if not label:
        problems.append(("version", "give the draft a label, e.g. 2026-07-double-points"))
    if problems:
        return await page.back(
            back,
            error=f"Not saved: {len(problems)} problem(s), each at its place below.",
            keep=True,
            problems=problems,
        )
    space_id, operator = page.space.id, page.operator
    try:
        warnings = await page.runtime.db.run(drafts.save, space_id, name, body, label, operator)
    except PerkamoError as exc:
        return await page.back(
            back, error=f"Not saved: {exc}", keep=True, problems=trial.error_fields(exc)
        )
    notice = f"Draft {label} saved." + (" It cannot be activated alone yet:" if warnings else "")
    return await page.back(f"{back}?draft={label}", notice=notice, warnings=warnings)


async def try_event(page: Page) -> Response:
    """Simulate one event with the body in the editor (saved or not) beside the active
    program (docs/api.md (trying a program)); nothing is written, the form keeps what was typed."""
    assert page.space is not None
    name = page.params["module"]
    if name not in MODULES:
        raise NotFound(f"No module {name!r}.")
    body, problems = _decode(page.form.get("body", ""))
    try:
        context = trial.parse_context(page.form.get("context", "{}"))
    except ValueError as exc:
        problems.append(("context", str(exc)))
    if not page.form.get("event", "").strip():
        problems.append(("event", "name the event to try, e.g. purchase.completed"))
    if problems:
        return await module(page, problems=problems)
    try:
        draft = await page.runtime.db.run(trial.candidate, page.space.id, {name: body}, "draft")
        result = await trial.try_event(
            page.runtime,
            page.space.id,
            draft,
            page.form.get("user_id", "").strip(),
            page.form["event"].strip(),
            context,
        )
    except PerkamoError as exc:
        return await module(page, problems=trial.error_fields(exc))
    return await module(page, trial_result=result)


def _review_data(conn: Conn, space_id: int, chosen: dict[str, str]) -> list[JsonObject]:
    active = {r.module: r for r in config_store.active_versions(conn, space_id)}
    found = []
    for name, label in chosen.items():
        version = config_store.get_version(conn, space_id, name, label)
        before = pretty(active[name].body) if name in active else "{}"
        after = pretty(version.body) if version else ""
        found.append(
            {
                "module": name,
                "version": label,
                "exists": version is not None,
                "active": active[name].version if name in active else None,
                "diff": diff(before, after, label) if version else [],
            }
        )
    return found


async def review(page: Page) -> Response:
    """What an activation would change, module by module, and the reason it asks for."""
    assert page.space is not None
    chosen = {m: v for m in MODULES if (v := page.query.get(f"module:{m}", "").strip())}
    if not chosen:
        return await page.back(
            f"/spaces/{seg(page.space.slug)}/program",
            error="Choose the version of at least one module to activate.",
        )
    changes = await page.runtime.db.run(_review_data, page.space.id, chosen)
    return page.render("review.html", changes=changes, chosen=chosen)


async def activate(page: Page) -> Response:
    """Activate the chosen versions of one or more modules together, with a reason."""
    assert page.space is not None
    chosen = {m: v for m in MODULES if (v := page.form.get(f"module:{m}", "").strip())}
    reason = page.form.get("reason", "").strip()
    query = "&".join(f"module:{m}={seg(v)}" for m, v in chosen.items())
    again = f"/spaces/{seg(page.space.slug)}/program/review?{query}"
    if not chosen:
        return await page.back(
            f"/spaces/{seg(page.space.slug)}/program",
            error="Choose the version of at least one module to activate.",
        )
    if not reason:
        return await page.back(
            again,
            error="Say why (a reason): it is kept in the audit log.",
            fields={"reason": "required"},
            keep=True,
        )
    space_id, operator = page.space.id, page.operator
    try:
        compiled = await page.runtime.db.run(
            versions.activate_versions, space_id, chosen, operator, reason[:500]
        )
    except PerkamoError as exc:
        found = "; ".join(f"{p}: {m}" if p else m for p, m in trial.error_fields(exc))
        return await page.back(again, error=f"Nothing was activated: {found}", keep=True)
    page.runtime.programs.install(space_id, compiled)
    done = ", ".join(f"{m} {v}" for m, v in chosen.items())
    return await page.back(f"/spaces/{seg(page.space.slug)}/program", notice=f"Activated {done}.")
