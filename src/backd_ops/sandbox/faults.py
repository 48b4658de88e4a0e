"""Seeded fault injection for the sandbox: latency, 5xx and 429 before applying, drops and 5xx after applying.

The ambiguous cases a client must survive are ``drop_after_apply`` (the change is made, the connection is
cut before any answer) and ``error_after_apply`` (the change is made, the answer is a 500).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, fields

_BEFORE = ("error_before", "rate_limit", "reset_before")
_AFTER = ("drop_after_apply", "error_after_apply")
WRITE_ENDPOINTS = frozenset(
    {"order_placed", "confirm_order", "cancel_order", "update_order", "refund", "delete_refund", "create_order"}
)


@dataclass(frozen=True)
class FaultProfile:
    """Probabilities (0–1) of each fault per request, plus latency. All zero: a well-behaved Backd.

    Examples
    --------
    >>> FaultProfile.parse("latency_ms=25,error_before=0.05,seed=7").error_before
    0.05
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_before: float = 0.0
    rate_limit: float = 0.0
    retry_after_s: float = 1.0
    reset_before: float = 0.0
    drop_after_apply: float = 0.0
    error_after_apply: float = 0.0
    seed: int = 0

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


class FaultInjector:
    """Draws a :class:`FaultPlan` per request from the profile for its endpoint, and counts what it injected."""

    def __init__(self) -> None:
        self._profiles: dict[str, FaultProfile] = {}
        self._scripts: dict[str, list[str]] = {}
        self._rng = random.Random(0)
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def set(self, profile: FaultProfile | None, *, endpoint: str = "*") -> None:
        """Use ``profile`` for ``endpoint`` ("*" for all that have none of their own); None clears it."""
        with self._lock:
            if profile is None:
                self._profiles.pop(endpoint, None)
            else:
                self._profiles[endpoint] = profile
                self._rng = random.Random(profile.seed)

    def script(self, endpoint: str, faults: list[str | None]) -> None:
        """Inject exactly these faults (None: none) on the next requests to ``endpoint``, before any profile."""
        unknown = set(faults) - {None, *_BEFORE, *_AFTER}
        if unknown:
            raise ValueError(f"unknown faults {sorted(map(str, unknown))}")
        with self._lock:
            self._scripts.setdefault(endpoint, []).extend(faults)

    def clear(self) -> None:
        with self._lock:
            self._profiles.clear()
            self._scripts.clear()

    def profile_for(self, endpoint: str) -> FaultProfile | None:
        """The profile in force for ``endpoint``: its own, else the global one."""
        return self._profiles.get(endpoint) or self._profiles.get("*")

    def draw(self, endpoint: str) -> FaultPlan:
        profile = self.profile_for(endpoint)
        with self._lock:
            scripted = self._scripts.get(endpoint)
            if scripted:
                fault = scripted.pop(0)
                before, after = (fault, None) if fault in _BEFORE else (None, fault)
                latency = 0.0
            elif profile is None:
                return FaultPlan()
            else:
                latency = (profile.latency_ms + self._rng.random() * profile.jitter_ms) / 1000.0
                before = self._pick(_BEFORE, profile)
                after = None if before or endpoint not in WRITE_ENDPOINTS else self._pick(_AFTER, profile)
            for fault in (before, after):
                if fault:
                    self.counts[fault] += 1
        return FaultPlan(latency_s=latency, before=before, after=after)

    def _pick(self, names: tuple[str, ...], profile: FaultProfile) -> str | None:
        roll = self._rng.random()
        for name in names:
            roll -= getattr(profile, name)
            if roll < 0:
                return name
        return None
