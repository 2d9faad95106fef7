"""Events rules without I/O: reading SendGrid events, tying them to messages, paging, partitions."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dripiq.events.v1 import messages_pb2
from dripiq_common import engagement
from dripiq_common.errors import PermanentMessageError
from dripiq_events import convert, domain
from dripiq_events.correlation import correlate
from dripiq_events.domain import Outbound
from dripiq_events.partitions import months_to_cover
from dripiq_events.sendgrid_events import parse_event, parse_event_batch
from dripiq_events.storable import MAX_RAW_DEPTH, loads_json

NOW = datetime(2030, 1, 1, tzinfo=UTC)
KNOWN = Outbound("m-1", "t-1", "camp-1", 3, "contact-1", "ada@example.com")


def event(**fields: object) -> dict[str, object]:
    return {
        "email": "ada@example.com",
        "timestamp": 1_900_000_000,
        "event": "open",
        "sg_event_id": "ev-1",
        "sg_message_id": "xmsg.filter0001.1.0",
        **fields,
    }


def test_custom_args_sit_at_the_top_level_and_step_index_is_a_string():
    parsed = parse_event(
        event(tenant_id="t-1", message_id="m-1", campaign_id="camp-1", step_index="3", sg_machine_open=True),
        received_at=NOW,
    )
    assert (parsed.tenant_id, parsed.message_id, parsed.campaign_id, parsed.step_index) == ("t-1", "m-1", "camp-1", 3)
    assert parsed.provider_message_id == "xmsg"
    assert parsed.machine_open and parsed.occurred_at == datetime.fromtimestamp(1_900_000_000, UTC)


def test_bounce_reason_is_the_bounce_type():
    bounce = parse_event(event(event="bounce", type="blocked", reason="550 no"), received_at=NOW)
    dropped = parse_event(event(event="dropped", reason="Bounced Address"), received_at=NOW)
    assert (bounce.reason, dropped.reason) == ("blocked", "Bounced Address")


@pytest.mark.parametrize(
    "item",
    [
        event(timestamp="soon"),
        event(timestamp=True),
        event(event=None),
        event(event="Open.Now"),
        event(timestamp=10**20),
        ["a", "list"],
        None,
    ],
)
def test_malformed_entries_are_rejected_at_receipt_time(item):
    parsed = parse_event(item, received_at=NOW)
    assert (parsed.event_type, parsed.occurred_at) == (domain.REJECTED, NOW)
    assert correlate(parsed, by_message_id={"m-1": KNOWN}, by_provider_id={}).matched is False


def test_entries_without_sg_event_id_get_a_stable_id():
    first = parse_event(event(sg_event_id=None), received_at=NOW)
    again = parse_event(event(sg_event_id=None), received_at=NOW)
    assert first.provider_event_id == again.provider_event_id
    assert first.provider_event_id.startswith("sha256:")


def test_a_batch_lists_each_event_once_and_must_be_an_array():
    body = b'[{"event":"open","timestamp":1,"sg_event_id":"a"},{"event":"open","timestamp":1,"sg_event_id":"a"}]'
    assert len(parse_event_batch(body, received_at=NOW)) == 1
    with pytest.raises(PermanentMessageError):
        parse_event_batch(b'{"event": "open"}', received_at=NOW)


def test_nul_characters_are_dropped_before_they_reach_postgres():
    parsed = parse_event(event(url="https://x.test/\x00a", extra={"k\x00": ["v\x00"]}), received_at=NOW)
    stored = correlate(parsed, by_message_id={}, by_provider_id={})
    assert stored.url == "https://x.test/a"
    assert stored.raw_event["extra"] == {"k": ["v"]}


def test_correlation_prefers_our_record_and_refuses_a_foreign_tenant():
    by_custom_arg = parse_event(event(tenant_id="t-1", message_id="m-1", campaign_id="other"), received_at=NOW)
    matched = correlate(by_custom_arg, by_message_id={"m-1": KNOWN}, by_provider_id={})
    assert (matched.matched, matched.campaign_id, matched.contact_id) == (True, "camp-1", "contact-1")

    foreign = parse_event(event(tenant_id="t-2", message_id="m-1"), received_at=NOW)
    assert not correlate(foreign, by_message_id={"m-1": KNOWN}, by_provider_id={"xmsg": KNOWN}).matched


def test_correlation_falls_back_to_the_provider_message_id():
    parsed = parse_event(event(), received_at=NOW)
    matched = correlate(parsed, by_message_id={}, by_provider_id={"xmsg": KNOWN})
    assert (matched.tenant_id, matched.message_id) == ("t-1", "m-1")
    assert not correlate(parsed, by_message_id={}, by_provider_id={}).matched


def test_engagement_subject_and_fields():
    parsed = parse_event(event(event="click", url="https://x.test"), received_at=NOW)
    stored = correlate(parsed, by_message_id={}, by_provider_id={"xmsg": KNOWN})
    fact = convert.engagement_event(stored, event_id=42)
    assert (fact.event_id, fact.url, fact.step_index, fact.email) == ("42", "https://x.test", 3, "ada@example.com")
    assert fact.occurred_at.ToDatetime(tzinfo=UTC) == parsed.occurred_at
    [message] = engagement.outbox_messages([fact])
    assert message.subject == "dripiq.events.engagement.t-1.click"
    assert isinstance(message.message, messages_pb2.EngagementBatch)
    assert list(message.message.events) == [fact]
    with pytest.raises(ValueError):
        convert.engagement_event(correlate(parsed, by_message_id={}, by_provider_id={}), event_id=1)


def test_partitions_cover_last_month_to_months_ahead_across_a_year_end():
    months = months_to_cover(datetime(2030, 12, 31, 23, 59, tzinfo=UTC), 2)
    assert [m.name for m in months] == [
        "message_events_2030_11",
        "message_events_2030_12",
        "message_events_2031_01",
        "message_events_2031_02",
    ]
    assert months[1].end == datetime(2031, 1, 1, tzinfo=UTC)
    assert "FROM ('2030-11-01 00:00:00+00') TO ('2030-12-01 00:00:00+00')" in months[0].create_sql()


# NUL, lone surrogates and characters JSON escapes or not, besides whatever hypothesis picks.
_awkward = st.text(st.sampled_from(["a", "\x00", "\ud800", "\udc00", "é", "😀", "\\"]) | st.characters(), max_size=12)
_json_scalars = st.none() | st.booleans() | st.integers() | _awkward
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(
        st.fixed_dictionaries(
            {"event": st.sampled_from(["open", "click"]), "timestamp": st.integers(0, 2**33)},
            optional={"email": _awkward, "extra": _json_values, "sg_event_id": _awkward},
        ),
        max_size=5,
    ),
    ensure_ascii=st.booleans(),
)
def test_the_clean_body_shortcut_parses_exactly_as_scrubbing_every_entry(items, ensure_ascii):
    # Text with NUL and lone surrogates included: the shortcut must notice them in the body.
    body = json.dumps(items, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")
    shortcut = parse_event_batch(body, received_at=NOW)
    scrubbed = [parse_event(item, received_at=NOW) for item in loads_json(body)]
    unique = {(e.provider_event_id, e.occurred_at): e for e in reversed(scrubbed)}
    assert shortcut == [unique[(e.provider_event_id, e.occurred_at)] for e in shortcut]
    assert len(shortcut) == len(unique)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 28, 6, 52, 7, 999999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
    ],
)
def test_engagement_keeps_the_moment_to_the_microsecond(moment):
    reply = domain.reply_event(
        outbound=KNOWN,
        dedupe_key="sha256:x",
        occurred_at=moment,
        auto_reason=None,
        raw_event={},
        reply=domain.ReplyFacts(inbound_id=1, snippet="Sounds good"),
    )
    assert convert.engagement_event(reply, event_id=1).occurred_at.ToDatetime(tzinfo=UTC) == moment


@pytest.mark.parametrize("depth", range(MAX_RAW_DEPTH - 2, MAX_RAW_DEPTH + 3))
@pytest.mark.parametrize("container", ["dict", "list"])
def test_the_clean_body_shortcut_cuts_nesting_where_scrubbing_does(depth, container):
    nested: object = "leaf"
    for _ in range(depth):
        nested = {"k": nested} if container == "dict" else [nested]
    item = {"event": "click", "timestamp": 1_900_000_000, "sg_event_id": "deep", "url_offset": nested}
    body = json.dumps([item]).encode()

    [shortcut] = parse_event_batch(body, received_at=NOW)

    assert shortcut == parse_event(json.loads(body)[0], received_at=NOW)
    # The entry itself is depth 0, so its value sits at depth 1 and `depth` more levels below.
    cut = depth + 1 > MAX_RAW_DEPTH
    assert ("<nested too deeply>" in json.dumps(shortcut.raw)) == cut
