"""A/B variant winners through all five processes: the planner sends a two-variant step to four
contacts through the dispatcher and the fake SendGrid, the two who got B answer (signed Inbound
Parse posts to the edge, counted by the events service), and the planner, asking the events
service over mutual TLS, picks B by reply rate and sends it to later contacts, whatever their
hash would pick; GetTenantStats and the timeline say so.

The suite is this module's own: the planner asks the events service at every due step here
(PLANNER_VARIANT_STATS_CACHE_SECONDS=0) instead of keeping its figures for half a minute."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from suites import running_suite
from support import ALWAYS, USER_ACCOUNT, channel, post_reply, sent_mail, sql, verified_sender
from waiting import eventually_blocking as eventually

from dripiq.events.v1 import events_service_pb2 as epb
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_devtools.suite import Suite
from dripiq_planner import variants
from dripiq_planner.strategy import StepVariant

TENANT = "acme-winners"
A = pb.StepVariant(name="A", weight=1, subject="Quick question, {{first_name}}")
B = pb.StepVariant(name="B", weight=1, subject="An idea for {{company_name}}")
SPLIT = [StepVariant(name="A", weight=1, subject="x"), StepVariant(name="B", weight=1, subject="y")]


@pytest.fixture(scope="module")
def suite(suite_servers: dict[str, str]) -> Iterator[Suite]:
    with running_suite(
        "e2e-winners",
        user_env={"SENDGRID_WEBHOOK_PUBLIC_KEY": USER_ACCOUNT.public_key_base64, **suite_servers},
        extra_env={
            "SCHEDULER_POLL_SECONDS": "0.1",
            "PLANNER_OUTBOX_POLL_SECONDS": "0.2",
            "DISPATCHER_OUTBOX_POLL_SECONDS": "0.2",
            "EVENTS_OUTBOX_POLL_SECONDS": "0.2",
            "PLANNER_VARIANT_STATS_CACHE_SECONDS": "0",
        },
    ) as running:
        yield running


def picking(name: str, count: int, prefix: str) -> list[str]:
    """Contacts whose hash alone picks `name` for step 0."""
    found = [
        c
        for c in (f"{prefix}-{i}" for i in range(200))
        if variants.choose(SPLIT, tenant_id=TENANT, contact_id=c, step_index=0).name == name
    ]
    return found[:count]


def create(campaigns: pb_grpc.CampaignServiceStub, sender: str, contact_id: str) -> str:
    step = pb.OutreachStep(type="email", timing="Day 0", subject="Hello", content="A short note.", variants=[A, B])
    return campaigns.CreateCampaign(
        pb.CreateCampaignRequest(
            tenant_id=TENANT,
            lead=pb.Lead(lead_id=f"lead-{contact_id}", company_name="Globex"),
            contact=pb.Contact(contact_id=contact_id, email=f"{contact_id}@globex.example", first_name="Ada"),
            product=pb.Product(product_id="product-1", name="Widget"),
            sender_identity_id=sender,
            send_window=ALWAYS,
            strategy=pb.Strategy(
                outreach_campaign=[step, pb.OutreachStep(type="email", timing="Day 3", subject="Again", content="Hi")]
            ),
        ),
        timeout=10,
    ).campaign.campaign_id


def test_the_variant_replied_to_more_goes_to_later_contacts(suite: Suite) -> None:
    sender = verified_sender(suite, TENANT, "sales@acme.example")
    with channel(suite, "PLANNER_GRPC_PORT") as ch:
        campaigns = pb_grpc.CampaignServiceStub(ch)
        campaigns.UpdateTenantSettings(
            pb.UpdateTenantSettingsRequest(
                settings=pb.TenantSettings(
                    tenant_id=TENANT,
                    variant_winner=pb.VariantWinnerSetting(after_sends=2, metric=pb.VARIANT_METRIC_REPLY),
                ),
                update_mask=FieldMask(paths=["variant_winner"]),
            ),
            timeout=10,
        )
        early = picking("A", 2, "early-a") + picking("B", 2, "early-b")
        mails = {c: sent_mail(suite, create(campaigns, sender, c), 0) for c in early}
        # Too few sends for a winner: each got its hash's pick.
        assert {c: m["subject"].startswith("Quick question") for c, m in mails.items()} == {
            c: "-a-" in c for c in early
        }
        for contact in early:
            if "-b-" in contact:
                post_reply(suite, mails[contact], f"Ada <{contact}@globex.example>", "Sounds good, let's talk.")

        today = datetime.now(UTC).date().isoformat()

        def replies_counted() -> bool:
            stats = campaigns.GetTenantStats(
                pb.GetTenantStatsRequest(
                    tenant_id=TENANT, start_day=today, end_day=today, group_by=[epb.STATS_DIMENSION_VARIANT]
                ),
                timeout=10,
            )
            rows = {r.variant: (r.counts.sent, r.counts.replies) for r in stats.engagement.rows}
            return rows.get("A") == (2, 0) and rows.get("B") == (2, 2)

        eventually(replies_counted, what="two sends of each variant and B's two replies counted")

        later = picking("A", 2, "later-a")
        later_ids = {c: create(campaigns, sender, c) for c in later}
        for contact, cid in later_ids.items():
            assert sent_mail(suite, cid, 0)["subject"] == "An idea for Globex", contact

        assert sql(
            suite, f"SELECT variant, metric, sends_each FROM planner.variant_winners WHERE tenant_id = '{TENANT}'"
        ) == [["B", "reply", "2"]]
        [shown] = campaigns.GetTenantStats(pb.GetTenantStatsRequest(tenant_id=TENANT), timeout=10).variant_winners
        assert (shown.product_id, shown.step_index, shown.variant, shown.rate) == ("product-1", 0, "B", 1.0)
        entries = campaigns.GetCampaignTimeline(
            pb.GetCampaignTimelineRequest(tenant_id=TENANT, campaign_id=later_ids[later[0]]), timeout=10
        ).entries
        assert any(
            "variant B: the winner by reply rate (100.0% against 0.0%, after 2 sends each)" in e.detail for e in entries
        )
