from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PlannerTimer(_message.Message):
    __slots__ = ("tenant_id", "campaign_id", "step_due", "trigger_due", "resume_due")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_DUE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_DUE_FIELD_NUMBER: _ClassVar[int]
    RESUME_DUE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    campaign_id: str
    step_due: StepDue
    trigger_due: TriggerDue
    resume_due: ResumeDue
    def __init__(self, tenant_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., step_due: _Optional[_Union[StepDue, _Mapping]] = ..., trigger_due: _Optional[_Union[TriggerDue, _Mapping]] = ..., resume_due: _Optional[_Union[ResumeDue, _Mapping]] = ...) -> None: ...

class StepDue(_message.Message):
    __slots__ = ("step_index", "schedule_version")
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_VERSION_FIELD_NUMBER: _ClassVar[int]
    step_index: int
    schedule_version: int
    def __init__(self, step_index: _Optional[int] = ..., schedule_version: _Optional[int] = ...) -> None: ...

class TriggerDue(_message.Message):
    __slots__ = ("message_id", "step_index", "trigger")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    step_index: int
    trigger: str
    def __init__(self, message_id: _Optional[str] = ..., step_index: _Optional[int] = ..., trigger: _Optional[str] = ...) -> None: ...

class ResumeDue(_message.Message):
    __slots__ = ("pause_version",)
    PAUSE_VERSION_FIELD_NUMBER: _ClassVar[int]
    pause_version: int
    def __init__(self, pause_version: _Optional[int] = ...) -> None: ...
