"""Settings and defaults: keys from the environment or ``.env``, base URLs, timeouts, limits.

Credentials never come from notebook parameters. ``Settings`` keeps the secret key in a
:class:`SecretKey`, whose repr and str are masked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from dotenv import dotenv_values

from .errors import ConfigurationError, register_secret

__all__ = [
    "BASE_URLS",
    "DEFAULT_JOURNAL_PATH",
    "SecretKey",
    "Settings",
]

BASE_URLS = {
    "sandbox": "https://sandbox.service.bnpl.backd.com/v1/backd/bnpl/api",
    "production": "https://service.bnpl.backd.com/v1/backd/bnpl/api",
}
API_PREFIX = "/v1/backd/bnpl/api"

CONNECT_TIMEOUT_S = 3.05
READ_TIMEOUT_S = 20.0
MAX_RETRIES = 4
POOL_SIZE = 32
DEFAULT_MAX_WORKERS = 16
"""Measured in bench/bench_bulk.py: 16 workers reach >90% of ideal at 25 ms latency on 2 cores."""
DEFAULT_SETTLE_S = 0.5
"""Pause before reading an order back after an ambiguous write, so an in-flight write can land first."""
DEFAULT_JOURNAL_PATH = Path.home() / ".backd_ops" / "journal.sqlite"
PRODUCTION_CONFIRM_ENV = "BACKD_CONFIRM_PRODUCTION"


class SecretKey:
    """A secret key that does not show itself.

    Examples
    --------
    >>> key = SecretKey("sk_test_123")
    >>> key, str(key), key.reveal()
    (SecretKey('***'), '***', 'sk_test_123')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretKey('***')"

    def __str__(self) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):
        raise TypeError("SecretKey cannot be pickled")


@dataclass(frozen=True)
class Settings:
    """Where and how to reach Backd.

    Examples
    --------
    >>> s = Settings(public_key="pk_test", secret_key=SecretKey("sk_test"), base_url="http://127.0.0.1:8765/v1/backd/bnpl/api")
    >>> "sk_test" in repr(s)
    False
    """

    public_key: str
    secret_key: SecretKey = field(repr=False)
    environment: str = "sandbox"
    base_url: str | None = None
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    read_timeout_s: float = READ_TIMEOUT_S
    max_retries: int = MAX_RETRIES
    pool_size: int = POOL_SIZE

    def __post_init__(self) -> None:
        if self.environment not in BASE_URLS:
            raise ConfigurationError(
                f"environment must be one of {sorted(BASE_URLS)}, got {self.environment!r} (BACKD_ENVIRONMENT)"
            )
        if not self.public_key or not self.secret_key:
            raise ConfigurationError(
                "Backd keys are missing: set BACKD_PUBLIC_KEY and BACKD_SECRET_KEY in the environment "
                "or in a .env file (never in a notebook parameter)"
            )
        register_secret(self.public_key, self.secret_key.reveal())

    @property
    def resolved_base_url(self) -> str:
        """The explicit base URL, else the documented one for the environment."""
        return (self.base_url or BASE_URLS[self.environment]).rstrip("/")

    @property
    def is_production(self) -> bool:
        """Production by name, or a base URL that points at Backd's production host."""
        return self.environment == "production" or self.resolved_base_url == BASE_URLS["production"]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, dotenv_path: str | Path | None = ".env") -> Settings:
        """Read ``BACKD_*`` variables; a ``.env`` file fills in what the environment does not set.

        Examples
        --------
        >>> Settings.from_env({"BACKD_PUBLIC_KEY": "pk", "BACKD_SECRET_KEY": "sk"}, dotenv_path=None).environment
        'sandbox'
        """
        values = _env_with_dotenv(os.environ if environ is None else environ, dotenv_path)
        return cls(
            public_key=values.get("BACKD_PUBLIC_KEY", "").strip(),
            secret_key=SecretKey(values.get("BACKD_SECRET_KEY", "").strip()),
            environment=(values.get("BACKD_ENVIRONMENT") or "sandbox").strip().lower(),
            base_url=(values.get("BACKD_BASE_URL") or "").strip() or None,
        )


def _env_with_dotenv(environ: Mapping[str, str], dotenv_path: str | Path | None) -> dict[str, str]:
    merged: dict[str, str] = {}
    if dotenv_path is not None and Path(dotenv_path).is_file():
        merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    merged.update({k: v for k, v in environ.items() if k.startswith("BACKD_")})
    return merged


def production_confirmed(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment carries the extra confirmation for executing against production."""
    value = (os.environ if environ is None else environ).get(PRODUCTION_CONFIRM_ENV, "")
    return value.strip().lower() in {"1", "yes", "true"}
