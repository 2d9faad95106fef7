"""The life of one service process: connect, serve, run its loops, shut down in order.

Order on SIGTERM/SIGINT: health NOT_SERVING -> stop fetching -> server.stop(grace) ->
outbox flush -> nc.drain() -> engine.dispose().
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import structlog
import uvloop
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common.audit import AuditTrail
from dripiq_common.authz import Access
from dripiq_common.bus.access import streams_used
from dripiq_common.bus.client import connect, drain, ensure_streams
from dripiq_common.bus.contract import Streams, StreamSpec
from dripiq_common.clock import Clock, SystemClock
from dripiq_common.db import create_engine
from dripiq_common.grpc_security import server_security
from dripiq_common.grpc_server import GrpcLimits, GrpcServer, Registrar
from dripiq_common.logging import configure_logging
from dripiq_common.metrics import start_exporter, stop_exporter
from dripiq_common.outbox import OutboxRelay
from dripiq_common.settings import ServiceSettings, load_settings

log = structlog.get_logger(__name__)


class Loop(Protocol):
    async def run(self) -> None: ...
    def stop(self) -> None: ...


@dataclass
class Runtime:
    """What a service's parts share, connected."""

    name: str
    settings: ServiceSettings
    engine: AsyncEngine
    clock: Clock
    nc: NATS
    js: JetStreamContext

    def outbox_relay(self, table: Table) -> OutboxRelay:
        return OutboxRelay(
            self.engine,
            self.js,
            table,
            batch_size=self.settings.outbox_batch_size,
            poll_seconds=self.settings.outbox_poll_seconds,
        )


@dataclass
class Parts:
    """What a service brings: gRPC services and the loops that run beside them.

    `fetchers` consume from JetStream and stop first; `loops` (outbox relays, pollers) stop
    after the gRPC server so that work accepted during the grace period still goes out.
    """

    service_names: Sequence[str]
    registrars: Sequence[Registrar]
    fetchers: Sequence[Loop] = ()
    loops: Sequence[Loop] = ()
    # Closed last, after NATS and before the engine: clients the parts opened (HTTP, gRPC).
    closers: Sequence[Callable[[], Awaitable[None]]] = ()
    # Who may call which method (full method name -> Access); a method not named is
    # tenant-scoped (dripiq_common.authz.TENANT).
    access: Mapping[str, Access] = field(default_factory=dict)


async def wait_for_database(engine: AsyncEngine, *, attempts: int = 60) -> None:
    for attempt in range(1, attempts + 1):
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return
        except Exception as exc:
            log.warning("database.unavailable", attempt=attempt, error=str(exc))
            await asyncio.sleep(min(attempt, 5))
    raise SystemExit("PostgreSQL did not answer; check DATABASE_URL")


async def run_service(
    *,
    name: str,
    settings: ServiceSettings,
    streams: Sequence[StreamSpec],
    build: Callable[[Runtime], Parts],
    clock: Clock | None = None,
    stop_event: asyncio.Event | None = None,
) -> None:
    """Connect to PostgreSQL and NATS, then build the service's parts and serve until stopped.

    The gRPC server starts only once both are connected, so its health service never reports
    SERVING for a process that cannot do its work.
    """
    stop = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    engine = create_engine(
        settings.database_url, pool_size=settings.db_pool_size, application_name=name, sslmode=settings.db_sslmode
    )
    await wait_for_database(engine)
    nc = await connect(settings.nats_url, name=name, ca_file=settings.nats_ca_file)
    js = nc.jetstream()
    await ensure_streams(
        js,
        # Every gRPC server records its admin calls on the audit stream.
        [*streams, *([] if Streams.AUDIT in streams else [Streams.AUDIT])]
        if settings.bus_setup
        else streams_used(name),
        replicas=settings.jetstream_replicas,
        duplicate_window_seconds=settings.jetstream_duplicate_window_seconds,
        manage=settings.bus_setup,
    )
    rt = Runtime(name=name, settings=settings, engine=engine, clock=clock or SystemClock(), nc=nc, js=js)
    parts = build(rt)
    server = GrpcServer(
        address=settings.grpc_address,
        service_names=parts.service_names,
        register=parts.registrars,
        security=server_security(settings, parts.access, AuditTrail(js, service=name)),
        reflection_enabled=settings.grpc_reflection,
        health_address=f"{settings.grpc_host}:{settings.grpc_health_port}" if settings.grpc_health_port else "",
        limits=GrpcLimits(settings.grpc_max_message_bytes, settings.grpc_max_concurrent_rpcs),
    )
    await server.start()
    exporter = start_exporter(host=settings.metrics_host, port=settings.metrics_port)
    tasks = [asyncio.create_task(p.run(), name=type(p).__name__) for p in [*parts.fetchers, *parts.loops]]
    await server.serving()
    log.info(
        "service.serving",
        grpc=f"{settings.grpc_host}:{server.port}",
        grpc_internal=f"{settings.grpc_host}:{server.internal_port}" if server.internal_port else None,
        services=list(parts.service_names),
    )

    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        if task.done() and task.exception() is not None:
            log.error("service.loop_crashed", loop=task.get_name(), error=repr(task.exception()))
    log.info("service.stopping")

    await server.health.enter_graceful_shutdown()
    for fetcher in parts.fetchers:
        fetcher.stop()
    await finish(tasks[: len(parts.fetchers)], grace_seconds=settings.shutdown_grace_seconds, what="fetchers")
    await server.stop(settings.shutdown_grace_seconds)
    for other in parts.loops:
        other.stop()
    await finish(tasks, grace_seconds=settings.shutdown_grace_seconds, what="loops")
    stopped.cancel()
    await drain(rt.nc, grace_seconds=settings.shutdown_grace_seconds)
    for close in parts.closers:
        try:
            await close()
        except Exception as exc:
            log.warning("service.close_failed", error=repr(exc))
    await rt.engine.dispose()
    await asyncio.to_thread(stop_exporter, exporter)
    log.info("service.stopped")


async def finish(tasks: Sequence[asyncio.Task[None]], *, grace_seconds: float, what: str) -> None:
    """Let the tasks end within the grace, then cancel the rest: a handler stuck on a database
    or a provider that is gone must not hold the process past its termination grace. What a
    cancelled handler had not acked is redelivered, and every handler is safe to repeat."""
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=grace_seconds)
    if late:
        log.warning("service.shutdown_cancelled", what=what, tasks=sorted(t.get_name() for t in late))
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


GC_THRESHOLD_GEN0 = int(os.environ.get("DRIPIQ_GC_GEN0", "500000"))


def run_process(main: Coroutine[Any, Any, None]) -> None:
    """Run a process's main coroutine on uvloop: the services spend most of their CPU in the
    event loop (sockets, timers, task switches), which uvloop does in C."""
    # Start-up objects (modules, descriptors, settings) are never garbage: keep the collector
    # from scanning them again, and let it run less often under a steady allocation rate.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD_GEN0, 50, 100)
    uvloop.run(main)


def serve(name: str, settings_type: type[SettingsT], build: Callable[[SettingsT, Runtime], Parts]) -> None:
    """A service's `main`: settings once, logging once, then run until SIGTERM/SIGINT."""
    settings = load_settings(settings_type)
    configure_logging(name, log_format=settings.log_format, level=settings.log_level)
    run_process(run_service(name=name, settings=settings, streams=Streams.all(), build=lambda rt: build(settings, rt)))
