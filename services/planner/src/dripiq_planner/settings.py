from __future__ import annotations

from dripiq_common.settings import ServiceSettings, settings_config


class PlannerSettings(ServiceSettings):
    model_config = settings_config("PLANNER_")

    grpc_port: int = 50051
    # SendGrid flags opens by mail privacy proxies; they say nothing about a person.
    count_machine_opens: bool = False
