"""How long an out-of-office reply pauses a campaign: no I/O, only dates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class PausePlan:
    # When the campaign resumes by itself; None: no pause (the contact is back already).
    resume_at: datetime | None
    # What the timeline says about it.
    detail: str


def pause_plan(*, return_date: str, time_zone: str, now: datetime, default_days: int, max_days: int) -> PausePlan:
    """Until the start of the return day in the contact's time zone, when the auto-reply gave
    one; else the default; capped at max_days either way."""
    found = _date(return_date)
    if found is None:
        resume_at = now + timedelta(days=default_days)
        detail = f"paused {default_days} days (no return date in the auto-reply)"
    else:
        # The very start of that day there, not a rounded number of seconds from now.
        resume_at = datetime.combine(found, time.min, tzinfo=ZoneInfo(time_zone))
        if resume_at <= now:
            return PausePlan(None, f"not paused: back on {found.isoformat()}, the date in the auto-reply")
        detail = f"paused until {found.isoformat()} (the return date in the auto-reply)"
    cap = now + timedelta(days=max_days)
    if resume_at > cap:
        return PausePlan(cap, f"{detail}, capped at {max_days} days: until {cap.date().isoformat()}")
    return PausePlan(resume_at, detail)


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None
