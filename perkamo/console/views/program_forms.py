"""``program/rules`` and ``program/wallets``: earning rules, wallets and rewards as forms
that write the same module bodies as the JSON editor. Every change (add, edit, disable,
reorder, remove) makes a new draft from the version shown, so changes build up in one
draft until it is reviewed and activated; "Try" works on the unsaved form."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from quart import Response

from perkamo.console import drafts, forms, trial
from perkamo.console.core import NotFound, Page, seg
from perkamo.errors import PerkamoError
from perkamo.program.json_walk import JsonObject
from perkamo.program.timefmt import format_rfc3339
from storage import config as config_store
from storage.database import Conn


@dataclass(frozen=True)
class Kind:
    name: str  # rule | wallet | reward
    module: str
    items: str  # the list in the module body
    page: str  # rules | wallets
    fields: Callable[[JsonObject], dict[str, str]]


KINDS = {
    "rule": Kind("rule", "events", "rules", "rules", forms.rule_fields),
    "wallet": Kind("wallet", "wallets", "wallets", "wallets", forms.wallet_fields),
    "reward": Kind("reward", "wallets", "rewards", "wallets", forms.reward_fields),
}


def _load(conn: Conn, space_id: int, module: str, version: str) -> tuple[str, JsonObject, str]:
    """(the version shown, its body, the active version) — the active one by default."""
    active = next(
        (r for r in config_store.active_versions(conn, space_id) if r.module == module), None
    )
    if version and (found := config_store.get_version(conn, space_id, module, version)):
        return version, dict(found.body), active.version if active else ""
    if active is not None:
        return active.version, dict(active.body), active.version
    return "", {}, ""


def _kind(page: Page) -> Kind:
    if page.request.path.rstrip("/").split("/")[-2:][0] == "rules":
        return KINDS["rule"]
    kind = KINDS.get(page.query.get("kind") or page.form.get("kind") or "")
    if kind is None or kind.page != "wallets":
        raise NotFound("No such item kind.")
    return kind


def _base(page: Page, kind: Kind) -> str:
    assert page.space is not None
    return f"/spaces/{seg(page.space.slug)}/program/{kind.page}"


async def rules(page: Page) -> Response:
    assert page.space is not None
    shown, body, active = await page.runtime.db.run(
        _load, page.space.id, "events", page.query.get("version", "")
    )
    program = await page.runtime.programs.get(page.space.id)
    names = {w.key: w.name for w in program.wallets}
    now = format_rfc3339(datetime.now(UTC))
    listed = [(r, forms.rule_words(r, names), _state(r, now)) for r in body.get("rules", [])]
    return page.render(
        "rules.html", rules=listed, version=shown, active=active, catalog=body.get("events", [])
    )


def _state(rule: JsonObject, now: str) -> str:
    until, since = rule.get("active_until"), rule.get("active_from")
    if until and until <= now:
        return "disabled"
    if since and since > now:
        return "scheduled"
    return "active"


async def wallets(page: Page) -> Response:
    assert page.space is not None
    shown, body, active = await page.runtime.db.run(
        _load, page.space.id, "wallets", page.query.get("version", "")
    )
    return page.render(
        "wallets.html",
        wallets=body.get("wallets", []),
        rewards=body.get("rewards", []),
        version=shown,
        active=active,
    )


async def _form_page(
    page: Page,
    kind: Kind,
    result: trial.Trial | None = None,
    problems: dict[str, str] | None = None,
) -> Response:
    assert page.space is not None
    version = page.query.get("version") or page.form.get("base_version", "")
    shown, body, active = await page.runtime.db.run(_load, page.space.id, kind.module, version)
    key = page.query.get("key") or page.form.get("original_key", "")
    item = next((i for i in body.get(kind.items, []) if i.get("key") == key), None)
    if key and item is None:
        raise NotFound(f"No {kind.name} {key!r} in version {shown or 'none'}.")
    typed = page.form or page.flash.get("form")
    values = dict(typed) if typed else kind.fields(item or {})
    found = problems if problems is not None else page.flash.get("fields", {})
    program = await page.runtime.programs.get(page.space.id)
    wallet_keys = (
        [w.get("key") for w in body.get("wallets", [])]
        if kind.module == "wallets"
        else [w.key for w in program.wallets]
    )
    catalog = [e["key"] for e in body.get("events", [])] if kind.module == "events" else []
    return page.render(
        f"{kind.name}_form.html",
        kind=kind.name,
        values=values,
        problems=found,
        version=shown,
        active=active,
        original_key=key,
        wallet_keys=wallet_keys,
        catalog=catalog,
        ops=forms.OPS,
        rounding=forms.ROUNDING,
        trial=result,
        label=drafts.new_label(),
        rows=range(_shown(values, "conditions_{}_path", forms.CONDITION_ROWS + 1, 2)),
        award_rows=range(_shown(values, "award_{}_wallet", forms.AWARD_ROWS + 1, 2)),
    )


def _shown(values: dict[str, str], name: str, most: int, least: int) -> int:
    """Rows to show: those filled in and one empty for the next (at least ``least``)."""
    filled = [n for n in range(most) if values.get(name.format(n))]
    return min(max((filled[-1] + 2) if filled else 0, least), most)


async def rule_form(page: Page) -> Response:
    return await _form_page(page, KINDS["rule"])


async def item_form(page: Page) -> Response:
    return await _form_page(page, _kind(page))


async def _built(page: Page, kind: Kind) -> tuple[JsonObject, str, dict[str, str], int]:
    """The module body the form makes (from the version it was opened on), the version,
    the problems by field (the form's and the validator's), and the item's index."""
    assert page.space is not None
    form = page.form
    shown, body, _ = await page.runtime.db.run(
        _load, page.space.id, kind.module, form.get("base_version", "")
    )
    program = await page.runtime.programs.get(page.space.id)
    known = (
        {w.get("key") for w in body.get("wallets", [])}
        if kind.module == "wallets"
        else {w.key for w in program.wallets}
    )
    if kind.name == "rule":
        item, problems = forms.build_rule(form, {k for k in known if k})
    elif kind.name == "wallet":
        item, problems = forms.build_wallet(form)
    else:
        item, problems = forms.build_reward(form, {k for k in known if k})
    listed = list(body.get(kind.items, []))
    original = form.get("original_key", "")
    index = next(
        (n for n, i in enumerate(listed) if original and i.get("key") == original), len(listed)
    )
    listed[index : index + 1] = [item]
    body = {**body, kind.items: listed}
    prefix = f"body.{kind.items}[{index}]"
    for path, message in drafts.problems_of(kind.module, body):
        name = forms.field_of(path, prefix)
        if name is None:
            problems.setdefault("", f"elsewhere in the module: {path}: {message}")
        else:
            problems.setdefault(name, message)
    return body, shown, problems, index


