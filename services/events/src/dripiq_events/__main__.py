"""python -m dripiq_events: the events process (gRPC queries, webhook and outcome consumers).

EVENTS_ROLE says which of them one process runs: `all` (both), `query` (the EventsService
API alone) or `ingest` (the consumers and loops, no API); docs/decisions/0057-events-query-role.md.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from nats.aio.msg import Msg

from dripiq.events.v1 import events_service_pb2, events_service_pb2_grpc
from dripiq_common.bus.contract import Consumers
from dripiq_common.bus.worker import PullWorker, per_message, whole_batch
from dripiq_common.loops import Poller
from dripiq_common.service import Loop, Parts, Runtime, serve
from dripiq_events import autoreply_dates
from dripiq_events.ai_classifier import build_classifier
from dripiq_events.handlers import EventsServicer
from dripiq_events.ingest import EventIngest
from dripiq_events.models import outbox
from dripiq_events.partitions import PartitionMaintainer, compact_raw_events, prune_outbound, retention_cutoff
from dripiq_events.queries import EventQuery
from dripiq_events.replies import prune_inbound, prune_unmatched_inbound
from dripiq_events.settings import EventsSettings

OUTCOMES = Consumers.EVENTS_OUTCOMES
WEBHOOKS = Consumers.EVENTS_WEBHOOKS
INBOUND = Consumers.EVENTS_INBOUND
SERVICE_NAME = events_service_pb2.DESCRIPTOR.services_by_name["EventsService"].full_name


# What each retention job calls: delete up to `limit` rows older than `before`, say how many.
Prune = Callable[..., Awaitable[int]]


def days_before(kept: timedelta, now: datetime) -> datetime:
    return now - kept


# What handling a reply takes besides classifying it (parse, match, store), at most.
HANDLING_MARGIN_SECONDS = 5.0


def build(settings: EventsSettings, rt: Runtime) -> Parts:
    """The parts of this process's role: the API, the ingest side, or both."""
    # The ingest side first: its settings checks stop start-up before anything is built.
    ingest = build_ingest(settings, rt) if settings.role.ingests else Parts(service_names=[], registrars=[])
    api = serve_api(rt) if settings.role.serves_api else Parts(service_names=[], registrars=[])
    return Parts(
        service_names=api.service_names,
        registrars=api.registrars,
        fetchers=ingest.fetchers,
        loops=ingest.loops,
        closers=ingest.closers,
    )


def serve_api(rt: Runtime) -> Parts:
    servicer = EventsServicer(EventQuery(rt.engine))
    return Parts(
        service_names=[SERVICE_NAME],
        registrars=[lambda server: events_service_pb2_grpc.add_EventsServiceServicer_to_server(servicer, server)],
    )


def build_ingest(settings: EventsSettings, rt: Runtime) -> Parts:
    """The consumers, the outbox relay and the retention loops, with no gRPC service of their own:
    an ingest process still answers health on its gRPC ports, so probes and readiness are the same
    for every role, and a query sent to it by mistake is UNIMPLEMENTED rather than slow."""
    ack_wait = min(WEBHOOKS.ack_wait_seconds, INBOUND.ack_wait_seconds)
    if settings.ai_classify_deadline_seconds > ack_wait - HANDLING_MARGIN_SECONDS:
        raise SystemExit(
            f"EVENTS_AI_CLASSIFY_DEADLINE_SECONDS must be at most {ack_wait - HANDLING_MARGIN_SECONDS:g} "
            f"(the webhook consumers' ack wait of {ack_wait:g} s less a margin), or a reply "
            "still being classified is delivered again"
        )
    relay = rt.outbox_relay(outbox)
    signer = settings.token_signer()
    classifier = build_classifier(settings)
    # The date parser's language data loads now rather than on the first auto-reply it reads.
    autoreply_dates.warm_up()
    ingest = EventIngest(rt.engine, rt.clock, signer, on_outboxed=relay.kick, classifier=classifier)

    async def on_webhook(msg: Msg) -> None:
        # A reply that came before its message's SENT outcome waits through the retries, and
        # is stored as unmatched on the last one rather than dead-lettered.
        await ingest.handle_webhook(msg.data, last_attempt=msg.metadata.num_delivered >= WEBHOOKS.max_deliver - 1)

    async def on_inbound(msg: Msg) -> None:
        await ingest.handle_webhook(msg.data, last_attempt=msg.metadata.num_delivered >= INBOUND.max_deliver - 1)

    partitions = PartitionMaintainer(
        rt.engine,
        rt.clock,
        settings.partition_months_ahead,
        interval_seconds=settings.partition_check_seconds,
        retention_months=settings.retention_months,
    )
    loops: list[Loop] = [relay, partitions]

    def pruner(name: str, prune: Prune, cutoff: Callable[[datetime], datetime]) -> Poller:
        """A retention job: deletes what is older than the cutoff, a batch at a time, back to
        back while whole batches come out, else once per poll."""
        return Poller(
            lambda: prune(rt.engine, before=cutoff(rt.clock.now()), limit=settings.compaction_batch),
            full=settings.compaction_batch,
            poll_seconds=settings.compaction_poll_seconds,
            name=name,
        )

    if settings.retention_months:
        # Our copy of a sent message goes when the month it was sent in is dropped.
        months = settings.retention_months
        loops.append(pruner("outbound-retention", prune_outbound, lambda now: retention_cutoff(now, months)))
    for name, days, prune in (
        ("raw-event-compaction", settings.raw_event_retention_days, compact_raw_events),
        ("unmatched-inbound-retention", settings.unmatched_inbound_retention_days, prune_unmatched_inbound),
        ("inbound-retention", settings.inbound_retention_days, prune_inbound),
    ):
        if days:
            loops.append(pruner(name, prune, functools.partial(days_before, timedelta(days=days))))
    return Parts(
        service_names=[],
        registrars=[],
        fetchers=[
            PullWorker(
                rt.js,
                rt.nc,
                OUTCOMES,
                whole_batch(lambda msgs: ingest.record_outcomes([m.data for m in msgs])),
                batch_size=500,
            ),
            # A SendGrid batch is up to thousands of events, each stored in its own transaction;
            # several in flight, one delivery each, keep the database busy while one waits on it.
            PullWorker(
                rt.js,
                rt.nc,
                WEBHOOKS,
                per_message(on_webhook),
                batch_size=1,
                batches_in_flight=settings.webhook_concurrency,
            ),
            # Mail has its own stream and worker: a flood of it never delays the events.
            PullWorker(
                rt.js,
                rt.nc,
                INBOUND,
                per_message(on_inbound),
                batch_size=1,
                batches_in_flight=settings.inbound_concurrency,
            ),
        ],
        loops=loops,
        closers=[classifier.aclose],
    )


def main() -> None:
    serve("events", EventsSettings, build)


if __name__ == "__main__":
    main()
