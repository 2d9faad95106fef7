from __future__ import annotations

from dripiq_common.settings import ServiceSettings, settings_config


class SchedulerSettings(ServiceSettings):
    model_config = settings_config("SCHEDULER_")

    grpc_port: int = 50054
    # How often replicas look for due timers when nothing woke them.
    poll_seconds: float = 0.2
    fire_batch_size: int = 1000
    publish_timeout_seconds: float = 10.0
