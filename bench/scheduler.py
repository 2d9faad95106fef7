"""Scheduler throughput, lateness and memory, beside the peers a user would otherwise pick.

    .venv/bin/python bench/scheduler.py [--n 200000] [--pending 10000000] [--steady-rate 5000]
        [--steady-seconds 60] [--peers-n 100000]

Starts PostgreSQL, NATS and one scheduler process (nothing consumes the target stream but the
benchmark itself), then measures through the scheduler's gRPC API and JetStream:
  schedule rate   BatchScheduleTimers, 10,000 a call, two callers
  cancel rate     BatchCancelTimers, 10,000 keys a call, two callers
  fire rate       N timers falling due in the same second, until all are on the stream
  lateness        timers due at a steady rate; stream time minus fire_at, p50/p99
  memory          the scheduler's RSS with `--pending` timers stored (bulk-loaded in SQL)
and, unless --peers-n 0, runs the same workloads on BullMQ and arq and prints the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
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
from harness import machine
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from dripiq.planner.v1 import timers_pb2
from dripiq.scheduler.v1 import scheduler_service_pb2 as pb
from dripiq.scheduler.v1 import scheduler_service_pb2_grpc as pb_grpc
from dripiq_common import migrations
from dripiq_common.bus.client import ensure_streams
from dripiq_common.bus.contract import Streams, Subjects
from dripiq_devtools.servers import EmbeddedNats, EmbeddedPostgres, free_port

TENANT = "bench-timers"
SUBJECT = Subjects.planner_timer(TENANT)
# What the planner stores with a step timer: the scheduler checks a payload is one of its target.
PAYLOAD = timers_pb2.PlannerTimer(
    tenant_id=TENANT, campaign_id="bench-campaign", step_due=timers_pb2.StepDue(step_index=0, schedule_version=1)
).SerializeToString()
BATCH = 10_000


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def scheduler_stack():  # type: ignore[no-untyped-def]
    root = Path(tempfile.mkdtemp(prefix="dripiq-bench-sched-"))
    pg = EmbeddedPostgres(root / "pg", temporary=True).start()
    nats_server = EmbeddedNats(root / "nats").start()
    process = None
    try:
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
            # The scheduler alone, measured against bare PostgreSQL and BullMQ: plaintext, no tokens.
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


def timer(key: str, fire_at: datetime, group: str = "bench") -> pb.Timer:
    t = pb.Timer(
        tenant_id=TENANT,
        key=key,
        group_key=group,
        kind="bench",
        target=pb.TIMER_TARGET_PLANNER_TIMER,
        payload=PAYLOAD,
    )
    t.fire_at.FromDatetime(fire_at)
    return t


async def schedule_all(port: int, timers: list[pb.Timer], callers: int = 2) -> float:
    batches = [timers[i : i + BATCH] for i in range(0, len(timers), BATCH)]
    queue: asyncio.Queue = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def caller() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.SchedulerServiceStub(ch)
            while not queue.empty():
                batch = queue.get_nowait()
                await stub.BatchScheduleTimers(
                    pb.BatchScheduleTimersRequest(tenant_id=TENANT, timers=batch), timeout=300
                )

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return len(timers) / (time.perf_counter() - started)


async def cancel_all(port: int, keys: list[str], callers: int = 2) -> float:
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(0, len(keys), BATCH):
        queue.put_nowait(keys[i : i + BATCH])
    canceled = 0

    async def caller() -> None:
        nonlocal canceled
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.SchedulerServiceStub(ch)
            while not queue.empty():
                batch = queue.get_nowait()
                answer = await stub.BatchCancelTimers(
                    pb.BatchCancelTimersRequest(tenant_id=TENANT, keys=batch), timeout=300
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


async def fire_burst(stack: dict, n: int) -> dict:
    due = datetime.now(UTC) + timedelta(seconds=max(5, n / 20000))
    await schedule_all(stack["port"], [timer(f"burst-{i}", due) for i in range(n)])
    wait = (due - datetime.now(UTC)).total_seconds()
    lateness = await collect(stack["nats"].url, n, limit_seconds=wait + 600, prefix="burst-")
    fired_in = max(lateness)  # the last one's distance from the common fire time
    return {"fired": len(lateness), "fire_per_s": len(lateness) / max(fired_in, 1e-6)}


async def steady(stack: dict, rate: int, seconds: int) -> dict:
    n = rate * seconds
    start = datetime.now(UTC) + timedelta(seconds=max(10, n / 15000))
    timers = [timer(f"steady-{i}", start + timedelta(seconds=i / rate)) for i in range(n)]
    await schedule_all(stack["port"], timers)
    wait = (start - datetime.now(UTC)).total_seconds() + seconds
    lateness = await collect(stack["nats"].url, n, limit_seconds=wait + 300, prefix="steady-")
    return {"fired": len(lateness), "p50": pct(lateness, 0.5), "p99": pct(lateness, 0.99), "max": max(lateness)}


GOLDEN = (5**0.5 - 1) / 2


async def spread_run(stack: dict, n: int, spread: float) -> dict:
    """The peers' workload: N timers, delay i = spread * frac(i * golden ratio) from when each
    batch is sent, scheduled as fast as the API takes them while earlier ones fall due."""
    started = time.perf_counter()
    first_due = datetime.now(UTC)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack['port']}") as ch:
        stub = pb_grpc.SchedulerServiceStub(ch)
        for start in range(0, n, BATCH):
            now = datetime.now(UTC)
            batch = [
                timer(f"spread-{i}", now + timedelta(seconds=spread * ((i * GOLDEN) % 1)))
                for i in range(start, min(n, start + BATCH))
            ]
            await stub.BatchScheduleTimers(pb.BatchScheduleTimersRequest(tenant_id=TENANT, timers=batch), timeout=300)
    enqueue_per_s = n / (time.perf_counter() - started)
    lateness = await collect(stack["nats"].url, n, limit_seconds=spread + 300, prefix="spread-")
    last = max(datetime.now(UTC) - first_due, timedelta(seconds=spread)).total_seconds()
    return {
        "enqueue_per_s": enqueue_per_s,
        "fire_per_s": len(lateness) / last,
        "lateness_p50_ms": pct(lateness, 0.5) * 1000,
        "lateness_p99_ms": pct(lateness, 0.99) * 1000,
        "lateness_max_ms": max(lateness) * 1000,
        "fired": len(lateness),
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
            PAYLOAD,
        )
    await conn.execute("ANALYZE scheduler.timers")
    seconds = time.perf_counter() - started
    await conn.close()
    return seconds


def run(args: argparse.Namespace) -> dict:
    with scheduler_stack() as stack:
        return asyncio.run(measure(stack, args))


async def measure(stack: dict, args: argparse.Namespace) -> dict:
    pid = stack["pid"]
    results: dict = {"rss_start_mib": rss_mib(pid)}
    far = datetime.now(UTC) + timedelta(days=30)
    keys = [f"sched-{i}" for i in range(args.n)]
    results["schedule_per_s"] = await schedule_all(stack["port"], [timer(k, far) for k in keys])
    results["cancel_per_s"] = await cancel_all(stack["port"], keys)
    results["fire_per_s"] = (await fire_burst(stack, args.n))["fire_per_s"]
    results["steady"] = await steady(stack, args.steady_rate, args.steady_seconds)
    if args.peers_n:
        results["spread"] = await spread_run(stack, args.peers_n, args.spread)
    results["rss_after_work_mib"] = rss_mib(pid)
    if args.pending:
        before = await table_bytes(stack["pg"].url)
        results["pending_load_seconds"] = await bulk_pending(stack["pg"].url, args.pending)
        results["bytes_per_pending"] = (await table_bytes(stack["pg"].url) - before) / args.pending
        results["fire_per_s_with_pending"] = (await fire_burst(stack, min(args.n, 50_000)))["fire_per_s"]
        results["rss_with_pending_mib"] = rss_mib(pid)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--pending", type=int, default=10_000_000)
    parser.add_argument("--steady-rate", type=int, default=5000)
    parser.add_argument("--steady-seconds", type=int, default=60)
    parser.add_argument("--peers-n", type=int, default=100_000)
    parser.add_argument("--spread", type=float, default=10.0)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    r = run(args)
    s = r["steady"]
    print(f"dripiq scheduler, N={args.n}:")
    print(f"  schedule {r['schedule_per_s']:,.0f} timers/s (BatchScheduleTimers, {BATCH:,} a call, 2 callers)")
    print(f"  cancel   {r['cancel_per_s']:,.0f} timers/s (BatchCancelTimers, {BATCH:,} keys a call, 2 callers)")
    print(f"  fire     {r['fire_per_s']:,.0f} timers/s ({args.n:,} due in the same second, onto JetStream)")
    print(
        f"  steady {args.steady_rate}/s for {args.steady_seconds}s: lateness p50 {s['p50'] * 1000:.0f} ms, "
        f"p99 {s['p99'] * 1000:.0f} ms, max {s['max'] * 1000:.0f} ms ({s['fired']:,} fired)"
    )
    print(
        f"  scheduler RSS: {r['rss_start_mib']:.0f} MiB at start, {r['rss_after_work_mib']:.0f} MiB after the runs",
        end="",
    )
    if args.pending:
        print(
            f", {r['rss_with_pending_mib']:.0f} MiB with {args.pending:,} pending "
            f"(loaded in {r['pending_load_seconds']:.0f} s); fire with them pending: "
            f"{r['fire_per_s_with_pending']:,.0f} timers/s"
        )
    else:
        print()
    if args.peers_n:
        sys.path.insert(0, str(Path(__file__).parent))
        from peers.run_peers import format_ratios, format_table, run_peers  # noqa: PLC0415

        spread = r["spread"]
        ours = {**spread, "cancel_per_s": r["cancel_per_s"], "bytes_per_pending": r.get("bytes_per_pending")}
        print(
            f"same workload as the peers (N={args.peers_n:,}, delays spread over {args.spread:g} s): "
            f"enqueue {spread['enqueue_per_s']:,.0f}/s, fire {spread['fire_per_s']:,.0f}/s, "
            f"lateness p50 {spread['lateness_p50_ms']:.0f} ms, p99 {spread['lateness_p99_ms']:.0f} ms"
        )
        peers = run_peers(args.peers_n, args.spread, args.peers_n)
        print(format_table(peers))
        print(format_ratios(ours, peers))


if __name__ == "__main__":
    main()
