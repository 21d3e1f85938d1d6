"""Step 2, counters and streaks, and step 4, streak milestones (docs/program.md)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from perkamo.program.bounds import days_before, local_date
from perkamo.program.evaluation import Evaluation
from perkamo.program.model import ProfileState, StreakDef, StreakState
from perkamo.program.outcome import Unlocked
from perkamo.program.rules import award_amount


def count(run: Evaluation) -> None:
    """Event counts for ``event_count`` perks, and the streaks listing this event."""
    for perk in run.program.perks:
        t = perk.trigger
        if t.type == "event_count" and t.event == run.event and perk.key not in run.state.perks:
            run.state.perk_counts[perk.key] = run.state.perk_counts.get(perk.key, 0) + 1
    for streak in run.program.streaks:
        if run.event in streak.events:
            length = _count_streak(run.state, streak, run.occurred)
            if length is not None and any(m[0] == length for m in streak.milestones):
                run.milestones.add((streak.key, length))


def period_start(streak: StreakDef, moment: datetime) -> date:
    local = local_date(moment, streak.zone)
    if streak.period == "week":
        return days_before(local, local.weekday())
    return local


def _count_streak(state: ProfileState, streak: StreakDef, occurred: datetime) -> int | None:
    """Count the event's period; returns the new ``current`` when it grew, else None."""
    st = state.streaks.get(streak.key)
    if st is None:
        st = state.streaks[streak.key] = StreakState(period=streak.period, timezone=streak.timezone)
    elif st.period != streak.period or st.timezone != streak.timezone:
        # A changed period or zone restarts the run; the longest run is kept.
        st.current, st.last_period = 0, None
        st.period, st.timezone = streak.period, streak.timezone
    start = period_start(streak, occurred)
    step = timedelta(days=7 if streak.period == "week" else 1)
    if st.last_period is not None and start <= st.last_period:
        return None  # late: already counted, or an earlier period that does not rewrite the run
    consecutive = st.last_period is not None and start - st.last_period == step
    st.current = st.current + 1 if consecutive else 1
    st.last_period = start
    st.longest = max(st.longest, st.current)
    return st.current


def milestone_awards(run: Evaluation) -> None:
    for streak in run.program.streaks:
        for length, awards in streak.milestones:
            if (streak.key, length) in run.milestones:
                key = f"{streak.key}:{length}"
                run.unlocked.append(Unlocked("streak_milestone", key, streak.name))
                for award in awards:
                    award_amount(run, award, "streak_milestone", key)
