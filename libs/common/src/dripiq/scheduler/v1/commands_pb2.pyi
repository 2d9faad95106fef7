from dripiq.scheduler.v1 import scheduler_service_pb2 as _scheduler_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TimerCommand(_message.Message):
    __slots__ = ("tenant_id", "schedule", "cancel", "cancel_group", "schedule_batch", "ops")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    CANCEL_GROUP_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_BATCH_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    schedule: _scheduler_service_pb2.Timer
    cancel: _scheduler_service_pb2.CancelTimerRequest
    cancel_group: _scheduler_service_pb2.CancelTimersRequest
    schedule_batch: TimerBatch
    ops: TimerOps
    def __init__(self, tenant_id: _Optional[str] = ..., schedule: _Optional[_Union[_scheduler_service_pb2.Timer, _Mapping]] = ..., cancel: _Optional[_Union[_scheduler_service_pb2.CancelTimerRequest, _Mapping]] = ..., cancel_group: _Optional[_Union[_scheduler_service_pb2.CancelTimersRequest, _Mapping]] = ..., schedule_batch: _Optional[_Union[TimerBatch, _Mapping]] = ..., ops: _Optional[_Union[TimerOps, _Mapping]] = ...) -> None: ...

class TimerOps(_message.Message):
    __slots__ = ("commands",)
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedCompositeFieldContainer[TimerCommand]
    def __init__(self, commands: _Optional[_Iterable[_Union[TimerCommand, _Mapping]]] = ...) -> None: ...

class TimerBatch(_message.Message):
    __slots__ = ("timers",)
    TIMERS_FIELD_NUMBER: _ClassVar[int]
    timers: _containers.RepeatedCompositeFieldContainer[_scheduler_service_pb2.Timer]
    def __init__(self, timers: _Optional[_Iterable[_Union[_scheduler_service_pb2.Timer, _Mapping]]] = ...) -> None: ...
