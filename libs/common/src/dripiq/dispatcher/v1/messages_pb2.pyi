import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OutcomeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_KIND_UNSPECIFIED: _ClassVar[OutcomeKind]
    OUTCOME_KIND_SENT: _ClassVar[OutcomeKind]
    OUTCOME_KIND_FAILED: _ClassVar[OutcomeKind]
    OUTCOME_KIND_SUPPRESSED: _ClassVar[OutcomeKind]
    OUTCOME_KIND_DEFERRED: _ClassVar[OutcomeKind]
    OUTCOME_KIND_WITHHELD: _ClassVar[OutcomeKind]
    OUTCOME_KIND_RELEASED: _ClassVar[OutcomeKind]
OUTCOME_KIND_UNSPECIFIED: OutcomeKind
OUTCOME_KIND_SENT: OutcomeKind
OUTCOME_KIND_FAILED: OutcomeKind
OUTCOME_KIND_SUPPRESSED: OutcomeKind
OUTCOME_KIND_DEFERRED: OutcomeKind
OUTCOME_KIND_WITHHELD: OutcomeKind
OUTCOME_KIND_RELEASED: OutcomeKind

class SendMessageCommand(_message.Message):
    __slots__ = ("tenant_id", "message_id", "campaign_id", "step_index", "contact_id", "channel", "to_email", "to_name", "sender_identity_id", "subject", "body_text", "body_html", "categories", "postal_address", "tracking", "thread_message_ids", "send_window", "product_id", "strategist", "variant", "holiday_calendars")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TO_EMAIL_FIELD_NUMBER: _ClassVar[int]
    TO_NAME_FIELD_NUMBER: _ClassVar[int]
    SENDER_IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    BODY_TEXT_FIELD_NUMBER: _ClassVar[int]
    BODY_HTML_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    POSTAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TRACKING_FIELD_NUMBER: _ClassVar[int]
    THREAD_MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    SEND_WINDOW_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    STRATEGIST_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    HOLIDAY_CALENDARS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    message_id: str
    campaign_id: str
    step_index: int
    contact_id: str
    channel: str
    to_email: str
    to_name: str
    sender_identity_id: str
    subject: str
    body_text: str
    body_html: str
    categories: _containers.RepeatedScalarFieldContainer[str]
    postal_address: str
    tracking: Tracking
    thread_message_ids: _containers.RepeatedScalarFieldContainer[str]
    send_window: ContactWindow
    product_id: str
    strategist: str
    variant: str
    holiday_calendars: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant_id: _Optional[str] = ..., message_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., step_index: _Optional[int] = ..., contact_id: _Optional[str] = ..., channel: _Optional[str] = ..., to_email: _Optional[str] = ..., to_name: _Optional[str] = ..., sender_identity_id: _Optional[str] = ..., subject: _Optional[str] = ..., body_text: _Optional[str] = ..., body_html: _Optional[str] = ..., categories: _Optional[_Iterable[str]] = ..., postal_address: _Optional[str] = ..., tracking: _Optional[_Union[Tracking, _Mapping]] = ..., thread_message_ids: _Optional[_Iterable[str]] = ..., send_window: _Optional[_Union[ContactWindow, _Mapping]] = ..., product_id: _Optional[str] = ..., strategist: _Optional[str] = ..., variant: _Optional[str] = ..., holiday_calendars: _Optional[_Iterable[str]] = ...) -> None: ...

class ContactWindow(_message.Message):
    __slots__ = ("weekdays", "start_hour", "end_hour", "time_zone")
    WEEKDAYS_FIELD_NUMBER: _ClassVar[int]
    START_HOUR_FIELD_NUMBER: _ClassVar[int]
    END_HOUR_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    weekdays: _containers.RepeatedScalarFieldContainer[int]
    start_hour: int
    end_hour: int
    time_zone: str
    def __init__(self, weekdays: _Optional[_Iterable[int]] = ..., start_hour: _Optional[int] = ..., end_hour: _Optional[int] = ..., time_zone: _Optional[str] = ...) -> None: ...

