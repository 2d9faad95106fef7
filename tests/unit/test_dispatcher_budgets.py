"""Send budgets on their own: which limits a send counts against, the windows they count in, and
when a deferred message comes back. No database: admission's use of them is tested in
tests/integration/dispatcher/test_rate_limits.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dripiq_dispatcher.budgets import (
    MAX_DEFER_JITTER,
    Budget,
    defer_until,
    identity_scope,
    send_budgets,
    tenant_scope,
    window_end,
    window_start,
)
from dripiq_dispatcher.campaign_mail import Identity
from dripiq_dispatcher.failures import RetryPolicy

NOW = datetime(2030, 5, 17, 13, 42, 27, 123456, tzinfo=UTC)
UNCAPPED = Identity(id="id-1", from_email="a@acme.test", from_name="", verified=True)
NO_LIMITS = {"minute": 0, "hour": 0, "day": 0}


def test_no_limit_set_means_no_budget() -> None:
    assert send_budgets(tenant_id="t1", channel="email", tenant_limits=NO_LIMITS, identity=UNCAPPED) == []


def test_tenant_and_identity_limits_are_budgets_longest_window_first() -> None:
    capped = Identity(id="id-1", from_email="a@acme.test", from_name="", verified=True, per_minute=5, per_day=300)

    found = send_budgets(
        tenant_id="t1", channel="email", tenant_limits={"minute": 100, "hour": 0, "day": 5000}, identity=capped
    )

    # The day windows come first: a deferral then waits for the window that is really full.
    assert [b.window for b in found] == ["day", "day", "minute", "minute"]
    assert set(found) == {
        Budget(tenant_scope("t1", "email"), "day", 5000),
        Budget(identity_scope("id-1"), "day", 300),
        Budget(tenant_scope("t1", "email"), "minute", 100),
        Budget(identity_scope("id-1"), "minute", 5),
    }


def test_scopes_keep_tenants_channels_and_identities_apart() -> None:
    scopes = {tenant_scope("t1", "email"), tenant_scope("t2", "email"), tenant_scope("t1", "sms"), identity_scope("t1")}
    assert len(scopes) == 4


def test_windows_are_fixed_and_aligned_to_the_clock() -> None:
    assert window_start("minute", NOW) == datetime(2030, 5, 17, 13, 42, tzinfo=UTC)
    assert window_start("hour", NOW) == datetime(2030, 5, 17, 13, 0, tzinfo=UTC)
    assert window_start("day", NOW) == datetime(2030, 5, 17, tzinfo=UTC)
    assert window_end("minute", NOW) == datetime(2030, 5, 17, 13, 43, tzinfo=UTC)
    assert window_end("day", NOW) == datetime(2030, 5, 18, tzinfo=UTC)


def test_a_deferred_message_comes_back_after_the_window_with_its_own_fixed_jitter() -> None:
    ids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(100)]

    back = [defer_until("minute", NOW, message_id) for message_id in ids]

    end = window_end("minute", NOW)
    # A minute window spreads returns over a tenth of it (6 s); a day's is capped at a minute.
    assert all(end <= at < end + timedelta(seconds=6) for at in back)
    assert len(set(back)) > 90
    assert back == [defer_until("minute", NOW, message_id) for message_id in ids]
    day_back = [defer_until("day", NOW, message_id) for message_id in ids]
    assert all(window_end("day", NOW) <= at < window_end("day", NOW) + MAX_DEFER_JITTER for at in day_back)


def test_a_retry_backs_off_doubling_up_to_the_cap_and_stops_at_the_horizon() -> None:
    policy = RetryPolicy(horizon=timedelta(hours=1), base=timedelta(seconds=30), cap=timedelta(minutes=10))
    message_id = "00000000-0000-0000-0000-000000000001"

    def after(attempt: int) -> timedelta:
        at = policy.next_attempt(attempt=attempt, first_at=NOW, now=NOW, message_id=message_id)
        assert at is not None
        return at - NOW

    # Each backoff is base * 2^(attempt-1), capped, plus a jitter of at most a quarter of it.
    for attempt, backoff in [(1, 30), (2, 60), (3, 120), (6, 600), (9, 600)]:
        assert timedelta(seconds=backoff) <= after(attempt) <= timedelta(seconds=backoff * 1.25)
    # Past the horizon from the first attempt, nothing comes back.
    assert policy.next_attempt(attempt=3, first_at=NOW - timedelta(minutes=59), now=NOW, message_id=message_id) is None


def test_a_retry_waits_at_least_as_long_as_the_provider_asked() -> None:
    policy = RetryPolicy()
    reset = NOW + timedelta(minutes=7)

    at = policy.next_attempt(attempt=1, first_at=NOW, now=NOW, message_id="m", not_before=reset)

    assert at is not None and reset <= at <= reset + timedelta(seconds=30 / 4)
