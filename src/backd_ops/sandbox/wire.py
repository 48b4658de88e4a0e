"""The sandbox's wire format, shared by the API and the hooks: the envelope, JSON numbers, Chicago wall time.

It comes from ``shared/backd-api.md``, not from our client: amounts are JSON numbers, timestamps
``YYYY-MM-DD HH:MM:SS`` in Chicago wall time, errors the same envelope with ``status.error = true``.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from werkzeug.wrappers import Response

from ..locking import CHICAGO

_WITH_REFUNDS = frozenset({"find_order", "refund", "delete_refund"})


def envelope(data: Any, *, code: int, message: str) -> Response:
    """Backd's response envelope: ``data``, ``message`` and a ``status`` object; errors carry ``data: null``."""
    error = code >= 400
    payload = {
        "data": data,
        "message": message,
        "status": {"type": "error" if error else "success", "code": code, "error": error},
    }
    return Response(json.dumps(payload, default=_json_default), status=code, mimetype="application/json")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return wire_time(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def wire_time(moment: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in Chicago wall time, as Backd's examples show timestamps."""
    return moment.astimezone(CHICAGO).strftime("%Y-%m-%d %H:%M:%S")


def order_to_wire(order: dict, endpoint: str) -> dict:
    """The order's fields as ``endpoint`` answers with them (``refunds`` only where documented)."""
    wire = {k: v for k, v in order.items() if v is not None or k in ("merchant_order_status",)}
    if endpoint not in _WITH_REFUNDS:
        wire.pop("refunds", None)
    if endpoint == "cancel_order":
        wire.pop("merchant_order_status", None)  # documented: cancel_order does not return it
    if endpoint != "create_order":
        wire.pop("customer_url", None)
    return wire


def seconds_text(seconds: float) -> str:
    """Seconds as ``Retry-After`` text: ``"1"``, ``"0.05"``."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
