"""Holiday calendars, as the planner has always imported them: the rules live in the common
library, so the dispatcher closes the same days when it re-places a deferred send."""

from dripiq_common.calendars import MAX_CALENDARS, ClosedDay, calendar_code, closed_days, parse, parse_all

__all__ = ["MAX_CALENDARS", "ClosedDay", "calendar_code", "closed_days", "parse", "parse_all"]
