"""Step 5: achievement progress, completions and their awards (docs/program.md)."""

from __future__ import annotations

from decimal import Decimal

from perkamo.program.canonical import legacy_canonical_json
from perkamo.program.evaluation import Evaluation
from perkamo.program.model import AchievementDef, AchievementState, CriterionProgress
from perkamo.program.outcome import Unlocked
from perkamo.program.paths import MISSING, lookup
from perkamo.program.rules import award_amount, conditions_hold


def achievements(run: Evaluation) -> None:
    candidates = run.program.achievements_for(run.event)
    if not candidates:
        return
    state = run.state
    completed_before = {k for k, a in state.achievements.items() if a.times > 0}
    for ach in candidates:
        if not all(r in completed_before for r in ach.requires):
            continue
        current = state.achievements.get(ach.key)
        if current is not None and current.times > 0 and not ach.repeatable:
            continue
        relevant = [
            i
            for i, c in enumerate(ach.criteria)
            if c.event == run.event and conditions_hold(c.conditions, run.scope)
        ]
        if relevant:
            _progress(run, ach, relevant)


def _progress(run: Evaluation, ach: AchievementDef, relevant: list[int]) -> None:
    current = run.state.achievements.setdefault(ach.key, AchievementState())
    progress = current.progress[: len(ach.criteria)]
    progress += [CriterionProgress() for _ in range(len(ach.criteria) - len(progress))]
    current.progress = progress
    for i in relevant:
        criterion, p = ach.criteria[i], progress[i]
        if criterion.kind == "count":
            p.count += 1
            continue
        assert criterion.path is not None
        value = lookup(run.scope, criterion.path)
        if value is MISSING:
            continue
        if criterion.kind == "distinct":
            token = legacy_canonical_json(value).decode()  # the form of the tokens stored
            if token not in p.values and len(p.values) < criterion.target:
                p.values.append(token)
        elif isinstance(value, int | Decimal) and not isinstance(value, bool):
            p.total += Decimal(value)
    if all(
        criterion_current(c.kind, p) >= c.target
        for c, p in zip(ach.criteria, progress, strict=True)
    ):
        current.times += 1
        current.completed_at = run.occurred
        if ach.repeatable:
            current.progress = [CriterionProgress() for _ in ach.criteria]
        run.unlocked.append(Unlocked("achievement", ach.key, ach.name))
        for award in ach.awards:
            award_amount(run, award, "achievement", ach.key)


def criterion_current(kind: str, progress: CriterionProgress) -> Decimal:
    if kind == "count":
        return Decimal(progress.count)
    if kind == "distinct":
        return Decimal(len(progress.values))
    return progress.total
