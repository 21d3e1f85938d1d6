"""Validate one configuration module on its own: shape, keys, bounds, formulas, thresholds.
Every problem is reported with the JSON path it is at (docs/program.md, "Defaults, validation
and edge cases")."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal, localcontext
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from perkamo.program import schema as s
from perkamo.program.bounds import LIMIT, LIMIT_TEXT, within
from perkamo.program.conform import conform
from perkamo.program.formula import FormulaError, parse
from perkamo.program.json_walk import JsonObject, walk
from perkamo.program.paths import OPERATORS
from perkamo.program.timefmt import parse_rfc3339
from perkamo.program.validation import describe

KEY = re.compile(r"[a-z0-9_.:-]{1,64}\Z")
MAX_CURVE_LEVELS = 1000


class Problem(msgspec.Struct):
    path: str
    message: str


class InvalidConfig(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.path}: {p.message}" for p in problems))
        self.problems = problems


def _numbers(value: object, path: str) -> Iterable[Problem]:
    """Numeric settings are JSON numbers (msgspec would take numeric strings) within
    ±10^15 (docs/program.md "Bounds")."""
    for here, key, item in walk(value, path):
        if key not in s.NUMERIC_KEYS:
            continue
        if isinstance(item, str):
            yield Problem(here, "must be a number, not a string")
        elif isinstance(item, int | Decimal) and not isinstance(item, bool) and not within(item):
            yield Problem(here, LIMIT_TEXT)


MAX_MODULE_BYTES = 512 * 1024  # a module's compact JSON (1,000 plain rules are ~235 KiB)
_compact = msgspec.json.Encoder(decimal_format="number")


def parse_module(module: str, body: object, path: str) -> s.Strict:
    """One module body → its Struct. Raises InvalidConfig with JSON paths."""
    if len(_compact.encode(body)) > MAX_MODULE_BYTES:
        raise InvalidConfig([Problem(path, f"a module is at most {MAX_MODULE_BYTES} bytes")])
    if problems := list(_numbers(body, path)):
        raise InvalidConfig(problems)
    try:
        shape = s.MODULE_TYPES[module]
        parsed = msgspec.convert(conform(body, shape), shape)
    except msgspec.ValidationError as exc:
        raise InvalidConfig([Problem(*describe(exc, path))]) from None
    problems = list(_MODULE_CHECKS[module](parsed, path))
    if problems:
        raise InvalidConfig(problems)
    return parsed


# -- checks within one module ---------------------------------------------------------------


def _keys(items: Iterable[object], path: str, field: str = "key") -> Iterable[Problem]:
    seen: set[str] = set()
    for index, item in enumerate(items):
        key = getattr(item, field)
        if not KEY.match(key):
            yield Problem(f"{path}[{index}].{field}", "must be 1-64 characters of [a-z0-9_.:-]")
        elif key in seen:
            yield Problem(f"{path}[{index}].{field}", f"duplicate key {key!r}")
        seen.add(key)


def _event_key(value: str, path: str, *, star: bool = False) -> Iterable[Problem]:
    """The API's ``event`` rule; ``"*"`` (every event) only where ``star`` allows it."""
    if value == "*":
        if not star:
            yield Problem(path, "'*' is not allowed here; list the event keys")
        return
    if not 1 <= len(value) <= 128 or any(
        ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value
    ):
        yield Problem(
            path, "must be an event key: 1-128 characters, no whitespace or control characters"
        )


def _conditions(conditions: list[s.Condition], path: str) -> Iterable[Problem]:
    for index, c in enumerate(conditions):
        here = f"{path}[{index}]"
        # ``source`` is who sent the event: "server" or "client" (a browser, docs/api.md "The
        # browser half").
        path_ok = c.path == "source" or (
            c.path.startswith(("context.", "traits.")) and not c.path.endswith(".")
        )
        if not path_ok:
            yield Problem(f"{here}.path", "must be source or start with context. or traits.")
        if c.op not in OPERATORS:
            yield Problem(f"{here}.op", f"must be one of {', '.join(OPERATORS)}")
        elif c.op in ("in", "not_in") and not isinstance(c.value, list):
            yield Problem(f"{here}.value", f"{c.op} needs a list")


def _awards(awards: list[s.Award], path: str) -> Iterable[Problem]:
    for index, a in enumerate(awards):
        here = f"{path}[{index}]"
        if (a.amount is None) == (a.formula is None):
            yield Problem(here, "needs exactly one of amount or formula")
        if a.formula is not None:
            try:
                parse(a.formula)
            except FormulaError as exc:
                yield Problem(f"{here}.formula", str(exc))


