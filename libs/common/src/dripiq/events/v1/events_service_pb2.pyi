import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatsDimension(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATS_DIMENSION_UNSPECIFIED: _ClassVar[StatsDimension]
    STATS_DIMENSION_DAY: _ClassVar[StatsDimension]
    STATS_DIMENSION_PRODUCT: _ClassVar[StatsDimension]
    STATS_DIMENSION_SENDER_IDENTITY: _ClassVar[StatsDimension]
    STATS_DIMENSION_STRATEGIST: _ClassVar[StatsDimension]
    STATS_DIMENSION_STEP_INDEX: _ClassVar[StatsDimension]
    STATS_DIMENSION_VARIANT: _ClassVar[StatsDimension]
    STATS_DIMENSION_CHANNEL: _ClassVar[StatsDimension]
STATS_DIMENSION_UNSPECIFIED: StatsDimension
STATS_DIMENSION_DAY: StatsDimension
STATS_DIMENSION_PRODUCT: StatsDimension
STATS_DIMENSION_SENDER_IDENTITY: StatsDimension
STATS_DIMENSION_STRATEGIST: StatsDimension
STATS_DIMENSION_STEP_INDEX: StatsDimension
STATS_DIMENSION_VARIANT: StatsDimension
STATS_DIMENSION_CHANNEL: StatsDimension

class InboundMessage(_message.Message):
    __slots__ = ("inbound_id", "tenant_id", "from_email", "subject", "text", "html", "received_at", "campaign_id", "step_index", "message_id", "kind", "classification", "classified_by", "return_date", "snippet")
    INBOUND_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_EMAIL_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    HTML_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIED_BY_FIELD_NUMBER: _ClassVar[int]
    RETURN_DATE_FIELD_NUMBER: _ClassVar[int]
    SNIPPET_FIELD_NUMBER: _ClassVar[int]
    inbound_id: str
    tenant_id: str
    from_email: str
    subject: str
    text: str
    html: str
    received_at: _timestamp_pb2.Timestamp
    campaign_id: str
    step_index: int
    message_id: str
    kind: str
    classification: str
    classified_by: str
    return_date: str
    snippet: str
    def __init__(self, inbound_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., from_email: _Optional[str] = ..., subject: _Optional[str] = ..., text: _Optional[str] = ..., html: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., campaign_id: _Optional[str] = ..., step_index: _Optional[int] = ..., message_id: _Optional[str] = ..., kind: _Optional[str] = ..., classification: _Optional[str] = ..., classified_by: _Optional[str] = ..., return_date: _Optional[str] = ..., snippet: _Optional[str] = ...) -> None: ...

class ListInboundMessagesRequest(_message.Message):
    __slots__ = ("tenant_id", "page_size", "page_token", "campaign_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    page_size: int
    page_token: str
    campaign_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., campaign_id: _Optional[str] = ...) -> None: ...

class ListInboundMessagesResponse(_message.Message):
    __slots__ = ("messages", "next_page_token")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[InboundMessage]
    next_page_token: str
    def __init__(self, messages: _Optional[_Iterable[_Union[InboundMessage, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetInboundMessageRequest(_message.Message):
    __slots__ = ("tenant_id", "inbound_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    INBOUND_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    inbound_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., inbound_id: _Optional[str] = ...) -> None: ...

class GetInboundMessageResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: InboundMessage
    def __init__(self, message: _Optional[_Union[InboundMessage, _Mapping]] = ...) -> None: ...

class EngagementCounts(_message.Message):
    __slots__ = ("sent", "delivered", "unique_human_opens", "machine_opens", "human_open_events", "unique_clicks", "click_events", "replies", "auto_replies", "bounces", "unsubscribes", "spam_reports")
    SENT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_HUMAN_OPENS_FIELD_NUMBER: _ClassVar[int]
    MACHINE_OPENS_FIELD_NUMBER: _ClassVar[int]
    HUMAN_OPEN_EVENTS_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_CLICKS_FIELD_NUMBER: _ClassVar[int]
    CLICK_EVENTS_FIELD_NUMBER: _ClassVar[int]
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    AUTO_REPLIES_FIELD_NUMBER: _ClassVar[int]
    BOUNCES_FIELD_NUMBER: _ClassVar[int]
    UNSUBSCRIBES_FIELD_NUMBER: _ClassVar[int]
    SPAM_REPORTS_FIELD_NUMBER: _ClassVar[int]
    sent: int
    delivered: int
    unique_human_opens: int
    machine_opens: int
    human_open_events: int
    unique_clicks: int
    click_events: int
    replies: int
    auto_replies: int
    bounces: int
    unsubscribes: int
    spam_reports: int
    def __init__(self, sent: _Optional[int] = ..., delivered: _Optional[int] = ..., unique_human_opens: _Optional[int] = ..., machine_opens: _Optional[int] = ..., human_open_events: _Optional[int] = ..., unique_clicks: _Optional[int] = ..., click_events: _Optional[int] = ..., replies: _Optional[int] = ..., auto_replies: _Optional[int] = ..., bounces: _Optional[int] = ..., unsubscribes: _Optional[int] = ..., spam_reports: _Optional[int] = ...) -> None: ...

class StepCounts(_message.Message):
    __slots__ = ("step_index", "counts", "variants")
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    step_index: int
    counts: EngagementCounts
    variants: _containers.RepeatedCompositeFieldContainer[VariantCounts]
    def __init__(self, step_index: _Optional[int] = ..., counts: _Optional[_Union[EngagementCounts, _Mapping]] = ..., variants: _Optional[_Iterable[_Union[VariantCounts, _Mapping]]] = ...) -> None: ...

class VariantCounts(_message.Message):
    __slots__ = ("variant", "counts")
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    variant: str
    counts: EngagementCounts
    def __init__(self, variant: _Optional[str] = ..., counts: _Optional[_Union[EngagementCounts, _Mapping]] = ...) -> None: ...

class GetCampaignStatsRequest(_message.Message):
    __slots__ = ("tenant_id", "campaign_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    campaign_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., campaign_id: _Optional[str] = ...) -> None: ...

class GetCampaignStatsResponse(_message.Message):
    __slots__ = ("campaign_id", "totals")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    totals: EngagementCounts
    def __init__(self, campaign_id: _Optional[str] = ..., totals: _Optional[_Union[EngagementCounts, _Mapping]] = ...) -> None: ...

class GetStepFunnelRequest(_message.Message):
    __slots__ = ("tenant_id", "campaign_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    campaign_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., campaign_id: _Optional[str] = ...) -> None: ...

class GetStepFunnelResponse(_message.Message):
    __slots__ = ("campaign_id", "steps")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    steps: _containers.RepeatedCompositeFieldContainer[StepCounts]
    def __init__(self, campaign_id: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[StepCounts, _Mapping]]] = ...) -> None: ...

class MessageEvent(_message.Message):
    __slots__ = ("event_id", "tenant_id", "message_id", "campaign_id", "step_index", "event_type", "provider", "provider_event_id", "occurred_at", "machine_open", "url")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    MACHINE_OPEN_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    tenant_id: str
    message_id: str
    campaign_id: str
    step_index: int
    event_type: str
    provider: str
    provider_event_id: str
    occurred_at: _timestamp_pb2.Timestamp
    machine_open: bool
    url: str
    def __init__(self, event_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., message_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., step_index: _Optional[int] = ..., event_type: _Optional[str] = ..., provider: _Optional[str] = ..., provider_event_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., machine_open: _Optional[bool] = ..., url: _Optional[str] = ...) -> None: ...

class ListMessageEventsRequest(_message.Message):
    __slots__ = ("tenant_id", "message_id", "page_size", "page_token", "campaign_id", "occurred_after", "occurred_before")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AFTER_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    message_id: str
    page_size: int
    page_token: str
    campaign_id: str
    occurred_after: _timestamp_pb2.Timestamp
    occurred_before: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., message_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., campaign_id: _Optional[str] = ..., occurred_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., occurred_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListMessageEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[MessageEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[MessageEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class TenantStatsFilter(_message.Message):
    __slots__ = ("product_ids", "sender_identity_ids", "strategists", "step_indexes", "variants", "channels")
    PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    SENDER_IDENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    STRATEGISTS_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEXES_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    product_ids: _containers.RepeatedScalarFieldContainer[str]
    sender_identity_ids: _containers.RepeatedScalarFieldContainer[str]
    strategists: _containers.RepeatedScalarFieldContainer[str]
    step_indexes: _containers.RepeatedScalarFieldContainer[int]
    variants: _containers.RepeatedScalarFieldContainer[str]
    channels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, product_ids: _Optional[_Iterable[str]] = ..., sender_identity_ids: _Optional[_Iterable[str]] = ..., strategists: _Optional[_Iterable[str]] = ..., step_indexes: _Optional[_Iterable[int]] = ..., variants: _Optional[_Iterable[str]] = ..., channels: _Optional[_Iterable[str]] = ...) -> None: ...

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
    group_by: _containers.RepeatedScalarFieldContainer[StatsDimension]
    filter: TenantStatsFilter
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., start_day: _Optional[str] = ..., end_day: _Optional[str] = ..., group_by: _Optional[_Iterable[_Union[StatsDimension, str]]] = ..., filter: _Optional[_Union[TenantStatsFilter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class EngagementRates(_message.Message):
    __slots__ = ("delivery_rate", "human_open_rate", "click_rate", "reply_rate", "bounce_rate", "unsubscribe_rate")
    DELIVERY_RATE_FIELD_NUMBER: _ClassVar[int]
    HUMAN_OPEN_RATE_FIELD_NUMBER: _ClassVar[int]
    CLICK_RATE_FIELD_NUMBER: _ClassVar[int]
    REPLY_RATE_FIELD_NUMBER: _ClassVar[int]
    BOUNCE_RATE_FIELD_NUMBER: _ClassVar[int]
    UNSUBSCRIBE_RATE_FIELD_NUMBER: _ClassVar[int]
    delivery_rate: float
    human_open_rate: float
    click_rate: float
    reply_rate: float
    bounce_rate: float
    unsubscribe_rate: float
    def __init__(self, delivery_rate: _Optional[float] = ..., human_open_rate: _Optional[float] = ..., click_rate: _Optional[float] = ..., reply_rate: _Optional[float] = ..., bounce_rate: _Optional[float] = ..., unsubscribe_rate: _Optional[float] = ...) -> None: ...

class TenantStatsRow(_message.Message):
    __slots__ = ("day", "product_id", "sender_identity_id", "strategist", "step_index", "variant", "channel", "counts", "rates")
    DAY_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    STRATEGIST_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    RATES_FIELD_NUMBER: _ClassVar[int]
    day: str
    product_id: str
    sender_identity_id: str
    strategist: str
    step_index: int
    variant: str
    channel: str
    counts: EngagementCounts
    rates: EngagementRates
    def __init__(self, day: _Optional[str] = ..., product_id: _Optional[str] = ..., sender_identity_id: _Optional[str] = ..., strategist: _Optional[str] = ..., step_index: _Optional[int] = ..., variant: _Optional[str] = ..., channel: _Optional[str] = ..., counts: _Optional[_Union[EngagementCounts, _Mapping]] = ..., rates: _Optional[_Union[EngagementRates, _Mapping]] = ...) -> None: ...

class GetTenantStatsResponse(_message.Message):
    __slots__ = ("rows", "next_page_token")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[TenantStatsRow]
    next_page_token: str
    def __init__(self, rows: _Optional[_Iterable[_Union[TenantStatsRow, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
