"""A send the dispatcher defers comes back inside the contact's window on a day none of the
campaign's holiday calendars closes, the same days the planner placed its steps off: the
calendars travel in the send command and in the timer that brings it back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dispatch_support import command, identity, new_dispatcher, outcomes, rate_limits_of, received, stored
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import messages_pb2
from dripiq.scheduler.v1 import commands_pb2
from dripiq_common.bus.contract import Subjects
from dripiq_common.clock import ManualClock
from dripiq_common.windows import MAX_JITTER_SECONDS
from dripiq_dispatcher.models import outbox

NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS_9_TO_5 = messages_pb2.ContactWindow(
    weekdays=[1, 2, 3, 4, 5], start_hour=9, end_hour=17, time_zone="America/New_York"
)
# Tuesday 24 December 2030, seconds before the window closes in New York; Wednesday is
# Christmas Day.
CLOSING_ON_CHRISTMAS_EVE = datetime(2030, 12, 24, 16, 59, 50, tzinfo=NEW_YORK)
CHRISTMAS_OPENING = datetime(2030, 12, 25, 9, 0, tzinfo=NEW_YORK)
THURSDAY_OPENING = datetime(2030, 12, 26, 9, 0, tzinfo=NEW_YORK)
JITTER = timedelta(seconds=MAX_JITTER_SECONDS)


async def deferred_timers(engine: AsyncEngine, tenant_id: str) -> dict[str, Any]:
    """The scheduler timers that bring messages back, by message id."""
    async with engine.connect() as conn:
        payloads = (
            await conn.scalars(
                select(outbox.c.payload)
                .where(outbox.c.subject == Subjects.scheduler_command(tenant_id))
                .order_by(outbox.c.id)
            )
        ).all()
    timers = [commands_pb2.TimerCommand.FromString(p).schedule for p in payloads]
    return {t.key.removesuffix(":deferred"): t for t in timers}


def local(timer: Any) -> datetime:
    return timer.fire_at.ToDatetime(tzinfo=UTC).astimezone(NEW_YORK)


async def test_a_budget_deferred_send_skips_the_holiday_its_window_would_open_on(engine, fake, sender, tenant_id):
    dispatcher = new_dispatcher(engine, sender)
    dispatcher.clock = ManualClock(CLOSING_ON_CHRISTMAS_EVE.astimezone(UTC))
    await rate_limits_of(dispatcher).set_rate_limit(pb.RateLimit(tenant_id=tenant_id, channel="email", per_minute=1))
    sender_id = await identity(engine, tenant_id)
    first = command(tenant_id, sender_id, send_window=WEEKDAYS_9_TO_5, holiday_calendars=["US"])
    american = command(tenant_id, sender_id, send_window=WEEKDAYS_9_TO_5, holiday_calendars=["US"])
    no_holidays = command(tenant_id, sender_id, send_window=WEEKDAYS_9_TO_5)

    for cmd in (first, american, no_holidays):
        await dispatcher.handle_send(cmd.SerializeToString())

    assert received(fake, first.message_id)
    timers = await deferred_timers(engine, tenant_id)
    assert set(timers) == {american.message_id, no_holidays.message_id}
    # The minute budget refills at 17:00, after closing: the next opening is Christmas morning,
    # which the US calendar closes.
    assert THURSDAY_OPENING <= local(timers[american.message_id]) < THURSDAY_OPENING + JITTER
    assert CHRISTMAS_OPENING <= local(timers[no_holidays.message_id]) < CHRISTMAS_OPENING + JITTER
    # The same bytes come back, calendars included, so a second deferral skips them too.
    assert messages_pb2.SendMessageCommand.FromString(timers[american.message_id].payload) == american
    row = await stored(engine, american.message_id)
    assert (row.status, row.attempt_count) == ("queued", 0)
    deferred = [f for f in await outcomes(engine, tenant_id) if f.kind == messages_pb2.OUTCOME_KIND_DEFERRED]
    assert {f.message_id for f in deferred} == {american.message_id, no_holidays.message_id}

    # Thursday's timer fires: the budget has long refilled, and it goes out once.
    dispatcher.clock = ManualClock(timers[american.message_id].fire_at.ToDatetime(tzinfo=UTC))
    await dispatcher.handle_send(timers[american.message_id].payload)
    assert len(received(fake, american.message_id)) == 1
    assert (await stored(engine, american.message_id)).status == "sent"


async def test_a_provider_retry_due_after_closing_skips_the_holiday_too(engine, fake, sender, tenant_id):
    dispatcher = new_dispatcher(engine, sender)
    dispatcher.clock = ManualClock(CLOSING_ON_CHRISTMAS_EVE.astimezone(UTC))
    cmd = command(tenant_id, await identity(engine, tenant_id), send_window=WEEKDAYS_9_TO_5, holiday_calendars=["US"])
    fake.fail_next(503)

    await dispatcher.handle_send(cmd.SerializeToString())

    timer = (await deferred_timers(engine, tenant_id))[cmd.message_id]
    assert THURSDAY_OPENING <= local(timer) < THURSDAY_OPENING + JITTER


async def test_calendars_the_dispatcher_cannot_use_never_stop_a_send(engine, fake, sender, tenant_id):
    dispatcher = new_dispatcher(engine, sender)
    dispatcher.clock = ManualClock(CLOSING_ON_CHRISTMAS_EVE.astimezone(UTC))
    sender_id = await identity(engine, tenant_id)
    unknown = command(tenant_id, sender_id, send_window=WEEKDAYS_9_TO_5, holiday_calendars=["XX", "US-" + "Z" * 500])
    too_many = command(tenant_id, sender_id, send_window=WEEKDAYS_9_TO_5, holiday_calendars=["US"] * 11)
    fake.fail_next(503)

    await dispatcher.handle_send(unknown.SerializeToString())
    await dispatcher.handle_send(too_many.SerializeToString())

    # Unknown calendars are skipped: the retry comes back as if there were none.
    timer = (await deferred_timers(engine, tenant_id))[unknown.message_id]
    assert CHRISTMAS_OPENING <= local(timer) < CHRISTMAS_OPENING + JITTER
    # More calendars than a campaign may have is a bad command: it fails, naming the field.
    row = await stored(engine, too_many.message_id)
    assert (row.status, row.last_error) == ("failed", "invalid send command: at most 10 holiday_calendars")
    assert received(fake, too_many.message_id) == []
