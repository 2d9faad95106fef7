"""SchedulerService over a real in-process gRPC server: batch schedule and cancel, ListTimers.

Every test works in its own tenant on the shared database; nothing here fires timers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import pytest_asyncio
from scheduler_support import refused, served
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.planner.v1 import timers_pb2
from dripiq.scheduler.v1 import scheduler_service_pb2 as pb
from dripiq.scheduler.v1 import scheduler_service_pb2_grpc as pb_grpc
from dripiq_common.clock import ManualClock
from dripiq_scheduler import repository
from dripiq_scheduler.service import MAX_BATCH, TimerService

T0 = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)


def timer(key: str, fire_at: datetime, *, tenant_id: str = "", group: str = "g") -> pb.Timer:
    """A timer for a planner; tenant_id empty leaves it to the batch."""
    t = pb.Timer(tenant_id=tenant_id, key=key, group_key=group, kind="step_due", target=pb.TIMER_TARGET_PLANNER_TIMER)
    t.fire_at.FromDatetime(fire_at)
    return t


def for_tenant(tenant_id: str, *timers: pb.Timer) -> list[pb.Timer]:
    """The timers with a payload for `tenant_id`'s planner."""
    for t in timers:
        t.payload = timers_pb2.PlannerTimer(tenant_id=tenant_id, campaign_id=t.key).SerializeToString()
    return list(timers)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def timers(engine: AsyncEngine, clock: ManualClock) -> TimerService:
    return TimerService(engine, clock)


@pytest_asyncio.fixture
async def stub(timers: TimerService) -> AsyncIterator[pb_grpc.SchedulerServiceStub]:
    async with served(timers) as served_stub:
        yield served_stub


async def test_batch_schedule_is_one_upsert_per_key_with_schedule_semantics(stub, tenant_id):
    batch = for_tenant(
        tenant_id,
        timer("a", T0 + timedelta(hours=1)),
        timer("b", T0 + timedelta(hours=2), tenant_id=tenant_id),
        timer("c", T0 + timedelta(hours=3)),
        timer("c", T0 + timedelta(hours=4)),  # the same key again: the last one wins
    )
    request = pb.BatchScheduleTimersRequest(tenant_id=tenant_id, timers=batch)
    assert (await stub.BatchScheduleTimers(request)).scheduled_count == 3

    got = {k: (await stub.GetTimer(pb.GetTimerRequest(tenant_id=tenant_id, key=k))).timer for k in "abc"}
    assert {t.tenant_id for t in got.values()} == {tenant_id}
    assert got["c"].fire_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(hours=4)
    assert [got[k].version for k in "abc"] == [1, 1, 1]

    # Replayed: nothing changes. New content for one key: only that one moves on.
    await stub.BatchScheduleTimers(request)
    moved = for_tenant(tenant_id, timer("a", T0 + timedelta(hours=9)))
    await stub.BatchScheduleTimers(pb.BatchScheduleTimersRequest(tenant_id=tenant_id, timers=moved))
    versions = [(await stub.GetTimer(pb.GetTimerRequest(tenant_id=tenant_id, key=k))).timer.version for k in "abc"]
    assert versions == [2, 1, 1]


async def test_batch_schedule_names_the_bad_field_and_stores_nothing(stub, tenant_id):
    def request(*timers: pb.Timer) -> pb.BatchScheduleTimersRequest:
        return pb.BatchScheduleTimersRequest(tenant_id=tenant_id, timers=for_tenant(tenant_id, *timers))

    good = timer("good", T0 + timedelta(hours=1))
    bad_subject = timer("bad", T0)
    wrong = request(good, timer("x", T0), bad_subject)
    wrong.timers[2].target_subject = "dripiq.nowhere.x"
    assert (await refused(stub.BatchScheduleTimers(wrong))).field == "timers[2].target_subject"

    other_tenant = request(good, timer("x", T0, tenant_id=f"{tenant_id}-other"))
    assert (await refused(stub.BatchScheduleTimers(other_tenant))).field == "timers[1].tenant_id"

    no_key = request(good, timer("", T0))
    assert (await refused(stub.BatchScheduleTimers(no_key))).field == "timers[1].key"

    no_time = request(good)
    no_time.timers[0].ClearField("fire_at")
    assert (await refused(stub.BatchScheduleTimers(no_time))).field == "timers[0].fire_at"

    assert (
        await refused(stub.BatchScheduleTimers(pb.BatchScheduleTimersRequest(tenant_id=tenant_id)))
    ).field == "timers"
    too_many = request(*[timer(f"k{i}", T0) for i in range(MAX_BATCH + 1)])
    assert (await refused(stub.BatchScheduleTimers(too_many))).field == "timers"
    no_tenant = request(good)
    no_tenant.tenant_id = ""
    assert (await refused(stub.BatchScheduleTimers(no_tenant))).field == "tenant_id"

    # All or nothing: the valid timers of the rejected batches were not stored.
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.GetTimer(pb.GetTimerRequest(tenant_id=tenant_id, key="good"))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


