"""The ``/_sandbox/`` hooks over HTTP: drive and inspect a sandbox that runs in another process.

They take the API's Basic auth and answer in its envelope, but they are not Backd's endpoints: they are never
rate-limited or faulted, and their timestamps are ISO 8601 with an offset (``now_iso``, a mutation's ``at``),
because a test wants the exact moment. ``backd_ops.sandbox.remote.RemoteSandbox`` is their client.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from werkzeug.routing import Rule

from .faults import FaultProfile
from .wire import order_to_wire, wire_time

if TYPE_CHECKING:
    from .app import SandboxApp

HOOK_PREFIX = "/_sandbox"
_ADVANCE_UNITS = ("days", "hours", "minutes", "seconds")


def hook_rules() -> list[Rule]:
    """werkzeug rules for every hook; the endpoint of ``/_sandbox/<name>`` is ``_<name>``."""
    return [Rule(f"{HOOK_PREFIX}/{name}", endpoint=f"_{name}", methods=[method]) for name, (method, _) in _HOOKS.items()]


def run_hook(app: SandboxApp, endpoint: str, body: dict) -> Any:
    """Run the hook behind ``endpoint`` (``_reset``, ...) on ``app``; bad input raises ValueError or TypeError."""
    return _HOOKS[endpoint.removeprefix("_")][1](app, body)


def _reset(app: SandboxApp, body: dict) -> dict:
    spec = body.get("faults")
    app.reset(orders=_optional_int(body, "orders"), seed=_optional_int(body, "seed"), now=_moment(body.get("now")),
              faults=FaultProfile.parse(spec) if spec else None)
    return {"orders": len(app.store), **_clock_state(app)}


def _faults(app: SandboxApp, body: dict) -> dict:
    spec, endpoint = body.get("profile"), str(body.get("endpoint") or "*")
    profile = FaultProfile.parse(spec) if spec else None
    app.faults.set(profile, endpoint=endpoint)
    return {"endpoint": endpoint, "profile": profile.spec() if profile else None}


def _script_faults(app: SandboxApp, body: dict) -> dict:
    endpoint, faults = body.get("endpoint"), body.get("faults")
    if not isinstance(endpoint, str) or not isinstance(faults, list):
        raise ValueError('give "endpoint" (a string) and "faults" (a list of fault names or null)')
    app.faults.script(endpoint, faults)
    return {"endpoint": endpoint, "scripted": faults}


def _mutations(app: SandboxApp, body: dict) -> list[dict]:
    return [{**asdict(m), "at": m.at.isoformat()} for m in list(app.store.mutations)]


def _orders(app: SandboxApp, body: dict) -> list[dict]:
    return [order_to_wire(order, "find_order") for order in app.store.all()]


def _freeze_clock(app: SandboxApp, body: dict) -> dict:
    if "now" not in body:
        raise ValueError('give "now": an ISO datetime with an offset, or null for real time')
    app.clock.reset(_moment(body["now"]))
    return _clock_state(app)


def _advance_clock(app: SandboxApp, body: dict) -> dict:
    app.clock.advance(**{unit: float(body[unit]) for unit in _ADVANCE_UNITS if unit in body})
    return _clock_state(app)


def _select_terms(app: SandboxApp, body: dict) -> dict:
    return order_to_wire(app.store.select_terms(str(body.get("backd_order_id"))), "find_order")


def _process_locked_refunds(app: SandboxApp, body: dict) -> dict:
    return {"processed": app.store.process_locked_refunds()}


def _stats(app: SandboxApp, body: dict) -> dict:
    return app.stats()


_HOOKS: dict[str, tuple[str, Callable[[Any, dict], Any]]] = {
    "reset": ("POST", _reset),
    "faults": ("POST", _faults),
    "script_faults": ("POST", _script_faults),
    "mutations": ("GET", _mutations),
    "orders": ("GET", _orders),
    "freeze_clock": ("POST", _freeze_clock),
    "advance_clock": ("POST", _advance_clock),
    "select_terms": ("POST", _select_terms),
    "process_locked_refunds": ("POST", _process_locked_refunds),
    "stats": ("GET", _stats),
}


def _clock_state(app: SandboxApp) -> dict:
    now = app.clock.now()
    # "now" stays Backd's wire format, as this hook answered before "now_iso" existed.
    return {"now": wire_time(now), "now_iso": now.isoformat(), "frozen": app.clock.frozen}


def _moment(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset; give e.g. 2026-04-14T09:00:00-05:00")
    return moment


def _optional_int(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value
