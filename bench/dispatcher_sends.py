"""Sends per second end to end: commands on JetStream to `sent` rows, the fake answering in 50 ms.

    .venv/bin/python bench/dispatcher_sends.py [--n 100000] [--transport async|executor|both]

Runs the whole suite once per transport (DISPATCHER_TRANSPORT), slows the fake SendGrid to
50 ms per answer, creates one verified sender identity, publishes N SendMessageCommands (one
tenant, unique message ids) onto `dripiq.dispatcher.send.<tenant>` as fast as JetStream takes
them, and measures from the first publish until N messages are `sent` in dispatcher.messages
(each one: command consumed, 202 from the fake, `sent` committed with its outcome outboxed).
Duplicates are the fake's Mail Send requests beyond N (every send is accepted, none retried).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from pathlib import Path

import aiohttp
import grpc
import nats
from harness import cpu_report, cpu_snapshot, machine, publish_all, running_suite, wait_for_count

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as pb_grpc
from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.jetstream import Subjects

TENANT = "bench-sends"
LATENCY_SECONDS = 0.05


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


async def run(suite, transport: str, total: int) -> None:  # type: ignore[no-untyped-def]
    fake_url = suite.env["SENDGRID_API_HOST"]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake_url}/_fake/latency", json={"seconds": LATENCY_SECONDS}) as answer:
            answer.raise_for_status()
    identity_id = await verified_identity(f"127.0.0.1:{suite.port('DISPATCHER_GRPC_PORT')}")
    pid = suite.children["dispatcher"].pid
    rss_start = rss_mib(pid)

    nc = await nats.connect(suite.env["NATS_URL"])
    js = nc.jetstream()
    subject = Subjects.dispatcher_send(TENANT)
    before = cpu_snapshot(suite)
    started = time.perf_counter()
    await publish_all(js, subject, ((f"bench-{n}", command(n, identity_id)) for n in range(total)))
    published = time.perf_counter() - started
    await nc.close()
    count, waited = await wait_for_count(
        suite.env["DATABASE_URL"],
        f"SELECT count(*) FROM dispatcher.messages WHERE tenant_id = '{TENANT}' AND status = 'sent'",
        total,
        limit_seconds=max(120, total / 200),
    )
    cpu = cpu_report(before, cpu_snapshot(suite), waited)
    rss_end = rss_mib(pid)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{fake_url}/_fake/messages") as answer:
            listing = await answer.json()
    distinct = {m["custom_args"].get("message_id") for m in listing["messages"]} if total <= 200_000 else set()
    requests_received = listing["requests_received"]
    print(f"[{transport}] {cpu}")
    print(
        f"[{transport}] {total} commands published in {published:.1f} s ({total / published:.0f}/s); "
        f"{count} sent in {waited:.1f} s from the first publish: {count / waited:.0f} sends/s end to end; "
        f"fake received {requests_received} requests ({len(distinct) or 'n/a'} distinct message ids), "
        f"duplicates {requests_received - total}; dispatcher RSS {rss_start:.0f} MiB -> {rss_end:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--transport", choices=["async", "executor", "both"], default="both")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    for transport in ["async", "executor"] if args.transport == "both" else [args.transport]:
        with running_suite(DISPATCHER_TRANSPORT=transport) as suite:
            asyncio.run(run(suite, transport, args.n))


if __name__ == "__main__":
    main()
