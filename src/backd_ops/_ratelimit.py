"""Client-side rate limiting: one limiter per client paces the start of every request, fixed or adaptive (AIMD).

A :class:`RateLimiter` belongs to a :class:`~backd_ops.client.BackdClient` and is shared by every worker using
it. Every request (read, write, retry, read-back) first waits for its start time:

- ``max_rps`` set: starts are spaced ``1 / max_rps`` apart, never closer, so a run holds that rate without a 429;
- no ``max_rps``: no spacing until Backd answers 429; then the rate drops multiplicatively and probes upward
  again additively for as long as the limiter is what holds the workers back (AIMD, as TCP does), faster and
  faster once a while past the rate that last met congestion (as TCP CUBIC does);
- any 429 pauses every worker for its Retry-After and voids the start times already handed out.

Only a request started since the last decrease can cause the next one, so a burst of workers refused at once
is one congestion event, not one per worker; and only once enough requests went since then to measure the
rate. A 429 well below the rate that last met congestion (while few requests are refused) is taken for noise:
it pauses every worker, but does not slow the run down for good.

The policy is small pure functions (units in names) and :class:`RateSchedule`, a state machine on explicit
times; :class:`RateLimiter` adds only the lock, the clock and the waiting.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, NamedTuple

from .config import check_rps

DECREASE_FACTOR = 0.8
"""On congestion the rate drops to this share of what Backd admitted. TCP halves; against a steady limit 0.8
keeps the sawtooth's mean above 90% of it (measured in bench/bench_ratelimit.py)."""
PROBE_SHARE_PER_S = 0.03
"""Additive increase: for each second the limiter holds the workers back, the rate grows by this share of the
rate set at the last decrease (fixed until the next one: additive, not compounding)."""
BOOST_AFTER_S = 4.0
"""Above the rate that last met congestion, the probe's step stays as it is this long: a limit that is still
there shows within it (a burst of 10 drains in about 4 s at a 3%-per-second probe), so the steady sawtooth and
its rare 429s are unchanged."""
BOOST_DOUBLING_S = 1.0
"""After that, the step doubles for each second spent there (as TCP CUBIC probes fast past its last maximum):
the limit has moved up, or another client on the key has gone."""
MAX_BOOST_DOUBLINGS = 6
"""The step grows at most 2^6 = 64-fold."""
NEAR_CONGESTION = 0.95
"""A 429 at or above this share of the rate that last met congestion is congestion again."""
CONGESTED_SHARE = 0.3
"""Below that rate, a 429 is congestion only when this share of the requests since the last decrease were refused
(a limit that dropped, a key shared with another process). Random refusals of 5–10% stay noise."""
SHARE_MIN_STARTS = 10
"""Requests since the last decrease before a measured rate or refused share means anything."""
MIN_WINDOW_S = 0.1
"""The shortest window an admitted rate is measured over (one token more or less is not a different limit)."""
MIN_SEND_WINDOW_S = 0.02
"""The shortest window a sending rate is measured over (16 workers starting within 1 ms are not 16,000/s)."""
MIN_RPS = 0.5
"""The adaptive rate never drops below this."""
MAX_DECREASE_SHARE = 0.5
"""A paced congestion event in which (almost) nothing of ours got through halves the rate that was sent."""
BLIND_SHARE = 0.9
"""Refused at least this share since the last decrease: what got through says nothing about the limit."""
IDLE_S = 1.0
"""A gap this long between requests starts a new measuring window: idle time says nothing about the rate."""
STALE_AFTER_S = 0.02
"""A slot may come due this late (or one interval, if longer) and still be used; later, it is taken again."""

_NEVER = -math.inf