class ForwardReplyCommand(_message.Message):
    __slots__ = ("tenant_id", "inbound_id", "message_id", "campaign_id", "from_email", "subject", "text", "html", "received_at", "reply_class")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    INBOUND_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_EMAIL_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    HTML_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    REPLY_CLASS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    inbound_id: str
    message_id: str
    campaign_id: str
    from_email: str
    subject: str
    text: str
    html: str
    received_at: _timestamp_pb2.Timestamp
    reply_class: str
    def __init__(self, tenant_id: _Optional[str] = ..., inbound_id: _Optional[str] = ..., message_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., from_email: _Optional[str] = ..., subject: _Optional[str] = ..., text: _Optional[str] = ..., html: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reply_class: _Optional[str] = ...) -> None: ...

class SuppressByMessageCommand(_message.Message):
    __slots__ = ("tenant_id", "message_id", "reason", "occurred_at")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    message_id: str
    reason: str
    occurred_at: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., message_id: _Optional[str] = ..., reason: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Tracking(_message.Message):
    __slots__ = ("opens", "clicks")
    OPENS_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    opens: bool
    clicks: bool
    def __init__(self, opens: _Optional[bool] = ..., clicks: _Optional[bool] = ...) -> None: ...

class MessageOutcome(_message.Message):
    __slots__ = ("tenant_id", "message_id", "campaign_id", "step_index", "contact_id", "channel", "kind", "provider", "provider_message_id", "rfc_message_id", "reason", "occurred_at", "to_email", "subject", "task_outcome", "opens_untracked_reason", "clicks_untracked_reason", "permanent", "product_id", "sender_identity_id", "strategist", "variant")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    RFC_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    TO_EMAIL_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TASK_OUTCOME_FIELD_NUMBER: _ClassVar[int]
    OPENS_UNTRACKED_REASON_FIELD_NUMBER: _ClassVar[int]
    CLICKS_UNTRACKED_REASON_FIELD_NUMBER: _ClassVar[int]
    PERMANENT_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    STRATEGIST_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    message_id: str
    campaign_id: str
    step_index: int
    contact_id: str
    channel: str
    kind: OutcomeKind
    provider: str
    provider_message_id: str
    rfc_message_id: str
    reason: str
    occurred_at: _timestamp_pb2.Timestamp
    to_email: str
    subject: str
    task_outcome: str
    opens_untracked_reason: str
    clicks_untracked_reason: str
    permanent: bool
    product_id: str
    sender_identity_id: str
    strategist: str
    variant: str
    def __init__(self, tenant_id: _Optional[str] = ..., message_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., step_index: _Optional[int] = ..., contact_id: _Optional[str] = ..., channel: _Optional[str] = ..., kind: _Optional[_Union[OutcomeKind, str]] = ..., provider: _Optional[str] = ..., provider_message_id: _Optional[str] = ..., rfc_message_id: _Optional[str] = ..., reason: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., to_email: _Optional[str] = ..., subject: _Optional[str] = ..., task_outcome: _Optional[str] = ..., opens_untracked_reason: _Optional[str] = ..., clicks_untracked_reason: _Optional[str] = ..., permanent: _Optional[bool] = ..., product_id: _Optional[str] = ..., sender_identity_id: _Optional[str] = ..., strategist: _Optional[str] = ..., variant: _Optional[str] = ...) -> None: ...

class TaskCreated(_message.Message):
    __slots__ = ("tenant_id", "message_id", "campaign_id", "step_index", "contact_id", "channel", "to_email", "to_name", "title", "instructions", "created_at")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TO_EMAIL_FIELD_NUMBER: _ClassVar[int]
    TO_NAME_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    message_id: str
    campaign_id: str
    step_index: int
    contact_id: str
    channel: str
    to_email: str
    to_name: str
    title: str
    instructions: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., message_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., step_index: _Optional[int] = ..., contact_id: _Optional[str] = ..., channel: _Optional[str] = ..., to_email: _Optional[str] = ..., to_name: _Optional[str] = ..., title: _Optional[str] = ..., instructions: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
