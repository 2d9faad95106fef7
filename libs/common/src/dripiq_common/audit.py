"""The audit trail: every state-changing admin call, recorded by the server that answered it
as a structured log event (`audit`) and an AuditRecord on dripiq.audit.<...> (stream AUDIT,
kept a year), with who called, for which tenant, what the request named and how it ended.

It is written after the call answered, so a process that dies in between loses that record
(the log line included); the call's own effect is never held back by the trail.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from google.protobuf.message import Message
from nats.js import JetStreamContext

from dripiq.audit.v1 import audit_pb2
from dripiq_common.auth import Principal
from dripiq_common.bus.contract import Subjects

log = structlog.get_logger(__name__)

# Request fields that name what a call acts on (besides the tenant).
_NAMING = ("address", "key", "group_key", "channel", "catch_all", "forward_to")


def resource_of(request: Message) -> dict[str, str]:
    """What a request names: its ids, keys and addresses by field path (one level of nesting),
    and how many items its lists hold."""
    return dict(_named(request, ""))


def _named(message: Message, prefix: str) -> Iterator[tuple[str, str]]:
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.is_repeated:
            yield f"{path}.count", str(len(value))
        elif field.message_type is not None:
            if not prefix:
                yield from _named(value, f"{path}.")
        elif isinstance(value, str) and field.name != "tenant_id":
            if field.name.endswith("_id") or field.name in _NAMING:
                yield path, value


@dataclass
class AuditTrail:
    js: JetStreamContext
    service: str

    async def record(
        self, principal: Principal, method: str, tenant_id: str, request: Message, result: str, error: str = ""
    ) -> None:
        record = audit_pb2.AuditRecord(
            tenant_id=tenant_id,
            actor=principal.subject,
            actor_roles=sorted(role.value for role in principal.roles),
            method=method,
            resource=resource_of(request),
            result=result,
            error=error[:500],
            service=self.service,
        )
        record.occurred_at.FromDatetime(datetime.now(UTC))
        log.info(
            "audit",
            actor=record.actor,
            tenant_id=tenant_id,
            method=method,
            resource=dict(record.resource),
            result=result,
        )
        try:
            await self.js.publish(
                Subjects.audit(tenant_id, self.service),
                record.SerializeToString(),
                headers={"Nats-Msg-Id": str(uuid.uuid4())},
                timeout=5,
            )
        except Exception as exc:
            # The call has happened; its log line above is the record that remains.
            log.error("audit.publish_failed", method=method, tenant_id=tenant_id, error=repr(exc))
