import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CampaignStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMPAIGN_STATUS_UNSPECIFIED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_ACTIVE: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_PAUSED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_COMPLETED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_CANCELED: _ClassVar[CampaignStatus]

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
CAMPAIGN_STATUS_UNSPECIFIED: CampaignStatus
CAMPAIGN_STATUS_ACTIVE: CampaignStatus
CAMPAIGN_STATUS_PAUSED: CampaignStatus
CAMPAIGN_STATUS_COMPLETED: CampaignStatus
CAMPAIGN_STATUS_CANCELED: CampaignStatus
STEP_STATUS_UNSPECIFIED: StepStatus
STEP_STATUS_PENDING: StepStatus
STEP_STATUS_SCHEDULED: StepStatus
STEP_STATUS_SENDING: StepStatus
STEP_STATUS_SENT: StepStatus
STEP_STATUS_FAILED: StepStatus
STEP_STATUS_SKIPPED: StepStatus
STEP_STATUS_CANCELED: StepStatus

class Contact(_message.Message):
    __slots__ = ("contact_id", "email", "first_name", "last_name", "title", "time_zone")
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    FIRST_NAME_FIELD_NUMBER: _ClassVar[int]
    LAST_NAME_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    contact_id: str
    email: str
    first_name: str
    last_name: str
    title: str
    time_zone: str
    def __init__(self, contact_id: _Optional[str] = ..., email: _Optional[str] = ..., first_name: _Optional[str] = ..., last_name: _Optional[str] = ..., title: _Optional[str] = ..., time_zone: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("product_id", "name", "description")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    name: str
    description: str
    def __init__(self, product_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("type", "timing", "subject", "content", "call_to_action")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    CALL_TO_ACTION_FIELD_NUMBER: _ClassVar[int]
    type: str
    timing: str
    subject: str
    content: str
    call_to_action: str
    def __init__(self, type: _Optional[str] = ..., timing: _Optional[str] = ..., subject: _Optional[str] = ..., content: _Optional[str] = ..., call_to_action: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("campaign_id", "tenant_id", "lead_id", "contact_id", "product_id", "status", "sender_identity_id", "strategy", "steps", "current_step_index", "created_at", "updated_at", "cancel_reason")
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
    def __init__(self, campaign_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., lead_id: _Optional[str] = ..., contact_id: _Optional[str] = ..., product_id: _Optional[str] = ..., status: _Optional[_Union[CampaignStatus, str]] = ..., sender_identity_id: _Optional[str] = ..., strategy: _Optional[_Union[Strategy, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[CampaignStep, _Mapping]]] = ..., current_step_index: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancel_reason: _Optional[str] = ...) -> None: ...

class CampaignStep(_message.Message):
    __slots__ = ("step_index", "channel", "status", "relative_delay_seconds", "scheduled_at", "subject", "content", "call_to_action", "message_id", "sent_at")
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
    def __init__(self, step_index: _Optional[int] = ..., channel: _Optional[str] = ..., status: _Optional[_Union[StepStatus, str]] = ..., relative_delay_seconds: _Optional[int] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., subject: _Optional[str] = ..., content: _Optional[str] = ..., call_to_action: _Optional[str] = ..., message_id: _Optional[str] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateCampaignRequest(_message.Message):
    __slots__ = ("tenant_id", "request_id", "lead", "contact", "product", "strategy", "sender_identity_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LEAD_FIELD_NUMBER: _ClassVar[int]
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    SENDER_IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    request_id: str
    lead: Lead
    contact: Contact
    product: Product
    strategy: Strategy
    sender_identity_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., request_id: _Optional[str] = ..., lead: _Optional[_Union[Lead, _Mapping]] = ..., contact: _Optional[_Union[Contact, _Mapping]] = ..., product: _Optional[_Union[Product, _Mapping]] = ..., strategy: _Optional[_Union[Strategy, _Mapping]] = ..., sender_identity_id: _Optional[str] = ...) -> None: ...

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
