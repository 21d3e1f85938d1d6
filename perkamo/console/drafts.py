"""Drafts of a module, from the JSON editor or a form: every validation problem found at
once (not one per save), the draft stored with its audit row, and what would stop it
activating with the rest of the active program (an unknown wallet) said when it is saved."""

from __future__ import annotations

import copy
import re
import secrets
from datetime import UTC, datetime

from perkamo.configuration import versions
from perkamo.console.trial import candidate
from perkamo.errors import PerkamoError
from perkamo.program import InvalidConfig, parse_module
from storage import console as audit_store
from storage.database import Conn

_ITEM = re.compile(r"^(\w+\.(\w+))\[(\d+)\]")
MAX_ROUNDS = 25


def new_label() -> str:
    """A draft's label: when, and a few random characters (two drafts in one second)."""
    return f"draft-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def problems_of(module: str, body: object, path: str = "body") -> list[tuple[str, str]]:
    """Every problem of ``body`` on its own, with its JSON path. The validator stops at the
    first shape error, so an item with a problem is set aside and the rest validated
    again, until nothing more is found: three mistakes in three rules show at once."""
    found: list[tuple[str, str]] = []
    if not isinstance(body, dict):
        return [(path, "must be a JSON object")]
    work = copy.deepcopy(body)
    # Which of the operator's items each list of the reduced body still holds.
    alive = {k: list(range(len(v))) for k, v in work.items() if isinstance(v, list)}
    for _ in range(MAX_ROUNDS):
        try:
            parse_module(module, work, path)
            break
        except InvalidConfig as exc:
            problems = [(p.path, p.message) for p in exc.problems]
        drop: dict[str, set[int]] = {}
        for where, message in problems:
            item = _ITEM.match(where)
            if item is None or item.group(2) not in alive:
                found.append((where, message))
                continue
            name, index = item.group(2), int(item.group(3))
            original = alive[name][index] if index < len(alive[name]) else index
            found.append((f"{item.group(1)}[{original}]{where[item.end() :]}", message))
            drop.setdefault(name, set()).add(index)
        if not drop:
            break
        for name, indexes in drop.items():
            work[name] = [v for i, v in enumerate(work[name]) if i not in indexes]
            alive[name] = [o for i, o in enumerate(alive[name]) if i not in indexes]
    return list(dict.fromkeys(found))


def cross_module(conn: Conn, space_id: int, module: str, body: object) -> list[tuple[str, str]]:
    """What would stop this body activating beside the active modules (a wallet, an event
    or a perk another module lacks)."""
    try:
        candidate(conn, space_id, {module: body}, "draft")
    except PerkamoError as exc:
        return [(d.get("path", ""), d.get("message", "")) for d in (exc.details or [])]
    return []


def save(
    conn: Conn, space_id: int, module: str, body: object, label: str, operator: str
) -> list[tuple[str, str]]:
    """Store ``body`` as draft ``label`` (validated on its own) with its audit row; returns
    the problems it would have activating with the active program (warnings). Raises
    PerkamoError (invalid_config, version_conflict)."""
    versions.store(conn, space_id, label, {module: body}, False, "body")
    audit_store.audit(conn, operator, "program.draft", space_id, f"{module}@{label}")
    return cross_module(conn, space_id, module, body)
