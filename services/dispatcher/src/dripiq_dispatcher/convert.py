"""Proto <-> domain for the dispatcher: commands from the bus into domain values, stored rows
into the API's messages. The one place that knows both shapes."""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common import validation, windows
from dripiq_common.errors import InvalidArgument
from dripiq_dispatcher.domain import TASK_OUTCOMES, ContactWindow, NewMessage, Status
from dripiq_dispatcher.forward_mail import Reply


def contact_window(given: messages_pb2.ContactWindow) -> ContactWindow | None:
    """The command's window, or None when it gives none or one that cannot be placed in (a
    deferred send then comes back whenever, as before windows travelled)."""
    if not given.weekdays or not 0 <= given.start_hour < given.end_hour <= 24:
        return None
    if not set(given.weekdays) <= set(range(1, 8)):
        return None
    try:
        ZoneInfo(given.time_zone or "UTC")
    except (ValueError, ZoneInfoNotFoundError):
        return None
    return ContactWindow(
        windows.SendWindow(frozenset(given.weekdays), given.start_hour, given.end_hour), given.time_zone or "UTC"
    )


def new_message(command: messages_pb2.SendMessageCommand) -> NewMessage:
    """Raises InvalidArgument only for what makes the command unrecordable (tenant, id).

    Everything else is judged by `content_problem` once the row exists, so the planner hears
    of a bad command as a FAILED outcome instead of it vanishing into the dead-letter stream.
    """
    tenant = validation.tenant_id(command.tenant_id)
    try:
        # Reply tokens carry the id's 16 bytes, so it has to be a UUID.
        message_id = str(uuid.UUID(command.message_id))
    except ValueError:
        raise InvalidArgument("message_id", f"must be a UUID, got {command.message_id!r}") from None
    return NewMessage(
        message_id=message_id,
        tenant_id=tenant,
        campaign_id=command.campaign_id,
        step_index=command.step_index,
        contact_id=command.contact_id,
        channel=(command.channel or "email").lower(),
        to_email=command.to_email.strip(),
        to_name=command.to_name,
        sender_identity_id=command.sender_identity_id,
        subject=command.subject,
        body_text=command.body_text,
        body_html=command.body_html,
        categories=tuple(dict.fromkeys(command.categories)),
        postal_address=command.postal_address.strip(),
        track_opens=command.tracking.opens if command.HasField("tracking") else True,
        track_clicks=command.tracking.clicks if command.HasField("tracking") else True,
        thread_message_ids=tuple(command.thread_message_ids),
        window=contact_window(command.send_window) if command.HasField("send_window") else None,
        holiday_calendars=tuple(command.holiday_calendars),
        product_id=command.product_id,
        strategist=command.strategist,
        variant=command.variant,
    )


def task_outcome(value: int) -> str:
    """The stored name of a CompleteTask outcome; INVALID_ARGUMENT for none or an unknown one."""
    if value not in TASK_OUTCOMES:
        names = ", ".join(pb.TaskOutcome.Name(v) for v in TASK_OUTCOMES)
        raise InvalidArgument("outcome", f"must be one of {names}")
    return TASK_OUTCOMES[value]


def reply_to_forward(command: messages_pb2.ForwardReplyCommand) -> Reply:
    """Raises InvalidArgument only for what makes the command unrecordable (tenant, inbound
    and message ids); everything else is judged by `reply_problem` once the row exists."""
    return Reply(
        tenant_id=validation.tenant_id(command.tenant_id),
        inbound_id=validation.required(command.inbound_id, "inbound_id"),
        message_id=validation.required(command.message_id, "message_id"),
        from_email=command.from_email.strip(),
        subject=command.subject,
        text=command.text,
        html=command.html,
        received_at=command.received_at.ToDatetime(tzinfo=UTC) if command.HasField("received_at") else None,
        reply_class=command.reply_class.strip(),
    )


_STATUS = {
    Status.QUEUED: pb.MESSAGE_STATUS_QUEUED,
    Status.SENDING: pb.MESSAGE_STATUS_SENDING,
    Status.SENT: pb.MESSAGE_STATUS_SENT,
    Status.FAILED: pb.MESSAGE_STATUS_FAILED,
    Status.SUPPRESSED: pb.MESSAGE_STATUS_SUPPRESSED,
    Status.UNKNOWN: pb.MESSAGE_STATUS_UNKNOWN,
    Status.TASK_OPEN: pb.MESSAGE_STATUS_TASK_OPEN,
    Status.TASK_DONE: pb.MESSAGE_STATUS_TASK_DONE,
    Status.WITHHELD: pb.MESSAGE_STATUS_WITHHELD,
}


# Stored outcome -> the enum value's name, which the message constructor takes as the value.
_TASK_OUTCOME_NAMES = {name: pb.TaskOutcome.Name(value) for value, name in TASK_OUTCOMES.items()}


def status_from_proto(value: int) -> Status:
    """The status a List filter names; INVALID_ARGUMENT for a value this version does not know."""
    for status, proto in _STATUS.items():
        if proto == value:
            return status
    raise InvalidArgument("status", f"unknown message status {value}")


def message_to_proto(row: Any) -> pb.Message:
    message = pb.Message(
        message_id=row.message_id,
        tenant_id=row.tenant_id,
        campaign_id=row.campaign_id,
        step_index=row.step_index,
        contact_id=row.contact_id,
        channel=row.channel,
        status=_STATUS[Status(row.status)],
        to_email=row.to_email,
        from_email=row.from_email or "",
        subject=row.subject,
        provider=row.provider or "",
        provider_message_id=row.provider_message_id or "",
        attempt_count=row.attempt_count,
        last_error=row.last_error or "",
        task_outcome=_TASK_OUTCOME_NAMES.get(row.task_outcome or "", "TASK_OUTCOME_UNSPECIFIED"),
        task_notes=row.task_notes or "",
    )
    message.created_at.FromDatetime(row.created_at)
    if row.sent_at is not None:
        message.sent_at.FromDatetime(row.sent_at)
    return message


def identity_to_proto(row: Any) -> pb.SenderIdentity:
    identity = pb.SenderIdentity(
        sender_identity_id=row.id,
        tenant_id=row.tenant_id,
        from_email=row.from_email,
        from_name=row.from_name,
        verified=row.verified,
        provider_config_id=row.provider_config_id,
        per_minute=row.per_minute,
        per_day=row.per_day,
        forward_to=row.forward_to,
        verified_by=row.verified_by,
    )
    identity.created_at.FromDatetime(row.created_at)
    if row.verified_at is not None:
        identity.verified_at.FromDatetime(row.verified_at)
    return identity


def suppression_to_proto(row: Any, address: str | None = None) -> pb.Suppression:
    suppression = pb.Suppression(tenant_id=row.tenant_id, address=address or row.address, reason=row.reason)
    suppression.created_at.FromDatetime(row.created_at)
    return suppression
