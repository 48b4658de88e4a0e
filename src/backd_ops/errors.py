"""Every exception backd_ops raises, the HTTP-status → exception table, and redaction of secrets.

Our exception hierarchy::

    BackdError                         base of everything we raise
    ├── ConfigurationError(ValueError)   missing/invalid keys, environment or URL
    │   └── PlanAccountError               a plan made for another environment, base URL or account
    ├── InputError(ValueError)           a frame or file that cannot be used at all (names row/column)
    │   ├── PlanError                      a plan file that is unreadable or was changed after it was made
    │   └── PartialPlanError               execute asked for on an input with invalid rows, without allow_partial
    ├── ProductionGuardError             execute against production without the extra confirmation
    ├── ApprovalError                    the approval policy is not met for this plan
    ├── ConcurrentRunError               another process is executing the same plan right now
    ├── FindingsError                    a scheduled reconciliation found kinds listed in ``fail_on``
    ├── NetworkError                     no usable HTTP answer (refused, reset, timeout)
    │   └── RequestTimeout                 the connect or read timeout expired
    └── APIError                         Backd answered with an error
        ├── AuthenticationError            401/403: wrong or wrong-environment keys
        ├── NotFoundError                  404: unknown backd_order_id
        ├── InvalidRequestError(ValueError) 400/422: Backd rejected the body
        ├── OrderStateError                409: wrong order status, locked refund, conflict
        ├── RateLimitError                 429: slow down; carries ``retry_after`` (seconds)
        └── ServerError                    5xx

Every error carries ``status`` (HTTP status or None), ``endpoint``, ``backd_order_id`` and ``message``
(Backd's text), and ``may_have_been_applied``: True when a *write* may have reached Backd (read timeout,
connection dropped after sending, 5xx on a write). Such a row is settled by reading the order back.

No error holds the secret key: messages pass through :func:`redact` before they are stored.
"""

from __future__ import annotations

import base64
import re
import threading

__all__ = [
    "APIError",
    "ApprovalError",
    "ConcurrentRunError",
    "WriteWithheldError",
    "PartialPlanError",
    "PlanAccountError",
    "PlanError",
    "option_hint",
    "option_name",
    "set_option_style",
    "AuthenticationError",
    "BackdError",
    "ConfigurationError",
    "FindingsError",
    "InputError",
    "InvalidRequestError",
    "NetworkError",
    "NotFoundError",
    "OrderStateError",
    "ProductionGuardError",
    "RateLimitError",
    "RequestTimeout",
    "ServerError",
    "EXIT_CODES",
    "error_for_status",
    "exit_code_for",
    "redact",
    "register_secret",
]

_REDACTED = "***"
_OPTIONS = {
    "decimal_comma": ('decimal=","', "--decimal-comma"),
    "confirm_production": ("confirm_production=True", "--confirm-production"),
    "column_map": ("column_map={'Their name': 'our_name'}", "--column-map 'Their name=our_name'"),
    "execute": ("execute=True", "--execute"),
    "approved_by": ("approve_plan(plan, approved_by=...)", "backd-ops approve PLAN --as NAME"),
    "resend": ("resend=True", "--resend"),
    "allow_partial": ("allow_partial=True", "--allow-partial"),
    "sheet": ("sheet=...", "--sheet"),
    "approver": ("approved_by='your name'", "--as NAME"),
    "status_map": ("status_map={'Their status': 'order_confirmed'}", "--status-map 'Their status=order_confirmed'"),
}
_option_style = {"style": "python"}
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(public_key: str, secret_key: str) -> None:
    """Remember a secret (and its Basic-auth form) so that :func:`redact` masks it everywhere.

    Examples
    --------
    >>> register_secret("pk_demo", "sk_hidden_value")
    >>> redact("key was sk_hidden_value")
    'key was ***'
    """
    if not secret_key:
        return
    basic = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
    with _secrets_lock:
        _secrets.update({secret_key, basic})


def set_option_style(style: str) -> None:
    """Spell options in messages as ``"python"`` arguments (default) or ``"cli"`` flags (``backd-ops`` sets this)."""
    if style not in ("python", "cli"):
        raise ValueError("style must be 'python' or 'cli'")
    _option_style["style"] = style


def option_hint(name: str) -> str:
    """How the user in front of us spells an option: a Python argument, or a CLI flag under ``backd-ops``.

    Examples
    --------
    >>> option_hint("confirm_production")
    'confirm_production=True'
    """
    python, cli = _OPTIONS[name]
    return cli if _option_style["style"] == "cli" else python


def option_name(name: str) -> str:
    """An option's bare name as the user in front of us spells it: ``column_map`` or ``--column-map``.

    Examples
    --------
    >>> option_name("column_map")
    'column_map'
    """
    return f"--{name.replace('_', '-')}" if _option_style["style"] == "cli" else name


def redact(text: object) -> str:
    """Return ``str(text)`` with every registered secret and any Basic credential masked.

    Examples
    --------
    >>> redact("Authorization: Basic cGs6c2s=")
    'Authorization: Basic ***'
    """
    out = str(text)
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        out = out.replace(secret, _REDACTED)
    return re.sub(r"(?i)(basic\s+)[A-Za-z0-9+/=]{4,}", r"\1" + _REDACTED, out)


