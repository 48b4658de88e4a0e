"""Backd-side rate limiting for the sandbox: a thread-safe token bucket and the ``Retry-After`` it answers with.

Backd documents no rate limit; the sandbox offers one so that a client's pacing and its handling of 429 can be
rehearsed against a limit that behaves like a real one (docs/sandbox.md, row 20).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable


def default_burst(rate_per_s: float) -> float:
    """The bucket size when none is given: 200 ms of traffic, and at least 2.

    Two, not one, so that a client pacing at exactly the rate is not refused for a request that reaches the
    server a millisecond early (its predecessor was a millisecond late).

    Examples
    --------
    >>> default_burst(50), default_burst(4)
    (10.0, 2.0)
    """
    return max(2.0, rate_per_s / 5)


class TokenBucket:
    """``burst`` tokens, refilled continuously at ``rate_per_s``; each admitted request takes one.

    Time is the real monotonic clock, never the sandbox's clock, which tests freeze and move by days.

    Examples
    --------
    >>> now = [0.0]
    >>> bucket = TokenBucket(10, 2, clock=lambda: now[0])
    >>> bucket.take(), bucket.take(), bucket.take()  # two admitted, the third waits for a refill
    (0.0, 0.0, 0.1)
    >>> now[0] = 0.1; bucket.take()
    0.0
    """

    def __init__(self, rate_per_s: float, burst: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate_per_s > 0 and burst >= 1, got {rate_per_s} and {burst}")
        self.rate_per_s, self.burst = float(rate_per_s), float(burst)
        self._clock = clock
        self._tokens = self.burst  # a fresh bucket is full: a client's first burst is allowed
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take a token: ``0.0`` if there was one, else the seconds until there will be one (nothing is taken)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate_per_s)
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate_per_s


def retry_after_text(wait_s: float) -> str:
    """``Retry-After`` for a wait: seconds rounded *up* to the millisecond, so waiting that long is enough.

    Examples
    --------
    >>> retry_after_text(0.02), retry_after_text(0.0123), retry_after_text(2.0)
    ('0.02', '0.013', '2')
    """
    millis = max(1, math.ceil(round(wait_s * 1000, 6)))  # round() first: 0.02 * 1000 is 20.000000000000004
    seconds, rest = divmod(millis, 1000)
    return f"{seconds}" if rest == 0 else f"{seconds}.{rest:03d}".rstrip("0")
