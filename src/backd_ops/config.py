"""Settings and defaults: keys from the environment or ``.env``, base URLs, the account's identity, limits.

Credentials never come from notebook parameters. ``Settings`` keeps the secret key in a
:class:`SecretKey`, whose repr and str are masked. Whether a URL is production is decided here, once, on the
parsed URL; so is the :class:`Account` (environment, normalised base URL, public key) that every store
(journal, plans, findings) keys its records by.
"""

from __future__ import annotations

import getpass
import importlib.metadata
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from dotenv import dotenv_values

from .errors import ConfigurationError, register_secret

__all__ = [
    "BASE_URLS",
    "TOOL_VERSION",
    "DEFAULT_JOURNAL_PATH",
    "Account",
    "ApprovalPolicy",
    "SecretKey",
    "Settings",
    "current_user",
    "is_production_url",
    "list_profiles",
    "normalize_base_url",
]

BASE_URLS = {
    "sandbox": "https://sandbox.service.bnpl.backd.com/v1/backd/bnpl/api",
    "production": "https://service.bnpl.backd.com/v1/backd/bnpl/api",
}
PRODUCTION_HOST = "service.bnpl.backd.com"
try:
    TOOL_VERSION = importlib.metadata.version("backd_ops")
except importlib.metadata.PackageNotFoundError:  # running from a source tree that was never installed
    TOOL_VERSION = "0+unknown"
API_PREFIX = "/v1/backd/bnpl/api"
_DEFAULT_PORTS = {"http": 80, "https": 443}

CONNECT_TIMEOUT_S = 3.05
READ_TIMEOUT_S = 20.0
MAX_RETRIES = 4
POOL_SIZE = 32
MAX_RPS_ENV = "BACKD_MAX_RPS"
DEFAULT_MAX_WORKERS = 16
"""Measured in bench/bench_bulk.py: 16 workers reach >90% of ideal at 25 ms latency on 2 cores."""
SETTLE_WINDOW_FLOOR_S = 5.0
"""An ambiguous write is read back for at least max(read timeout, this) before it may be called "not applied"."""
DEFAULT_JOURNAL_PATH = Path.home() / ".backd_ops" / "journal.sqlite"
PRODUCTION_CONFIRM_ENV = "BACKD_CONFIRM_PRODUCTION"
USER_ENV = "BACKD_OPS_USER"
APPROVERS_ENV = "BACKD_OPS_APPROVERS_REQUIRED"
FOUR_EYES_ENV = "BACKD_OPS_FOUR_EYES_ABOVE"
PROFILE_ENV = "BACKD_PROFILE"
PROFILES_FILE_ENV = "BACKD_PROFILES_FILE"
PROFILES_FILE = "backd_profiles.toml"
"""Beside ``.env``: one table per profile (``[us]``, ``[eu]``) with ``environment``, ``public_key``, ``base_url``."""
_PROFILE_SETTINGS = ("PUBLIC_KEY", "SECRET_KEY", "ENVIRONMENT", "BASE_URL", "MAX_RPS")
_PROFILE_FILE_KEYS = {"environment", "public_key", "base_url", "max_rps", "description"}
_PROFILE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")


def normalize_base_url(url: str) -> str:
    """The one spelling of a base URL: scheme and host lower-case, default port and trailing dots dropped.

    Examples
    --------
    >>> normalize_base_url("HTTPS://Service.BNPL.backd.com.:443/v1/backd/bnpl/api/")
    'https://service.bnpl.backd.com/v1/backd/bnpl/api'
    """
    text = str(url).strip()
    shown = _without_userinfo(text)  # a key pasted into the URL must not be echoed back in an error
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"base URL {shown!r} is not a valid URL ({_without_userinfo(str(exc))}) (BACKD_BASE_URL)") from None
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigurationError("the base URL must not carry credentials, a query or a fragment (BACKD_BASE_URL); "
                                 "keys go in BACKD_PUBLIC_KEY / BACKD_SECRET_KEY")
    if "%" in parts.netloc or any(ord(c) > 127 or c.isspace() for c in parts.netloc):
        # urllib3 decodes %-escapes in the host: "%73ervice.bnpl.backd.com" would reach production unrecognised
        raise ConfigurationError(f"base URL {shown!r}: write the host plainly (no %-escapes, spaces or non-ASCII) (BACKD_BASE_URL)")
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in _DEFAULT_PORTS or not host:
        raise ConfigurationError(f"base URL {shown!r} must be an http(s) URL with a host (BACKD_BASE_URL)")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return f"{scheme}://{netloc}{re.sub('/+', '/', parts.path).rstrip('/')}"


