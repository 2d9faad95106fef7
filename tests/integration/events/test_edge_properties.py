"""Property-based tests (hypothesis): hostile input at the edge and in the events worker.

The edge runs in-process on 127.0.0.1 against the shared NATS server, as in
test_events_edge.py. Each property posts a generated body, reads back from the EDGE_WEBHOOKS
stream exactly what the edge published (by the sequence of its PubAck) and hands those bytes
to `EventIngest.handle_webhook`, as the events worker would. For any input: the edge never
answers 5xx, a 2xx means one message on the stream and a 4xx none, and the worker does not
raise on what the edge accepted: malformed entries are stored as `rejected` or unmatched, so
nothing already accepted is lost.

Inputs that once broke those rules are also pinned as plain regression tests at the end of
the file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from events_helpers import SECRET, T0, Sent, accepted_message, multipart, outboxed, outcome
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from dripiq.events.v1 import messages_pb2
from dripiq_common.clock import ManualClock
from dripiq_common.errors import PermanentMessageError
from dripiq_common.tokens import TokenSigner, rfc_message_id
from dripiq_devtools.fake_sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER, FakeSendGrid, build_event
from dripiq_events.edge.app import EVENTS_PATH, INBOUND_PATH, Edge, load_verifiers
from dripiq_events.ingest import EventIngest
from dripiq_events.models import inbound_emails, message_events
from dripiq_events.storable import loads_json
from dripiq_events.storing import IngestResult

STREAM = "EDGE_WEBHOOKS"
# Room for the 100k-character strings below; still under NATS' 1 MiB max_payload.
BODY_LIMIT = 512 * 1024
MAIL_DOMAIN = "mail.dripiq.test"

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    # The same examples on every run (CI must not turn red by chance), and no example database.
    derandomize=True,
    database=None,
    # Generating 100k-character strings is slow and large, and meant to be.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- the edge, in-process, with a record of every PubAck -----------------------------------


@dataclass
class RecordingJetStream:
    """The edge's JetStream context, noting the PubAck of every publish."""

    js: Any
    acks: list[tuple[str, Any]] = field(default_factory=list)

    async def publish(self, subject: str, payload: bytes = b"", **kwargs: Any) -> Any:
        ack = await self.js.publish(subject, payload, **kwargs)
        self.acks.append((subject, ack))
        return ack

    def __getattr__(self, name: str) -> Any:
        return getattr(self.js, name)


