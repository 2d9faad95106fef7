"""Send windows in the contact's time zone, DST included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.errors import InvalidArgument
from dripiq_common.windows import (
    DEFAULT_WINDOW,
    MAX_JITTER_SECONDS,
    SendWindow,
    jitter_seconds,
    place,
    spread_for,
)
from dripiq_planner.convert import window_from_proto

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def local(dt: datetime, zone: ZoneInfo) -> datetime:
    return dt.astimezone(zone)


def test_inside_the_window_only_jitter_is_added() -> None:
    due = datetime(2030, 3, 5, 10, 0, tzinfo=PARIS)  # a Tuesday, 10:00 in Paris
    placed = place(due, DEFAULT_WINDOW, PARIS, seed="c1")
    assert placed - due == timedelta(seconds=jitter_seconds("c1"))


def test_after_hours_moves_to_the_next_morning_and_weekends_to_monday() -> None:
    evening = datetime(2030, 3, 5, 19, 30, tzinfo=PARIS)
    assert local(place(evening, DEFAULT_WINDOW, PARIS, seed="c"), PARIS).replace(minute=0, second=0) == datetime(
        2030, 3, 6, 9, 0, tzinfo=PARIS
    )
    friday_night = datetime(2030, 3, 8, 23, 0, tzinfo=PARIS)
    monday = local(place(friday_night, DEFAULT_WINDOW, PARIS, seed="c"), PARIS)
    assert (monday.isoweekday(), monday.hour) == (1, 9)


def test_the_window_follows_the_wall_clock_across_dst() -> None:
    # New York springs forward on Sunday 10 March 2030: 9:00 local is 14:00 UTC before, 13:00 after.
    before = place(datetime(2030, 3, 8, 20, 0, tzinfo=NEW_YORK), DEFAULT_WINDOW, NEW_YORK, seed="x")
    assert local(before, NEW_YORK).hour == 9 and before.hour == 13  # Monday 11 March, after the change
    friday = place(datetime(2030, 3, 7, 20, 0, tzinfo=NEW_YORK), DEFAULT_WINDOW, NEW_YORK, seed="x")
    assert local(friday, NEW_YORK).hour == 9 and friday.hour == 14  # Friday 8 March, before it


def test_a_window_opening_inside_a_dst_gap_opens_when_the_gap_ends() -> None:
    two_am = SendWindow(frozenset({7}), 2, 4)  # Sundays 02:00-04:00; 02:00-03:00 does not exist on 10 March
    placed = place(datetime(2030, 3, 10, 0, 30, tzinfo=NEW_YORK), two_am, NEW_YORK, seed="g")
    assert local(placed, NEW_YORK).hour == 3
    assert placed.astimezone(UTC) == datetime(2030, 3, 10, 7, 0, tzinfo=UTC) + timedelta(seconds=jitter_seconds("g"))


def test_a_step_due_now_gets_no_jitter_and_far_ones_at_most_fifteen_minutes() -> None:
    due = datetime(2030, 3, 5, 10, 0, tzinfo=PARIS)
    assert place(due, DEFAULT_WINDOW, PARIS, seed="c", spread=spread_for(0)) == due
    assert spread_for(3 * 86400) == MAX_JITTER_SECONDS and spread_for(3600) == 36


def test_jitter_spreads_contacts_and_is_deterministic() -> None:
    seeds = [f"contact-{i}" for i in range(200)]
    jitters = {jitter_seconds(s) for s in seeds}
    assert len(jitters) > 150 and all(0 <= j < MAX_JITTER_SECONDS for j in jitters)
    assert jitter_seconds("a") == jitter_seconds("a")


def test_windows_from_requests_name_their_field() -> None:
    assert window_from_proto(pb.SendWindow(), "send_window") is None
    assert window_from_proto(pb.SendWindow(weekdays=[6, 7], start_hour=10, end_hour=12), "w") == SendWindow(
        frozenset({6, 7}), 10, 12
    )
    with pytest.raises(InvalidArgument) as exc:
        window_from_proto(pb.SendWindow(weekdays=[0], start_hour=9, end_hour=17), "send_window")
    assert exc.value.field == "send_window.weekdays"
    with pytest.raises(InvalidArgument) as exc:
        window_from_proto(pb.SendWindow(start_hour=18, end_hour=9), "send_window")
    assert exc.value.field == "send_window.start_hour"
