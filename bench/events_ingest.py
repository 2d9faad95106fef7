"""Events ingested per second end to end: signed SendGrid batches posted to the edge until their
engagement facts are published, and a replay of the same batches that must add nothing.

    .venv/bin/python bench/events_ingest.py [--batches 200] [--concurrency 8] [--messages 50000]
    .venv/bin/python bench/events_ingest.py --rate 20000 --batches 1000   # paced: does it keep up?

Runs the whole suite (the edge, the events service and everything else on the same cores).
The anchor comes first, on the suite's own PostgreSQL server: the same rows stored by bare
PostgreSQL (bench/events_bare.py: a staging COPY and one INSERT … ON CONFLICT DO NOTHING per
1,000 rows); an unpaced run prints its events stored/s over that anchor (target ≥ 0.75×), and
every run the edge's p99 per 1,000-event batch (target < 250 ms).
First the events service learns the messages: one SENT `MessageOutcome` per message is
published onto `dripiq.dispatcher.outcome.<tenant>` (its `events-outcomes` consumer keeps them
in `events.outbound_messages`), and the benchmark waits until the table holds them all. Then
it builds --batches Event Webhook batches of 1,000 events each (delivered, open, some of them
machine opens, click, bounce) shaped as `fake_sendgrid.build_event` shapes them: custom args at
the top level, `sg_message_id` the send's X-Message-Id plus SendGrid's filter suffix, a unique
`sg_event_id` each. Every batch is signed with the suite's fake SendGrid key just before it is
posted (the edge only takes timestamps inside its tolerance), by --concurrency posters at once
(as fast as the edge answers, or paced with --rate). The clock runs from the first POST until
the engagement fact of every event has been published, watched with a plain NATS subscription
on `dripiq.events.engagement.<tenant>.>` so no table is queried under load. Each POST's latency
is recorded (the edge answers once JetStream holds the batch). A paced run also prints how far
behind the offer the last fact was published: a run that keeps up ends one delivery's latency
after the offer, so "behind the offer" (not the rate, which that latency caps just under the
offer) tells whether the rate is sustained.

Then the same batches are posted again, re-signed with a fresh timestamp (so the edge's own
dedupe on signature + body does not catch them and the events service sees every event a second
time); once its webhook consumer has nothing pending, the rows and facts must not have grown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import asyncpg
from events_bare import bare_postgres, bare_rows
from events_posting import BATCH, TENANT, build_batches, latency_line, messages, post_all, sent_outcome
from harness import (
    cpu_report,
    cpu_snapshot,
    machine,
    outside_processes,
    percentile,
    publish_all,
    ratio_line,
    running_suite,
    wait_for_count,
)

from dripiq.events.v1 import events_service_pb2 as events_api
from dripiq.events.v1 import events_service_pb2_grpc as events_grpc
from dripiq.events.v1 import messages_pb2 as events_pb
from dripiq_common.bus.contract import Streams, Subjects
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_events.edge.app import EVENTS_PATH

WEBHOOK_CONSUMER = "events-webhooks"
ROWS_QUERY = "SELECT count(*) FROM events.message_events WHERE tenant_id = $1"
UNMATCHED_QUERY = "SELECT count(*) FROM events.message_events WHERE NOT matched"
OUTBOX_QUERY = "SELECT count(*) FROM events.outbox"


class EngagementFacts:
    """Counts engagement facts as the events outbox publishes them (core NATS, no consumer)."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.facts = 0
        self.by_type: Counter[str] = Counter()
        self.target = 0
        self.done = asyncio.Event()

    async def on_msg(self, msg) -> None:  # type: ignore[no-untyped-def]
        for fact in events_pb.EngagementBatch.FromString(msg.data).events:
            self.facts += 1
            self.by_type[fact.event_type] += 1
            self.ids.add(fact.event_id)
        if len(self.ids) >= self.target:
            self.done.set()


