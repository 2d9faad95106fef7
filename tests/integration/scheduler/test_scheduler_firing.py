"""Scheduler on real PostgreSQL and NATS: schedule, reschedule, cancel, fire exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from scheduler_support import planner_timer, published_count

from dripiq.planner.v1 import timers_pb2
from dripiq.scheduler.v1 import commands_pb2
from dripiq.scheduler.v1 import scheduler_service_pb2 as pb
from dripiq_common.bus.contract import Subjects
from dripiq_common.clock import ManualClock
from dripiq_common.errors import InvalidArgument, NotFound
from dripiq_scheduler.firer import Firer
from dripiq_scheduler.service import TimerService


def timer(tenant_id: str, key: str, fire_at: datetime, payload: str = "p", group: str = "g") -> pb.Timer:
    return planner_timer(tenant_id, key, fire_at, campaign=payload, group=group)


T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


async def test_schedule_is_idempotent_and_new_content_bumps_version(engine, tenant_id):
    timers = TimerService(engine, ManualClock(T0))
    first = await timers.schedule(timer(tenant_id, "k", T0 + timedelta(hours=1)))
    again = await timers.schedule(timer(tenant_id, "k", T0 + timedelta(hours=1)))
    moved = await timers.schedule(timer(tenant_id, "k", T0 + timedelta(hours=2)))
    assert (first.version, again.version, moved.version) == (1, 1, 2)
    assert moved.fire_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(hours=2)


async def test_invalid_timers_name_the_field(engine, tenant_id):
    timers = TimerService(engine, ManualClock(T0))
    bad_subject = timer(tenant_id, "k", T0)
    bad_subject.target_subject = "dripiq.nowhere.x"
    with pytest.raises(InvalidArgument) as exc:
        await timers.schedule(bad_subject)
    assert exc.value.field == "timer.target_subject"
    no_tenant = timer(tenant_id, "k", T0)
    no_tenant.tenant_id = ""
    with pytest.raises(InvalidArgument) as exc:
        await timers.schedule(no_tenant)
    assert exc.value.field == "timer.tenant_id"
    with pytest.raises(NotFound):
        await timers.get(tenant_id, "missing")


async def test_due_timers_fire_once_and_canceled_ones_never(engine, js, tenant_id):
    clock = ManualClock(T0)
    timers = TimerService(engine, clock)
    await timers.schedule(timer(tenant_id, "due", T0 + timedelta(minutes=1), payload="due"))
    await timers.schedule(timer(tenant_id, "canceled", T0 + timedelta(minutes=1), payload="no"))
    await timers.schedule(timer(tenant_id, "later", T0 + timedelta(days=1), payload="later"))
    await timers.cancel(pb.CancelTimerRequest(tenant_id=tenant_id, key="canceled"))

    firer = Firer(engine, js, clock)
    assert await firer.fire_once() == 0
    clock.advance(timedelta(minutes=2))
    # Other tests' timers may be due too; ours must be among them, once.
    while await firer.fire_once():
        pass
    subject = Subjects.planner_timer(tenant_id)
    assert await published_count(js, subject) == 1
    msg = await js.get_last_msg("PLANNER_TIMERS", subject)
    assert timers_pb2.PlannerTimer.FromString(msg.data).campaign_id == "due"
    assert msg.headers["Dripiq-Timer-Key"] == "due"
    assert (await timers.get(tenant_id, "due")).status == pb.TIMER_STATUS_FIRED
    assert (await timers.get(tenant_id, "canceled")).status == pb.TIMER_STATUS_CANCELED
    assert (await timers.get(tenant_id, "later")).status == pb.TIMER_STATUS_ACTIVE


async def test_redelivered_schedule_command_does_not_rearm_a_fired_timer(engine, js, tenant_id):
    clock = ManualClock(T0)
    timers = TimerService(engine, clock)
    command = commands_pb2.TimerCommand(tenant_id=tenant_id, schedule=timer(tenant_id, "once", T0))
    await timers.apply_command(command.SerializeToString())
    while await Firer(engine, js, clock).fire_once():
        pass
    await timers.apply_command(command.SerializeToString())
    assert (await timers.get(tenant_id, "once")).status == pb.TIMER_STATUS_FIRED


async def test_cancel_group(engine, tenant_id):
    timers = TimerService(engine, ManualClock(T0))
    for key in ("a", "b", "c"):
        await timers.schedule(timer(tenant_id, key, T0 + timedelta(hours=1), group="campaign:1"))
    await timers.schedule(timer(tenant_id, "other", T0 + timedelta(hours=1), group="campaign:2"))
    assert await timers.cancel_group(tenant_id, "campaign:1") == 3
    assert (await timers.get(tenant_id, "other")).status == pb.TIMER_STATUS_ACTIVE


async def test_a_batch_command_schedules_many_timers_in_one_go(engine, tenant_id):
    timers = TimerService(engine, ManualClock(T0))
    batch = [timer(tenant_id, f"b{i}", T0 + timedelta(minutes=i)) for i in range(5)]
    batch.append(timer(tenant_id, "b0", T0 + timedelta(hours=9)))  # the same key again: last wins
    command = commands_pb2.TimerCommand(tenant_id=tenant_id, schedule_batch=commands_pb2.TimerBatch(timers=batch))
    await timers.apply_command(command.SerializeToString())
    await timers.apply_command(command.SerializeToString())  # redelivered: nothing changes
    first = await timers.get(tenant_id, "b0")
    assert (first.version, first.fire_at.ToDatetime(tzinfo=UTC)) == (1, T0 + timedelta(hours=9))
    assert (await timers.get(tenant_id, "b4")).status == pb.TIMER_STATUS_ACTIVE


async def test_a_cancel_says_why_and_a_moot_one_marks_a_fired_timer_canceled(engine, js, tenant_id):
    clock = ManualClock(T0)
    timers = TimerService(engine, clock)
    await timers.schedule(timer(tenant_id, "m:no_open_48h", T0 + timedelta(minutes=1), payload="fired"))
    await timers.schedule(timer(tenant_id, "m:no_click_72h", T0 + timedelta(days=3), payload="active"))
    clock.advance(timedelta(minutes=2))
    firer = Firer(engine, js, clock)
    while await firer.fire_once():
        pass
    assert (await timers.get(tenant_id, "m:no_open_48h")).status == pb.TIMER_STATUS_FIRED

    # A plain cancel leaves a fired timer as it was: it did fire.
    kept = await timers.cancel(pb.CancelTimerRequest(tenant_id=tenant_id, key="m:no_open_48h", reason="too late"))
    assert (kept.status, kept.cancel_reason) == (pb.TIMER_STATUS_FIRED, "")

    # Its receiver stood down: it reads canceled, with why, and keeps when it fired.
    command = commands_pb2.TimerCommand(
        tenant_id=tenant_id,
        ops=commands_pb2.TimerOps(
            commands=[
                commands_pb2.TimerCommand(
                    tenant_id=tenant_id,
                    cancel=pb.CancelTimerRequest(
                        tenant_id=tenant_id, key="m:no_open_48h", reason="moot: open came first", include_fired=True
                    ),
                ),
                commands_pb2.TimerCommand(
                    tenant_id=tenant_id,
                    cancel=pb.CancelTimerRequest(tenant_id=tenant_id, key="m:no_click_72h", reason="moot: click came"),
                ),
            ]
        ),
    )
    clock.advance(timedelta(seconds=5))
    await timers.apply_commands([command.SerializeToString()])
    await timers.apply_commands([command.SerializeToString()])  # redelivered: the same

    moot = await timers.get(tenant_id, "m:no_open_48h")
    assert (moot.status, moot.cancel_reason) == (pb.TIMER_STATUS_CANCELED, "moot: open came first")
    assert moot.fired_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=2)
    assert moot.canceled_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=2, seconds=5)
    active = await timers.get(tenant_id, "m:no_click_72h")
    assert (active.status, active.cancel_reason) == (pb.TIMER_STATUS_CANCELED, "moot: click came")
    listed = await timers.list_timers(pb.ListTimersRequest(tenant_id=tenant_id, status=pb.TIMER_STATUS_CANCELED))
    assert {(t.key, t.cancel_reason) for t in listed.timers} == {
        ("m:no_open_48h", "moot: open came first"),
        ("m:no_click_72h", "moot: click came"),
    }

    with pytest.raises(InvalidArgument) as exc:
        await timers.cancel(pb.CancelTimerRequest(tenant_id=tenant_id, key="m:no_click_72h", reason="x" * 201))
    assert exc.value.field == "reason"
