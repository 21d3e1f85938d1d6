"""The replay behind a back-test (docs/api.md (trying a program)), pure: given each profile's
history in processing order, rebuild its state before the window with the recorded versions, then
replay the window twice — the baseline with the recorded versions (which must reproduce the
recorded outcomes) and the candidate with the candidate program — and aggregate the report.
Memory is bounded: one profile's history at a time (its reader holds three pages of them:
storage/backtests.py), plus the report (per wallet, rule, level, perk and achievement) and the
ten largest changes. The replay owns the states it builds and changes them in place."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from itertools import groupby

from perkamo.errors import PerkamoError
from perkamo.profiles.commands import COMMANDS, Replay
from perkamo.program import ProfileState, Program
from perkamo.program.json_walk import JsonObject
from perkamo.program.levels import level_number
from perkamo.program.outcome import Delta, Settlement, Unlocked
from perkamo.program.settling import settle
from storage.backtests import Write

ProgramFor = Callable[[str | None], Program]  # recorded versions (JSON text) -> compiled
ZERO = Decimal(0)


def _tally() -> dict[str, dict[str, Decimal]]:
    return {"baseline": {}, "candidate": {}}


@dataclass
class Report:
    profiles: int = 0
    events: int = 0
    baseline_mismatches: int = 0
    redemptions_refused: int = 0
    awarded: dict[str, dict[str, Decimal]] = field(default_factory=_tally)  # run -> wallet
    balances: dict[str, dict[str, Decimal]] = field(default_factory=_tally)
    expired: dict[str, dict[str, Decimal]] = field(default_factory=_tally)
    lot_wallets: set[str] = field(default_factory=set)  # keep lots in either run
    rules: dict[str, dict[str, dict[str, Decimal]]] = field(default_factory=dict)
    levels: dict[str, dict[str, int]] = field(
        default_factory=lambda: {"baseline": {}, "candidate": {}}
    )
    perks: dict[str, dict[str, int]] = field(default_factory=dict)
    achievements: dict[str, dict[str, int]] = field(default_factory=dict)
    changes: list[tuple[Decimal, str, str, Decimal, Decimal]] = field(default_factory=list)

    def document(self) -> JsonObject:
        """The report as docs/api.md (trying a program) shows it."""
        wallets = sorted(
            set(self.awarded["baseline"]) | set(self.awarded["candidate"])
            | set(self.balances["baseline"]) | set(self.balances["candidate"])
            | set(self.expired["baseline"]) | set(self.expired["candidate"])
        )  # fmt: skip
        top = _largest(self.changes)
        return {
            "profiles": self.profiles,
            "events": self.events,
            "baseline_mismatches": self.baseline_mismatches,
            "redemptions_refused": self.redemptions_refused,
            "wallets": {
                w: {
                    "baseline_awarded": self.awarded["baseline"].get(w, ZERO),
                    "candidate_awarded": self.awarded["candidate"].get(w, ZERO),
                    "baseline_balance": self.balances["baseline"].get(w, ZERO),
                    "candidate_balance": self.balances["candidate"].get(w, ZERO),
                    **self._expired(w),
                }
                for w in wallets
            },
            "rules": {key: self.rules[key] for key in sorted(self.rules)},
            "levels": self.levels,
            "perks_unlocked": {key: self.perks[key] for key in sorted(self.perks)},
            "achievements_completed": {
                key: self.achievements[key] for key in sorted(self.achievements)
            },
            "top_changes": [
                {"user_id": user, "wallet": wallet, "baseline": base, "candidate": cand}
                for _, user, wallet, base, cand in top
            ],
        }

    def _expired(self, wallet: str) -> dict[str, Decimal]:
        """What expired inside the window, for a wallet with lots in either run (a draft
        adding an expiry: what it would have taken; lots are rebuilt from the history's
        awards)."""
        if wallet not in self.lot_wallets:
            return {}
        return {
            "baseline_expired": self.expired["baseline"].get(wallet, ZERO),
            "candidate_expired": self.expired["candidate"].get(wallet, ZERO),
        }


def _add(totals: dict[str, Decimal], key: str, amount: Decimal) -> None:
    totals[key] = totals.get(key, ZERO) + amount


class Backtest:
    def __init__(self, candidate: Program, program_for: ProgramFor) -> None:
        self.candidate = candidate
        self.program_for = program_for
        self.report = Report()
        self.report.lot_wallets.update(w.key for w in candidate.lot_wallets)

    def run(
        self,
        writes: Iterable[Write],
        window_from: datetime | None,
        on_events: Callable[[int], bool] | None = None,
        window_to: datetime | None = None,
    ) -> Report:
        """Replay every profile of ``writes`` (ordered by user, then processing order).
        ``on_events(done)`` is called after each profile; returning False stops early.
        Both runs end settled at ``window_to`` (what expired by then counts)."""
        for _, history in groupby(writes, key=lambda w: w.user_id):
            self.profile(list(history), window_from, window_to)
            if on_events is not None and not on_events(self.report.events):
                break
        return self.report

    def profile(
        self, history: list[Write], window_from: datetime | None, window_to: datetime | None = None
    ) -> None:
        before = Replay(ProfileState(), {}, self.candidate)
        start = 0
        if window_from is not None:  # rebuild the state just before the first write inside
            while start < len(history) and history[start].received_at < window_from:
                write = history[start]
                before.program = self.program_for(write.program_versions)
                COMMANDS[write.kind].replay(write, before)
                start += 1
        if start == len(history):
            return
        self.report.profiles += 1
        # The replay owns its states: events change them in place, so the two runs start
        # from copies of their own. A candidate that gives a wallet lots has them from the
        # window's start: its balance there becomes one lot (as on a live activation).
        base = before
        cand = before.fork(self.candidate)
        if window_from is not None:
            self._settled(settle(cand.state, self.candidate, window_from, cand.traits), "candidate")
        last = self.candidate
        for write in history[start:]:
            last = self.program_for(write.program_versions)
            base.program = last
            self._write(write, base, "baseline")
            self._write(write, cand, "candidate")
        if window_to is not None:
            self._settled(settle(base.state, last, window_to, base.traits), "baseline")
            self._settled(settle(cand.state, self.candidate, window_to, cand.traits), "candidate")
        user = history[0].user_id
        self._end(user, base, last, cand)

    def _settled(self, settled: Settlement | None, run: str) -> None:
        if settled is not None:
            for wallet, amount in settled.expired.items():
                _add(self.report.expired[run], wallet, amount)
            self._unlocked(settled.unlocked, run)

    def _write(self, w: Write, run: Replay, name: str) -> None:
        report = self.report
        command = COMMANDS[w.kind]
        try:
            replayed = command.replay(w, run)
        except PerkamoError:  # the run's program refuses it (a redemption it cannot afford)
            if name == "baseline":
                report.baseline_mismatches += 1
            elif command.namespace == "redemption":
                report.redemptions_refused += 1
            return
        if command.counted:
            if name == "baseline":
                report.events += 1
                if not _same_delta(replayed.delta, w.outcome or ()):
                    report.baseline_mismatches += 1
            for d in (*replayed.delta, *replayed.pending):  # pending lots: awarded all the same
                if d.amount > 0:
                    _add(report.awarded[name], d.wallet, d.amount)
            for entry in replayed.breakdown:
                amount = entry.amount
                if entry.source == "rule" and isinstance(entry.key, str):
                    assert isinstance(amount, Decimal)
                    rule = report.rules.setdefault(entry.key, _tally())
                    _add(rule[name], entry.wallet, amount)
        self._unlocked(replayed.unlocked, name)
        if replayed.settled is not None:
            for wallet, amount in replayed.settled.expired.items():
                _add(report.expired[name], wallet, amount)

    def _unlocked(self, unlocked: list[Unlocked], run: str) -> None:
        for u in unlocked:
            if u.type in ("perk", "achievement"):
                counts = self.report.perks if u.type == "perk" else self.report.achievements
                counts.setdefault(u.key, {"baseline": 0, "candidate": 0})[run] += 1

    def _end(self, user: str, base: Replay, baseline: Program, cand: Replay) -> None:
        report = self.report
        report.lot_wallets.update(w.key for w in baseline.lot_wallets)
        for name, run, program in (
            ("baseline", base, baseline),
            ("candidate", cand, self.candidate),
        ):
            for wallet, balance in run.state.wallets.items():
                _add(report.balances[name], wallet, balance.balance)
            level = str(level_number(run.state, program))
            report.levels[name][level] = report.levels[name].get(level, 0) + 1
        wallets = set(base.state.wallets) | set(cand.state.wallets)
        for wallet in sorted(wallets):
            b = base.state.wallets[wallet].balance if wallet in base.state.wallets else ZERO
            c = cand.state.wallets[wallet].balance if wallet in cand.state.wallets else ZERO
            if c != b:
                report.changes.append((abs(c - b), user, wallet, b, c))
        if len(report.changes) > 1000:  # bounded: only the ten largest can be reported
            report.changes[:] = _largest(report.changes)


def _largest(
    changes: list[tuple[Decimal, str, str, Decimal, Decimal]],
) -> list[tuple[Decimal, str, str, Decimal, Decimal]]:
    """The ten largest absolute changes, largest first, ties by user id (then wallet)."""
    return sorted(changes, key=lambda c: (-c[0], c[1], c[2]))[:10]


def _same_delta(delta: list[Delta], recorded: Sequence[JsonObject]) -> bool:
    """Whether a replayed delta is the recorded one (the stored answer's ``delta``)."""
    return len(delta) == len(recorded) and all(
        d.wallet == r["wallet"] and d.amount == Decimal(r["amount"])
        for d, r in zip(delta, recorded, strict=True)
    )
