"""Properties of the Event Webhook at the edge and in the events worker: a signed body that is not a
JSON array is 400, any signed JSON array is taken and every entry kept (huge strings are 413 or
stored), a good event survives whatever garbage shares its batch, and a wrong signature is 403.
"""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from edge_properties_support import BODY_LIMIT, JSON, PROPERTY, T0_SECONDS, Harness, _noise, recorded_message
from events_helpers import outboxed
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.events.v1 import messages_pb2
from dripiq_devtools.fake_sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER, build_event
from dripiq_events.edge.app import EVENTS_PATH
from dripiq_events.models import message_events
from dripiq_events.storable import loads_json
from dripiq_events.storing import IngestResult

# 50k-100k characters: one repeated (compresses well) or noise (does not).
HUGE = st.builds(lambda ch, n: ch * n, st.characters(), st.integers(50_000, 100_000)) | st.builds(
    _noise, st.integers(0, 2**32), st.integers(50_000, 100_000)
)


# Valid event times only in months that no other test creates a partition for (a row of a
# month in the DEFAULT partition stops that month's partition from being created): around
# T0 and 1970. Beyond year 9999 or before year 1 they are out of range, hence rejected.
TIMESTAMPS = (
    st.integers(T0_SECONDS - 20 * 86400, T0_SECONDS + 20 * 86400)
    | st.integers(-(10**6), 10**6)
    | st.integers(min_value=253402300800)
    | st.integers(max_value=-62135596801)
)
WRONG_TIMESTAMPS = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.integers(0, 2**40).map(str)
    | st.booleans()
    | st.none()
    | st.lists(JSON, max_size=3)
    | st.dictionaries(st.text(max_size=8), JSON, max_size=3)
)
EVENT_NAMES = st.sampled_from(
    [
        "processed",
        "delivered",
        "open",
        "click",
        "bounce",
        "dropped",
        "deferred",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
        "group_resubscribe",
        "x" * 41,
        "Open",
        "open.click",
        "open*",
        "",
    ]
)
TEXTY = st.text(max_size=40) | HUGE | JSON
EVENT_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "event": EVENT_NAMES | st.text(max_size=45) | JSON,
        "timestamp": TIMESTAMPS | WRONG_TIMESTAMPS,
        # (A huge sg_event_id is pinned below: the unique index cannot hold it.)
        "sg_event_id": st.text(max_size=30) | st.integers() | JSON,
        "sg_message_id": st.text(max_size=30) | HUGE | JSON,
        "email": TEXTY,
        "tenant_id": st.from_regex(r"t-[a-z0-9]{6}", fullmatch=True) | TEXTY,
        "message_id": st.uuids().map(str) | TEXTY,
        "campaign_id": TEXTY,
        "step_index": st.integers(-(2**31), 2**31 - 1) | st.text(max_size=12) | JSON,
        "url": TEXTY,
        "reason": TEXTY,
        "type": TEXTY,
        "sg_machine_open": st.booleans() | JSON,
    },
)
ITEMS = JSON | EVENT_LIKE
BATCHES = st.lists(ITEMS, max_size=8)


@st.composite
def json_bodies(draw: st.DrawFn, items: Any) -> bytes:
    """An encoded batch, with or without SendGrid's trailing CRLF and ASCII escapes."""
    separators = draw(st.sampled_from([None, (",", ":")]))
    text = json.dumps(items, ensure_ascii=draw(st.booleans()), separators=separators)
    try:
        encoded = text.encode()
    except UnicodeEncodeError:
        # A lone surrogate has no UTF-8 form: SendGrid could only send it escaped.
        encoded = json.dumps(items, ensure_ascii=True, separators=separators).encode()
    return encoded + draw(st.sampled_from([b"", b"\r\n", b"\n"]))


NOT_ARRAYS = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    JSON.filter(lambda v: not isinstance(v, list)).map(lambda v: json.dumps(v).encode()),
    st.sampled_from(
        [
            b"",
            b"[",
            b"]",
            b"[1,",
            b"[]]",
            b"{}",
            b"null",
            b'"[]"',
            b"\xef\xbb\xbf[]",
            b"\xff\xfe[\x00]\x00",
            b"[]\x00",
            b"[\xc3\x28]",
            b'[{"event": "open", "timestamp": 1}',
        ]
    ),
)


# --- what the service documents, written independently of it -------------------------------

_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,39}")


def _occurs(item: Any) -> int | None:
    """The event time of a well-formed entry, else None (a rejected one takes received_at)."""
    if not isinstance(item, dict):
        return None
    timestamp, event = item.get("timestamp"), item.get("event")
    if type(timestamp) is not int or not isinstance(event, str) or not _EVENT_TYPE.fullmatch(event):
        return None
    try:
        datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return timestamp


