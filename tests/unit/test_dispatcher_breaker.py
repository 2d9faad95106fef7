"""The provider breaker: open after passing failures in a row, probe after a cool-down that
doubles, close at SendGrid's first answer. Time is a plain counter the test moves."""

from __future__ import annotations

from dripiq_dispatcher.breaker import BreakerState, ProviderBreaker


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def breaker(clock: Clock) -> ProviderBreaker:
    return ProviderBreaker(threshold=10, cooldown=5, max_cooldown=12, probe_timeout=30, now=clock)


def test_it_opens_only_after_failures_in_a_row_and_an_answer_resets_the_count() -> None:
    clock = Clock()
    b = breaker(clock)
    b.record(answered=0, failed=9)
    b.record(answered=1, failed=3)  # SendGrid answered one: it is up
    b.record(answered=0, failed=9)
    assert (b.state, b.hold()) == (BreakerState.CLOSED, 0.0)

    b.record(answered=0, failed=1)
    assert b.state == BreakerState.OPEN
    assert b.hold() == 5.0
    clock.t += 2
    assert b.hold() == 3.0


def test_after_the_cool_down_one_probe_goes_and_the_others_wait_for_it() -> None:
    clock = Clock()
    b = breaker(clock)
    b.record(answered=0, failed=10)
    clock.t += 5

    assert b.hold() == 0.0
    assert b.state == BreakerState.HALF_OPEN
    assert b.hold() == 0.0, "fetching goes on while no batch has anything to probe with"
    b.calling()  # a batch starts its calls: the probe
    assert 0 < b.hold() <= 1.0  # everyone else waits for its answer

    # It failed too: open again, for twice as long, then capped.
    b.record(answered=0, failed=1)
    assert (b.state, b.hold()) == (BreakerState.OPEN, 10.0)
    clock.t += 10
    assert b.hold() == 0.0
    b.calling()
    b.record(answered=0, failed=1)
    assert b.hold() == 12.0

    # SendGrid answers the next probe: closed, and the cool-down starts over next time.
    clock.t += 12
    assert b.hold() == 0.0
    b.calling()
    b.record(answered=1, failed=0)
    assert (b.state, b.hold()) == (BreakerState.CLOSED, 0.0)
    b.record(answered=0, failed=10)
    assert b.hold() == 5.0


def test_a_probe_that_never_reports_frees_the_next_one() -> None:
    clock = Clock()
    b = breaker(clock)
    b.record(answered=0, failed=10)
    clock.t += 5
    assert b.hold() == 0.0
    b.calling()
    clock.t += 29
    assert b.hold() > 0
    clock.t += 1
    assert b.hold() == 0.0
    # A batch with nothing to say (no calls) changes nothing.
    b.record(answered=0, failed=0)
    assert b.state == BreakerState.HALF_OPEN
