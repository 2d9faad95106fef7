"""python -m dripiq_scheduler: the scheduler process."""

from __future__ import annotations

from dripiq.scheduler.v1 import scheduler_service_pb2, scheduler_service_pb2_grpc
from dripiq_common.bus.contract import Consumers
from dripiq_common.bus.worker import PullWorker, whole_batch
from dripiq_common.service import Parts, Runtime, serve
from dripiq_scheduler.domain import Overdue, OverduePolicy, bus_payload_limit
from dripiq_scheduler.firer import Firer
from dripiq_scheduler.handlers import ACCESS, SchedulerServicer
from dripiq_scheduler.metrics import PendingGauge
from dripiq_scheduler.models import outbox
from dripiq_scheduler.pruner import Pruner
from dripiq_scheduler.service import TimerService
from dripiq_scheduler.settings import SchedulerSettings

COMMANDS = Consumers.SCHEDULER_COMMANDS
SERVICE_NAME = scheduler_service_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name


def build(settings: SchedulerSettings, rt: Runtime) -> Parts:
    firer = Firer(
        rt.engine,
        rt.js,
        rt.clock,
        batch_size=settings.fire_batch_size,
        poll_seconds=settings.poll_seconds,
        publish_timeout=settings.publish_timeout_seconds,
        rounds_in_flight=settings.fire_rounds_in_flight,
        overdue=Overdue(
            policy=OverduePolicy(settings.overdue_policy),
            limit_seconds=settings.overdue_limit_seconds,
            spread_seconds=settings.overdue_spread_seconds,
        ),
    )
    pruner = Pruner(
        rt.engine,
        rt.clock,
        retention_seconds=settings.retention_seconds,
        batch_size=settings.prune_batch_size,
        poll_seconds=settings.prune_poll_seconds,
    )
    pending = PendingGauge(
        rt.engine, refresh_seconds=settings.pending_refresh_seconds, exact_up_to=settings.pending_exact_up_to
    )
    timers = TimerService(
        rt.engine, rt.clock, on_scheduled_due=firer.wake, max_payload=bus_payload_limit(rt.nc.max_payload)
    )
    commands = PullWorker(
        rt.js,
        rt.nc,
        COMMANDS,
        whole_batch(lambda msgs: timers.apply_commands([m.data for m in msgs])),
        batch_size=500,
    )
    relay = rt.outbox_relay(outbox)
    servicer = SchedulerServicer(timers)
    return Parts(
        service_names=[SERVICE_NAME],
        access=ACCESS,
        registrars=[lambda server: scheduler_service_pb2_grpc.add_SchedulerServiceServicer_to_server(servicer, server)],
        fetchers=[commands],
        loops=[firer, relay, pruner, pending],
    )


def main() -> None:
    serve("scheduler", SchedulerSettings, build)


if __name__ == "__main__":
    main()
