"""The scheduler's overdue policy on in-memory timers: which due timers fire, drop or wait."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from dripiq_scheduler.domain import Overdue, OverduePolicy, due_since, jitter_seconds, sort_due

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Timer:
    id: int
    tenant_id: str
    key: str
    version: int
    scheduled_for: datetime
    updated_at: datetime


def timer(key: str, *, due_ago: timedelta, stored_ago: timedelta | None = None, version: int = 1) -> Timer:
    """A timer due `due_ago` before NOW, stored `stored_ago` before NOW (by default when it was due)."""
    return Timer(1, "t1", key, version, NOW - due_ago, NOW - (stored_ago if stored_ago is not None else due_ago))


def test_a_timer_stored_with_a_past_time_is_due_since_it_was_stored() -> None:
    late_arrival = timer("k", due_ago=timedelta(days=3), stored_ago=timedelta(seconds=5))

    assert due_since(late_arrival) == NOW - timedelta(seconds=5)
    # Three days past its time, but only five seconds waiting: it fires, even under "drop".
    assert sort_due([late_arrival], now=NOW, overdue=Overdue(OverduePolicy.DROP, limit_seconds=60)).fire == [
        late_arrival
    ]


@pytest.mark.parametrize("policy", list(OverduePolicy))
def test_timers_within_the_limit_fire_under_every_policy(policy: OverduePolicy) -> None:
    rows = [timer("a", due_ago=timedelta(0)), timer("b", due_ago=timedelta(seconds=60))]

    round_ = sort_due(rows, now=NOW, overdue=Overdue(policy, limit_seconds=60))

    assert round_.fire == rows
    assert (round_.drop, round_.delay, round_.late) == ([], [], 0)


def test_drop_policy_drops_only_what_waited_past_the_limit() -> None:
    fresh, stale = timer("fresh", due_ago=timedelta(seconds=59)), timer("stale", due_ago=timedelta(seconds=61))

    round_ = sort_due([fresh, stale], now=NOW, overdue=Overdue(OverduePolicy.DROP, limit_seconds=60))

    assert (round_.fire, round_.drop, round_.delay) == ([fresh], [stale], [])


def test_fire_policy_fires_late_timers_and_counts_them() -> None:
    stale = [timer(f"k{i}", due_ago=timedelta(hours=2)) for i in range(3)]

    round_ = sort_due(stale, now=NOW, overdue=Overdue(OverduePolicy.FIRE, limit_seconds=3600))

    assert round_.fire == stale
    assert round_.late == 3


def test_delay_policy_spreads_a_backlog_over_the_spread_the_same_way_on_every_replica() -> None:
    backlog = [timer(f"k{i}", due_ago=timedelta(hours=2)) for i in range(200)]
    overdue = Overdue(OverduePolicy.DELAY, limit_seconds=3600, spread_seconds=300)

    first = sort_due(backlog, now=NOW, overdue=overdue)
    again = sort_due(backlog, now=NOW, overdue=overdue)

    assert first.fire == [] and first.drop == []
    assert first.delay == again.delay
    times = [at for _, at in first.delay]
    assert all(NOW <= at < NOW + timedelta(seconds=300) for at in times)
    # Spread, not bunched: 200 timers land in many distinct seconds across the window.
    assert len({at.replace(microsecond=0) for at in times}) > 100
    assert max(times) - min(times) > timedelta(seconds=240)


def test_a_new_timer_version_gets_its_own_delay() -> None:
    assert jitter_seconds("t1", "k", 1, 300) != jitter_seconds("t1", "k", 2, 300)
    assert jitter_seconds("t1", "k", 1, 300) == jitter_seconds("t1", "k", 1, 300)
    assert jitter_seconds("t1", "k", 1, 300) != jitter_seconds("t2", "k", 1, 300)
