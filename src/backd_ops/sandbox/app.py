"""The sandbox's HTTP face: werkzeug routing, Basic auth, the rate limit, fault injection and the hooks.

The wire format lives in ``wire.py`` and the ``/_sandbox/`` hooks in ``hooks.py``.
"""

from __future__ import annotations

import hmac
import json
import socket
import threading
import time
from collections import Counter
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .clock import SandboxClock
from .demo import demo_orders
from .faults import RATE_LIMITED_BUCKET, FaultInjector, FaultPlan, FaultProfile
from .hooks import hook_rules, run_hook
from .http import DROPPED
from .ratelimit import retry_after_text
from .store import OrderStore, SandboxError
from .wire import envelope, order_to_wire, seconds_text

API_PREFIX = "/v1/backd/bnpl/api"

_URLS = Map(
    [
        Rule(f"{API_PREFIX}/find_order/<path:backd_order_id>", endpoint="find_order", methods=["GET"]),
        Rule(f"{API_PREFIX}/find_order", endpoint="find_order", methods=["GET"]),
        Rule(f"{API_PREFIX}/order_placed", endpoint="order_placed", methods=["POST"]),
        Rule(f"{API_PREFIX}/confirm_order", endpoint="confirm_order", methods=["POST"]),
        Rule(f"{API_PREFIX}/cancel_order", endpoint="cancel_order", methods=["POST"]),
        Rule(f"{API_PREFIX}/update_order", endpoint="update_order", methods=["POST"]),
        Rule(f"{API_PREFIX}/refund", endpoint="refund", methods=["POST"]),
        Rule(f"{API_PREFIX}/refund", endpoint="delete_refund", methods=["DELETE"]),
        Rule(f"{API_PREFIX}/create_order", endpoint="create_order", methods=["POST"]),
        *hook_rules(),
    ]
)


class _DropConnection(Exception):
    """Cut the client's connection without an answer."""


