from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class PlanCampaign(_message.Message):
    __slots__ = ("tenant_id", "campaign_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    campaign_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., campaign_id: _Optional[str] = ...) -> None: ...
