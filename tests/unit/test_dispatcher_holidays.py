"""The dispatcher re-places a deferred send off the campaign's holidays, with the same
calendars and the same closed-day rule the planner placed the step with."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common import calendars
from dripiq_common.windows import MAX_JITTER_SECONDS
from dripiq_dispatcher import convert, domain

NEW_YORK = ZoneInfo("America/New_York")
MESSAGE_ID = "7b0c1f4e-3f55-4a43-9a59-0d4f0f3b9a10"
WEEKDAYS_9_TO_5 = messages_pb2.ContactWindow(
    weekdays=[1, 2, 3, 4, 5], start_hour=9, end_hour=17, time_zone="America/New_York"
)
JITTER = timedelta(seconds=MAX_JITTER_SECONDS)
# Thursday 24 December 2026, just after the window closed; Friday is Christmas Day.
CHRISTMAS_EVE_EVENING = datetime(2026, 12, 24, 17, 0, 30, tzinfo=NEW_YORK)
FRIDAY_OPENING = datetime(2026, 12, 25, 9, 0, tzinfo=NEW_YORK)
MONDAY_OPENING = datetime(2026, 12, 28, 9, 0, tzinfo=NEW_YORK)


def message(**overrides: object) -> domain.NewMessage:
    fields: dict[str, object] = {
        "tenant_id": "t-1",
        "message_id": MESSAGE_ID,
        "campaign_id": "camp-1",
        "to_email": "ada@example.com",
        "sender_identity_id": "id-1",
        "subject": "Hello",
        "body_text": "Hi Ada",
        "send_window": WEEKDAYS_9_TO_5,
    }
    fields.update(overrides)
    return convert.new_message(messages_pb2.SendMessageCommand(**fields))  # type: ignore[arg-type]


def test_a_deferred_send_skips_christmas_on_a_us_calendar() -> None:
    back = domain.in_window(message(holiday_calendars=["US"]), CHRISTMAS_EVE_EVENING).astimezone(NEW_YORK)

    assert MONDAY_OPENING <= back < MONDAY_OPENING + JITTER


def test_without_calendars_the_same_send_comes_back_on_christmas_day() -> None:
    back = domain.in_window(message(), CHRISTMAS_EVE_EVENING).astimezone(NEW_YORK)

    assert FRIDAY_OPENING <= back < FRIDAY_OPENING + JITTER


def test_an_observed_holiday_closes_its_day_too() -> None:
    # In England Boxing Day (a Saturday in 2026) is observed on Monday 28th: Tuesday opens.
    back = domain.in_window(message(holiday_calendars=["GB-ENG"]), CHRISTMAS_EVE_EVENING).astimezone(NEW_YORK)

    tuesday_opening = MONDAY_OPENING + timedelta(days=1)
    assert tuesday_opening <= back < tuesday_opening + JITTER


def test_the_dispatcher_closes_exactly_the_days_the_planner_closes() -> None:
    from dripiq_planner import calendars as planner_calendars

    assert planner_calendars.closed_days is calendars.closed_days
    assert planner_calendars.parse is calendars.parse


def test_a_calendar_the_dispatcher_does_not_know_is_skipped_not_fatal() -> None:
    hostile = ["XX", "US-ZZ", "x" * 5000, "../../etc", "US"]

    back = domain.in_window(message(holiday_calendars=hostile), CHRISTMAS_EVE_EVENING).astimezone(NEW_YORK)

    assert MONDAY_OPENING <= back < MONDAY_OPENING + JITTER
    assert domain.content_problem(message(holiday_calendars=hostile)) is None


def test_only_unknown_calendars_place_as_if_there_were_none() -> None:
    back = domain.in_window(message(holiday_calendars=["XX"]), CHRISTMAS_EVE_EVENING).astimezone(NEW_YORK)

    assert FRIDAY_OPENING <= back < FRIDAY_OPENING + JITTER


def test_more_calendars_than_a_campaign_may_have_fail_the_command_naming_the_field() -> None:
    too_many = message(holiday_calendars=["US"] * (calendars.MAX_CALENDARS + 1))

    assert domain.content_problem(too_many) == (
        f"invalid send command: at most {calendars.MAX_CALENDARS} holiday_calendars"
    )
    assert domain.content_problem(message(holiday_calendars=["US"] * calendars.MAX_CALENDARS)) is None


def test_a_send_without_a_window_is_not_held_by_holidays_alone() -> None:
    # The planner always sends a window; without one the dispatcher has no zone to find the
    # contact's local day in, so it keeps the time it was given.
    unplaced = message(holiday_calendars=["US"], send_window=None)

    assert domain.in_window(unplaced, CHRISTMAS_EVE_EVENING) == CHRISTMAS_EVE_EVENING
