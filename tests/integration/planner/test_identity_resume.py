"""Campaigns held because their sender identity lapsed go on by themselves once it is verified
again, on real PostgreSQL, with the planner and the dispatcher side by side and the real
`sendgrid` library against the fake SendGrid: each held campaign sends its step exactly once
(counted at the fake), redeliveries and a planner that died mid-way send nothing twice, a
campaign canceled meanwhile stays canceled, one held for another reason stays held, and the
timeline says why a campaign went on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from helpers import campaign_row, drain_outbox, fire_step, request, send_commands, step_rows, step_timer
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as dispatcher_api
from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.bus.contract import Subjects
from dripiq_common.tokens import TokenSigner
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_dispatcher import campaign_mail, failures
from dripiq_dispatcher.accounts import ProviderAccounts
from dripiq_dispatcher.identities import SenderIdentities
from dripiq_dispatcher.identity_holds import HeldSends
from dripiq_dispatcher.models import outbox as dispatcher_outbox
from dripiq_dispatcher.provider import AsyncSendGridSender
from dripiq_dispatcher.sender_auth import SendGridSenderChecks
from dripiq_dispatcher.sending import Sends

KEY = "SG.test"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeSendGrid]:
    async with FakeSendGrid(authenticated_domains={KEY: ["acme.test"]}) as server:
        yield server


@pytest_asyncio.fixture
async def sends(engine, clock, fake) -> AsyncIterator[Sends]:  # type: ignore[no-untyped-def]
    sender = AsyncSendGridSender(api_key=KEY, host=fake.url, concurrency=4, timeout_seconds=5)
    yield Sends(
        engine,
        clock,
        sender,
        TokenSigner(b"integration-test-token-secret"),
        campaign_mail.MailSettings("reply.test", "mid.test", "https://u.test/u/"),
        failures.RetryPolicy(),
    )
    await sender.aclose()


def set_domain_valid(fake: FakeSendGrid, valid: bool) -> None:
    [authenticated] = [d for d in fake.accounts.parent(KEY).domains if d.domain == "acme.test"]
    authenticated.valid = valid
    authenticated.dns_ready = valid


async def dispatcher_outcomes(engine: AsyncEngine, tenant_id: str) -> list[bytes]:
    """Take the dispatcher's outcome facts for the tenant (what its relay would publish)."""
    async with engine.begin() as conn:
        rows = (
            await conn.execute(
                select(dispatcher_outbox.c.id, dispatcher_outbox.c.payload)
                .where(dispatcher_outbox.c.subject == Subjects.message_outcome(tenant_id))
                .order_by(dispatcher_outbox.c.id)
            )
        ).all()
        await conn.execute(delete(dispatcher_outbox).where(dispatcher_outbox.c.id.in_([r.id for r in rows])))
    return [r.payload for r in rows]


def kinds(payloads: list[bytes]) -> list[int]:
    return [dispatcher_pb.MessageOutcome.FromString(p).kind for p in payloads]


def mails_of(fake: FakeSendGrid, campaign_id: str) -> list[Any]:
    return [m for m in fake.messages if m.custom_args.get("campaign_id") == campaign_id]


