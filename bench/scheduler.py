"""The scheduler beside BullMQ (and arq, for information), each figure a pair measured in one run.

    flock /tmp/dripiq-bench.lock .venv/bin/python bench/scheduler.py [--n 100000]
        [--steady-rates 2500 5000 10000 20000] [--steady-seconds 10] [--arq-n 10000]
        [--pg-stats] [--profile DIR] [--pending 0]

The peers run first, each against its own fresh redis-server (bench/peers/), then PostgreSQL,
NATS and one scheduler process start (nothing consumes the target stream but the benchmark),
and the same workloads run through the scheduler's gRPC API and JetStream:
  enqueue   N timers an hour out, 1,000 a call, one call in flight (BullMQ: addBulk of 1,000)
  cancel    the same N by key, 1,000 a call, one call in flight (BullMQ: 1,000 removes at a time)
  drain     N timers due at one moment, all stored before it: N / (last fired - that moment)
  steady    timers due at a steady rate for --steady-seconds: p99 of stream time - fire_at.
            BullMQ is tried at each rate (ascending) until its p99 reaches 1 s; dripiq runs at
            the highest rate BullMQ sustained.
Prints the figures, then one ratio line per target (dripiq / BullMQ; arq's as information).
--pg-stats loads pg_stat_statements and prints the costliest statements per workload;
--profile DIR records the scheduler process with py-spy per workload (collapsed stacks).
--cancel-storage measures PostgreSQL alone instead: N cancels of 1,000 keys on a table of
--cancel-rows timers, under today's schema and under the designs a cheaper cancel could take.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
import nats
from harness import machine, ratio_line
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from peers.run_peers import lead_seconds, run_pairs

from dripiq.planner.v1 import timers_pb2
from dripiq.scheduler.v1 import scheduler_service_pb2 as pb
from dripiq.scheduler.v1 import scheduler_service_pb2_grpc as pb_grpc
from dripiq_common import migrations
from dripiq_common.bus.client import ensure_streams
from dripiq_common.bus.contract import Streams, Subjects
from dripiq_devtools.servers import EmbeddedNats, EmbeddedPostgres, free_port

TENANT = "bench-timers"
SUBJECT = Subjects.planner_timer(TENANT)
PEER_BATCH = 1000  # BullMQ's addBulk and remove batches in bench/peers, and ours in the pairs
BEST_BATCH = 10_000  # the API's largest batch, two callers: the scheduler's own ceiling
TARGETS = {"enqueue": 1.5, "drain": 2.5, "cancel": 3.0}
P99_TARGET_MS = 250.0


def payload(key: str) -> bytes:
    """What the planner stores with a step timer, one campaign per timer: the scheduler checks
    each payload is one of its target's, for the timer's tenant."""
    return timers_pb2.PlannerTimer(
        tenant_id=TENANT, campaign_id=f"campaign-{key}", step_due=timers_pb2.StepDue(step_index=0, schedule_version=1)
    ).SerializeToString()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def scheduler_stack(pg_stats: bool = False):  # type: ignore[no-untyped-def]
    root = Path(tempfile.mkdtemp(prefix="dripiq-bench-sched-"))
    pg = EmbeddedPostgres(root / "pg", temporary=True).start()
    nats_server = EmbeddedNats(root / "nats").start()
    process = None
    try:
        if pg_stats:
            enable_pg_stats(pg)
        migrations.upgrade("scheduler", pg.url)
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": pg.url,
            "NATS_URL": nats_server.url,
            "SCHEDULER_GRPC_PORT": str(port),
            "SCHEDULER_METRICS_PORT": "0",
            "LOG_LEVEL": "WARNING",
            "SCHEDULER_POLL_SECONDS": "0.05",
            # The scheduler alone, measured against BullMQ: plaintext, no tokens.
            "DRIPIQ_DEV_INSECURE": "true",
            **{k: v for k, v in os.environ.items() if k.startswith("SCHEDULER_")},
        }
        log = open(root / "scheduler.log", "wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "dripiq_scheduler"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            while time.monotonic() < deadline:
                try:
                    grpc.channel_ready_future(ch).result(timeout=1)
                    break
                except grpc.FutureTimeoutError:
                    if process.poll() is not None:
                        raise RuntimeError((root / "scheduler.log").read_text()[-3000:]) from None
        yield {"pg": pg, "nats": nats_server, "port": port, "pid": process.pid}
    finally:
        if process and process.poll() is None:
            process.terminate()
            process.wait(30)
        nats_server.stop()
        pg.close()
        shutil.rmtree(root, ignore_errors=True)


def enable_pg_stats(pg: EmbeddedPostgres) -> None:
    """pg_stat_statements for this benchmark's server only: preload it, restart, create it."""

    async def alter() -> None:
        conn = await asyncpg.connect(pg.url)
        await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        await conn.execute("ALTER SYSTEM SET pg_stat_statements.track = 'all'")
        await conn.close()

    async def create() -> None:
        conn = await asyncpg.connect(pg.url)
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.close()

    asyncio.run(alter())
    pg.stop()
    pg.start()
    asyncio.run(create())


