"""Earning rules, wallets and rewards as forms: an item of a module body read into form
fields and built back from them, every problem kept by field. Field names follow the
item's JSON paths (``award[0].amount`` is field ``award_0_amount``), so a problem the
program's validator finds at a path lands at its field."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

import msgspec

from perkamo.program.json_walk import JsonObject

CONDITION_ROWS = 4
AWARD_ROWS = 3
OPS = {
    "eq": "is",
    "ne": "is not",
    "gt": "is more than",
    "gte": "is at least",
    "lt": "is less than",
    "lte": "is at most",
    "in": "is one of",
    "not_in": "is none of",
    "exists": "is present",
    "not_exists": "is absent",
    "contains": "contains",
}
ROUNDING = ("floor", "round", "ceil")
_decoder = msgspec.json.Decoder(float_hook=Decimal)
_encoder = msgspec.json.Encoder(decimal_format="number")
_PATH = re.compile(r"\[(\d+)\]")


def field_of(path: str, prefix: str) -> str | None:
    """``body.rules[2].award[0].amount`` → ``award_0_amount`` for the item at ``prefix``
    (``body.rules[2]``); None when the path is elsewhere; "" for the item as a whole."""
    if path == prefix:
        return ""
    if not path.startswith(prefix + "."):
        return None
    return _PATH.sub(r".\1", path[len(prefix) + 1 :]).replace(".", "_")


def _text(form: dict[str, str], name: str) -> str:
    return form.get(name, "").strip()


class Builder:
    """Reads form fields into a JSON item, noting every problem by field."""

    def __init__(self, form: dict[str, str]) -> None:
        self.form = form
        self.problems: dict[str, str] = {}

    def text(self, name: str, *, required: bool = False) -> str:
        value = _text(self.form, name)
        if required and not value:
            self.problems[name] = "required"
        return value

    def number(
        self, name: str, *, whole: bool = False, minimum: int | None = None
    ) -> int | Decimal | None:
        value = _text(self.form, name)
        if not value:
            return None
        try:
            number = Decimal(value.replace(" ", "").replace(",", ""))
            if not number.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            self.problems[name] = "a number, e.g. 50" if not whole else "a whole number"
            return None
        if whole and number != number.to_integral_value():
            self.problems[name] = "a whole number"
            return None
        if minimum is not None and number < minimum:
            self.problems[name] = f"at least {minimum}"
            return None
        return int(number) if whole else number

    def value(self, name: str, op: str) -> object:
        """A condition's value as typed: JSON when it parses (50, true, "x", [1, 2]), else
        the text itself; for ``in``/``not_in`` a comma-separated list works too."""
        raw = _text(self.form, name)
        try:
            value = _decoder.decode(raw.encode()) if raw else None
        except msgspec.DecodeError:
            value = raw
        if op in ("in", "not_in") and not isinstance(value, list):
            value = [_decoded(part.strip()) for part in raw.split(",") if part.strip()]
        return value


def _decoded(text: str) -> object:
    try:
        return _decoder.decode(text.encode())
    except msgspec.DecodeError:
        return text


def rule_fields(rule: JsonObject) -> dict[str, str]:
    """A rule as form fields (the form's starting values)."""
    fields = {
        k: str(rule.get(k) or "")
        for k in ("key", "name", "description", "event", "active_from", "active_until")
    }
    for i, c in enumerate(rule.get("conditions", [])):
        fields[f"conditions_{i}_path"] = str(c.get("path", ""))
        fields[f"conditions_{i}_op"] = str(c.get("op", "eq"))
        value = c.get("value")
        fields[f"conditions_{i}_value"] = "" if "value" not in c else _json(value)
    for i, a in enumerate(rule.get("award", [])):
        fields[f"award_{i}_wallet"] = str(a.get("wallet", ""))
        fields[f"award_{i}_amount"] = "" if a.get("amount") is None else str(a["amount"])
        fields[f"award_{i}_formula"] = str(a.get("formula") or "")
        fields[f"award_{i}_rounding"] = str(a.get("rounding", "floor"))
    for name, value in (rule.get("limits") or {}).items():
        fields[f"limits_{name}"] = "" if value is None else str(value)
    return fields


def _json(value: object) -> str:
    if isinstance(value, str):
        return value
    return _encoder.encode(value).decode()


def build_rule(form: dict[str, str], wallets: set[str]) -> tuple[JsonObject, dict[str, str]]:
    """A rule from the form, and every problem by field (the validator adds its own)."""
    b = Builder(form)
    rule: JsonObject = {
        "key": b.text("key", required=True),
        "name": b.text("name", required=True),
        "event": b.text("event", required=True),
    }
    if description := b.text("description"):
        rule["description"] = description
    conditions = []
    for i in range(CONDITION_ROWS + 1):
        path, op = b.text(f"conditions_{i}_path"), b.text(f"conditions_{i}_op") or "eq"
        if not path:
            continue
        if not path.startswith(("context.", "traits.")):
            b.problems[f"conditions_{i}_path"] = "begins with context. or traits."
        condition: JsonObject = {"path": path, "op": op}
        if op not in ("exists", "not_exists"):
            condition["value"] = b.value(f"conditions_{i}_value", op)
        conditions.append(condition)
    if conditions:
        rule["conditions"] = conditions
    awards = []
    for i in range(AWARD_ROWS + 1):
        wallet = b.text(f"award_{i}_wallet")
        amount, formula = b.number(f"award_{i}_amount"), b.text(f"award_{i}_formula")
        if not wallet and amount is None and not formula:
            continue
        if wallets and wallet not in wallets:
            b.problems[f"award_{i}_wallet"] = (
                f"no wallet {wallet!r}: one of {', '.join(sorted(wallets))}"
            )
        if (amount is None) == (not formula) and f"award_{i}_amount" not in b.problems:
            b.problems[f"award_{i}_amount"] = "an amount or a formula (one of them)"
        award: JsonObject = {"wallet": wallet}
        if amount is not None:
            award["amount"] = amount
        if formula:
            award["formula"] = formula
        if (rounding := b.text(f"award_{i}_rounding")) and rounding != "floor":
            award["rounding"] = rounding
        awards.append(award)
    if not awards:
        b.problems["award_0_amount"] = "a rule awards something: a wallet and an amount"
    rule["award"] = awards
    limits = {
        name: b.number(f"limits_{name}", whole=True, minimum=0)
        for name in ("per_user", "per_user_per_day", "cooldown_seconds")
    }
    if any(v is not None for v in limits.values()):
        rule["limits"] = {k: v for k, v in limits.items() if v is not None}
    for name in ("active_from", "active_until"):
        if value := b.text(name):
            rule[name] = value
    return rule, b.problems


def rule_words(rule: JsonObject, wallet_names: dict[str, str]) -> dict[str, str]:
    """A rule in words for the list: conditions, award, limits, window."""
    conditions = [
        f"{c['path']} {OPS.get(c['op'], c['op'])}"
        + ("" if c["op"] in ("exists", "not_exists") else f" {_json(c.get('value'))}")
        for c in rule.get("conditions", [])
    ]
    awards = []
    for a in rule.get("award", []):
        what = wallet_names.get(a["wallet"], a["wallet"])
        amount = f"{a['amount']}" if a.get("amount") is not None else f"{a.get('formula')}"
        awards.append(f"{amount} {what}" + (f" ({a['rounding']})" if a.get("rounding") else ""))
    limits = rule.get("limits") or {}
    said = [
        f"{limits['per_user']} per customer" if limits.get("per_user") is not None else "",
        f"{limits['per_user_per_day']} a day" if limits.get("per_user_per_day") is not None else "",
        f"{limits['cooldown_seconds']} s apart" if limits.get("cooldown_seconds") else "",
    ]
    window = ""
    if rule.get("active_from") or rule.get("active_until"):
        window = (
            f"from {rule.get('active_from') or 'always'} until {rule.get('active_until') or 'ever'}"
        )
    return {
        "conditions": " and ".join(conditions) or "always",
        "award": " + ".join(awards),
        "limits": ", ".join(s for s in said if s) or "none",
        "window": window or "always",
    }


def wallet_fields(item: JsonObject) -> dict[str, str]:
    fields = {
        k: str(item.get(k) if item.get(k) is not None else "")
        for k in ("key", "name", "description", "precision", "pending_days")
    }
    for flag in ("allow_negative", "spendable"):
        fields[flag] = "on" if item.get(flag, flag == "spendable") else ""
    expiry = item.get("expiry") or {}
    for name in ("after_days", "end_of", "after_periods", "timezone"):
        fields[f"expiry_{name}"] = "" if expiry.get(name) is None else str(expiry[name])
    return fields


def build_wallet(form: dict[str, str]) -> tuple[JsonObject, dict[str, str]]:
    b = Builder(form)
    item: JsonObject = {
        "key": b.text("key", required=True),
        "name": b.text("name", required=True),
    }
    precision = b.number("precision", whole=True, minimum=0)
    if precision is not None:
        item["precision"] = precision
    item["allow_negative"] = form.get("allow_negative") == "on"
    item["spendable"] = form.get("spendable") == "on"
    if description := b.text("description"):
        item["description"] = description
    if pending := b.number("pending_days", whole=True, minimum=0):
        item["pending_days"] = pending
    expiry: dict[str, object] = {}
    if (after_days := b.number("expiry_after_days", whole=True, minimum=1)) is not None:
        expiry["after_days"] = after_days
    if end_of := b.text("expiry_end_of"):
        expiry["end_of"] = end_of
        expiry["after_periods"] = b.number("expiry_after_periods", whole=True, minimum=0) or 0
    if expiry:  # (the validator says when both or neither kind is given)
        if timezone := b.text("expiry_timezone"):
            expiry["timezone"] = timezone
        item["expiry"] = expiry
    return item, b.problems


def reward_fields(item: JsonObject) -> dict[str, str]:
    cost = item.get("cost") or {}
    requires = item.get("requires") or {}
    limits = item.get("limits") or {}
    return {
        "key": str(item.get("key", "")),
        "name": str(item.get("name", "")),
        "description": str(item.get("description", "")),
        "cost_wallet": str(cost.get("wallet", "")),
        "cost_amount": "" if cost.get("amount") is None else str(cost["amount"]),
        "effect": _json(item.get("effect") or {"type": ""}),
        "requires_level_at_least": str(requires.get("level_at_least") or ""),
        "requires_perks": ", ".join(requires.get("perks", [])),
        "limits_per_user": str(limits.get("per_user") or ""),
        "limits_per_user_per_day": str(limits.get("per_user_per_day") or ""),
        "active": "on" if item.get("active", True) else "",
    }


def build_reward(form: dict[str, str], wallets: set[str]) -> tuple[JsonObject, dict[str, str]]:
    b = Builder(form)
    item: JsonObject = {
        "key": b.text("key", required=True),
        "name": b.text("name", required=True),
    }
    wallet = b.text("cost_wallet", required=True)
    if wallet and wallets and wallet not in wallets:
        b.problems["cost_wallet"] = f"no wallet {wallet!r} in this module"
    amount = b.number("cost_amount")
    if amount is None and "cost_amount" not in b.problems:
        b.problems["cost_amount"] = "required: what the reward costs"
    item["cost"] = {"wallet": wallet, "amount": amount}
    try:
        effect = _decoder.decode((b.text("effect") or "{}").encode())
    except msgspec.DecodeError:
        effect = None
    if not isinstance(effect, dict):
        b.problems["effect"] = 'a JSON object, e.g. {"type": "free_shipping"}'
        effect = {}
    item["effect"] = effect
    if description := b.text("description"):
        item["description"] = description
    level = b.number("requires_level_at_least", whole=True, minimum=1)
    perks = [p.strip() for p in b.text("requires_perks").split(",") if p.strip()]
    if level is not None or perks:
        item["requires"] = {k: v for k, v in (("level_at_least", level), ("perks", perks)) if v}
    limits = {
        name: b.number(f"limits_{name}", whole=True, minimum=1)
        for name in ("per_user", "per_user_per_day")
    }
    if any(v is not None for v in limits.values()):
        item["limits"] = {k: v for k, v in limits.items() if v is not None}
    item["active"] = form.get("active") == "on"
    return item, b.problems