async def webhooks_drained(js, *, limit_seconds: float) -> tuple[bool, float]:  # type: ignore[no-untyped-def]
    """Wait until the events service's webhook consumer has every posted batch handled and acked."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_seconds:
        info = await js.consumer_info(Streams.EDGE_WEBHOOKS.name, WEBHOOK_CONSUMER)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return True, time.perf_counter() - started
        await asyncio.sleep(0.1)
    return False, time.perf_counter() - started


async def counts(dsn: str) -> tuple[int, int, int]:
    """(rows of the tenant, unmatched rows of anyone, engagement facts still in the outbox)."""
    conn = await asyncpg.connect(dsn)
    try:
        return (
            await conn.fetchval(ROWS_QUERY, TENANT),
            await conn.fetchval(UNMATCHED_QUERY),
            await conn.fetchval(OUTBOX_QUERY),
        )
    finally:
        await conn.close()


TABLE_WRITES_QUERY = """
SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del
FROM pg_stat_user_tables WHERE schemaname = 'events' AND n_tup_ins + n_tup_upd + n_tup_del > 0
ORDER BY n_tup_ins + n_tup_upd + n_tup_del DESC
"""


async def table_writes(dsn: str) -> dict[str, tuple[int, int, int, int]]:
    """Rows inserted, updated, updated in place (HOT: no index touched) and deleted, by table."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(TABLE_WRITES_QUERY)
    finally:
        await conn.close()
    return {r["relname"]: (r["n_tup_ins"], r["n_tup_upd"], r["n_tup_hot_upd"], r["n_tup_del"]) for r in rows}


def writes_line(before: dict[str, tuple[int, int, int, int]], after: dict[str, tuple[int, int, int, int]]) -> str:
    parts = []
    for table, (ins, upd, hot, dele) in after.items():
        b_ins, b_upd, b_hot, b_del = before.get(table, (0, 0, 0, 0))
        ins, upd, hot, dele = ins - b_ins, upd - b_upd, hot - b_hot, dele - b_del
        if ins or upd or dele:
            hot_share = f" ({100 * hot / upd:.0f}% in place)" if upd else ""
            parts.append(f"{table} +{ins:,} ins, {upd:,} upd{hot_share}, {dele:,} del")
    return "table writes (statistics, may lag by a second): " + ("; ".join(parts) or "none")


async def sample(facts: EngagementFacts, every: float, into: list[tuple[float, int]]) -> None:
    """(seconds, facts so far) every `every` seconds until cancelled."""
    started = time.perf_counter()
    while True:
        await asyncio.sleep(every)
        into.append((time.perf_counter() - started, len(facts.ids)))


PROFILED = ("events", "edge")
STATEMENTS_QUERY = """
SELECT calls, rows, total_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 150) AS query
FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT $1
"""


async def statements_on(suite) -> None:  # type: ignore[no-untyped-def]
    """Restart the suite's PostgreSQL with per-statement statistics (the processes reconnect)."""
    conn = await asyncpg.connect(suite.env["DATABASE_URL"])
    try:
        await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    finally:
        await conn.close()
    suite.stop_postgres()
    suite.start_postgres()
    conn = await asyncpg.connect(suite.env["DATABASE_URL"])
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await conn.close()
    await asyncio.sleep(5)


async def statements(dsn: str, *, reset: bool = False, top: int = 15) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        if reset:
            await conn.execute("SELECT pg_stat_statements_reset()")
            return
        rows = await conn.fetch(STATEMENTS_QUERY, top)
    finally:
        await conn.close()
    print("PostgreSQL statements by total time (pg_stat_statements):")
    for r in rows:
        print(f"  {r['total_exec_time']:9.0f} ms {r['calls']:>8,} calls {r['rows']:>10,} rows  {r['query']}")


