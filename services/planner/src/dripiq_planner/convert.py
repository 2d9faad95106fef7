"""CampaignService messages to and from the planner's own types, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.protobuf import json_format
from sqlalchemy import Row

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common import validation
from dripiq_common.errors import DomainError, InvalidArgument
from dripiq_common.status_codes import status_for
from dripiq_common.windows import SendWindow
from dripiq_planner import calendars, rules, variants
from dripiq_planner.facts import check_and_normalise
from dripiq_planner.planning import CampaignRequest, Draft
from dripiq_planner.state import CampaignStatus, StepStatus
from dripiq_planner.strategist.ai_variants import VariantFocus
from dripiq_planner.strategy import AdaptiveRule, Cadence, OutreachStep, RuleAction, StepVariant, Strategy
from dripiq_planner.tenants import ReplyStops, TenantDefaults

_CAMPAIGN_STATUS = {
    CampaignStatus.PLANNING: pb.CAMPAIGN_STATUS_PLANNING,
    CampaignStatus.ACTIVE: pb.CAMPAIGN_STATUS_ACTIVE,
    CampaignStatus.PAUSED: pb.CAMPAIGN_STATUS_PAUSED,
    CampaignStatus.NEEDS_ATTENTION: pb.CAMPAIGN_STATUS_NEEDS_ATTENTION,
    CampaignStatus.COMPLETED: pb.CAMPAIGN_STATUS_COMPLETED,
    CampaignStatus.CANCELED: pb.CAMPAIGN_STATUS_CANCELED,
    CampaignStatus.DRAFT: pb.CAMPAIGN_STATUS_DRAFT,
}
_STATUS_NAMES = {v: k for k, v in _CAMPAIGN_STATUS.items()}
_REPLY_STOPS = {
    ReplyStops.CAMPAIGN: pb.REPLY_STOPS_CAMPAIGN,
    ReplyStops.CONTACT: pb.REPLY_STOPS_CONTACT,
    ReplyStops.COMPANY: pb.REPLY_STOPS_COMPANY,
}
_STEP_STATUS = {
    StepStatus.PENDING: pb.STEP_STATUS_PENDING,
    StepStatus.SCHEDULED: pb.STEP_STATUS_SCHEDULED,
    StepStatus.SENDING: pb.STEP_STATUS_SENDING,
    StepStatus.SENT: pb.STEP_STATUS_SENT,
    StepStatus.FAILED: pb.STEP_STATUS_FAILED,
    StepStatus.SKIPPED: pb.STEP_STATUS_SKIPPED,
    StepStatus.CANCELED: pb.STEP_STATUS_CANCELED,
}


def campaign_request(request: pb.CreateCampaignRequest) -> CampaignRequest:
    """A create request read and checked; InvalidArgument names the first bad field."""
    validation.tenant_id(request.tenant_id)
    if len(request.request_id) > 128:
        raise InvalidArgument("request_id", "must be at most 128 characters")
    validation.required(request.contact.contact_id, "contact.contact_id", max_length=128)
    validation.email(request.contact.email, "contact.email")
    validation.required(request.lead.lead_id, "lead.lead_id", max_length=128)
    validation.required(request.product.product_id, "product.product_id", max_length=128)
    # Checked again at send time by the dispatcher, which owns identities and their verification.
    validation.required(request.sender_identity_id, "sender_identity_id", max_length=128)
    if request.contact.time_zone:
        try:
            ZoneInfo(request.contact.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidArgument(
                "contact.time_zone", f"unknown IANA time zone {request.contact.time_zone!r}"
            ) from None
    window = window_from_proto(request.send_window, "send_window")
    if request.contact.subdivision and not request.contact.country:
        raise InvalidArgument("contact.subdivision", "needs contact.country")
    holiday_calendar = (
        calendars.calendar_code(request.contact.country, request.contact.subdivision, "contact.country")
        if request.contact.country
        else ""
    )
    contact, lead, product = request.contact, request.lead, request.product
    facts = check_and_normalise(
        {
            "contact_id": contact.contact_id,
            "email": contact.email,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "title": contact.title,
            "time_zone": contact.time_zone,
            "lead_id": lead.lead_id,
            "company_name": lead.company_name,
            "industry": lead.industry,
            "product_id": product.product_id,
            "product_name": product.name,
            "product_description": product.description,
            "product_url": product.url,
        }
    )
    return CampaignRequest(
        tenant_id=request.tenant_id,
        request_id=request.request_id,
        lead_id=lead.lead_id,
        contact_id=contact.contact_id,
        email=contact.email,
        product_id=product.product_id,
        sender_identity_id=request.sender_identity_id,
        time_zone=contact.time_zone,
        window=window,
        strategy=strategy_from_proto(request.strategy) if request.HasField("strategy") else None,
        facts=facts,
        holiday_calendar=holiday_calendar,
    )


def campaign_requests(requests: Sequence[pb.CreateCampaignRequest]) -> list[CampaignRequest | DomainError]:
    """Each request read on its own: one that cannot be read is its error, the others go on."""
    out: list[CampaignRequest | DomainError] = []
    for request in requests:
        try:
            out.append(campaign_request(request))
        except DomainError as exc:
            out.append(exc)
    return out


def batch_results_to_proto(results: Sequence[pb.Campaign | DomainError]) -> pb.BatchCreateCampaignsResponse:
    """Each item's campaign, or its error as the google.rpc.Status a single create would give."""
    return pb.BatchCreateCampaignsResponse(
        results=[
            pb.BatchCreateCampaignResult(error=status_for(r))
            if isinstance(r, DomainError)
            else pb.BatchCreateCampaignResult(campaign=r)
            for r in results
        ]
    )


