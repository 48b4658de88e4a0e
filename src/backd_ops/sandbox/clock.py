"""The sandbox's injectable clock: real time by default, frozen or moved by tests and demo hooks."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from ..locking import CHICAGO


class SandboxClock:
    """Now in Chicago; ``freeze`` pins it, ``advance`` moves it (frozen or not).

    Examples
    --------
    >>> clock = SandboxClock(datetime(2026, 4, 14, 9, 0, tzinfo=CHICAGO))
    >>> clock.advance(hours=8); clock.now().isoformat()
    '2026-04-14T17:00:00-05:00'
    """

    def __init__(self, frozen_at: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._frozen_at = frozen_at
        self._offset = timedelta(0)

    def now(self) -> datetime:
        with self._lock:
            base = self._frozen_at if self._frozen_at is not None else datetime.now(CHICAGO)
            return (base + self._offset).astimezone(CHICAGO)

    def __call__(self) -> datetime:
        return self.now()

    def freeze(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("freeze() needs a timezone-aware datetime")
        with self._lock:
            self._frozen_at, self._offset = moment, timedelta(0)

    def advance(self, **delta: float) -> None:
        with self._lock:
            self._offset += timedelta(**delta)

    def reset(self, frozen_at: datetime | None = None) -> None:
        """Frozen at ``frozen_at`` (aware), or back to real time when None; any advance is forgotten."""
        if frozen_at is not None and frozen_at.tzinfo is None:
            raise ValueError(f"the sandbox clock needs a datetime with a UTC offset, got {frozen_at.isoformat()}")
        with self._lock:
            self._frozen_at, self._offset = frozen_at, timedelta(0)

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None
