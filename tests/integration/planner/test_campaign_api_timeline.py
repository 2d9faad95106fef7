"""CampaignService on real PostgreSQL, the campaign timeline: steps, messages and decisions merged
in time order, the kinds the contract names, and what is unavailable when the events service
does not answer.

The dispatcher and events services the planner asks are the real servicers, served in process
by a gRPC server on an ephemeral port over the same database.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from helpers import (
    at,
    campaign_creator,
    decisions,
    drain_outbox,
    engagement,
    request,
    step_rows,
)
from owner_servers import owner_services, serve, unused_port
from secured import service_channel
from sqlalchemy import delete, select

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as dpb
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import timers_pb2
from dripiq_common.tokens import TokenSigner
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_dispatcher import campaign_mail, failures
from dripiq_dispatcher.accounts import ProviderAccounts
from dripiq_dispatcher.identities import SenderIdentities
from dripiq_dispatcher.models import outbox as dispatcher_outbox
from dripiq_dispatcher.sender_auth import SendGridSenderChecks
from dripiq_dispatcher.sending import Sends
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.owners import Owners
from dripiq_planner.reactor import Reactor


class StubSender:
    """The provider: accepts every mail and names it."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, mail: dict[str, Any], account: Any = None) -> str | None:
        self.sent.append(mail)
        return f"x-{uuid.uuid4().hex}"


async def _sent_through_the_dispatcher(engine, clock, tenant_id, reactor) -> pb.Campaign:  # type: ignore[no-untyped-def]
    """A campaign whose step 0 went out through the real dispatcher (to a stub provider) and
    was opened two hours later."""
    # The identity is verified as the dispatcher does it: by asking a SendGrid (the fake) that
    # has its domain authenticated.
    async with FakeSendGrid(authenticated_domains={"SG.test": ["acme.test"]}) as sendgrid:
        checks = SendGridSenderChecks(sendgrid.url, "SG.test")
        identities = SenderIdentities(engine, clock, checks, ProviderAccounts())
        identity = await identities.create(
            dpb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="sales@acme.test", from_name="Acme")
        )
        await identities.verify(tenant_id, identity.sender_identity_id)
    campaign = await campaign_creator(engine, clock).create(
        request(tenant_id, sender_identity_id=identity.sender_identity_id)
    )
    await drain_outbox(engine, tenant_id)

    step = (await step_rows(engine, campaign.campaign_id))[0]
    await reactor.on_timer(
        timers_pb2.PlannerTimer(
            tenant_id=tenant_id,
            campaign_id=campaign.campaign_id,
            step_due=timers_pb2.StepDue(step_index=0, schedule_version=step.schedule_version),
        ).SerializeToString()
    )
    [(_, send)] = [r for r in await drain_outbox(engine, tenant_id) if r[0].startswith("dripiq.dispatcher.send.")]
    dispatcher = Sends(
        engine,
        clock,
        StubSender(),
        TokenSigner(b"planner-api-test-secret"),
        campaign_mail.MailSettings("reply.test", "mid.test", "https://u.test/u/"),
        failures.RetryPolicy(),
    )
    clock.advance(timedelta(minutes=1))
    await dispatcher.handle_send(send)
    async with engine.begin() as conn:
        rows = (
            await conn.execute(
                select(dispatcher_outbox.c.id, dispatcher_outbox.c.payload).where(
                    dispatcher_outbox.c.subject.like(f"%.{tenant_id}%")
                )
            )
        ).all()
        await conn.execute(delete(dispatcher_outbox).where(dispatcher_outbox.c.id.in_([r.id for r in rows])))
    [outcome] = [r.payload for r in rows]
    await reactor.on_outcome(outcome)

    clock.advance(timedelta(hours=2))
    message_id = (await step_rows(engine, campaign.campaign_id))[0].message_id
    await reactor.on_engagement(engagement(tenant_id, campaign.campaign_id, message_id, 0, "open", event_id="o-1"))
    await drain_outbox(engine, tenant_id)
    return campaign