def _positive(value: int | None, path: str, *, zero: bool = False) -> Iterable[Problem]:
    if value is not None and (value < 0 or (value == 0 and not zero)):
        yield Problem(path, "must be greater than 0" if not zero else "must not be negative")


def _timestamp(value: str | None, path: str) -> Iterable[Problem]:
    if value is not None:
        try:
            parse_rfc3339(value)
        except ValueError as exc:
            yield Problem(path, str(exc))


def _check_wallets(m: s.WalletsModule, path: str) -> Iterable[Problem]:
    yield from _keys(m.wallets, f"{path}.wallets")
    for i, w in enumerate(m.wallets):
        if not 0 <= w.precision <= 6:
            yield Problem(f"{path}.wallets[{i}].precision", "must be 0 to 6")
        yield from _lot_settings(w, f"{path}.wallets[{i}]")
    yield from _keys(m.rewards, f"{path}.rewards")
    wallets = {w.key: w for w in m.wallets}
    for i, r in enumerate(m.rewards):
        here = f"{path}.rewards[{i}]"
        if r.cost.amount <= 0:
            yield Problem(f"{here}.cost.amount", "must be greater than 0")
        wallet = wallets.get(r.cost.wallet)
        if wallet is None:
            yield Problem(f"{here}.cost.wallet", f"unknown wallet {r.cost.wallet!r}")
        elif not wallet.spendable:
            yield Problem(f"{here}.cost.wallet", f"wallet {wallet.key!r} is not spendable")
        if not isinstance(r.effect.get("type"), str) or not r.effect["type"]:
            yield Problem(f"{here}.effect.type", "is required (a string)")
        if r.limits is not None:
            yield from _positive(r.limits.per_user, f"{here}.limits.per_user")
            yield from _positive(r.limits.per_user_per_day, f"{here}.limits.per_user_per_day")
        if r.requires is not None and r.requires.level_at_least is not None:
            yield from _positive(r.requires.level_at_least, f"{here}.requires.level_at_least")


def _lot_settings(w: s.Wallet, here: str) -> Iterable[Problem]:
    """``expiry`` and ``pending_days`` (docs/program.md "Points that wait and points that
    expire")."""
    if not 0 <= w.pending_days <= 365:
        yield Problem(f"{here}.pending_days", "must be 0 to 365")
    e = w.expiry
    if e is None:
        return
    if (e.after_days is None) == (e.end_of is None):
        yield Problem(f"{here}.expiry", "needs exactly one of after_days or end_of")
    if e.after_days is not None:
        if not 1 <= e.after_days <= 3650:
            yield Problem(f"{here}.expiry.after_days", "must be 1 to 3650")
        elif w.pending_days >= e.after_days:
            yield Problem(f"{here}.pending_days", "must be less than expiry.after_days")
        if e.after_periods is not None:
            yield Problem(f"{here}.expiry.after_periods", "goes with end_of")
    if e.end_of is not None:
        if e.after_periods is None:
            yield Problem(f"{here}.expiry.after_periods", "is required with end_of")
        elif not 0 <= e.after_periods <= 120:
            yield Problem(f"{here}.expiry.after_periods", "must be 0 to 120")
    if not known_zone(e.timezone):
        yield Problem(f"{here}.expiry.timezone", f"unknown time zone {e.timezone!r}")


def _check_events(m: s.EventsModule, path: str) -> Iterable[Problem]:
    yield from _keys(m.events, f"{path}.events")
    for i, e in enumerate(m.events):
        yield from _event_key(e.key, f"{path}.events[{i}].key")
    yield from _keys(m.rules, f"{path}.rules")
    for i, r in enumerate(m.rules):
        here = f"{path}.rules[{i}]"
        yield from _event_key(r.event, f"{here}.event", star=True)
        yield from _conditions(r.conditions, f"{here}.conditions")
        if not r.award:
            yield Problem(f"{here}.award", "needs at least one award")
        yield from _awards(r.award, f"{here}.award")
        if r.limits is not None:
            yield from _positive(r.limits.per_user, f"{here}.limits.per_user")
            yield from _positive(r.limits.per_user_per_day, f"{here}.limits.per_user_per_day")
            yield from _positive(
                r.limits.cooldown_seconds, f"{here}.limits.cooldown_seconds", zero=True
            )
        yield from _timestamp(r.active_from, f"{here}.active_from")
        yield from _timestamp(r.active_until, f"{here}.active_until")
        if r.active_from and r.active_until:
            try:
                if parse_rfc3339(r.active_from) >= parse_rfc3339(r.active_until):
                    yield Problem(f"{here}.active_until", "must be after active_from")
            except ValueError:
                pass
    yield from _keys(m.streaks, f"{path}.streaks")
    for i, st in enumerate(m.streaks):
        here = f"{path}.streaks[{i}]"
        if ":" in st.key:
            yield Problem(f"{here}.key", "streak keys contain no ':'")
        if not st.events:
            yield Problem(f"{here}.events", "needs at least one event")
        for j, event in enumerate(st.events):
            yield from _event_key(event, f"{here}.events[{j}]")
        if not known_zone(st.timezone):
            yield Problem(f"{here}.timezone", f"unknown time zone {st.timezone!r}")
        lengths: set[int] = set()
        for j, ms in enumerate(st.milestones):
            yield from _positive(ms.length, f"{here}.milestones[{j}].length")
            if ms.length in lengths:
                yield Problem(f"{here}.milestones[{j}].length", "duplicate milestone length")
            lengths.add(ms.length)
            yield from _awards(ms.award, f"{here}.milestones[{j}].award")


