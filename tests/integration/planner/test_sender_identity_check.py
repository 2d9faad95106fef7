"""CreateCampaign asks the dispatcher about the sender identity, as it asks about suppressions:
one it does not have is INVALID_ARGUMENT naming sender_identity_id, one it has not verified is
FAILED_PRECONDITION, and without its answer the campaign is accepted (the dispatcher checks
again when it sends). The dispatcher's real SenderIdentityService serves on 127.0.0.1 and
verifies against the fake SendGrid."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from google.rpc import code_pb2
from helpers import count_campaigns, item, request
from owner_servers import owner_services, serve, unused_port
from secured import caller_channel, service_channel

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as dpb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as dpb_grpc
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.errors import FailedPrecondition, InvalidArgument
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_planner.creating import CampaignCreator
from dripiq_planner.owners import Owners
from dripiq_planner.planning import Planner
from dripiq_planner.strategist.template_strategist import TemplateStrategist


@dataclass
class Dispatcher:
    owners: Owners
    verified: str
    unverified: str


@pytest_asyncio.fixture
async def dispatcher(engine, clock, tenant_id) -> AsyncIterator[Dispatcher]:  # type: ignore[no-untyped-def]
    """The dispatcher's identity service, with one verified and one unverified identity."""
    async with FakeSendGrid(authenticated_domains={"SG.test": ["acme.test"]}) as sendgrid:
        names, register = owner_services(engine, clock, events=False, sendgrid_url=sendgrid.url)
        async with serve(names, register) as served, caller_channel(served.public) as channel:
            stub = dpb_grpc.SenderIdentityServiceStub(channel)
            verified = (
                await stub.CreateSenderIdentity(
                    dpb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="sales@acme.test")
                )
            ).sender_identity.sender_identity_id
            await stub.VerifySenderIdentity(
                dpb.VerifySenderIdentityRequest(tenant_id=tenant_id, sender_identity_id=verified)
            )
            # Its domain is not authenticated at SendGrid, nor is the address a verified sender.
            unverified = (
                await stub.CreateSenderIdentity(
                    dpb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="ops@elsewhere.test")
                )
            ).sender_identity.sender_identity_id
            owners = Owners(
                dispatcher_address=served.internal,
                events_address=f"127.0.0.1:{unused_port()}",
                timeout_seconds=5,
                channel=service_channel,
            )
            try:
                yield Dispatcher(owners, verified, unverified)
            finally:
                await owners.close()


def creators(engine, clock, owners: Owners) -> list[CampaignCreator]:  # type: ignore[no-untyped-def]
    """Planned before the answer (an explicit strategy) and queued for planning (none)."""
    planner = Planner(engine, TemplateStrategist(), owners)
    return [CampaignCreator(engine, clock, planner, plan_inline=True), CampaignCreator(engine, clock, planner)]


@pytest.mark.parametrize("explicit", [True, False], ids=["explicit-strategy", "queued-for-planning"])
async def test_an_unknown_identity_is_invalid_argument_and_an_unverified_one_a_failed_precondition(
    engine, clock, tenant_id, dispatcher, explicit
):
    creator = creators(engine, clock, dispatcher.owners)[0 if explicit else 1]

    def create(identity: str, contact: str = "c1") -> pb.CreateCampaignRequest:
        made = item(contact, tenant_id=tenant_id, sender_identity_id=identity)
        if not explicit:
            made.ClearField("strategy")
        return made

    with pytest.raises(InvalidArgument) as unknown:
        await creator.create(create("x"))
    assert unknown.value.field == "sender_identity_id"
    assert "no sender identity 'x'" in str(unknown.value)

    with pytest.raises(FailedPrecondition) as unverified:
        await creator.create(create(dispatcher.unverified))
    assert "ops@elsewhere.test" in str(unverified.value) and "not verified" in str(unverified.value)
    assert await count_campaigns(engine, tenant_id) == 0

    created = await creator.create(create(dispatcher.verified))
    assert created.sender_identity_id == dispatcher.verified

    # In a batch each item answers for its own identity; nothing already accepted is lost.
    batch = pb.BatchCreateCampaignsRequest(
        tenant_id=tenant_id,
        requests=[
            create(dispatcher.verified, "c2"),
            create("x", "c3"),
            create(dispatcher.unverified, "c4"),
        ],
    )
    results = (await creator.batch_create(batch)).results
    assert [r.WhichOneof("result") for r in results] == ["campaign", "error", "error"]
    assert results[1].error.code == code_pb2.INVALID_ARGUMENT
    assert results[2].error.code == code_pb2.FAILED_PRECONDITION
    assert await count_campaigns(engine, tenant_id) == 2


async def test_without_the_dispatchers_answer_the_campaign_is_accepted(engine, clock, tenant_id):
    # Nobody listens there: the check is skipped and the dispatcher checks at send time.
    owners = Owners(
        dispatcher_address=f"127.0.0.1:{unused_port()}",
        events_address=f"127.0.0.1:{unused_port()}",
        timeout_seconds=1,
        channel=service_channel,
    )
    try:
        created = await creators(engine, clock, owners)[0].create(request(tenant_id, sender_identity_id="x"))
    finally:
        await owners.close()
    assert created.campaign_id and created.sender_identity_id == "x"