async def test_timeline_merges_steps_messages_and_decisions_in_time_order(engine, clock, tenant_id):
    names, register = owner_services(engine, clock)
    async with serve(names, register) as served:
        owners = Owners(
            dispatcher_address=served.internal,
            events_address=served.internal,
            timeout_seconds=5,
            channel=service_channel,
        )
        campaigns = CampaignService(engine, clock, owners=owners)
        try:
            campaign = await _sent_through_the_dispatcher(engine, clock, tenant_id, Reactor(engine, clock))
            timeline = await campaigns.timeline(tenant_id, campaign.campaign_id)
        finally:
            await owners.close()

    assert list(timeline.unavailable) == []
    assert timeline.campaign.campaign_id == campaign.campaign_id
    times = [at(e.time) for e in timeline.entries]
    assert times == sorted(times)
    kinds = [e.kind for e in timeline.entries]
    assert kinds.count("step_scheduled") == 2 and kinds.count("decision") == 1
    [decision] = [e for e in timeline.entries if e.kind == "decision"]
    assert "open" in decision.detail and decision.step_index == 0
    assert decision.message_id == timeline.campaign.steps[0].message_id
    [message] = [e for e in timeline.entries if e.kind.startswith("message")]
    assert message.message_id == decision.message_id


async def _timeline(engine, clock, tenant_id) -> tuple[pb.GetCampaignTimelineResponse, datetime]:  # type: ignore[no-untyped-def]
    names, register = owner_services(engine, clock)
    async with serve(names, register) as served:
        owners = Owners(
            dispatcher_address=served.internal,
            events_address=served.internal,
            timeout_seconds=5,
            channel=service_channel,
        )
        campaigns = CampaignService(engine, clock, owners=owners)
        try:
            campaign = await _sent_through_the_dispatcher(engine, clock, tenant_id, Reactor(engine, clock))
            opened_at = clock.now()
            return await campaigns.timeline(tenant_id, campaign.campaign_id), opened_at
        finally:
            await owners.close()


async def test_timeline_decision_times_come_from_the_planner_clock(engine, clock, tenant_id):
    """Every planner time comes from its clock (house rule 7), a decision's too, so the timeline
    tells the story in order: step 0 planned, sent, opened (decision), step 1 planned."""
    timeline, opened_at = await _timeline(engine, clock, tenant_id)

    [row] = await decisions(engine, tenant_id, timeline.campaign.campaign_id)
    assert row.created_at == opened_at
    entries = [(e.kind, e.step_index) for e in timeline.entries]
    assert [e for e in entries if not e[0].startswith("message")] == [
        ("step_scheduled", 0),
        ("decision", 0),
        ("step_scheduled", 1),
    ]
    [decision] = [e for e in timeline.entries if e.kind == "decision"]
    assert at(decision.time) == opened_at
    [message] = [i for i, e in enumerate(entries) if e[0].startswith("message")]
    assert entries[message - 1] == ("step_scheduled", 0) and entries[message + 1] == ("decision", 0)


async def test_timeline_message_entries_use_the_kinds_the_contract_names(engine, clock, tenant_id):
    """campaign_service.proto, TimelineEntry.kind: "step_scheduled", "message_sent",
    "message_failed", "event", "decision", "campaign_canceled"."""
    timeline, _ = await _timeline(engine, clock, tenant_id)

    kinds = [e.kind for e in timeline.entries]
    assert set(kinds) <= {
        "step_scheduled",
        "message_sent",
        "message_failed",
        "event",
        "decision",
        "campaign_canceled",
    }, kinds
    assert kinds.count("message_sent") == 1


async def test_timeline_without_the_events_service_says_so(engine, clock, tenant_id):
    names, register = owner_services(engine, clock, events=False)
    async with serve(names, register) as served:
        owners = Owners(
            dispatcher_address=served.internal,
            events_address=f"127.0.0.1:{unused_port()}",
            timeout_seconds=2,
            channel=service_channel,
        )
        campaigns = CampaignService(engine, clock, owners=owners)
        try:
            campaign = await _sent_through_the_dispatcher(engine, clock, tenant_id, Reactor(engine, clock))
            timeline = await campaigns.timeline(tenant_id, campaign.campaign_id)
        finally:
            await owners.close()

    assert list(timeline.unavailable) == ["events"]
    kinds = [e.kind for e in timeline.entries]
    assert kinds.count("step_scheduled") == 2 and kinds.count("decision") == 1
    assert sum(k.startswith("message") for k in kinds) == 1
    times = [at(e.time) for e in timeline.entries]
    assert times == sorted(times)
