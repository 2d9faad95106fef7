"""A/B variant winners on real PostgreSQL with the real events service: the planner's due steps
ask the events service (its real servicer over mutual TLS) for an experiment's per-variant
figures, counted by the events ingest from the dispatcher's SENT outcomes and SendGrid's click
events; after N sends of each variant the better one is stored once and sent to later contacts,
with the timeline saying why. Faults: the events service down keeps the split and says so;
planners deciding at once store one winner."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from helpers import T0, campaign_creator, drain_outbox, item, send_commands, strategy, timer_commands
from owner_servers import events_server, unused_port
from prometheus_client import REGISTRY
from secured import service_channel
from sqlalchemy import select

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.events.v1 import messages_pb2 as events_messages
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.clock import ManualClock
from dripiq_common.tokens import TokenSigner
from dripiq_devtools.fake_sendgrid import AcceptedMessage, build_event, new_message_id
from dripiq_events.ingest import EventIngest
from dripiq_planner import variants, winners
from dripiq_planner.ai_budget import BudgetLimits
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.models import variant_winners
from dripiq_planner.owners import Owners
from dripiq_planner.reactor import Reactor
from dripiq_planner.stats import TenantStats
from dripiq_planner.strategy import StepVariant
from dripiq_planner.tenant_settings import TenantSettingsService
from dripiq_planner.timeline import timeline

A = pb.StepVariant(name="A", weight=1, subject="Quick question, {{first_name}}")
B = pb.StepVariant(name="B", weight=1, subject="An idea for {{company_name}}")
SPLIT = [StepVariant(name="A", weight=1, subject="x"), StepVariant(name="B", weight=1, subject="y")]


def two_variants() -> pb.Strategy:
    out = strategy("Day 0", "Day 3")
    out.outreach_campaign[0].variants.extend([A, B])
    return out


def contacts_picking(tenant_id: str, name: str, count: int, prefix: str) -> list[str]:
    """Contacts whose hash alone picks `name` for step 0 (bounded search)."""
    out = [
        c
        for c in (f"{prefix}-{i}" for i in range(200))
        if variants.choose(SPLIT, tenant_id=tenant_id, contact_id=c, step_index=0).name == name
    ]
    assert len(out) >= count
    return out[:count]


def lookups(outcome: str) -> float:
    return REGISTRY.get_sample_value("dripiq_planner_variant_winner_lookups_total", {"outcome": outcome}) or 0.0


@asynccontextmanager
async def events_owner(engine, *, up: bool = True) -> AsyncIterator[Owners]:  # type: ignore[no-untyped-def]
    """The planner's client of the events service: its real servicer on a mutual TLS port, or
    (up=False) an address nothing listens on."""
    if not up:
        owners = Owners(f"127.0.0.1:{unused_port()}", f"127.0.0.1:{unused_port()}", channel=service_channel)
        yield owners
        await owners.close()
        return
    async with events_server(engine) as address:
        owners = Owners(f"127.0.0.1:{unused_port()}", address, channel=service_channel)
        yield owners
        await owners.close()


class Pipeline:
    """The planner's create and timer paths, and the events ingest standing in for the
    dispatcher's SENT outcomes and SendGrid's webhook posts."""

    def __init__(self, engine, clock, tenant_id: str, owners: Owners) -> None:  # type: ignore[no-untyped-def]
        self.engine, self.clock, self.tenant_id = engine, clock, tenant_id
        self.creator = campaign_creator(engine, clock)
        self.picker = winners.VariantWinners(engine, clock, owners, cache_seconds=0)
        self.reactor = Reactor(engine, clock, winners=self.picker)
        self.ingest = EventIngest(engine, clock, TokenSigner(b"variant-winner-test-secret"))

    async def send_step_0(self, contacts: list[str]) -> dict[str, dispatcher_pb.SendMessageCommand]:
        """Create a campaign per contact and fire its first step; the send commands by contact."""
        answer = await self.creator.batch_create(
            pb.BatchCreateCampaignsRequest(
                tenant_id=self.tenant_id, requests=[item(c, strategy=two_variants()) for c in contacts]
            )
        )
        assert all(r.HasField("campaign") for r in answer.results), answer
        timers = [c.schedule.payload for c in timer_commands(await drain_outbox(self.engine, self.tenant_id))]
        await self.reactor.on_timers(timers)
        return {s.contact_id: s for s in send_commands(await drain_outbox(self.engine, self.tenant_id))}

    async def sent(self, command: dispatcher_pb.SendMessageCommand) -> AcceptedMessage:
        """The dispatcher's SENT outcome for the command, as the events service records it."""
        x_message_id = new_message_id()
        outcome = dispatcher_pb.MessageOutcome(
            tenant_id=command.tenant_id,
            message_id=command.message_id,
            campaign_id=command.campaign_id,
            step_index=command.step_index,
            contact_id=command.contact_id,
            channel="email",
            kind=dispatcher_pb.OUTCOME_KIND_SENT,
            provider_message_id=x_message_id,
            to_email=command.to_email,
            subject=command.subject,
            product_id=command.product_id,
            strategist=command.strategist,
            variant=command.variant,
        )
        outcome.occurred_at.FromDatetime(self.clock.now())
        assert await self.ingest.record_outcome(outcome.SerializeToString())
        args = {
            "tenant_id": command.tenant_id,
            "campaign_id": command.campaign_id,
            "step_index": str(command.step_index),
            "message_id": command.message_id,
        }
        payload = {
            "personalizations": [{"to": [{"email": command.to_email}]}],
            "from": {"email": "sales@acme.example"},
            "subject": command.subject,
            "content": [{"type": "text/plain", "value": command.body_text}],
            "custom_args": args,
        }
        return AcceptedMessage(x_message_id, payload, self.clock.now())

    async def clicked(self, message: AcceptedMessage) -> None:
        """SendGrid's click event for the message, as the edge hands its webhook batch on."""
        event = build_event(message, "click", url="https://acme.example/demo")
        raw = events_messages.RawWebhook(
            kind=events_messages.RawWebhook.KIND_SENDGRID_EVENTS, body=json.dumps([event]).encode()
        )
        raw.received_at.FromDatetime(self.clock.now())
        await self.ingest.handle_webhook(raw.SerializeToString())


