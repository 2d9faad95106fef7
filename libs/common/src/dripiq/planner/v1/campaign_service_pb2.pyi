import datetime

from dripiq.events.v1 import events_service_pb2 as _events_service_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AiVariantFocus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AI_VARIANT_FOCUS_UNSPECIFIED: _ClassVar[AiVariantFocus]
    AI_VARIANT_FOCUS_SUBJECT: _ClassVar[AiVariantFocus]
    AI_VARIANT_FOCUS_CONTENT: _ClassVar[AiVariantFocus]
    AI_VARIANT_FOCUS_BOTH: _ClassVar[AiVariantFocus]

class VariantMetric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VARIANT_METRIC_UNSPECIFIED: _ClassVar[VariantMetric]
    VARIANT_METRIC_REPLY: _ClassVar[VariantMetric]
    VARIANT_METRIC_CLICK: _ClassVar[VariantMetric]

class ReplyStops(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPLY_STOPS_UNSPECIFIED: _ClassVar[ReplyStops]
    REPLY_STOPS_CAMPAIGN: _ClassVar[ReplyStops]
    REPLY_STOPS_CONTACT: _ClassVar[ReplyStops]
    REPLY_STOPS_COMPANY: _ClassVar[ReplyStops]

class CampaignStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMPAIGN_STATUS_UNSPECIFIED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_ACTIVE: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_PAUSED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_COMPLETED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_CANCELED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_NEEDS_ATTENTION: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_PLANNING: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_DRAFT: _ClassVar[CampaignStatus]

class StepStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_STATUS_UNSPECIFIED: _ClassVar[StepStatus]
    STEP_STATUS_PENDING: _ClassVar[StepStatus]
    STEP_STATUS_SCHEDULED: _ClassVar[StepStatus]
    STEP_STATUS_SENDING: _ClassVar[StepStatus]
    STEP_STATUS_SENT: _ClassVar[StepStatus]
    STEP_STATUS_FAILED: _ClassVar[StepStatus]
    STEP_STATUS_SKIPPED: _ClassVar[StepStatus]
    STEP_STATUS_CANCELED: _ClassVar[StepStatus]
AI_VARIANT_FOCUS_UNSPECIFIED: AiVariantFocus
AI_VARIANT_FOCUS_SUBJECT: AiVariantFocus
AI_VARIANT_FOCUS_CONTENT: AiVariantFocus
AI_VARIANT_FOCUS_BOTH: AiVariantFocus
VARIANT_METRIC_UNSPECIFIED: VariantMetric
VARIANT_METRIC_REPLY: VariantMetric
VARIANT_METRIC_CLICK: VariantMetric
REPLY_STOPS_UNSPECIFIED: ReplyStops
REPLY_STOPS_CAMPAIGN: ReplyStops
REPLY_STOPS_CONTACT: ReplyStops
REPLY_STOPS_COMPANY: ReplyStops
CAMPAIGN_STATUS_UNSPECIFIED: CampaignStatus
CAMPAIGN_STATUS_ACTIVE: CampaignStatus
CAMPAIGN_STATUS_PAUSED: CampaignStatus
CAMPAIGN_STATUS_COMPLETED: CampaignStatus
CAMPAIGN_STATUS_CANCELED: CampaignStatus
CAMPAIGN_STATUS_NEEDS_ATTENTION: CampaignStatus
CAMPAIGN_STATUS_PLANNING: CampaignStatus
CAMPAIGN_STATUS_DRAFT: CampaignStatus
STEP_STATUS_UNSPECIFIED: StepStatus
STEP_STATUS_PENDING: StepStatus
STEP_STATUS_SCHEDULED: StepStatus
STEP_STATUS_SENDING: StepStatus
STEP_STATUS_SENT: StepStatus
STEP_STATUS_FAILED: StepStatus
STEP_STATUS_SKIPPED: StepStatus
STEP_STATUS_CANCELED: StepStatus

class SendWindow(_message.Message):
    __slots__ = ("weekdays", "start_hour", "end_hour")
    WEEKDAYS_FIELD_NUMBER: _ClassVar[int]
    START_HOUR_FIELD_NUMBER: _ClassVar[int]
    END_HOUR_FIELD_NUMBER: _ClassVar[int]
    weekdays: _containers.RepeatedScalarFieldContainer[int]
    start_hour: int
    end_hour: int
    def __init__(self, weekdays: _Optional[_Iterable[int]] = ..., start_hour: _Optional[int] = ..., end_hour: _Optional[int] = ...) -> None: ...

class TenantSettings(_message.Message):
    __slots__ = ("tenant_id", "send_window", "voice", "guidelines", "update_time", "postal_address", "open_tracking", "click_tracking", "auto_reply_pause_days", "allowed_domains", "allowed_urls", "allowed_phone_numbers", "ai_daily_call_budget", "ai_daily_token_budget", "planning_concurrency", "require_approval", "reply_stops", "enrolment_cooldown", "holiday_calendars", "variant_winner", "ai_variants", "ai_variant_focus")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SEND_WINDOW_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    GUIDELINES_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    POSTAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    OPEN_TRACKING_FIELD_NUMBER: _ClassVar[int]
    CLICK_TRACKING_FIELD_NUMBER: _ClassVar[int]
    AUTO_REPLY_PAUSE_DAYS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_DOMAINS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_URLS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_PHONE_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    AI_DAILY_CALL_BUDGET_FIELD_NUMBER: _ClassVar[int]
    AI_DAILY_TOKEN_BUDGET_FIELD_NUMBER: _ClassVar[int]
    PLANNING_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_APPROVAL_FIELD_NUMBER: _ClassVar[int]
    REPLY_STOPS_FIELD_NUMBER: _ClassVar[int]
    ENROLMENT_COOLDOWN_FIELD_NUMBER: _ClassVar[int]
    HOLIDAY_CALENDARS_FIELD_NUMBER: _ClassVar[int]
    VARIANT_WINNER_FIELD_NUMBER: _ClassVar[int]
    AI_VARIANTS_FIELD_NUMBER: _ClassVar[int]
    AI_VARIANT_FOCUS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    send_window: SendWindow
    voice: str
    guidelines: str
    update_time: _timestamp_pb2.Timestamp
    postal_address: str
    open_tracking: bool
    click_tracking: bool
    auto_reply_pause_days: int
    allowed_domains: _containers.RepeatedScalarFieldContainer[str]
    allowed_urls: _containers.RepeatedScalarFieldContainer[str]
    allowed_phone_numbers: _containers.RepeatedScalarFieldContainer[str]
    ai_daily_call_budget: int
    ai_daily_token_budget: int
    planning_concurrency: int
    require_approval: bool
    reply_stops: ReplyStops
    enrolment_cooldown: _duration_pb2.Duration
    holiday_calendars: _containers.RepeatedScalarFieldContainer[str]
    variant_winner: VariantWinnerSetting
    ai_variants: int
    ai_variant_focus: AiVariantFocus
    def __init__(self, tenant_id: _Optional[str] = ..., send_window: _Optional[_Union[SendWindow, _Mapping]] = ..., voice: _Optional[str] = ..., guidelines: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., postal_address: _Optional[str] = ..., open_tracking: _Optional[bool] = ..., click_tracking: _Optional[bool] = ..., auto_reply_pause_days: _Optional[int] = ..., allowed_domains: _Optional[_Iterable[str]] = ..., allowed_urls: _Optional[_Iterable[str]] = ..., allowed_phone_numbers: _Optional[_Iterable[str]] = ..., ai_daily_call_budget: _Optional[int] = ..., ai_daily_token_budget: _Optional[int] = ..., planning_concurrency: _Optional[int] = ..., require_approval: _Optional[bool] = ..., reply_stops: _Optional[_Union[ReplyStops, str]] = ..., enrolment_cooldown: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., holiday_calendars: _Optional[_Iterable[str]] = ..., variant_winner: _Optional[_Union[VariantWinnerSetting, _Mapping]] = ..., ai_variants: _Optional[int] = ..., ai_variant_focus: _Optional[_Union[AiVariantFocus, str]] = ...) -> None: ...

class VariantWinnerSetting(_message.Message):
    __slots__ = ("after_sends", "metric", "min_lift_percent")
    AFTER_SENDS_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MIN_LIFT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    after_sends: int
    metric: VariantMetric
    min_lift_percent: int
    def __init__(self, after_sends: _Optional[int] = ..., metric: _Optional[_Union[VariantMetric, str]] = ..., min_lift_percent: _Optional[int] = ...) -> None: ...

class VariantWinner(_message.Message):
    __slots__ = ("product_id", "step_index", "variant", "metric", "rate", "runner_up", "runner_up_rate", "sends_each", "decide_time")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    RUNNER_UP_FIELD_NUMBER: _ClassVar[int]
    RUNNER_UP_RATE_FIELD_NUMBER: _ClassVar[int]
    SENDS_EACH_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TIME_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    step_index: int
    variant: str
    metric: VariantMetric
    rate: float
    runner_up: str
    runner_up_rate: float
    sends_each: int
    decide_time: _timestamp_pb2.Timestamp
    def __init__(self, product_id: _Optional[str] = ..., step_index: _Optional[int] = ..., variant: _Optional[str] = ..., metric: _Optional[_Union[VariantMetric, str]] = ..., rate: _Optional[float] = ..., runner_up: _Optional[str] = ..., runner_up_rate: _Optional[float] = ..., sends_each: _Optional[int] = ..., decide_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Contact(_message.Message):
    __slots__ = ("contact_id", "email", "first_name", "last_name", "title", "time_zone", "country", "subdivision")
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    FIRST_NAME_FIELD_NUMBER: _ClassVar[int]
    LAST_NAME_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    SUBDIVISION_FIELD_NUMBER: _ClassVar[int]
    contact_id: str
    email: str
    first_name: str
    last_name: str
    title: str
    time_zone: str
    country: str
    subdivision: str
    def __init__(self, contact_id: _Optional[str] = ..., email: _Optional[str] = ..., first_name: _Optional[str] = ..., last_name: _Optional[str] = ..., title: _Optional[str] = ..., time_zone: _Optional[str] = ..., country: _Optional[str] = ..., subdivision: _Optional[str] = ...) -> None: ...

class Lead(_message.Message):
    __slots__ = ("lead_id", "company_name", "industry")
    LEAD_ID_FIELD_NUMBER: _ClassVar[int]
    COMPANY_NAME_FIELD_NUMBER: _ClassVar[int]
    INDUSTRY_FIELD_NUMBER: _ClassVar[int]
    lead_id: str
    company_name: str
    industry: str
    def __init__(self, lead_id: _Optional[str] = ..., company_name: _Optional[str] = ..., industry: _Optional[str] = ...) -> None: ...

class Product(_message.Message):
    __slots__ = ("product_id", "name", "description", "url")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    name: str
    description: str
    url: str
    def __init__(self, product_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., url: _Optional[str] = ...) -> None: ...

class Strategy(_message.Message):
    __slots__ = ("summary", "cadence", "outreach_campaign", "adaptive_rules")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CADENCE_FIELD_NUMBER: _ClassVar[int]
    OUTREACH_CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    ADAPTIVE_RULES_FIELD_NUMBER: _ClassVar[int]
    summary: str
    cadence: Cadence
    outreach_campaign: _containers.RepeatedCompositeFieldContainer[OutreachStep]
    adaptive_rules: _containers.RepeatedCompositeFieldContainer[AdaptiveRule]
    def __init__(self, summary: _Optional[str] = ..., cadence: _Optional[_Union[Cadence, _Mapping]] = ..., outreach_campaign: _Optional[_Iterable[_Union[OutreachStep, _Mapping]]] = ..., adaptive_rules: _Optional[_Iterable[_Union[AdaptiveRule, _Mapping]]] = ...) -> None: ...

class Cadence(_message.Message):
    __slots__ = ("interval", "total_duration")
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TOTAL_DURATION_FIELD_NUMBER: _ClassVar[int]
    interval: str
    total_duration: str
    def __init__(self, interval: _Optional[str] = ..., total_duration: _Optional[str] = ...) -> None: ...

class OutreachStep(_message.Message):
    __slots__ = ("type", "timing", "subject", "content", "call_to_action", "thread", "variants", "send_window")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    CALL_TO_ACTION_FIELD_NUMBER: _ClassVar[int]
    THREAD_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    SEND_WINDOW_FIELD_NUMBER: _ClassVar[int]
    type: str
    timing: str
    subject: str
    content: str
    call_to_action: str
    thread: bool
    variants: _containers.RepeatedCompositeFieldContainer[StepVariant]
    send_window: SendWindow
    def __init__(self, type: _Optional[str] = ..., timing: _Optional[str] = ..., subject: _Optional[str] = ..., content: _Optional[str] = ..., call_to_action: _Optional[str] = ..., thread: _Optional[bool] = ..., variants: _Optional[_Iterable[_Union[StepVariant, _Mapping]]] = ..., send_window: _Optional[_Union[SendWindow, _Mapping]] = ...) -> None: ...

class StepVariant(_message.Message):
    __slots__ = ("name", "weight", "subject", "content", "call_to_action")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    CALL_TO_ACTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: int
    subject: str
    content: str
    call_to_action: str
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[int] = ..., subject: _Optional[str] = ..., content: _Optional[str] = ..., call_to_action: _Optional[str] = ...) -> None: ...

class AdaptiveRule(_message.Message):
    __slots__ = ("trigger", "action")
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    trigger: str
    action: RuleAction
    def __init__(self, trigger: _Optional[str] = ..., action: _Optional[_Union[RuleAction, _Mapping]] = ...) -> None: ...

class RuleAction(_message.Message):
    __slots__ = ("type", "payload")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    type: str
    payload: _struct_pb2.Struct
    def __init__(self, type: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Campaign(_message.Message):
    __slots__ = ("campaign_id", "tenant_id", "lead_id", "contact_id", "product_id", "status", "sender_identity_id", "strategy", "steps", "current_step_index", "created_at", "updated_at", "cancel_reason", "strategist", "time_zone", "send_window", "attention_reason", "holiday_calendars", "strategist_reason", "planned_at")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    LEAD_ID_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SENDER_IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REASON_FIELD_NUMBER: _ClassVar[int]
    STRATEGIST_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    SEND_WINDOW_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_REASON_FIELD_NUMBER: _ClassVar[int]
    HOLIDAY_CALENDARS_FIELD_NUMBER: _ClassVar[int]
    STRATEGIST_REASON_FIELD_NUMBER: _ClassVar[int]
    PLANNED_AT_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    tenant_id: str
    lead_id: str
    contact_id: str
    product_id: str
    status: CampaignStatus
    sender_identity_id: str
    strategy: Strategy
    steps: _containers.RepeatedCompositeFieldContainer[CampaignStep]
    current_step_index: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    cancel_reason: str
    strategist: str
    time_zone: str
    send_window: SendWindow
    attention_reason: str
    holiday_calendars: _containers.RepeatedScalarFieldContainer[str]
    strategist_reason: str
    planned_at: _timestamp_pb2.Timestamp
    def __init__(self, campaign_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., lead_id: _Optional[str] = ..., contact_id: _Optional[str] = ..., product_id: _Optional[str] = ..., status: _Optional[_Union[CampaignStatus, str]] = ..., sender_identity_id: _Optional[str] = ..., strategy: _Optional[_Union[Strategy, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[CampaignStep, _Mapping]]] = ..., current_step_index: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancel_reason: _Optional[str] = ..., strategist: _Optional[str] = ..., time_zone: _Optional[str] = ..., send_window: _Optional[_Union[SendWindow, _Mapping]] = ..., attention_reason: _Optional[str] = ..., holiday_calendars: _Optional[_Iterable[str]] = ..., strategist_reason: _Optional[str] = ..., planned_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CampaignStep(_message.Message):
    __slots__ = ("step_index", "channel", "status", "relative_delay_seconds", "scheduled_at", "subject", "content", "call_to_action", "message_id", "sent_at", "thread", "timing", "placement_note", "variants", "variant", "send_window")
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    CALL_TO_ACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    THREAD_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_NOTE_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    SEND_WINDOW_FIELD_NUMBER: _ClassVar[int]
    step_index: int
    channel: str
    status: StepStatus
    relative_delay_seconds: int
    scheduled_at: _timestamp_pb2.Timestamp
    subject: str
    content: str
    call_to_action: str
    message_id: str
    sent_at: _timestamp_pb2.Timestamp
    thread: bool
    timing: str
    placement_note: str
    variants: _containers.RepeatedCompositeFieldContainer[StepVariant]
    variant: str
    send_window: SendWindow
    def __init__(self, step_index: _Optional[int] = ..., channel: _Optional[str] = ..., status: _Optional[_Union[StepStatus, str]] = ..., relative_delay_seconds: _Optional[int] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., subject: _Optional[str] = ..., content: _Optional[str] = ..., call_to_action: _Optional[str] = ..., message_id: _Optional[str] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., thread: _Optional[bool] = ..., timing: _Optional[str] = ..., placement_note: _Optional[str] = ..., variants: _Optional[_Iterable[_Union[StepVariant, _Mapping]]] = ..., variant: _Optional[str] = ..., send_window: _Optional[_Union[SendWindow, _Mapping]] = ...) -> None: ...

class CreateCampaignRequest(_message.Message):
    __slots__ = ("tenant_id", "request_id", "lead", "contact", "product", "strategy", "sender_identity_id", "send_window")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LEAD_FIELD_NUMBER: _ClassVar[int]
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    SENDER_IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    SEND_WINDOW_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    request_id: str
    lead: Lead
    contact: Contact
    product: Product
    strategy: Strategy
    sender_identity_id: str
    send_window: SendWindow
    def __init__(self, tenant_id: _Optional[str] = ..., request_id: _Optional[str] = ..., lead: _Optional[_Union[Lead, _Mapping]] = ..., contact: _Optional[_Union[Contact, _Mapping]] = ..., product: _Optional[_Union[Product, _Mapping]] = ..., strategy: _Optional[_Union[Strategy, _Mapping]] = ..., sender_identity_id: _Optional[str] = ..., send_window: _Optional[_Union[SendWindow, _Mapping]] = ...) -> None: ...

class CreateCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class GetCampaignRequest(_message.Message):
    __slots__ = ("tenant_id", "campaign_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    campaign_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., campaign_id: _Optional[str] = ...) -> None: ...

class GetCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class CancelCampaignRequest(_message.Message):
    __slots__ = ("tenant_id", "campaign_id", "reason")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    campaign_id: str
    reason: str
    def __init__(self, tenant_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class BatchCreateCampaignsRequest(_message.Message):
    __slots__ = ("tenant_id", "requests")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    requests: _containers.RepeatedCompositeFieldContainer[CreateCampaignRequest]
    def __init__(self, tenant_id: _Optional[str] = ..., requests: _Optional[_Iterable[_Union[CreateCampaignRequest, _Mapping]]] = ...) -> None: ...

class BatchCreateCampaignsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchCreateCampaignResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchCreateCampaignResult, _Mapping]]] = ...) -> None: ...

class BatchCreateCampaignResult(_message.Message):
    __slots__ = ("campaign", "error")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    error: _status_pb2.Status
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class ListCampaignsRequest(_message.Message):
    __slots__ = ("tenant_id", "page_size", "page_token", "status", "contact_id", "lead_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    LEAD_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    page_size: int
    page_token: str
    status: CampaignStatus
    contact_id: str
    lead_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., status: _Optional[_Union[CampaignStatus, str]] = ..., contact_id: _Optional[str] = ..., lead_id: _Optional[str] = ...) -> None: ...

class ListCampaignsResponse(_message.Message):
    __slots__ = ("campaigns", "next_page_token")
    CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    campaigns: _containers.RepeatedCompositeFieldContainer[Campaign]
    next_page_token: str
    def __init__(self, campaigns: _Optional[_Iterable[_Union[Campaign, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PauseCampaignRequest(_message.Message):
    __slots__ = ("tenant_id", "campaign_id", "resume_after_seconds")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_AFTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    campaign_id: str
    resume_after_seconds: int
    def __init__(self, tenant_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., resume_after_seconds: _Optional[int] = ...) -> None: ...

class PauseCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class RetryStepRequest(_message.Message):
    __slots__ = ("tenant_id", "campaign_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    campaign_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., campaign_id: _Optional[str] = ...) -> None: ...

class RetryStepResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class ResumeCampaignRequest(_message.Message):
    __slots__ = ("tenant_id", "campaign_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    campaign_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., campaign_id: _Optional[str] = ...) -> None: ...

class ResumeCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class PreviewStrategyRequest(_message.Message):
    __slots__ = ("request", "save_as_draft")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    SAVE_AS_DRAFT_FIELD_NUMBER: _ClassVar[int]
    request: CreateCampaignRequest
    save_as_draft: bool
    def __init__(self, request: _Optional[_Union[CreateCampaignRequest, _Mapping]] = ..., save_as_draft: _Optional[bool] = ...) -> None: ...

class PreviewStrategyResponse(_message.Message):
    __slots__ = ("strategy", "steps", "strategist", "campaign")
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    STRATEGIST_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    strategy: Strategy
    steps: _containers.RepeatedCompositeFieldContainer[CampaignStep]
    strategist: str
    campaign: Campaign
    def __init__(self, strategy: _Optional[_Union[Strategy, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[CampaignStep, _Mapping]]] = ..., strategist: _Optional[str] = ..., campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class GetCampaignTimelineRequest(_message.Message):
    __slots__ = ("tenant_id", "campaign_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    campaign_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., campaign_id: _Optional[str] = ...) -> None: ...

class TimelineEntry(_message.Message):
    __slots__ = ("time", "kind", "step_index", "message_id", "detail")
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    kind: str
    step_index: int
    message_id: str
    detail: str
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., step_index: _Optional[int] = ..., message_id: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class GetCampaignTimelineResponse(_message.Message):
    __slots__ = ("campaign", "entries", "unavailable")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    entries: _containers.RepeatedCompositeFieldContainer[TimelineEntry]
    unavailable: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ..., entries: _Optional[_Iterable[_Union[TimelineEntry, _Mapping]]] = ..., unavailable: _Optional[_Iterable[str]] = ...) -> None: ...

class GetTenantSettingsRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class GetTenantSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: TenantSettings
    def __init__(self, settings: _Optional[_Union[TenantSettings, _Mapping]] = ...) -> None: ...

class UpdateTenantSettingsRequest(_message.Message):
    __slots__ = ("settings", "update_mask")
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    settings: TenantSettings
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, settings: _Optional[_Union[TenantSettings, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateTenantSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: TenantSettings
    def __init__(self, settings: _Optional[_Union[TenantSettings, _Mapping]] = ...) -> None: ...

class ApproveCampaignRequest(_message.Message):
    __slots__ = ("tenant_id", "campaign_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    campaign_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., campaign_id: _Optional[str] = ...) -> None: ...

class ApproveCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class BatchApproveCampaignsRequest(_message.Message):
    __slots__ = ("tenant_id", "product_id", "sender_identity_id", "created_before", "max_campaigns")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    MAX_CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    product_id: str
    sender_identity_id: str
    created_before: _timestamp_pb2.Timestamp
    max_campaigns: int
    def __init__(self, tenant_id: _Optional[str] = ..., product_id: _Optional[str] = ..., sender_identity_id: _Optional[str] = ..., created_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_campaigns: _Optional[int] = ...) -> None: ...

class BatchApproveCampaignsResponse(_message.Message):
    __slots__ = ("approved_count", "more")
    APPROVED_COUNT_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    approved_count: int
    more: bool
    def __init__(self, approved_count: _Optional[int] = ..., more: _Optional[bool] = ...) -> None: ...

class UpdateCampaignStepRequest(_message.Message):
    __slots__ = ("tenant_id", "campaign_id", "step_index", "step", "update_mask")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    campaign_id: str
    step_index: int
    step: CampaignStep
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, tenant_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., step_index: _Optional[int] = ..., step: _Optional[_Union[CampaignStep, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateCampaignStepResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class GetTenantStatsRequest(_message.Message):
    __slots__ = ("tenant_id", "start_day", "end_day", "group_by", "filter", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    START_DAY_FIELD_NUMBER: _ClassVar[int]
    END_DAY_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    start_day: str
    end_day: str
    group_by: _containers.RepeatedScalarFieldContainer[_events_service_pb2.StatsDimension]
    filter: _events_service_pb2.TenantStatsFilter
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., start_day: _Optional[str] = ..., end_day: _Optional[str] = ..., group_by: _Optional[_Iterable[_Union[_events_service_pb2.StatsDimension, str]]] = ..., filter: _Optional[_Union[_events_service_pb2.TenantStatsFilter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetTenantStatsResponse(_message.Message):
    __slots__ = ("tenant_id", "planning", "campaigns_by_status", "read_at", "engagement", "variant_winners")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PLANNING_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGNS_BY_STATUS_FIELD_NUMBER: _ClassVar[int]
    READ_AT_FIELD_NUMBER: _ClassVar[int]
    ENGAGEMENT_FIELD_NUMBER: _ClassVar[int]
    VARIANT_WINNERS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    planning: PlanningStats
    campaigns_by_status: _containers.RepeatedCompositeFieldContainer[CampaignStatusCount]
    read_at: _timestamp_pb2.Timestamp
    engagement: _events_service_pb2.GetTenantStatsResponse
    variant_winners: _containers.RepeatedCompositeFieldContainer[VariantWinner]
    def __init__(self, tenant_id: _Optional[str] = ..., planning: _Optional[_Union[PlanningStats, _Mapping]] = ..., campaigns_by_status: _Optional[_Iterable[_Union[CampaignStatusCount, _Mapping]]] = ..., read_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., engagement: _Optional[_Union[_events_service_pb2.GetTenantStatsResponse, _Mapping]] = ..., variant_winners: _Optional[_Iterable[_Union[VariantWinner, _Mapping]]] = ...) -> None: ...

class PlanningStats(_message.Message):
    __slots__ = ("waiting", "oldest_waiting_since", "planned_today", "ai_calls_left_today", "ai_tokens_left_today", "concurrency")
    WAITING_FIELD_NUMBER: _ClassVar[int]
    OLDEST_WAITING_SINCE_FIELD_NUMBER: _ClassVar[int]
    PLANNED_TODAY_FIELD_NUMBER: _ClassVar[int]
    AI_CALLS_LEFT_TODAY_FIELD_NUMBER: _ClassVar[int]
    AI_TOKENS_LEFT_TODAY_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    waiting: int
    oldest_waiting_since: _timestamp_pb2.Timestamp
    planned_today: _containers.RepeatedCompositeFieldContainer[StrategistCount]
    ai_calls_left_today: int
    ai_tokens_left_today: int
    concurrency: int
    def __init__(self, waiting: _Optional[int] = ..., oldest_waiting_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., planned_today: _Optional[_Iterable[_Union[StrategistCount, _Mapping]]] = ..., ai_calls_left_today: _Optional[int] = ..., ai_tokens_left_today: _Optional[int] = ..., concurrency: _Optional[int] = ...) -> None: ...

class StrategistCount(_message.Message):
    __slots__ = ("strategist", "count")
    STRATEGIST_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    strategist: str
    count: int
    def __init__(self, strategist: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class CampaignStatusCount(_message.Message):
    __slots__ = ("status", "count")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    status: CampaignStatus
    count: int
    def __init__(self, status: _Optional[_Union[CampaignStatus, str]] = ..., count: _Optional[int] = ...) -> None: ...
