"""Shared by the property-based tests (hypothesis) of hostile input at the edge and in the events worker.

The edge runs in-process on 127.0.0.1 against the shared NATS server, as in
test_events_edge.py (the `h` fixture in conftest.py, started once for all of these tests). Each
property posts a generated body, reads back from the EDGE_WEBHOOKS stream exactly what the edge
published (by the sequence of its PubAck, on EDGE_WEBHOOKS or EDGE_INBOUND) and hands those bytes to `EventIngest.handle_webhook`,
as the events worker would. For any input: the edge never answers 5xx, a 2xx means one message
on the stream and a 4xx none, and the worker does not raise on what the edge accepted: malformed
entries are stored as `rejected` or unmatched, so nothing already accepted is lost.

The properties are in test_edge_webhook_properties.py, test_edge_inbound_properties.py and
test_edge_unsubscribe_properties.py; inputs that once broke those rules are pinned as plain
regression tests in test_edge_regressions.py. Here: the harness, the settings every property
runs with, the JSON strategy they share, and the checks and builders more than one file uses.
"""

from __future__ import annotations

import base64
import hashlib
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from events_helpers import T0, Sent, accepted_message, outcome
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from dripiq.events.v1 import messages_pb2
from dripiq_common.bus.contract import stream_for_subject
from dripiq_common.errors import PermanentMessageError
from dripiq_common.tokens import TokenSigner, rfc_message_id
from dripiq_devtools.fake_sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER, FakeSendGrid
from dripiq_events.edge.app import INBOUND_PATH
from dripiq_events.ingest import EventIngest
from dripiq_events.models import inbound_emails
from dripiq_events.storing import IngestResult

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
        stream = stream_for_subject(subject)
        assert stream is not None
        msg = await self.recorder.js.get_msg(stream.name, seq=ack.seq)
        assert msg.subject == subject
        return status, msg.data

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes | None]:
        return await self.request("POST", self.base + path, body, headers)

    def parse_signed(self, body: bytes, content_type: str) -> dict[str, str]:
        """An Inbound Parse post's headers, signed as the Parse security policy signs it."""
        timestamp = str(int(time.time()))
        return {
            "Content-Type": content_type,
            SIGNATURE_HEADER: self.fake.sign_parse(body, timestamp),
            TIMESTAMP_HEADER: timestamp,
        }

    def signed(self, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))
        return {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: self.fake.sign(body, timestamp),
            TIMESTAMP_HEADER: timestamp,
        }


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


T0_SECONDS = int(T0.timestamp())


async def check_inbound(h: Harness, body: bytes, content_type: str, *, well_formed: bool) -> IngestResult | None:
    """Post an Inbound Parse body; the worker then stores it or (not multipart) dead-letters it."""
    status, data = await h.post(INBOUND_PATH, body, h.parse_signed(body, content_type))
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
