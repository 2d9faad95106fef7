"""gRPC SchedulerService: proto in, TimerService, proto out."""

from __future__ import annotations

from dripiq.scheduler.v1 import scheduler_service_pb2 as pb
from dripiq.scheduler.v1 import scheduler_service_pb2_grpc as pb_grpc
from dripiq_common.authz import INTERNAL, INTERNAL_CHANGE, access_rules
from dripiq_scheduler.service import TimerService


class SchedulerServicer(pb_grpc.SchedulerServiceServicer):
    def __init__(self, timers: TimerService) -> None:
        self.timers = timers

    async def ScheduleTimer(self, request: pb.ScheduleTimerRequest, context) -> pb.ScheduleTimerResponse:
        return pb.ScheduleTimerResponse(timer=await self.timers.schedule(request.timer))

    async def CancelTimer(self, request: pb.CancelTimerRequest, context) -> pb.CancelTimerResponse:
        return pb.CancelTimerResponse(timer=await self.timers.cancel(request))

    async def CancelTimers(self, request: pb.CancelTimersRequest, context) -> pb.CancelTimersResponse:
        count = await self.timers.cancel_group(request.tenant_id, request.group_key)
        return pb.CancelTimersResponse(canceled_count=count)

    async def GetTimer(self, request: pb.GetTimerRequest, context) -> pb.GetTimerResponse:
        return pb.GetTimerResponse(timer=await self.timers.get(request.tenant_id, request.key))

    async def BatchScheduleTimers(
        self, request: pb.BatchScheduleTimersRequest, context
    ) -> pb.BatchScheduleTimersResponse:
        count = await self.timers.batch_schedule(request.tenant_id, request.timers)
        return pb.BatchScheduleTimersResponse(scheduled_count=count)

    async def BatchCancelTimers(self, request: pb.BatchCancelTimersRequest, context) -> pb.BatchCancelTimersResponse:
        count = await self.timers.batch_cancel(request.tenant_id, request.keys)
        return pb.BatchCancelTimersResponse(canceled_count=count)

    async def ListTimers(self, request: pb.ListTimersRequest, context) -> pb.ListTimersResponse:
        return await self.timers.list_timers(request)


# Timers are the suite's own plumbing: our services and operators only; changes are audited.
ACCESS = {
    **access_rules(pb.DESCRIPTOR.services_by_name["SchedulerService"], INTERNAL),
    **access_rules(
        pb.DESCRIPTOR.services_by_name["SchedulerService"],
        INTERNAL_CHANGE,
        ["ScheduleTimer", "CancelTimer", "CancelTimers", "BatchScheduleTimers", "BatchCancelTimers"],
    ),
}