async def pg_stats_reset(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    await conn.execute("SELECT pg_stat_statements_reset()")
    await conn.close()


async def pg_stats_top(pg_url: str, limit: int = 6) -> str:
    conn = await asyncpg.connect(pg_url)
    rows = await conn.fetch(
        """SELECT calls, rows, total_exec_time, mean_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS q
           FROM pg_stat_statements WHERE query NOT ILIKE '%pg_stat_statements%'
           ORDER BY total_exec_time DESC LIMIT $1""",
        limit,
    )
    await conn.close()
    return "\n".join(
        f"    {r['total_exec_time']:9.0f} ms  {r['calls']:6} calls  {r['rows']:8} rows  "
        f"{r['mean_exec_time']:8.2f} ms/call  {r['q']}"
        for r in rows
    )


@contextmanager
def observed(stack: dict, args: argparse.Namespace, name: str):  # type: ignore[no-untyped-def]
    """py-spy on the scheduler process for one workload."""
    spy = None
    if args.profile:
        out = Path(args.profile) / f"{name}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        spy = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(stack["pid"]), "--format", "raw"]
            + ["--rate", "200", "--nonblocking", "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        yield
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)


def timer(key: str, fire_at: datetime, group: str = "bench") -> pb.Timer:
    t = pb.Timer(
        tenant_id=TENANT,
        key=key,
        group_key=group,
        kind="bench",
        target=pb.TIMER_TARGET_PLANNER_TIMER,
        payload=payload(key),
    )
    t.fire_at.FromDatetime(fire_at)
    return t


async def schedule_all(port: int, timers: list[pb.Timer], *, batch: int, callers: int) -> float:
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(0, len(timers), batch):
        queue.put_nowait(timers[i : i + batch])

    async def caller() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.SchedulerServiceStub(ch)
            while not queue.empty():
                await stub.BatchScheduleTimers(
                    pb.BatchScheduleTimersRequest(tenant_id=TENANT, timers=queue.get_nowait()), timeout=300
                )

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return len(timers) / (time.perf_counter() - started)


async def cancel_all(port: int, keys: list[str], *, batch: int, callers: int) -> float:
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(0, len(keys), batch):
        queue.put_nowait(keys[i : i + batch])
    canceled = 0

    async def caller() -> None:
        nonlocal canceled
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.SchedulerServiceStub(ch)
            while not queue.empty():
                answer = await stub.BatchCancelTimers(
                    pb.BatchCancelTimersRequest(tenant_id=TENANT, keys=queue.get_nowait()), timeout=300
                )
                canceled += answer.canceled_count

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    assert canceled == len(keys), f"canceled {canceled} of {len(keys)}"
    return len(keys) / (time.perf_counter() - started)


async def collect(nats_url: str, expected: int, limit_seconds: float, prefix: str) -> list[float]:
    """Read what fired off the stream; lateness = stream time - fire_at, seconds. Bounded."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js, Streams.all())
    durable = f"bench-{int(time.time() * 1000)}"
    await js.add_consumer(
        "PLANNER_TIMERS",
        ConsumerConfig(
            durable_name=durable,
            filter_subject=SUBJECT,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=100_000,
        ),
    )
    sub = await js.pull_subscribe_bind(durable=durable, stream="PLANNER_TIMERS")
    lateness: list[float] = []
    keys: set[str] = set()
    deadline = time.monotonic() + limit_seconds
    while len(lateness) < expected and time.monotonic() < deadline:
        try:
            msgs = await sub.fetch(5000, timeout=1)
        except (nats.errors.TimeoutError, TimeoutError):
            continue
        for msg in msgs:
            await msg.ack()
            if not msg.headers["Dripiq-Timer-Key"].startswith(prefix):
                continue
            fire_at = datetime.fromisoformat(msg.headers["Dripiq-Fire-At"])
            lateness.append((msg.metadata.timestamp - fire_at).total_seconds())
            keys.add(msg.headers["Dripiq-Timer-Key"])
    await nc.flush()  # every ack reaches the server before the consumer goes
    await sub.unsubscribe()
    await js.delete_consumer("PLANNER_TIMERS", durable)
    await nc.close()
    if len(keys) != len(lateness):
        print(f"  duplicates on the stream: {len(lateness) - len(keys)}")
    return lateness


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


async def due_run(stack: dict, prefix: str, n: int, rate: float, lead: float) -> dict:
    """Timer i due at first + i / rate (all at first when rate is 0), all stored before the
    first falls due, 1,000 a call as the peers add them; lateness off the stream."""
    first = datetime.now(UTC) + timedelta(seconds=lead)
    timers = [timer(f"{prefix}{i}", first + timedelta(seconds=i / rate if rate else 0)) for i in range(n)]
    await schedule_all(stack["port"], timers, batch=PEER_BATCH, callers=1)
    if datetime.now(UTC) > first:
        print(f"  {prefix}: the first timers fell due before all were stored")
    wait = (first - datetime.now(UTC)).total_seconds() + n / rate if rate else lead
    lateness = await collect(stack["nats"].url, n, limit_seconds=wait + 300, prefix=prefix)
    return {
        "fired": len(lateness),
        "drain_per_s": len(lateness) / max(max(lateness), 1e-6),
        "p50_ms": pct(lateness, 0.5) * 1000,
        "p99_ms": pct(lateness, 0.99) * 1000,
        "max_ms": max(lateness) * 1000,
    }


async def table_bytes(pg_url: str) -> int:
    conn = await asyncpg.connect(pg_url)
    try:
        return int(await conn.fetchval("SELECT pg_total_relation_size('scheduler.timers')"))
    finally:
        await conn.close()


async def bulk_pending(pg_url: str, count: int) -> float:
    """Store `count` pending timers a year out straight in SQL: fast, and the same rows the
    API writes (this measures holding them, not writing them)."""
    conn = await asyncpg.connect(pg_url)
    started = time.perf_counter()
    for start in range(0, count, 1_000_000):
        size = min(1_000_000, count - start)
        await conn.execute(
            """INSERT INTO scheduler.timers (tenant_id, key, group_key, kind, scheduled_for, target, target_subject, payload)
               SELECT $1, 'pending-' || g, 'campaign:' || (g / 10), 'step_due',
                      now() + interval '365 days' + (g % 86400) * interval '1 second', 'planner_timer', $2, $5
               FROM generate_series($3::bigint, $4::bigint) AS g""",
            TENANT,
            SUBJECT,
            start,
            start + size - 1,
            payload("pending"),
        )
    await conn.execute("ANALYZE scheduler.timers")
    seconds = time.perf_counter() - started
    await conn.close()
    return seconds


def measure(args: argparse.Namespace, steady_rate: int) -> dict:
    """dripiq's side of every pair, one workload after the other on one scheduler process."""
    with scheduler_stack(pg_stats=args.pg_stats) as stack:
        pid, pg_url = stack["pid"], stack["pg"].url
        r: dict = {"rss_start_mib": rss_mib(pid), "pg": {}}

        def phase(name: str, work):  # type: ignore[no-untyped-def]
            if args.pg_stats:
                asyncio.run(pg_stats_reset(pg_url))
            with observed(stack, args, name):
                value = asyncio.run(work)
            if args.pg_stats:
                r["pg"][name] = asyncio.run(pg_stats_top(pg_url))
            return value

        far = datetime.now(UTC) + timedelta(days=30)
        keys = [f"sched-{i}" for i in range(args.n)]
        timers = [timer(k, far) for k in keys]
        r["enqueue_per_s"] = phase("enqueue", schedule_all(stack["port"], timers, batch=PEER_BATCH, callers=1))
        r["cancel_per_s"] = phase("cancel", cancel_all(stack["port"], keys, batch=PEER_BATCH, callers=1))
        if args.best:
            keys = [f"best-{i}" for i in range(args.n)]
            timers = [timer(k, far) for k in keys]
            r["best_enqueue_per_s"] = asyncio.run(schedule_all(stack["port"], timers, batch=BEST_BATCH, callers=2))
            r["best_cancel_per_s"] = asyncio.run(cancel_all(stack["port"], keys, batch=BEST_BATCH, callers=2))
        lead = lead_seconds(args.n, r["enqueue_per_s"])
        r["drain"] = phase("drain", due_run(stack, "drain-", args.n, 0, lead))
        count = int(steady_rate * args.steady_seconds)
        r["steady"] = phase(
            "steady", due_run(stack, "steady-", count, steady_rate, lead_seconds(count, r["enqueue_per_s"]))
        )
        r["rss_after_work_mib"] = rss_mib(pid)
        if args.pending:
            before = asyncio.run(table_bytes(pg_url))
            r["pending_load_seconds"] = asyncio.run(bulk_pending(pg_url, args.pending))
            r["bytes_per_pending"] = (asyncio.run(table_bytes(pg_url)) - before) / args.pending
            n = min(args.n, 50_000)
            r["drain_with_pending"] = asyncio.run(
                due_run(stack, "pending-drain-", n, 0, lead_seconds(n, r["enqueue_per_s"]))
            )
            r["rss_with_pending_mib"] = rss_mib(pid)
        return r


# PostgreSQL's share of BatchCancelTimers, by storage design: the same N rows, the same 1,000-key
# statements through asyncpg, nothing else on the server. Not the API's figure (no gRPC, no
# scheduler process): what a design saves inside PostgreSQL, to choose one before building it.
CANCEL_DESIGNS = {
    # Today: every status change is a new row version in every index (status and updated_at
    # are in partial-index predicates and keys, so no update is HOT).
    "today": (
        "",
        """UPDATE scheduler.timers AS t SET status = 'canceled', canceled_at = now(), updated_at = now(),
               cancel_reason = NULLIF(c.reason, '')
           FROM unnest($2::text[], $3::text[], $4::boolean[]) AS c(key, reason, fired)
           WHERE t.tenant_id = $1 AND t.key = c.key AND (t.status = 'active' OR (c.fired AND t.status = 'fired'))""",
    ),
    # Due timers in a narrow table of their own; no index on timers names a column a cancel
    # changes, and pages keep room for the new version: the update is HOT, the delete from the
    # due table writes no index entry.
    "due table + HOT": (
        """DROP INDEX scheduler.timers_due_idx; DROP INDEX scheduler.timers_group_idx;
           DROP INDEX scheduler.timers_done_idx;
           CREATE INDEX timers_group_idx ON scheduler.timers (tenant_id, group_key);
           ALTER TABLE scheduler.timers SET (fillfactor = 50);
           CREATE TABLE scheduler.timers_due (timer_id bigint PRIMARY KEY, scheduled_for timestamptz NOT NULL);
           CREATE INDEX timers_due_at_idx ON scheduler.timers_due (scheduled_for, timer_id);""",
        """WITH done AS (
             UPDATE scheduler.timers AS t SET status = 'canceled', canceled_at = now(), updated_at = now(),
                 cancel_reason = NULLIF(c.reason, '')
             FROM unnest($2::text[], $3::text[], $4::boolean[]) AS c(key, reason, fired)
             WHERE t.tenant_id = $1 AND t.key = ANY($2::text[]) AND t.key = c.key
               AND (t.status = 'active' OR (c.fired AND t.status = 'fired'))
             RETURNING t.id)
           DELETE FROM scheduler.timers_due WHERE timer_id = ANY(ARRAY(SELECT id FROM done))""",
    ),
    # A narrow tombstone per canceled timer; the timer row is only locked (so a firer holding it
    # is waited for), and the firer would finish the row when it comes due.
    "tombstones": (
        """CREATE TABLE scheduler.timer_cancels (timer_id bigint PRIMARY KEY, version int NOT NULL,
               canceled_at timestamptz NOT NULL, cancel_reason text)""",
        """WITH locked AS (
             SELECT t.id, t.version, c.reason FROM scheduler.timers AS t
             JOIN unnest($2::text[], $3::text[], $4::boolean[]) AS c(key, reason, fired)
               ON t.tenant_id = $1 AND t.key = c.key
             WHERE t.status = 'active' OR (c.fired AND t.status = 'fired')
             FOR NO KEY UPDATE OF t)
           INSERT INTO scheduler.timer_cancels SELECT id, version, now(), NULLIF(reason, '') FROM locked
           ON CONFLICT (timer_id) DO UPDATE SET version = excluded.version, canceled_at = excluded.canceled_at,
               cancel_reason = excluded.cancel_reason""",
    ),
}


def cancel_storage(n: int, rows: int) -> dict[str, float]:
    """ms per 1,000 cancels under each design, each on its own fresh server."""
    figures = {}
    for name, (schema, statement) in CANCEL_DESIGNS.items():
        root = Path(tempfile.mkdtemp(prefix="dripiq-bench-cancel-"))
        pg = EmbeddedPostgres(root / "pg", temporary=True).start()
        try:
            migrations.upgrade("scheduler", pg.url)
            figures[name] = asyncio.run(_cancel_storage_run(pg.url, schema, statement, n, rows))
        finally:
            pg.stop()
            shutil.rmtree(root, ignore_errors=True)
        print(f"  {name}: {figures[name]:.2f} ms per 1,000 cancels in PostgreSQL", flush=True)
    return figures


async def _cancel_storage_run(url: str, schema: str, statement: str, n: int, rows: int) -> float:
    conn = await asyncpg.connect(url)
    try:
        if schema:
            await conn.execute(schema)
        await conn.execute(
            """INSERT INTO scheduler.timers (tenant_id, key, group_key, kind, scheduled_for, target, target_subject,
                   payload, rules_checked)
               SELECT $1, 'k-' || g, 'campaign:' || (g / 5), 'step_due', now() + interval '30 days', 'planner_timer',
                   $2, $3, 1
               FROM generate_series(0, $4 - 1) AS g""",
            TENANT,
            SUBJECT,
            payload("k"),
            rows,
        )
        if "timers_due " in schema:
            await conn.execute("INSERT INTO scheduler.timers_due SELECT id, scheduled_for FROM scheduler.timers")
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
        keys = [f"k-{i}" for i in range(n)]
        canceled = 0
        started = time.perf_counter()
        for at in range(0, n, PEER_BATCH):
            chunk = keys[at : at + PEER_BATCH]
            async with conn.transaction():
                status = await conn.execute(statement, TENANT, chunk, [""] * len(chunk), [False] * len(chunk))
            canceled += int(status.split()[-1])
        seconds = time.perf_counter() - started
        assert canceled == n, f"canceled {canceled} of {n}"
        return seconds * 1000 / (n / PEER_BATCH)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="timers to enqueue, cancel and drain")
    parser.add_argument("--steady-rates", type=int, nargs="+", default=[2500, 5000, 10000, 20000])
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    parser.add_argument("--arq-n", type=int, default=10_000, help="arq's N (it drains ~500/s); 0: no arq")
    parser.add_argument("--no-bullmq", action="store_true", help="dripiq alone, steady at the first rate")
    parser.add_argument(
        "--best", action=argparse.BooleanOptionalAction, default=True, help="also 10,000 a call, 2 callers"
    )
    parser.add_argument("--pending", type=int, default=0, help="then bulk-load this many pending and drain again")
    parser.add_argument("--pg-stats", action="store_true", help="pg_stat_statements per workload")
    parser.add_argument("--profile", help="py-spy raw profiles per workload into this folder")
    parser.add_argument("--cancel-storage", action="store_true", help="PostgreSQL's cancel cost by storage design")
    parser.add_argument("--cancel-rows", type=int, default=100_000, help="timers stored for --cancel-storage")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.cancel_storage:
        print(
            f"PostgreSQL alone, {args.n:,} cancels of {PEER_BATCH:,} keys a statement, {args.cancel_rows:,} timers stored:"
        )
        figures = cancel_storage(args.n, args.cancel_rows)
        for name, ms in figures.items():
            if name != "today":
                print(ratio_line(f"PostgreSQL cancels/s, {name}", 1e6 / ms, 1e6 / figures["today"], "today's schema"))
        return
    bullmq = (
        None
        if args.no_bullmq
        else run_pairs("bullmq", args.n, steady_rates=args.steady_rates, steady_seconds=args.steady_seconds)
    )
    arq = run_pairs("arq", args.arq_n) if args.arq_n else None
    rate = (bullmq or {}).get("sustained_rate") or args.steady_rates[0]
    r = measure(args, rate)
    report(args, r, rate, bullmq, arq)


