"""Faults end no campaign and send nothing twice, on the suite as `make run` starts it (retry
waits compressed): a SendGrid outage longer than the old retry budget, and a dispatcher killed
with a whole batch at SendGrid."""

from __future__ import annotations

from support import ALWAYS, channel, eventually, http_json, sql, verified_sender

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_devtools.suite import Suite

TENANT = "e2e-outage"
CAMPAIGNS = 3
# The old budget was five attempts a message; these failures give every message more than that.
FAILURES = 45
# Send commands in flight when the dispatcher is killed.
BATCH = 8


def three_steps() -> pb.Strategy:
    return pb.Strategy(
        summary="three emails seconds apart",
        outreach_campaign=[
            pb.OutreachStep(type="email", timing=timing, subject=f"Step {i}", content=f"Body {i}")
            for i, timing in enumerate(["Day 0", "PT3S", "PT3S"])
        ],
    )


def all_completed(suite: Suite, tenant: str, ids: list[str], *, what: str) -> None:
    with channel(suite, "PLANNER_GRPC_PORT") as ch:
        campaigns = pb_grpc.CampaignServiceStub(ch)
        eventually(
            lambda: all(
                campaigns.GetCampaign(
                    pb.GetCampaignRequest(tenant_id=tenant, campaign_id=c), timeout=10
                ).campaign.status
                == pb.CAMPAIGN_STATUS_COMPLETED
                for c in ids
            ),
            what=what,
            timeout=120,
        )


def message_ids_at_sendgrid(suite: Suite, campaign_ids: list[str]) -> list[str]:
    """The message id of every request SendGrid accepted for these campaigns (repeats included)."""
    return [
        m["custom_args"]["message_id"]
        for m in http_json(f"{suite.env['SENDGRID_API_HOST']}/_fake/messages")["messages"]
        if m["custom_args"].get("campaign_id") in campaign_ids
    ]


def test_an_outage_longer_than_the_old_retry_budget_ends_no_campaign(suite: Suite) -> None:
    fake = suite.env["SENDGRID_API_HOST"]
    sender = verified_sender(suite, TENANT, "hello@outage.example")
    assert http_json(f"{fake}/_fake/failures", {"status": 503, "count": FAILURES})
    with channel(suite, "PLANNER_GRPC_PORT") as ch:
        campaigns = pb_grpc.CampaignServiceStub(ch)
        ids = [
            campaigns.CreateCampaign(
                pb.CreateCampaignRequest(
                    tenant_id=TENANT,
                    request_id=f"outage-{n}",
                    lead=pb.Lead(lead_id=f"lead-{n}", company_name="Initech"),
                    contact=pb.Contact(contact_id=f"c-{n}", email=f"peter{n}@outage.example", first_name="Peter"),
                    product=pb.Product(product_id="tps", name="TPS Autopilot"),
                    sender_identity_id=sender,
                    send_window=ALWAYS,
                    strategy=three_steps(),
                ),
                timeout=30,
            ).campaign.campaign_id
            for n in range(CAMPAIGNS)
        ]

        all_completed(suite, TENANT, ids, what="every campaign completed once SendGrid answered again")

    sent = message_ids_at_sendgrid(suite, ids)
    assert len(sent) == len(set(sent)) == CAMPAIGNS * 3, "each step once"
    # The outage really outlasted the old budget of five attempts for some messages.
    [[most]] = sql(suite, f"SELECT max(attempt_count) FROM dispatcher.messages WHERE tenant_id = '{TENANT}'")
    assert int(most) > 5
    assert sql(
        suite, f"SELECT count(*) FROM dispatcher.messages WHERE tenant_id = '{TENANT}' AND status <> 'sent'"
    ) == [["0"]]


def test_a_dispatcher_killed_mid_batch_strands_no_send_and_sends_none_twice(suite: Suite) -> None:
    """Every call of a batch is at SendGrid when the dispatcher is SIGKILLed. Restarted, it finds
    them `sending` when JetStream delivers the commands again; SendGrid's own `processed` events
    (posted by the fake by itself) settle them, whichever comes first. Minutes, not hours, and
    nothing twice."""
    tenant = "e2e-crash-batch"
    fake = suite.env["SENDGRID_API_HOST"]
    sender = verified_sender(suite, tenant, "hello@crash.example")
    http_json(f"{fake}/_fake/latency", {"seconds": 3})
    try:
        with channel(suite, "PLANNER_GRPC_PORT") as ch:
            campaigns = pb_grpc.CampaignServiceStub(ch)
            ids = [
                campaigns.CreateCampaign(
                    pb.CreateCampaignRequest(
                        tenant_id=tenant,
                        request_id=f"crash-{n}",
                        lead=pb.Lead(lead_id=f"lead-{n}"),
                        contact=pb.Contact(contact_id=f"c-{n}", email=f"milton{n}@crash.example", first_name="Milton"),
                        product=pb.Product(product_id="stapler", name="Stapler"),
                        sender_identity_id=sender,
                        send_window=ALWAYS,
                        strategy=pb.Strategy(
                            outreach_campaign=[
                                pb.OutreachStep(type="email", timing="Day 0", subject="Your stapler", content="Red."),
                                pb.OutreachStep(type="email", timing="PT2S", subject="Again", content="Still red."),
                            ]
                        ),
                    ),
                    timeout=10,
                ).campaign.campaign_id
                for n in range(BATCH)
            ]
        eventually(
            lambda: (
                sql(
                    suite,
                    f"SELECT count(*) FROM dispatcher.messages WHERE tenant_id = '{tenant}' AND status = 'sending'",
                )
                == [[str(BATCH)]]
            ),
            what="the whole batch committed `sending` with its calls at SendGrid",
        )
        suite.kill("dispatcher")
    finally:
        http_json(f"{fake}/_fake/latency", {"seconds": 0})
    suite.restart("dispatcher")

    all_completed(suite, tenant, ids, what="every campaign completed: no send left stranded")
    sent = message_ids_at_sendgrid(suite, ids)
    assert len(sent) == len(set(sent)) == BATCH * 2, "each step once"
