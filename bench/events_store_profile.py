"""Where one SendGrid delivery's time goes in the events worker, in-process: the benchmark's
batches handled one after another by `EventIngest.handle_webhook` on a fresh PostgreSQL (no NATS,
no edge), with the interpreter's profiler on, and PostgreSQL's CPU read from /proc.

    .venv/bin/python bench/events_store_profile.py [--batches 100] [--messages 50000] [--top 30]

Prints ms of Python and of PostgreSQL per 1,000-event delivery, then the profile by cumulative
time. --concurrency N handles N deliveries at once, as the worker does, to show what they wait on.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import shutil
import tempfile
import time
from pathlib import Path

import asyncpg
from events_posting import TENANT, build_batches, messages, sent_outcome
from harness import cpu_seconds, machine

from dripiq.events.v1 import messages_pb2
from dripiq_common.clock import SystemClock
from dripiq_common.db import create_engine
from dripiq_common.tokens import TokenSigner
from dripiq_devtools import servers
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_devtools.local_database import migrate_as_owners
from dripiq_devtools.servers import EmbeddedPostgres
from dripiq_events.ingest import EventIngest


def server_cpu_seconds(pg: EmbeddedPostgres) -> float:
    """CPU of this PostgreSQL server alone (its postmaster and backends), not of others on the
    machine."""
    assert pg.cluster_dir is not None
    postmaster = int((pg.cluster_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    total = cpu_seconds(postmaster)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    total += cpu_seconds(int(entry.name))
            except (OSError, ValueError):
                continue
    return total


async def reset_statements(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


async def statements(url: str, deliveries: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT calls, rows, total_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query "
            "FROM pg_stat_statements WHERE calls >= $1 ORDER BY total_exec_time DESC LIMIT 8",
            deliveries,
        )
    finally:
        await conn.close()
    print("PostgreSQL statements, ms per delivery (pg_stat_statements, the whole run):")
    for r in rows:
        print(f"  {r['total_exec_time'] / deliveries:6.2f} ms {r['calls'] / deliveries:4.1f} calls  {r['query']}")


async def run(url: str, pg: EmbeddedPostgres, args: argparse.Namespace) -> None:
    engine = create_engine(url, pool_size=args.concurrency + 1)
    ingest = EventIngest(engine, SystemClock(), TokenSigner(b"x" * 32))
    sent = messages(args.messages, args.campaigns)
    outcomes = [sent_outcome(m) for m in sent]
    for i in range(0, len(outcomes), 500):
        await ingest.record_outcomes(outcomes[i : i + 500])
    bodies, _ = build_batches(sent, args.batches, FakeSendGrid())
    raws = [
        messages_pb2.RawWebhook(kind=messages_pb2.RawWebhook.KIND_SENDGRID_EVENTS, body=b).SerializeToString()
        for b in bodies
    ]
    await ingest.handle_webhook(raws[0])  # connections and prepared statements made
    await reset_statements(pg.url)
    profile = cProfile.Profile()
    pg_before, started, cpu_before = server_cpu_seconds(pg), time.perf_counter(), time.process_time()
    if args.profile:
        profile.enable()
    queue = iter(raws[1:])

    async def worker() -> None:
        for raw in queue:
            await ingest.handle_webhook(raw)

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    profile.disable()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    pg_cpu = server_cpu_seconds(pg) - pg_before
    n = len(raws) - 1
    print(
        f"{n} deliveries of 1,000 events for {TENANT}: {n * 1000 / seconds:,.0f} events/s, {args.concurrency} at a time; "
        f"per delivery {1000 * seconds / n:.1f} ms wall, {1000 * cpu / n:.1f} ms Python, "
        f"{1000 * pg_cpu / n:.1f} ms PostgreSQL CPU"
    )
    await engine.dispose()
    await statements(pg.url, n)
    if args.profile:
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
        if args.dump:
            profile.dump_stats(args.dump)


async def create_extension(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--campaigns", type=int, default=1000)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=1, help="deliveries handled at once (as the worker does)")
    parser.add_argument("--sort", default="tottime", help="pstats order: tottime, cumulative...")
    parser.add_argument("--dump", help="also write the profile to this file (pstats)")
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="time only")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    root = Path(tempfile.mkdtemp(prefix="dripiq-profile-"))
    # Per-statement statistics for this server only (the setting is read when it starts).
    servers.POSTGRES_SETTINGS["shared_preload_libraries"] = "pg_stat_statements"
    pg = EmbeddedPostgres(root / "pg", temporary=True).start()
    try:
        urls = migrate_as_owners(pg.url)
        asyncio.run(create_extension(pg.url))
        asyncio.run(run(urls["events"], pg, args))
    finally:
        pg.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