async def pick_winners(engine, clock, tenant_id: str, after_sends: int = 2) -> None:  # type: ignore[no-untyped-def]
    await TenantSettingsService(engine, clock).update(
        pb.UpdateTenantSettingsRequest(
            settings=pb.TenantSettings(
                tenant_id=tenant_id,
                variant_winner=pb.VariantWinnerSetting(after_sends=after_sends, metric=pb.VARIANT_METRIC_CLICK),
            ),
            update_mask=FieldMask(paths=["variant_winner"]),
        )
    )


async def stored_winners(engine, tenant_id: str) -> list:  # type: ignore[no-untyped-def,type-arg]
    async with engine.connect() as conn:
        query = select(variant_winners).where(variant_winners.c.tenant_id == tenant_id)
        return list((await conn.execute(query)).all())


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


async def test_after_n_sends_each_the_variant_clicked_more_goes_to_later_contacts(engine, tenant_id, clock):
    await pick_winners(engine, clock, tenant_id, after_sends=2)
    async with events_owner(engine) as owners:
        pipeline = Pipeline(engine, clock, tenant_id, owners)
        first = contacts_picking(tenant_id, "A", 2, "early-a") + contacts_picking(tenant_id, "B", 2, "early-b")
        sends = await pipeline.send_step_0(first)
        # Too few sends for a winner yet: each contact got its hash's pick.
        assert {c: s.variant for c, s in sends.items()} == {c: c.split("-")[1].upper() for c in first}
        assert await stored_winners(engine, tenant_id) == []
        for command in sends.values():
            message = await pipeline.sent(command)
            if command.variant == "B":
                await pipeline.clicked(message)
        # One of A's contacts clicks too: B leads 2 of 2 against 1 of 2.
        await pipeline.clicked(await pipeline.sent(replace_id(sends[first[0]])))

        later = contacts_picking(tenant_id, "A", 3, "later-a")
        later_sends = await pipeline.send_step_0(later)

        assert {c: s.variant for c, s in later_sends.items()} == dict.fromkeys(later, "B")
        assert all(s.subject == "An idea for Acme" for s in later_sends.values())
        [stored] = await stored_winners(engine, tenant_id)
        assert (stored.product_id, stored.step_index, stored.variant, stored.metric) == ("product-1", 0, "B", "click")
        assert stored.sends_each >= 2

        campaigns = CampaignService(engine, clock)
        one = await campaigns.get(tenant_id, later_sends[later[0]].campaign_id)
        assert one.steps[0].variant == "B"
        story = await timeline(engine, None, one)
        [why] = [e.detail for e in story.entries if e.kind == "decision" and "variant_winner" in e.detail]
        assert "variant B: the winner by click rate (100.0% against" in why
        assert f"after {stored.sends_each} sends each" in why

        stats = await TenantStats(engine, clock, BudgetLimits(10, 10), 1).get(tenant_id)
        [shown] = stats.variant_winners
        assert (shown.product_id, shown.step_index, shown.variant, shown.runner_up) == ("product-1", 0, "B", "A")
        assert shown.metric == pb.VARIANT_METRIC_CLICK and shown.rate == 1.0


