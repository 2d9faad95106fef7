"""The dispatcher's Prometheus metrics (served by dripiq_common.metrics)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.outbox import OutboxMessage

OUTCOMES = Counter(
    "dripiq_dispatcher_outcomes",
    "Message outcomes committed, by kind (sent, failed, suppressed, deferred) and channel",
    ["kind", "channel"],
)

REPLY_FORWARDS = Counter(
    "dripiq_dispatcher_reply_forwards",
    "Replies forwarded to a person, by what a delivery of the forward command came to: sent, "
    "failed, unknown (a call may have gone out; never repeated), unroutable (nowhere to send "
    "it), retried (a transient failure, back after JetStream's backoff)",
    ["result"],
)

PROVIDER_CALL_SECONDS = Histogram(
    "dripiq_dispatcher_provider_call_seconds",
    "Time of one SendGrid Mail Send call, by result: accepted, or how it failed (retry, "
    "permanent, unknown: no answer after the request left)",
    ["result"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def count_outcomes(messages: Iterable[OutboxMessage]) -> None:
    """Count the outcome facts among a committed transaction's outbox messages."""
    for message in messages:
        fact = message.message
        if isinstance(fact, messages_pb2.MessageOutcome):
            kind = messages_pb2.OutcomeKind.Name(fact.kind).removeprefix("OUTCOME_KIND_").lower()
            OUTCOMES.labels(kind=kind, channel=fact.channel or "email").inc()


UNKNOWN_RESOLVED = Counter(
    "dripiq_dispatcher_unknown_resolved",
    "Sends left unknown (the call may have gone out) settled without a provider event: resent "
    "(SendGrid's reports went past them without one) or failed (its reports lagged past the deadline)",
    ["result"],
)
BREAKER_OPEN = Gauge(
    "dripiq_dispatcher_provider_breaker_open",
    "1 while the send worker has stopped taking sends because SendGrid keeps failing (open or probing), else 0",
)
BREAKER_OPENINGS = Counter(
    "dripiq_dispatcher_provider_breaker_openings",
    "Times the send worker stopped taking sends after SendGrid failed for a passing reason many times in a row",
)
