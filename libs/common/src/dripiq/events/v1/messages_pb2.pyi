import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RawWebhook(_message.Message):
    __slots__ = ("kind", "body", "content_type", "received_at", "fields")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[RawWebhook.Kind]
        KIND_SENDGRID_EVENTS: _ClassVar[RawWebhook.Kind]
        KIND_SENDGRID_INBOUND: _ClassVar[RawWebhook.Kind]
        KIND_UNSUBSCRIBE: _ClassVar[RawWebhook.Kind]
    KIND_UNSPECIFIED: RawWebhook.Kind
    KIND_SENDGRID_EVENTS: RawWebhook.Kind
    KIND_SENDGRID_INBOUND: RawWebhook.Kind
    KIND_UNSUBSCRIBE: RawWebhook.Kind
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    kind: RawWebhook.Kind
    body: bytes
    content_type: str
    received_at: _timestamp_pb2.Timestamp
    fields: _containers.ScalarMap[str, str]
    def __init__(self, kind: _Optional[_Union[RawWebhook.Kind, str]] = ..., body: _Optional[bytes] = ..., content_type: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fields: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EngagementEvent(_message.Message):
    __slots__ = ("tenant_id", "event_id", "message_id", "campaign_id", "step_index", "contact_id", "event_type", "occurred_at", "machine_open", "url", "email", "reason", "provider_message_id", "reply_class", "snippet", "return_date", "inbound_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    MACHINE_OPEN_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    REPLY_CLASS_FIELD_NUMBER: _ClassVar[int]
    SNIPPET_FIELD_NUMBER: _ClassVar[int]
    RETURN_DATE_FIELD_NUMBER: _ClassVar[int]
    INBOUND_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    event_id: str
    message_id: str
    campaign_id: str
    step_index: int
    contact_id: str
    event_type: str
    occurred_at: _timestamp_pb2.Timestamp
    machine_open: bool
    url: str
    email: str
    reason: str
    provider_message_id: str
    reply_class: str
    snippet: str
    return_date: str
    inbound_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., event_id: _Optional[str] = ..., message_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., step_index: _Optional[int] = ..., contact_id: _Optional[str] = ..., event_type: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., machine_open: _Optional[bool] = ..., url: _Optional[str] = ..., email: _Optional[str] = ..., reason: _Optional[str] = ..., provider_message_id: _Optional[str] = ..., reply_class: _Optional[str] = ..., snippet: _Optional[str] = ..., return_date: _Optional[str] = ..., inbound_id: _Optional[str] = ...) -> None: ...

class EngagementBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[EngagementEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[EngagementEvent, _Mapping]]] = ...) -> None: ...
