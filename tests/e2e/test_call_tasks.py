"""A call step across the suite: the planner asks for it, the dispatcher opens a task for a
person, CompleteTask reports it, and the campaign moves on or stops as the report says."""

from __future__ import annotations

import grpc
from support import ALWAYS, channel, eventually, verified_sender

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as dpb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as dpb_grpc
from dripiq.events.v1 import events_service_pb2 as epb
from dripiq.events.v1 import events_service_pb2_grpc as epb_grpc
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_devtools.suite import Suite

TENANT = "e2e-tasks"


def create(campaigns: pb_grpc.CampaignServiceStub, sender: str, contact: str) -> str:
    return campaigns.CreateCampaign(
        pb.CreateCampaignRequest(
            tenant_id=TENANT,
            request_id=f"tasks-{contact}",
            lead=pb.Lead(lead_id=f"lead-{contact}", company_name="Globex"),
            contact=pb.Contact(contact_id=contact, email=f"{contact}@globex.example", first_name="Ada"),
            product=pb.Product(product_id="product-1", name="Widget"),
            sender_identity_id=sender,
            send_window=ALWAYS,
            strategy=pb.Strategy(
                outreach_campaign=[
                    pb.OutreachStep(
                        type="call", timing="Day 0", subject="Call {{first_name}}", content="Ask about the pilot"
                    ),
                    pb.OutreachStep(type="email", timing="Day 3", subject="Following up", content="Still there?"),
                ]
            ),
        ),
        timeout=10,
    ).campaign.campaign_id


def open_task(messages: dpb_grpc.DispatcherServiceStub, campaign_id: str) -> dpb.Message:
    def probe() -> dpb.Message | None:
        listed = messages.ListMessages(
            dpb.ListMessagesRequest(tenant_id=TENANT, campaign_id=campaign_id, status=dpb.MESSAGE_STATUS_TASK_OPEN),
            timeout=10,
        )
        return listed.messages[0] if listed.messages else None

    return eventually(probe, what=f"the call task of {campaign_id}")


def test_a_call_step_becomes_a_task_whose_report_drives_the_campaign(suite: Suite) -> None:
    sender = verified_sender(suite, TENANT, "calls@acme.example")
    with channel(suite, "PLANNER_GRPC_PORT") as pch, channel(suite, "DISPATCHER_GRPC_PORT") as dch:
        campaigns, messages = pb_grpc.CampaignServiceStub(pch), dpb_grpc.DispatcherServiceStub(dch)
        done_id, replied_id = create(campaigns, sender, "ada"), create(campaigns, sender, "bo")

        def campaign(cid: str) -> pb.Campaign:
            return campaigns.GetCampaign(pb.GetCampaignRequest(tenant_id=TENANT, campaign_id=cid), timeout=10).campaign

        task = open_task(messages, done_id)
        assert (task.channel, task.subject, task.to_email) == ("call", "Call Ada", "ada@globex.example")
        messages.CompleteTask(
            dpb.CompleteTaskRequest(tenant_id=TENANT, message_id=task.message_id, outcome=dpb.TASK_OUTCOME_NO_ANSWER),
            timeout=10,
        )
        # Done: the step counts as performed and the next step is scheduled from it.
        moved_on = eventually(
            lambda: (c := campaign(done_id)).steps[0].status == pb.STEP_STATUS_SENT and c,
            what="call step marked done",
        )
        assert moved_on.status == pb.CAMPAIGN_STATUS_ACTIVE
        assert moved_on.steps[1].status == pb.STEP_STATUS_SCHEDULED

        task = open_task(messages, replied_id)
        answer = messages.CompleteTask(
            dpb.CompleteTaskRequest(
                tenant_id=TENANT, message_id=task.message_id, outcome=dpb.TASK_OUTCOME_REPLIED, notes="wants a demo"
            ),
            timeout=10,
        )
        assert answer.message.status == dpb.MESSAGE_STATUS_TASK_DONE
        # Replied: the reply rule cancels the campaign, as for an emailed reply.
        stopped = eventually(
            lambda: (c := campaign(replied_id)).status == pb.CAMPAIGN_STATUS_CANCELED and c,
            what="campaign canceled by the reported reply",
        )
        assert stopped.cancel_reason == "reply"
        # The events service stores the reported reply as the task's event and counts it.
        with channel(suite, "EVENTS_GRPC_PORT") as ech:
            events = epb_grpc.EventsServiceStub(ech)
            listed = eventually(
                lambda: (
                    events.ListMessageEvents(
                        epb.ListMessageEventsRequest(tenant_id=TENANT, message_id=task.message_id), timeout=10
                    ).events
                ),
                what="the reported reply stored by the events service",
            )
            assert [(e.event_type, e.provider, e.provider_event_id) for e in listed] == [
                ("reply", "dripiq", f"task:{task.message_id}")
            ]
            totals = events.GetCampaignStats(
                epb.GetCampaignStatsRequest(tenant_id=TENANT, campaign_id=replied_id), timeout=10
            ).totals
            assert (totals.sent, totals.replies) == (1, 1)

        try:
            messages.CompleteTask(dpb.CompleteTaskRequest(tenant_id=TENANT, message_id=task.message_id), timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        else:
            raise AssertionError("CompleteTask without an outcome was accepted")