def preview_to_proto(draft: Draft, times: Sequence[datetime]) -> pb.PreviewStrategyResponse:
    """A planned campaign's strategy and its steps at the times they would go out."""
    steps = []
    for i, (step, due) in enumerate(zip(draft.strategy.outreach_campaign, times, strict=True)):
        item = pb.CampaignStep(
            step_index=i,
            channel=step.type,
            status=pb.STEP_STATUS_PENDING,
            relative_delay_seconds=draft.delays[i],
            subject=step.subject,
            content=step.content,
            call_to_action=step.call_to_action,
            timing=step.timing,
            variants=[variant_to_proto(v) for v in step.variants],
            send_window=step_window_to_proto(step.send_window),
        )
        item.scheduled_at.FromDatetime(due)
        steps.append(item)
    return pb.PreviewStrategyResponse(
        strategy=strategy_to_proto(draft.strategy.to_json()), steps=steps, strategist=draft.strategist
    )


def reply_stops_from_proto(value: int) -> ReplyStops:
    if value == pb.REPLY_STOPS_UNSPECIFIED:
        return ReplyStops.CAMPAIGN
    for stops, number in _REPLY_STOPS.items():
        if number == value:
            return stops
    raise InvalidArgument("settings.reply_stops", f"unknown value {value}")


def status_to_proto(status: str) -> pb.CampaignStatus:
    return _CAMPAIGN_STATUS[CampaignStatus(status)]


def status_filter(status: pb.CampaignStatus) -> CampaignStatus | None:
    """The status a list asks for; None (unspecified) asks for every status."""
    if status and status not in _STATUS_NAMES:
        raise InvalidArgument("status", f"unknown campaign status {status}")
    return _STATUS_NAMES.get(status)


def window_to_proto(window: SendWindow) -> pb.SendWindow:
    return pb.SendWindow(weekdays=sorted(window.weekdays), start_hour=window.start_hour, end_hour=window.end_hour)


def step_window_to_proto(window: dict[str, Any] | None) -> pb.SendWindow | None:
    """A step's own window as stored (SendWindow.to_json), or None when it has none."""
    return window_to_proto(SendWindow.from_json(window)) if window else None


def window_from_proto(window: pb.SendWindow, field: str) -> SendWindow | None:
    """None for an empty window (the caller falls back to the next default)."""
    if not window.weekdays and not window.start_hour and not window.end_hour:
        return None
    return rules.checked_window(list(window.weekdays), window.start_hour, window.end_hour, field)


