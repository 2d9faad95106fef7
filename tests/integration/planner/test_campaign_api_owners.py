"""CampaignService on real PostgreSQL, asking the dispatcher at plan time: a suppressed contact
is refused (alone in a batch), and a dispatcher that does not answer does not hold creation up.

The dispatcher and events services the planner asks are the real servicers, served in process
by a gRPC server on an ephemeral port over the same database.
"""

from __future__ import annotations

import pytest
from google.rpc import code_pb2
from helpers import (
    campaign_creator,
    count_campaigns,
    drain_outbox,
    item,
    request,
    schedules,
    timer_commands,
)
from owner_servers import owner_services, serve, unused_port
from secured import caller_channel, service_channel

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as dpb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as dpb_grpc
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.errors import FailedPrecondition
from dripiq_planner.owners import Owners


async def test_suppressed_contacts_are_refused_at_plan_time(engine, clock, tenant_id):
    names, register = owner_services(engine, clock, events=False)
    async with serve(names, register) as served, caller_channel(served.public) as channel:
        await dpb_grpc.SuppressionServiceStub(channel).AddSuppression(
            dpb.AddSuppressionRequest(tenant_id=tenant_id, address="Ada@Example.com", reason="unsubscribe")
        )
        owners = Owners(
            dispatcher_address=served.internal,
            events_address=f"127.0.0.1:{unused_port()}",
            timeout_seconds=5,
            channel=service_channel,
        )
        creator = campaign_creator(engine, clock, owners)
        try:
            with pytest.raises(FailedPrecondition) as exc:
                await creator.create(request(tenant_id))
            assert "suppressed" in str(exc.value)
            assert await count_campaigns(engine, tenant_id) == 0
            assert await drain_outbox(engine, tenant_id) == []

            # In a batch the suppressed item fails alone; an address the tenant has not
            # suppressed (even another tenant's suppressed one) goes ahead.
            response = await creator.batch_create(
                pb.BatchCreateCampaignsRequest(
                    tenant_id=tenant_id,
                    requests=[
                        item("c1", contact=pb.Contact(contact_id="c1", email="ADA@example.com")),
                        item("c2"),
                    ],
                )
            )
            assert response.results[0].error.code == code_pb2.FAILED_PRECONDITION
            assert "suppressed" in response.results[0].error.message
            assert response.results[1].campaign.status == pb.CAMPAIGN_STATUS_ACTIVE
            other = await creator.create(request(f"{tenant_id}-other"))
            assert other.status == pb.CAMPAIGN_STATUS_ACTIVE
        finally:
            await owners.close()


async def test_create_goes_ahead_when_the_dispatcher_does_not_answer(engine, clock, tenant_id):
    nobody = f"127.0.0.1:{unused_port()}"
    owners = Owners(dispatcher_address=nobody, events_address=nobody, timeout_seconds=2, channel=service_channel)
    creator = campaign_creator(engine, clock, owners)
    try:
        campaign = await creator.create(request(tenant_id))
    finally:
        await owners.close()
    assert campaign.status == pb.CAMPAIGN_STATUS_ACTIVE
    assert len(schedules(timer_commands(await drain_outbox(engine, tenant_id)))) == 1
