"""The events ingest benchmark's traffic (bench/events_ingest.py): the sent messages the events
belong to and their SENT outcomes, Event Webhook batches built as SendGrid posts them, and the
posters that sign each batch just before it leaves, with the latency of every POST.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from harness import percentile

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq_devtools.fake_sendgrid import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AcceptedMessage,
    FakeSendGrid,
    build_event,
    new_message_id,
)

TENANT = "bench-events"
BATCH = 1000
# Of every 20 events: 9 delivered, 7 opens (a third of them machine opens), 3 clicks, 1 bounce.
MIX = ("delivered",) * 9 + ("open",) * 7 + ("click",) * 3 + ("bounce",)
POST_ATTEMPTS = 5


@dataclass(frozen=True)
class Message:
    message_id: str
    x_message_id: str
    campaign_id: str
    step_index: int
    contact_id: str
    to_email: str


def messages(total: int, campaigns: int) -> list[Message]:
    return [
        Message(
            message_id=str(uuid.UUID(int=m + 1)),
            x_message_id=new_message_id(),
            campaign_id=f"camp-{m % campaigns}",
            step_index=m % 5,
            contact_id=f"contact-{m}",
            to_email=f"lead{m}@example.com",
        )
        for m in range(total)
    ]


def sent_outcome(message: Message) -> bytes:
    outcome = dispatcher_pb.MessageOutcome(
        tenant_id=TENANT,
        message_id=message.message_id,
        campaign_id=message.campaign_id,
        step_index=message.step_index,
        contact_id=message.contact_id,
        channel="email",
        kind=dispatcher_pb.OUTCOME_KIND_SENT,
        provider="sendgrid",
        provider_message_id=message.x_message_id,
        rfc_message_id=f"<{message.message_id}@mail.bench.test>",
        to_email=message.to_email,
        subject="Hello",
    )
    outcome.occurred_at.FromDatetime(datetime.now(UTC))
    return outcome.SerializeToString()


def accepted(message: Message) -> AcceptedMessage:
    """The send as the fake would have recorded it: what build_event takes custom args from."""
    payload = {
        "personalizations": [{"to": [{"email": message.to_email}]}],
        "custom_args": {
            "tenant_id": TENANT,
            "campaign_id": message.campaign_id,
            "step_index": str(message.step_index),
            "message_id": message.message_id,
        },
        "categories": ["campaign"],
    }
    return AcceptedMessage(message.x_message_id, payload, datetime.now(UTC))


def build_batches(sent: list[Message], count: int, fake: FakeSendGrid) -> tuple[list[bytes], Counter[str]]:
    """`count` bodies of BATCH events each, byte for byte as SendGrid posts them (signed later)."""
    rng = random.Random(20261128)
    now = int(time.time())
    known = [accepted(m) for m in sent]
    bodies: list[bytes] = []
    kinds: Counter[str] = Counter()
    for b in range(count):
        events: list[dict[str, Any]] = []
        for n in range(b * BATCH, (b + 1) * BATCH):
            message = known[rng.randrange(len(known))]
            kind = MIX[rng.randrange(len(MIX))]
            extra: dict[str, Any] = {
                # Within the last hour, as SendGrid's batches are; replays carry the same one.
                "timestamp": now - rng.randrange(3600),
                "sg_event_id": base64.urlsafe_b64encode(f"{kind}-{n}-{message.x_message_id}".encode())
                .decode()
                .rstrip("="),
            }
            if kind == "open":
                extra["sg_machine_open"] = n % 3 == 0
            elif kind == "click":
                extra["url"] = f"https://example.com/pricing?p={n % 50}"
            events.append(build_event(message, kind, **extra))
            kinds[kind] += 1
        body, _ = fake.signed_request(events)
        bodies.append(body)
    return bodies, kinds


@dataclass
class Posts:
    """What the posters saw: one latency per answered POST, statuses, and when they ran."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failed_batches: int = 0
    started: float = 0.0
    finished: float = 0.0


async def post_all(url: str, fake: FakeSendGrid, bodies: list[bytes], concurrency: int, rate: float) -> Posts:
    """Post every body once (retrying a non-2xx answer a few times, as SendGrid would), each
    signed just before it leaves. `rate` > 0 paces the batches to that many events/s."""
    posts = Posts()
    next_index = itertools.count()
    interval = BATCH / rate if rate > 0 else 0.0

    async def poster(http: aiohttp.ClientSession) -> None:
        while (i := next(next_index)) < len(bodies):
            if interval:
                await asyncio.sleep(max(0.0, posts.started + i * interval - time.perf_counter()))
            body = bodies[i]
            for attempt in range(POST_ATTEMPTS):
                timestamp = str(int(time.time()))
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "SendGrid Event API",
                    SIGNATURE_HEADER: fake.sign(body, timestamp),
                    TIMESTAMP_HEADER: timestamp,
                }
                sent_at = time.perf_counter()
                try:
                    async with http.post(url, data=body, headers=headers) as answer:
                        await answer.read()
                        status = answer.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                posts.latencies.append(time.perf_counter() - sent_at)
                posts.statuses[status] += 1
                if 200 <= status < 300:
                    break
                await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
            else:
                posts.failed_batches += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        posts.started = time.perf_counter()
        await asyncio.gather(*(poster(http) for _ in range(concurrency)))
        posts.finished = time.perf_counter()
    return posts


def latency_line(posts: Posts) -> str:
    ms = [1000 * v for v in posts.latencies]
    if not ms:
        return "no POST answered"
    statuses = ", ".join(f"{status or 'error'}: {n}" for status, n in sorted(posts.statuses.items()))
    return (
        f"edge POST latency per {BATCH:,}-event batch: p50 {percentile(ms, 0.5):.0f} ms, "
        f"p99 {percentile(ms, 0.99):.0f} ms, max {max(ms):.0f} ms over {len(ms)} POSTs ({statuses}); "
        f"batches given up after {POST_ATTEMPTS} attempts: {posts.failed_batches}"
    )