def _without_userinfo(text: str) -> str:
    return re.sub(r"(?i)(https?://)[^/@]*@", r"\1***@", text)


def is_production_url(url: str) -> bool:
    """Whether ``url`` points at Backd's production host, however it is written.

    Examples
    --------
    >>> is_production_url("https://SERVICE.bnpl.backd.com.:443/v1/backd/bnpl/api"), is_production_url(BASE_URLS["sandbox"])
    (True, False)
    """
    return urlsplit(normalize_base_url(url)).hostname == PRODUCTION_HOST


def current_user(environ: Mapping[str, str] | None = None) -> str:
    """Who is acting: ``$BACKD_OPS_USER`` if set, else the OS user (recorded as maker, approver, executor).

    Examples
    --------
    >>> current_user({"BACKD_OPS_USER": "ana@finance"})
    'ana@finance'
    """
    named = (os.environ if environ is None else environ).get(USER_ENV, "").strip()
    if named:
        return named
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return os.environ.get("USER", "unknown")


@dataclass(frozen=True)
class Account:
    """Whose Backd records these are: environment, normalised base URL and public key (never the secret).

    Examples
    --------
    >>> a = Account("sandbox", "http://127.0.0.1:8765/v1/backd/bnpl/api", "pk_sandbox_demo")
    >>> a.key, a.describe()
    ('sandbox|http://127.0.0.1:8765/v1/backd/bnpl/api|pk_sandbox_demo', 'sandbox at 127.0.0.1:8765, key …demo')
    """

    environment: str
    base_url: str
    public_key: str

    @property
    def key(self) -> str:
        """The stores' key for this account: the same account always has the same key."""
        return f"{self.environment}|{self.base_url}|{self.public_key}"

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

    @property
    def key_hint(self) -> str:
        """The public key's last four characters, as reports show it."""
        return f"…{self.public_key[-4:]}"

    def describe(self) -> str:
        return f"{self.environment} at {self.host}, key {self.key_hint}"

    @property
    def slug(self) -> str:
        """A folder name for this account's stores: readable (environment, host, key hint) and unique (a hash).

        Examples
        --------
        >>> Account("sandbox", "http://127.0.0.1:8765/v1/backd/bnpl/api", "pk_sandbox_demo").slug
        'sandbox-127.0.0.1_8765-demo-61c34e6bc2'
        """
        import hashlib

        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{self.environment}-{self.host}-{self.public_key[-4:]}")
        return f"{readable}-{hashlib.sha256(self.key.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class ApprovalPolicy:
    """Who must approve a plan before it runs: a number of approvers, and four eyes above an amount.

    ``four_eyes_above``: a plan moving more than this needs an approver other than its maker.

    Examples
    --------
    >>> ApprovalPolicy.from_env({"BACKD_OPS_APPROVERS_REQUIRED": "1", "BACKD_OPS_FOUR_EYES_ABOVE": "1000"})
    ApprovalPolicy(approvers_required=1, four_eyes_above=Decimal('1000'))
    """

    approvers_required: int = 0
    four_eyes_above: Decimal | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApprovalPolicy:
        values = os.environ if environ is None else environ
        try:
            required = int(values.get(APPROVERS_ENV, "0") or 0)
            above = values.get(FOUR_EYES_ENV, "").strip()
            return cls(required, Decimal(above) if above else None)
        except (ValueError, InvalidOperation):
            raise ConfigurationError(f"{APPROVERS_ENV} must be a whole number and {FOUR_EYES_ENV} an amount") from None


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
    profile: str | None = None
    """The named profile these settings came from (``BACKD_PROFILE``, ``connect(profile=...)``), if any."""
    max_rps: float | None = None
    """Requests per second at most, reads and writes alike (None: adapt to Backd's 429s)."""

    def __post_init__(self) -> None:
        if self.secret_key:  # first: any message below that quotes the configuration is redacted
            register_secret(self.public_key, self.secret_key.reveal())
        object.__setattr__(self, "max_rps", check_rps(self.max_rps))
        if self.environment not in BASE_URLS:
            raise ConfigurationError(
                f"environment must be one of {sorted(BASE_URLS)}, got {self.environment!r} (BACKD_ENVIRONMENT)"
            )
        object.__setattr__(self, "base_url", normalize_base_url(self.base_url) if self.base_url else None)
        if self.environment != "production" and is_production_url(self.resolved_base_url):
            raise ConfigurationError(
                f"{self.resolved_base_url} is Backd's production host, but the environment is {self.environment!r}: "
                "set BACKD_ENVIRONMENT=production to use production (and its guard), or point BACKD_BASE_URL elsewhere"
            )
        if not self.public_key or not self.secret_key:
            suffix = f"_{profile_suffix(self.profile)}" if self.profile else ""
            where = f" for profile {self.profile!r}" if self.profile else ""
            raise ConfigurationError(
                f"Backd keys are missing{where}: set BACKD_PUBLIC_KEY{suffix} and BACKD_SECRET_KEY{suffix} in the environment "
                "or in a .env file (never in a notebook parameter)"
            )

    @property
    def resolved_base_url(self) -> str:
        """The explicit base URL, else the documented one for the environment, normalised."""
        return normalize_base_url(self.base_url or BASE_URLS[self.environment])

    @property
    def is_production(self) -> bool:
        """Production by name, or a base URL at Backd's production host (however it is spelt)."""
        return self.environment == "production" or is_production_url(self.resolved_base_url)

    @property
    def account(self) -> Account:
        return Account(self.environment, self.resolved_base_url, self.public_key)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, dotenv_path: str | Path | None = ".env",
                 profile: str | None = None) -> Settings:
        """Read ``BACKD_*`` variables; a ``.env`` file fills in what the environment does not set.

        With a profile (``profile=`` or ``BACKD_PROFILE``) every setting is the profile's: ``BACKD_<SETTING>_<NAME>``
        from the environment or ``.env``, else its table in ``backd_profiles.toml`` (never a secret); the plain
        ``BACKD_PUBLIC_KEY``/``BACKD_SECRET_KEY`` are not used, so two accounts' keys are never mixed.

        Examples
        --------
        >>> Settings.from_env({"BACKD_PUBLIC_KEY": "pk", "BACKD_SECRET_KEY": "sk"}, dotenv_path=None).environment
        'sandbox'
        >>> Settings.from_env({"BACKD_PUBLIC_KEY_EU": "pk_eu", "BACKD_SECRET_KEY_EU": "sk_eu"}, dotenv_path=None, profile="eu").public_key
        'pk_eu'
        >>> Settings.from_env({"BACKD_PUBLIC_KEY": "pk", "BACKD_SECRET_KEY": "sk", "BACKD_MAX_RPS": "25"}, dotenv_path=None).max_rps
        25.0
        """
        values = _env_with_dotenv(os.environ if environ is None else environ, dotenv_path)
        name = (profile or "").strip() or values.get(PROFILE_ENV, "").strip() or None  # a blank profile is no choice
        if name is not None:
            values = _profile_values(name, values, dotenv_path)
        return cls(
            profile=name,
            public_key=values.get("BACKD_PUBLIC_KEY", "").strip(),
            secret_key=SecretKey(values.get("BACKD_SECRET_KEY", "").strip()),
            environment=(values.get("BACKD_ENVIRONMENT") or "sandbox").strip().lower(),
            base_url=(values.get("BACKD_BASE_URL") or "").strip() or None,
            max_rps=_max_rps(values.get(MAX_RPS_ENV)),
        )


