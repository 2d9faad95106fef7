"""The dispatcher's Prometheus metrics (served by dripiq_common.metrics)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter

from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.outbox import OutboxMessage

OUTCOMES = Counter(
    "dripiq_dispatcher_outcomes",
    "Message outcomes committed, by kind (sent, failed, suppressed, deferred) and channel",
    ["kind", "channel"],
)


def count_outcomes(messages: Iterable[OutboxMessage]) -> None:
    """Count the outcome facts among a committed transaction's outbox messages."""
    for message in messages:
        fact = message.message
        if isinstance(fact, messages_pb2.MessageOutcome):
            kind = messages_pb2.OutcomeKind.Name(fact.kind).removeprefix("OUTCOME_KIND_").lower()
            OUTCOMES.labels(kind=kind, channel=fact.channel or "email").inc()