async def test_batch_cancel_counts_only_timers_it_canceled(stub, tenant_id):
    other = f"{tenant_id}-b"
    for tenant in (tenant_id, other):
        batch = for_tenant(tenant, *[timer(k, T0 + timedelta(hours=1)) for k in ("a", "b", "c")])
        await stub.BatchScheduleTimers(pb.BatchScheduleTimersRequest(tenant_id=tenant, timers=batch))

    keys = ["a", "b", "missing", "a"]
    assert (
        await stub.BatchCancelTimers(pb.BatchCancelTimersRequest(tenant_id=tenant_id, keys=keys))
    ).canceled_count == 2
    # Already canceled: nothing more to cancel.
    assert (
        await stub.BatchCancelTimers(pb.BatchCancelTimersRequest(tenant_id=tenant_id, keys=keys))
    ).canceled_count == 0

    async def status(tenant: str, key: str) -> int:
        return (await stub.GetTimer(pb.GetTimerRequest(tenant_id=tenant, key=key))).timer.status

    assert [await status(tenant_id, k) for k in "abc"] == [
        pb.TIMER_STATUS_CANCELED,
        pb.TIMER_STATUS_CANCELED,
        pb.TIMER_STATUS_ACTIVE,
    ]
    # The same keys of another tenant are untouched.
    assert {await status(other, k) for k in "abc"} == {pb.TIMER_STATUS_ACTIVE}

    def cancel(**kwargs) -> pb.BatchCancelTimersRequest:  # type: ignore[no-untyped-def]
        return pb.BatchCancelTimersRequest(**{"tenant_id": tenant_id, **kwargs})

    assert (await refused(stub.BatchCancelTimers(cancel(keys=["a", ""])))).field == "keys[1]"
    assert (await refused(stub.BatchCancelTimers(cancel(keys=[])))).field == "keys"
    assert (await refused(stub.BatchCancelTimers(cancel(keys=["k"] * (MAX_BATCH + 1))))).field == "keys"
    assert (await refused(stub.BatchCancelTimers(cancel(tenant_id="", keys=["a"])))).field == "tenant_id"


async def list_all(stub, request: pb.ListTimersRequest) -> list[pb.Timer]:  # type: ignore[no-untyped-def]
    """Every page of a listing, following next_page_token."""
    found: list[pb.Timer] = []
    while True:
        page = await stub.ListTimers(request)
        found += page.timers
        if not page.next_page_token:
            return found
        request.page_token = page.next_page_token


