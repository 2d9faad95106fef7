"""The control endpoints (/_fake/...): another process lists messages, reads the public key and
triggers events, which are refused where SendGrid could not have tracked them.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from fake_sendgrid_support import HTML_LINKS, SENDER_ACCOUNT, Receiver, multipart, raw_send, valid_payload
from sendgrid.helpers.eventwebhook import EventWebhook

from dripiq_devtools.fake_sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER, FakeSendGrid


async def test_control_endpoints_let_another_process_drive_the_fake(fake: FakeSendGrid, receiver: Receiver) -> None:
    await raw_send(fake, valid_payload())
    message_id = fake.messages[0].x_message_id
    trigger = {"webhook_url": receiver.url, "x_message_id": message_id, "event": "delivered"}

    async with aiohttp.ClientSession(base_url=fake.url) as session:
        async with session.get("/_fake/public-key") as resp:
            assert await resp.json() == {
                "public_key": fake.public_key_base64,
                "parse_public_key": fake.parse_public_key_base64,
            }
        async with session.get("/_fake/messages") as resp:
            [listed] = (await resp.json())["messages"]
        async with session.post("/_fake/events", json={**trigger, "extra": {"tls": 0}}) as resp:
            triggered = await resp.json()
        async with session.post("/_fake/events", json={**trigger, "x_message_id": "x"}) as resp:
            unknown_status = resp.status
        async with session.delete("/_fake/messages") as resp:
            assert resp.status == 200
        async with session.get("/_fake/messages") as resp:
            remaining = (await resp.json())["messages"]

    assert listed["x_message_id"] == message_id
    assert listed["custom_args"] == {"campaign_id": "camp-1", "contact_id": "c-1"}
    assert triggered["status"] == 200
    [posted] = receiver.requests
    [event] = json.loads(posted.body)
    assert event["event"] == "delivered" and event["tls"] == 0 and event["contact_id"] == "c-1"
    assert EventWebhook(fake.public_key_base64).verify_signature(
        posted.body.decode(), posted.headers[SIGNATURE_HEADER], posted.headers[TIMESTAMP_HEADER]
    )
    assert unknown_status == 404
    assert remaining == []


async def trigger(fake: FakeSendGrid, receiver: Receiver, event: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    """Ask the fake, over HTTP, to post `event` for its latest message to the receiver."""
    spec = {"webhook_url": receiver.url, "x_message_id": fake.messages[-1].x_message_id, "event": event}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fake.url}/_fake/events", json={**spec, "extra": extra}) as resp:
            return resp.status, await resp.json()


async def test_trigger_refuses_an_open_sendgrid_could_not_track(fake: FakeSendGrid, receiver: Receiver) -> None:
    await raw_send(fake, multipart())

    status, answer = await trigger(fake, receiver, "open")

    assert status == 409
    assert answer["error"] == (
        "SendGrid could not report an open for this message: "
        "the request leaves open_tracking to the account, where it is off"
    )
    assert receiver.requests == []


async def test_trigger_posts_an_open_on_a_tracked_message(receiver: Receiver) -> None:
    async with FakeSendGrid(account_open_tracking=True, authenticated_domains=SENDER_ACCOUNT) as fake:
        await raw_send(fake, multipart())
        status, answer = await trigger(fake, receiver, "open")

    assert (status, answer["status"], answer["event"]["event"]) == (200, 200, "open")
    assert receiver.events == [answer["event"]]


async def test_trigger_clicks_only_tracked_links(fake: FakeSendGrid, receiver: Receiver) -> None:
    await raw_send(fake, multipart(click_tracking={"enable": True, "enable_text": True}))

    default = await trigger(fake, receiver, "click")
    chosen = await trigger(fake, receiver, "click", url="http://dripiq.test/docs")
    untracked_status, untracked = await trigger(fake, receiver, "click", url="https://dripiq.test/unsubscribe")

    assert default[1]["event"]["url_offset"] == {"index": 0, "type": "html"}
    assert chosen[1]["event"]["url_offset"] == {"index": 1, "type": "text"}
    assert untracked_status == 409
    assert untracked["error"].startswith("SendGrid could not report a click on https://dripiq.test/unsubscribe")
    assert "http://dripiq.test/docs?a=1&b=2 (html #1)" in untracked["error"]
    assert [e["url"] for e in receiver.events] == ["https://dripiq.test/pricing", "http://dripiq.test/docs"]


async def test_listed_messages_say_what_sendgrid_could_track(fake: FakeSendGrid) -> None:
    await raw_send(fake, multipart(click_tracking={"enable": True}, open_tracking={"enable": True}))

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake.url}/_fake/messages") as resp:
            [listed] = (await resp.json())["messages"]

    assert listed["open_untracked_reason"] is None
    assert listed["tracked_links"] == [link.to_json() for link in HTML_LINKS]
