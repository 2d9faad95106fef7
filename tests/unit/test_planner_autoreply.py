"""How long an out-of-office reply pauses a campaign: to the instant, in the contact's zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dripiq_planner.autoreply import pause_plan

# Not on a whole second: a pause must not end a fraction early because of it.
NOW = datetime(2026, 12, 2, 15, 47, 12, 940511, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


def plan(return_date: str, *, time_zone: str = "Europe/Paris", max_days: int = 30):  # type: ignore[no-untyped-def]
    return pause_plan(return_date=return_date, time_zone=time_zone, now=NOW, default_days=7, max_days=max_days)


def test_it_resumes_at_the_very_start_of_the_return_day_in_the_contacts_zone() -> None:
    paused = plan("2026-12-16")

    assert paused.resume_at == datetime(2026, 12, 16, tzinfo=PARIS)
    assert paused.resume_at.astimezone(UTC) == datetime(2026, 12, 15, 23, 0, tzinfo=UTC)
    assert paused.detail == "paused until 2026-12-16 (the return date in the auto-reply)"


def test_without_a_date_it_pauses_for_the_default() -> None:
    paused = plan("")

    assert paused.resume_at == NOW + timedelta(days=7)
    assert paused.detail == "paused 7 days (no return date in the auto-reply)"


def test_a_far_date_is_capped() -> None:
    paused = plan("2027-06-01", max_days=30)

    assert paused.resume_at == NOW + timedelta(days=30)
    assert paused.detail.endswith("capped at 30 days: until 2027-01-01")


def test_a_day_already_begun_there_does_not_pause() -> None:
    # 15:47 UTC is already 2 December in Paris and in Tokyo (where 3 December has begun too).
    assert plan("2026-12-02").resume_at is None
    assert plan("2026-12-03", time_zone="Asia/Tokyo").resume_at is None
    assert plan("2026-12-03", time_zone="America/New_York").resume_at == datetime(
        2026, 12, 3, tzinfo=ZoneInfo("America/New_York")
    )
    assert plan("not a date").resume_at == NOW + timedelta(days=7)