@dataclass
class Harness:
    base: str
    http: aiohttp.ClientSession
    recorder: RecordingJetStream
    fake: FakeSendGrid
    signer: TokenSigner
    ingest: EventIngest
    engine: AsyncEngine

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return f"Harness({self.base})"

    async def request(
        self, method: str, url: str | URL, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes | None]:
        """(status, the stream message the edge published for it or None); checks that a 2xx
        published exactly one message and anything else none, and that nothing was a 5xx."""
        before = len(self.recorder.acks)
        async with self.http.request(method, url, data=body, headers=headers) as response:
            await response.read()
            status = response.status
        published = self.recorder.acks[before:]
        assert status < 500, f"{method} {str(url)[:200]} answered {status}"
        if not 200 <= status < 300:
            assert published == [], f"a {status} must publish nothing"
            return status, None
        assert len(published) == 1, "a 2xx is one message on the stream"
        subject, ack = published[0]
        # What JetStream holds under that sequence is what the events worker will be handed.
        msg = await self.recorder.js.get_msg(STREAM, seq=ack.seq)
        assert msg.subject == subject
        return status, msg.data

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes | None]:
        return await self.request("POST", self.base + path, body, headers)

    def signed(self, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))
        return {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: self.fake.sign(body, timestamp),
            TIMESTAMP_HEADER: timestamp,
        }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def h(nats_conn, engine) -> AsyncIterator[Harness]:  # type: ignore[no-untyped-def]
    fake, signer = FakeSendGrid(), TokenSigner(SECRET)
    recorder = RecordingJetStream(nats_conn.jetstream())
    edge = Edge(
        js=recorder,  # type: ignore[arg-type]
        nc=nats_conn,
        verifiers=load_verifiers(fake.public_key_base64),
        signer=signer,
        max_body_bytes=BODY_LIMIT,
        signature_tolerance_seconds=600,
    )
    assert edge.body_limit == BODY_LIMIT
    runner = web.AppRunner(edge.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    async with aiohttp.ClientSession() as http:
        yield Harness(
            base=f"http://127.0.0.1:{runner.addresses[0][1]}",
            http=http,
            recorder=recorder,
            fake=fake,
            signer=signer,
            ingest=EventIngest(engine, ManualClock(T0), signer),
            engine=engine,
        )
    await runner.cleanup()


# --- strategies ---------------------------------------------------------------------------

JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _noise(seed: int, size: int) -> str:
    """`size` characters that do not compress (a real 100k random id, say)."""
    return base64.b64encode(random.Random(seed).randbytes(size)).decode()[:size]


# 50k-100k characters: one repeated (compresses well) or noise (does not).
HUGE = st.builds(lambda ch, n: ch * n, st.characters(), st.integers(50_000, 100_000)) | st.builds(
    _noise, st.integers(0, 2**32), st.integers(50_000, 100_000)
)

T0_SECONDS = int(T0.timestamp())
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


# --- Inbound Parse ------------------------------------------------------------------------

FIELD_NAMES = ["headers", "text", "html", "from", "to", "subject", "envelope", "charsets", "attachment1", "SPF"]
ENCODINGS = ["utf-8", "latin-1", "utf-16", "cp1252", "shift_jis", "koi8-r"]
CHARSET_NAMES = st.sampled_from(
    [
        "utf-8",
        "UTF-8",
        "iso-8859-1",
        "windows-1252",
        "x-nonsense",
        "utf-16",
        "utf-32",
        "utf-8-sig",
        "ascii",
        "koi8-r",
        "shift_jis",
        "gb2312",
        "big5",
        "base64",
        "rot13",
        "hex",
        "zlib",
        "unknown-8bit",
        "",
        " ",
        "utf-7",
        "idna",
        "undefined",
        "punycode",
        "unicode_escape",
        "raw_unicode_escape",
        "utf-8\x00",
    ]
) | st.text(max_size=20)
ENCODED_TEXT = st.builds(
    lambda t, enc: t.encode(enc, errors="replace"), st.text(max_size=150), st.sampled_from(ENCODINGS)
)
VALUES = st.binary(max_size=200) | ENCODED_TEXT
HEADER_NAMES = st.sampled_from(
    [
        "Subject",
        "From",
        "To",
        "Cc",
        "Reply-To",
        "In-Reply-To",
        "References",
        "Message-ID",
        "Auto-Submitted",
        "Precedence",
        "X-Autoreply",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Date",
        "Received",
    ]
) | st.from_regex(r"[!-9;-~]{1,20}", fullmatch=True)
HEADER_VALUES = (
    st.text(max_size=60)
    | st.sampled_from(
        [
            "=?utf-8?q?caf=C3=A9?=",
            "=?x-nonsense?b?AAAA?=",
            "=?idna?q?x?=",
            "=?utf-8?b?!!!?=",
            "=?unknown-8bit?q?=FF?=",
            '"\\',
            "<",
            "<<>>",
            '"',
            "(",
            "a@b@c",
            "<a@b> <c@d",
            ":;,@<>",
            "undisclosed-recipients:;",
            "text/plain; charset=idna",
            "text/plain; charset=x-nonsense",
            "multipart/mixed",
            "multipart/alternative; boundary=",
            "base64",
            "quoted-printable",
            "auto-replied",
            "bulk",
        ]
    )
    | st.binary(max_size=40).map(lambda b: b.decode("latin-1"))
)
HEADER_BLOCKS = st.builds(
    lambda pairs, sep, enc: b"".join(f"{n}: {v}".encode(enc, errors="replace") + sep for n, v in pairs),
    st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8),
    st.sampled_from([b"\r\n", b"\n"]),
    st.sampled_from(["utf-8", "latin-1"]),
)
RAW_EMAILS = st.one_of(
    st.binary(max_size=400),
    st.builds(lambda head, body: head + b"\r\n" + body, HEADER_BLOCKS, VALUES),
)
CHARSETS_FIELD = st.one_of(
    st.dictionaries(st.sampled_from(FIELD_NAMES), CHARSET_NAMES | JSON, max_size=6).map(
        lambda d: json.dumps(d).encode()
    ),
    JSON.map(lambda v: json.dumps(v).encode()),
    VALUES,
)
ENVELOPE_FIELD = st.one_of(
    st.fixed_dictionaries(
        {}, optional={"to": st.lists(st.emails() | st.text(max_size=30) | JSON, max_size=3) | JSON, "from": JSON}
    ).map(lambda d: json.dumps(d).encode()),
    JSON.map(lambda v: json.dumps(v).encode()),
    VALUES,
)