async def test_list_timers_filters_by_status_group_and_fire_time(stub, engine, tenant_id):
    hours = {"s1": 1, "s2": 2, "s3": 3, "c1": 4, "f1": 5, "o1": 6}
    batch = [
        timer(k, T0 + timedelta(hours=h), group="campaign:1" if k != "o1" else "campaign:2") for k, h in hours.items()
    ]
    await stub.BatchScheduleTimers(
        pb.BatchScheduleTimersRequest(tenant_id=tenant_id, timers=for_tenant(tenant_id, *batch))
    )
    await stub.CancelTimer(pb.CancelTimerRequest(tenant_id=tenant_id, key="c1"))
    async with engine.begin() as conn:
        fired = await repository.get(conn, tenant_id=tenant_id, key="f1")
        await repository.mark_fired(conn, ids=[fired.id], now=T0)
    # Another tenant's timers at the same times never show.
    other = f"{tenant_id}-x"
    await stub.BatchScheduleTimers(
        pb.BatchScheduleTimersRequest(
            tenant_id=other, timers=for_tenant(other, *[timer(k, T0 + timedelta(hours=h)) for k, h in hours.items()])
        )
    )

    async def keys(**filters) -> list[str]:  # type: ignore[no-untyped-def]
        return [t.key for t in await list_all(stub, pb.ListTimersRequest(tenant_id=tenant_id, **filters))]

    def ts(hours: float):  # type: ignore[no-untyped-def]
        value = pb.Timer().fire_at
        value.FromDatetime(T0 + timedelta(hours=hours))
        return value

    assert await keys() == ["s1", "s2", "s3", "c1", "f1", "o1"]
    assert await keys(status=pb.TIMER_STATUS_ACTIVE) == ["s1", "s2", "s3", "o1"]
    assert await keys(status=pb.TIMER_STATUS_CANCELED) == ["c1"]
    assert await keys(status=pb.TIMER_STATUS_FIRED) == ["f1"]
    assert await keys(group_key="campaign:2") == ["o1"]
    # fire_after is inclusive, fire_before exclusive.
    assert await keys(fire_after=ts(2), fire_before=ts(4)) == ["s2", "s3"]
    assert await keys(fire_after=ts(5)) == ["f1", "o1"]
    assert await keys(fire_before=ts(2)) == ["s1"]
    assert await keys(status=pb.TIMER_STATUS_ACTIVE, group_key="campaign:1", fire_after=ts(2)) == ["s2", "s3"]

    listed = (await stub.ListTimers(pb.ListTimersRequest(tenant_id=tenant_id, status=pb.TIMER_STATUS_FIRED))).timers
    assert listed[0].fired_at.ToDatetime(tzinfo=UTC) == T0
    assert listed[0].tenant_id == tenant_id

    def bad(**fields) -> pb.ListTimersRequest:  # type: ignore[no-untyped-def]
        return pb.ListTimersRequest(**{"tenant_id": tenant_id, **fields})

    assert (await refused(stub.ListTimers(bad(tenant_id="")))).field == "tenant_id"
    assert (await refused(stub.ListTimers(bad(fire_after=ts(3), fire_before=ts(3))))).field == "fire_before"
    assert (await refused(stub.ListTimers(bad(status=42)))).field == "status"
    assert (await refused(stub.ListTimers(bad(page_size=-1)))).field == "page_size"
    assert (await refused(stub.ListTimers(bad(page_token="not-a-token")))).field == "page_token"


async def test_list_timers_pages_each_timer_once_in_fire_order(stub, tenant_id):
    # Ties on fire_at (groups of three at the same minute) are broken by id, so no page
    # boundary that falls inside a tie loses or repeats a timer.
    batch = [timer(f"k{i:02d}", T0 + timedelta(minutes=i // 3)) for i in range(25)]
    await stub.BatchScheduleTimers(
        pb.BatchScheduleTimersRequest(tenant_id=tenant_id, timers=for_tenant(tenant_id, *batch))
    )
    other = f"{tenant_id}-x"
    await stub.BatchScheduleTimers(pb.BatchScheduleTimersRequest(tenant_id=other, timers=for_tenant(other, *batch[:5])))

    request = pb.ListTimersRequest(tenant_id=tenant_id, page_size=7)
    pages = []
    while True:
        page = await stub.ListTimers(request)
        pages.append([t.key for t in page.timers])
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert [len(p) for p in pages] == [7, 7, 7, 4]
    listed = [key for page in pages for key in page]
    assert listed == [f"k{i:02d}" for i in range(25)]

    # A token only moves the cursor: with another tenant it still lists only that tenant.
    first = await stub.ListTimers(pb.ListTimersRequest(tenant_id=tenant_id, page_size=2))
    theirs = await list_all(stub, pb.ListTimersRequest(tenant_id=other, page_token=first.next_page_token))
    assert {t.tenant_id for t in theirs} == {other}


async def test_list_timers_page_size_defaults_to_100_and_stops_at_1000(stub, tenant_id):
    batch = [timer(f"k{i:04d}", T0 + timedelta(seconds=i)) for i in range(1001)]
    await stub.BatchScheduleTimers(
        pb.BatchScheduleTimersRequest(tenant_id=tenant_id, timers=for_tenant(tenant_id, *batch))
    )
    default = await stub.ListTimers(pb.ListTimersRequest(tenant_id=tenant_id))
    assert len(default.timers) == 100 and default.next_page_token
    capped = await stub.ListTimers(pb.ListTimersRequest(tenant_id=tenant_id, page_size=5000))
    assert len(capped.timers) == 1000
    rest = await stub.ListTimers(pb.ListTimersRequest(tenant_id=tenant_id, page_token=capped.next_page_token))
    assert [t.key for t in rest.timers] == ["k1000"] and not rest.next_page_token
