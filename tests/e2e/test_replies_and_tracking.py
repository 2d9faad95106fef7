"""Engagement that really arrives, on the suite as `make run` starts it.

Each email is multipart with tracking set explicitly and holds to SendGrid's published Mail
Send schema; the fake SendGrid reports opens and clicks only where SendGrid could, and posts
`processed` and `delivered` by itself. A follow-up continues the thread. A person's reply
reaches the identity's own mailbox and is readable over gRPC; an out-of-office reply pauses the
campaign until the day it names; "please take me off your list" suppresses the address.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from support import (
    ALWAYS,
    active_timer,
    channel,
    eventually,
    fire_now,
    http_json,
    post_event,
    post_reply,
    sent_mail,
    sql,
    trigger_event,
    verified_sender,
)

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as dpb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as dpb_grpc
from dripiq.events.v1 import events_service_pb2 as epb
from dripiq.events.v1 import events_service_pb2_grpc as epb_grpc
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_devtools.sendgrid_schema import mail_send_schema_errors
from dripiq_devtools.suite import Suite

POSTAL_ADDRESS = "Initech, 4120 Freidrich Lane, Austin, TX 78744, USA"
PRODUCT_LINK = "https://tps.example/autopilot"


def tenant_settings(suite: Suite, tenant_id: str, **fields: Any) -> pb.TenantSettings:
    with channel(suite, "PLANNER_GRPC_PORT") as ch:
        return (
            pb_grpc.CampaignServiceStub(ch)
            .UpdateTenantSettings(
                pb.UpdateTenantSettingsRequest(
                    settings=pb.TenantSettings(tenant_id=tenant_id, **fields), update_mask=FieldMask(paths=list(fields))
                ),
                timeout=10,
            )
            .settings
        )


def start_campaign(suite: Suite, tenant_id: str, sender: str, email: str, *, time_zone: str = "UTC") -> str:
    """An AI-planned campaign for one contact; its id."""
    with channel(suite, "PLANNER_GRPC_PORT") as ch:
        created = (
            pb_grpc.CampaignServiceStub(ch)
            .CreateCampaign(
                pb.CreateCampaignRequest(
                    tenant_id=tenant_id,
                    request_id=f"create-{email}",
                    lead=pb.Lead(lead_id=f"lead-{email}", company_name="Initech", industry="software"),
                    contact=pb.Contact(
                        contact_id=f"contact-{email}", email=email, first_name="Peter", time_zone=time_zone
                    ),
                    product=pb.Product(
                        product_id="tps",
                        name="TPS Autopilot",
                        description=f"Files TPS reports for you: {PRODUCT_LINK}",
                        # The product's own page: the AI copy may link to it.
                        url=PRODUCT_LINK,
                    ),
                    sender_identity_id=sender,
                    send_window=ALWAYS,
                ),
                timeout=30,
            )
            .campaign
        )
    # Answered while planning; a planning worker asks the model and makes it active.
    assert created.status == pb.CAMPAIGN_STATUS_PLANNING
    planned = eventually(
        lambda: (c := campaign(suite, tenant_id, created.campaign_id)).status == pb.CAMPAIGN_STATUS_ACTIVE and c,
        what="campaign planned",
    )
    assert planned.strategist == "openai"
    return created.campaign_id


def campaign(suite: Suite, tenant_id: str, campaign_id: str) -> pb.Campaign:
    with channel(suite, "PLANNER_GRPC_PORT") as ch:
        return (
            pb_grpc.CampaignServiceStub(ch)
            .GetCampaign(pb.GetCampaignRequest(tenant_id=tenant_id, campaign_id=campaign_id), timeout=10)
            .campaign
        )


def decisions(suite: Suite, tenant_id: str, campaign_id: str) -> list[str]:
    with channel(suite, "PLANNER_GRPC_PORT") as ch:
        timeline = pb_grpc.CampaignServiceStub(ch).GetCampaignTimeline(
            pb.GetCampaignTimelineRequest(tenant_id=tenant_id, campaign_id=campaign_id), timeout=10
        )
    return [e.detail for e in timeline.entries if e.kind == "decision"]


def step_sent(suite: Suite, tenant_id: str, campaign_id: str, index: int) -> pb.Campaign:
    return eventually(
        lambda: (c := campaign(suite, tenant_id, campaign_id)).steps[index].status == pb.STEP_STATUS_SENT and c,
        what=f"step {index} of {campaign_id} marked sent",
    )


def event_types(suite: Suite, tenant_id: str, message_id: str) -> set[str]:
    with channel(suite, "EVENTS_GRPC_PORT") as ch:
        listed = epb_grpc.EventsServiceStub(ch).ListMessageEvents(
            epb.ListMessageEventsRequest(tenant_id=tenant_id, message_id=message_id, page_size=100), timeout=10
        )
    return {e.event_type for e in listed.events}


def inbound(suite: Suite, tenant_id: str, campaign_id: str) -> list[epb.InboundMessage]:
    with channel(suite, "EVENTS_GRPC_PORT") as ch:
        return list(
            epb_grpc.EventsServiceStub(ch)
            .ListInboundMessages(
                epb.ListInboundMessagesRequest(tenant_id=tenant_id, campaign_id=campaign_id, page_size=10), timeout=10
            )
            .messages
        )


def forwards_to(suite: Suite, mailbox: str) -> list[dict[str, Any]]:
    return [
        m
        for m in http_json(f"{suite.env['SENDGRID_API_HOST']}/_fake/messages")["messages"]
        if m["to_emails"] == [mailbox] and "reply-forward" in m["categories"]
    ]


def parts(mail: dict[str, Any]) -> dict[str, str]:
    return {part["type"]: part["value"] for part in mail["payload"]["content"]}


def test_tracked_multipart_mail_reports_engagement_and_threads_its_follow_up(suite: Suite) -> None:
    tenant = "e2e-tracked"
    tenant_settings(suite, tenant, postal_address=POSTAL_ADDRESS)
    sender = verified_sender(suite, tenant, "hello@initech.example")
    cid = start_campaign(suite, tenant, sender, "peter@tracked.example")

    first = sent_mail(suite, cid, 0)
    payload = first["payload"]
    # As SendGrid's own description of POST /v3/mail/send has it, and multipart/alternative.
    assert mail_send_schema_errors(payload) == []
    assert [p["type"] for p in payload["content"]] == ["text/plain", "text/html"]
    assert payload["tracking_settings"] == {
        "open_tracking": {"enable": True},
        "click_tracking": {"enable": True, "enable_text": False},
        "subscription_tracking": {"enable": False},
    }
    text, html = parts(first)["text/plain"], parts(first)["text/html"]
    unsubscribe = re.search(r"<(https?://[^>]+)>", first["headers"]["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
    for part in (text, html):
        assert POSTAL_ADDRESS in part
        assert unsubscribe.replace("&", "&amp;") in part or unsubscribe in part
    assert "<" not in text, "the text part stays readable"
    assert f'href="{PRODUCT_LINK}"' in html
    assert first["open_untracked_reason"] is None
    assert [link["url"] for link in first["tracked_links"]][:1] == [PRODUCT_LINK]

    # processed and delivered come by themselves, as from SendGrid: nobody asked for them.
    message_id = first["custom_args"]["message_id"]
    eventually(
        lambda: {"processed", "delivered"} <= event_types(suite, tenant, message_id),
        what="processed and delivered posted by the fake SendGrid by itself",
    )
    step_sent(suite, tenant, cid, 0)

    post_event(suite, first, "open")
    post_event(suite, first, "click", {"url": PRODUCT_LINK})
    eventually(lambda: {"open", "click"} <= event_types(suite, tenant, message_id), what="open and click stored")
    # A link that is not in the mail cannot be clicked.
    status, refused = trigger_event(suite, first, "click", {"url": "https://elsewhere.example/"})
    assert status == 409, refused

    # The planner moved step 1 for the open and for the click, in whichever order they came;
    # a timer moved before the scheduler has the last of those would be moved again by it.
    eventually(
        lambda: {"open", "click"} <= {d.split(" ->")[0] for d in decisions(suite, tenant, cid)},
        what="the open and click rules applied",
    )
    eventually(
        lambda: (
            active_timer(suite, tenant, f"{cid}:step").fire_at == campaign(suite, tenant, cid).steps[1].scheduled_at
        ),
        what="the scheduler holding step 1 where the planner put it",
    )

    # The follow-up has no subject of its own: it continues the thread.
    fire_now(suite, tenant, f"{cid}:step")
    follow_up = sent_mail(suite, cid, 1)
    assert mail_send_schema_errors(follow_up["payload"]) == []
    assert follow_up["subject"] == f"Re: {first['subject']}"
    assert follow_up["headers"]["In-Reply-To"] == first["headers"]["Message-ID"]
    assert first["headers"]["Message-ID"] in follow_up["headers"]["References"].split()

    # A reply to the follow-up is matched to it, and ends the campaign.
    post_reply(suite, follow_up, "Peter <peter@tracked.example>", "Yes, let's talk on Tuesday.")
    [reply] = eventually(lambda: inbound(suite, tenant, cid), what="the reply stored")
    assert (reply.step_index, reply.message_id) == (1, follow_up["custom_args"]["message_id"])
    eventually(
        lambda: campaign(suite, tenant, cid).status == pb.CAMPAIGN_STATUS_CANCELED, what="the reply ends the campaign"
    )


def test_no_open_or_click_where_sendgrid_could_not_track_and_no_open_timeouts_unarmed(suite: Suite) -> None:
    tenant = "e2e-private"
    settings = tenant_settings(suite, tenant, postal_address=POSTAL_ADDRESS, open_tracking=False, click_tracking=False)
    assert (settings.open_tracking, settings.click_tracking) == (False, False)
    sender = verified_sender(suite, tenant, "hello@private.example")
    cid = start_campaign(suite, tenant, sender, "peter@private.example")

    mail = sent_mail(suite, cid, 0)
    assert mail_send_schema_errors(mail["payload"]) == []
    assert mail["payload"]["tracking_settings"]["open_tracking"] == {"enable": False}
    assert mail["payload"]["tracking_settings"]["click_tracking"]["enable"] is False
    assert mail["open_untracked_reason"]
    assert mail["tracked_links"] == []

    # SendGrid has no way to see an open or a click of this mail; the fake does not invent one.
    for event in ("open", "click"):
        status, refused = trigger_event(suite, mail, event)
        assert status == 409, refused
    message_id = mail["custom_args"]["message_id"]
    eventually(lambda: "delivered" in event_types(suite, tenant, message_id), what="delivered all the same")
    assert not {"open", "click"} & event_types(suite, tenant, message_id)

    # The strategy's no-open timeout would fire for every contact: it is not armed, and the
    # timeline says why.
    step_sent(suite, tenant, cid, 0)
    unarmed = eventually(
        lambda: [d for d in decisions(suite, tenant, cid) if "not armed" in d], what="the unarmed timeout explained"
    )
    assert any(d.startswith("no_open_") and "open tracking is off for this tenant" in d for d in unarmed)
    assert sql(suite, f"SELECT count(*) FROM scheduler.timers WHERE key LIKE '{message_id}:no_open_%'") == [["0"]]


def test_a_reply_reaches_the_identitys_mailbox_and_is_readable_over_grpc(suite: Suite) -> None:
    tenant = "e2e-replies"
    mailbox = "peter.rep@initech-sales.example"
    tenant_settings(suite, tenant, postal_address=POSTAL_ADDRESS)
    sender = verified_sender(suite, tenant, "hello@replies.example", forward_to=mailbox)
    cid = start_campaign(suite, tenant, sender, "bill@replies.example")
    mail = sent_mail(suite, cid, 0)

    said = "Yes, let's talk next week.\n\nOn Mon, Sales wrote:\n> Files TPS reports for you"
    post_reply(suite, mail, "Bill Lumbergh <bill@replies.example>", said)

    # Forwarded once, from the identity, to its mailbox, answerable to the contact.
    [forward] = eventually(lambda: forwards_to(suite, mailbox), what="the reply forwarded to the identity's mailbox")
    assert mail_send_schema_errors(forward["payload"]) == []
    assert forward["from_email"] == "hello@replies.example"
    assert forward["reply_to"] == "bill@replies.example"
    assert forward["subject"] == f"Fwd: Re: {mail['subject']}"
    assert "> Yes, let's talk next week." in parts(forward)["text/plain"]
    assert forward["headers"]["Auto-Submitted"] == "auto-forwarded"

    [listed] = eventually(lambda: inbound(suite, tenant, cid), what="the reply listed over gRPC")
    assert (listed.kind, listed.classification, listed.classified_by) == ("reply", "interested", "ai")
    assert (listed.from_email, listed.message_id, listed.step_index) == (
        "bill@replies.example",
        mail["custom_args"]["message_id"],
        0,
    )
    assert listed.snippet == "Yes, let's talk next week."
    with channel(suite, "EVENTS_GRPC_PORT") as ch:
        events = epb_grpc.EventsServiceStub(ch)
        got = events.GetInboundMessage(
            epb.GetInboundMessageRequest(tenant_id=tenant, inbound_id=listed.inbound_id), timeout=10
        ).message
        assert got.text == said
        # Scoped by tenant: another tenant cannot read it.
        with pytest.raises(grpc.RpcError) as other:
            events.GetInboundMessage(
                epb.GetInboundMessageRequest(tenant_id="e2e-someone-else", inbound_id=listed.inbound_id), timeout=10
            )
        assert other.value.code() == grpc.StatusCode.NOT_FOUND

    eventually(
        lambda: campaign(suite, tenant, cid).status == pb.CAMPAIGN_STATUS_CANCELED, what="the reply ends the campaign"
    )
    assert len(forwards_to(suite, mailbox)) == 1


def test_an_out_of_office_reply_pauses_until_the_day_it_names_then_resumes(suite: Suite) -> None:
    tenant = "e2e-ooo"
    paris = ZoneInfo("Europe/Paris")
    tenant_settings(suite, tenant, postal_address=POSTAL_ADDRESS)
    sender = verified_sender(suite, tenant, "hello@ooo.example", forward_to="rep@ooo-sales.example")
    cid = start_campaign(suite, tenant, sender, "michael@ooo.example", time_zone="Europe/Paris")
    mail = sent_mail(suite, cid, 0)
    step_sent(suite, tenant, cid, 0)

    back: date = datetime.now(paris).date() + timedelta(days=10)
    post_reply(
        suite,
        mail,
        "michael@ooo.example",
        f"Merci pour votre message. Je suis absent, de retour le {back.day} {FRENCH_MONTHS[back.month - 1]} "
        f"{back.year}.\n\nThank you for your email.",
        subject=f"Réponse automatique : {mail['subject']}",
        headers={"Auto-Submitted": "auto-replied"},
    )

    paused = eventually(
        lambda: (c := campaign(suite, tenant, cid)).status == pb.CAMPAIGN_STATUS_PAUSED and c,
        what="the out-of-office reply pauses the campaign",
    )
    assert paused.steps[1].status != pb.STEP_STATUS_SENT
    assert any(
        d.startswith("auto_reply -> pause_campaign") and f"paused until {back.isoformat()}" in d
        for d in decisions(suite, tenant, cid)
    )
    [auto] = eventually(lambda: inbound(suite, tenant, cid), what="the auto-reply stored")
    assert (auto.kind, auto.return_date) == ("auto_reply", back.isoformat())
    # It resumes at the start of the return day, in the contact's time zone.
    resume = active_timer(suite, tenant, f"{cid}:resume")
    assert resume.fire_at.ToDatetime(tzinfo=UTC) == datetime.combine(back, time.min, tzinfo=paris)
    # An automatic reply is nobody's to read: it is not forwarded.
    assert forwards_to(suite, "rep@ooo-sales.example") == []

    # That day comes (the timer moved to now, as an operator may): the campaign goes on.
    fire_now(suite, tenant, f"{cid}:resume")
    eventually(lambda: campaign(suite, tenant, cid).status == pb.CAMPAIGN_STATUS_ACTIVE, what="the campaign resumed")
    active_timer(suite, tenant, f"{cid}:step")


FRENCH_MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


def test_please_take_me_off_your_list_suppresses_the_address(suite: Suite) -> None:
    tenant = "e2e-unsubscribe"
    tenant_settings(suite, tenant, postal_address=POSTAL_ADDRESS)
    sender = verified_sender(suite, tenant, "hello@unsub.example")
    cid = start_campaign(suite, tenant, sender, "Milton@Unsub.example")
    mail = sent_mail(suite, cid, 0)

    post_reply(suite, mail, "Milton <milton@unsub.example>", "Please take me off your list.")

    def suppressions() -> list[tuple[str, str]]:
        with channel(suite, "DISPATCHER_GRPC_PORT") as ch:
            listed = dpb_grpc.SuppressionServiceStub(ch).ListSuppressions(
                dpb.ListSuppressionsRequest(tenant_id=tenant), timeout=10
            )
        return [(s.address, s.reason) for s in listed.suppressions]

    assert eventually(suppressions, what="the address suppressed") == [("milton@unsub.example", "unsubscribe_request")]
    ended = eventually(
        lambda: (c := campaign(suite, tenant, cid)).status == pb.CAMPAIGN_STATUS_CANCELED and c,
        what="the campaign canceled",
    )
    assert ended.cancel_reason == "unsubscribe request by reply"
    [listed] = inbound(suite, tenant, cid)
    assert listed.classification == "unsubscribe_request"


@pytest.mark.parametrize(
    ("reason", "status", "suppressed"),
    [
        ("Bounced Address", pb.CAMPAIGN_STATUS_CANCELED, [("bob@drop.example", "bounce")]),
        ("Spam Content", pb.CAMPAIGN_STATUS_NEEDS_ATTENTION, []),
    ],
)
def test_a_message_sendgrid_drops_fails_and_a_lasting_reason_suppresses_the_address(
    suite: Suite, reason: str, status: int, suppressed: list[tuple[str, str]]
) -> None:
    tenant = f"e2e-drop-{reason.split()[0].lower()}"
    tenant_settings(suite, tenant, postal_address=POSTAL_ADDRESS)
    sender = verified_sender(suite, tenant, "hello@drop.example")
    cid = start_campaign(suite, tenant, sender, "bob@drop.example")
    mail = sent_mail(suite, cid, 0)
    step_sent(suite, tenant, cid, 0)

    # SendGrid's own `dropped` entry, signed and posted to the edge as SendGrid posts it.
    post_event(suite, mail, "dropped", {"reason": reason, "status": "5.0.0"})

    message_id = mail["custom_args"]["message_id"]

    def message() -> dpb.Message:
        with channel(suite, "DISPATCHER_GRPC_PORT") as ch:
            return (
                dpb_grpc.DispatcherServiceStub(ch)
                .GetMessage(dpb.GetMessageRequest(tenant_id=tenant, message_id=message_id), timeout=10)
                .message
            )

    failed = eventually(lambda: (m := message()).status == dpb.MESSAGE_STATUS_FAILED and m, what="message failed")
    assert failed.last_error == f"dropped by SendGrid: {reason}"
    ended = eventually(lambda: (c := campaign(suite, tenant, cid)).status == status and c, what="campaign settled")
    assert ended.steps[0].status == pb.STEP_STATUS_FAILED
    with channel(suite, "DISPATCHER_GRPC_PORT") as ch:
        listed = dpb_grpc.SuppressionServiceStub(ch).ListSuppressions(
            dpb.ListSuppressionsRequest(tenant_id=tenant), timeout=10
        )
    assert [(s.address, s.reason) for s in listed.suppressions] == suppressed