def admitted_rps(sent_rps: float, *, starts: int, refused: int, elapsed_s: float,
                 min_window_s: float = MIN_WINDOW_S) -> float:
    """What Backd let through since the last decrease: the rate sent less the share refused; and, when many were
    refused, no more than the requests that got through over the time it took (the limit itself).

    Examples
    --------
    >>> admitted_rps(50.0, starts=400, refused=4, elapsed_s=8.0)      # steady: a few refusals as the rate crossed the limit
    49.5
    >>> admitted_rps(136.0, starts=20, refused=10, elapsed_s=0.2)     # far over: 10 got through in 0.2 s
    50.0
    """
    share = refused_share(starts, refused)
    admitted = sent_rps * (1.0 - share)
    if share >= CONGESTED_SHARE:
        admitted = min(admitted, (starts - refused) / max(elapsed_s, min_window_s))
    return admitted


def decreased_rps(admitted_rps: float, *, factor: float = DECREASE_FACTOR, floor_rps: float = MIN_RPS) -> float:
    """The rate after congestion: ``factor`` × what Backd admitted, never below ``floor_rps``.

    Examples
    --------
    >>> decreased_rps(60.0), decreased_rps(0.1)
    (48.0, 0.5)
    """
    return max(floor_rps, factor * admitted_rps)


def probe_step_rps_per_s(rate_rps: float, *, share_per_s: float = PROBE_SHARE_PER_S) -> float:
    """The additive increase until the next decrease: a share of the rate just set, per second.

    Examples
    --------
    >>> probe_step_rps_per_s(50.0)
    1.5
    """
    return rate_rps * share_per_s


def probed_rps(rate_rps: float, *, step_rps_per_s: float, elapsed_s: float, ceiling_rps: float | None = None) -> float:
    """The rate after ``elapsed_s`` more seconds as the bottleneck, never above ``ceiling_rps``.

    Examples
    --------
    >>> probed_rps(40.0, step_rps_per_s=2.0, elapsed_s=0.25), probed_rps(49.5, step_rps_per_s=2.0, elapsed_s=1.0, ceiling_rps=50.0)
    (40.5, 50.0)
    """
    grown = rate_rps + step_rps_per_s * elapsed_s
    return grown if ceiling_rps is None else min(grown, ceiling_rps)


def probe_boost(beyond_s: float, *, after_s: float = BOOST_AFTER_S, doubling_s: float = BOOST_DOUBLING_S,
                max_doublings: int = MAX_BOOST_DOUBLINGS) -> float:
    """How many times the probe's step, after ``beyond_s`` seconds above the rate that last met congestion.

    Near that rate the step stays small (the limit is probably there); well past it, nothing is known, so the
    probe speeds up: a client left alone on a key it shared reclaims the limit in seconds instead of minutes.

    Examples
    --------
    >>> probe_boost(0.0), probe_boost(4.0), probe_boost(5.0), probe_boost(7.0), probe_boost(60.0)
    (1.0, 1.0, 2.0, 8.0, 64.0)
    """
    return 2.0 ** min(max(beyond_s - after_s, 0.0) / doubling_s, max_doublings)


def sent_rps(starts: int, elapsed_s: float, *, paced_rps: float | None, binding: bool,
             min_starts: int = SHARE_MIN_STARTS, min_window_s: float = MIN_SEND_WINDOW_S) -> float | None:
    """How fast requests went out since ``elapsed_s`` ago: the paced rate while pacing held the workers back,
    else ``starts`` over the window; None when too few requests went to tell.

    Examples
    --------
    >>> sent_rps(30, 0.5, paced_rps=50.0, binding=True), sent_rps(30, 0.5, paced_rps=None, binding=False)
    (50.0, 60.0)
    >>> sent_rps(16, 0.001, paced_rps=None, binding=False), sent_rps(3, 0.001, paced_rps=50.0, binding=True)
    (800.0, None)
    """
    if starts < min_starts:
        return None
    if paced_rps is not None and binding:
        return paced_rps
    measured = starts / max(elapsed_s, min_window_s)
    return measured if paced_rps is None else min(paced_rps, measured)


def refused_share(starts: int, refused: int, *, min_starts: int = SHARE_MIN_STARTS) -> float:
    """The share of requests refused with 429 since the last decrease; 0 until there are enough to tell.

    Examples
    --------
    >>> refused_share(10, 5), refused_share(3, 3)
    (0.5, 0.0)
    """
    return refused / starts if starts >= min_starts else 0.0


