"""Send windows as the planner's API gives them (dripiq_common.windows does the placing)."""

from __future__ import annotations

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.errors import InvalidArgument
from dripiq_common.windows import (
    DEFAULT_WINDOW,
    MAX_JITTER_SECONDS,
    SendWindow,
    jitter_seconds,
    place,
    spread_for,
)

__all__ = [
    "DEFAULT_WINDOW",
    "MAX_JITTER_SECONDS",
    "SendWindow",
    "from_proto",
    "jitter_seconds",
    "place",
    "spread_for",
    "to_proto",
]


def to_proto(window: SendWindow) -> pb.SendWindow:
    return pb.SendWindow(weekdays=sorted(window.weekdays), start_hour=window.start_hour, end_hour=window.end_hour)


def from_proto(window: pb.SendWindow, field: str) -> SendWindow | None:
    """None for an empty window (the caller falls back to the next default)."""
    if not window.weekdays and not window.start_hour and not window.end_hour:
        return None
    weekdays = frozenset(window.weekdays) or DEFAULT_WINDOW.weekdays
    if not weekdays <= set(range(1, 8)):
        raise InvalidArgument(f"{field}.weekdays", "must be ISO weekdays 1 (Monday) to 7 (Sunday)")
    if not 0 <= window.start_hour < window.end_hour <= 24:
        raise InvalidArgument(f"{field}.start_hour", "needs 0 <= start_hour < end_hour <= 24")
    return SendWindow(weekdays, window.start_hour, window.end_hour)
