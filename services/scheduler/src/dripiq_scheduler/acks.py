"""Publishing a firing round to JetStream and collecting its PubAcks, cheaply.

JetStreamContext.publish_async costs a semaphore, a random token, a future with a callback and a
parsed PubAck for every message, and Client.publish builds the header block a character at a
time: at thousands of timers a second that was the firer's largest cost (docs/performance.md).
Here a round's messages share one wildcard reply subscription; each reply is stored as it comes,
and only a reply that says something other than "stored" (an error, or no stream at all) is
parsed. What a round learns is the same: per message, acked or why not.

The header block goes out through the client's command queue (`_send_command`, `_flush_pending`,
as Client.publish does): private to nats-py, whose version uv.lock pins; the scheduler's
integration tests publish through it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import (
    BadHeaderError,
    BadSubjectError,
    ConnectionClosedError,
    ConnectionDrainingError,
    MaxPayloadError,
    OutboundBufferLimitError,
)
from nats.js.errors import APIError, NoStreamResponseError
from nats.protocol.command import hpub_cmd

from dripiq_common.bus.client import Outgoing

Answer = BaseException | None


def header_block(item: Outgoing) -> bytes:
    """NATS/1.0 headers with the message id. Names are ours; a value that could end its line
    is refused (a timer's key and kind were checked when stored, a dead letter's escaped)."""
    lines = [b"NATS/1.0"]
    for name, value in (*item.headers.items(), ("Nats-Msg-Id", item.msg_id)):
        if "\r" in value or "\n" in value:
            raise BadHeaderError(name)
        lines.append(f"{name}: {value.strip()}".encode())
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


class _Round:
    def __init__(self, size: int) -> None:
        self.replies: list[Msg | BaseException | None] = [None] * size
        self.waiting = size
        self.done = asyncio.Event()
        if not size:
            self.done.set()

    def settle(self, index: int, reply: Msg | BaseException) -> None:
        if 0 <= index < len(self.replies) and self.replies[index] is None:
            self.replies[index] = reply
            self.waiting -= 1
            if not self.waiting:
                self.done.set()

    def answer(self, index: int) -> Answer:
        reply = self.replies[index]
        if reply is None:
            return TimeoutError("no PubAck in time")
        if isinstance(reply, BaseException):
            return reply
        if not reply.data:
            # A status reply without a body: no stream took the subject (503 no responders).
            return NoStreamResponseError()
        if b'"error"' in reply.data:
            body = json.loads(reply.data)
            if "error" in body:
                # from_error raises the error's own class rather than returning it.
                try:
                    APIError.from_error(body["error"])
                except APIError as exc:
                    return exc
                return APIError(**body["error"])
        return None


class AckedPublisher:
    """One per firer: publishes rounds of messages, each with its own reply subject under one
    subscription, and answers per message: None when JetStream stored it (or had it already,
    inside the duplicate window), else the error, a TimeoutError where no PubAck came in time."""

    def __init__(self, nc: Client, ack_seconds: float) -> None:
        self._nc = nc
        self._ack_seconds = ack_seconds
        self._prefix = ""
        self._rounds: dict[str, _Round] = {}
        self._ids = itertools.count()
        self._starting = asyncio.Lock()

    async def _send(self, item: Outgoing, reply: str) -> None:
        """Client.publish, with the header block built here: the client's own loop (a regex and
        a character-by-character translate per header) cost more than the rest of a publish
        together (docs/performance.md). The checks are the client's, in the same order."""
        nc = self._nc
        if not item.subject or any(c in item.subject for c in " \t\r\n"):
            raise BadSubjectError
        if nc.is_closed:
            raise ConnectionClosedError
        if nc.is_draining_pubs:
            raise ConnectionDrainingError
        size = len(item.payload)
        if not nc.is_connected and (nc._max_pending_size <= 0 or size + nc._pending_data_size > nc._max_pending_size):
            raise OutboundBufferLimitError
        if size > nc._max_payload:
            raise MaxPayloadError
        await nc._send_command(hpub_cmd(item.subject, reply, header_block(item), item.payload))
        if nc._flush_queue is not None and nc._flush_queue.empty():
            await nc._flush_pending()

    async def _reply_prefix(self) -> str:
        async with self._starting:
            if not self._prefix:
                prefix = self._nc.new_inbox()
                await self._nc.subscribe(f"{prefix}.>", cb=self._on_reply)
                self._prefix = prefix
        return self._prefix

    async def _on_reply(self, msg: Msg) -> None:
        round_id, _, index = msg.subject[len(self._prefix) + 1 :].partition(".")
        pending = self._rounds.get(round_id)
        if pending is not None and index.isdigit():
            pending.settle(int(index), msg)

    async def publish(self, items: Sequence[Outgoing]) -> list[Answer]:
        prefix = await self._reply_prefix()
        round_id = str(next(self._ids))
        pending = _Round(len(items))
        self._rounds[round_id] = pending
        reply = f"{prefix}.{round_id}."
        try:
            for index, item in enumerate(items):
                try:
                    await self._send(item, reply + str(index))
                except (BadSubjectError, BadHeaderError, MaxPayloadError) as exc:
                    # This message's answer, not the round's.
                    pending.settle(index, exc)
            try:
                await asyncio.wait_for(pending.done.wait(), self._ack_seconds)
            except TimeoutError:
                pass
        finally:
            # A reply arriving later finds no round and is dropped: its row stays active.
            del self._rounds[round_id]
        return [pending.answer(index) for index in range(len(items))]
