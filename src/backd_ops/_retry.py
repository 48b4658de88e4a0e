"""Retry policy as small pure functions: which failures to retry, and how long to wait.

Reads (``find_order``) retry network errors, timeouts, 429 and 5xx. Writes retry only what provably
never reached Backd: a failed connect (refused, or timed out while connecting) and 429. Anything else on a write
surfaces with ``may_have_been_applied`` for the bulk layer to settle by reading the order back. The pause a 429
imposes on every worker, and the pacing, live in ``_ratelimit``.
"""

from __future__ import annotations

import random

from .errors import BackdError, NetworkError, RateLimitError, ServerError

INITIAL_DELAY_S = 0.25
MAX_DELAY_S = 5.0
MAX_RETRY_AFTER_S = 60.0


def should_retry(error: BackdError, *, is_write: bool, attempt: int, max_retries: int) -> bool:
    """Whether to send the request again after ``error`` on the ``attempt``-th try (0-based).

    Examples
    --------
    >>> should_retry(ServerError("boom", status=503), is_write=False, attempt=0, max_retries=3)
    True
    >>> should_retry(ServerError("boom", status=503), is_write=True, attempt=0, max_retries=3)
    False
    """
    if attempt >= max_retries:
        return False
    if isinstance(error, RateLimitError):
        return True
    if is_write:
        return not error.may_have_been_applied and isinstance(error, NetworkError)
    return isinstance(error, (NetworkError, ServerError))


def backoff_delay_s(attempt: int, *, initial_s: float = INITIAL_DELAY_S, max_s: float = MAX_DELAY_S) -> float:
    """Exponential backoff before jitter: initial × 2^attempt, capped.

    Examples
    --------
    >>> [backoff_delay_s(n) for n in range(6)]
    [0.25, 0.5, 1.0, 2.0, 4.0, 5.0]
    """
    return min(max_s, initial_s * (2**attempt))


def jittered(delay_s: float, unit_random: float) -> float:
    """Spread retries between half and all of ``delay_s`` (``unit_random`` in [0, 1)); kept apart for tests."""
    return delay_s * (0.5 + 0.5 * unit_random)


def retry_delay_s(error: BackdError, attempt: int, *, initial_s: float = INITIAL_DELAY_S) -> float:
    """How long to wait: Backd's Retry-After when given (capped), else jittered backoff.

    Examples
    --------
    >>> retry_delay_s(RateLimitError("slow", retry_after=2.0), 0)
    2.0
    """
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        return max(0.0, min(float(retry_after), MAX_RETRY_AFTER_S))
    return jittered(backoff_delay_s(attempt, initial_s=initial_s), random.random())


def parse_retry_after_s(header: str | None) -> float | None:
    """Retry-After as seconds; accepts delta-seconds (also fractional); an HTTP date counts as unknown.

    Examples
    --------
    >>> parse_retry_after_s("3"), parse_retry_after_s(None), parse_retry_after_s("Wed, 21 Oct 2026 07:28:00 GMT")
    (3.0, None, None)
    """
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        return None
