"""Placing steps around holidays: the contact's calendar closes days the send window would
otherwise allow, and the step says where it moved from and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dripiq_common.errors import InvalidArgument
from dripiq_common.windows import DEFAULT_WINDOW, MAX_JITTER_SECONDS, SendWindow
from dripiq_planner import calendars, lifecycle

NEW_YORK = ZoneInfo("America/New_York")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
BERLIN = ZoneInfo("Europe/Berlin")
JITTER = timedelta(seconds=MAX_JITTER_SECONDS)


@dataclass
class Campaign:
    """What placement needs of a campaign."""

    time_zone: str
    holidays: list[str]
    window: SendWindow = DEFAULT_WINDOW
    id: str = "c-1"
    tenant_id: str = "t-1"
    settings_json: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.settings_json = {
            "time_zone": self.time_zone,
            "send_window": self.window.to_json(),
            "holidays": self.holidays,
        }


def placed(campaign: Campaign, due: datetime) -> lifecycle.Placement:
    # Planned "now": no jitter before the opening, only the opening's own spread.
    return lifecycle.placement(campaign, due, 0, planned_from=due)


def opens(placement: lifecycle.Placement, zone: ZoneInfo, day: str, hour: int = 9) -> bool:
    local = placement.at.astimezone(zone)
    opening = datetime.fromisoformat(f"{day}T{hour:02d}:00").replace(tzinfo=zone)
    return opening <= local < opening + JITTER


def test_christmas_day_moves_to_the_next_working_morning() -> None:
    # Friday 2026-12-25, 10:00 in New York; the next working day is Monday the 28th.
    due = datetime(2026, 12, 25, 10, 0, tzinfo=NEW_YORK)

    result = placed(Campaign("America/New_York", ["US"]), due)

    assert opens(result, NEW_YORK, "2026-12-28")
    assert result.note.startswith("moved from 2026-12-25 (Christmas Day, US) to 2026-12-28 09:"), result.note


def test_without_a_calendar_christmas_is_a_working_day() -> None:
    due = datetime(2026, 12, 25, 10, 0, tzinfo=NEW_YORK)

    result = placed(Campaign("America/New_York", []), due)

    assert result.at == due.astimezone(UTC) and result.note == ""


def test_a_long_weekend_moves_past_its_monday() -> None:
    # Saturday before Memorial Day (Monday 2026-05-25): the window skips the weekend, the
    # calendar skips the Monday.
    due = datetime(2026, 5, 23, 11, 0, tzinfo=NEW_YORK)

    result = placed(Campaign("America/New_York", ["US"]), due)

    assert opens(result, NEW_YORK, "2026-05-26")
    assert "from 2026-05-25 (Memorial Day, US)" in result.note


def test_a_subdivision_holiday_closes_only_its_subdivision() -> None:
    # Tuesday 2026-03-31 is Cesar Chavez Day in California, not a federal holiday.
    due = datetime(2026, 3, 31, 10, 0, tzinfo=LOS_ANGELES)

    california = placed(Campaign("America/Los_Angeles", ["US-CA"]), due)
    nationwide = placed(Campaign("America/Los_Angeles", ["US"]), due)

    assert opens(california, LOS_ANGELES, "2026-04-01")
    assert "(Cesar Chavez Day, US-CA)" in california.note
    assert nationwide.at == due.astimezone(UTC) and nationwide.note == ""


def test_a_due_time_before_a_holiday_window_opens_moves_to_the_day_after() -> None:
    # 06:00 on Epiphany (Tuesday 2026-01-06) in Bavaria: before the window, on a closed day.
    due = datetime(2026, 1, 6, 6, 0, tzinfo=BERLIN)

    result = placed(Campaign("Europe/Berlin", ["DE-BY"]), due)

    assert opens(result, BERLIN, "2026-01-07")
    assert result.note.startswith("moved from 2026-01-06 (Epiphany, DE-BY) to 2026-01-07 09:")


def test_an_evening_before_a_holiday_skips_the_holiday_morning() -> None:
    # Thursday 2026-12-24 at 18:00: the window has closed; it would open on Christmas Day.
    due = datetime(2026, 12, 24, 18, 0, tzinfo=NEW_YORK)

    result = placed(Campaign("America/New_York", ["US"]), due)

    assert opens(result, NEW_YORK, "2026-12-28")
    assert "from 2026-12-25 (Christmas Day, US)" in result.note


def test_a_window_that_starts_late_opens_on_the_first_working_day_after_the_holiday() -> None:
    # A window of 13:00 to 17:00 every day; New Year's Day 2027 is a Friday.
    afternoons = SendWindow(frozenset(range(1, 8)), 13, 17)
    due = datetime(2026, 12, 31, 17, 30, tzinfo=NEW_YORK)

    result = placed(Campaign("America/New_York", ["US"], afternoons), due)

    assert opens(result, NEW_YORK, "2027-01-02", hour=13)
    assert result.note.startswith("moved from 2027-01-01 (New Year's Day, US) to 2027-01-02 13:")


def test_the_holiday_is_judged_in_the_contacts_time_zone() -> None:
    # 02:00 UTC on 2026-12-25 is still Christmas Eve evening in Los Angeles (a working day),
    # inside an all-day window.
    always = SendWindow(frozenset(range(1, 8)), 0, 24)
    due = datetime(2026, 12, 25, 2, 0, tzinfo=UTC)

    result = placed(Campaign("America/Los_Angeles", ["US"], always), due)

    assert result.at == due and result.note == ""


@pytest.mark.parametrize(
    ("code", "expected"),
    [("us", "US"), ("US-CA", "US-CA"), ("de-by", "DE-BY"), (" gb-eng ", "GB-ENG")],
)
def test_calendar_codes_are_checked_and_normalised(code: str, expected: str) -> None:
    assert calendars.parse(code, "f") == expected


@pytest.mark.parametrize("code", ["XX", "", "USA", "US-ZZ", "DE-Augsburg", "U"])
def test_unknown_calendars_name_the_field(code: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        calendars.parse(code, "settings.holiday_calendars[0]")
    assert exc.value.field == "settings.holiday_calendars[0]"


def test_a_calendar_the_package_no_longer_knows_is_skipped_not_fatal() -> None:
    closed = calendars.closed_days(["XX", "US"])
    assert closed is not None
    assert closed(datetime(2026, 12, 25).date()) == "Christmas Day, US"
    assert calendars.closed_days(["XX"]) is None
