"""Proto <-> domain for the events service, in one place: outcomes from the bus and the API's
requests read into plain values, and domain values written as engagement facts, dispatcher
commands and the API's answers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.events.v1 import events_service_pb2 as api_pb
from dripiq.events.v1 import messages_pb2
from dripiq_common import validation
from dripiq_common.errors import InvalidArgument, PermanentMessageError
from dripiq_events import reply_text
from dripiq_events.domain import AUTO_REPLY, MAX_ID_LENGTH, REPLY, UNSUBSCRIBE, Cohort, NewEvent, Outbound, SentMessage
from dripiq_events.models import TENANT_STATS_METRICS
from dripiq_events.queries import Page
from dripiq_events.rollups import SENT_METRIC


def sent_message(outcome: dispatcher_pb.MessageOutcome, *, now: datetime) -> SentMessage:
    """Our copy of a SENT outcome; PermanentMessageError for one that names no valid tenant or
    no message."""
    for name in ("tenant_id", "message_id"):
        if not getattr(outcome, name):
            raise PermanentMessageError(f"MessageOutcome without {name}")
    if not validation.is_tenant(outcome.tenant_id):
        raise PermanentMessageError(f"MessageOutcome with an invalid tenant_id {outcome.tenant_id!r}")
    sent_at = outcome.occurred_at.ToDatetime(tzinfo=UTC) if outcome.HasField("occurred_at") else now
    return SentMessage(
        outbound=Outbound(
            message_id=outcome.message_id,
            tenant_id=outcome.tenant_id,
            campaign_id=outcome.campaign_id,
            step_index=outcome.step_index,
            contact_id=outcome.contact_id,
            to_email=outcome.to_email,
            cohort=cohort(outcome, sent_at),
        ),
        subject=outcome.subject,
        provider_message_id=outcome.provider_message_id or None,
        rfc_message_id=outcome.rfc_message_id or None,
        sent_at=sent_at,
    )


def cohort(outcome: dispatcher_pb.MessageOutcome, sent_at: datetime) -> Cohort | None:
    """Where a sent message counts in its tenant's analytics: its UTC day of sending and what the
    outcome says it was sent as. None (its campaign's stats only) when a value is longer than
    an id may be: the message is still kept, and its events still tied to it."""
    values = {
        "product_id": outcome.product_id,
        "sender_identity_id": outcome.sender_identity_id,
        "strategist": outcome.strategist,
        "variant": outcome.variant,
        "channel": outcome.channel,
    }
    if any(len(v) > MAX_ID_LENGTH for v in values.values()):
        return None
    return Cohort(day=sent_at.astimezone(UTC).date(), **values)


def received_at(raw: messages_pb2.RawWebhook, *, now: datetime) -> datetime:
    """When the edge took the request; `now` for one that does not say."""
    return raw.received_at.ToDatetime(tzinfo=UTC) if raw.HasField("received_at") else now


def time_bound(request: api_pb.ListMessageEventsRequest, name: str) -> datetime | None:
    """A time bound of the request, if set; INVALID_ARGUMENT naming it if it cannot be one."""
    if not request.HasField(name):
        return None
    try:
        return getattr(request, name).ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidArgument(name, f"not a valid time: {exc}") from None


def engagement_event(event: NewEvent, *, event_id: int) -> messages_pb2.EngagementEvent:
    """The engagement fact for a newly stored, matched event."""
    if not event.matched or event.tenant_id is None:
        raise ValueError("only matched events are published")
    occurred = event.occurred_at
    # Fields left at their defaults are not passed, and the timestamp goes in as a dict: both
    # cost less than setting them (thousands of facts a second).
    fact = messages_pb2.EngagementEvent(
        tenant_id=event.tenant_id,
        event_id=str(event_id),
        message_id=event.message_id or "",
        campaign_id=event.campaign_id or "",
        step_index=event.step_index or 0,
        contact_id=event.contact_id or "",
        event_type=event.event_type,
        email=event.email or "",
        provider_message_id=event.provider_message_id or "",
        occurred_at={"seconds": math.floor(occurred.timestamp()), "nanos": occurred.microsecond * 1000},
    )
    if event.machine_open:
        fact.machine_open = True
    if event.url:
        fact.url = event.url
    if event.reason:
        fact.reason = event.reason
    if event.reply is not None:
        fact.inbound_id = str(event.reply.inbound_id)
        fact.snippet = event.reply.snippet
        fact.reply_class = event.reply.reply_class
        if event.reply.return_date is not None:
            fact.return_date = event.reply.return_date.isoformat()
    return fact


def forward_reply_command(
    outbound: Outbound | None, *, message_id: str, inbound_id: int, row: dict[str, Any], received_at: datetime
) -> dispatcher_pb.ForwardReplyCommand:
    """What the dispatcher needs to forward a person's reply to the salesperson behind it.
    Without our record of the message (`outbound` None) it names no tenant or campaign: the
    dispatcher finds them from `message_id`, which the signed reply address proved."""
    command = dispatcher_pb.ForwardReplyCommand(
        tenant_id=outbound.tenant_id if outbound else "",
        inbound_id=str(inbound_id),
        message_id=message_id,
        campaign_id=outbound.campaign_id if outbound else "",
        from_email=row["from_email"],
        subject=row["subject"],
        text=row["text_body"] or reply_text.plain_text(row["html_body"]),
        html=row["html_body"],
        reply_class=row["classification"] or "",
    )
    command.received_at.FromDatetime(received_at)
    return command


def suppress_by_message_command(
    *, tenant_id: str, message_id: str, occurred_at: datetime
) -> dispatcher_pb.SuppressByMessageCommand:
    """The dispatcher keeps every message's address: it suppresses the one this message went to."""
    command = dispatcher_pb.SuppressByMessageCommand(tenant_id=tenant_id, message_id=message_id, reason=UNSUBSCRIBE)
    command.occurred_at.FromDatetime(occurred_at)
    return command


def message_event(row: Any) -> api_pb.MessageEvent:
    """A stored message_events row as the API's event."""
    event = api_pb.MessageEvent(
        event_id=str(row.id),
        tenant_id=row.tenant_id,
        message_id=row.message_id or "",
        campaign_id=row.campaign_id or "",
        step_index=row.step_index or 0,
        event_type=row.event_type,
        provider=row.provider,
        provider_event_id=row.provider_event_id,
        machine_open=row.machine_open,
        url=row.url or "",
    )
    event.occurred_at.FromDatetime(row.occurred_at)
    return event


def inbound_message(row: Any) -> api_pb.InboundMessage:
    """A stored inbound_emails row as the API's inbound message."""
    message = api_pb.InboundMessage(
        inbound_id=str(row.id),
        tenant_id=row.tenant_id or "",
        from_email=row.from_email,
        subject=row.subject,
        text=row.text_body,
        html=row.html_body,
        campaign_id=row.campaign_id or "",
        step_index=row.step_index or 0,
        message_id=row.message_id or "",
        kind=AUTO_REPLY if row.is_auto_reply else REPLY,
        classification=row.classification or "",
        classified_by=row.classified_by or "",
        return_date=row.return_date.isoformat() if row.return_date else "",
        snippet=row.snippet,
    )
    message.received_at.FromDatetime(row.received_at)
    return message


def engagement_counts(values: Mapping[str, int]) -> api_pb.EngagementCounts:
    """Rollup values by metric name as the API's counts (absent metrics are zero)."""
    return api_pb.EngagementCounts(
        sent=values.get(SENT_METRIC, 0),
        delivered=values.get("delivered", 0),
        unique_human_opens=values.get("unique_human_opens", 0),
        machine_opens=values.get("machine_opens", 0),
        human_open_events=values.get("human_open_events", 0),
        unique_clicks=values.get("unique_clicks", 0),
        click_events=values.get("click_events", 0),
        replies=values.get("replies", 0),
        auto_replies=values.get("auto_replies", 0),
        bounces=values.get("bounces", 0),
        unsubscribes=values.get("unsubscribes", 0),
        spam_reports=values.get("spam_reports", 0),
    )


def message_events_response(page: Page) -> api_pb.ListMessageEventsResponse:
    return api_pb.ListMessageEventsResponse(
        events=[message_event(row) for row in page.rows], next_page_token=page.next_page_token
    )


def inbound_messages_response(page: Page) -> api_pb.ListInboundMessagesResponse:
    return api_pb.ListInboundMessagesResponse(
        messages=[inbound_message(row) for row in page.rows], next_page_token=page.next_page_token
    )


def step_funnel_response(
    campaign_id: str,
    steps: Mapping[int, Mapping[str, int]],
    variants: Mapping[int, Mapping[str, Mapping[str, int]]],
) -> api_pb.GetStepFunnelResponse:
    """Each step's counts, with its variants' in name order."""
    return api_pb.GetStepFunnelResponse(
        campaign_id=campaign_id,
        steps=[
            api_pb.StepCounts(
                step_index=index,
                counts=engagement_counts(values),
                variants=[
                    api_pb.VariantCounts(variant=name, counts=engagement_counts(counts))
                    for name, counts in sorted(variants.get(index, {}).items())
                ],
            )
            for index, values in sorted(steps.items())
        ],
    )


# Each group_by value, as the name of the rollups' column it groups by.
STATS_DIMENSIONS = {
    api_pb.STATS_DIMENSION_DAY: "day",
    api_pb.STATS_DIMENSION_PRODUCT: "product_id",
    api_pb.STATS_DIMENSION_SENDER_IDENTITY: "sender_identity_id",
    api_pb.STATS_DIMENSION_STRATEGIST: "strategist",
    api_pb.STATS_DIMENSION_STEP_INDEX: "step_index",
    api_pb.STATS_DIMENSION_VARIANT: "variant",
    api_pb.STATS_DIMENSION_CHANNEL: "channel",
}


def stats_group_by(request: api_pb.GetTenantStatsRequest) -> list[str]:
    """The columns a request groups by, in its order; INVALID_ARGUMENT naming group_by for a
    value that is no dimension (UNSPECIFIED, or one this service does not know)."""
    names = []
    for value in request.group_by:
        if value not in STATS_DIMENSIONS:
            raise InvalidArgument("group_by", f"{value} is not a dimension (STATS_DIMENSION_UNSPECIFIED or unknown)")
        names.append(STATS_DIMENSIONS[value])
    return names


def stats_filters(request: api_pb.GetTenantStatsRequest) -> dict[str, list[str | int]]:
    f = request.filter
    return {
        "product_id": list(f.product_ids),
        "sender_identity_id": list(f.sender_identity_ids),
        "strategist": list(f.strategists),
        "step_index": list(f.step_indexes),
        "variant": list(f.variants),
        "channel": list(f.channels),
    }


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def tenant_stats_row(row: Mapping[str, Any]) -> api_pb.TenantStatsRow:
    counts = {m: int(row[m]) for m in TENANT_STATS_METRICS}
    sent = counts["sent"]
    keys = {
        name: row[name]
        for name in ("product_id", "sender_identity_id", "strategist", "variant", "channel", "step_index")
        if name in row
    }
    if "day" in row:
        keys["day"] = row["day"].isoformat()
    return api_pb.TenantStatsRow(
        **keys,
        counts=engagement_counts(counts),
        rates=api_pb.EngagementRates(
            delivery_rate=_share(counts["delivered"], sent),
            human_open_rate=_share(counts["unique_human_opens"], sent),
            click_rate=_share(counts["unique_clicks"], sent),
            reply_rate=_share(counts["replies"], sent),
            bounce_rate=_share(counts["bounces"], sent),
            unsubscribe_rate=_share(counts["unsubscribes"], sent),
        ),
    )


def tenant_stats_response(page: Page) -> api_pb.GetTenantStatsResponse:
    return api_pb.GetTenantStatsResponse(
        rows=[tenant_stats_row(row) for row in page.rows], next_page_token=page.next_page_token
    )


def campaign_stats_response(campaign_id: str, totals: Mapping[str, int]) -> api_pb.GetCampaignStatsResponse:
    return api_pb.GetCampaignStatsResponse(campaign_id=campaign_id, totals=engagement_counts(totals))
