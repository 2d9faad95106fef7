from __future__ import annotations

from typing import Literal

from pydantic import Field

from dripiq_common.settings import ServiceSettings, settings_config

DAY = 24 * 3600


class SchedulerSettings(ServiceSettings):
    model_config = settings_config("SCHEDULER_")

    grpc_port: int = 50054
    metrics_port: int = 9104
    # How often replicas look for due timers when nothing woke them.
    poll_seconds: float = 0.2
    # Timers locked, published and marked per round: larger rounds amortize the round trips
    # (4,000 reached ~12k timers/s here, docs/performance.md).
    fire_batch_size: int = 4000
    # Firing rounds one replica runs at once (docs/performance.md, "The scheduler beside BullMQ").
    fire_rounds_in_flight: int = Field(default=2, ge=1, le=8)
    publish_timeout_seconds: float = 10.0

    # Timers due for longer than overdue_limit_seconds when a firing round reaches them (after
    # an outage, or a backlog): "fire" them anyway in due order, "drop" them (canceled, with
    # cancel_reason), or "delay" them to now + a per-timer jitter below overdue_spread_seconds.
    # A timer scheduled with a time already past is due from when it was stored, so it fires.
    overdue_policy: Literal["fire", "drop", "delay"] = "fire"
    overdue_limit_seconds: float = Field(default=3600.0, gt=0)
    overdue_spread_seconds: float = Field(default=300.0, gt=0)

    # Fired and canceled timers are deleted this long after they finished. It must stay well
    # beyond JetStream's duplicate window and any redelivery of a schedule command: a pruned
    # key scheduled again is a new timer (version 1) and fires again.
    retention_seconds: float = Field(default=7 * DAY, ge=3600)
    prune_batch_size: int = Field(default=5000, ge=1)
    prune_poll_seconds: float = Field(default=60.0, gt=0)

    # dripiq_scheduler_timers_pending: refreshed this often, exact up to pending_exact_up_to.
    pending_refresh_seconds: float = Field(default=15.0, gt=0)
    pending_exact_up_to: int = Field(default=100_000, ge=1)
