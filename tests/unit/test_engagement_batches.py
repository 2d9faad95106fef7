"""Engagement facts travel as EngagementBatch messages, one per tenant and type (decision 0014)."""

from __future__ import annotations

import pytest

from dripiq.events.v1.messages_pb2 import EngagementBatch, EngagementEvent
from dripiq_common import engagement
from dripiq_common.errors import PermanentMessageError


def fact(tenant: str, kind: str, n: int, url: str = "") -> EngagementEvent:
    return EngagementEvent(tenant_id=tenant, event_type=kind, event_id=str(n), message_id=f"m-{n}", url=url)


def test_facts_are_grouped_by_tenant_and_type_in_order():
    facts = [fact("t-1", "open", 1), fact("t-2", "open", 2), fact("t-1", "click", 3), fact("t-1", "open", 4)]
    messages = engagement.outbox_messages(facts)
    assert [(m.subject, [e.event_id for e in m.message.events]) for m in messages] == [
        ("dripiq.events.engagement.t-1.open", ["1", "4"]),
        ("dripiq.events.engagement.t-2.open", ["2"]),
        ("dripiq.events.engagement.t-1.click", ["3"]),
    ]
    assert engagement.read_all(m.message.SerializeToString() for m in messages) == [
        facts[0],
        facts[3],
        facts[1],
        facts[2],
    ]


def test_a_large_group_is_split_below_the_payload_limit_and_nothing_is_lost():
    long_url = "https://example.com/" + "x" * 8000
    facts = [fact("t-1", "click", n, url=long_url) for n in range(100)]
    messages = engagement.outbox_messages(facts)
    sizes = [len(m.message.SerializeToString()) for m in messages]
    assert len(messages) > 1
    assert max(sizes) <= engagement.MAX_BATCH_BYTES
    assert [e.event_id for m in messages for e in m.message.events] == [str(n) for n in range(100)]


def test_one_fact_larger_than_the_limit_still_travels_alone():
    huge = fact("t-1", "click", 1, url="x" * (engagement.MAX_BATCH_BYTES + 10))
    [message] = engagement.outbox_messages([fact("t-1", "click", 0), huge][1:])
    assert list(message.message.events) == [huge]


def test_no_facts_no_messages_and_an_undecodable_message_is_permanent():
    assert engagement.outbox_messages([]) == []
    assert engagement.read(EngagementBatch().SerializeToString()) == []
    with pytest.raises(PermanentMessageError):
        engagement.read(b"\xff\xff not a batch")