def _batch_keys(items: list[Any]) -> dict[tuple[Any, ...], bool]:
    """Each entry once, by SendGrid's sg_event_id (NULs dropped) or else by the entry itself,
    and its time: key -> whether that first entry is well-formed."""
    keys: dict[tuple[Any, ...], bool] = {}
    for item in items:
        event_id = item.get("sg_event_id") if isinstance(item, dict) else None
        event_id = event_id.replace("\x00", "") if isinstance(event_id, str) else ""
        identity = event_id or "digest:" + json.dumps(item, sort_keys=True, ensure_ascii=False)
        occurs = _occurs(item)
        keys.setdefault((identity, occurs), occurs is not None)
    return keys


async def rows_received_at(engine: AsyncEngine, received_at: datetime) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).where(message_events.c.received_at == received_at)) or 0)


async def check_events_body(h: Harness, body: bytes) -> IngestResult | None:
    """Post one signed body and check the edge's answer, then the worker on what it published."""
    status, data = await h.post(EVENTS_PATH, body, h.signed(body))
    items: Any = None
    if len(body) > BODY_LIMIT:
        expected = 413
    else:
        try:
            items = loads_json(body.decode("utf-8"))
        except ValueError:
            items = None
        expected = 200 if isinstance(items, list) else 400
    assert status == expected, (status, body[:200])
    if data is None:
        return None

    raw = messages_pb2.RawWebhook.FromString(data)
    assert (raw.kind, raw.body) == (messages_pb2.RawWebhook.KIND_SENDGRID_EVENTS, body)
    received_at = raw.received_at.ToDatetime(tzinfo=UTC)
    result = await h.ingest.handle_webhook(data)
    keys = _batch_keys(items)
    assert result.received == len(keys)
    assert result.rejected == sum(1 for well_formed in keys.values() if not well_formed)
    assert result.stored == result.published + result.unmatched <= result.received
    # What it says it stored is there (earlier examples may have stored the same events).
    assert await rows_received_at(h.engine, received_at) == result.stored

    # JetStream redelivering the same message stores and publishes nothing more.
    again = await h.ingest.handle_webhook(data)
    assert (again.received, again.rejected, again.stored, again.published) == (result.received, result.rejected, 0, 0)
    return result


# --- Event Webhook ------------------------------------------------------------------------


@PROPERTY
@given(body=NOT_ARRAYS)
async def test_signed_bodies_that_are_not_a_json_array_are_400(h, body):
    await check_events_body(h, body)


@PROPERTY
@given(data=st.data(), items=BATCHES)
async def test_any_signed_json_array_is_taken_and_every_entry_kept(h, data, items):
    await check_events_body(h, data.draw(json_bodies(items)))


@PROPERTY
@given(
    items=st.lists(EVENT_LIKE, min_size=1, max_size=6),
    huge=st.lists(HUGE, min_size=1, max_size=3),
    keys=st.lists(
        st.sampled_from(["email", "url", "reason", "campaign_id", "message_id", "event", "type", "sg_message_id"]),
        min_size=1,
        max_size=3,
    ),
)
async def test_huge_strings_are_413_or_stored(h, items, huge, keys):
    for i, (text, key) in enumerate(zip(huge, keys, strict=False)):
        items[i % len(items)][key] = text
    await check_events_body(h, json.dumps(items).encode())


@PROPERTY
@given(garbage=st.lists(ITEMS, max_size=6), position=st.integers(0, 6), kind=EVENT_NAMES.filter(bool))
async def test_a_good_event_is_kept_whatever_garbage_shares_its_batch(h, garbage, position, kind):
    sent = await recorded_message(h)
    event_type = kind if _EVENT_TYPE.fullmatch(kind) else "open"
    good = build_event(sent.accepted, event_type)
    items = [*garbage[:position], good, *garbage[position:]]
    body = json.dumps(items).encode()
    result = await check_events_body(h, body)
    if len(body) > BODY_LIMIT:
        return
    assert result is not None and result.published >= 1
    (fact,) = await outboxed(h.engine, sent.tenant_id, event_type)
    assert (fact.message_id, fact.campaign_id, fact.step_index) == (sent.message_id, "camp-1", 2)


PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)


@PROPERTY
@given(
    signature=PRINTABLE | st.binary(min_size=1, max_size=90).map(lambda b: base64.b64encode(b).decode()),
    timestamp=PRINTABLE | st.integers(-(10**12), 10**12).map(str) | st.just("now"),
)
async def test_a_wrong_signature_is_403_whatever_its_headers_hold(h, signature, timestamp):
    body = json.dumps([{"event": "open", "timestamp": T0_SECONDS}]).encode()
    if timestamp == "now":
        timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: timestamp}
    status, _ = await h.post(EVENTS_PATH, body, headers)
    assert status == 403
