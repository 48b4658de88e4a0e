"""Seeded fault injection for the sandbox: latency, slowness, 5xx and 429 before applying, drops and 5xx after applying.

The ambiguous cases a client must survive are ``drop_after_apply`` (the change is made, the connection is
cut before any answer), ``error_after_apply`` (the change is made, the answer is a 500) and ``slow`` (the
change is made after the client's read timeout has expired). A profile can also carry a real per-key
token-bucket rate limit (``rate_limit_rps``), which answers 429 only when a client goes too fast.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, fields

from .ratelimit import TokenBucket, default_burst

_BEFORE = ("error_before", "rate_limit", "reset_before")
_AFTER = ("drop_after_apply", "error_after_apply")
SLOW = "slow"
RATE_LIMITED_BUCKET = "rate_limited_bucket"  # the faults counter of 429s from the token bucket
DEFAULT_SLOW_MS = 1000.0
WRITE_ENDPOINTS = frozenset(
    {"order_placed", "confirm_order", "cancel_order", "update_order", "refund", "delete_refund", "create_order"}
)


@dataclass(frozen=True)
class FaultProfile:
    """Probabilities (0–1) of each fault per request, plus latency and an optional rate limit. All zero: a well-behaved Backd.

    ``slow`` is the probability that a request waits ``slow_ms`` before it is applied (set ``slow_ms`` above the
    client's read timeout: the write lands after the client gave up). ``rate_limit_rps`` (0 or None: off) is a
    token bucket per public key holding ``rate_limit_burst`` tokens (None: :func:`default_burst`); unlike the
    random ``rate_limit`` fault, it refuses only requests over the rate.

    Examples
    --------
    >>> FaultProfile.parse("latency_ms=25,error_before=0.05,seed=7").error_before
    0.05
    >>> FaultProfile.parse("slow=0.1,slow_ms=800").slow_ms
    800.0
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_before: float = 0.0
    rate_limit: float = 0.0
    retry_after_s: float = 1.0
    reset_before: float = 0.0
    drop_after_apply: float = 0.0
    error_after_apply: float = 0.0
    slow: float = 0.0
    slow_ms: float = DEFAULT_SLOW_MS
    rate_limit_rps: float | None = None
    rate_limit_burst: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.slow <= 1 or self.slow_ms < 0:
            raise ValueError(f"slow must be a probability and slow_ms >= 0, got {self.slow} and {self.slow_ms}")
        if (self.rate_limit_rps or 0) < 0 or (self.rate_limit_burst is not None and self.rate_limit_burst < 1):
            raise ValueError(f"rate_limit_rps must be >= 0 and rate_limit_burst >= 1, got {self.rate_limit_rps} and {self.rate_limit_burst}")

    @classmethod
    def parse(cls, spec: str) -> FaultProfile:
        """``"name=value,name=value"`` as on the command line (``--fault``)."""
        known = {f.name: f.type for f in fields(cls)}
        values: dict[str, float | int] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, _, raw = part.partition("=")
            if name not in known:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(known)}")
            values[name] = int(raw) if name == "seed" else float(raw)
        return cls(**values)

    def spec(self) -> str:
        """The ``parse`` spec of this profile (fields that differ from the defaults), e.g. to send it over HTTP.

        Examples
        --------
        >>> FaultProfile(slow=0.5, rate_limit_rps=20).spec()
        'slow=0.5,rate_limit_rps=20'
        >>> FaultProfile.parse(FaultProfile.chaos(seed=3).spec()) == FaultProfile.chaos(seed=3)
        True
        """
        return ",".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self) if getattr(self, f.name) != f.default)

    @property
    def bucket_burst(self) -> float:
        """Tokens in a full bucket: ``rate_limit_burst``, else :func:`default_burst` of the rate."""
        return self.rate_limit_burst or default_burst(self.rate_limit_rps or 0)

    @classmethod
    def chaos(cls, *, seed: int = 0, latency_ms: float = 2.0) -> FaultProfile:
        """The chaos profile: jitter, 5% 5xx before, 5% 429, 2% apply-then-drop, 1% 5xx after, 1% resets."""
        return cls(latency_ms=latency_ms, jitter_ms=latency_ms, error_before=0.05, rate_limit=0.05, retry_after_s=0.05,
                   reset_before=0.01, drop_after_apply=0.02, error_after_apply=0.01, seed=seed)


@dataclass(frozen=True)
class FaultPlan:
    """What happens to one request."""

    latency_s: float = 0.0
    before: str | None = None  # "error_before" | "rate_limit" | "reset_before"
    after: str | None = None  # "drop_after_apply" | "error_after_apply"
    slow_s: float = 0.0  # "slow": wait this long, then apply (the client may have given up)


