"""Drafts through all five processes: a tenant that requires approval gets a draft that sends
nothing; a person edits its first step and approves it; the mail SendGrid receives is the
edited one, and the timeline says who did what."""

from __future__ import annotations

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from support import ALWAYS, channel, http_json, sent_mail, verified_sender

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_devtools.suite import Suite

TENANT = "acme-drafts"


def test_an_approved_draft_goes_out_as_a_person_edited_it(suite: Suite) -> None:
    sender = verified_sender(suite, TENANT, "sales@acme.example")
    with channel(suite, "PLANNER_GRPC_PORT") as ch:
        campaigns = pb_grpc.CampaignServiceStub(ch)
        campaigns.UpdateTenantSettings(
            pb.UpdateTenantSettingsRequest(
                settings=pb.TenantSettings(tenant_id=TENANT, require_approval=True),
                update_mask=FieldMask(paths=["require_approval"]),
            ),
            timeout=10,
        )
        draft = campaigns.CreateCampaign(
            pb.CreateCampaignRequest(
                tenant_id=TENANT,
                lead=pb.Lead(lead_id="lead-1", company_name="Globex"),
                contact=pb.Contact(contact_id="contact-1", email="ada@globex.example", first_name="Ada"),
                product=pb.Product(product_id="product-1", name="Widget"),
                sender_identity_id=sender,
                send_window=ALWAYS,
                strategy=pb.Strategy(
                    outreach_campaign=[
                        pb.OutreachStep(type="email", timing="Day 0", subject="First draft", content="Draft copy"),
                        pb.OutreachStep(type="email", timing="Day 3", subject="Following up", content="Still there?"),
                    ]
                ),
            ),
            timeout=10,
        ).campaign
        assert draft.status == pb.CAMPAIGN_STATUS_DRAFT
        cid = draft.campaign_id

        campaigns.UpdateCampaignStep(
            pb.UpdateCampaignStepRequest(
                tenant_id=TENANT,
                campaign_id=cid,
                step_index=0,
                step=pb.CampaignStep(subject="Reviewed subject", content="Reviewed copy, {{first_name}}."),
                update_mask=FieldMask(paths=["subject", "content"]),
            ),
            timeout=10,
        )
        # Nothing of a draft reaches SendGrid.
        fake = suite.env["SENDGRID_API_HOST"]
        sent = [
            m for m in http_json(f"{fake}/_fake/messages")["messages"] if m["custom_args"].get("campaign_id") == cid
        ]
        assert sent == []

        approved = campaigns.ApproveCampaign(pb.ApproveCampaignRequest(tenant_id=TENANT, campaign_id=cid), timeout=10)
        assert approved.campaign.status == pb.CAMPAIGN_STATUS_ACTIVE

        mail = sent_mail(suite, cid, 0)
        assert mail["subject"] == "Reviewed subject"
        bodies = {part["type"]: part["value"] for part in mail["payload"]["content"]}
        assert "Reviewed copy, Ada." in bodies["text/plain"]
        assert "Draft copy" not in bodies["text/plain"]

        timeline = campaigns.GetCampaignTimeline(
            pb.GetCampaignTimelineRequest(tenant_id=TENANT, campaign_id=cid), timeout=10
        ).entries
        kinds = {entry.kind: entry.detail for entry in timeline}
        assert kinds["step_edited"].startswith("by dev-operator") and "subject" in kinds["step_edited"]
        assert kinds["approved"].startswith("by dev-operator")


def test_a_step_already_sent_cannot_be_edited(suite: Suite) -> None:
    sender = verified_sender(suite, "acme-sent-edit", "sales@acme.example")
    with channel(suite, "PLANNER_GRPC_PORT") as ch:
        campaigns = pb_grpc.CampaignServiceStub(ch)
        cid = campaigns.CreateCampaign(
            pb.CreateCampaignRequest(
                tenant_id="acme-sent-edit",
                lead=pb.Lead(lead_id="lead-1"),
                contact=pb.Contact(contact_id="contact-1", email="bo@globex.example", first_name="Bo"),
                product=pb.Product(product_id="product-1", name="Widget"),
                sender_identity_id=sender,
                send_window=ALWAYS,
                strategy=pb.Strategy(
                    outreach_campaign=[pb.OutreachStep(type="email", timing="Day 0", subject="Hi", content="Hello")]
                ),
            ),
            timeout=10,
        ).campaign.campaign_id
        sent_mail(suite, cid, 0)
        try:
            campaigns.UpdateCampaignStep(
                pb.UpdateCampaignStepRequest(
                    tenant_id="acme-sent-edit",
                    campaign_id=cid,
                    step_index=0,
                    step=pb.CampaignStep(subject="Too late"),
                    update_mask=FieldMask(paths=["subject"]),
                ),
                timeout=10,
            )
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
        else:
            raise AssertionError("a sent step was edited")