def profile_suffix(name: str) -> str:
    """The environment-variable suffix of a profile: ``"us-east"`` → ``"US_EAST"``."""
    return name.upper().replace("-", "_")


def profiles_file(environ: Mapping[str, str] | None = None, dotenv_path: str | Path | None = ".env") -> Path:
    """``$BACKD_PROFILES_FILE``, else ``backd_profiles.toml`` beside the ``.env`` file (the working directory)."""
    values = os.environ if environ is None else environ
    if values.get(PROFILES_FILE_ENV, "").strip():
        return Path(values[PROFILES_FILE_ENV].strip()).expanduser()
    return (Path(dotenv_path).parent if dotenv_path is not None else Path.cwd()) / PROFILES_FILE


def read_profiles(path: str | Path) -> dict[str, dict[str, str]]:
    """The profiles file's tables; a secret in it, an unknown setting or a bad name is a ConfigurationError.

    Examples
    --------
    >>> read_profiles("no-such-file.toml")
    {}
    """
    import tomllib

    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: not valid TOML ({exc})") from None
    profiles = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ConfigurationError(f"{path}: {name!r} must be a table ([{name}] with environment, public_key, base_url)")
        _check_profile_name(name, path)
        secret_like = [k for k in table if any(w in k.lower() for w in ("secret", "password", "token", "credential"))]
        if secret_like:
            raise ConfigurationError(f"{path}: [{name}] has {', '.join(secret_like)}; secrets never go in the profiles file: "
                                     f"set BACKD_SECRET_KEY_{profile_suffix(name)} in the environment or .env")
        unknown = sorted(set(table) - _PROFILE_FILE_KEYS)
        if unknown:
            raise ConfigurationError(f"{path}: [{name}] has unknown setting {', '.join(unknown)}; "
                                     f"a profile takes {', '.join(sorted(_PROFILE_FILE_KEYS))}")
        profiles[name] = {k: str(v) for k, v in table.items()}
    _refuse_shared_suffixes(list(profiles), path)
    return profiles