def is_congestion(*, sent_rps: float, congestion_rps: float | None, starts: int, refused: int) -> bool:
    """Whether a 429 means "too fast": the first one, one near or above the rate that last met congestion, or
    one among many refusals. Otherwise it is noise, which pauses the workers but leaves the rate alone.

    Examples
    --------
    >>> is_congestion(sent_rps=52.0, congestion_rps=54.0, starts=400, refused=1)
    True
    >>> is_congestion(sent_rps=40.0, congestion_rps=54.0, starts=20, refused=2)
    False
    >>> is_congestion(sent_rps=40.0, congestion_rps=54.0, starts=20, refused=8)
    True
    """
    if congestion_rps is None or sent_rps >= NEAR_CONGESTION * congestion_rps:
        return True
    return refused_share(starts, refused) >= CONGESTED_SHARE


def is_stale(start_s: float, now_s: float, *, rate_rps: float | None, tolerance_s: float = STALE_AFTER_S) -> bool:
    """Whether a slot is too late to use: more than one interval (and ``tolerance_s``) has passed since its start
    time. After a stall (the process or the machine busy), every waiting worker's slot is in the past; all of them
    going at once would be a burst. The tolerance keeps a fast rate from discarding slots for a late wake-up.

    Examples
    --------
    >>> is_stale(1.0, 1.015, rate_rps=50.0), is_stale(1.0, 1.05, rate_rps=50.0), is_stale(1.0, 9.0, rate_rps=None)
    (False, True, False)
    >>> is_stale(1.0, 1.01, rate_rps=1000.0)  # 10 intervals late, but within 20 ms
    False
    """
    return rate_rps is not None and now_s - start_s > max(1.0 / rate_rps, tolerance_s)


class Slot(NamedTuple):
    """A start time handed out: when, in which epoch, and whether pacing (not a pause) is what set it."""

    start_s: float
    epoch: int
    paced: bool


