"""Engagement facts on the bus: EngagementBatch messages on dripiq.events.engagement.<tenant>.<type>.

Facts travel in batches (docs/decisions/0014): at hundreds of millions of events, a NATS
message, PubAck, delivery and ack per event would cost every process on the path more than
storing the event does. A batch holds one tenant's facts of one type, so the subjects still
say whose and what they are, and a reader may filter on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dripiq.events.v1.messages_pb2 import EngagementBatch, EngagementEvent
from dripiq_common.bus.contract import Subjects, decode
from dripiq_common.outbox import OutboxMessage

# A completed task's reported outcome (MessageOutcome.task_outcome) that is engagement, and the
# event type it stands for. The dispatcher publishes the fact; the events service stores it.
TASK_ENGAGEMENT = {"replied": "reply", "declined": "unsubscribe"}


def task_event_id(message_id: str) -> str:
    """The engagement fact's event_id of a completed task (one completion per task), which is
    also the stored event's provider_event_id."""
    return f"task:{message_id}"


# Well under NATS's default 1 MiB payload limit, whatever the URLs and reasons carry.
MAX_BATCH_BYTES = 256 * 1024
# Messages a reader fetches at once: each may hold a thousand facts.
READ_BATCH = 16


def outbox_messages(facts: Iterable[EngagementEvent]) -> list[OutboxMessage]:
    """The facts grouped by tenant and type, in order, one EngagementBatch per group (split
    when a group would pass MAX_BATCH_BYTES)."""
    groups: dict[tuple[str, str], list[EngagementEvent]] = {}
    for fact in facts:
        groups.setdefault((fact.tenant_id, fact.event_type), []).append(fact)
    return [
        OutboxMessage(Subjects.engagement(tenant_id, event_type), batch)
        for (tenant_id, event_type), members in groups.items()
        for batch in _batches(members)
    ]


def _batches(facts: Sequence[EngagementEvent]) -> list[EngagementBatch]:
    """One batch of the facts, or halves of them (and so on) while a batch would pass
    MAX_BATCH_BYTES. Sizing the whole batch at once is one serialisation, not one per fact."""
    batch = EngagementBatch(events=facts)
    if len(facts) == 1 or batch.ByteSize() <= MAX_BATCH_BYTES:
        return [batch]
    half = len(facts) // 2
    return _batches(facts[:half]) + _batches(facts[half:])


def read(data: bytes) -> list[EngagementEvent]:
    """The facts of one message; an undecodable one raises PermanentMessageError."""
    return list(decode(EngagementBatch, data).events)


def read_all(batch: Iterable[bytes]) -> list[EngagementEvent]:
    return [fact for data in batch for fact in read(data)]