class FaultInjector:
    """Draws a :class:`FaultPlan` per request from the profile for its endpoint, keeps the rate-limit buckets,
    and counts what it injected."""

    def __init__(self) -> None:
        self._profiles: dict[str, FaultProfile] = {}
        self._scripts: dict[str, list[str | None]] = {}
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._rng = random.Random(0)
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def set(self, profile: FaultProfile | None, *, endpoint: str = "*") -> None:
        """Use ``profile`` for ``endpoint`` ("*" for all that have none of their own); None clears it.

        The rate-limit buckets of that scope start again full.
        """
        with self._lock:
            self._buckets = {scope: b for scope, b in self._buckets.items() if scope[0] != endpoint}
            if profile is None:
                self._profiles.pop(endpoint, None)
            else:
                self._profiles[endpoint] = profile
                self._rng = random.Random(profile.seed)

    def script(self, endpoint: str, faults: list[str | None]) -> None:
        """Inject exactly these faults (None: none) on the next requests to ``endpoint``, before any profile."""
        unknown = set(faults) - {None, SLOW, *_BEFORE, *_AFTER}
        if unknown:
            raise ValueError(f"unknown faults {sorted(map(str, unknown))}")
        with self._lock:
            self._scripts.setdefault(endpoint, []).extend(faults)

    def clear(self) -> None:
        """No profiles, scripts or rate limits (the counts stay)."""
        with self._lock:
            self._profiles.clear()
            self._scripts.clear()
            self._buckets.clear()

    def reset(self) -> None:
        """As new: :meth:`clear`, zero counts, the unseeded random sequence."""
        self.clear()
        with self._lock:
            self.counts.clear()
            self._rng = random.Random(0)

    def profile_for(self, endpoint: str) -> FaultProfile | None:
        """The profile in force for ``endpoint``: its own, else the global one."""
        return self._profiles.get(endpoint) or self._profiles.get("*")

    def admit(self, endpoint: str, public_key: str) -> float:
        """Take a rate-limit token for ``public_key``: ``0.0`` if admitted, else the seconds until a token.

        The bucket belongs to the profile in force: a "*" profile's bucket is shared by every endpoint
        without a profile of its own; an endpoint's own profile gives that endpoint its own bucket.
        """
        scope = endpoint if endpoint in self._profiles else "*"
        profile = self._profiles.get(scope)
        if profile is None or not profile.rate_limit_rps:
            return 0.0
        with self._lock:
            bucket = self._buckets.get((scope, public_key))
            if bucket is None:
                bucket = self._buckets[(scope, public_key)] = TokenBucket(profile.rate_limit_rps, profile.bucket_burst)
        wait_s = bucket.take()
        if wait_s:
            with self._lock:
                self.counts[RATE_LIMITED_BUCKET] += 1
        return wait_s

    def draw(self, endpoint: str) -> FaultPlan:
        profile = self.profile_for(endpoint)
        with self._lock:
            scripted = self._scripts.get(endpoint)
            if scripted:
                plan = _scripted_plan(scripted.pop(0), profile)
            elif profile is None:
                return FaultPlan()
            else:
                plan = self._rolled_plan(endpoint, profile)
            for fault in (plan.before, plan.after, SLOW if plan.slow_s else None):
                if fault:
                    self.counts[fault] += 1
        return plan

    def _rolled_plan(self, endpoint: str, profile: FaultProfile) -> FaultPlan:
        latency = (profile.latency_ms + self._rng.random() * profile.jitter_ms) / 1000.0
        before = self._pick(_BEFORE, profile)
        after = None if before or endpoint not in WRITE_ENDPOINTS else self._pick(_AFTER, profile)
        # Rolled only when asked for, so that seeded profiles without it draw the same sequence as before;
        # a request refused before applying answers at once, so it is never also slow.
        slow = not before and profile.slow > 0 and self._rng.random() < profile.slow
        return FaultPlan(latency_s=latency, before=before, after=after, slow_s=profile.slow_ms / 1000.0 if slow else 0.0)

    def _pick(self, names: tuple[str, ...], profile: FaultProfile) -> str | None:
        roll = self._rng.random()
        for name in names:
            roll -= getattr(profile, name)
            if roll < 0:
                return name
        return None


def _scripted_plan(fault: str | None, profile: FaultProfile | None) -> FaultPlan:
    """The plan for one scripted fault; a scripted ``slow`` waits the ``slow_ms`` of the profile in force."""
    if fault == SLOW:
        return FaultPlan(slow_s=(profile.slow_ms if profile else DEFAULT_SLOW_MS) / 1000.0)
    return FaultPlan(before=fault) if fault in _BEFORE else FaultPlan(after=fault)
