"""``BackdClient``: one method per Backd post-order endpoint over a pooled, authenticated session.

Layers, as in requests: the public methods build documented bodies → ``_send`` waits for the client's rate
limiter (``_ratelimit``) and applies the retry policy (``_retry``) → ``_transport`` makes one HTTP exchange and
classifies any failure once, at this edge.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import replace
import logging
import threading
import time
from decimal import Decimal
from typing import Any, Callable, Iterator
from urllib.parse import quote

import requests
from urllib3.exceptions import ConnectTimeoutError
from urllib3.util.retry import Retry

from . import _retry
from ._adapter import JsonApiAdapter
from ._ratelimit import RateLimiter
from .config import Account, SecretKey, Settings
from .errors import (
    WriteWithheldError,
    AuthenticationError,
    BackdError,
    NetworkError,
    RateLimitError,
    RequestTimeout,
    error_for_status,
    redact,
)
from .models import AMOUNT_FIELDS, Order
from .money import parse_amount

__all__ = ["BackdClient", "connect"]

log = logging.getLogger("backd_ops.client")

_UPDATE_FIELDS = frozenset(
    {"merchant_order_status", *AMOUNT_FIELDS, "shipping", "billing", "items"}
)
_CREATE_FIELDS = frozenset(
    {
        *AMOUNT_FIELDS,
        "merchant_order_id",
        "merchant_order_status",
        "shipping",
        "billing",
        "items",
        "mode",
        "notify_customer",
        "customer_email",
    }
)


class _BasicAuth(requests.auth.AuthBase):
    """Sets the Basic header; the only object that holds the encoded credential. Its repr hides it."""

    def __init__(self, public_key: str, secret_key: SecretKey) -> None:
        self._header = requests.auth._basic_auth_str(public_key, secret_key.reveal())

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "_BasicAuth(***)"


class BackdClient:
    """A client for Backd's post-order API. Thread-safe; share one across workers.

    Every request starts through one :class:`~backd_ops._ratelimit.RateLimiter` shared by all workers:
    ``max_rps`` (or ``BACKD_MAX_RPS``) paces reads and writes alike at that rate; without it the client adapts,
    backing off on 429 and probing upward again.

    Examples
    --------
    >>> from backd_ops.sandbox import run_sandbox
    >>> with run_sandbox(orders=3) as sb:                     # doctest: +SKIP
    ...     client = sb.client()
    ...     client.find_order("BO-DEMO-0001").status
    'order_placed'
    """

    def __init__(
        self,
        public_key: str,
        secret_key: str | SecretKey,
        *,
        environment: str = "sandbox",
        base_url: str | None = None,
        timeout: float | tuple[float, float] | None = None,
        max_retries: int | None = None,
        pool_size: int | None = None,
        backoff_initial_s: float = _retry.INITIAL_DELAY_S,
        max_rps: float | None = None,
        profile: str | None = None,
    ) -> None:
        secret = secret_key if isinstance(secret_key, SecretKey) else SecretKey(secret_key)
        settings = Settings(public_key=public_key, secret_key=secret, environment=environment, base_url=base_url,
                            max_rps=max_rps, profile=profile)
        connect_s, read_s = _timeouts(timeout, settings)
        self.settings = replace(
            settings,
            connect_timeout_s=connect_s,
            read_timeout_s=read_s,
            max_retries=settings.max_retries if max_retries is None else max_retries,
            pool_size=pool_size or settings.pool_size,
        )
        self.base_url = self.settings.resolved_base_url
        self.backoff_initial_s = backoff_initial_s
        self.limiter = RateLimiter(self.settings.max_rps)
        self._guard = threading.local()
        self._session = _make_session(self.settings)
        self._adapter = self._session.get_adapter(self.base_url)
        self._headers = dict(self._session.headers)

    @classmethod
    def from_env(cls, *, profile: str | None = None, **options: Any) -> BackdClient:
        """Build from ``BACKD_PUBLIC_KEY``, ``BACKD_SECRET_KEY``, ``BACKD_ENVIRONMENT``, ``BACKD_BASE_URL``,
        ``BACKD_MAX_RPS`` (+ ``.env``); ``options`` as for the constructor (``max_rps=None``: the environment's).

        ``profile`` (else ``BACKD_PROFILE``) names one of several accounts: its ``BACKD_<SETTING>_<NAME>``
        variables and its table in ``backd_profiles.toml`` (see :func:`backd_ops.config.list_profiles`).

        Examples
        --------
        >>> client = BackdClient.from_env(max_rps=25)            # doctest: +SKIP
        >>> eu = BackdClient.from_env(profile="eu")              # doctest: +SKIP
        """
        settings = Settings.from_env(profile=profile)
        options["profile"] = settings.profile
        if options.get("max_rps") is None:
            options["max_rps"] = settings.max_rps
        return cls(
            settings.public_key,
            settings.secret_key,
            environment=settings.environment,
            base_url=settings.base_url,
            **options,
        )

    # -- properties -------------------------------------------------------------------------------------
    @property
    def public_key(self) -> str:
        return self.settings.public_key

    @property
    def environment(self) -> str:
        return self.settings.environment

    @property
    def account(self) -> Account:
        """Whose records these are (environment, normalised base URL, public key): what plans and journals key on."""
        return self.settings.account

    @property
    def is_production(self) -> bool:
        return self.settings.is_production

    @property
    def max_retries(self) -> int:
        return self.settings.max_retries

    @property
    def max_rps(self) -> float | None:
        """Requests per second at most, now (None: adaptive)."""
        return self.limiter.max_rps

    @contextmanager
    def limited(self, max_rps: float | None) -> Iterator[BackdClient]:
        """At most ``max_rps`` requests per second inside the block, for every worker (None: as configured).

        Examples
        --------
        >>> with client.limited(max_rps=20):                    # doctest: +SKIP
        ...     backd_ops.find_orders(client, ids)
        """
        with self.limiter.capped(max_rps):
            yield self

    @contextmanager
    def send_guard(self, may_send: Callable[[], bool]) -> Iterator[BackdClient]:
        """In this thread, every write attempt asks ``may_send()`` right before it leaves (after its rate-limit wait,
        and again before a 429 retry); False: nothing is sent and :class:`WriteWithheldError` is raised.

        Execution uses it so that a write queued behind the limiter is never sent for a run that lost its claim
        meanwhile (an interrupted run, a stalled one another process took over).

        Examples
        --------
        >>> with client.send_guard(lambda: journal_still_holds_claim()):     # doctest: +SKIP
        ...     client.refund(backd_order_id, amount)
        """
        previous = getattr(self._guard, "may_send", None)
        self._guard.may_send = may_send
        try:
            yield self
        finally:
            self._guard.may_send = previous

    def __repr__(self) -> str:
        named = f"profile={self.settings.profile!r}, " if self.settings.profile else ""
        return f"BackdClient({named}environment={self.environment!r}, base_url={self.base_url!r}, public_key={self.public_key!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> BackdClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- endpoints --------------------------------------------------------------------------------------
    def find_order(self, backd_order_id: str) -> Order:
        """``GET /find_order/<backd_order_id>``: the order, with its refund requests.

        Examples
        --------
        >>> client.find_order("BO-DEMO-0001").order_total     # doctest: +SKIP
        Decimal('9150.00')
        """
        order_id = _require_id(backd_order_id)
        path = f"/find_order/{quote(order_id, safe='')}"
        return self._call("GET", path, endpoint="find_order", backd_order_id=order_id)

    def order_placed(self, backd_order_id: str, merchant_order_id: str) -> Order:
        """``POST /order_placed``: acknowledge a ``terms_selected`` order under your own order id."""
        body = {"backd_order_id": _require_id(backd_order_id), "merchant_order_id": _require_id(merchant_order_id, "merchant_order_id")}
        return self._call("POST", "/order_placed", body=body, endpoint="order_placed")

    def confirm_order(self, backd_order_id: str, merchant_order_id: str | None = None) -> Order:
        """``POST /confirm_order``: ``order_placed`` → ``order_confirmed``."""
        body = {"backd_order_id": _require_id(backd_order_id)}
        if merchant_order_id is not None:
            body["merchant_order_id"] = _require_id(merchant_order_id, "merchant_order_id")
        return self._call("POST", "/confirm_order", body=body, endpoint="confirm_order")

    def cancel_order(self, backd_order_id: str) -> Order:
        """``POST /cancel_order``: cancel an ``order_placed`` order."""
        body = {"backd_order_id": _require_id(backd_order_id)}
        return self._call("POST", "/cancel_order", body=body, endpoint="cancel_order")

    def update_order(self, backd_order_id: str, merchant_order_id: str, **fields: Any) -> Order:
        """``POST /update_order``: change details of an ``order_placed`` order (documented fields only).

        Examples
        --------
        >>> client.update_order("BO-1", "M-1", order_total="120.00", cart_amount="110.00")  # doctest: +SKIP
        """
        unknown = sorted(set(fields) - _UPDATE_FIELDS)
        if unknown:
            raise ValueError(f"update_order does not take {unknown}; documented fields: {sorted(_UPDATE_FIELDS)}")
        body = {
            "backd_order_id": _require_id(backd_order_id),
            "merchant_order_id": _require_id(merchant_order_id, "merchant_order_id"),
            **_wire_fields(fields),
        }
        return self._call("POST", "/update_order", body=body, endpoint="update_order")

    def refund(self, backd_order_id: str, merchant_order_id: str, refund_amount: Any) -> Order:
        """``POST /refund``: request a refund of ``refund_amount`` (replaces an active, unlocked request).

        Examples
        --------
        >>> client.refund("BO-1", "M-1", "25.10").active_refund.amount  # doctest: +SKIP
        Decimal('25.10')
        """
        amount = parse_amount(refund_amount)
        if amount <= 0:
            raise ValueError("refund_amount must be greater than 0")
        body = {
            "backd_order_id": _require_id(backd_order_id),
            "merchant_order_id": _require_id(merchant_order_id, "merchant_order_id"),
            "refund_amount": _json_number(amount),
        }
        return self._call("POST", "/refund", body=body, endpoint="refund")

    def delete_refund(self, backd_order_id: str, merchant_order_id: str) -> Order:
        """``DELETE /refund`` (with a JSON body): decline the active, unlocked refund request."""
        body = {"backd_order_id": _require_id(backd_order_id), "merchant_order_id": _require_id(merchant_order_id, "merchant_order_id")}
        return self._call("DELETE", "/refund", body=body, endpoint="delete_refund")

    def create_order(self, **order: Any) -> Order:
        """``POST /create_order``: a server-to-server order; the result carries ``customer_url``.

        Examples
        --------
        >>> created = client.create_order(order_total=100, cart_amount=100, merchant_order_id="M-9",
        ...     billing=billing, items=items, mode={"type": "redirect"})   # doctest: +SKIP
        >>> created.customer_url                                           # doctest: +SKIP
        """
        unknown = sorted(set(order) - _CREATE_FIELDS)
        if unknown:
            raise ValueError(f"create_order does not take {unknown}; documented fields: {sorted(_CREATE_FIELDS)}")
        return self._call("POST", "/create_order", body=_wire_fields(order), endpoint="create_order")

    # -- plumbing -----------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, endpoint: str, body: dict | None = None, backd_order_id: str | None = None) -> Order:
        order_id = backd_order_id or (body or {}).get("backd_order_id")
        envelope = self._send(method, path, body=body, endpoint=endpoint, backd_order_id=order_id)
        data = envelope.get("data") or {}
        return Order.from_wire(data, refunds=envelope.get("refunds"))

    def _send(self, method: str, path: str, *, body: dict | None, endpoint: str, backd_order_id: str | None) -> dict:
        is_write = method != "GET"
        for attempt in range(self.max_retries + 1):
            ticket = self.limiter.acquire()  # every attempt is a request: paced, and held during a 429 pause
            may_send = getattr(self._guard, "may_send", None) if is_write else None
            if may_send is not None and not may_send():  # asked after the wait: the wait may have outlived the run's claim
                raise WriteWithheldError(f"{endpoint} not sent: the run no longer holds its plan", endpoint=endpoint,
                                         backd_order_id=backd_order_id)
            try:
                return self._transport(method, path, body=body, endpoint=endpoint, backd_order_id=backd_order_id, is_write=is_write)
            except BackdError as error:
                delay_s = _retry.retry_delay_s(error, attempt, initial_s=self.backoff_initial_s)
                if isinstance(error, RateLimitError):
                    self._slow_down(ticket, delay_s)  # even on the last attempt: the other workers must wait too
                    delay_s = 0.0  # the limiter's pause holds this worker as well
                if not _retry.should_retry(error, is_write=is_write, attempt=attempt, max_retries=self.max_retries):
                    raise
                log.debug("retrying %s %s after %s in %.2fs", endpoint, backd_order_id or "", type(error).__name__, delay_s)
                time.sleep(delay_s)
        raise AssertionError("unreachable: the last attempt raises")

    def _slow_down(self, ticket: int, pause_s: float) -> None:
        if self.limiter.rate_limited(ticket, pause_s=pause_s):
            log.info("Backd answered 429: every worker paused %.2fs, then %.1f requests/s", pause_s, self.limiter.rate_rps or 0)

    def _transport(self, method: str, path: str, *, body: dict | None, endpoint: str, backd_order_id: str | None, is_write: bool) -> dict:
        url = f"{self.base_url}{path}"
        where = {"endpoint": endpoint, "backd_order_id": backd_order_id}
        log.debug("%s %s body=%s", method, url, body)
        try:
            response = self._adapter.send(
                self._prepare(method, url, body), timeout=(self.settings.connect_timeout_s, self.settings.read_timeout_s)
            )
            response.content  # read the whole body now: errors surface here and the connection goes back to the pool
        except requests.RequestException as exc:
            raise _classify_transport_error(exc, is_write=is_write, **where) from None
        log.debug("%s %s -> %s", method, url, response.status_code)
        return _parse_response(response, is_write=is_write, **where)


    def _prepare(self, method: str, url: str, body: dict | None) -> requests.PreparedRequest:
        """A ready request without ``Session.prepare_request``.

        We talk to the transport adapter directly: the session's per-call merging of cookies, hooks,
        proxies and redirects costs about a third of the client's CPU per call and none of it applies
        to a JSON API with Basic auth (measured in bench/bench_bulk.py).
        """
        prepared = requests.PreparedRequest()
        prepared.method, prepared.url, prepared.hooks = method, url, {"response": []}
        prepared.headers = dict(self._headers)  # a plain dict: the only header names are the ones set here
        if body is None:
            prepared.body = None
        else:
            prepared.body = json.dumps(body, separators=(",", ":")).encode()
            prepared.headers["Content-Type"] = "application/json"
            prepared.headers["Content-Length"] = str(len(prepared.body))
        return self._session.auth(prepared)  # type: ignore[misc]


def connect(**options: Any) -> BackdClient:
    """A client from the environment / ``.env``: the one line a notebook needs.

    Examples
    --------
    >>> import backd_ops
    >>> client = backd_ops.connect()                             # doctest: +SKIP
    >>> eu = backd_ops.connect(profile="eu")                     # doctest: +SKIP
    """
    return BackdClient.from_env(**options)


def _timeouts(timeout: float | tuple[float, float] | None, defaults: Settings) -> tuple[float, float]:
    if timeout is None:
        return defaults.connect_timeout_s, defaults.read_timeout_s
    if isinstance(timeout, tuple):
        return float(timeout[0]), float(timeout[1])
    return float(timeout), float(timeout)


def _make_session(settings: Settings) -> requests.Session:
    session = requests.Session()
    session.auth = _BasicAuth(settings.public_key, settings.secret_key)
    session.headers.update({"Accept": "application/json", "User-Agent": "backd_ops/0.1"})
    session.trust_env = False  # no proxies or netrc credentials from the machine: keys come from Settings only
    # No retries in urllib3: every retry lives in BackdClient._send, which knows reads from writes and a refused
    # connection (never sent) from a lost answer. Two layers would multiply: each of our attempts would make
    # several connects, and an unreachable Backd took 25 connects and 10 s per call to report.
    retry = Retry(total=0, read=False, redirect=0, raise_on_status=False)
    adapter = JsonApiAdapter(pool_connections=2, pool_maxsize=settings.pool_size, max_retries=retry, pool_block=True)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _require_id(value: Any, column: str = "backd_order_id") -> str:
    text = "" if value is None else str(value).strip()
    if not text:
        raise ValueError(f"{column} is blank")
    return text


def _json_number(amount: Decimal) -> float | int:
    """Two-place Decimal as a JSON number whose text is exactly that decimal (checked, never drifts)."""
    if amount == amount.to_integral_value():
        return int(amount)
    number = float(amount)
    if Decimal(repr(number)) != amount:
        raise ValueError(f"{amount} cannot be sent exactly as a JSON number")
    return number


def _wire_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Amount fields parsed exactly and sent as numbers; items' unit prices too; the rest as given."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name in AMOUNT_FIELDS:
            out[name] = _json_number(parse_amount(value))
        elif name == "items" and value is not None:
            out[name] = [_wire_item(item) for item in value]
        else:
            out[name] = value
    return out


def _wire_item(item: dict) -> dict:
    item = dict(item)
    if "unit_price" in item:
        item["unit_price"] = _json_number(parse_amount(item["unit_price"]))
    return item


def _classify_transport_error(exc: requests.RequestException, *, is_write: bool, endpoint: str, backd_order_id: str | None) -> NetworkError:
    """Map a requests failure to our error, deciding once whether the request may have reached Backd."""
    never_sent = _never_sent(exc)
    error_cls = RequestTimeout if isinstance(exc, requests.Timeout) else NetworkError
    reason = type(exc).__name__ + (": could not connect" if never_sent and not isinstance(exc, requests.Timeout) else "")
    return error_cls(
        f"{reason} ({redact(_short(exc))})",
        endpoint=endpoint,
        backd_order_id=backd_order_id,
        may_have_been_applied=is_write and not never_sent,
    )


def _never_sent(exc: requests.RequestException) -> bool:
    """True only when no byte of the request can have left: connect failed or timed out."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    inner = exc.args[0] if exc.args else None
    # With no retries of its own, urllib3 raises a failed connect as MaxRetryError(reason=NewConnectionError or
    # ConnectTimeoutError; the first subclasses the second); a failure after connecting is re-raised as it was.
    return isinstance(getattr(inner, "reason", None), ConnectTimeoutError)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 240 else text[:237] + "..."


def _flagged_code(value: Any) -> int:
    """The HTTP-like code of a 200 flagged ``status.error``: its ``code`` if that is a number from 400 to 599,
    else 502 (an answer we cannot read: on a write, ambiguous, and settled by reading the order back).

    Examples
    --------
    >>> _flagged_code(404), _flagged_code("422"), _flagged_code(None), _flagged_code("E42"), _flagged_code(200)
    (404, 422, 400, 502, 502)
    """
    if value is None or value == "":
        return 400
    try:
        code = int(str(value).strip())
    except ValueError:
        return 502
    return code if 400 <= code <= 599 else 502


def _parse_response(response: requests.Response, *, is_write: bool, endpoint: str, backd_order_id: str | None) -> dict:
    """The envelope of a successful answer, or the mapped error (a 200 with ``status.error`` is an error)."""
    try:
        envelope = response.json(parse_float=Decimal)
    except ValueError:
        envelope = None
    status_obj = envelope.get("status") if isinstance(envelope, dict) else None
    flagged = isinstance(status_obj, dict) and bool(status_obj.get("error"))
    if response.ok and isinstance(envelope, dict) and not flagged:
        return envelope
    code = response.status_code if not response.ok else _flagged_code((status_obj or {}).get("code"))
    if response.ok and not isinstance(envelope, dict):
        code = 502  # a 200 we cannot read: treat as a server fault, which is ambiguous for writes
    message = (envelope or {}).get("message") if isinstance(envelope, dict) else None
    error_cls = error_for_status(code)
    kwargs: dict[str, Any] = {
        "status": code,
        "endpoint": endpoint,
        "backd_order_id": backd_order_id,
        "may_have_been_applied": is_write and code >= 500,
        "request_id": response.headers.get("X-Request-Id"),
        "body": response.text[:2000] if envelope is None else json.dumps(envelope, default=str)[:2000],
    }
    kwargs["retry_after"] = _retry.parse_retry_after_s(response.headers.get("Retry-After"))  # a 429's, or a 503's
    if error_cls is AuthenticationError:
        message = (f"{message or 'unauthorized'}: check BACKD_PUBLIC_KEY / BACKD_SECRET_KEY, and that the keys belong to "
                   f"this environment ({response.url.split('/v1/')[0]}); sandbox and production keys differ")
    raise error_cls(message or response.reason or f"HTTP {code}", **kwargs)
