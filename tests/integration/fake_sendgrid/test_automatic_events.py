"""Events the fake posts by itself: processed then delivered for each recipient, in batches of at
most 1000, posted again when refused, none when off, and waiting while the webhook is unreachable.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from fake_sendgrid_support import (
    RECIPIENT,
    SENDER_ACCOUNT,
    Captured,
    Receiver,
    personalized,
    raw_send,
    recipients,
    valid_payload,
)
from sendgrid.helpers.eventwebhook import EventWebhook
from waiting import eventually

from dripiq_devtools.fake_sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER, FakeSendGrid
from dripiq_devtools.fake_sendgrid.server import OUTBOX_TASK_NAME


async def stats(fake: FakeSendGrid) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake.url}/_fake/stats") as resp:
            return dict(await resp.json())


def signed_by(fake: FakeSendGrid, posted: Captured) -> bool:
    verifier = EventWebhook(fake.public_key_base64)
    return verifier.verify_signature(
        posted.body.decode(), posted.headers[SIGNATURE_HEADER], posted.headers[TIMESTAMP_HEADER]
    )


def batches(receiver: Receiver) -> list[list[dict[str, Any]]]:
    return [json.loads(posted.body) for posted in receiver.requests]


def posting_by_itself(receiver: Receiver) -> FakeSendGrid:
    return FakeSendGrid(webhook_url=receiver.url, auto_events_delay_seconds=0.05, authenticated_domains=SENDER_ACCOUNT)


async def test_processed_then_delivered_arrive_by_themselves(receiver: Receiver) -> None:
    async with posting_by_itself(receiver) as fake:
        await raw_send(fake, personalized(cc=[{"email": "grace@example.com"}]))
        await eventually(lambda: len(receiver.events) == 4)
        counts = await stats(fake)

    first, *later = batches(receiver)
    assert [(e["event"], e["email"]) for e in first] == [("processed", RECIPIENT), ("processed", "grace@example.com")]
    assert [(e["event"], e["email"]) for batch in later for e in batch] == [
        ("delivered", RECIPIENT),
        ("delivered", "grace@example.com"),
    ]
    assert all(e["contact_id"] == "c-1" and e["campaign_id"] == "camp-1" for e in receiver.events)
    assert all(signed_by(fake, posted) for posted in receiver.requests)
    assert (counts["events_posted"], counts["events_pending"]) == (4, 0)


async def test_many_events_arrive_in_batches_of_at_most_1000_in_order(receiver: Receiver) -> None:
    readers = recipients(1200)
    async with posting_by_itself(receiver) as fake:
        for half in (readers[:600], readers[600:]):
            await raw_send(fake, valid_payload(personalizations=[{"to": half}]))
        await eventually(lambda: len(receiver.events) == 2400, seconds=20)

    sizes = [len(batch) for batch in batches(receiver)]
    assert max(sizes) <= 1000 and len(sizes) >= 4
    processed_in = {
        e["email"]: n for n, batch in enumerate(batches(receiver)) for e in batch if e["event"] == "processed"
    }
    delivered_in = {
        e["email"]: n for n, batch in enumerate(batches(receiver)) for e in batch if e["event"] == "delivered"
    }
    assert all(processed_in[reader["email"]] < delivered_in[reader["email"]] for reader in readers)
    assert [e["email"] for e in receiver.events if e["event"] == "processed"] == [r["email"] for r in readers]


async def test_a_refused_batch_is_posted_again_later(receiver: Receiver) -> None:
    receiver.refusals = 1
    async with posting_by_itself(receiver) as fake:
        await raw_send(fake, valid_payload())
        await eventually(lambda: [e["event"] for e in receiver.events][-1:] == ["delivered"])
        counts = await stats(fake)

    refused, again, delivered = batches(receiver)
    assert again == refused and [e["event"] for e in refused] == ["processed"]
    assert [e["event"] for e in delivered] == ["delivered"]
    assert (counts["events_posted"], counts["events_pending"], counts["failed_posts"]) == (2, 0, 1)


@pytest.mark.parametrize(("webhook", "delay_seconds", "queued"), [(False, 0.05, 0), (True, 0, 0), (True, 60, 2)])
async def test_nothing_is_queued_to_arrive_by_itself_when_off(
    receiver: Receiver, webhook: bool, delay_seconds: float, queued: int
) -> None:
    """Automatic events are only ever posted from the queue an accepted message fills; off, the
    queue stays empty the moment the message is accepted, so nothing can arrive later (the last
    case, on with a long delay, shows the same check seeing the queue filled)."""
    async with FakeSendGrid(
        authenticated_domains=SENDER_ACCOUNT,
        webhook_url=receiver.url if webhook else None,
        auto_events_delay_seconds=delay_seconds,
    ) as fake:
        await raw_send(fake, valid_payload())
        counts = await stats(fake)

    assert (counts["events_posted"], counts["events_pending"]) == (0, queued)


async def test_events_wait_while_the_webhook_is_unreachable_and_stopping_is_clean() -> None:
    """Two failed posts prove the fake tried, kept the events and tried again; a stop then ends
    the posting task instead of leaving it retrying."""
    async with FakeSendGrid(authenticated_domains=SENDER_ACCOUNT) as gone:
        closed_url = f"{gone.url}/webhooks/sendgrid"
    fake = FakeSendGrid(webhook_url=closed_url, auto_events_delay_seconds=0.05, authenticated_domains=SENDER_ACCOUNT)
    await fake.start()
    await raw_send(fake, valid_payload())

    async def retried() -> dict[str, Any] | None:
        counts = await stats(fake)
        return counts if counts["failed_posts"] >= 2 else None

    counts = await eventually(retried, "a second failed post to the unreachable webhook")
    [posting] = [task for task in asyncio.all_tasks() if task.get_name() == OUTBOX_TASK_NAME]
    await fake.stop()

    assert (counts["events_posted"], counts["events_pending"]) == (0, 2)
    assert posting.cancelled()