def report(args: argparse.Namespace, r: dict, rate: int, bullmq: dict | None, arq: dict | None) -> None:
    d, s = r["drain"], r["steady"]
    print(f"dripiq scheduler (N={args.n:,}, {PEER_BATCH:,} a call, one call in flight):")
    print(f"  enqueue {r['enqueue_per_s']:,.0f} timers/s")
    print(f"  cancel  {r['cancel_per_s']:,.0f} timers/s")
    if args.best:
        print(
            f"  ({BEST_BATCH:,} a call, 2 callers: enqueue {r['best_enqueue_per_s']:,.0f}/s, cancel {r['best_cancel_per_s']:,.0f}/s)"
        )
    print(
        f"  drain   {d['drain_per_s']:,.0f} timers/s ({d['fired']:,} due at once, last on the stream after {d['max_ms']:,.0f} ms)"
    )
    print(
        f"  steady {rate:,}/s for {args.steady_seconds:g} s: lateness p50 {s['p50_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms, max {s['max_ms']:.0f} ms ({s['fired']:,} fired)"
    )
    print(f"  RSS {r['rss_start_mib']:.0f} MiB at start, {r['rss_after_work_mib']:.0f} MiB after")
    if args.pending:
        print(
            f"  with {args.pending:,} pending (loaded in {r['pending_load_seconds']:.0f} s, {r['bytes_per_pending']:.0f} bytes each): "
            f"drain {r['drain_with_pending']['drain_per_s']:,.0f}/s, RSS {r['rss_with_pending_mib']:.0f} MiB"
        )
    for peer, p in (("BullMQ", bullmq), ("arq", arq)):
        if p is None:
            continue
        print(
            f"{peer} {p['version']}: enqueue {p['enqueue_per_s']:,.0f}/s, cancel {p['cancel_per_s']:,.0f}/s, drain {p['drain_per_s']:,.0f}/s ({p['drained']:,} drained, {p['drain_duplicates']} twice, "
            f"{p['drain_added_late']:,} added late)"
        )
        for st in p["steady"]:
            print(
                f"  steady {st['rate']:,}/s: p50 {st['lateness_p50_ms']:,.0f} ms, p99 {st['lateness_p99_ms']:,.0f} ms ({st['fired']:,} fired; "
                f"{st['added_late']:,} added after their due time, worker started {st['worker_ready_late_ms']:,.0f} ms late)"
            )
        if p["steady"]:
            print(f"  highest rate with p99 < 1 s: {p['sustained_rate'] or 'none tried'}")
    for peer, p, targets in (("BullMQ", bullmq, TARGETS), ("arq", arq, {})):
        if p is None:
            continue
        print(ratio_line("enqueue timers/s", r["enqueue_per_s"], p["enqueue_per_s"], peer, targets.get("enqueue")))
        print(ratio_line("backlog drain timers/s", d["drain_per_s"], p["drain_per_s"], peer, targets.get("drain")))
        print(ratio_line("cancel timers/s", r["cancel_per_s"], p["cancel_per_s"], peer, targets.get("cancel")))
    steady_anchor = next((st for st in (bullmq or {}).get("steady", []) if st["rate"] == rate), None)
    if steady_anchor:
        print(
            ratio_line(
                f"lateness p99 ms at {rate:,}/s",
                s["p99_ms"],
                steady_anchor["lateness_p99_ms"],
                "BullMQ",
                lower_is_better=True,
            )
        )
    print(
        ratio_line(f"lateness p99 ms at {rate:,}/s", s["p99_ms"], P99_TARGET_MS, "the bound", 1.0, lower_is_better=True)
    )
    for name, text in r["pg"].items():
        print(f"pg_stat_statements, {name}:\n{text}")


if __name__ == "__main__":
    main()