def start_profilers(suite, into: Path) -> list[subprocess.Popen[bytes]]:  # type: ignore[no-untyped-def]
    """py-spy on the events and edge processes until stopped (collapsed stacks, one file each)."""
    into.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    return [
        subprocess.Popen(
            [spy, "record", "--nonblocking", "-r", "200", "-f", "raw", "-o", str(into / f"{name}.txt")]
            + ["--pid", str(suite.children[name].pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in PROFILED
    ]


def stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    for p in profilers:
        p.send_signal(signal.SIGINT)
    for p in profilers:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


async def run(suite, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    dsn = suite.env["DATABASE_URL"]
    total = args.batches * BATCH
    fake = FakeSendGrid(private_key_pem=(suite.run_dir / "fake-sendgrid-key.pem").read_bytes())
    if fake.public_key_base64 != suite.env["SENDGRID_WEBHOOK_PUBLIC_KEY"]:
        raise RuntimeError("the fake's key file does not match the edge's configured public key")
    url = f"http://127.0.0.1:{suite.port('EDGE_PORT')}{EVENTS_PATH}"

    if args.pg_statements:
        await statements_on(suite)
    nc = await suite.nats_connect(pending_size=256 * 1024 * 1024)
    js = nc.jetstream()

    # The messages the events arrive for, known to the events service as the dispatcher's outcomes.
    sent = messages(args.messages, args.campaigns)
    started = time.perf_counter()
    await publish_all(js, Subjects.message_outcome(TENANT), ((f"sent-{m.message_id}", sent_outcome(m)) for m in sent))
    known, _ = await wait_for_count(
        dsn,
        f"SELECT count(*) FROM events.outbound_messages WHERE tenant_id = '{TENANT}'",
        args.messages,
        limit_seconds=max(120, args.messages / 200),
        poll_seconds=0.5,
    )
    print(
        f"{known:,} of {args.messages:,} sent messages known to the events service in {time.perf_counter() - started:.1f} s"
    )
    if known < args.messages:
        print("not every message arrived: events for the missing ones are correlated by their custom args alone")

    started = time.perf_counter()
    bodies, kinds = build_batches(sent, args.batches, fake)
    sizes = [len(b) for b in bodies]
    print(
        f"{args.batches} batches of {BATCH:,} events built in {time.perf_counter() - started:.1f} s "
        f"({', '.join(f'{k} {v:,}' for k, v in kinds.most_common())}); "
        f"body {min(sizes) / 1024:.0f}–{max(sizes) / 1024:.0f} KiB"
    )

    # The anchor, on the same server, before the suite stores anything of the run.
    contacts = {m.message_id: m.contact_id for m in sent}
    bare_rate, bare_stored = await bare_postgres(
        dsn, bare_rows(bodies, contacts), batch=BATCH, connections=args.bare_connections
    )
    print(
        f"bare PostgreSQL (staging COPY + INSERT ... ON CONFLICT DO NOTHING, {BATCH:,} rows a transaction, "
        f"{args.bare_connections} connection(s)): {bare_stored:,} rows in {bare_stored / bare_rate:.1f} s, "
        f"{bare_rate:,.0f} rows/s"
    )

    facts = EngagementFacts()
    facts.target = total
    await nc.subscribe(
        f"dripiq.events.engagement.{TENANT}.>",
        cb=facts.on_msg,
        pending_msgs_limit=10_000_000,
        pending_bytes_limit=1024 * 1024 * 1024,
    )
    samples: list[tuple[float, int]] = []
    sampler = asyncio.create_task(sample(facts, args.sample_seconds, samples))
    writes_before = await table_writes(dsn)
    if args.pg_statements:
        await statements(dsn, reset=True)
    profilers = start_profilers(suite, args.profile) if args.profile else []
    before = cpu_snapshot(suite)
    started = time.perf_counter()
    posts = await post_all(url, fake, bodies, args.concurrency, args.rate)
    posted = posts.finished - started
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(facts.done.wait(), timeout=args.timeout)
    waited = time.perf_counter() - started
    after = cpu_snapshot(suite)
    stop_profilers(profilers)
    cpu = f"{cpu_report(before, after)}; outside these processes {outside_processes(before, after):.0f}%"
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    published = len(facts.ids)
    if published < total:
        print(f"timed out after {args.timeout:.0f} s with {published:,} of {total:,} engagement facts published")
    drained, _ = await webhooks_drained(js, limit_seconds=60)
    await asyncio.sleep(args.settle_seconds)
    rows, unmatched, outboxed = await counts(dsn)
    writes_after = await table_writes(dsn)

    print(cpu)
    print(writes_line(writes_before, writes_after))
    if args.pg_statements:
        await statements(dsn)
    for (t0, n0), (t1, n1) in zip([(0.0, 0), *samples], samples, strict=False):
        print(f"  {t1:6.1f} s: {n1:>9,} facts published, {(n1 - n0) / (t1 - t0):8,.0f} events/s")
    print(
        f"{total:,} events in {args.batches} signed batches posted by {args.concurrency} posters"
        + (f" paced at {args.rate:,.0f} events/s" if args.rate > 0 else " as fast as the edge answered")
        + f" in {posted:.1f} s ({total / posted:,.0f} events/s accepted by the edge)"
    )
    print(latency_line(posts))
    print(
        f"end to end (first POST -> last engagement fact published): {published:,} facts in {waited:.1f} s, "
        f"{published / waited:,.0f} events/s"
    )
    if args.rate <= 0:
        print(ratio_line("events stored/s", published / waited, bare_rate, "bare PostgreSQL", 0.75))
    if posts.latencies:
        p99 = 1000 * percentile(posts.latencies, 0.99)
        print(f"edge p99 per {BATCH:,}-event batch: {p99:.0f} ms (target < 250 ms) {'met' if p99 < 250 else 'MISSED'}")
    if args.rate > 0:
        # Even a system with no backlog finishes one batch's own latency after the offer ends.
        print(
            f"behind the offer when the last fact was published: {waited - total / args.rate:.2f} s "
            f"(the offer ended {total / args.rate:.1f} s after the first POST)"
        )
    print(
        f"stored: {rows:,} rows in events.message_events for the tenant (unmatched anywhere: {unmatched:,}); "
        f"engagement facts {facts.facts:,} ({published:,} distinct, "
        f"{', '.join(f'{k} {v:,}' for k, v in facts.by_type.most_common())}); "
        f"outbox left {outboxed:,}; webhook consumer drained: {drained}"
    )

    # Replay: the same events again, freshly signed. Nothing may be stored or published twice.
    facts_before = facts.facts
    started = time.perf_counter()
    replay = await post_all(url, fake, bodies, args.concurrency, args.rate)
    drained, _ = await webhooks_drained(js, limit_seconds=args.timeout)
    replayed = time.perf_counter() - started
    await asyncio.sleep(args.settle_seconds)
    rows_after, unmatched_after, outboxed_after = await counts(dsn)
    print(
        f"replay: {total:,} events posted again in {replay.finished - replay.started:.1f} s, all handled "
        f"(webhook consumer drained: {drained}) {replayed:.1f} s after the first POST "
        f"({total / replayed:,.0f} events/s); {latency_line(replay)}"
    )
    print(
        f"replay added {rows_after - rows:,} rows ({unmatched_after - unmatched:,} unmatched) and "
        f"{facts.facts - facts_before:,} engagement facts; outbox left {outboxed_after:,}"
    )
    await nc.close()
    await time_step_funnel(suite, dsn)


async def time_step_funnel(suite, dsn: str, calls: int = 200) -> None:  # type: ignore[no-untyped-def]
    """GetStepFunnel over gRPC for the campaign with the most stored events, `calls` times."""
    conn = await asyncpg.connect(dsn)
    try:
        campaign_id, events = await conn.fetchrow(
            "SELECT campaign_id, count(*) FROM events.message_events WHERE tenant_id = $1 "
            "GROUP BY campaign_id ORDER BY count(*) DESC LIMIT 1",
            TENANT,
        )
    finally:
        await conn.close()
    request = events_api.GetStepFunnelRequest(tenant_id=TENANT, campaign_id=campaign_id)
    async with suite.channel("EVENTS_GRPC_PORT") as channel:
        stub = events_grpc.EventsServiceStub(channel)
        funnel = await stub.GetStepFunnel(request, timeout=10)
        seconds = []
        for _ in range(calls):
            started = time.perf_counter()
            await stub.GetStepFunnel(request, timeout=10)
            seconds.append(time.perf_counter() - started)
    seconds.sort()
    total = Counter[str]()
    for step in funnel.steps:
        total.update({"sent": step.counts.sent, "delivered": step.counts.delivered, "clicks": step.counts.click_events})
        total.update({"human opens": step.counts.human_open_events, "bounces": step.counts.bounces})
    print(
        f"GetStepFunnel for {campaign_id} ({events:,} stored events; {len(funnel.steps)} steps; "
        f"{', '.join(f'{k} {v:,}' for k, v in total.items())}): p50 {seconds[len(seconds) // 2] * 1000:.1f} ms, "
        f"p99 {seconds[int(len(seconds) * 0.99) - 1] * 1000:.1f} ms over {calls} calls"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=200, help=f"signed batches of {BATCH:,} events")
    parser.add_argument("--concurrency", type=int, default=8, help="POSTs in flight at once")
    parser.add_argument("--messages", type=int, default=50_000, help="sent messages the events belong to")
    parser.add_argument("--campaigns", type=int, default=1000, help="campaigns the messages belong to")
    parser.add_argument("--rate", type=float, default=0.0, help="offered events/s (0: as fast as the edge answers)")
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="progress every so often")
    parser.add_argument("--settle-seconds", type=float, default=3.0, help="wait for late facts before counting")
    parser.add_argument("--timeout", type=float, help="seconds to wait for every fact (default: scales with N)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="a setting for the suite's processes"
    )
    parser.add_argument("--replicas", type=int, default=1, help="events processes sharing the webhook consumer")
    parser.add_argument("--profile", type=Path, help="py-spy the events and edge processes into this folder")
    parser.add_argument(
        "--pg-statements", action="store_true", help="print PostgreSQL's statements by time (pg_stat_statements)"
    )
    parser.add_argument(
        "--bare-connections", type=int, default=1, help="connections storing the bare PostgreSQL anchor's rows"
    )
    args = parser.parse_args()
    if args.timeout is None:
        args.timeout = max(120.0, args.batches * BATCH / 500)
    print(f"machine: {machine()}")
    env = dict(item.split("=", 1) for item in args.env)
    with running_suite({"events": args.replicas}, **env) as suite:
        asyncio.run(run(suite, args))


if __name__ == "__main__":
    main()
