"""Holiday calendars: which local days a step must not land on, and why.

A calendar is an ISO 3166-1 country with an optional ISO 3166-2 subdivision ("US", "US-CA",
"DE-BY"), as the `holidays` package knows it: its rules ship with the package, so nothing is
fetched at run time and a calendar answers for any year.

The planner places steps with them and the dispatcher re-places the sends it defers with them:
one function (`closed_days`) decides for both, so a deferred send cannot land on a day its
step could not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date
from functools import cache

import holidays
import structlog

from dripiq_common.errors import InvalidArgument

log = structlog.get_logger(__name__)

MAX_CALENDARS = 10
# The package also accepts subdivision aliases (German cities, "Augsburg"): codes only.
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_SUBDIVISION = re.compile(r"^[A-Z0-9]{1,3}$")

# What a closed local day is called, e.g. "Christmas Day, US"; None: a working day.
ClosedDay = Callable[[date], str | None]


@cache
def _supported() -> dict[str, frozenset[str]]:
    return {
        country: frozenset(s for s in subdivisions if _SUBDIVISION.match(s))
        for country, subdivisions in holidays.list_supported_countries().items()
        if _COUNTRY.match(country)
    }


def calendar_code(country: str, subdivision: str, field: str) -> str:
    """ "US-CA" for ("us", "CA") or ("US", "US-CA"); InvalidArgument names `field` (or its
    `.subdivision`) when the package knows no such country or subdivision."""
    country = country.strip().upper()
    subdivision = subdivision.strip().upper()
    if subdivision.startswith(f"{country}-"):
        subdivision = subdivision[len(country) + 1 :]
    supported = _supported()
    if country not in supported:
        raise InvalidArgument(field, f"{country[:10]!r} is not an ISO 3166-1 country with a holiday calendar")
    if subdivision and subdivision not in supported[country]:
        raise InvalidArgument(
            _subdivision_field(field), f"{subdivision[:10]!r} is not a subdivision of {country} with a holiday calendar"
        )
    return f"{country}-{subdivision}" if subdivision else country


def _subdivision_field(field: str) -> str:
    # A contact names its subdivision in a field of its own; a tenant's calendar is one string.
    return field.replace(".country", ".subdivision") if field.endswith(".country") else field


def parse(code: str, field: str) -> str:
    """A calendar written as one string ("de-by"), checked and normalised ("DE-BY")."""
    country, _, subdivision = code.strip().partition("-")
    return calendar_code(country, subdivision, field)


def parse_all(codes: Sequence[str], field: str) -> list[str]:
    if len(codes) > MAX_CALENDARS:
        raise InvalidArgument(field, f"at most {MAX_CALENDARS} calendars")
    return list(dict.fromkeys(parse(code, f"{field}[{i}]") for i, code in enumerate(codes)))


@cache
def _calendar(code: str) -> holidays.HolidayBase:
    country, _, subdivision = code.partition("-")
    # Years are filled in as days are asked about.
    return holidays.country_holidays(country, subdiv=subdivision or None)


def closed_days(codes: Sequence[str]) -> ClosedDay | None:
    """What closes a local day under these calendars; None for no calendar at all."""
    calendars = []
    for code in codes:
        try:
            # Checked again: a send command carries them from another process, perhaps with
            # another release of the package, and only known codes may reach the cache.
            known = parse(code, "holiday_calendars")
            calendars.append((known, _calendar(known)))
        except (InvalidArgument, NotImplementedError):
            # Stored under an older release of the package that knew it: placing the step
            # without that calendar beats never placing it.
            log.warning("holidays.calendar_unknown", calendar=code[:20])
    if not calendars:
        return None

    def closed(day: date) -> str | None:
        for code, calendar in calendars:
            if (name := calendar.get(day)) is not None:
                return f"{name}, {code}"
        return None

    return closed