class RateSchedule:
    """The limiter's state on explicit times (seconds of any monotonic clock): no lock, no clock, no sleeping.

    ``reserve`` hands out a :class:`Slot`; ``started`` counts a slot that was used (and probes upward if pacing
    held it back); ``rate_limited`` takes a 429. ``rate_rps`` is None while unpaced. ``epoch`` counts congestion
    events (a request carries the epoch it started in); ``version`` changes whenever slots handed out become void.

    Examples
    --------
    >>> s = RateSchedule(max_rps=10)
    >>> [s.reserve(0.0).start_s for _ in range(3)]
    [0.0, 0.1, 0.2]
    """

    def __init__(self, max_rps: float | None = None) -> None:
        max_rps = check_rps(max_rps)
        self.ceiling_rps = max_rps
        self.rate_rps = max_rps
        self.step_rps_per_s = probe_step_rps_per_s(max_rps) if max_rps else 0.0
        self.congestion_rps: float | None = None
        self.epoch = 0
        self.version = 0
        self.binding = False
        self.next_at_s = _NEVER
        self.resume_at_s = _NEVER
        self._window_start_s = _NEVER
        self._last_start_s = _NEVER
        self._starts = 0
        self._refused = 0
        self._beyond_s = 0.0  # paced time above congestion_rps since the rate was last set

    def reserve(self, now_s: float) -> Slot:
        """The next free start time, ``now_s`` or later."""
        start_s = max(now_s, self.next_at_s, self.resume_at_s)
        paced = self.next_at_s > max(now_s, self.resume_at_s)
        if self.rate_rps is not None:
            self.next_at_s = start_s + 1.0 / self.rate_rps
        return Slot(start_s, self.epoch, paced)

    def started(self, slot: Slot) -> None:
        """Count a request that went out in ``slot``; while pacing holds the workers back, probe upward.

        Growth is counted per request that went, not per slot handed out: slots voided by a pause add nothing.
        After an idle gap a new measuring window begins.
        """
        if slot.start_s - self._last_start_s > IDLE_S:
            self._window_start_s, self._starts, self._refused = slot.start_s, 0, 0
        self._starts += 1
        self._last_start_s = max(self._last_start_s, slot.start_s)
        self.binding = slot.paced
        if slot.paced and self.rate_rps is not None:
            interval_s = 1.0 / self.rate_rps
            if self.congestion_rps is not None and self.rate_rps > self.congestion_rps:
                self._beyond_s += interval_s
            step = self.step_rps_per_s * probe_boost(self._beyond_s)
            self.rate_rps = probed_rps(self.rate_rps, step_rps_per_s=step, elapsed_s=interval_s, ceiling_rps=self.ceiling_rps)

    def rate_limited(self, epoch: int, now_s: float, pause_s: float) -> bool:
        """A 429 for a request started in ``epoch``: pause everyone; True when it was a congestion event."""
        if now_s + pause_s > self.resume_at_s:
            self.resume_at_s = now_s + pause_s
            self._void()
        if epoch != self.epoch:
            return False  # sent before the last decrease: part of the congestion already answered
        self._refused += 1
        sent = sent_rps(self._starts, now_s - self._window_start_s, paced_rps=self.rate_rps, binding=self.binding)
        if sent is None or not is_congestion(sent_rps=sent, congestion_rps=self.congestion_rps, starts=self._starts,
                                             refused=self._refused):
            return False
        admitted = admitted_rps(sent, starts=self._starts, refused=self._refused, elapsed_s=now_s - self._window_start_s)
        # Unpaced, the sending rate was a guess (workers starting at once): the next 429 decides afresh.
        paced = self.rate_rps is not None
        # (Almost) nothing of ours got through says nothing about the limit (another client on the key took the bucket), yet
        # 0.8 of it is the floor, from which a 3%-per-second probe takes an hour: paced, such an event halves what
        # was being sent instead, as TCP's decrease does. (Unpaced, what was sent is a burst of workers at once.)
        blind = paced and refused_share(self._starts, self._refused) >= BLIND_SHARE
        if not blind:  # a blind event measured nothing: the last real measure (or none) stands
            self.congestion_rps = admitted if paced else None
        self._set_rate(MAX_DECREASE_SHARE * sent if blind else decreased_rps(admitted))
        self.epoch += 1
        self._window_start_s, self._starts, self._refused = now_s, 0, 0
        return True

    def cap(self, max_rps: float | None) -> None:
        """Set the ceiling (None: none); a faster current rate comes down to it at once."""
        self.ceiling_rps = max_rps
        if max_rps is not None and (self.rate_rps is None or self.rate_rps > max_rps):
            self._set_rate(max_rps)

    def restore(self, ceiling_rps: float | None, rate_rps: float | None, *, epoch: int) -> None:
        """Back to a saved ceiling and rate (saved at ``epoch``), unless congestion since then left the rate lower."""
        self.ceiling_rps = ceiling_rps
        slower = rate_rps is not None and (self.rate_rps is None or rate_rps < self.rate_rps)
        if self.epoch == epoch or slower:
            self._set_rate(rate_rps)

    def _set_rate(self, rate_rps: float | None) -> None:
        if rate_rps is not None and self.ceiling_rps is not None:
            rate_rps = min(rate_rps, self.ceiling_rps)
        self.rate_rps = rate_rps
        self.step_rps_per_s = probe_step_rps_per_s(rate_rps) if rate_rps else 0.0
        self._beyond_s = 0.0
        self._void()

    def _void(self) -> None:
        """Slots handed out so far no longer hold: the next begins after the pause, one interval after the last start."""
        gap_s = 1.0 / self.rate_rps if self.rate_rps else 0.0
        self.next_at_s = max(self.resume_at_s, self._last_start_s + gap_s)
        self.version += 1