def curve_levels(curve: s.Curve, precision: int) -> list[tuple[int, Decimal]]:
    """Level thresholds of a curve; raises ValueError naming the first level whose threshold
    would exceed 10^15 (computed step by step, so a huge factor cannot overflow)."""
    quantum = Decimal(1).scaleb(-precision)
    levels = [(1, Decimal(0))]
    with localcontext(Context(prec=34, rounding=ROUND_HALF_EVEN)):
        step = Decimal(curve.step or 0)
        factor = Decimal(curve.factor or 0)
        exact = Decimal(curve.base or 0)  # level 2 of an exponential curve
        for n in range(2, curve.max_level + 1):
            at = step * (n - 1) if curve.type == "linear" else exact
            if at > LIMIT:
                raise ValueError(f"the threshold of level {n} exceeds 10^15")
            levels.append((n, at.quantize(quantum, rounding=ROUND_FLOOR)))
            exact *= factor
    return levels


def _check_leveling(m: s.LevelingModule, path: str) -> Iterable[Problem]:
    if m.levels is None and m.curve is None:
        if m.wallet is not None:
            yield Problem(path, "needs levels or a curve")
        return
    if m.wallet is None:
        yield Problem(f"{path}.wallet", "is required")
    if (m.levels is None) == (m.curve is None):
        yield Problem(path, "needs exactly one of levels or curve")
        return
    if m.levels is not None:
        if not m.levels:
            yield Problem(f"{path}.levels", "needs at least one level")
        for i, lv in enumerate(m.levels):
            if lv.level != i + 1:
                yield Problem(f"{path}.levels[{i}].level", f"must be {i + 1} (consecutive from 1)")
            if i == 0 and lv.at != 0:
                yield Problem(f"{path}.levels[0].at", "level 1 must be at 0")
            if i > 0 and lv.at <= m.levels[i - 1].at:
                yield Problem(f"{path}.levels[{i}].at", "thresholds must strictly increase")
    if m.curve is not None:
        c = m.curve
        if not 1 <= c.max_level <= MAX_CURVE_LEVELS:
            yield Problem(f"{path}.curve.max_level", f"must be 1 to {MAX_CURVE_LEVELS}")
            return
        if c.type == "linear":
            if c.step is None or c.step <= 0:
                yield Problem(f"{path}.curve.step", "must be greater than 0")
        else:
            if c.base is None or c.base <= 0:
                yield Problem(f"{path}.curve.base", "must be greater than 0")
            if c.factor is None or c.factor <= 1:
                yield Problem(f"{path}.curve.factor", "must be greater than 1")


def _check_perks(m: s.PerksModule, path: str) -> Iterable[Problem]:
    yield from _keys(m.perks, f"{path}.perks")
    needed = {
        "points_threshold": ("wallet", "amount"),
        "level_reached": ("level",),
        "event_count": ("event", "count"),
        "streak": ("streak", "length"),
        "achievement_completed": ("achievement",),
        "trait": ("path", "op"),
    }
    for i, p in enumerate(m.perks):
        here = f"{path}.perks[{i}].trigger"
        t = p.trigger
        for name in needed[t.type]:
            if getattr(t, name) is None:
                yield Problem(f"{here}.{name}", f"is required for {t.type}")
        for name in ("amount", "level", "count", "length"):
            value = getattr(t, name)
            if value is not None and value <= 0:
                yield Problem(f"{here}.{name}", "must be greater than 0")
        if t.type == "event_count" and t.event is not None:
            yield from _event_key(t.event, f"{here}.event")
        if t.type == "trait" and t.path is not None and t.op is not None:
            if not t.path.startswith("traits."):
                yield Problem(f"{here}.path", "must start with traits.")
            yield from _conditions([s.Condition(t.path, t.op, t.value)], f"{path}.perks[{i}]")


