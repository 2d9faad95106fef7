"""GetTenantStats latency over the rollups of 1,000,000 campaigns and about 100,000,000 events.

    .venv/bin/python bench/tenant_stats.py [--calls 20] [--days 90]

Runs the whole suite (TLS and tokens on) and asks the events service over gRPC, as a caller
outside the suite would.

What is loaded, and why not the events themselves: GetTenantStats reads events.tenant_stats
only, one row per tenant, UTC day of sending and (product, sender, strategist, step, variant,
channel) that counted anything, and its weekly tier events.tenant_stats_weekly (the same rows
summed per ISO week, computed here from the daily rows in SQL). So the benchmark writes the rows those campaigns' messages and
events produce, with generate_series in PostgreSQL: 1,000 tenants over --days days, 5 steps a
campaign (step 2 a LinkedIn task, the others emails), one tenant of 200,000 campaigns (5
products, 20 senders, 3 strategists: nearly every combination every day) and 999 of about 800
campaigns each (2 products, 3 senders, 2 strategists, about 60% of the combinations a day).
Each sent message carries about 20 provider events (processed, delivered, opens, clicks...);
the counters are drawn around those rates, and the totals printed say how many campaigns,
messages and counted events the rows stand for. Storing 100,000,000 events through ingest at
the ~33,000 rows/s this machine reaches (docs/performance.md) would take ~50 minutes and
change nothing this query reads, so they are not stored.

Then --calls calls of each case (group-bys and ranges, for the big tenant and a small one),
p50 / p99 per case and over all calls. Every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import date, timedelta

import asyncpg
from harness import machine, running_suite
from sqlalchemy.dialects import postgresql

from dripiq.events.v1 import events_service_pb2 as pb
from dripiq.events.v1 import events_service_pb2_grpc as pb_grpc
from dripiq_events import repository
from dripiq_events.queries import stats_spans

BIG = "bench-big"
SMALL = "bench-t0007"
LAST_DAY = date(2030, 3, 31)
D = pb.StatsDimension

# The counters of one row from its messages (`sent`) and a hash of its key (`h`, 0-1023): about
# 20 provider events per message, `processed` among them though it is not counted.
_COUNTERS = """
    sent,
    (sent * 97 + h % 3) / 100,
    (sent * 45 + h % 7) / 100,
    (sent * 30 + h % 5) / 100,
    sent * 12 + h % 4,
    (sent * 12 + h % 9) / 100,
    sent * 5 + h % 3,
    (sent * 6 + h % 11) / 100,
    (sent * 3 + h % 13) / 100,
    (sent * 3 + h % 17) / 100,
    (sent * 1 + h % 19) / 100,
    (h % 97 = 0)::int
"""
_COLUMNS = (
    "tenant_id, day, product_id, sender_identity_id, strategist, step_index, variant, channel, sent, delivered, "
    "unique_human_opens, machine_opens, human_open_events, unique_clicks, click_events, replies, auto_replies, "
    "bounces, unsubscribes, spam_reports"
)
_LOAD_BIG = f"""
INSERT INTO events.tenant_stats ({_COLUMNS})
SELECT tenant_id, day, product_id, sender, strategist, step, '', CASE WHEN step = 2 THEN 'linkedin' ELSE 'email' END,
       {_COUNTERS}
FROM (
    SELECT '{BIG}' AS tenant_id, day::date AS day, 'product-' || p AS product_id, 'sender-' || s AS sender,
           (ARRAY['openai', 'template', 'request'])[g] AS strategist, step,
           1 + (hashtext(concat_ws('/', day::text, p, s, g, step)) & 1023) % 13 AS sent,
           hashtext(concat_ws('/', step, day::text, p, s, g)) & 1023 AS h
    FROM generate_series($1::date, $2::date, '1 day') AS day, generate_series(1, 5) AS p,
         generate_series(1, 20) AS s, generate_series(1, 3) AS g, generate_series(0, 4) AS step
) k
"""
# The weekly tier from the daily rows, as the events service keeps it: each day's counters in
# its ISO week (the Monday; date_trunc('week') is ISO in PostgreSQL).
_DIMENSIONS = "product_id, sender_identity_id, strategist, step_index, variant, channel"
_METRICS = _COLUMNS.split(", ")[8:]
_LOAD_WEEKLY = f"""
INSERT INTO events.tenant_stats_weekly (tenant_id, week, {_DIMENSIONS}, {", ".join(_METRICS)})
SELECT tenant_id, date_trunc('week', day)::date, {_DIMENSIONS}, {", ".join(f"sum({m})" for m in _METRICS)}
FROM events.tenant_stats GROUP BY tenant_id, date_trunc('week', day)::date, {_DIMENSIONS}
"""
_LOAD_SMALL = f"""
INSERT INTO events.tenant_stats ({_COLUMNS})
SELECT tenant_id, day, product_id, sender, strategist, step, '', CASE WHEN step = 2 THEN 'linkedin' ELSE 'email' END,
       {_COUNTERS}
