"""What every benchmark shares: the whole suite on this machine, and ways to watch it.

Benchmarks start the same processes as `make run` (ephemeral ports, temporary data), drive
them over gRPC or JetStream, and print their figures. Every loop is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import shutil
import signal
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as dpb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as dpb_grpc
from dripiq_common.bus.client import Outgoing, publish_many
from dripiq_devtools.suite import DEMO_DOMAINS, Suite, Topology


@contextlib.contextmanager
def running_suite(
    replicas: dict[str, int] | None = None,
    *,
    fake_auto_events_delay: float = 0,
    secure: bool = True,
    fake_openai_latency: float | None = None,
    events_ingest_role: str | None = None,
    **extra_env: str,
) -> Iterator[Suite]:
    """The whole suite as `make run` starts it (TLS and tokens on; `secure=False` runs it with
    DRIPIQ_DEV_INSECURE, to measure what security costs).

    The topology comes from the environment as for `make run` (DRIPIQ_NATS_CLUSTER=3 for a
    3-node NATS cluster with R3 streams, DRIPIQ_REPLICAS=2 for two processes of each service);
    for a service named in both, the larger count runs (a benchmark's `--replicas` defaults to 1).
    DRIPIQ_EVENTS_QUERY=1, or `events_ingest_role` ("ingest" or "all"), runs an events query
    process apart (Suite.events_query). It is printed first."""
    topology = Topology.from_env(os.environ)
    asked = replicas or {}
    replicas = {name: max(topology.replicas.get(name, 1), asked.get(name, 1)) for name in {*topology.replicas, *asked}}
    events_query = topology.events_query or events_ingest_role is not None
    print(f"topology: {Topology(topology.nats_nodes, replicas, events_query).describe()}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="dripiq-bench-"))
    suite = Suite(
        run_dir=root / "run",
        ephemeral_ports=True,
        temporary_data=True,
        log_format="json",
        log_dir=root / "logs",
        extra_env={"LOG_LEVEL": "WARNING", **extra_env},
        replicas=replicas,
        nats_nodes=topology.nats_nodes,
        events_query=events_query,
        events_ingest_role=events_ingest_role or "ingest",
        # Benchmarks drive and measure one path each; SendGrid's own processed and delivered
        # posts (on in `make run`) would load the events path of a run that does not measure it.
        # A benchmark of the whole path (bench/chaos.py) turns them on.
        fake_auto_events_delay=fake_auto_events_delay,
        secure=secure,
        # The planner asks the local fake OpenAI, answering after this many seconds; None: no model.
        fake_openai=fake_openai_latency is not None,
        fake_openai_latency=fake_openai_latency or 0.0,
    )
    # A benchmark stopped by SIGTERM (`timeout`, a queue's kill) still stops its suite: without
    # this the default handler ends Python at once and leaves PostgreSQL, every NATS node and the
    # five processes running.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        suite.start()
        yield suite
    finally:
        suite.stop()
        signal.signal(signal.SIGTERM, previous)
        if os.environ.get("BENCH_KEEP_LOGS"):
            print(f"logs kept in {root / 'logs'}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


async def wait_for_count(
    dsn: str, query: str, target: int, *, limit_seconds: float, poll_seconds: float = 0.05
) -> tuple[int, float]:
    """Poll a count until it reaches target; (count, seconds waited). Bounded by limit_seconds."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        count = 0
        while time.perf_counter() - started < limit_seconds:
            count = await conn.fetchval(query)
            if count >= target:
                break
            await asyncio.sleep(poll_seconds)
        return count, time.perf_counter() - started
    finally:
        await conn.close()


async def publish_all(js, subject: str, payloads: Iterable[tuple[str, bytes]], *, chunk: int = 2000) -> int:  # type: ignore[no-untyped-def]
    """Publish (msg id, payload) pairs as fast as JetStream acks them, `chunk` in flight at once."""
    batch: list[Outgoing] = []
    count = 0
    for msg_id, payload in payloads:
        batch.append(Outgoing(subject, payload, msg_id))
        if len(batch) >= chunk:
            count += sum(await publish_many(js, batch))
            batch.clear()
    if batch:
        count += sum(await publish_many(js, batch))
    return count


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children that have exited, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(v) for v in fields[11:15]) / ticks