def _check_achievements(m: s.AchievementsModule, path: str) -> Iterable[Problem]:
    yield from _keys(m.achievements, f"{path}.achievements")
    keys = {a.key for a in m.achievements}
    for i, a in enumerate(m.achievements):
        here = f"{path}.achievements[{i}]"
        if not a.criteria:
            yield Problem(f"{here}.criteria", "needs at least one criterion")
        for j, c in enumerate(a.criteria):
            cp = f"{here}.criteria[{j}]"
            yield from _event_key(c.event, f"{cp}.event")
            shape = (c.count is not None, c.distinct is not None, c.sum is not None)
            if shape not in ((True, False, False), (True, True, False), (False, False, True)):
                yield Problem(cp, "needs count, distinct with count, or sum with target")
            elif c.sum is not None and (c.target is None or c.target <= 0):
                yield Problem(f"{cp}.target", "must be greater than 0")
            elif c.count is not None and c.count <= 0:
                yield Problem(f"{cp}.count", "must be greater than 0")
            if c.sum is None and c.target is not None:
                yield Problem(f"{cp}.target", "goes with sum")
            for name in ("distinct", "sum"):
                value = getattr(c, name)
                if value is not None and not value.startswith(("context.", "traits.")):
                    yield Problem(f"{cp}.{name}", "must start with context. or traits.")
            yield from _conditions(c.conditions, f"{cp}.conditions")
        for j, req in enumerate(a.requires):
            if req not in keys:
                yield Problem(f"{here}.requires[{j}]", f"unknown achievement {req!r}")
            elif req == a.key:
                yield Problem(f"{here}.requires[{j}]", "an achievement cannot require itself")
        yield from _awards(a.award, f"{here}.award")
    yield from _requirement_cycles(m, path)


def _requirement_cycles(m: s.AchievementsModule, path: str) -> Iterable[Problem]:
    graph = {a.key: a.requires for a in m.achievements}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(key: str) -> bool:
        if state.get(key) == 1:
            return True
        if state.get(key) == 2 or key not in graph:
            return False
        state[key] = 1
        cyclic = any(visit(r) for r in graph[key])
        state[key] = 2
        return cyclic

    for i, a in enumerate(m.achievements):
        if visit(a.key):
            yield Problem(f"{path}.achievements[{i}].requires", "prerequisites form a cycle")
            return


def _check_boosts(m: s.BoostsModule, path: str) -> Iterable[Problem]:
    if m.max_multiplier < 1:
        yield Problem(f"{path}.max_multiplier", "must be at least 1")
    yield from _keys(m.boosts, f"{path}.boosts")
    needed = {"perk": ("perk",), "level": ("level",), "streak_milestone": ("streak", "length")}
    for i, b in enumerate(m.boosts):
        here = f"{path}.boosts[{i}]"
        if b.multiplier <= 1:
            yield Problem(f"{here}.multiplier", "must be greater than 1")
        if (b.schedule is None) == (b.grant is None):
            yield Problem(here, "needs exactly one of schedule or grant")
        if b.schedule is not None:
            yield from _timestamp(b.schedule.starts_at, f"{here}.schedule.starts_at")
            yield from _timestamp(b.schedule.ends_at, f"{here}.schedule.ends_at")
            try:
                if parse_rfc3339(b.schedule.starts_at) >= parse_rfc3339(b.schedule.ends_at):
                    yield Problem(f"{here}.schedule.ends_at", "must be after starts_at")
            except ValueError:
                pass
        if b.grant is not None:
            if b.duration_seconds is None or b.duration_seconds <= 0:
                yield Problem(f"{here}.duration_seconds", "a granted boost needs a duration > 0")
            for name in needed.get(b.grant.on, ()):
                if getattr(b.grant, name) is None:
                    yield Problem(f"{here}.grant.{name}", f"is required for on={b.grant.on}")
            yield from _positive(b.grant.level, f"{here}.grant.level")
            yield from _positive(b.grant.length, f"{here}.grant.length")
        for j, event in enumerate(b.events or ()):
            yield from _event_key(event, f"{here}.events[{j}]")
        yield from _conditions(b.conditions, f"{here}.conditions")


_MODULE_CHECKS: JsonObject = {
    "wallets": _check_wallets,
    "events": _check_events,
    "leveling": _check_leveling,
    "perks": _check_perks,
    "achievements": _check_achievements,
    "boosts": _check_boosts,
}

# -- the whole program ----------------------------------------------------------------------


def known_zone(name: str) -> bool:
    """An IANA time zone the system knows. A name that is a directory of the zone database
    (``America``) or too long for a file name raises OSError, not ZoneInfoNotFoundError."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True
