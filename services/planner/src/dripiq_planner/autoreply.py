"""How long an out-of-office reply pauses a campaign: no I/O, only dates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAY = 86400


@dataclass(frozen=True)
class PausePlan:
    # 0: no pause (the contact is back already).
    resume_after_seconds: int
    # What the timeline says about it.
    detail: str


def pause_plan(*, return_date: str, time_zone: str, now: datetime, default_days: int, max_days: int) -> PausePlan:
    """Until the start of the return day in the contact's time zone, when the auto-reply gave
    one; else the default; capped at max_days either way."""
    found = _date(return_date)
    if found is None:
        seconds = default_days * DAY
        detail = f"paused {default_days} days (no return date in the auto-reply)"
    else:
        back = datetime.combine(found, time.min, tzinfo=ZoneInfo(time_zone))
        seconds = int((back - now).total_seconds())
        if seconds <= 0:
            return PausePlan(0, f"not paused: back on {found.isoformat()}, the date in the auto-reply")
        detail = f"paused until {found.isoformat()} (the return date in the auto-reply)"
    cap = max_days * DAY
    if seconds > cap:
        until = (now + timedelta(seconds=cap)).date().isoformat()
        return PausePlan(cap, f"{detail}, capped at {max_days} days: until {until}")
    return PausePlan(seconds, detail)


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None
