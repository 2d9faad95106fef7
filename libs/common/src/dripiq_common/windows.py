"""Send windows: when a step may go out, in the contact's own time zone.

The planner places every step with them; the dispatcher places a send it defers (a spent
budget, a provider retry) with the same window and the same holiday calendars
(dripiq_common.calendars), both carried in the send command.

A step due outside its window moves to the window's next opening. Placed times get a small
deterministic jitter so that thousands of contacts planned alike do not all fire in the same
second: up to 1% of how far ahead the step was planned (nothing for "now", at most 15
minutes), and up to 15 minutes after a window opening, where everything waiting would meet. Local times are resolved with zoneinfo, so DST changes move openings with the
wall clock (09:00 stays 09:00) and a wall time that does not exist (a spring-forward gap)
resolves to the first instant after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dripiq_common.seeded import seeded_int

MAX_JITTER_SECONDS = 15 * 60
# How far ahead an opening is looked for: past the longest run of weekend and holidays.
MAX_DAYS_AHEAD = 60


@dataclass(frozen=True)
class SendWindow:
    weekdays: frozenset[int]  # ISO: 1 = Monday ... 7 = Sunday
    start_hour: int
    end_hour: int

    def to_json(self) -> dict[str, Any]:
        return {"weekdays": sorted(self.weekdays), "start_hour": self.start_hour, "end_hour": self.end_hour}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SendWindow:
        return cls(frozenset(data["weekdays"]), int(data["start_hour"]), int(data["end_hour"]))

    def allows(self, local: datetime) -> bool:
        return local.isoweekday() in self.weekdays and self.start_hour <= local.hour < self.end_hour


# Business hours on weekdays: the default when neither the request nor the tenant says.
DEFAULT_WINDOW = SendWindow(frozenset({1, 2, 3, 4, 5}), 9, 17)


def jitter_seconds(seed: str, spread: int = MAX_JITTER_SECONDS) -> int:
    if spread <= 0:
        return 0
    return seeded_int(seed, 4) % spread


def spread_for(delay_seconds: int) -> int:
    """How much jitter a step planned `delay_seconds` ahead may take."""
    return min(MAX_JITTER_SECONDS, max(0, delay_seconds) // 100)


def _wall_time(day: date, hour: int, zone: ZoneInfo) -> datetime:
    """`hour:00` local on `day` as an aware UTC time; inside a DST gap, the gap's end."""
    if hour == 24:
        return _wall_time(day + timedelta(days=1), 0, zone)
    # fold=0 (PEP 495): a wall time inside a spring-forward gap takes the offset from before
    # the change, which lands on the first instant after the gap; an ambiguous fall-back time
    # takes its first occurrence.
    return datetime.combine(day, time(hour), tzinfo=zone).astimezone(UTC)


def place(
    due: datetime,
    window: SendWindow,
    zone: ZoneInfo,
    *,
    seed: str,
    spread: int = MAX_JITTER_SECONDS,
    closed: Callable[[date], object] | None = None,
) -> datetime:
    """The first instant at or after `due` (+ jitter within `spread`) the window allows, in UTC,
    on a local day that `closed` (a holiday calendar) does not close."""
    candidate = due.astimezone(UTC) + timedelta(seconds=jitter_seconds(seed, spread))
    local = candidate.astimezone(zone)
    if window.allows(local) and not (closed and closed(local.date())):
        return candidate
    local_day = local.date()
    for offset in range(0, MAX_DAYS_AHEAD):
        day = local_day + timedelta(days=offset)
        if day.isoweekday() not in window.weekdays or (closed and closed(day)):
            continue
        opening = _wall_time(day, window.start_hour, zone)
        closing = _wall_time(day, window.end_hour, zone)
        if candidate < opening:
            # Spread the contacts that all wait for this opening over its first minutes.
            return min(opening + timedelta(seconds=jitter_seconds(seed)), closing - timedelta(seconds=1))
        if candidate < closing:
            return candidate
    raise ValueError(f"send window {window} never opens")
