"""The tenant's analytics per ISO week: tenant_stats_weekly is counted in the transactions that
count the daily rows, and GetTenantStats answers a range from its whole weeks plus its edge days
exactly as it would from the days alone (real PostgreSQL, the real ingest).

Each test has its own tenant, so its rollups start empty."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from events_helpers import CONTACT_EMAIL, accepted_message
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from test_tenant_stats import ev, post, send

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq_devtools.fake_sendgrid import AcceptedMessage, new_message_id
from dripiq_events import rollups
from dripiq_events.domain import Cohort
from dripiq_events.models import TENANT_STATS_DIMENSIONS, TENANT_STATS_METRICS, tenant_stats, tenant_stats_weekly
from dripiq_events.queries import EventQuery, TenantStatsQuery, stats_spans

# Thursday 2030-01-03 to Thursday 2030-01-24: a partial week, two whole ones, a partial one.
FIRST = date(2030, 1, 3)
DAYS = [FIRST + timedelta(days=n) for n in range(22)]


async def send_over_weeks(ingest, tenant_id: str) -> dict[date, int]:  # type: ignore[no-untyped-def]
    """One or two messages a day under varying dimensions, with engagement; the messages sent by day."""
    sent: Counter[date] = Counter()
    for n, day in enumerate(DAYS):
        for k in range(1 + n % 2):
            step = (n + k) % 3
            message = await send(
                ingest,
                tenant_id,
                day=day,
                step=step,
                campaign=f"camp-{k}",
                product=f"product-{n % 2}",
                sender=f"sender-{(n + k) % 3}",
                strategist=("openai", "template")[k],
                channel="linkedin" if step == 2 else "email",
            )
            sent[day] += 1
            events = [ev(message, "delivered"), ev(message, "open", 1), ev(message, "open", 2)]
            if n % 3 == 0:
                events += [
                    ev(message, "click", url="https://example.com"),
                    ev(message, "open", 3, sg_machine_open=True),
                ]
            if n % 5 == 0:
                events.append(ev(message, "bounce", type="bounce"))
            await post(ingest, events)
    return sent


def week_of_rows(rows) -> dict[tuple, Counter[str]]:  # type: ignore[no-untyped-def,type-arg]
    sums: dict[tuple, Counter[str]] = {}  # type: ignore[type-arg]
    for r in rows:
        key = (rollups.week_of(r["day"]), *(r[d] for d in TENANT_STATS_DIMENSIONS))
        sums.setdefault(key, Counter()).update({m: r[m] for m in TENANT_STATS_METRICS})
    return sums


def keyed(weekly_rows) -> dict[tuple, Counter[str]]:  # type: ignore[no-untyped-def,type-arg]
    return {
        (r["week"], *(r[d] for d in TENANT_STATS_DIMENSIONS)): Counter({m: r[m] for m in TENANT_STATS_METRICS})
        for r in weekly_rows
    }


def sent_outcome(tenant_id: str, *, day: date) -> tuple[bytes, AcceptedMessage]:
    """A SENT outcome as the dispatcher publishes it, at noon UTC on `day`, and the mail it stands for."""
    message_id, x_message_id = str(uuid.uuid4()), new_message_id()
    outcome = dispatcher_pb.MessageOutcome(
        tenant_id=tenant_id,
        message_id=message_id,
        campaign_id="camp-1",
        step_index=1,
        contact_id="contact-1",
        channel="email",
        kind=dispatcher_pb.OUTCOME_KIND_SENT,
        provider_message_id=x_message_id,
        to_email=CONTACT_EMAIL,
        subject="Hello",
        product_id="product-1",
        sender_identity_id="sender-1",
        strategist="openai",
    )
    outcome.occurred_at.FromDatetime(datetime(day.year, day.month, day.day, 12, tzinfo=UTC))
    return outcome.SerializeToString(), accepted_message(tenant_id, message_id, x_message_id)


async def read(engine, table, tenant_id: str):  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return (await conn.execute(select(table).where(table.c.tenant_id == tenant_id))).mappings().all()


async def test_weekly_rows_are_the_sums_of_the_daily_rows_and_replays_count_nothing(engine, ingest, tenant_id):
    await send_over_weeks(ingest, tenant_id)
    daily = await read(engine, tenant_stats, tenant_id)
    weekly = await read(engine, tenant_stats_weekly, tenant_id)

    expected = week_of_rows(daily)
    got = keyed(weekly)
    assert got == expected
    assert {key[0] for key in got} == {date(2029, 12, 31), date(2030, 1, 7), date(2030, 1, 14), date(2030, 1, 21)}
    assert sum(c["sent"] for c in got.values()) == 33 and sum(c["click_events"] for c in got.values()) > 0

    # A SENT outcome and its events delivered again, as JetStream redelivers them.
    outcome, message = sent_outcome(tenant_id, day=DAYS[3])
    events = [ev(message, "delivered"), ev(message, "open", 1), ev(message, "open", 2), ev(message, "click")]
    assert await ingest.record_outcome(outcome)
    await post(ingest, events)
    before = keyed(await read(engine, tenant_stats_weekly, tenant_id))
    assert await ingest.record_outcome(outcome)
    await post(ingest, events)
    await post(ingest, events[1:])
    after = keyed(await read(engine, tenant_stats_weekly, tenant_id))
    assert after == before
    assert after == week_of_rows(await read(engine, tenant_stats, tenant_id))
    assert sum(c["sent"] for c in after.values()) == 34


async def test_a_transaction_that_fails_counts_in_neither_tier(engine, tenant_id):
    """A process that dies mid-batch: the daily and weekly increments roll back together."""
    increments = rollups.TenantIncrements()
    cohort = Cohort(
        day=date(2030, 1, 9), product_id="p", sender_identity_id="s", strategist="openai", variant="", channel="email"
    )
    increments.add(tenant_id, 0, cohort, "sent")
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await rollups._add_to_tenant_stats(conn, increments)
            assert (
                len(
                    (
                        await conn.execute(
                            select(tenant_stats_weekly).where(tenant_stats_weekly.c.tenant_id == tenant_id)
                        )
                    ).all()
                )
                == 1
            )
            raise RuntimeError("the process dies before commit")
    assert await read(engine, tenant_stats, tenant_id) == []
    assert await read(engine, tenant_stats_weekly, tenant_id) == []


async def test_a_week_is_its_monday(engine, tenant_id):
    """Hostile or mistaken writers: a row keyed by any other day than a Monday is refused."""
    with pytest.raises(IntegrityError, match="tenant_stats_weekly_week_is_monday"):
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO events.tenant_stats_weekly (tenant_id, week, product_id, sender_identity_id, "
                    "strategist, step_index, variant, channel) VALUES (:t, '2030-01-08', '', '', '', 0, '', '')"
                ),
                {"t": tenant_id},
            )


RANGES = [
    (date(2030, 1, 3), date(2030, 1, 24)),  # partial, 2 whole, partial
    (date(2030, 1, 7), date(2030, 1, 20)),  # whole weeks only
    (date(2030, 1, 6), date(2030, 1, 21)),  # a Sunday and a Monday at the edges
    (date(2030, 1, 5), date(2030, 1, 13)),  # one whole week
    (date(2029, 12, 20), date(2030, 2, 10)),  # wider than what was sent
]
GROUPS: list[tuple[tuple[str, ...], dict[str, tuple[str | int, ...]]]] = [
    ((), {}),
    (("step_index",), {}),
    (("sender_identity_id", "strategist"), {}),
    (("product_id", "channel", "step_index"), {}),
    (("strategist",), {"step_index": (0, 2)}),
    (("sender_identity_id",), {"product_id": ("product-1",), "channel": ("email",)}),
]


@pytest.mark.parametrize(("start", "end"), RANGES)
async def test_whole_weeks_and_edge_days_answer_what_the_days_answer(engine, ingest, tenant_id, start, end):
    sent = await send_over_weeks(ingest, tenant_id)
    queries = EventQuery(engine)
    for group_by, filters in GROUPS:
        assert stats_spans(start, end, group_by).weeks is not None
        query = TenantStatsQuery.of(
            tenant_id, start_day=start.isoformat(), end_day=end.isoformat(), group_by=group_by, filters=filters
        )
        answers = []
        for daily_only in (True, False):
            # Small pages: the keyset "after" applies to the weeks and days alike.
            rows, token = [], ""
            for _ in range(50):
                page = await queries.tenant_stats(query, page_size=2, page_token=token, daily_only=daily_only)
                rows += [dict(r) for r in page.rows]
                token = page.next_page_token
                if not token:
                    break
            answers.append(rows)
        by_days, by_weeks = answers
        assert by_weeks == by_days, (group_by, filters)
        if not filters:
            assert sum(r["sent"] for r in by_weeks) == sum(n for day, n in sent.items() if start <= day <= end)