class SandboxApp:
    """A WSGI app that behaves like Backd's post-order API for the keys it is given."""

    def __init__(self, store: OrderStore, *, keys: dict[str, str], faults: FaultInjector, clock: SandboxClock) -> None:
        self.store = store
        self.keys = dict(keys)
        self.faults = faults
        self.clock = clock
        self.requests: list[dict] = []
        self.counts: Counter[str] = Counter()
        self.book = {"orders": len(store), "seed": 42}  # what reset() rebuilds when not told otherwise
        self._log_lock = threading.Lock()

    def reset(self, *, orders: int | None = None, seed: int | None = None, now: datetime | None = None,
              faults: FaultProfile | None = None) -> None:
        """A fresh demo book (same keys and URL), empty logs, only ``faults``; the clock frozen at ``now`` or real.

        ``orders`` and ``seed`` default to the last book's. The connection counter is kept: it counts sockets.
        """
        book = {"orders": self.book["orders"] if orders is None else orders, "seed": self.book["seed"] if seed is None else seed}
        self.clock.reset(now)
        self.faults.reset()
        if faults is not None:
            self.faults.set(faults)
        with self._log_lock:
            self.requests.clear()
        self.store.reset(demo_orders(book["orders"], now=self.clock.now(), seed=book["seed"]))
        self.book = book

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        request = Request(environ)
        try:
            response = self.dispatch(request)
        except _DropConnection:
            _drop(environ)
            response = Response(b"", status=500)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        try:
            endpoint, args = _URLS.bind_to_environ(request.environ).match()
        except HTTPException as exc:
            return envelope(None, code=exc.code or 404, message=exc.description or "not found")
        if not self._authorized(request):
            self._record(request, endpoint, None, 401, None)
            return envelope(None, code=401, message="invalid or missing API keys")
        if endpoint.startswith("_"):
            return self._hook(endpoint, request)  # hooks are test plumbing: never rate-limited or faulted
        refused = self._rate_limited(endpoint, request)
        return refused if refused is not None else self._api(endpoint, request, args)

    def _rate_limited(self, endpoint: str, request: Request) -> Response | None:
        """429 with ``Retry-After`` when the public key's token bucket is empty; None when admitted."""
        wait_s = self.faults.admit(endpoint, request.authorization.username)  # type: ignore[union-attr]
        if not wait_s:
            return None
        self._record(request, endpoint, None, None, RATE_LIMITED_BUCKET)
        response = envelope(None, code=429, message="too many requests: over the rate limit for this key")
        response.headers["Retry-After"] = retry_after_text(wait_s)
        return response

    def _api(self, endpoint: str, request: Request, args: dict) -> Response:
        plan = self.faults.draw(endpoint)
        if plan.latency_s:
            time.sleep(plan.latency_s)
        body, order_id = {}, args.get("backd_order_id") or request.args.get("backd_order_id")
        try:
            if endpoint != "find_order":
                body = _json_body(request)
                order_id = body.get("backd_order_id") if isinstance(body.get("backd_order_id"), str) else None
            early = self._fault_before(plan, request, endpoint, order_id)
            if early is not None:
                return early
            if plan.slow_s:
                time.sleep(plan.slow_s)  # Backd is still working when the client's read timeout expires
            data = self._operate(endpoint, body, order_id, request)
        except SandboxError as exc:
            self._record(request, endpoint, order_id, exc.code, None)
            return envelope(None, code=exc.code, message=exc.message)
        return self._answer(plan, request, endpoint, order_id, data)

    def _operate(self, endpoint: str, body: dict, order_id: str | None, request: Request) -> dict:
        if endpoint == "find_order":
            if not order_id:
                raise SandboxError(400, "backd_order_id is required")
            return self.store.find(order_id)
        if endpoint == "create_order":
            return self.store.create_order(body, customer_url_base=f"{request.host_url.rstrip('/')}/checkout")
        return getattr(self.store, endpoint)(body)

    def _fault_before(self, plan: FaultPlan, request: Request, endpoint: str, order_id: str | None) -> Response | None:
        if plan.before is None:
            return None
        self._record(request, endpoint, order_id, None, plan.before)
        if plan.before == "reset_before":
            raise _DropConnection()
        if plan.before == "rate_limit":
            profile_retry = self._retry_after(endpoint)
            response = envelope(None, code=429, message="too many requests")
            response.headers["Retry-After"] = seconds_text(profile_retry)
            return response
        return envelope(None, code=503, message="service unavailable (injected before applying)")

    def _answer(self, plan: FaultPlan, request: Request, endpoint: str, order_id: str | None, data: dict) -> Response:
        self._record(request, endpoint, order_id, 200, plan.after or ("slow" if plan.slow_s else None))
        if plan.after == "drop_after_apply":
            raise _DropConnection()
        if plan.after == "error_after_apply":
            return envelope(None, code=500, message="internal error (injected after applying)")
        return envelope(order_to_wire(data, endpoint), code=200, message=_MESSAGES.get(endpoint, "OK"))

    def _retry_after(self, endpoint: str) -> float:
        profile = self.faults.profile_for(endpoint)
        return profile.retry_after_s if profile else 1.0

    def _hook(self, endpoint: str, request: Request) -> Response:
        try:
            body = _json_body(request) if request.get_data(cache=True) else {}  # a bodiless POST is fine here
            result = run_hook(self, endpoint, body)
        except SandboxError as exc:
            return envelope(None, code=exc.code, message=exc.message)
        except (ValueError, TypeError) as exc:
            return envelope(None, code=400, message=str(exc))
        return envelope(result, code=200, message="OK")

    def count_connection(self) -> None:
        with self._log_lock:
            self.counts["connections"] += 1

    def stats(self) -> dict:
        """Requests per endpoint and status, injected faults, and applied mutations per endpoint."""
        with self._log_lock:
            requests = Counter(f"{r['endpoint']} {r['status'] or r['fault']}" for r in self.requests)
        mutations = Counter(m.endpoint for m in self.store.mutations)
        return {"requests": dict(requests), "faults": dict(self.faults.counts), "mutations": dict(mutations)}

    def _authorized(self, request: Request) -> bool:
        auth = request.authorization
        if auth is None or auth.type != "basic" or not auth.username:
            return False
        expected = self.keys.get(auth.username)
        return expected is not None and hmac.compare_digest(expected.encode(), (auth.password or "").encode())

    def _record(self, request: Request, endpoint: str, order_id: str | None, status: int | None, fault: str | None) -> None:
        with self._log_lock:
            self.requests.append({"seq": len(self.requests) + 1, "at": time.monotonic(), "method": request.method,
                                  "endpoint": endpoint, "backd_order_id": order_id, "status": status, "fault": fault})


_MESSAGES = {
    "find_order": "Order details",
    "order_placed": "Order details",
    "confirm_order": "Order confirmed",
    "cancel_order": "Canceled order details",
    "update_order": "Updated order details",
    "refund": "Refund details",
    "delete_refund": "Refund details after deletion",
    "create_order": "Order created",
}


def _json_body(request: Request) -> dict:
    raw = request.get_data(cache=True)
    if not raw:
        raise SandboxError(400, "a JSON body is required")
    try:
        body = json.loads(raw, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        raise SandboxError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise SandboxError(400, "the body must be a JSON object")
    return body


def _drop(environ: dict) -> None:
    """Close the client's socket with no answer: the client cannot tell whether the write was applied."""
    sock = environ.get("werkzeug.socket")
    environ[DROPPED] = True
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
