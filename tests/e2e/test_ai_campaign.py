"""A campaign planned by the AI strategist reacts to what the contact does.

The planner asks the local OpenAI-compatible server (the real `openai` client over HTTP) for a
strategy, then the campaign meets a no-open timeout, an open, a click and a reply, each
through the processes that own it, and every reaction shows in the campaign.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support import (
    ALWAYS,
    channel,
    eventually,
    fire_now,
    http_json,
    post_event,
    post_reply,
    sent_mail,
    sql,
    verified_sender,
)

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_devtools.suite import Suite

TENANT = "globex-ai"


def test_an_ai_planned_campaign_reacts_to_timeout_open_click_and_reply(suite: Suite) -> None:
    sender = verified_sender(suite, TENANT, "hello@globex.example")
    with channel(suite, "PLANNER_GRPC_PORT") as ch:
        campaigns = pb_grpc.CampaignServiceStub(ch)
        created = campaigns.CreateCampaign(
            pb.CreateCampaignRequest(
                tenant_id=TENANT,
                request_id="ai-1",
                lead=pb.Lead(lead_id="lead-9", company_name="Initech", industry="software"),
                contact=pb.Contact(
                    contact_id="c-9", email="peter@initech.example", first_name="Peter", time_zone="America/Chicago"
                ),
                product=pb.Product(
                    product_id="p-9",
                    name="TPS Autopilot",
                    description="Files TPS reports for you: https://tps.example/autopilot",
                    # Its own page: the only link the copy may carry (the description names it).
                    url="https://tps.example/",
                ),
                sender_identity_id=sender,
                send_window=ALWAYS,
            ),
            timeout=30,
        ).campaign
        cid = created.campaign_id
        # Answered before the model was asked: a planning worker plans it.
        assert created.status == pb.CAMPAIGN_STATUS_PLANNING and not created.steps

        def campaign() -> pb.Campaign:
            return campaigns.GetCampaign(pb.GetCampaignRequest(tenant_id=TENANT, campaign_id=cid), timeout=10).campaign

        created = eventually(lambda: (c := campaign()).status == pb.CAMPAIGN_STATUS_ACTIVE and c, what="planned")
        assert created.strategist == "openai" and created.strategist_reason == ""
        assert len(created.steps) >= 2

        # The model was asked through the real client with the facts, and the call was audited.
        asked = http_json(f"{suite.env['OPENAI_BASE_URL'].removesuffix('/v1')}/_fake/requests")["requests"]
        assert any("Initech" in str(r) for r in asked)
        assert sql(suite, f"SELECT strategist, outcome FROM planner.ai_generations WHERE campaign_id = '{cid}'") == [
            ["openai", "ok"]
        ]

        mail = sent_mail(suite, cid, 0)
        message_id = mail["custom_args"]["message_id"]
        planned = eventually(
            lambda: (c := campaign()).steps[0].status == pb.STEP_STATUS_SENT and c, what="step 0 marked sent"
        )
        step1_at = planned.steps[1].scheduled_at.ToDatetime(tzinfo=UTC)

        # No open in 48 h: the timeout fires (moved to now), finds no open, bumps step 1 by a day.
        fire_now(suite, TENANT, f"{message_id}:no_open_48h")
        bumped = eventually(
            lambda: (c := campaign()).steps[1].scheduled_at.ToDatetime(tzinfo=UTC) != step1_at and c,
            what="no-open timeout applied",
        )
        assert bumped.steps[1].scheduled_at.ToDatetime(tzinfo=UTC) - step1_at >= timedelta(days=1)

        # Open: the next step comes 1-2 days from now.
        post_event(suite, mail, "open")
        opened = eventually(
            lambda: (
                (c := campaign()).steps[1].scheduled_at.ToDatetime(tzinfo=UTC)
                < bumped.steps[1].scheduled_at.ToDatetime(tzinfo=UTC)
                and c
            ),
            what="open rule applied",
        )
        now = datetime.now(UTC)
        assert (
            now + timedelta(hours=23)
            < opened.steps[1].scheduled_at.ToDatetime(tzinfo=UTC)
            < now + timedelta(days=2, minutes=20)
        )

        # Click: the next step within the hour.
        post_event(suite, mail, "click")
        clicked = eventually(
            lambda: (c := campaign()).steps[1].scheduled_at.ToDatetime(tzinfo=UTC) < now + timedelta(hours=2) and c,
            what="click rule applied",
        )
        assert clicked.status == pb.CAMPAIGN_STATUS_ACTIVE

        # Reply: the campaign ends, and with it every timer it held.
        post_reply(suite, mail, "Peter <peter@initech.example>", "Yes, let's talk.")
        ended = eventually(
            lambda: (c := campaign()).status == pb.CAMPAIGN_STATUS_CANCELED and c, what="reply cancels the campaign"
        )
        assert ended.cancel_reason == "reply"

        timeline = campaigns.GetCampaignTimeline(
            pb.GetCampaignTimelineRequest(tenant_id=TENANT, campaign_id=cid), timeout=10
        )
        assert not timeline.unavailable
        kinds = [(e.kind, e.detail) for e in timeline.entries]
        assert ("message_sent", "MESSAGE_STATUS_SENT") in kinds
        assert {"open", "click", "reply"} <= {d for k, d in kinds if k == "event"}
        decisions = [d for k, d in kinds if k == "decision"]
        assert any(d.startswith("no_open_48h -> reschedule_step") for d in decisions)
        assert any(d.startswith("reply -> cancel_campaign") for d in decisions)

    eventually(
        lambda: (
            sql(
                suite,
                f"SELECT count(*) FROM scheduler.timers WHERE group_key = 'campaign:{cid}' AND status = 'active'",
            )
            == [["0"]]
        ),
        what="every timer of the campaign canceled",
    )
    assert (
        len(
            [
                m
                for m in http_json(f"{suite.env['SENDGRID_API_HOST']}/_fake/messages")["messages"]
                if m["custom_args"].get("campaign_id") == cid
            ]
        )
        == 1
    )