async def test_held_campaigns_send_their_step_exactly_once_when_the_identity_is_verified_again(
    engine, tenant_id, clock, creator, campaigns, reactor, sends, fake
):
    identities = SenderIdentities(engine, clock, SendGridSenderChecks(fake.url, KEY, 5), ProviderAccounts())
    held = HeldSends(engine, clock)
    created = await identities.create(
        dispatcher_api.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="sales@acme.test")
    )
    identity_id = created.sender_identity_id
    await identities.verify(tenant_id, identity_id)
    other = await identities.create(
        dispatcher_api.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="ops@acme.test")
    )

    ids = []
    for n in range(4):
        contact = f"c{n}"
        campaign = await creator.create(
            request(
                tenant_id,
                contact=pb.Contact(contact_id=contact, email=f"{contact}@example.com"),
                # The last one sends as another identity, never verified: held for another reason.
                sender_identity_id=other.sender_identity_id if n == 3 else identity_id,
            )
        )
        ids.append(campaign.campaign_id)
    await drain_outbox(engine, tenant_id)

    # The domain lapses at SendGrid: the first send is refused (403), the rest at admission.
    set_domain_valid(fake, False)
    for campaign_id in ids:
        command = await fire_step(engine, reactor, clock, tenant_id, campaign_id)
        await sends.handle_send(command.SerializeToString())
    await reactor.on_outcomes(await dispatcher_outcomes(engine, tenant_id))
    assert [(await campaign_row(engine, c)).status for c in ids] == ["needs_attention"] * 4
    assert fake.messages == []

    # One is canceled while it waits.
    await campaigns.cancel(tenant_id, ids[2], "not interested")

    # Fixed at SendGrid and verified again: the held messages are released.
    set_domain_valid(fake, True)
    await identities.verify(tenant_id, identity_id)
    await held.release()
    released = await dispatcher_outcomes(engine, tenant_id)
    assert kinds(released) == [dispatcher_pb.OUTCOME_KIND_RELEASED] * 3

    # The planner dies after committing the first release; JetStream redelivers all of them.
    await reactor.on_outcomes(released[:1])
    await reactor.on_outcomes(released)
    await reactor.on_outcomes(released)
    assert [(await campaign_row(engine, c)).status for c in ids] == ["active", "active", "canceled", "needs_attention"]

    # Each resumed step goes out once, under the retry's message id, however often it fires.
    await drain_outbox(engine, tenant_id)
    for campaign_id in ids[:2]:
        [step] = [s for s in await step_rows(engine, campaign_id) if s.status == "scheduled"]
        timer = step_timer(tenant_id, campaign_id, step.step_index, step.schedule_version)
        await reactor.on_timer(timer)
        await reactor.on_timer(timer)
    commands = send_commands(await drain_outbox(engine, tenant_id))
    assert sorted(c.campaign_id for c in commands) == sorted(ids[:2])
    for command in commands:
        await sends.handle_send(command.SerializeToString())
        await sends.handle_send(command.SerializeToString())
    assert [len(mails_of(fake, c)) for c in ids] == [1, 1, 0, 0]

    # The timeline says why each went on.
    for campaign_id in ids[:2]:
        timeline = await campaigns.timeline(tenant_id, campaign_id)
        assert any(
            e.detail == f"sender_identity_verified -> retry_step: sender identity {identity_id} verified again"
            for e in timeline.entries
        )
    canceled = await campaigns.timeline(tenant_id, ids[2])
    assert not any("sender_identity_verified" in e.detail for e in canceled.entries)


async def test_a_campaign_a_person_retried_meanwhile_is_not_retried_again(
    engine, tenant_id, clock, creator, campaigns, reactor, sends, fake
):
    identities = SenderIdentities(engine, clock, SendGridSenderChecks(fake.url, KEY, 5), ProviderAccounts())
    created = await identities.create(
        dispatcher_api.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="sales@acme.test")
    )
    identity_id = created.sender_identity_id
    await identities.verify(tenant_id, identity_id)
    campaign = await creator.create(request(tenant_id, sender_identity_id=identity_id))
    set_domain_valid(fake, False)
    command = await fire_step(engine, reactor, clock, tenant_id, campaign.campaign_id)
    await sends.handle_send(command.SerializeToString())
    await reactor.on_outcomes(await dispatcher_outcomes(engine, tenant_id))

    set_domain_valid(fake, True)
    await identities.verify(tenant_id, identity_id)
    # A person retries it before the release is handled.
    await campaigns.retry_step(tenant_id, campaign.campaign_id)
    await drain_outbox(engine, tenant_id)
    await HeldSends(engine, clock).release()
    await reactor.on_outcomes(await dispatcher_outcomes(engine, tenant_id))

    assert (await campaign_row(engine, campaign.campaign_id)).status == "active"
    assert send_commands(await drain_outbox(engine, tenant_id)) == []
