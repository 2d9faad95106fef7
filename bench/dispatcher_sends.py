"""Sends per second end to end: commands on JetStream to `sent` rows, the fake answering in 50 ms.

    .venv/bin/python bench/dispatcher_sends.py [--n 100000] [--transport async|executor|both]

Runs the whole suite once per transport (DISPATCHER_TRANSPORT), slows the fake SendGrid to
50 ms per answer, creates one verified sender identity, publishes N SendMessageCommands (one
tenant, unique message ids) onto `dripiq.dispatcher.send.<tenant>` as fast as JetStream takes
them (while the dispatcher works), and measures from the first publish until N messages are
`sent` in dispatcher.messages (each one: command consumed, 202 from the fake, `sent` committed
with its outcome outboxed). Every --sample-seconds it prints the sends/s of the last interval
and the dispatcher's RSS, so a long run (--n 1000000) shows whether rate and memory hold.
Duplicates are the fake's Mail Send requests beyond N (every send is accepted, none retried).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import grpc
import nats
from harness import cpu_report, cpu_snapshot, machine, publish_all, running_suite, wait_for_count

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as pb_grpc
from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.jetstream import Subjects

TENANT = "bench-sends"
LATENCY_SECONDS = 0.05
SENT_QUERY = f"SELECT count(*) FROM dispatcher.messages WHERE tenant_id = '{TENANT}' AND status = 'sent'"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def verified_identity(address: str) -> str:
    async with grpc.aio.insecure_channel(address) as ch:
        stub = pb_grpc.SenderIdentityServiceStub(ch)
        created = await stub.CreateSenderIdentity(
            pb.CreateSenderIdentityRequest(tenant_id=TENANT, from_email="sales@acme.test", from_name="Acme"),
            timeout=30,
        )
        identity_id = created.sender_identity.sender_identity_id
        await stub.VerifySenderIdentity(
            pb.VerifySenderIdentityRequest(tenant_id=TENANT, sender_identity_id=identity_id), timeout=30
        )
        return identity_id


def command(n: int, identity_id: str) -> bytes:
    return messages_pb2.SendMessageCommand(
        tenant_id=TENANT,
        message_id=str(uuid.UUID(int=n + 1)),
        campaign_id=f"camp-{n % 1000}",
        step_index=0,
        contact_id=f"contact-{n}",
        channel="email",
        to_email=f"lead{n}@example.com",
        to_name="Lead",
        sender_identity_id=identity_id,
        subject="Hello",
        body_text="Hi there",
        body_html="<p>Hi there</p>",
        categories=["campaign"],
    ).SerializeToString()


async def sample(dsn: str, pid: int, every: float, into: list[tuple[float, int, float]]) -> None:
    """(seconds, sent so far, dispatcher RSS MiB) every `every` seconds until cancelled."""
    conn = await asyncpg.connect(dsn)
    started = time.perf_counter()
    try:
        while True:
            await asyncio.sleep(every)
            sent = await conn.fetchval(SENT_QUERY)
            into.append((time.perf_counter() - started, sent, rss_mib(pid)))
    finally:
        await conn.close()


async def run(suite, transport: str, total: int, sample_seconds: float) -> None:  # type: ignore[no-untyped-def]
    fake_url = suite.env["SENDGRID_API_HOST"]
    dsn = suite.env["DATABASE_URL"]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake_url}/_fake/latency", json={"seconds": LATENCY_SECONDS}) as answer:
            answer.raise_for_status()
    identity_id = await verified_identity(f"127.0.0.1:{suite.port('DISPATCHER_GRPC_PORT')}")
    pid = suite.children["dispatcher"].pid
    rss_start = rss_mib(pid)

    nc = await nats.connect(suite.env["NATS_URL"])
    js = nc.jetstream()
    subject = Subjects.dispatcher_send(TENANT)
    samples: list[tuple[float, int, float]] = []
    sampler = asyncio.create_task(sample(dsn, pid, sample_seconds, samples))
    before = cpu_snapshot(suite)
    # Published while the dispatcher works, so a long run measures sending, not a backlog.
    publishing = asyncio.create_task(
        publish_all(js, subject, ((f"bench-{n}", command(n, identity_id)) for n in range(total)))
    )
    count, waited = await wait_for_count(
        dsn, SENT_QUERY, total, limit_seconds=max(120, total / 200), poll_seconds=0.05 if total <= 100_000 else 1.0
    )
    await publishing
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    await nc.close()
    cpu = cpu_report(before, cpu_snapshot(suite), waited)
    rss_end = rss_mib(pid)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{fake_url}/_fake/stats") as answer:
            stats = await answer.json()
    requests_received = stats["requests_received"]
    print(f"[{transport}] {cpu}")
    for (t0, n0, _), (t1, n1, rss) in zip(samples, samples[1:], strict=False):
        print(
            f"[{transport}]   {t1:6.0f} s: {n1:>9} sent, {(n1 - n0) / (t1 - t0):6.0f} sends/s, dispatcher RSS {rss:.0f} MiB"
        )
    print(
        f"[{transport}] {count} sent in {waited:.1f} s from the first publish: {count / waited:.0f} sends/s end to end; "
        f"fake received {requests_received} requests ({stats['distinct_message_ids']} distinct message ids), "
        f"duplicates {requests_received - total}; dispatcher RSS {rss_start:.0f} MiB -> {rss_end:.0f} MiB"
        + (f" (max {max(r for _, _, r in samples):.0f} MiB)" if samples else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--transport", choices=["async", "executor", "both"], default="both")
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="progress and RSS every so often")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    for transport in ["async", "executor"] if args.transport == "both" else [args.transport]:
        with running_suite(DISPATCHER_TRANSPORT=transport) as suite:
            asyncio.run(run(suite, transport, args.n, args.sample_seconds))


if __name__ == "__main__":
    main()