def postgres_cpu_seconds(suite: Suite) -> float:
    """CPU of this suite's PostgreSQL alone: its postmaster (with the backends it has reaped) and
    its live backends. Not every postgres on the machine: on a shared machine that counts other
    runs' servers, and goes negative when one of them stops."""
    if suite.postgres is None or suite.postgres.cluster_dir is None:
        return 0.0
    postmaster = int((suite.postgres.cluster_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    total = cpu_seconds(postmaster)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == postmaster:
                total += cpu_seconds(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return total


def cpu_snapshot(suite: Suite) -> dict[str, float]:
    snapshot = {name: cpu_seconds(child.pid) for name, child in suite.children.items()}
    snapshot["postgres"] = postgres_cpu_seconds(suite)
    if suite.nats is not None:
        # Every node of a cluster, those running now (a node restarted mid-run starts from zero).
        snapshot["nats"] = sum(cpu_seconds(pid) for pid in suite.nats.pids())
    snapshot["bench"] = cpu_seconds(os.getpid())
    snapshot[MACHINE] = machine_busy_seconds()
    snapshot[TAKEN_AT] = time.perf_counter()
    return snapshot


# The whole machine's busy CPU in a snapshot: every process, the kernel's network work included.
MACHINE = "machine"
TAKEN_AT = "taken_at"


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_report(before: dict[str, float], after: dict[str, float]) -> str:
    """CPU used by each process between two snapshots, as a share of one core."""
    seconds = after[TAKEN_AT] - before[TAKEN_AT]
    parts = [
        f"{name} {100 * (after[name] - before.get(name, 0)) / seconds:.0f}%"
        for name in sorted(after, key=lambda n: before.get(n, 0) - after[n])
        if name not in (MACHINE, TAKEN_AT) and after[name] - before.get(name, 0) > 0.05
    ]
    busy = 100 * (after[MACHINE] - before[MACHINE]) / seconds
    return f"CPU (% of one core): {', '.join(parts)}; whole machine {busy:.0f}% of {100 * (os.cpu_count() or 1)}%"


def outside_processes(before: dict[str, float], after: dict[str, float]) -> float:
    """The machine's busy CPU not spent by the suite's processes or the benchmark (the kernel's
    own work, anything else running here), as a share of one core: a shared machine shows here."""
    named = sum(after[k] - before.get(k, 0) for k in after if k not in (MACHINE, TAKEN_AT))
    return 100 * (after[MACHINE] - before[MACHINE] - named) / (after[TAKEN_AT] - before[TAKEN_AT])


def percentile(values: list[float], share: float) -> float:
    """Nearest rank: the smallest value with at least `share` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def machine() -> str:
    return f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d}"


async def verified_identity(suite: Suite, tenant_id: str) -> str:
    """A sender identity the dispatcher verified at the suite's fake SendGrid, on the demo domain
    the fake has authenticated since start-up (as a tenant would have at SendGrid)."""
    async with suite.channel("DISPATCHER_GRPC_PORT") as ch:
        stub = dpb_grpc.SenderIdentityServiceStub(ch)
        created = await stub.CreateSenderIdentity(
            dpb.CreateSenderIdentityRequest(
                tenant_id=tenant_id, from_email=f"sales@{DEMO_DOMAINS[0]}", from_name="Acme"
            ),
            timeout=30,
        )
        identity_id = created.sender_identity.sender_identity_id
        await stub.VerifySenderIdentity(
            dpb.VerifySenderIdentityRequest(tenant_id=tenant_id, sender_identity_id=identity_id), timeout=30
        )
        return identity_id


def ratio_line(
    figure: str,
    ours: float,
    anchor: float,
    anchor_name: str,
    target: float | None = None,
    *,
    lower_is_better: bool = False,
) -> str:
    """One line a reader can compare across machines: our figure over an anchor measured in the
    same run on the same machine, against the target ratio when there is one.

        ratio: events stored/s 21,400 / bare PostgreSQL 27,100 = 0.79x (target >= 0.75x) met
    """
    value = ours / anchor if anchor else float("inf")
    line = f"ratio: {figure} {ours:,.0f} / {anchor_name} {anchor:,.0f} = {value:.2f}x"
    if target is not None:
        met = value <= target if lower_is_better else value >= target
        line += f" (target {'<=' if lower_is_better else '>='} {target:g}x) {'met' if met else 'MISSED'}"
    return line
