"""Regression tests: inputs that once broke the properties of the edge and the events worker,
pinned as plain tests (huge or deeply nested entries, NaN and lone surrogates, odd step indexes,
Inbound Parse charsets and envelopes, the content type in the inbound dedupe key).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from edge_properties_support import T0_SECONDS, Harness, _noise, check_inbound, recorded_message
from events_helpers import multipart, outboxed

from dripiq.events.v1 import messages_pb2
from dripiq_devtools.fake_sendgrid import build_event
from dripiq_events.edge.app import EVENTS_PATH, INBOUND_PATH

# --- regression tests: inputs the properties once broke -----------------------------------
#
# Each was a batch or post the edge accepted (200), so SendGrid would not send it again, and on
# which EventIngest.handle_webhook raised: the worker retried it until max_deliver and then
# dead-lettered it whole, losing the well-formed event beside the bad entry.


async def good_event_beside(h: Harness, entry: bytes) -> None:
    """A signed batch of one well-formed event for a recorded message and `entry` (raw JSON):
    the edge takes it, and the worker must keep the good event."""
    sent = await recorded_message(h)
    body = b"[" + json.dumps(build_event(sent.accepted, "open")).encode() + b"," + entry + b"]"
    status, data = await h.post(EVENTS_PATH, body, h.signed(body))
    assert status == 200 and data is not None
    await h.ingest.handle_webhook(data)
    (fact,) = await outboxed(h.engine, sent.tenant_id, "open")
    assert fact.message_id == sent.message_id


def tied_entry(**fields: Any) -> bytes:
    """A well-formed entry whose custom args tie it to a (new) tenant: it is matched."""
    entry = {"event": "open", "timestamp": T0_SECONDS, "tenant_id": f"t-{uuid.uuid4().hex[:12]}", "message_id": "m-1"}
    return json.dumps({**entry, **fields}).encode()


async def test_regression_an_incompressible_3k_sg_event_id_keeps_its_batch(h):
    await good_event_beside(
        h, json.dumps({"event": "open", "timestamp": T0_SECONDS, "sg_event_id": _noise(1, 3000)}).encode()
    )


@pytest.mark.parametrize("column", ["message_id", "campaign_id"])
async def test_regression_a_3k_message_or_campaign_id_keeps_its_batch(h, column):
    await good_event_beside(h, tied_entry(**{column: _noise(2, 3000)}))


async def test_regression_an_entry_nested_600_deep_keeps_its_batch(h):
    await good_event_beside(h, b"[" * 600 + b"]" * 600)


async def test_regression_a_body_nested_100k_deep_is_400_at_the_edge(h):
    body = b"[" * 100_000 + b"]" * 100_000
    status, _ = await h.post(EVENTS_PATH, body, h.signed(body))
    assert status == 400


@pytest.mark.parametrize("entry", [b'{"event": "open", "timestamp": NaN}', b'{"event": "open", "latency": 1e400}'])
async def test_regression_nan_or_infinity_is_not_json(h, entry):
    """NaN, Infinity and numbers past a double are not JSON (RFC 8259), and jsonb refuses them:
    the body is refused whole, before anything is published."""
    body = b"[" + entry + b"]"
    status, data = await h.post(EVENTS_PATH, body, h.signed(body))
    assert status == 400 and data is None


@pytest.mark.parametrize("entry", [b'"\\ud800"', b'{"sg_event_id": "s-1", "email": "\\udc00@example.com"}'])
async def test_regression_a_lone_surrogate_keeps_its_batch(h, entry):
    await good_event_beside(h, entry)


async def test_regression_an_event_type_with_a_trailing_newline_keeps_its_batch(h):
    await good_event_beside(h, tied_entry(event="open\n"))


@pytest.mark.parametrize("step", ["\u00b2", "--1", "1" * 5000], ids=["superscript", "double-minus", "5000-digits"])
async def test_regression_a_step_index_int_cannot_read_keeps_its_batch(h, step):
    await good_event_beside(h, json.dumps({"event": "open", "timestamp": T0_SECONDS, "step_index": step}).encode())


async def test_regression_a_step_index_beyond_int32_keeps_its_batch(h):
    await good_event_beside(h, tied_entry(step_index=2**31))


async def inbound_of(h: Harness, fields: dict[str, bytes]) -> None:
    """Post an Inbound Parse form (made unique) and have the worker handle what was published."""
    body, content_type = multipart({**fields, "attachment1": uuid.uuid4().hex.encode()})
    assert await check_inbound(h, body, content_type, well_formed=True) is not None


@pytest.mark.parametrize(
    "charsets,text",
    [
        (b'{"text": "idna"}', b"hello"),
        (b'{"text": "undefined"}', b"hello"),
        (b'{"text": "punycode"}', b"caf\xe9"),
        (b'{"text": "utf-8\\u0000"}', b"hello"),
        (b'{"subject": "\\ud800"}', b"hello"),
        (b'{"text": "unicode_escape"}', b"\\ud800"),
        (b'{"text": "utf-7"}', b"+2AA-"),
    ],
    ids=["idna", "undefined", "punycode", "nul-in-name", "surrogate-name", "unicode_escape", "utf-7"],
)
async def test_regression_an_inbound_charset_keeps_the_mail(h, charsets, text):
    await inbound_of(h, {"text": text, "subject": b"Hi", "charsets": charsets, "to": b"sales@dripiq.test"})


async def test_regression_a_lone_surrogate_in_the_envelope_keeps_the_mail(h):
    await inbound_of(h, {"envelope": b'{"to": ["\\ud800@example.com"]}', "text": b"hello"})


async def test_regression_inbound_dedupe_counts_the_content_type(h):
    body, content_type = multipart({"text": uuid.uuid4().hex.encode(), "to": b"sales@dripiq.test"})
    wrong = "multipart/form-data; boundary=wrong"
    assert (await h.post(INBOUND_PATH, body, h.parse_signed(body, wrong)))[0] == 200
    status, data = await h.post(INBOUND_PATH, body, h.parse_signed(body, content_type))
    assert status == 200 and data is not None
    assert messages_pb2.RawWebhook.FromString(data).content_type == content_type