def strategy_from_proto(strategy: pb.Strategy) -> Strategy:
    return Strategy(
        summary=strategy.summary,
        cadence=Cadence(interval=strategy.cadence.interval, total_duration=strategy.cadence.total_duration),
        outreach_campaign=[
            OutreachStep(
                type=s.type,
                timing=s.timing,
                subject=s.subject,
                content=s.content,
                call_to_action=s.call_to_action,
                thread=s.thread if s.HasField("thread") else None,
                variants=[variant_from_proto(v) for v in s.variants],
                send_window=window.to_json()
                if (window := window_from_proto(s.send_window, f"strategy.outreachCampaign[{i}].sendWindow"))
                else None,
            )
            for i, s in enumerate(strategy.outreach_campaign)
        ],
        adaptive_rules=[
            AdaptiveRule(
                trigger=r.trigger,
                action=RuleAction(type=r.action.type, payload=json_format.MessageToDict(r.action.payload)),
            )
            for r in strategy.adaptive_rules
        ],
    )


def strategy_to_proto(strategy: dict[str, Any]) -> pb.Strategy:
    """A strategy as stored (its JSON document)."""
    model = Strategy.model_validate(strategy)
    out = pb.Strategy(
        summary=model.summary,
        cadence=pb.Cadence(interval=model.cadence.interval, total_duration=model.cadence.total_duration),
        outreach_campaign=[
            pb.OutreachStep(
                type=s.type,
                timing=s.timing,
                subject=s.subject,
                content=s.content,
                call_to_action=s.call_to_action,
                thread=s.thread,
                variants=[variant_to_proto(v) for v in s.variants],
                send_window=step_window_to_proto(s.send_window),
            )
            for s in model.outreach_campaign
        ],
    )
    for rule in model.adaptive_rules:
        proto_rule = out.adaptive_rules.add(trigger=rule.trigger)
        proto_rule.action.type = rule.action.type
        proto_rule.action.payload.update(rule.action.payload)
    return out


def variant_from_proto(variant: pb.StepVariant) -> StepVariant:
    return StepVariant(
        name=variant.name,
        weight=variant.weight,
        subject=variant.subject,
        content=variant.content,
        call_to_action=variant.call_to_action,
    )


def variant_to_proto(variant: StepVariant) -> pb.StepVariant:
    return pb.StepVariant(
        name=variant.name,
        weight=variant.weight,
        subject=variant.subject,
        content=variant.content,
        call_to_action=variant.call_to_action,
    )


def step_to_proto(step: Any) -> pb.CampaignStep:
    """A stored step (a row, or one about to be inserted)."""
    item = pb.CampaignStep(
        step_index=step.step_index,
        channel=step.channel,
        status=_STEP_STATUS[step.status],
        relative_delay_seconds=step.relative_delay_seconds,
        subject=step.subject,
        content=step.content,
        call_to_action=step.call_to_action,
        message_id=step.message_id or "",
        thread=step.thread,
        timing=step.timing,
        placement_note=step.placement_note,
        variants=[variant_to_proto(v) for v in variants.stored(step.variants)],
        variant=step.variant,
        send_window=step_window_to_proto(step.send_window_json),
    )
    if step.scheduled_at:
        item.scheduled_at.FromDatetime(step.scheduled_at)
    if step.sent_at:
        item.sent_at.FromDatetime(step.sent_at)
    return item


def campaign_to_proto(campaign: Any, steps: Sequence[Any], *, with_strategy: bool = True) -> pb.Campaign:
    """A stored campaign (a row, or one about to be inserted) with its steps."""
    settings = campaign.settings_json
    out = pb.Campaign(
        campaign_id=campaign.id,
        tenant_id=campaign.tenant_id,
        lead_id=campaign.lead_id,
        contact_id=campaign.contact_id,
        product_id=campaign.product_id,
        status=_CAMPAIGN_STATUS[campaign.status],
        sender_identity_id=campaign.sender_identity_id,
        current_step_index=campaign.current_step_index,
        cancel_reason=campaign.cancel_reason,
        attention_reason=campaign.attention_reason,
        strategist=campaign.strategist,
        strategist_reason=campaign.strategist_reason,
        time_zone=settings.get("time_zone", "UTC"),
        send_window=window_to_proto(SendWindow.from_json(settings["send_window"])),
        steps=[step_to_proto(step) for step in steps],
        holiday_calendars=settings.get("holidays", []),
    )
    # A planning campaign has no strategy yet (nor one canceled while planning).
    if with_strategy and campaign.strategy_json:
        out.strategy.CopyFrom(strategy_to_proto(campaign.strategy_json))
    if campaign.planned_at is not None:
        out.planned_at.FromDatetime(campaign.planned_at)
    out.created_at.FromDatetime(campaign.created_at)
    out.updated_at.FromDatetime(campaign.updated_at)
    return out