@dataclass(frozen=True)
class InboundPost:
    body: bytes
    content_type: str
    # Built as multipart/form-data with a boundary the body uses: must parse, not raise.
    well_formed: bool
    charsets: Any = None


@st.composite
def inbound_posts(draw: st.DrawFn) -> InboundPost:
    fields: dict[str, bytes] = draw(st.dictionaries(st.sampled_from(FIELD_NAMES), VALUES, max_size=6))
    if draw(st.booleans()):
        fields["headers"] = draw(HEADER_BLOCKS)
    if draw(st.booleans()):
        fields["charsets"] = draw(CHARSETS_FIELD)
    if draw(st.booleans()):
        fields["envelope"] = draw(ENVELOPE_FIELD)
    if draw(st.booleans()):
        fields["email"] = draw(RAW_EMAILS)  # "Send Raw" mode
    boundary = draw(st.from_regex(r"[0-9A-Za-z_-]{1,40}", fullmatch=True))
    body, content_type = multipart(fields, boundary)
    # The boundary must not show up inside a value for the post to be what it was built as.
    # (RFC 2046 wants at least one part: an empty form is not well-formed either.)
    well_formed = bool(fields) and not any(f"--{boundary}".encode() in v for v in fields.values())
    broken = draw(
        st.sampled_from(
            ["none", "none", "truncated", "wrong_boundary", "no_boundary", "quoted", "mixed", "garbage", "lf"]
        )
    )
    if broken == "truncated":
        body, well_formed = body[: draw(st.integers(0, max(len(body) - 1, 0)))], False
    elif broken == "wrong_boundary":
        content_type, well_formed = "multipart/form-data; boundary=not-" + boundary, False
    elif broken == "no_boundary":
        content_type, well_formed = "multipart/form-data", False
    elif broken == "quoted":
        content_type = f'multipart/form-data; boundary="{boundary}"'
    elif broken == "mixed":
        content_type = f"Multipart/Mixed; BOUNDARY={boundary}; charset=x-nonsense"
    elif broken == "garbage":
        body, well_formed = draw(st.binary(max_size=400)), False
    elif broken == "lf":
        body = body.replace(b"\r\n", b"\n")
    return InboundPost(body, content_type, well_formed, fields.get("charsets"))


async def check_inbound(h: Harness, body: bytes, content_type: str, *, well_formed: bool) -> IngestResult | None:
    """Post an Inbound Parse body; the worker then stores it or (not multipart) dead-letters it."""
    status, data = await h.post(INBOUND_PATH, body, {"Content-Type": content_type})
    multipart_type = content_type.split(";")[0].strip().lower().startswith("multipart/")
    assert status == (413 if len(body) > BODY_LIMIT and multipart_type else 200 if multipart_type else 400)
    if data is None:
        return None
    raw = messages_pb2.RawWebhook.FromString(data)
    assert (raw.kind, raw.body) == (messages_pb2.RawWebhook.KIND_SENDGRID_INBOUND, body)
    assert raw.content_type == content_type
    try:
        result = await h.ingest.handle_webhook(data)
    except PermanentMessageError:
        # Only a post that is no multipart at all: the worker dead-letters it, kept for replay.
        assert not well_formed
        return None
    assert (result.received, result.published, result.rejected) == (1, 0, 0)
    assert result.stored in (0, 1) and result.unmatched == result.stored
    # Stored now or by an earlier example with the same body (SendGrid's retries dedupe).
    async with h.engine.connect() as conn:
        stored = await conn.scalar(
            select(func.count()).where(inbound_emails.c.dedupe_key == "sha256:" + hashlib.sha256(body).hexdigest())
        )
    assert stored == 1
    return result