FROM (
    SELECT 'bench-t' || lpad(t::text, 4, '0') AS tenant_id, day::date AS day, 'product-' || p AS product_id,
           'sender-' || s AS sender, (ARRAY['openai', 'template'])[g] AS strategist, step,
           1 + ((hashtext(concat_ws('/', t, day::text, p, s, g, step)) & 1023) < 300)::int AS sent,
           hashtext(concat_ws('/', step, t, day::text, p, s, g)) & 1023 AS h
    FROM generate_series(1, 999) AS t, generate_series($1::date, $2::date, '1 day') AS day,
         generate_series(1, 2) AS p, generate_series(1, 3) AS s, generate_series(1, 2) AS g,
         generate_series(0, 4) AS step
    WHERE (hashtext(concat_ws('/', day::text, t, p, s, g, step)) & 1023) < 620
) k
"""


async def load(dsn: str, days: int, *, explain: bool = False) -> None:
    first = LAST_DAY - timedelta(days=days - 1)
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        await conn.execute(_LOAD_BIG, first, LAST_DAY)
        await conn.execute(_LOAD_SMALL, first, LAST_DAY)
        await conn.execute(_LOAD_WEEKLY)
        await conn.execute("VACUUM ANALYZE events.tenant_stats")
        await conn.execute("VACUUM ANALYZE events.tenant_stats_weekly")
        rows, sent, events, size = await conn.fetchrow(
            "SELECT count(*), sum(sent), sum(sent + delivered + machine_opens + human_open_events + click_events "
            "+ replies + auto_replies + bounces + unsubscribes + spam_reports), "
            "pg_total_relation_size('events.tenant_stats') FROM events.tenant_stats"
        )
        big = await conn.fetchval("SELECT count(*) FROM events.tenant_stats WHERE tenant_id = $1", BIG)
        weekly = await conn.fetchval("SELECT count(*) FROM events.tenant_stats_weekly WHERE tenant_id = $1", BIG)
        if explain:
            for group_by in ((), ("step_index",), ("product_id", "sender_identity_id", "step_index")):
                for daily_only in (True, False):
                    tier = "days only" if daily_only else "weeks and edge days"
                    print(f"plan of the big tenant over {days} days by {group_by or 'nothing'}, {tier}:")
                    sql = _service_sql(first, group_by, daily_only=daily_only)
                    plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
                    print("\n".join(r[0] for r in plan))
    finally:
        await conn.close()
    print(
        f"loaded {rows:,} tenant_stats rows ({size / 2**20:,.0f} MiB with its key; {big:,} of the big tenant) "
        f"and {weekly:,} weekly rows of the big tenant in {time.perf_counter() - started:.0f} s, over {days} days {first}..{LAST_DAY}: {sent:,} sent messages "
        f"= {sent // 5:,} campaigns of 5 steps; {events:,} counted events, about {sent * 20:,} provider events "
        "with `processed` and repeated opens"
    )


def _service_sql(first: date, group_by: tuple[str, ...], *, daily_only: bool) -> str:
    """The statement the events service runs for the big tenant's question, its values inlined."""
    spans = stats_spans(first, LAST_DAY, group_by, daily_only=daily_only)
    query = repository.tenant_stats_query(
        tenant_id=BIG, days=spans.days, weeks=spans.weeks, group_by=group_by, filters={}, after=None, limit=1001
    )
    return str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


