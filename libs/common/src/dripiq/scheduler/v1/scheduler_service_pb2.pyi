import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TimerStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIMER_STATUS_UNSPECIFIED: _ClassVar[TimerStatus]
    TIMER_STATUS_ACTIVE: _ClassVar[TimerStatus]
    TIMER_STATUS_FIRED: _ClassVar[TimerStatus]
    TIMER_STATUS_CANCELED: _ClassVar[TimerStatus]

class TimerTarget(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIMER_TARGET_UNSPECIFIED: _ClassVar[TimerTarget]
    TIMER_TARGET_PLANNER_TIMER: _ClassVar[TimerTarget]
    TIMER_TARGET_DISPATCHER_SEND: _ClassVar[TimerTarget]
TIMER_STATUS_UNSPECIFIED: TimerStatus
TIMER_STATUS_ACTIVE: TimerStatus
TIMER_STATUS_FIRED: TimerStatus
TIMER_STATUS_CANCELED: TimerStatus
TIMER_TARGET_UNSPECIFIED: TimerTarget
TIMER_TARGET_PLANNER_TIMER: TimerTarget
TIMER_TARGET_DISPATCHER_SEND: TimerTarget

class Timer(_message.Message):
    __slots__ = ("tenant_id", "key", "group_key", "kind", "fire_at", "target_subject", "payload", "status", "version", "fired_at", "target", "canceled_at", "cancel_reason")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    GROUP_KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FIRE_AT_FIELD_NUMBER: _ClassVar[int]
    TARGET_SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FIRED_AT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CANCELED_AT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REASON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    key: str
    group_key: str
    kind: str
    fire_at: _timestamp_pb2.Timestamp
    target_subject: str
    payload: bytes
    status: TimerStatus
    version: int
    fired_at: _timestamp_pb2.Timestamp
    target: TimerTarget
    canceled_at: _timestamp_pb2.Timestamp
    cancel_reason: str
    def __init__(self, tenant_id: _Optional[str] = ..., key: _Optional[str] = ..., group_key: _Optional[str] = ..., kind: _Optional[str] = ..., fire_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., target_subject: _Optional[str] = ..., payload: _Optional[bytes] = ..., status: _Optional[_Union[TimerStatus, str]] = ..., version: _Optional[int] = ..., fired_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., target: _Optional[_Union[TimerTarget, str]] = ..., canceled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancel_reason: _Optional[str] = ...) -> None: ...

class ScheduleTimerRequest(_message.Message):
    __slots__ = ("timer",)
    TIMER_FIELD_NUMBER: _ClassVar[int]
    timer: Timer
    def __init__(self, timer: _Optional[_Union[Timer, _Mapping]] = ...) -> None: ...

class ScheduleTimerResponse(_message.Message):
    __slots__ = ("timer",)
    TIMER_FIELD_NUMBER: _ClassVar[int]
    timer: Timer
    def __init__(self, timer: _Optional[_Union[Timer, _Mapping]] = ...) -> None: ...

class CancelTimerRequest(_message.Message):
    __slots__ = ("tenant_id", "key", "reason", "include_fired")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FIRED_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    key: str
    reason: str
    include_fired: bool
    def __init__(self, tenant_id: _Optional[str] = ..., key: _Optional[str] = ..., reason: _Optional[str] = ..., include_fired: _Optional[bool] = ...) -> None: ...

class CancelTimerResponse(_message.Message):
    __slots__ = ("timer",)
    TIMER_FIELD_NUMBER: _ClassVar[int]
    timer: Timer
    def __init__(self, timer: _Optional[_Union[Timer, _Mapping]] = ...) -> None: ...

class CancelTimersRequest(_message.Message):
    __slots__ = ("tenant_id", "group_key")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_KEY_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    group_key: str
    def __init__(self, tenant_id: _Optional[str] = ..., group_key: _Optional[str] = ...) -> None: ...

class CancelTimersResponse(_message.Message):
    __slots__ = ("canceled_count",)
    CANCELED_COUNT_FIELD_NUMBER: _ClassVar[int]
    canceled_count: int
    def __init__(self, canceled_count: _Optional[int] = ...) -> None: ...

class GetTimerRequest(_message.Message):
    __slots__ = ("tenant_id", "key")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    key: str
    def __init__(self, tenant_id: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class GetTimerResponse(_message.Message):
    __slots__ = ("timer",)
    TIMER_FIELD_NUMBER: _ClassVar[int]
    timer: Timer
    def __init__(self, timer: _Optional[_Union[Timer, _Mapping]] = ...) -> None: ...

class BatchScheduleTimersRequest(_message.Message):
    __slots__ = ("tenant_id", "timers")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TIMERS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    timers: _containers.RepeatedCompositeFieldContainer[Timer]
    def __init__(self, tenant_id: _Optional[str] = ..., timers: _Optional[_Iterable[_Union[Timer, _Mapping]]] = ...) -> None: ...

class BatchScheduleTimersResponse(_message.Message):
    __slots__ = ("scheduled_count",)
    SCHEDULED_COUNT_FIELD_NUMBER: _ClassVar[int]
    scheduled_count: int
    def __init__(self, scheduled_count: _Optional[int] = ...) -> None: ...

class BatchCancelTimersRequest(_message.Message):
    __slots__ = ("tenant_id", "keys")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant_id: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchCancelTimersResponse(_message.Message):
    __slots__ = ("canceled_count",)
    CANCELED_COUNT_FIELD_NUMBER: _ClassVar[int]
    canceled_count: int
    def __init__(self, canceled_count: _Optional[int] = ...) -> None: ...

class ListTimersRequest(_message.Message):
    __slots__ = ("tenant_id", "status", "group_key", "fire_after", "fire_before", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    GROUP_KEY_FIELD_NUMBER: _ClassVar[int]
    FIRE_AFTER_FIELD_NUMBER: _ClassVar[int]
    FIRE_BEFORE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    status: TimerStatus
    group_key: str
    fire_after: _timestamp_pb2.Timestamp
    fire_before: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., status: _Optional[_Union[TimerStatus, str]] = ..., group_key: _Optional[str] = ..., fire_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fire_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTimersResponse(_message.Message):
    __slots__ = ("timers", "next_page_token")
    TIMERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    timers: _containers.RepeatedCompositeFieldContainer[Timer]
    next_page_token: str
    def __init__(self, timers: _Optional[_Iterable[_Union[Timer, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
