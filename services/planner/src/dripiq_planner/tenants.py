"""A tenant's settings as the planner uses them: defaults for planning, and what every send carries."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Row

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq_common import windows

DEFAULT_AUTO_REPLY_PAUSE_DAYS = 7
MAX_AUTO_REPLY_PAUSE_DAYS = 90


@dataclass(frozen=True)
class TenantDefaults:
    window: windows.SendWindow = windows.DEFAULT_WINDOW
    voice: str = ""
    guidelines: str = ""
    postal_address: str = ""
    open_tracking: bool = True
    click_tracking: bool = True
    auto_reply_pause_days: int = DEFAULT_AUTO_REPLY_PAUSE_DAYS

    @classmethod
    def from_row(cls, row: Row | None) -> TenantDefaults:
        if row is None:
            return cls()
        window = windows.SendWindow.from_json(row.send_window_json) if row.send_window_json else windows.DEFAULT_WINDOW
        return cls(
            window=window,
            voice=row.voice,
            guidelines=row.guidelines,
            postal_address=row.postal_address,
            open_tracking=row.open_tracking,
            click_tracking=row.click_tracking,
            auto_reply_pause_days=row.auto_reply_pause_days,
        )

    def tracking(self) -> dispatcher_pb.Tracking:
        return dispatcher_pb.Tracking(opens=self.open_tracking, clicks=self.click_tracking)


SETTINGS_FIELDS = (
    "send_window",
    "voice",
    "guidelines",
    "postal_address",
    "open_tracking",
    "click_tracking",
    "auto_reply_pause_days",
)
MAX_POSTAL_ADDRESS = 500
