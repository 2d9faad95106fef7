"""GetTenantStats latency over the rollups of 1,000,000 campaigns and about 100,000,000 events.

    .venv/bin/python bench/tenant_stats.py [--calls 20] [--days 90] [--raw-events 100000000 [--raw-seconds 1200]]
    .venv/bin/python bench/tenant_stats.py --ingest-batches 150   # also: while ingest writes
    .venv/bin/python bench/tenant_stats.py --ingest-batches 300 --query-process  # and a query process

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
change nothing this query reads, so by default they are not stored.

--raw-events N also stores N raw events in events.message_events (its monthly partitions made
first) and their messages, one per 20 events, in events.outbound_messages, with INSERT ... SELECT
from generate_series in chunks, two statements at a time, printing rows/s; then ANALYZE. The
query still reads only the rollups, but now in a database of that size: its shared buffers, the
OS cache and the disk hold the raw tables and their indexes too. No chunk starts after
--raw-seconds, so the load stops by itself and says how many rows it stored.

Then --calls calls of each case (group-bys and ranges, for the big tenant and a small one),
p50 / p99 per case and over all calls. The first call of each case, right after the load, is
timed apart ("first call"): the first one of the run also opens the channel's connection and
the service's pooled connections, and each meets a plan and pages not cached yet.

--ingest-batches N then asks the same cases again while the suite ingests N signed Event
Webhook batches of 1,000 events (bench/events_posting.py, --ingest-concurrency posters at
the edge, for messages of another tenant sent on the last day, so every event also adds to
events.tenant_stats and events.tenant_stats_weekly). One call of each case in turn, for as
long as the posts last, with the quiet calls just before as the anchor:
`ratio: GetTenantStats p50 while ingesting / quiet`, and the CPU each process used meanwhile.

--query-process also runs an events query process (EVENTS_ROLE=query, as deployed:
docs/decisions/0057-events-query-role.md) beside the shared one (EVENTS_ROLE=all, which consumes
and answers), and asks both in turn, quiet and while ingesting, on the same load: the extra
ratios are the query process while ingesting over itself quiet and over the shared process
while ingesting. Every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, date, datetime, timedelta

import asyncpg
from events_posting import BATCH, TENANT, build_batches, latency_line, messages, post_all, sent_outcome
from harness import cpu_report, cpu_snapshot, machine, publish_all, ratio_line, running_suite, wait_for_count
from sqlalchemy.dialects import postgresql

from dripiq.events.v1 import events_service_pb2 as pb
from dripiq.events.v1 import events_service_pb2_grpc as pb_grpc
from dripiq_common.bus.contract import Subjects
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_events import repository
from dripiq_events.edge.app import EVENTS_PATH
from dripiq_events.partitions import MonthPartition
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

# The raw tables behind the rollups (--raw-events): GetTenantStats never reads them, but it runs
# in a database that holds them (shared buffers, OS cache, disk), as in production. Message `i`
# (0..M-1) is sent at first + i/M of the range, so rows go in roughly in time order as ingest
# stores them; it is step i % 5 of a campaign whose step 0 went out 3 days per step earlier.
# Tenants, products, senders and strategists are the ones the rollups above use (the big
# tenant ~18% of the messages). 20 provider events a message, in the rollups' proportions.
EVENTS_PER_MESSAGE = 20
RAW_CHUNK = 2_500_000
RAW_WORKERS = 2  # this machine's 2 cores: one statement each
# What a message is, from its number `i` and the number of messages `$3` (`$4`: first day,
# `$5`: days): the same expressions for outbound_messages and message_events.
_MESSAGE = f"""
    SELECT i, step, c,
           CASE WHEN c % 50 < 9 THEN '{BIG}' ELSE 'bench-t' || lpad((1 + c % 999)::text, 4, '0') END AS tenant_id,
           CASE WHEN c % 50 < 9 THEN 5 ELSE 2 END AS products,
           CASE WHEN c % 50 < 9 THEN 20 ELSE 3 END AS senders,
           CASE WHEN c % 50 < 9 THEN 3 ELSE 2 END AS strategists,
           'msg-' || lpad(to_hex(i), 16, '0') AS message_id,
           'cmp-' || lpad(to_hex(c), 12, '0') AS campaign_id,
           'contact-' || lpad(to_hex(c), 12, '0') AS contact_id,
           'person' || c || '@customer' || (c % 7919) || '.example.com' AS email,
           $4::timestamptz + (i::float8 * $5::int * 86400 / $3::bigint) * interval '1 second' AS sent_at
    FROM (SELECT i, i % 5 AS step,
                 ((i / 5 - i % 5 * ($3::bigint / 5 * 3 / $5::int)) % ($3::bigint / 5) + $3::bigint / 5)
                 % ($3::bigint / 5) AS c
          FROM generate_series($1::bigint, $2::bigint - 1) AS i) n
