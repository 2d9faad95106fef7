import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_OUTCOME_UNSPECIFIED: _ClassVar[TaskOutcome]
    TASK_OUTCOME_DONE: _ClassVar[TaskOutcome]
    TASK_OUTCOME_NO_ANSWER: _ClassVar[TaskOutcome]
    TASK_OUTCOME_REPLIED: _ClassVar[TaskOutcome]
    TASK_OUTCOME_DECLINED: _ClassVar[TaskOutcome]
    TASK_OUTCOME_SKIPPED: _ClassVar[TaskOutcome]

class MessageStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_STATUS_UNSPECIFIED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_QUEUED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_SENDING: _ClassVar[MessageStatus]
    MESSAGE_STATUS_SENT: _ClassVar[MessageStatus]
    MESSAGE_STATUS_FAILED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_SUPPRESSED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_UNKNOWN: _ClassVar[MessageStatus]
    MESSAGE_STATUS_TASK_OPEN: _ClassVar[MessageStatus]
    MESSAGE_STATUS_TASK_DONE: _ClassVar[MessageStatus]
    MESSAGE_STATUS_WITHHELD: _ClassVar[MessageStatus]
TASK_OUTCOME_UNSPECIFIED: TaskOutcome
TASK_OUTCOME_DONE: TaskOutcome
TASK_OUTCOME_NO_ANSWER: TaskOutcome
TASK_OUTCOME_REPLIED: TaskOutcome
TASK_OUTCOME_DECLINED: TaskOutcome
TASK_OUTCOME_SKIPPED: TaskOutcome
MESSAGE_STATUS_UNSPECIFIED: MessageStatus
MESSAGE_STATUS_QUEUED: MessageStatus
MESSAGE_STATUS_SENDING: MessageStatus
MESSAGE_STATUS_SENT: MessageStatus
MESSAGE_STATUS_FAILED: MessageStatus
MESSAGE_STATUS_SUPPRESSED: MessageStatus
MESSAGE_STATUS_UNKNOWN: MessageStatus
MESSAGE_STATUS_TASK_OPEN: MessageStatus
MESSAGE_STATUS_TASK_DONE: MessageStatus
MESSAGE_STATUS_WITHHELD: MessageStatus

class ReplyForwarding(_message.Message):
    __slots__ = ("tenant_id", "catch_all")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CATCH_ALL_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    catch_all: str
    def __init__(self, tenant_id: _Optional[str] = ..., catch_all: _Optional[str] = ...) -> None: ...

class SetReplyForwardingRequest(_message.Message):
    __slots__ = ("reply_forwarding",)
    REPLY_FORWARDING_FIELD_NUMBER: _ClassVar[int]
    reply_forwarding: ReplyForwarding
    def __init__(self, reply_forwarding: _Optional[_Union[ReplyForwarding, _Mapping]] = ...) -> None: ...

class SetReplyForwardingResponse(_message.Message):
    __slots__ = ("reply_forwarding",)
    REPLY_FORWARDING_FIELD_NUMBER: _ClassVar[int]
    reply_forwarding: ReplyForwarding
    def __init__(self, reply_forwarding: _Optional[_Union[ReplyForwarding, _Mapping]] = ...) -> None: ...

class GetReplyForwardingRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class GetReplyForwardingResponse(_message.Message):
    __slots__ = ("reply_forwarding",)
    REPLY_FORWARDING_FIELD_NUMBER: _ClassVar[int]
    reply_forwarding: ReplyForwarding
    def __init__(self, reply_forwarding: _Optional[_Union[ReplyForwarding, _Mapping]] = ...) -> None: ...

class CompleteTaskRequest(_message.Message):
    __slots__ = ("tenant_id", "message_id", "outcome", "notes", "completed_at")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    message_id: str
    outcome: TaskOutcome
    notes: str
    completed_at: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., message_id: _Optional[str] = ..., outcome: _Optional[_Union[TaskOutcome, str]] = ..., notes: _Optional[str] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CompleteTaskResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: Message
    def __init__(self, message: _Optional[_Union[Message, _Mapping]] = ...) -> None: ...

class RateLimit(_message.Message):
    __slots__ = ("tenant_id", "channel", "per_minute", "per_hour", "per_day")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    PER_DAY_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    channel: str
    per_minute: int
    per_hour: int
    per_day: int
    def __init__(self, tenant_id: _Optional[str] = ..., channel: _Optional[str] = ..., per_minute: _Optional[int] = ..., per_hour: _Optional[int] = ..., per_day: _Optional[int] = ...) -> None: ...

class SetRateLimitRequest(_message.Message):
    __slots__ = ("rate_limit",)
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    rate_limit: RateLimit
    def __init__(self, rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ...) -> None: ...

class SetRateLimitResponse(_message.Message):
    __slots__ = ("rate_limit",)
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    rate_limit: RateLimit
    def __init__(self, rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ...) -> None: ...

