"""A hostile or broken caller against the scheduler, on real PostgreSQL and NATS: bad
identifiers, subjects and payloads are refused naming the field, and a stored timer that can
never be published is a dead letter and canceled while the rest of its round fires."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from scheduler_support import refused, served
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from waiting import eventually

from dripiq.planner.v1 import timers_pb2
from dripiq.scheduler.v1 import commands_pb2
from dripiq.scheduler.v1 import scheduler_service_pb2 as pb
from dripiq.scheduler.v1 import scheduler_service_pb2_grpc as pb_grpc
from dripiq_common import deadletters
from dripiq_common.bus.contract import ConsumerSpec, Streams, Subjects, header_text
from dripiq_common.bus.worker import PullWorker, whole_batch
from dripiq_common.clock import ManualClock
from dripiq_scheduler.firer import DEAD_LETTER_CONSUMER, Firer
from dripiq_scheduler.models import timers as timers_table
from dripiq_scheduler.service import TimerService

T0 = datetime(2033, 2, 1, 10, 0, tzinfo=UTC)


def payload(tenant_id: str, campaign_id: str = "c-1") -> bytes:
    return timers_pb2.PlannerTimer(tenant_id=tenant_id, campaign_id=campaign_id).SerializeToString()


def timer(tenant_id: str, key: str, fire_at: datetime = T0) -> pb.Timer:
    t = pb.Timer(
        tenant_id=tenant_id,
        key=key,
        group_key="campaign:c-1",
        kind="step_due",
        target=pb.TIMER_TARGET_PLANNER_TIMER,
        payload=payload(tenant_id, key),
    )
    t.fire_at.FromDatetime(fire_at)
    return t


@pytest_asyncio.fixture
async def stub(engine: AsyncEngine) -> AsyncIterator[pb_grpc.SchedulerServiceStub]:
    async with served(TimerService(engine, ManualClock(T0))) as served_stub:
        yield served_stub


async def test_a_tenant_id_with_a_trailing_newline_is_refused(stub, tenant_id):
    bad = timer(tenant_id, "k")
    bad.tenant_id = f"{tenant_id}\n"
    bad.payload = payload(bad.tenant_id)
    assert (await refused(stub.ScheduleTimer(pb.ScheduleTimerRequest(timer=bad)))).field == "timer.tenant_id"
    get = stub.GetTimer(pb.GetTimerRequest(tenant_id=f"{tenant_id}\n", key="k"))
    assert (await refused(get)).field == "tenant_id"


@pytest.mark.parametrize(
    "subject",
    [
        "dripiq.planner.timer.*.{tenant}",
        "dripiq.planner.timer.>",
        "dripiq.planner.timer.{tenant}-other",
        "dripiq.dispatcher.send.{tenant}",
        "dripiq.nowhere.{tenant}",
    ],
)
async def test_a_subject_other_than_the_targets_own_is_refused(stub, tenant_id, subject):
    bad = timer(tenant_id, "k")
    bad.target_subject = subject.format(tenant=tenant_id)
    assert (await refused(stub.ScheduleTimer(pb.ScheduleTimerRequest(timer=bad)))).field == "timer.target_subject"


async def test_a_timer_needs_a_target(stub, tenant_id):
    bad = timer(tenant_id, "k")
    bad.target = pb.TIMER_TARGET_UNSPECIFIED
    assert (await refused(stub.ScheduleTimer(pb.ScheduleTimerRequest(timer=bad)))).field == "timer.target"
    bad.target = 99
    assert (await refused(stub.ScheduleTimer(pb.ScheduleTimerRequest(timer=bad)))).field == "timer.target"


async def test_the_subject_is_built_by_the_scheduler_and_an_older_callers_exact_subject_is_taken(stub, tenant_id):
    stored = (await stub.ScheduleTimer(pb.ScheduleTimerRequest(timer=timer(tenant_id, "new")))).timer
    assert (stored.target, stored.target_subject) == (pb.TIMER_TARGET_PLANNER_TIMER, Subjects.planner_timer(tenant_id))
    older = timer(tenant_id, "old")
    older.target = pb.TIMER_TARGET_UNSPECIFIED
    older.target_subject = Subjects.planner_timer(tenant_id)
    stored = (await stub.ScheduleTimer(pb.ScheduleTimerRequest(timer=older))).timer
    assert stored.target == pb.TIMER_TARGET_PLANNER_TIMER


@pytest.mark.parametrize(
    "body",
    [
        "other-tenant",  # a PlannerTimer of another tenant
        "send-command",  # a SendMessageCommand of another tenant, for the dispatcher
        "garbage",  # not a PlannerTimer at all
        "no-tenant",  # a PlannerTimer naming no tenant
    ],
)
async def test_a_payload_not_of_the_target_and_tenant_is_refused(stub, tenant_id, body):
    from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb2

    bad = timer(tenant_id, "k")
    bad.payload = {
        "other-tenant": payload(f"{tenant_id}-other"),
        "send-command": dispatcher_pb2.SendMessageCommand(
            tenant_id=f"{tenant_id}-other", message_id="m-1"
        ).SerializeToString(),
        "garbage": b"\xff\xff\xff",
        "no-tenant": timers_pb2.PlannerTimer(campaign_id="c-1").SerializeToString(),
    }[body]
    assert (await refused(stub.ScheduleTimer(pb.ScheduleTimerRequest(timer=bad)))).field == "timer.payload"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("key", "k\r\nNats-Msg-Id: forged"),
        ("key", "k\n"),
        ("key", "with space"),
        ("key", "k" * 201),
        ("group_key", "campaign:1\r\nX: y"),
        ("kind", "step_due\n"),
        ("kind", "step due"),
    ],
)
async def test_keys_groups_and_kinds_that_would_break_a_header_are_refused(stub, tenant_id, field, value):
    bad = timer(tenant_id, "k")
    setattr(bad, field, value)
    assert (await refused(stub.ScheduleTimer(pb.ScheduleTimerRequest(timer=bad)))).field == f"timer.{field}"
    if field == "key":
        cancel = stub.CancelTimer(pb.CancelTimerRequest(tenant_id=tenant_id, key=value))
        assert (await refused(cancel)).field == "key"


async def insert_row(engine: AsyncEngine, **values: object) -> int:
    """A row as an older version (or a hand) could have written it, bypassing every check."""
    row = {
        "group_key": "",
        "kind": "step_due",
        "scheduled_for": T0,
        "created_at": T0,
        "updated_at": T0,
        "target": "planner_timer",
        **values,
    }
    async with engine.begin() as conn:
        return (await conn.execute(timers_table.insert().values(row).returning(timers_table.c.id))).scalar_one()


async def test_an_unpublishable_timer_is_dead_lettered_and_canceled_while_the_round_fires_the_rest(
    engine, js, nats_url, tenant_id
):
    clock = ManualClock(T0)
    timers = TimerService(engine, clock)
    bad_tenant = f"{tenant_id}\n"
    # Oldest first, so a round reaches the bad rows before the good ones, as the firer does.
    bad = {
        "tenant": await insert_row(
            engine,
            tenant_id=bad_tenant,
            key="step",
            scheduled_for=T0 - timedelta(minutes=3),
            target_subject=f"dripiq.planner.timer.{bad_tenant}",
            payload=payload(bad_tenant),
        ),
        "wildcard": await insert_row(
            engine,
            tenant_id=tenant_id,
            key="wild",
            scheduled_for=T0 - timedelta(minutes=3),
            target=None,
            target_subject=f"dripiq.planner.timer.*.{tenant_id}",
            payload=payload(f"{tenant_id}-victim"),
        ),
        "crlf": await insert_row(
            engine,
            tenant_id=tenant_id,
            key="k\r\nNats-Msg-Id: forged",
            scheduled_for=T0 - timedelta(minutes=2),
            target_subject=Subjects.planner_timer(tenant_id),
            payload=payload(tenant_id),
        ),
    }
    good = [f"good-{i}" for i in range(3)]
    await timers.schedule_many([timer(tenant_id, key, T0 - timedelta(minutes=1)) for key in good])

    firer = Firer(engine, js, clock)
    rounds = 0
    while await firer.fire_once():  # other tests' due timers may come along; bounded by them
        rounds += 1
        assert rounds < 1000

    for key in good:
        assert (await timers.get(tenant_id, key)).status == pb.TIMER_STATUS_FIRED
    info = await js.stream_info("PLANNER_TIMERS", subjects_filter=Subjects.planner_timer(tenant_id))
    assert (info.state.subjects or {}).get(Subjects.planner_timer(tenant_id)) == len(good)

    async with engine.connect() as conn:
        rows = {
            row.id: row
            for row in await conn.execute(
                select(timers_table.c.id, timers_table.c.status, timers_table.c.cancel_reason).where(
                    timers_table.c.id.in_(bad.values())
                )
            )
        }
    reasons = {name: rows[row_id].cancel_reason for name, row_id in bad.items()}
    assert {rows[row_id].status for row_id in bad.values()} == {"canceled"}
    assert reasons["tenant"].startswith("timer.tenant_id: ")
    assert reasons["wildcard"].startswith("timer.target: ")
    assert reasons["crlf"].startswith("timer.key: ")

    letters = [
        letter
        for letter in await deadletters.dead_letters(js, consumer=DEAD_LETTER_CONSUMER, limit=1000)
        if letter.headers.get("Dripiq-Timer-Tenant") in (tenant_id, header_text(bad_tenant))
    ]
    by_key = {letter.headers["Dripiq-Timer-Key"]: letter for letter in letters}
    assert set(by_key) == {"step", "wild", header_text("k\r\nNats-Msg-Id: forged")}
    assert by_key["step"].error == reasons["tenant"]
    assert by_key["wild"].data == payload(f"{tenant_id}-victim")
    assert all(letter.original_subject == "" for letter in letters)  # nothing to replay them onto

    listed = await asyncio.to_thread(cli, 0, "--nats-url", nats_url, "list", "--consumer", DEAD_LETTER_CONSUMER)
    assert f"TIMERS/{DEAD_LETTER_CONSUMER}" in listed
    refused = await asyncio.to_thread(cli, 1, "--nats-url", nats_url, "replay", str(by_key["step"].sequence))
    assert refused == ""
    for letter in letters:
        dropped = await asyncio.to_thread(cli, 0, "--nats-url", nats_url, "drop", str(letter.sequence))
        assert f"dropped {letter.sequence}" in dropped


def cli(code: int, *argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert deadletters.main(list(argv)) == code
    return out.getvalue()


async def test_a_bad_timer_command_is_a_dead_letter_and_the_consumer_goes_on(engine, js, nats_conn, tenant_id):
    timers = TimerService(engine, ManualClock(T0))
    subject = Subjects.scheduler_command(tenant_id)
    spec = ConsumerSpec(Streams.SCHEDULER_COMMANDS, f"scheduler-commands-{tenant_id}", subject, max_deliver=2)
    foreign = timer(tenant_id, "foreign")
    foreign.payload = payload(f"{tenant_id}-victim")
    commands = [
        commands_pb2.TimerCommand(tenant_id=tenant_id, schedule=timer(tenant_id, "before")),
        commands_pb2.TimerCommand(tenant_id=tenant_id, schedule=foreign),
        commands_pb2.TimerCommand(
            tenant_id=tenant_id, cancel=pb.CancelTimerRequest(tenant_id=tenant_id, key="k\r\nX: y")
        ),
        commands_pb2.TimerCommand(tenant_id=tenant_id, schedule=timer(tenant_id, "after")),
    ]
    for command in commands:
        await js.publish(subject, command.SerializeToString())
    worker = PullWorker(
        js, nats_conn, spec, whole_batch(lambda msgs: timers.apply_commands([m.data for m in msgs])), fetch_timeout=0.2
    )
    task = asyncio.create_task(worker.run())
    try:

        async def both_dead() -> list[deadletters.DeadLetter]:
            found = await deadletters.dead_letters(js, consumer=spec.durable)
            return found if len(found) == 2 else []

        foreign_letter, crlf_letter = await eventually(both_dead, "two dead letters")
        await eventually(lambda: timers_stored(engine, tenant_id, 2), "the good commands applied")
    finally:
        worker.stop()
        await asyncio.wait_for(task, 5)
        await js.delete_consumer(spec.stream.name, spec.durable)
    assert foreign_letter.error.startswith("invalid TimerCommand: timer.payload: ")
    assert crlf_letter.error.startswith("invalid TimerCommand: key: ")
    assert (await timers.get(tenant_id, "before")).status == pb.TIMER_STATUS_ACTIVE
    assert (await timers.get(tenant_id, "after")).status == pb.TIMER_STATUS_ACTIVE


async def timers_stored(engine: AsyncEngine, tenant_id: str, count: int) -> bool:
    async with engine.connect() as conn:
        stored = await conn.execute(
            text("SELECT count(*) FROM scheduler.timers WHERE tenant_id = :t"), {"t": tenant_id}
        )
        return stored.scalar_one() == count
