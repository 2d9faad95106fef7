"""The engagement profile: per accepted message, a seeded draw of what its recipient does, posted
in SendGrid's order and shapes, never more generous than SendGrid, retried until taken; replies
and out-of-office replies reach the edge's Inbound Parse route signed as the suite expects.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from fake_sendgrid_support import SENDER_ACCOUNT, multipart, raw_send, valid_payload
from waiting import eventually

from dripiq.events.v1 import messages_pb2
from dripiq_common.tokens import TokenSigner
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_devtools.fake_sendgrid.engagement import PROFILE_ENV, EngagementProfile, draw, rates_of
from dripiq_events.autoreply_dates import return_date
from dripiq_events.edge.app import BodyLimits, Edge
from dripiq_events.edge.proofs import ParseAuth, load_verifiers
from dripiq_events.inbound import auto_reply_reason, parse_inbound

# Every link due on the next tick: a run of a few hundred messages takes about a second.
NO_DELAYS = {
    kind: 0.0
    for kind in (
        "processed",
        "deferred",
        "delivered",
        "bounce",
        "machine_open",
        "open",
        "click",
        "unsubscribe",
        "reply",
        "out_of_office",
    )
}
MESSAGES = 400
GENEROUS = {
    "seed": 7,
    "delivered": 0.9,
    "deferred": 0.2,
    "open": 0.5,
    "machine_open": 0.2,
    "click": 0.3,
    "reply": 0.1,
    "out_of_office": 0.1,
    "unsubscribe": 0.1,
    "delays": NO_DELAYS,
}
# Links of one recipient's chain, in the only order SendGrid (and the recipient) produce them.
ORDER = ["processed", "deferred", "delivered", "bounce", "machine_open", "open", "click", "unsubscribe", "reply"]


@dataclass
class Arrival:
    kind: str
    # The message it is about: SendGrid's id for events, our reply-to or unsubscribe token otherwise.
    about: str
    body: bytes = b""
    content_type: str = ""


@dataclass
class Receivers:
    """The webhook, Inbound Parse and one-click unsubscribe endpoints, noting arrivals in order."""

    base: str = ""
    arrivals: list[Arrival] = field(default_factory=list)
    refuse_events: int = 0

    @property
    def webhook(self) -> str:
        return f"{self.base}/events"

    @property
    def inbound(self) -> str:
        return f"{self.base}/inbound"


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    got = Receivers()

    async def events(request: web.Request) -> web.Response:
        if got.refuse_events > 0:
            got.refuse_events -= 1
            return web.Response(status=503)
        for event in json.loads(await request.read()):
            kind = "machine_open" if event.get("sg_machine_open") else event["event"]
            got.arrivals.append(Arrival(kind, event["sg_message_id"].split(".")[0]))
        return web.Response(status=200)

    async def inbound(request: web.Request) -> web.Response:
        body = await request.read()
        mail = parse_inbound(body, request.headers["Content-Type"])
        kind = "out_of_office" if auto_reply_reason(mail) else "reply"
        got.arrivals.append(Arrival(kind, mail.to, body, request.headers["Content-Type"]))
        return web.Response(status=200)

    async def one_click(request: web.Request) -> web.Response:
        assert await request.read() == b"List-Unsubscribe=One-Click"
        got.arrivals.append(Arrival("one_click", request.match_info["token"]))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/events", events)
    app.router.add_post("/inbound", inbound)
    app.router.add_post("/u/{token}", one_click)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    got.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield got
    await runner.cleanup()


def campaign_mail(n: int, unsubscribe_base: str) -> dict[str, Any]:
    """Tracked multipart mail as the dispatcher sends it: reply-to token, Message-ID, one-click."""
    payload = multipart(open_tracking={"enable": True}, click_tracking={"enable": True})
    payload["reply_to"] = {"email": f"r-{n}@reply.dripiq.test"}
    payload["headers"] = {
        "Message-ID": f"<m-{n}@dripiq.test>",
        "List-Unsubscribe": f"<{unsubscribe_base}/u/{n}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    payload["personalizations"][0]["custom_args"] = {"message_id": f"m-{n}"}
    return payload


async def set_profile(fake: FakeSendGrid, spec: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fake.url}/_fake/engagement", json=spec) as resp:
            return resp.status, await resp.json()


async def send_all(fake: FakeSendGrid, payloads: list[dict[str, Any]]) -> list[str]:
    ids = []
    for payload in payloads:
        status, _, headers = await raw_send(fake, payload)
        assert status == 202
        ids.append(headers["X-Message-Id"])
    return ids


async def settled(fake: FakeSendGrid) -> None:
    await eventually(lambda: fake.events_pending == 0, "every link posted", seconds=60)


def within(observed: float, rate: float, n: int) -> bool:
    """Four standard deviations of a binomial share: a fixed seed stays far inside."""
    return abs(observed - rate) <= 4 * math.sqrt(rate * (1 - rate) / n) + 1e-9


async def test_rates_are_honoured_and_every_chain_keeps_sendgrids_order(receivers: Receivers) -> None:
    async with FakeSendGrid(authenticated_domains=SENDER_ACCOUNT) as fake:
        status, profile = await set_profile(
            fake, {**GENEROUS, "webhook_url": receivers.webhook, "inbound_url": receivers.inbound}
        )
        assert status == 200 and profile["open"] == 0.5
        ids = await send_all(fake, [campaign_mail(n, receivers.base) for n in range(MESSAGES)])
        await settled(fake)

    assert fake.engagement is not None and not fake.engagement.withheld
    shares = rates_of(fake.engagement.posted)
    delivered = round(shares["delivered"] * MESSAGES)
    assert within(shares["delivered"], 0.9, MESSAGES)
    for kind in ("deferred", "open", "machine_open", "click", "reply", "out_of_office", "unsubscribe"):
        assert within(shares[kind], GENEROUS[kind], delivered), (kind, shares[kind])

    # What arrived, per message, in arrival order; replies and one-clicks name the message their own way.
    by_message: dict[str, list[str]] = defaultdict(list)
    for arrival in receivers.arrivals:
        if arrival.kind in ("reply", "out_of_office"):
            about = ids[int(arrival.about.split("@")[0].removeprefix("r-"))]
        elif arrival.kind == "one_click":
            about = ids[int(arrival.about)]
        else:
            about = arrival.about
        kind = {"one_click": "unsubscribe", "out_of_office": "reply"}.get(arrival.kind, arrival.kind)
        by_message[about].append(kind)
    assert set(by_message) == set(ids)
    for kinds in by_message.values():
        assert kinds == sorted(kinds, key=ORDER.index), kinds
        assert len(kinds) == len(set(kinds)), kinds
        assert kinds[0] == "processed"
        if "bounce" in kinds:
            assert kinds[-1] == "bounce", kinds
        else:
            assert "delivered" in kinds, kinds


async def test_the_same_seed_draws_the_same_run() -> None:
    profile = EngagementProfile.from_json({**GENEROUS, "webhook_url": "http://127.0.0.1:9/events"})
    first, second = random.Random(profile.seed), random.Random(profile.seed)
    assert [draw(profile, first) for _ in range(200)] == [draw(profile, second) for _ in range(200)]


async def test_each_recipient_meets_the_same_fate_whatever_order_the_mail_arrives_in(receivers: Receivers) -> None:
    fates = []
    for order in (range(60), reversed(range(60))):
        async with FakeSendGrid(authenticated_domains=SENDER_ACCOUNT) as fake:
            await set_profile(fake, {**GENEROUS, "webhook_url": receivers.webhook, "inbound_url": receivers.inbound})
            mail = [campaign_mail(n, receivers.base) for n in order]
            for payload in mail:  # one recipient each: p-<n>@..., as r-<n>@... is its reply-to
                payload["personalizations"][0]["to"] = [{"email": payload["reply_to"]["email"].replace("r-", "p-")}]
            await send_all(fake, mail)
            await settled(fake)
        assert fake.engagement is not None
        fate: dict[str, list[str]] = defaultdict(list)
        for link in fake.engagement.posted:
            fate[link.email].append(link.kind)
        fates.append(fate)
    assert fates[0] == fates[1]


async def test_no_open_or_click_for_mail_sendgrid_could_not_track_and_no_unsubscribe_it_does_not_offer(
    receivers: Receivers,
) -> None:
    always = {
        **GENEROUS,
        "delivered": 1.0,
        "deferred": 0.0,
        "open": 1.0,
        "machine_open": 1.0,
        "click": 1.0,
        "unsubscribe": 1.0,
    }
    async with FakeSendGrid(authenticated_domains=SENDER_ACCOUNT) as fake:
        await set_profile(fake, {**always, "reply": 0, "out_of_office": 0, "webhook_url": receivers.webhook})
        untracked = [
            valid_payload(),  # no text/html part: nowhere for the pixel
            multipart(open_tracking={"enable": False}, click_tracking={"enable": False}),
            multipart(),  # left to the account, where tracking is off
        ]
        await send_all(fake, untracked * 5)
        await settled(fake)
        assert fake.engagement is not None
        assert {a.kind for a in receivers.arrivals} == {"processed", "delivered"}
        assert fake.engagement.withheld == {"open": 15, "machine_open": 15, "click": 15, "unsubscribe": 15}

        receivers.arrivals.clear()
        grouped = multipart(open_tracking={"enable": True}) | {"asm": {"group_id": 42}}
        tracked_subscriptions = multipart() | {"tracking_settings": {"subscription_tracking": {"enable": True}}}
        await send_all(fake, [grouped, tracked_subscriptions])
        await settled(fake)
    # Unsubscribes as SendGrid itself reports them: from the group's page, or its own link.
    unsubscribes = [e for e in fake.engagement.posted if e.kind == "unsubscribe"]
    assert len(unsubscribes) == 2
    assert sorted(a.kind for a in receivers.arrivals if "unsub" in a.kind) == ["group_unsubscribe", "unsubscribe"]


async def test_a_refused_webhook_delays_the_chain_and_loses_nothing(receivers: Receivers) -> None:
    receivers.refuse_events = 3
    async with FakeSendGrid(authenticated_domains=SENDER_ACCOUNT) as fake:
        await set_profile(fake, {**GENEROUS, "delivered": 1.0, "deferred": 0.0, "webhook_url": receivers.webhook})
        ids = await send_all(fake, [campaign_mail(n, receivers.base) for n in range(20)])
        await settled(fake)
    assert fake.engagement is not None and fake.engagement.failed_posts >= 3
    for x_message_id in ids:
        kinds = [a.kind for a in receivers.arrivals if a.about == x_message_id]
        assert kinds[:2] == ["processed", "delivered"], kinds
        assert kinds == sorted(kinds, key=ORDER.index)


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({"open": 1.5}, "open"),
        ({"reply": True}, "reply"),
        ({"delays": {"open": -1}}, "delays.open"),
        ({"delays": {"teleport": 1}}, "delays.teleport"),
        ({"inbound_url": "file:///etc/passwd"}, "inbound_url"),
        ({"sneaky": 1}, "sneaky"),
        ({"seed": "1"}, "seed"),
    ],
)
async def test_a_bad_profile_is_refused_naming_its_field(
    fake: FakeSendGrid, receivers: Receivers, spec: dict[str, Any], named: str
) -> None:
    status, answer = await set_profile(fake, {"webhook_url": receivers.webhook, **spec})
    assert status == 400 and named in answer["error"]
    assert fake.engagement is None


async def test_without_a_webhook_url_a_profile_is_refused(fake: FakeSendGrid) -> None:
    status, answer = await set_profile(fake, {"open": 0.5})
    assert status == 400 and "webhook_url" in answer["error"]


@dataclass
class Recorded:
    js: Any
    published: list[tuple[str, bytes]] = field(default_factory=list)

    async def publish(self, subject: str, payload: bytes = b"", **kwargs: Any) -> Any:
        ack = await self.js.publish(subject, payload, **kwargs)
        self.published.append((subject, payload))
        return ack

    def __getattr__(self, name: str) -> Any:
        return getattr(self.js, name)


async def test_replies_and_out_of_office_reach_the_edges_inbound_parse_route_signed(
    nats_conn: Any, receivers: Receivers
) -> None:
    fake = FakeSendGrid(authenticated_domains=SENDER_ACCOUNT)
    recorder = Recorded(nats_conn.jetstream())
    edge = Edge(
        js=recorder,  # type: ignore[arg-type]
        nc=nats_conn,
        verifiers=load_verifiers(fake.public_key_base64),
        signer=TokenSigner(b"engagement-test-secret-of-32-bytes!"),
        limits=BodyLimits.all(1 << 20),
        signature_tolerance_seconds=600,
        # Only a post signed with the Parse security policy's key is taken, as in the suite.
        parse_auth=ParseAuth(verifiers=load_verifiers(fake.parse_public_key_base64)),
    )
    runner = web.AppRunner(edge.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    edge_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with fake:
            spec = {**GENEROUS, "delivered": 1.0, "reply": 0.5, "out_of_office": 0.5, "away_days": 9}
            await set_profile(
                fake, {**spec, "webhook_url": receivers.webhook, "inbound_url": f"{edge_url}/webhooks/sendgrid/inbound"}
            )
            await send_all(fake, [campaign_mail(n, receivers.base) for n in range(20)])
            await settled(fake)
    finally:
        await runner.cleanup()

    assert fake.engagement is not None
    answered = [p for p in fake.engagement.posted if p.kind in ("reply", "out_of_office")]
    assert len(answered) == 20 and fake.engagement.failed_posts == 0
    inbound = [messages_pb2.RawWebhook.FromString(payload) for subject, payload in recorder.published]
    assert len(inbound) == 20
    kinds = set()
    for raw in inbound:
        assert raw.kind == messages_pb2.RawWebhook.KIND_SENDGRID_INBOUND
        mail = parse_inbound(raw.body, raw.content_type)
        n = int(mail.to.split("@")[0].removeprefix("r-"))
        # Threaded to the message it answers, from its recipient, to its reply-to token.
        assert mail.referenced_message_ids == [f"<m-{n}@dripiq.test>"]
        assert mail.from_email == "ada@example.com" and mail.envelope_to == (f"r-{n}@reply.dripiq.test",)
        if auto_reply_reason(mail):
            kinds.add("out_of_office")
            assert mail.subject.startswith("Automatic reply: ")
            back = (datetime.now(UTC) + timedelta(days=9)).date()
            assert return_date(mail.text, received_at=datetime.now(UTC)) in (back, back - timedelta(days=1))
        else:
            kinds.add("reply")
            assert mail.subject.startswith("Re: ")
    assert kinds == {"reply", "out_of_office"}


async def test_no_profile_keeps_the_automatic_events(receivers: Receivers) -> None:
    async with FakeSendGrid(
        authenticated_domains=SENDER_ACCOUNT, webhook_url=receivers.webhook, auto_events_delay_seconds=0.05
    ) as fake:
        await set_profile(fake, {**GENEROUS, "delivered": 0.0})
        async with aiohttp.ClientSession() as session:
            async with session.delete(f"{fake.url}/_fake/engagement") as resp:
                assert resp.status == 200
        await send_all(fake, [valid_payload()])
        await eventually(lambda: len(receivers.arrivals) == 2, "processed and delivered")
    assert [a.kind for a in receivers.arrivals] == ["processed", "delivered"]


async def run_fake(profile_env: str, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dripiq_devtools.fake_sendgrid",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1", PROFILE_ENV: profile_env},
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
    return process, line.decode().strip()


async def test_the_command_line_takes_a_profile_from_its_environment(receivers: Receivers) -> None:
    spec = json.dumps({"open": 0.25, "seed": 3, "inbound_url": receivers.inbound})
    process, line = await run_fake(spec, "--webhook-url", receivers.webhook, "--auto-events-delay", "1")
    try:
        url = line.split()[-1]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/_fake/engagement") as resp:
                profile = (await resp.json())["profile"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
    assert (profile["open"], profile["seed"], profile["webhook_url"]) == (0.25, 3, receivers.webhook)


async def test_the_command_line_refuses_a_bad_profile_naming_the_field() -> None:
    process, _ = await run_fake(json.dumps({"click": 2}), "--webhook-url", "http://127.0.0.1:9/events")
    assert process.stderr is not None
    said = (await asyncio.wait_for(process.stderr.read(), timeout=60)).decode()
    assert await asyncio.wait_for(process.wait(), timeout=10) != 0
    assert f"{PROFILE_ENV}: click" in said
