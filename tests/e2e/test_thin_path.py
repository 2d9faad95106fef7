"""The thin path through all five processes, each its own OS process, as `make run` starts them.

CreateCampaign over gRPC -> step-0 timer in the scheduler, fired onto JetStream -> planner
issues the send -> dispatcher sends through the `sendgrid` library to the fake SendGrid ->
the fake posts a signed `open` to the edge -> events stores it and publishes engagement ->
planner applies the open rule to step 1 -> an Inbound Parse reply reaches the edge -> the
campaign is canceled with its timers.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from support import ALWAYS, channel, eventually, http_json, post_event, post_reply, sent_mail, sql, verified_sender

from dripiq.events.v1 import events_service_pb2 as epb
from dripiq.events.v1 import events_service_pb2_grpc as epb_grpc
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_devtools.suite import Suite

TENANT = "acme-e2e"


def test_grpcurl_lists_every_service_with_the_ca_and_the_dev_token(suite: Suite) -> None:
    """The call `make run` prints: TLS with the development CA, the operator token as bearer."""
    assert suite.security is not None
    grpcurl = Path(sys.executable).parent / "grpcurl"
    token = (suite.run_dir / "dev-token").read_text().strip()
    expected = {
        "PLANNER_GRPC_PORT": "dripiq.planner.v1.CampaignService",
        "DISPATCHER_GRPC_PORT": "dripiq.dispatcher.v1.SenderIdentityService",
        "EVENTS_GRPC_PORT": "dripiq.events.v1.EventsService",
        "SCHEDULER_GRPC_PORT": "dripiq.scheduler.v1.SchedulerService",
    }
    secure = [str(grpcurl), "-cacert", str(suite.security.ca.path), "-H", f"authorization: Bearer {token}"]
    for port_env, service in expected.items():
        address = f"127.0.0.1:{suite.port(port_env)}"
        listed = subprocess.run(
            [*secure, address, "list"], check=True, capture_output=True, text=True, timeout=30
        ).stdout.split()
        assert service in listed
        assert "grpc.health.v1.Health" in listed
        # Plaintext gets nowhere.
        refused = subprocess.run(
            [str(grpcurl), "-plaintext", address, "list"], capture_output=True, text=True, timeout=30
        )
        assert refused.returncode != 0
    settings = subprocess.run(
        [
            *secure,
            "-d",
            '{"tenant_id": "t-grpcurl"}',
            f"127.0.0.1:{suite.port('PLANNER_GRPC_PORT')}",
            "dripiq.planner.v1.CampaignService/GetTenantSettings",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "t-grpcurl" in settings.stdout


def test_invalid_email_is_invalid_argument_naming_the_field(suite: Suite) -> None:
    with channel(suite, "PLANNER_GRPC_PORT") as ch:
        with pytest.raises(grpc.RpcError) as exc:
            pb_grpc.CampaignServiceStub(ch).CreateCampaign(
                pb.CreateCampaignRequest(
                    tenant_id=TENANT,
                    lead=pb.Lead(lead_id="l"),
                    product=pb.Product(product_id="p"),
                    sender_identity_id="s",
                    contact=pb.Contact(contact_id="c", email="nobody-at-example"),
                ),
                timeout=10,
            )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(exc.value)
    detail = error_details_pb2.BadRequest()
    status.details[0].Unpack(detail)
    assert detail.field_violations[0].field == "contact.email"


def test_thin_path(suite: Suite) -> None:
    fake = suite.env["SENDGRID_API_HOST"]

    sender = verified_sender(suite, TENANT, "sales@acme.example")

    with channel(suite, "PLANNER_GRPC_PORT") as ch:
        campaigns = pb_grpc.CampaignServiceStub(ch)
        campaign = campaigns.CreateCampaign(
            pb.CreateCampaignRequest(
                tenant_id=TENANT,
                request_id="e2e-1",
                lead=pb.Lead(lead_id="lead-1", company_name="Globex"),
                contact=pb.Contact(contact_id="contact-1", email="ada@globex.example", first_name="Ada"),
                product=pb.Product(product_id="product-1", name="Widget"),
                sender_identity_id=sender,
                send_window=ALWAYS,
                strategy=pb.Strategy(
                    outreach_campaign=[
                        pb.OutreachStep(
                            type="email",
                            timing="Day 0",
                            subject="Hello {{first_name}}",
                            content="About {{product_name}}",
                        ),
                        pb.OutreachStep(type="email", timing="Day 3", subject="Following up", content="Still there?"),
                    ]
                ),
            ),
            timeout=10,
        ).campaign
        cid = campaign.campaign_id

        # Send: the fake SendGrid received exactly one request, with our custom args.
        mail = sent_mail(suite, cid, 0)
        message_id = mail["custom_args"]["message_id"]
        assert mail["custom_args"] == {
            "tenant_id": TENANT,
            "campaign_id": cid,
            "step_index": "0",
            "message_id": message_id,
        }
        assert mail["to_emails"] == ["ada@globex.example"] and mail["subject"] == "Hello Ada"

        # Sent: planner marks step 0 and schedules step 1 by its delay.
        def step_state() -> pb.Campaign:
            return campaigns.GetCampaign(pb.GetCampaignRequest(tenant_id=TENANT, campaign_id=cid), timeout=10).campaign

        after_send = eventually(
            lambda: (c := step_state()).steps[0].status == pb.STEP_STATUS_SENT and c, what="step 0 marked sent"
        )
        first_plan = after_send.steps[1].scheduled_at.ToDatetime(tzinfo=UTC)
        planned_gap = first_plan - after_send.steps[0].sent_at.ToDatetime(tzinfo=UTC)
        assert timedelta(days=3) <= planned_gap < timedelta(days=3, minutes=15)

        # Webhook: the fake posts a signed open to the edge.
        post_event(suite, mail, "open")

        with channel(suite, "EVENTS_GRPC_PORT") as ech:
            events = epb_grpc.EventsServiceStub(ech)
            eventually(
                lambda: [
                    e
                    for e in events.ListMessageEvents(
                        epb.ListMessageEventsRequest(tenant_id=TENANT, message_id=message_id), timeout=10
                    ).events
                    if e.event_type == "open"
                ],
                what="open stored by the events service",
            )

        # React: the open rule moves step 1 to 1-2 days from the open.
        moved = eventually(
            lambda: (c := step_state()).steps[1].scheduled_at.ToDatetime(tzinfo=UTC) != first_plan and c,
            what="open rule applied to step 1",
        )
        new_plan = moved.steps[1].scheduled_at.ToDatetime(tzinfo=UTC)
        now = datetime.now(UTC)
        assert now + timedelta(hours=23) < new_plan < now + timedelta(days=2, minutes=20)

        # Reply: Inbound Parse posts the reply to the reply-to address that carries the token.
        post_reply(suite, mail, "Ada <ada@globex.example>", "Sounds good, call me.")

        canceled = eventually(
            lambda: (c := step_state()).status == pb.CAMPAIGN_STATUS_CANCELED and c,
            what="campaign canceled by the reply",
        )
        assert canceled.cancel_reason == "reply"
        assert [s.status for s in canceled.steps] == [pb.STEP_STATUS_SENT, pb.STEP_STATUS_CANCELED]

    # Every schema tells the same story.
    eventually(
        lambda: (
            sql(
                suite, f"SELECT count(*) FROM scheduler.timers WHERE group_key = 'campaign:{cid}' AND status = 'active'"
            )
            == [["0"]]
        ),
        what="campaign timers canceled",
    )
    # The step timer ends canceled at the time the open moved it to. (Its version is 3, or 2 when
    # the sent outcome and the open reached the planner in one batch and one command said both.)
    [[status, scheduled_for]] = sql(
        suite, f"SELECT status, extract(epoch FROM scheduled_for) FROM scheduler.timers WHERE key = '{cid}:step'"
    )
    assert status == "canceled"
    assert abs(float(scheduled_for) - new_plan.timestamp()) < 1
    assert sql(
        suite, f"SELECT status, provider_message_id FROM dispatcher.messages WHERE message_id = '{message_id}'"
    ) == [["sent", mail["x_message_id"]]]
    # processed and delivered come from the fake by themselves, as SendGrid posts them.
    eventually(
        lambda: (
            sorted(
                r[0]
                for r in sql(suite, f"SELECT event_type FROM events.message_events WHERE message_id = '{message_id}'")
            )
            == ["delivered", "open", "processed", "reply"]
        ),
        what="processed, delivered, open and reply stored once each",
    )
    # delivered has no rule by default: its decision says so and changes nothing. Its fact may
    # reach the planner after the reply's (each is published once the events service commits it).
    eventually(
        lambda: (
            sorted(r[0] for r in sql(suite, f"SELECT trigger FROM planner.rule_decisions WHERE campaign_id = '{cid}'"))
            == ["delivered", "open", "reply"]
        ),
        what="one rule decision each for delivered, open and reply",
    )
    ours = [m for m in http_json(f"{fake}/_fake/messages")["messages"] if m["custom_args"].get("campaign_id") == cid]
    assert len(ours) == 1, "step 1 was never sent"
