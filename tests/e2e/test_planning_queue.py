"""A batch of 1,000 campaigns without strategies, through the whole suite: BatchCreateCampaigns
answers before the model is asked, and the planning workers plan every one with the model
(the fake OpenAI answering after 0.2 s), none with the template."""

from __future__ import annotations

from support import ALWAYS, channel, eventually, http_json, sql, verified_sender

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_devtools.suite import Suite

TENANT = "initech-planning"
SIZE = 1000


def test_a_thousand_campaigns_answer_at_once_and_are_all_planned_by_the_model(suite: Suite) -> None:
    sender = verified_sender(suite, TENANT, "hello@initech-planning.example")
    fake = suite.env["OPENAI_BASE_URL"].removesuffix("/v1")
    http_json(f"{fake}/_fake/latency", {"seconds": 0.2})
    try:
        with channel(suite, "PLANNER_GRPC_PORT") as ch:
            campaigns = pb_grpc.CampaignServiceStub(ch)
            batch = pb.BatchCreateCampaignsRequest(
                tenant_id=TENANT,
                requests=[
                    pb.CreateCampaignRequest(
                        request_id=f"plan-{i}",
                        lead=pb.Lead(lead_id=f"lead-{i}", company_name="Initrode"),
                        contact=pb.Contact(contact_id=f"c-{i}", email=f"p{i}@initrode.example", first_name="Pat"),
                        product=pb.Product(product_id="p-1", name="TPS Autopilot", url="https://tps.example/"),
                        sender_identity_id=sender,
                        send_window=ALWAYS,
                    )
                    for i in range(SIZE)
                ],
            )
            # At 0.2 s a call and 8 at once, planning all of them inline would take 25 s.
            answer = campaigns.BatchCreateCampaigns(batch, timeout=20)
            assert [r.WhichOneof("result") for r in answer.results] == ["campaign"] * SIZE
            assert {r.campaign.status for r in answer.results} == {pb.CAMPAIGN_STATUS_PLANNING}

            def stats() -> pb.GetTenantStatsResponse:
                return campaigns.GetTenantStats(pb.GetTenantStatsRequest(tenant_id=TENANT), timeout=10)

            assert stats().planning.waiting > 0
            done = eventually(lambda: (s := stats()).planning.waiting == 0 and s, what="all planned", timeout=180)
    finally:
        http_json(f"{fake}/_fake/latency", {"seconds": 0})

    assert [(s.strategist, s.count) for s in done.planning.planned_today] == [("openai", SIZE)]
    assert [(s.status, s.count) for s in done.campaigns_by_status] == [(pb.CAMPAIGN_STATUS_ACTIVE, SIZE)]
    assert sql(
        suite,
        "SELECT count(*) FROM planner.contact_campaigns c JOIN planner.campaign_steps s ON s.campaign_id = c.id "
        f"WHERE c.tenant_id = '{TENANT}' AND s.step_index = 0 AND s.status IN ('scheduled', 'sending', 'sent')",
    ) == [[str(SIZE)]]
