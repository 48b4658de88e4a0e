"""Backd's refund-locking rule (shared by the planner and the sandbox): the ``locked_at`` deadline for a refund request.

Deadlines are 17:00 America/Chicago wall time (so they follow daylight saving), weekdays only, no holidays:

=====================================  ===========================
Submitted at (Chicago local time)      ``locked_at``
=====================================  ===========================
Mon–Fri, before 17:00                  17:00 the same day
Mon–Thu, at or after 17:00             17:00 the next weekday
Fri at or after 17:00, or Sat/Sun      17:00 the following Monday
=====================================  ===========================
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

CHICAGO = ZoneInfo("America/Chicago")
LOCK_HOUR = 17


def refund_locked_at(submitted_at: datetime) -> datetime:
    """The lock deadline (aware, Chicago) for a refund request submitted at ``submitted_at`` (aware).

    Examples
    --------
    >>> from datetime import datetime
    >>> refund_locked_at(datetime(2026, 4, 16, 18, 30, tzinfo=CHICAGO)).isoformat()  # Thu 18:30
    '2026-04-17T17:00:00-05:00'
    """
    if submitted_at.tzinfo is None:
        raise ValueError("submitted_at must be timezone-aware")
    local = submitted_at.astimezone(CHICAGO)
    day = local.date()
    if local.weekday() >= 5 or local.time() >= time(LOCK_HOUR):
        day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    # Build from wall-clock parts so the deadline is 17:00 local on both sides of a DST change.
    return datetime.combine(day, time(LOCK_HOUR), tzinfo=CHICAGO)