def _refuse_shared_suffixes(names: list[str], where: object) -> None:
    """Two names that share variables (``us-east`` and ``us_east``: both ``BACKD_*_US_EAST``) would mix accounts' keys."""
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(profile_suffix(name), name)
        if other != name:
            raise ConfigurationError(f"{where}: profiles {other!r} and {name!r} would share the variables "
                                     f"BACKD_*_{profile_suffix(name)}; rename one of them")


def list_profiles(environ: Mapping[str, str] | None = None, *, dotenv_path: str | Path | None = ".env") -> list[str]:
    """Profile names from the profiles file, and from ``BACKD_PUBLIC_KEY_<NAME>`` variables (environment, .env).

    Examples
    --------
    >>> list_profiles({"BACKD_PUBLIC_KEY_EU": "pk_eu", "BACKD_PROFILES_FILE": "none.toml"}, dotenv_path=None)
    ['eu']
    """
    values = _env_with_dotenv(os.environ if environ is None else environ, dotenv_path)
    names = list(read_profiles(profiles_file(values, dotenv_path)))
    known = {profile_suffix(n) for n in names}
    for variable in values:
        suffix = variable.removeprefix("BACKD_PUBLIC_KEY_") if variable.startswith("BACKD_PUBLIC_KEY_") else ""
        if suffix and suffix not in known:
            names.append(suffix.lower())
            known.add(suffix)
    return names


def _check_profile_name(name: str, where: object = "profile") -> None:
    if not _PROFILE_NAME.match(name):
        raise ConfigurationError(f"{where}: profile name {name!r} must start with a letter and hold only letters, digits, - and _")


def _profile_values(name: str, values: dict[str, str], dotenv_path: str | Path | None) -> dict[str, str]:
    """``values`` with every setting replaced by the profile's (its variables first, then its file table)."""
    _check_profile_name(name, PROFILE_ENV)
    path = profiles_file(values, dotenv_path)
    table = next((t for n, t in read_profiles(path).items() if profile_suffix(n) == profile_suffix(name)), None)
    suffix = profile_suffix(name)
    if table is None and not any(f"BACKD_{s}_{suffix}" in values for s in _PROFILE_SETTINGS):
        known = list_profiles(values, dotenv_path=dotenv_path)
        raise ConfigurationError(f"unknown profile {name!r}; known: {', '.join(known) or 'none'} "
                                 f"(profiles are tables in {path}, or BACKD_PUBLIC_KEY_<NAME> variables)")
    resolved = {k: v for k, v in values.items() if k.removeprefix("BACKD_") not in _PROFILE_SETTINGS}
    for setting in _PROFILE_SETTINGS:
        variable = f"BACKD_{setting}_{suffix}"
        if variable in values:
            resolved[f"BACKD_{setting}"] = values[variable]
        elif table and setting.lower() in table:
            resolved[f"BACKD_{setting}"] = table[setting.lower()]
    return resolved


MAX_RPS_RANGE = (0.01, 10_000.0)
"""What a configured rate may be: slower than one request in 100 s would hang a run; faster is no limit at all."""


def check_rps(max_rps: object) -> float | None:
    """``max_rps`` as a float in :data:`MAX_RPS_RANGE` (None passes); anything else is a ConfigurationError.

    Examples
    --------
    >>> check_rps(25), check_rps(None)
    (25.0, None)
    >>> check_rps(float("inf"))
    Traceback (most recent call last):
    ...
    backd_ops.errors.ConfigurationError: max_rps (BACKD_MAX_RPS, --max-rps) must be a number of requests per second from 0.01 to 10000, got inf
    """
    if max_rps is None:
        return None
    low, high = MAX_RPS_RANGE
    if isinstance(max_rps, bool) or not isinstance(max_rps, (int, float)) or not low <= max_rps <= high:
        raise ConfigurationError(f"max_rps (BACKD_MAX_RPS, --max-rps) must be a number of requests per second "
                                 f"from {low:g} to {high:g}, got {max_rps!r}")
    return float(max_rps)


def _max_rps(text: str | None) -> float | None:
    """``BACKD_MAX_RPS`` as a number; blank or unset: None (adaptive)."""
    if not (text or "").strip():
        return None
    try:
        return float(text)  # type: ignore[arg-type]
    except ValueError:
        raise ConfigurationError(f"{MAX_RPS_ENV} must be a number of requests per second, got {text!r}") from None


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