class GetRateLimitRequest(_message.Message):
    __slots__ = ("tenant_id", "channel")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    channel: str
    def __init__(self, tenant_id: _Optional[str] = ..., channel: _Optional[str] = ...) -> None: ...

class GetRateLimitResponse(_message.Message):
    __slots__ = ("rate_limit",)
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    rate_limit: RateLimit
    def __init__(self, rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("message_id", "tenant_id", "campaign_id", "step_index", "contact_id", "channel", "status", "to_email", "from_email", "subject", "provider", "provider_message_id", "attempt_count", "last_error", "created_at", "sent_at", "task_outcome", "task_notes")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_EMAIL_FIELD_NUMBER: _ClassVar[int]
    FROM_EMAIL_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    TASK_OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TASK_NOTES_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    tenant_id: str
    campaign_id: str
    step_index: int
    contact_id: str
    channel: str
    status: MessageStatus
    to_email: str
    from_email: str
    subject: str
    provider: str
    provider_message_id: str
    attempt_count: int
    last_error: str
    created_at: _timestamp_pb2.Timestamp
    sent_at: _timestamp_pb2.Timestamp
    task_outcome: TaskOutcome
    task_notes: str
    def __init__(self, message_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., step_index: _Optional[int] = ..., contact_id: _Optional[str] = ..., channel: _Optional[str] = ..., status: _Optional[_Union[MessageStatus, str]] = ..., to_email: _Optional[str] = ..., from_email: _Optional[str] = ..., subject: _Optional[str] = ..., provider: _Optional[str] = ..., provider_message_id: _Optional[str] = ..., attempt_count: _Optional[int] = ..., last_error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., task_outcome: _Optional[_Union[TaskOutcome, str]] = ..., task_notes: _Optional[str] = ...) -> None: ...

class GetMessageRequest(_message.Message):
    __slots__ = ("tenant_id", "message_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    message_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., message_id: _Optional[str] = ...) -> None: ...

class GetMessageResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: Message
    def __init__(self, message: _Optional[_Union[Message, _Mapping]] = ...) -> None: ...

class ListMessagesRequest(_message.Message):
    __slots__ = ("tenant_id", "campaign_id", "contact_id", "status", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    campaign_id: str
    contact_id: str
    status: MessageStatus
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., contact_id: _Optional[str] = ..., status: _Optional[_Union[MessageStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListMessagesResponse(_message.Message):
    __slots__ = ("messages", "next_page_token")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    next_page_token: str
    def __init__(self, messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SenderIdentity(_message.Message):
    __slots__ = ("sender_identity_id", "tenant_id", "from_email", "from_name", "verified", "provider_config_id", "per_minute", "per_day", "created_at", "forward_to", "verified_at", "verified_by")
    SENDER_IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_EMAIL_FIELD_NUMBER: _ClassVar[int]
    FROM_NAME_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_CONFIG_ID_FIELD_NUMBER: _ClassVar[int]
    PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    PER_DAY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FORWARD_TO_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_BY_FIELD_NUMBER: _ClassVar[int]
    sender_identity_id: str
    tenant_id: str
    from_email: str
    from_name: str
    verified: bool
    provider_config_id: str
    per_minute: int
    per_day: int
    created_at: _timestamp_pb2.Timestamp
    forward_to: str
    verified_at: _timestamp_pb2.Timestamp
    verified_by: str
    def __init__(self, sender_identity_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., from_email: _Optional[str] = ..., from_name: _Optional[str] = ..., verified: _Optional[bool] = ..., provider_config_id: _Optional[str] = ..., per_minute: _Optional[int] = ..., per_day: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., forward_to: _Optional[str] = ..., verified_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., verified_by: _Optional[str] = ...) -> None: ...

class CreateSenderIdentityRequest(_message.Message):
    __slots__ = ("tenant_id", "from_email", "from_name", "provider_config_id", "per_minute", "per_day", "forward_to")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_EMAIL_FIELD_NUMBER: _ClassVar[int]
    FROM_NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_CONFIG_ID_FIELD_NUMBER: _ClassVar[int]
    PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    PER_DAY_FIELD_NUMBER: _ClassVar[int]
    FORWARD_TO_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    from_email: str
    from_name: str
    provider_config_id: str
    per_minute: int
    per_day: int
    forward_to: str
    def __init__(self, tenant_id: _Optional[str] = ..., from_email: _Optional[str] = ..., from_name: _Optional[str] = ..., provider_config_id: _Optional[str] = ..., per_minute: _Optional[int] = ..., per_day: _Optional[int] = ..., forward_to: _Optional[str] = ...) -> None: ...

class CreateSenderIdentityResponse(_message.Message):
    __slots__ = ("sender_identity",)
    SENDER_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    sender_identity: SenderIdentity
    def __init__(self, sender_identity: _Optional[_Union[SenderIdentity, _Mapping]] = ...) -> None: ...

class GetSenderIdentityRequest(_message.Message):
    __slots__ = ("tenant_id", "sender_identity_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    sender_identity_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., sender_identity_id: _Optional[str] = ...) -> None: ...

class GetSenderIdentityResponse(_message.Message):
    __slots__ = ("sender_identity",)
    SENDER_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    sender_identity: SenderIdentity
    def __init__(self, sender_identity: _Optional[_Union[SenderIdentity, _Mapping]] = ...) -> None: ...

class VerifySenderIdentityRequest(_message.Message):
    __slots__ = ("tenant_id", "sender_identity_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    sender_identity_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., sender_identity_id: _Optional[str] = ...) -> None: ...

class VerifySenderIdentityResponse(_message.Message):
    __slots__ = ("sender_identity",)
    SENDER_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    sender_identity: SenderIdentity
    def __init__(self, sender_identity: _Optional[_Union[SenderIdentity, _Mapping]] = ...) -> None: ...

class Suppression(_message.Message):
    __slots__ = ("tenant_id", "address", "reason", "created_at")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    address: str
    reason: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., address: _Optional[str] = ..., reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AddSuppressionRequest(_message.Message):
    __slots__ = ("tenant_id", "address", "reason")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    address: str
    reason: str
    def __init__(self, tenant_id: _Optional[str] = ..., address: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AddSuppressionResponse(_message.Message):
    __slots__ = ("suppression",)
    SUPPRESSION_FIELD_NUMBER: _ClassVar[int]
    suppression: Suppression
    def __init__(self, suppression: _Optional[_Union[Suppression, _Mapping]] = ...) -> None: ...

class CheckSuppressionsRequest(_message.Message):
    __slots__ = ("tenant_id", "addresses")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    addresses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant_id: _Optional[str] = ..., addresses: _Optional[_Iterable[str]] = ...) -> None: ...

class CheckSuppressionsResponse(_message.Message):
    __slots__ = ("suppressed",)
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    suppressed: _containers.RepeatedCompositeFieldContainer[Suppression]
    def __init__(self, suppressed: _Optional[_Iterable[_Union[Suppression, _Mapping]]] = ...) -> None: ...

class ListSenderIdentitiesRequest(_message.Message):
    __slots__ = ("tenant_id", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSenderIdentitiesResponse(_message.Message):
    __slots__ = ("sender_identities", "next_page_token")
    SENDER_IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sender_identities: _containers.RepeatedCompositeFieldContainer[SenderIdentity]
    next_page_token: str
    def __init__(self, sender_identities: _Optional[_Iterable[_Union[SenderIdentity, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateSenderIdentityRequest(_message.Message):
    __slots__ = ("sender_identity", "update_mask")
    SENDER_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    sender_identity: SenderIdentity
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, sender_identity: _Optional[_Union[SenderIdentity, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateSenderIdentityResponse(_message.Message):
    __slots__ = ("sender_identity",)
    SENDER_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    sender_identity: SenderIdentity
    def __init__(self, sender_identity: _Optional[_Union[SenderIdentity, _Mapping]] = ...) -> None: ...

class DeleteSenderIdentityRequest(_message.Message):
    __slots__ = ("tenant_id", "sender_identity_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    sender_identity_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., sender_identity_id: _Optional[str] = ...) -> None: ...

class DeleteSenderIdentityResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RemoveSuppressionRequest(_message.Message):
    __slots__ = ("tenant_id", "address", "reason")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    address: str
    reason: str
    def __init__(self, tenant_id: _Optional[str] = ..., address: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RemoveSuppressionResponse(_message.Message):
    __slots__ = ("removed_count",)
    REMOVED_COUNT_FIELD_NUMBER: _ClassVar[int]
    removed_count: int
    def __init__(self, removed_count: _Optional[int] = ...) -> None: ...

class ListSuppressionsRequest(_message.Message):
    __slots__ = ("tenant_id", "reason", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    reason: str
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., reason: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSuppressionsResponse(_message.Message):
    __slots__ = ("suppressions", "next_page_token")
    SUPPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    suppressions: _containers.RepeatedCompositeFieldContainer[Suppression]
    next_page_token: str
    def __init__(self, suppressions: _Optional[_Iterable[_Union[Suppression, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ImportSuppressionsRequest(_message.Message):
    __slots__ = ("tenant_id", "suppressions")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    suppressions: _containers.RepeatedCompositeFieldContainer[Suppression]
    def __init__(self, tenant_id: _Optional[str] = ..., suppressions: _Optional[_Iterable[_Union[Suppression, _Mapping]]] = ...) -> None: ...

class ImportSuppressionsResponse(_message.Message):
    __slots__ = ("imported_count", "rejected")
    IMPORTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    imported_count: int
    rejected: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, imported_count: _Optional[int] = ..., rejected: _Optional[_Iterable[str]] = ...) -> None: ...