def tenant_settings_to_proto(tenant_id: str, row: Row | None) -> pb.TenantSettings:
    """A tenant's stored settings; a tenant without a row has the defaults and no update time."""
    defaults = TenantDefaults.from_row(row)
    out = pb.TenantSettings(
        tenant_id=tenant_id,
        send_window=window_to_proto(defaults.window),
        voice=defaults.voice,
        guidelines=defaults.guidelines,
        postal_address=defaults.postal_address,
        open_tracking=defaults.open_tracking,
        click_tracking=defaults.click_tracking,
        auto_reply_pause_days=defaults.auto_reply_pause_days,
        allowed_domains=defaults.allowed_domains,
        allowed_urls=defaults.allowed_urls,
        allowed_phone_numbers=defaults.allowed_phone_numbers,
        ai_daily_call_budget=defaults.ai_daily_call_budget,
        ai_daily_token_budget=defaults.ai_daily_token_budget,
        require_approval=defaults.require_approval,
        reply_stops=_REPLY_STOPS[defaults.reply_stops],
        holiday_calendars=defaults.holiday_calendars,
        planning_concurrency=defaults.planning_concurrency,
        ai_variants=defaults.ai_variants,
        ai_variant_focus=_FOCUS[defaults.ai_variant_focus],
    )
    if defaults.variant_winner is not None:
        out.variant_winner.CopyFrom(winner_setting_to_proto(defaults.variant_winner))
    out.enrolment_cooldown.seconds = defaults.enrolment_cooldown_seconds
    if row is not None:
        out.update_time.FromDatetime(row.updated_at)
    return out


_METRIC = {variants.Metric.REPLY: pb.VARIANT_METRIC_REPLY, variants.Metric.CLICK: pb.VARIANT_METRIC_CLICK}


def winner_setting_to_proto(setting: variants.WinnerSetting) -> pb.VariantWinnerSetting:
    return pb.VariantWinnerSetting(
        after_sends=setting.after_sends, metric=_METRIC[setting.metric], min_lift_percent=setting.min_lift_percent
    )


def winner_setting_from_proto(given: pb.VariantWinnerSetting) -> variants.WinnerSetting:
    """The setting as asked; InvalidArgument names the field."""
    metric = next((m for m, number in _METRIC.items() if number == given.metric), None)
    if metric is None:
        raise InvalidArgument("settings.variant_winner.metric", "must be VARIANT_METRIC_REPLY or VARIANT_METRIC_CLICK")
    return variants.WinnerSetting(given.after_sends, metric, given.min_lift_percent)


_FOCUS = {
    VariantFocus.SUBJECT: pb.AI_VARIANT_FOCUS_SUBJECT,
    VariantFocus.CONTENT: pb.AI_VARIANT_FOCUS_CONTENT,
    VariantFocus.BOTH: pb.AI_VARIANT_FOCUS_BOTH,
}


def variant_focus_from_proto(value: int) -> VariantFocus:
    """The focus asked for; unspecified is BOTH. InvalidArgument names the field."""
    if value == pb.AI_VARIANT_FOCUS_UNSPECIFIED:
        return VariantFocus.BOTH
    focus = next((f for f, number in _FOCUS.items() if number == value), None)
    if focus is None:
        raise InvalidArgument(
            "settings.ai_variant_focus",
            f"unknown value {value}; expected AI_VARIANT_FOCUS_SUBJECT, AI_VARIANT_FOCUS_CONTENT or AI_VARIANT_FOCUS_BOTH",
        )
    return focus


def winner_to_proto(row: Row) -> pb.VariantWinner:
    out = pb.VariantWinner(
        product_id=row.product_id,
        step_index=row.step_index,
        variant=row.variant,
        metric=_METRIC[variants.Metric(row.metric)],
        rate=row.rate,
        runner_up=row.runner_up,
        runner_up_rate=row.runner_up_rate,
        sends_each=row.sends_each,
    )
    out.decide_time.FromDatetime(row.decided_at)
    return out
