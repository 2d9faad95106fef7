"""The NATS connection and JetStream plumbing every process shares: connect, publish in bulk,
create the streams at start-up, drain at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field

import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError
from prometheus_client import Counter

from dripiq_common.bus.contract import StreamSpec

log = structlog.get_logger(__name__)

NATS_CONNECTION_EVENTS = Counter(
    "dripiq_nats_connection_events",
    "What happened to the process's NATS connection: disconnected, reconnected, error",
    ["event"],
)


async def connect(url: str, *, name: str, ca_file: str = "") -> NATS:
    """A connection named `name` (the process's NATS user); with `ca_file`, over TLS verified
    against that CA."""
    nc = NATS()

    async def on_error(exc: Exception) -> None:
        NATS_CONNECTION_EVENTS.labels(event="error").inc()
        log.warning("nats.error", error=str(exc))

    async def on_disconnect() -> None:
        if not (nc.is_closed or nc.is_draining):
            NATS_CONNECTION_EVENTS.labels(event="disconnected").inc()
            log.warning("nats.disconnected")

    async def on_reconnect() -> None:
        NATS_CONNECTION_EVENTS.labels(event="reconnected").inc()
        log.info("nats.reconnected")

    await nc.connect(
        servers(url),
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        # Replies (publish acks, fetched messages) on inboxes of this process's own, so its NATS
        # user may subscribe to those and no other process's (dripiq_common.bus.access).
        inbox_prefix=inbox_prefix(name),
        tls=tls_context(ca_file),
    )
    return nc


def servers(url: str) -> list[str]:
    """The server pool of a NATS_URL: one URL, or several comma-separated (the nodes of a
    cluster), each with its own credentials; the client moves to another when one goes away."""
    found = [part.strip() for part in url.split(",") if part.strip()]
    if not found:
        raise ValueError("NATS_URL names no server")
    return found


def tls_context(ca_file: str) -> ssl.SSLContext | None:
    """TLS to NATS verified against `ca_file` (its certificate must name the host dialled)."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else None


def inbox_prefix(name: str) -> str:
    """The inbox subjects of the process named `name` (its NATS user's name)."""
    return f"_INBOX_{name}"


@dataclass(frozen=True)
class Outgoing:
    subject: str
    payload: bytes
    msg_id: str
    headers: dict[str, str] = field(default_factory=dict)


async def publish_many(js: JetStreamContext, items: Sequence[Outgoing], *, ack_timeout: float = 10.0) -> list[bool]:
    """Publish without waiting for each ack in turn, then wait for all; True where acked.

    `Nats-Msg-Id` makes a retry of the same item a no-op within the duplicate window.
    """
    futures = []
    for item in items:
        headers = {**item.headers, "Nats-Msg-Id": item.msg_id}
        futures.append(await js.publish_async(item.subject, item.payload, headers=headers))
    if not futures:
        return []
    # One wait for all the acks: a timer and a task per message would cost more than the publish.
    done, pending = await asyncio.wait(futures, timeout=ack_timeout)
    for future in pending:
        future.cancel()
    return [f in done and not f.cancelled() and f.exception() is None for f in futures]


async def drain(nc: NATS, *, grace_seconds: float = 10.0) -> None:
    """Drain at shutdown, but never hang on a server that is gone: then just close."""
    try:
        await asyncio.wait_for(nc.drain(), timeout=grace_seconds)
    except Exception as exc:
        log.warning("nats.drain_incomplete", error=repr(exc))
        with contextlib.suppress(Exception):
            await nc.close()


async def ensure_streams(
    js: JetStreamContext,
    specs: Sequence[StreamSpec],
    *,
    replicas: int = 1,
    duplicate_window_seconds: float | None = None,
    manage: bool = True,
) -> None:
    """Create or update each stream so that start-up is idempotent; with `manage` off (a
    process whose NATS user may not, the set-up step having done it) only check each exists.

    The duplicate window must outlast the worst stall between a publish and the commit that
    records it (a relay or firer that dies in between publishes again with the same id).
    """
    for spec in specs:
        config = spec.config(replicas, duplicate_window_seconds)
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            if not manage:
                raise SystemExit(
                    f"stream {spec.name} does not exist: run the bus set-up step "
                    "(python -m dripiq_common.bus.setup) first"
                ) from None
            await _refused_storage_is_fatal(spec, js.add_stream(config))
            log.info("jetstream.stream_created", stream=spec.name)
            continue
        if manage:
            await _refused_storage_is_fatal(spec, js.update_stream(config))


# JetStream's answer when a stream's byte cap is more than the server has left to reserve.
_INSUFFICIENT_STORAGE = 10047


async def _refused_storage_is_fatal(spec: StreamSpec, call: Awaitable[object]) -> None:
    """Await a stream creation or update; a server without room for the stream's byte cap stops
    the process with what to change, instead of an anonymous server error."""
    try:
        await call
    except APIError as exc:
        if exc.err_code != _INSUFFICIENT_STORAGE:
            raise
        raise SystemExit(
            f"stream {spec.name} needs {spec.max_bytes} bytes of JetStream file storage and the NATS "
            "server has less to offer: give it a larger volume or a larger jetstream max_file_store "
            "(docs/streams.md)"
        ) from None