def replace_id(command: dispatcher_pb.SendMessageCommand) -> dispatcher_pb.SendMessageCommand:
    """Another message of the same variant: the same contact's step resent under a new id."""
    other = dispatcher_pb.SendMessageCommand()
    other.CopyFrom(command)
    other.message_id = f"{command.message_id}-again"
    return other


async def test_a_tie_keeps_splitting_until_a_variant_leads(engine, tenant_id, clock):
    await pick_winners(engine, clock, tenant_id, after_sends=1)
    async with events_owner(engine) as owners:
        pipeline = Pipeline(engine, clock, tenant_id, owners)
        first = contacts_picking(tenant_id, "A", 1, "tie-a") + contacts_picking(tenant_id, "B", 1, "tie-b")
        for command in (await pipeline.send_step_0(first)).values():
            await pipeline.sent(command)  # nobody clicks: 0% against 0%
        later = contacts_picking(tenant_id, "A", 1, "tie-later-a") + contacts_picking(tenant_id, "B", 1, "tie-later-b")
        sends = await pipeline.send_step_0(later)
        assert {c: s.variant for c, s in sends.items()} == {c: c.split("-")[2].upper() for c in later}
        assert await stored_winners(engine, tenant_id) == []


async def test_the_events_service_down_keeps_the_split_and_says_so(engine, tenant_id, clock):
    await pick_winners(engine, clock, tenant_id, after_sends=1)
    before = lookups("unavailable")
    async with events_owner(engine, up=False) as owners:
        pipeline = Pipeline(engine, clock, tenant_id, owners)
        contacts = contacts_picking(tenant_id, "A", 2, "down-a") + contacts_picking(tenant_id, "B", 2, "down-b")
        sends = await pipeline.send_step_0(contacts)
    # Every step went out, each as its hash picked it.
    assert {c: s.variant for c, s in sends.items()} == {c: c.split("-")[1].upper() for c in contacts}
    assert lookups("unavailable") > before
    assert await stored_winners(engine, tenant_id) == []


async def test_a_tenant_without_the_setting_never_asks(engine, tenant_id, clock):
    before = sum(lookups(o) for o in ("stored", "decided", "undecided", "unavailable"))
    async with events_owner(engine, up=False) as owners:
        sends = await Pipeline(engine, clock, tenant_id, owners).send_step_0(["plain-1", "plain-2"])
    assert len(sends) == 2
    assert sum(lookups(o) for o in ("stored", "decided", "undecided", "unavailable")) == before


async def test_planners_deciding_at_once_store_one_winner(engine, tenant_id, clock):
    experiment = (tenant_id, "product-1", 0)
    a = variants.Winner("A", variants.Metric.REPLY, 0.5, "B", 0.25, 10, T0)
    b = replace(a, variant="B", runner_up="A")

    async def store(winner: variants.Winner) -> variants.Winner:
        async with engine.begin() as conn:
            return await winners.store(conn, experiment, winner)

    kept = await asyncio.gather(*(store(w) for w in (a, b, a, b)))
    assert len({w.variant for w in kept}) == 1
    assert len(await stored_winners(engine, tenant_id)) == 1


async def test_replicas_sending_at_once_send_the_same_winner(engine, tenant_id, clock):
    """Two planners with their own caches fire steps of one experiment at once: both decide,
    one winner is stored and both send it."""
    await pick_winners(engine, clock, tenant_id, after_sends=1)
    async with events_owner(engine) as owners:
        pipeline = Pipeline(engine, clock, tenant_id, owners)
        first = contacts_picking(tenant_id, "A", 1, "race-a") + contacts_picking(tenant_id, "B", 1, "race-b")
        for command in (await pipeline.send_step_0(first)).values():
            message = await pipeline.sent(command)
            if command.variant == "A":
                await pipeline.clicked(message)
        later = contacts_picking(tenant_id, "B", 4, "race-later")
        answer = await pipeline.creator.batch_create(
            pb.BatchCreateCampaignsRequest(
                tenant_id=tenant_id, requests=[item(c, strategy=two_variants()) for c in later]
            )
        )
        assert len(answer.results) == 4
        timers = [c.schedule.payload for c in timer_commands(await drain_outbox(engine, tenant_id))]
        other = Reactor(engine, clock, winners=winners.VariantWinners(engine, clock, owners, cache_seconds=0))
        await asyncio.gather(pipeline.reactor.on_timers(timers[:2]), other.on_timers(timers[2:]))
        sends = send_commands(await drain_outbox(engine, tenant_id))
    assert sorted(s.variant for s in sends) == ["A"] * 4
    assert [w.variant for w in await stored_winners(engine, tenant_id)] == ["A"]