async def save_rule(page: Page) -> Response:
    return await _save(page, KINDS["rule"])


async def save_item(page: Page) -> Response:
    return await _save(page, _kind(page))


async def _save(page: Page, kind: Kind) -> Response:
    assert page.space is not None
    body, shown, problems, index = await _built(page, kind)
    label = page.form.get("label", "").strip()[:64] or drafts.new_label()
    edit = f"{_base(page, kind)}/edit?" + urlencode(
        {"version": shown, "key": page.form.get("original_key", ""), "kind": kind.name}
    )
    if problems:
        return await page.back(
            edit,
            error=f"Not saved: {len(problems)} problem(s), each at its field.",
            fields=problems,
            keep=True,
        )
    space_id, operator = page.space.id, page.operator
    try:
        warnings = await page.runtime.db.run(
            drafts.save, space_id, kind.module, body, label, operator
        )
    except PerkamoError as exc:
        fields = {
            forms.field_of(p, f"body.{kind.items}[{index}]") or "": m
            for p, m in trial.error_fields(exc)
        }
        return await page.back(edit, error=f"Not saved: {exc}", fields=fields, keep=True)
    said = "; ".join(f"{p}: {m}" for p, m in warnings)
    notice = f"Draft {label} saved (from {shown or 'nothing'}); review and activate it when ready."
    return await page.back(
        f"{_base(page, kind)}?version={seg(label)}",
        notice=notice,
        error=f"It cannot be activated yet: {said}" if said else None,
    )


async def try_rule(page: Page) -> Response:
    """The unsaved form tried on an event, beside the active program."""
    assert page.space is not None
    kind = KINDS["rule"]
    body, _, problems, _ = await _built(page, kind)
    try:
        context = trial.parse_context(page.form.get("try_context", "{}"))
    except ValueError as exc:
        problems["try_context"] = str(exc)
    event = page.form.get("try_event", "").strip() or page.form.get("event", "").strip()
    if problems:
        return await _form_page(page, kind, problems=problems)
    try:
        draft = await page.runtime.db.run(trial.candidate, page.space.id, {"events": body}, "form")
        result = await trial.try_event(
            page.runtime,
            page.space.id,
            draft,
            page.form.get("try_user", "").strip(),
            event,
            context,
        )
    except PerkamoError as exc:
        found = {forms.field_of(p, "body.rules") or "": m for p, m in trial.error_fields(exc)}
        return await _form_page(page, kind, problems=found)
    return await _form_page(page, kind, result=result, problems={})


async def change_rule(page: Page) -> Response:
    return await _change(page, KINDS["rule"])


async def change_item(page: Page) -> Response:
    return await _change(page, _kind(page))


async def _change(page: Page, kind: Kind) -> Response:
    """Move an item up or down, disable or enable it, or remove it: a new draft."""
    assert page.space is not None
    action, key = page.form.get("action", ""), page.form.get("key", "")
    shown, body, _ = await page.runtime.db.run(
        _load, page.space.id, kind.module, page.form.get("base_version", "")
    )
    listed = list(body.get(kind.items, []))
    index = next((n for n, i in enumerate(listed) if i.get("key") == key), None)
    if index is None:
        return await page.back(_base(page, kind), error=f"No {kind.name} {key!r} in {shown}.")
    item = dict(listed[index])
    if action in ("up", "down"):
        other = index - 1 if action == "up" else index + 1
        if 0 <= other < len(listed):
            listed[index], listed[other] = listed[other], listed[index]
    elif action == "disable":
        if kind.name == "rule":
            item["active_until"] = format_rfc3339(datetime.now(UTC).replace(microsecond=0))
        else:
            item["active"] = False
        listed[index] = item
    elif action == "enable":
        if kind.name == "rule":
            item.pop("active_until", None)
        else:
            item["active"] = True
        listed[index] = item
    elif action == "remove":
        del listed[index]
    else:
        return await page.back(_base(page, kind), error="Unknown change.")
    label = drafts.new_label()
    space_id, operator = page.space.id, page.operator
    try:
        await page.runtime.db.run(
            drafts.save, space_id, kind.module, {**body, kind.items: listed}, label, operator
        )
    except PerkamoError as exc:
        return await page.back(f"{_base(page, kind)}?version={seg(shown)}", error=str(exc))
    return await page.back(
        f"{_base(page, kind)}?version={seg(label)}",
        notice=f"{kind.name.capitalize()} {key}: {action} — draft {label}.",
    )