class RateLimiter:
    """Paces request starts for every worker of a client: at most ``max_rps``, or adaptive (AIMD) without it.

    Thread-safe. :meth:`acquire` before each request returns a ticket; after a 429, :meth:`rate_limited` with
    that ticket pauses every worker and adapts the rate.

    Examples
    --------
    >>> limiter = RateLimiter(max_rps=50)
    >>> tickets = [limiter.acquire() for _ in range(10)]  # each returns at its request's start time, 20 ms apart
    >>> limiter.rate_limited(tickets[-1], pause_s=0.02)   # Backd said 429: every worker waits 20 ms; congestion
    True
    >>> round(limiter.rate_rps, 1), limiter.congestion_events   # 0.8 × what got through (9 of 10 at 50/s)
    (36.0, 1)
    """

    def __init__(self, max_rps: float | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._schedule = RateSchedule(max_rps)
        self._configured = check_rps(max_rps)
        self._caps: list[float] = []  # the limited() blocks in force, any thread: the ceiling is the lowest of them
        self._changed = threading.Condition(threading.Lock())
        self._clock = clock

    def __repr__(self) -> str:
        rate = "unpaced" if self.rate_rps is None else f"{self.rate_rps:.1f} rps"
        return f"RateLimiter(max_rps={self.max_rps!r}, now {rate}, {self.congestion_events} congestion events)"

    @property
    def max_rps(self) -> float | None:
        """The ceiling (None: adaptive without one)."""
        return self._schedule.ceiling_rps

    @property
    def rate_rps(self) -> float | None:
        """The rate requests start at now (None: unpaced)."""
        return self._schedule.rate_rps

    @property
    def congestion_events(self) -> int:
        """429s that slowed the rate down (a burst of workers refused at once counts once)."""
        return self._schedule.epoch

    def acquire(self) -> int:
        """Wait until this request may start; the ticket for :meth:`rate_limited`."""
        with self._changed:
            while True:
                now_s = self._clock()
                slot = self._schedule.reserve(now_s)
                version = self._schedule.version
                while slot.start_s > now_s and self._schedule.version == version:
                    self._changed.wait(slot.start_s - now_s)  # woken early when a 429 voids the schedule
                    now_s = self._clock()
                if self._schedule.version == version and not is_stale(slot.start_s, now_s, rate_rps=self._schedule.rate_rps):
                    self._schedule.started(slot)
                    return slot.epoch

    def rate_limited(self, ticket: int, *, pause_s: float) -> bool:
        """Backd answered 429 to the request holding ``ticket``: pause every worker ``pause_s``; True if the rate came down."""
        with self._changed:
            version = self._schedule.version
            slowed = self._schedule.rate_limited(ticket, self._clock(), max(0.0, pause_s))
            if self._schedule.version != version:
                self._changed.notify_all()
        return slowed

    @contextmanager
    def capped(self, max_rps: float | None) -> Iterator[RateLimiter]:
        """At most ``max_rps`` inside the block (None: as configured); a cap never loosens the configured rate or
        another block's. Afterwards the ceiling is the lowest still in force, and the rate is restored unless
        Backd slowed it meanwhile."""
        if max_rps is None:
            yield self
            return
        max_rps = check_rps(max_rps)
        with self._changed:
            s = self._schedule
            saved_rate, saved_epoch = s.rate_rps, s.epoch
            self._caps.append(max_rps)
            s.cap(self._ceiling())
            self._changed.notify_all()
        try:
            yield self
        finally:
            with self._changed:
                self._caps.remove(max_rps)  # this block's cap only: blocks may end in any order
                ceiling = self._ceiling()
                s.restore(ceiling, _bounded(saved_rate, ceiling), epoch=saved_epoch)
                self._changed.notify_all()

    def _ceiling(self) -> float | None:
        limits = [r for r in (self._configured, *self._caps) if r is not None]
        return min(limits) if limits else None


def _bounded(rate_rps: float | None, ceiling_rps: float | None) -> float | None:
    """``rate_rps`` no faster than ``ceiling_rps`` (None: unpaced / no ceiling)."""
    if ceiling_rps is None:
        return rate_rps
    return ceiling_rps if rate_rps is None else min(rate_rps, ceiling_rps)