class BackdError(Exception):
    """Base of every backd_ops error.

    Examples
    --------
    >>> try:
    ...     raise NotFoundError("unknown order", status=404, endpoint="find_order", backd_order_id="BO-1")
    ... except BackdError as exc:
    ...     print(exc)
    find_order BO-1: HTTP 404: unknown order
    """

    may_have_been_applied_default = False

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        endpoint: str | None = None,
        backd_order_id: str | None = None,
        may_have_been_applied: bool | None = None,
        request_id: str | None = None,
        body: str | None = None,
    ) -> None:
        self.message = redact(message)
        self.status = status
        self.endpoint = endpoint
        self.backd_order_id = backd_order_id
        self.request_id = request_id
        self.body = None if body is None else redact(body)[:2000]
        self.may_have_been_applied = (
            self.may_have_been_applied_default if may_have_been_applied is None else may_have_been_applied
        )
        super().__init__(self.message)

    def __str__(self) -> str:
        where = " ".join(p for p in (self.endpoint, self.backd_order_id) if p)
        http = f"HTTP {self.status}: " if self.status else ""
        text = f"{where}: {http}{self.message}" if where else f"{http}{self.message}"
        if self.may_have_been_applied:
            text += " (the write may have been applied: read the order back before retrying)"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, endpoint={self.endpoint!r}, "
            f"backd_order_id={self.backd_order_id!r}, message={self.message!r}, "
            f"may_have_been_applied={self.may_have_been_applied!r})"
        )

    def __reduce__(self):  # keep keyword-only state when pickled (e.g. across processes)
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))


def _rebuild(cls: type[BackdError], message: str, state: dict) -> BackdError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ConfigurationError(BackdError, ValueError):
    """Keys, environment or base URL are missing or invalid."""


class InputError(BackdError, ValueError):
    """An input frame or file cannot be used at all (for example a required column is missing)."""


class ProductionGuardError(BackdError):
    """A money-moving execute against production was asked for without the extra confirmation."""


class PlanError(InputError):
    """A plan file that cannot be read, or whose rows no longer hash to its ``plan_id`` (it was edited)."""


class PartialPlanError(InputError):
    """Executing would send only part of an input (some rows are invalid); ``plan`` is the plan, nothing was sent."""

    def __init__(self, message: str = "", *, plan: object = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.plan = plan


class PlanAccountError(ConfigurationError):
    """A plan made for another environment, base URL or account than the client's."""


class ApprovalError(BackdError):
    """The approval policy asks for an approval this plan does not have (the message says which)."""


class ConcurrentRunError(BackdError):
    """Another executor holds this plan's claim; the message names it (pid, host, started at)."""


class WriteWithheldError(BackdError):
    """A write was not sent: its send guard said no just before it would have left (the run lost its claim on the plan or its hold on the order)."""


class FindingsError(BackdError):
    """A reconciliation found discrepancies of a kind the run was told to fail on (after saving its reports)."""


class NetworkError(BackdError):
    """No usable HTTP answer: connection refused, reset or dropped."""


class RequestTimeout(NetworkError):
    """The connect or read timeout expired."""


class APIError(BackdError):
    """Backd answered, and the answer is an error; ``retry_after``: its Retry-After in seconds, if it gave one
    (a 429 says when to try again, and so may a 503)."""

    def __init__(self, message: str = "", *, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class AuthenticationError(APIError):
    """401/403: the keys are wrong, or belong to the other environment."""


class NotFoundError(APIError):
    """404: Backd does not know this backd_order_id."""


class InvalidRequestError(APIError, ValueError):
    """400/422: Backd rejected the request body."""


class OrderStateError(APIError):
    """409: the order's status does not allow this call, or the refund request is locked."""


class RateLimitError(APIError):
    """429: too many requests; ``retry_after`` is Backd's Retry-After in seconds, if given."""


class ServerError(APIError):
    """5xx: Backd failed. On a write, the change may have been applied. A retried read waits its Retry-After."""


_STATUS_TABLE: dict[int, type[APIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    409: OrderStateError,
    422: InvalidRequestError,
    429: RateLimitError,
}


EXIT_CODES = {
    0: "clean: nothing needs attention",
    1: "findings matched fail_on (reconciliation), or rows need attention (bulk)",
    2: "bad input or parameters (checked before any work)",
    3: "configuration, credentials, or a guard (production, approval, a run in progress)",
    4: "Backd could not be reached, or answered with an error that stopped the job",
    5: "the job failed for an unexpected reason (a bug): see the message and the executed notebook",
}
_CONFIG_ERRORS = ("ConfigurationError", "AuthenticationError", "ProductionGuardError", "ApprovalError", "ConcurrentRunError")


def exit_code_for(error: BaseException | type[BaseException] | str) -> int:
    """The exit code a scheduler acts on, for an error (or its class name, as papermill reports it).

    Examples
    --------
    >>> exit_code_for(FindingsError("found")), exit_code_for("LedgerError"), exit_code_for("KeyError")
    (1, 2, 5)
    """
    name = error if isinstance(error, str) else (error.__name__ if isinstance(error, type) else type(error).__name__)
    cls = _error_classes().get(name)
    if cls is None:
        return 5
    mro = {c.__name__ for c in cls.__mro__}
    if "FindingsError" in mro:
        return 1
    if mro & set(_CONFIG_ERRORS):
        return 3
    if "InputError" in mro:
        return 2
    return 4


def _error_classes() -> dict[str, type[BackdError]]:
    found: dict[str, type[BackdError]] = {}
    pending: list[type[BackdError]] = [BackdError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def error_for_status(status: int) -> type[APIError]:
    """The exception class for an HTTP error status.

    Examples
    --------
    >>> error_for_status(409).__name__
    'OrderStateError'
    >>> error_for_status(503).__name__
    'ServerError'
    """
    if status >= 500:
        return ServerError
    return _STATUS_TABLE.get(status, InvalidRequestError if 400 <= status < 500 else APIError)