"""
_LOAD_OUTBOUND = f"""
INSERT INTO events.outbound_messages (message_id, tenant_id, campaign_id, step_index, contact_id, to_email, subject,
    provider_message_id, rfc_message_id, sent_at, seen, product_id, sender_identity_id, strategist, variant, channel,
    stats_day)
SELECT message_id, tenant_id, campaign_id, step, contact_id, email, 'A question about your ' || (c % 97) || ' shops',
       CASE WHEN step = 2 THEN NULL ELSE 'sg' || lpad(to_hex(i), 20, '0') END,
       CASE WHEN step = 2 THEN NULL ELSE '<' || message_id || '@dripiq.localhost>' END,
       sent_at, 7, 'product-' || (1 + c % products), 'sender-' || (1 + c / 7 % senders),
       (ARRAY['openai', 'template', 'request'])[1 + c / 11 % strategists], '',
       CASE WHEN step = 2 THEN 'linkedin' ELSE 'email' END, (sent_at AT TIME ZONE 'UTC')::date
FROM ({_MESSAGE}) m
"""
# Event k (0-19) of a message: processed, delivered, 12 opens (the first a machine's for 3 in
# 10 messages), 5 clicks, then one of reply / auto-reply / bounce / unsubscribe / deferred.
# The provider keeps its raw payload for raw_event_retention_days (30): older ones are compacted.
_LOAD_EVENTS = f"""
INSERT INTO events.message_events (tenant_id, provider, provider_event_id, event_type, message_id, campaign_id,
    step_index, contact_id, email, occurred_at, received_at, machine_open, url, reason, matched, raw_event)
SELECT tenant_id, CASE WHEN step = 2 THEN 'dripiq' ELSE 'sendgrid' END, event_id, event_type, message_id,
       campaign_id, step, contact_id, email, occurred_at, occurred_at + interval '4 seconds',
       k = 2 AND i % 10 < 3, CASE WHEN event_type = 'click' THEN 'https://shop.example.com/p/' || (i % 50) END,
       CASE WHEN event_type = 'bounce' THEN '550 5.1.1 The email account that you tried to reach does not exist' END,
       true,
       CASE WHEN occurred_at >= $6::timestamptz THEN format(
           '{{"email":"%s","timestamp":%s,"event":"%s","sg_event_id":"%s","sg_message_id":"sg%s.filter0001",'
           '"tenant_id":"%s","message_id":"%s","campaign_id":"%s","step_index":"%s"}}',
           email, extract(epoch FROM occurred_at)::bigint, event_type, event_id, lpad(to_hex(i), 20, '0'),
           tenant_id, message_id, campaign_id, step)::json END
FROM (
    SELECT m.*, e.k, 'ev' || lpad(to_hex(e.j), 20, '0') AS event_id,
           sent_at + (e.k * 1200 + e.j % 600) * interval '1 second' AS occurred_at,
           CASE WHEN e.k = 0 THEN 'processed' WHEN e.k = 1 THEN 'delivered' WHEN e.k < 14 THEN 'open'
                WHEN e.k < 19 THEN 'click' WHEN i % 100 < 6 THEN 'reply' WHEN i % 100 < 9 THEN 'auto_reply'
                WHEN i % 100 < 12 THEN 'bounce' WHEN i % 100 < 13 THEN 'unsubscribe' ELSE 'deferred' END AS event_type
    FROM ({_MESSAGE}) m
    CROSS JOIN LATERAL (SELECT m.i * {EVENTS_PER_MESSAGE} + k AS j, k
                        FROM generate_series(0, {EVENTS_PER_MESSAGE} - 1) AS k) e
) ev
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