def cases(days: int) -> list[tuple[str, pb.GetTenantStatsRequest]]:
    def ask(tenant: str, span: int, *group_by: int, **fields) -> pb.GetTenantStatsRequest:  # type: ignore[no-untyped-def]
        start = LAST_DAY - timedelta(days=min(span, days) - 1)
        return pb.GetTenantStatsRequest(
            tenant_id=tenant,
            start_day=start.isoformat(),
            end_day=LAST_DAY.isoformat(),
            group_by=group_by,
            page_size=1000,
            **fields,
        )

    step2 = pb.TenantStatsFilter(step_indexes=[2])
    return [
        ("big, 7 days, by step", ask(BIG, 7, D.STATS_DIMENSION_STEP_INDEX)),
        ("big, 7 days, step 2 by day", ask(BIG, 7, D.STATS_DIMENSION_DAY, filter=step2)),
        ("big, 30 days, by sender", ask(BIG, 30, D.STATS_DIMENSION_SENDER_IDENTITY)),
        ("big, 30 days, by strategist", ask(BIG, 30, D.STATS_DIMENSION_STRATEGIST)),
        ("big, 30 days, by day and step", ask(BIG, 30, D.STATS_DIMENSION_DAY, D.STATS_DIMENSION_STEP_INDEX)),
        ("big, 90 days, totals", ask(BIG, 90)),
        ("big, 90 days, by step", ask(BIG, 90, D.STATS_DIMENSION_STEP_INDEX)),
        (
            "big, 90 days, by product, sender, step",
            ask(BIG, 90, D.STATS_DIMENSION_PRODUCT, D.STATS_DIMENSION_SENDER_IDENTITY, D.STATS_DIMENSION_STEP_INDEX),
        ),
        ("small, 7 days, by step", ask(SMALL, 7, D.STATS_DIMENSION_STEP_INDEX)),
        ("small, 90 days, by day", ask(SMALL, 90, D.STATS_DIMENSION_DAY)),
        (
            "small, 90 days, by sender and strategist",
            ask(SMALL, 90, D.STATS_DIMENSION_SENDER_IDENTITY, D.STATS_DIMENSION_STRATEGIST),
        ),
    ]


def ms(sorted_seconds: list[float], share: float) -> float:
    return sorted_seconds[min(len(sorted_seconds) - 1, int(len(sorted_seconds) * share))] * 1000


async def measure(suite, calls: int, days: int) -> None:  # type: ignore[no-untyped-def]
    every: list[float] = []
    async with suite.channel("EVENTS_GRPC_PORT") as channel:
        stub = pb_grpc.EventsServiceStub(channel)
        for name, request in cases(days):
            answer = await stub.GetTenantStats(request, timeout=30)  # warm: plans and caches
            seconds = []
            for _ in range(calls):
                started = time.perf_counter()
                await stub.GetTenantStats(request, timeout=30)
                seconds.append(time.perf_counter() - started)
            seconds.sort()
            every += seconds
            sent = sum(r.counts.sent for r in answer.rows)
            print(
                f"  {name:<42} {len(answer.rows):>4} rows, {sent:>9,} sent: "
                f"p50 {ms(seconds, 0.5):5.1f} ms, p99 {ms(seconds, 0.99):5.1f} ms"
            )
    every.sort()
    print(f"GetTenantStats over {len(every)} calls: p50 {ms(every, 0.5):.1f} ms, p99 {ms(every, 0.99):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20, help="timed calls per case")
    parser.add_argument("--days", type=int, default=90, help="days of rollups loaded (1-366)")
    parser.add_argument("--explain", action="store_true", help="print the plans of the big tenant's widest questions")
    args = parser.parse_args()
    if not 1 <= args.days <= 366 or not 1 <= args.calls <= 10_000:
        parser.error("--days must be 1-366 and --calls 1-10000")
    print(machine())
    with running_suite() as suite:
        asyncio.run(load(suite.env["DATABASE_URL"], args.days, explain=args.explain))
        asyncio.run(measure(suite, args.calls, args.days))


if __name__ == "__main__":
    main()