@PROPERTY
@given(post=inbound_posts())
async def test_any_multipart_post_is_taken_and_stored_or_dead_lettered(h, post):
    await check_inbound(h, post.body, post.content_type, well_formed=post.well_formed)


@PROPERTY
@given(
    body=st.binary(max_size=300),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/x-www-form-urlencoded", "multipart", "", "form-data"]
    ),
)
async def test_a_post_that_is_not_multipart_is_400(h, body, content_type):
    await check_inbound(h, body, content_type, well_formed=False)


# --- one-click unsubscribe ----------------------------------------------------------------

TOKENS = st.one_of(
    st.text(min_size=1, max_size=200),
    st.binary(min_size=1, max_size=120).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")),
    st.builds(lambda ch, n: ch * n, st.characters(), st.integers(1000, 20_000)),
)


async def check_bad_token(h: Harness, token: str) -> None:
    url = URL(h.base + "/u/" + quote(token, safe=""), encoded=True)
    for method in ("GET", "POST"):
        body = b"List-Unsubscribe=One-Click" if method == "POST" else None
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        status, _ = await h.request(method, url, body, headers)
        assert 400 <= status < 500, (method, status, token[:100])


@PROPERTY
@given(token=TOKENS)
async def test_an_arbitrary_unsubscribe_token_is_4xx(h, token):
    await check_bad_token(h, token)


B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@PROPERTY
@given(data=st.data(), tenant=st.from_regex(r"t-[a-z0-9]{8}", fullmatch=True), message=st.uuids())
async def test_a_damaged_unsubscribe_token_is_4xx(h, data, tenant, message):
    token = h.signer.unsubscribe_token(tenant, str(message))
    how = data.draw(st.sampled_from(["change", "cut", "extend"]))
    if how == "change":
        # Not the last character: some of its bits are base64 padding and carry nothing.
        at = data.draw(st.integers(0, len(token) - 2))
        other = data.draw(st.sampled_from(B64URL).filter(lambda c: c != token[at]))
        forged = token[:at] + other + token[at + 1 :]
    elif how == "cut":
        forged = token[: data.draw(st.integers(1, len(token) - 1))]
    else:
        # Base64url characters: decoding skips any others, so they would not damage the token.
        forged = token + data.draw(st.text(B64URL, min_size=1, max_size=20))
    await check_bad_token(h, forged)


# --- regression tests: inputs the properties once broke -----------------------------------
#
# Each was a batch or post the edge accepted (200), so SendGrid would not send it again, and on
# which EventIngest.handle_webhook raised: the worker retried it until max_deliver and then
# dead-lettered it whole, losing the well-formed event beside the bad entry.


async def recorded_message(h: Harness) -> Sent:
    """A message the dispatcher sent and the events service recorded, for a new tenant."""
    tenant_id = f"t-{uuid.uuid4().hex[:12]}"
    message_id, x_message_id = str(uuid.uuid4()), f"x{uuid.uuid4().hex[:21]}"
    sent = Sent(
        tenant_id,
        message_id,
        x_message_id,
        rfc_message_id(message_id, MAIL_DOMAIN),
        accepted_message(tenant_id, message_id, x_message_id),
    )
    assert await h.ingest.record_outcome(outcome(sent))
    return sent


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
    assert (await h.post(INBOUND_PATH, body, {"Content-Type": "multipart/form-data; boundary=wrong"}))[0] == 200
    status, data = await h.post(INBOUND_PATH, body, {"Content-Type": content_type})
    assert status == 200 and data is not None
    assert messages_pb2.RawWebhook.FromString(data).content_type == content_type