async def load_raw(dsn: str, days: int, events: int, budget_seconds: float) -> None:
    """`events` rows of events.message_events and their messages in events.outbound_messages.

    Chunks of RAW_CHUNK events, RAW_WORKERS statements at a time; no chunk starts once
    `budget_seconds` have gone by, so the load stops by itself and says how far it got.
    """
    first = LAST_DAY - timedelta(days=days - 1)
    start = datetime.combine(first, datetime.min.time(), UTC)
    messages = -(-events // EVENTS_PER_MESSAGE)
    raw_from = datetime.combine(LAST_DAY - timedelta(days=29), datetime.min.time(), UTC)
    conns = [await asyncpg.connect(dsn) for _ in range(RAW_WORKERS)]
    conn = conns[0]
    try:
        # A month's events come in after its last sends: one partition past the last day too.
        last_month = LAST_DAY + timedelta(days=1)
        month, stop = (first.year, first.month), (last_month.year, last_month.month)
        for _ in range(24):  # bounded: at most two years of months
            begin = datetime(month[0], month[1], 1, tzinfo=UTC)
            end = datetime(month[0] + month[1] // 12, month[1] % 12 + 1, 1, tzinfo=UTC)
            await conn.execute(MonthPartition(f"message_events_{begin:%Y_%m}", begin, end).create_sql())
            if month == stop:
                break
            month = (end.year, end.month)
        # Checkpoints every 1 GB of WAL (the default) would write most pages twice during the load.
        await conn.execute("ALTER SYSTEM SET max_wal_size = '8GB'")
        await conn.execute("SELECT pg_reload_conf()")
        started = time.perf_counter()
        await conn.execute(_LOAD_OUTBOUND, 0, messages, messages, start, days)
        seconds = time.perf_counter() - started
        print(f"outbound_messages: {messages:,} rows in {seconds:.0f} s ({messages / seconds:,.0f} rows/s)", flush=True)

        per_chunk = RAW_CHUNK // EVENTS_PER_MESSAGE
        chunks = [(lo, min(lo + per_chunk, messages)) for lo in range(0, messages, per_chunk)]
        loaded = 0
        started = time.perf_counter()

        async def worker(conn: asyncpg.Connection) -> None:
            nonlocal loaded
            while chunks and time.perf_counter() - started < budget_seconds:
                lo, hi = chunks.pop(0)
                await conn.execute(_LOAD_EVENTS, lo, hi, messages, start, days, raw_from)
                loaded += (hi - lo) * EVENTS_PER_MESSAGE
                seconds = time.perf_counter() - started
                print(
                    f"message_events: {loaded:,} rows in {seconds:.0f} s ({loaded / seconds:,.0f} rows/s), "
                    f"up to message {hi:,}",
                    flush=True,
                )

        await asyncio.gather(*(worker(c) for c in conns))
        load_seconds = time.perf_counter() - started
        await conn.execute("ALTER SYSTEM RESET max_wal_size")
        await conn.execute("SELECT pg_reload_conf()")
        await conn.execute("CHECKPOINT")
        analyzed = time.perf_counter()
        await conn.execute("ANALYZE events.message_events")
        await conn.execute("ANALYZE events.outbound_messages")
        analyze_seconds = time.perf_counter() - analyzed
        stored, last = await conn.fetchrow("SELECT count(*), max(occurred_at) FROM events.message_events")
        events_size = await conn.fetchval(
            "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('events.message_events')"
        )
        outbound_size = await conn.fetchval("SELECT pg_total_relation_size('events.outbound_messages')")
        database_size = await conn.fetchval("SELECT pg_database_size(current_database())")
    finally:
        for c in conns:
            await c.close()
    skipped = "" if not chunks else f"; stopped by the {budget_seconds:.0f} s budget, {len(chunks)} chunks not loaded"
    print(
        f"loaded {stored:,} message_events rows in {load_seconds:.0f} s ({stored / load_seconds:,.0f} rows/s), "
        f"the last at {last:%Y-%m-%d %H:%M}{skipped}; ANALYZE {analyze_seconds:.0f} s\n"
        f"pg_total_relation_size: message_events {events_size / 2**30:,.1f} GiB, "
        f"outbound_messages {outbound_size / 2**30:,.1f} GiB; database {database_size / 2**30:,.1f} GiB",
        flush=True,
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


# Who is asked: the label printed and the port variable of its process.
Target = tuple[str, str]
SHARED: Target = ("shared process", "EVENTS_GRPC_PORT")


def targets_of(suite, query_process: bool) -> list[Target]:  # type: ignore[no-untyped-def]
    """The shared events process (the API beside the consumers), and with --query-process the
    query process (EVENTS_ROLE=query) on the events ports while the shared one keeps its own."""
    if not query_process:
        return [SHARED]
    return [("shared process", suite.port_env_of("events")), ("query process", "EVENTS_GRPC_PORT")]


def in_turn(targets: list[Target], round_number: int) -> list[Target]:
    """Each round the other one first, so neither always follows the other's call."""
    return targets if round_number % 2 == 0 else targets[::-1]


async def measure(suite, calls: int, days: int, targets: list[Target]) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    """The quiet figures of each target, asked in turn; each target's timed calls' seconds,
    sorted, for an anchor."""
    every: dict[str, list[float]] = {label: [] for label, _ in targets}
    firsts: list[tuple[str, str, float]] = []
    channels = {label: suite.channel(port_env) for label, port_env in targets}
    try:
        stubs = {label: pb_grpc.EventsServiceStub(channel) for label, channel in channels.items()}
        for name, request in cases(days):
            seconds: dict[str, list[float]] = {label: [] for label, _ in targets}
            answer = None
            for label, _ in targets:
                started = time.perf_counter()
                answer = await stubs[label].GetTenantStats(request, timeout=30)  # the first call after the load
                firsts.append((label, name, time.perf_counter() - started))
            for i in range(calls):
                for label, _ in in_turn(targets, i):
                    started = time.perf_counter()
                    await stubs[label].GetTenantStats(request, timeout=30)
                    seconds[label].append(time.perf_counter() - started)
            assert answer is not None
            sent = sum(r.counts.sent for r in answer.rows)
            for label, values in seconds.items():
                values.sort()
                every[label] += values
                print(
                    f"  {name:<42} {len(answer.rows):>4} rows, {sent:>9,} sent, {label}: "
                    f"p50 {ms(values, 0.5):5.1f} ms, p99 {ms(values, 0.99):5.1f} ms"
                )
    finally:
        for channel in channels.values():
            await channel.close()
    for label, values in every.items():
        values.sort()
        print(
            f"GetTenantStats over {len(values)} calls, {label}: p50 {ms(values, 0.5):.1f} ms, "
            f"p99 {ms(values, 0.99):.1f} ms"
        )
    print("first call of each case after the load (the run's first also connects):")
    for label, name, seconds_taken in firsts:
        print(f"  {name:<42} {label}: {seconds_taken * 1000:7.1f} ms")
    return every


async def measure_while_ingesting(  # type: ignore[no-untyped-def]
    suite, days: int, batches: int, concurrency: int, quiet: dict[str, list[float]], targets: list[Target]
) -> None:
    """The same cases, one call of each to each target in turn, while the edge takes `batches`
    webhook batches."""
    dsn = suite.env["DATABASE_URL"]
    fake = FakeSendGrid(private_key_pem=(suite.run_dir / "fake-sendgrid-key.pem").read_bytes())
    nc = await suite.nats_connect(pending_size=256 * 1024 * 1024)
    channels = {label: suite.channel(port_env) for label, port_env in targets}
    try:
        sent = messages(50_000, 1000)
        await publish_all(
            nc.jetstream(), Subjects.message_outcome(TENANT), ((f"sent-{m.message_id}", sent_outcome(m)) for m in sent)
        )
        known, _ = await wait_for_count(
            dsn,
            f"SELECT count(*) FROM events.outbound_messages WHERE tenant_id = '{TENANT}'",
            len(sent),
            limit_seconds=300,
            poll_seconds=0.5,
        )
        bodies, _ = build_batches(sent, batches, fake)
        stored_query = f"SELECT count(*) FROM events.message_events WHERE tenant_id = '{TENANT}'"
        rows_before = await _count(dsn, stored_query)
        target = rows_before + batches * BATCH
        url = f"http://127.0.0.1:{suite.port('EDGE_PORT')}{EVENTS_PATH}"
        stubs = {label: pb_grpc.EventsServiceStub(channel) for label, channel in channels.items()}
        cpu_before = cpu_snapshot(suite)
        started = time.perf_counter()
        posting = asyncio.create_task(post_all(url, fake, bodies, concurrency, 0.0))
        loaded: dict[str, dict[str, list[float]]] = {label: {} for label, _ in targets}
        stored = rows_before
        # Until the events service has stored every posted event (the edge answers once
        # JetStream holds a batch, before it is stored); bounded by a round count and 600 s.
        for round_number in range(100_000):
            if posting.done() and stored >= target or time.perf_counter() - started > 600:
                break
            for name, request in cases(days):
                for label, _ in in_turn(targets, round_number):
                    begun = time.perf_counter()
                    await stubs[label].GetTenantStats(request, timeout=30)
                    loaded[label].setdefault(name, []).append(time.perf_counter() - begun)
            stored = await _count(dsn, stored_query)
        seconds = time.perf_counter() - started
        cpu_after = cpu_snapshot(suite)
        posts = await posting
        stored -= rows_before
    finally:
        for channel in channels.values():
            await channel.close()
        await nc.close()
    print(
        f"while the suite took {batches} batches of {BATCH:,} events ({known:,} messages known): "
        f"{stored:,} events stored in {seconds:.1f} s, {stored / seconds:,.0f}/s:"
    )
    print(f"  {latency_line(posts)}")
    print(f"  {cpu_report(cpu_before, cpu_after)}")
    every: dict[str, list[float]] = {}
    for label, by_case in loaded.items():
        every[label] = []
        for name, values in by_case.items():
            values.sort()
            every[label] += values
            print(
                f"  {name:<42} {len(values):>4} calls, {label}: "
                f"p50 {ms(values, 0.5):5.1f} ms, p99 {ms(values, 0.99):5.1f} ms"
            )
        every[label].sort()
    if not any(every.values()):
        print("no call finished while the posts lasted")
        return
    for label, values in every.items():
        print(
            f"GetTenantStats while ingesting, {label}, {len(values)} calls: "
            f"p50 {ms(values, 0.5):.1f} ms, p99 {ms(values, 0.99):.1f} ms"
        )
    shared = every[SHARED[0]]
    for share, name in ((0.5, "p50"), (0.99, "p99")):
        print(
            ratio_line(
                f"GetTenantStats {name} us while ingesting",
                ms(shared, share) * 1000,
                ms(quiet[SHARED[0]], share) * 1000,
                "quiet",
                lower_is_better=True,
            )
        )
    if "query process" not in every:
        return
    query = every["query process"]
    for share, name in ((0.5, "p50"), (0.99, "p99")):
        print(
            ratio_line(
                f"GetTenantStats {name} us, query process while ingesting",
                ms(query, share) * 1000,
                ms(quiet["query process"], share) * 1000,
                "query process quiet",
                lower_is_better=True,
            )
        )
        print(
            ratio_line(
                f"GetTenantStats {name} us, query process while ingesting",
                ms(query, share) * 1000,
                ms(shared, share) * 1000,
                "shared process while ingesting",
                lower_is_better=True,
            )
        )


async def _count(dsn: str, query: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(query))
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20, help="timed calls per case")
    parser.add_argument("--days", type=int, default=90, help="days of rollups loaded (1-366)")
    parser.add_argument(
        "--raw-events", type=int, default=0, help="also store this many raw events and their messages (0: none)"
    )
    parser.add_argument(
        "--raw-seconds", type=float, default=1200, help="no chunk of raw events starts after this many seconds"
    )
    parser.add_argument("--explain", action="store_true", help="print the plans of the big tenant's widest questions")
    parser.add_argument(
        "--ingest-batches", type=int, default=0, help="then ask again while ingesting this many batches (0: no)"
    )
    parser.add_argument("--ingest-concurrency", type=int, default=8, help="webhook POSTs in flight at once")
    parser.add_argument(
        "--query-process",
        action="store_true",
        help="also run an events query process (EVENTS_ROLE=query) and ask it and the shared one in turn",
    )
    args = parser.parse_args()
    if not 1 <= args.days <= 366 or not 1 <= args.calls <= 10_000:
        parser.error("--days must be 1-366 and --calls 1-10000")
    if not 0 <= args.raw_events <= 1_000_000_000 or (args.raw_events and args.days < 30):
        parser.error("--raw-events must be 0-1000000000, with --days of at least 30")
    if not 0 <= args.ingest_batches <= 2000 or not 1 <= args.ingest_concurrency <= 64:
        parser.error("--ingest-batches must be 0-2000 and --ingest-concurrency 1-64")
    print(machine())
    with running_suite(events_ingest_role="all" if args.query_process else None) as suite:
        targets = targets_of(suite, args.query_process)
        asyncio.run(load(suite.env["DATABASE_URL"], args.days, explain=args.explain))
        if args.raw_events:
            asyncio.run(load_raw(suite.env["DATABASE_URL"], args.days, args.raw_events, args.raw_seconds))
        quiet = asyncio.run(measure(suite, args.calls, args.days, targets))
        if args.ingest_batches:
            asyncio.run(
                measure_while_ingesting(suite, args.days, args.ingest_batches, args.ingest_concurrency, quiet, targets)
            )


if __name__ == "__main__":
    main()
