"""The sandbox's order book: Backd's status flow and refund rules, applied under one lock, with a mutation log.

Everything here is plain Python on plain dicts; the HTTP layer (``app.py``) only parses and wraps.
Where Backd's docs are silent, the choice made is listed in ``docs/sandbox.md``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable

from ..locking import CHICAGO, refund_locked_at

CENT = Decimal("0.01")
ACTIVE = ("draft", "approved")
AMOUNT_FIELDS = ("order_total", "cart_amount", "tax_amount", "shipping_amount", "discount_amount")
CONTACT_REQUIRED = ("name", "company_name", "address", "phone_number", "email")
ADDRESS_REQUIRED = ("line1", "city", "state", "zipcode", "country")
ITEM_REQUIRED = ("display_name", "sku", "unit_price", "qty")


class SandboxError(Exception):
    """A rule said no: ``code`` is the HTTP status the API answers with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Mutation:
    """One applied change, for tests that assert "refunded exactly once"."""

    seq: int
    at: datetime
    endpoint: str
    backd_order_id: str
    detail: dict = field(default_factory=dict)


class OrderStore:
    """Orders keyed by ``backd_order_id``; every public method is one atomic API operation."""

    def __init__(self, *, clock: Callable[[], datetime], update_increase_limit: Decimal = Decimal("1000.00")) -> None:
        self._clock = clock
        self._orders: dict[str, dict] = {}
        self._lock = threading.RLock()
        self._seq = 0
        self.update_increase_limit = update_increase_limit
        self.mutations: list[Mutation] = []

    # -- reads ------------------------------------------------------------------------------------------
    def find(self, backd_order_id: str) -> dict:
        with self._lock:
            return _snapshot(self._get(backd_order_id))

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._orders)

    def all(self) -> list[dict]:
        """A snapshot of every order, in insertion order (for a test in another process to assert on)."""
        with self._lock:
            return [_snapshot(order) for order in self._orders.values()]

    def __len__(self) -> int:
        return len(self._orders)

    # -- setup and hooks (not API endpoints) -----------------------------------------------------------
    def add(self, order: dict) -> None:
        """Insert a fully formed order (demo data, tests)."""
        with self._lock:
            order.setdefault("refunds", [])
            order.setdefault("placed_total", order["order_total"])
            self._orders[order["backd_order_id"]] = order

    def reset(self, orders: list[dict]) -> None:
        """Replace the whole book with ``orders``; the mutation log and create_order's sequence start again."""
        with self._lock:
            self._orders.clear()
            self.mutations.clear()
            self._seq = 0
            for order in orders:
                self.add(order)

    def select_terms(self, backd_order_id: str) -> dict:
        """The customer finished choosing terms at ``customer_url``: ``order_created`` → ``terms_selected``."""
        with self._lock:
            order = self._get(backd_order_id)
            self._require_status(order, "order_created", "select terms")
            return self._apply(order, "select_terms", status="terms_selected")

    def process_locked_refunds(self) -> list[str]:
        """Backd processes every active refund whose lock has passed: request ``processed``, order ``refund``."""
        now = self._clock()
        done = []
        with self._lock:
            for order in self._orders.values():
                for refund in order["refunds"]:
                    if refund["status"] in ACTIVE and now >= refund["locked_at"]:
                        refund["status"] = "processed"
                        self._apply(order, "process_refund", status="refund", amount=str(refund["amount"]))
                        done.append(order["backd_order_id"])
        return done

    def process_active_refund(self, backd_order_id: str, *, order_status: str = "refund") -> dict:
        """Backd processes this order's active refund now, lock or not (``order_status``: where the order ends up;
        Backd may process a refund before it moves the order to ``refund``)."""
        with self._lock:
            order = self._get(backd_order_id)
            active = self._active_refund(order)
            if active is None:
                raise SandboxError(409, "the order has no active refund request")
            active["status"] = "processed"
            return self._apply(order, "process_refund", status=order_status, amount=str(active["amount"]))

    # -- API operations ---------------------------------------------------------------------------------
    def create_order(self, body: dict, *, customer_url_base: str) -> dict:
        _validate_create(body)
        with self._lock:
            self._seq += 1
            now = self._clock()
            backd_order_id = f"BO-{now:%Y%m%d}-{self._seq:06d}"
            order = {
                "backd_order_id": backd_order_id,
                "create_date": now,
                "status": "order_created",
                "merchant_order_id": body["merchant_order_id"],
                "merchant_order_status": body.get("merchant_order_status"),
                **{name: _amount(body, name, default=Decimal("0")) for name in AMOUNT_FIELDS},
                "shipping": body.get("shipping"),
                "billing": body["billing"],
                "items": body.get("items") or [],
                "refunds": [],
                "customer_url": f"{customer_url_base}/{backd_order_id}",
            }
            order["placed_total"] = order["order_total"]
            self._orders[backd_order_id] = order
            self._log("create_order", backd_order_id, {"order_total": str(order["order_total"])})
            return _snapshot(order)

    def order_placed(self, body: dict) -> dict:
        backd_order_id, merchant_order_id = _ids(body, "merchant_order_id")
        with self._lock:
            order = self._get(backd_order_id)
            if order["status"] == "order_placed" and order["merchant_order_id"] == merchant_order_id:
                return _snapshot(order)  # repeat call with the same ids: no change (docs/sandbox.md §17)
            self._require_status(order, "terms_selected", "order_placed")
            return self._apply(order, "order_placed", status="order_placed", merchant_order_id=merchant_order_id,
                               placed_total=order["order_total"])

    def confirm_order(self, body: dict) -> dict:
        backd_order_id = _ids(body)[0]
        with self._lock:
            order = self._get(backd_order_id)
            self._check_merchant_id(order, body, required=False)
            self._require_status(order, "order_placed", "confirm_order")
            return self._apply(order, "confirm_order", status="order_confirmed")

    def cancel_order(self, body: dict) -> dict:
        backd_order_id = _ids(body)[0]
        with self._lock:
            order = self._get(backd_order_id)
            self._require_status(order, "order_placed", "cancel_order")
            return self._apply(order, "cancel_order", status="order_canceled")

    def update_order(self, body: dict) -> dict:
        backd_order_id = _ids(body, "merchant_order_id")[0]
        changes = _validate_update(body)
        with self._lock:
            order = self._get(backd_order_id)
            self._check_merchant_id(order, body, required=True)
            self._require_status(order, "order_placed", "update_order")
            for contact in ("shipping", "billing"):  # the update schema has no company_name: keep the stored one
                if contact in changes:
                    changes[contact] = {**(order.get(contact) or {}), **changes[contact]}
            new_total = changes.get("order_total", order["order_total"])
            if new_total - order["placed_total"] > self.update_increase_limit:
                raise SandboxError(400, f"order_total increase over {order['placed_total']} exceeds the agreed limit of {self.update_increase_limit}")
            return self._apply(order, "update_order", **changes)

    def refund(self, body: dict) -> dict:
        backd_order_id = _ids(body, "merchant_order_id")[0]
        amount = _amount(body, "refund_amount", required=True)
        if amount <= 0:
            raise SandboxError(400, "refund_amount must be greater than 0")
        with self._lock:
            order = self._get(backd_order_id)
            self._check_merchant_id(order, body, required=True)
            self._require_status(order, "order_confirmed", "refund")
            active = self._active_refund(order)
            now = self._clock()
            if active and now >= active["locked_at"]:
                raise SandboxError(409, f"the active refund request is locked since {_fmt(active['locked_at'])} and cannot be replaced")
            held = sum((r["amount"] for r in order["refunds"] if r["status"] != "declined" and r is not active), Decimal("0"))
            if amount > order["order_total"] - held:
                raise SandboxError(400, f"refund_amount {amount} exceeds the refundable amount {order['order_total'] - held}")
            if active:
                active["status"] = "declined"
            order["refunds"].append({"amount": amount, "create_date": now, "status": "draft", "locked_at": refund_locked_at(now)})
            return self._apply(order, "refund", amount=str(amount), replaced=str(active["amount"]) if active else None)

    def delete_refund(self, body: dict) -> dict:
        backd_order_id = _ids(body, "merchant_order_id")[0]
        with self._lock:
            order = self._get(backd_order_id)
            self._check_merchant_id(order, body, required=True)
            self._require_status(order, "order_confirmed", "delete_refund")
            active = self._active_refund(order)
            if active is None:
                raise SandboxError(409, "the order has no active refund request")
            if self._clock() >= active["locked_at"]:
                raise SandboxError(409, f"the active refund request is locked since {_fmt(active['locked_at'])} and cannot be deleted")
            active["status"] = "declined"
            return self._apply(order, "delete_refund", amount=str(active["amount"]))

    # -- helpers ----------------------------------------------------------------------------------------
    def _get(self, backd_order_id: str) -> dict:
        order = self._orders.get(backd_order_id)
        if order is None:
            raise SandboxError(404, f"order {backd_order_id} not found")
        return order

    @staticmethod
    def _require_status(order: dict, status: str, action: str) -> None:
        if order["status"] != status:
            raise SandboxError(409, f"{action} is allowed only when the order is {status}; it is {order['status']}")

    @staticmethod
    def _check_merchant_id(order: dict, body: dict, *, required: bool) -> None:
        given = body.get("merchant_order_id")
        if given is None and not required:
            return
        if given != order["merchant_order_id"]:
            raise SandboxError(400, f"merchant_order_id {given!r} does not match the order's {order['merchant_order_id']!r}")

    @staticmethod
    def _active_refund(order: dict) -> dict | None:
        return next((r for r in order["refunds"] if r["status"] in ACTIVE), None)

    def _apply(self, order: dict, endpoint: str, **changes: Any) -> dict:
        detail = {k: v for k, v in changes.items() if k in ("amount", "replaced", "status")}
        order.update({k: v for k, v in changes.items() if k not in ("amount", "replaced")})
        self._log(endpoint, order["backd_order_id"], {k: (str(v) if isinstance(v, Decimal) else v) for k, v in detail.items()})
        return _snapshot(order)

    def _log(self, endpoint: str, backd_order_id: str, detail: dict) -> None:
        self.mutations.append(Mutation(len(self.mutations) + 1, self._clock(), endpoint, backd_order_id, detail))


def _snapshot(order: dict) -> dict:
    """A copy safe to serialise outside the lock."""
    copy = {k: v for k, v in order.items() if k != "placed_total"}
    copy["refunds"] = [dict(r) for r in order["refunds"]]
    return copy


def _fmt(moment: datetime) -> str:
    return moment.astimezone(CHICAGO).strftime("%Y-%m-%d %H:%M:%S %Z")


def _ids(body: dict, *also: str) -> tuple[str, ...]:
    values = []
    for name in ("backd_order_id", *also):
        value = body.get(name)
        if not isinstance(value, str) or not value.strip():
            raise SandboxError(400, f"{name} is required and must be a non-empty string")
        values.append(value)
    return tuple(values)


def _amount(body: dict, name: str, *, required: bool = False, default: Decimal | None = None) -> Decimal | None:
    value = body.get(name)
    if value is None:
        if required:
            raise SandboxError(400, f"{name} is required")
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise SandboxError(400, f"{name} must be a JSON number, got {type(value).__name__}")
    amount = Decimal(str(value))
    if not amount.is_finite() or amount != amount.quantize(CENT):
        raise SandboxError(400, f"{name} must be a finite number with at most 2 decimals")
    if amount < 0:
        raise SandboxError(400, f"{name} must not be negative")
    return amount.quantize(CENT)


def _validate_contact(contact: Any, name: str, *, company_required: bool = True) -> None:
    if not isinstance(contact, dict):
        raise SandboxError(400, f"{name} must be an object")
    required = CONTACT_REQUIRED if company_required else tuple(f for f in CONTACT_REQUIRED if f != "company_name")
    missing = [f for f in required if f not in contact]
    missing += [f"address.{f}" for f in ADDRESS_REQUIRED if f not in (contact.get("address") or {})]
    missing += [f"name.{f}" for f in ("first", "last") if f not in (contact.get("name") or {})]
    if missing:
        raise SandboxError(400, f"{name} is missing {', '.join(missing)}")


def _validate_items(items: Any) -> None:
    if not isinstance(items, list) or not items:
        raise SandboxError(400, "items must be a non-empty list")
    for i, item in enumerate(items):
        missing = [f for f in ITEM_REQUIRED if not isinstance(item, dict) or f not in item]
        if missing:
            raise SandboxError(400, f"items[{i}] is missing {', '.join(missing)}")
        _amount(item, "unit_price", required=True)


def _validate_create(body: dict) -> None:
    for name in ("order_total", "cart_amount"):
        _amount(body, name, required=True)
    for name in AMOUNT_FIELDS[2:]:
        _amount(body, name)
    if not isinstance(body.get("merchant_order_id"), str) or not body["merchant_order_id"].strip():
        raise SandboxError(400, "merchant_order_id is required")
    _validate_contact(body.get("billing"), "billing")
    if body.get("shipping") is not None:
        _validate_contact(body["shipping"], "shipping")
    _validate_items(body.get("items"))
    if (body.get("mode") or {}).get("type") != "redirect":
        raise SandboxError(400, 'mode.type must be "redirect" for create_order')


def _validate_update(body: dict) -> dict:
    changes: dict[str, Any] = {}
    for name in AMOUNT_FIELDS:
        if body.get(name) is not None:
            changes[name] = _amount(body, name)
    for name in ("shipping", "billing"):
        if body.get(name) is not None:
            _validate_contact(body[name], name, company_required=False)
            changes[name] = body[name]
    if body.get("items") is not None:
        _validate_items(body["items"])
        changes["items"] = body["items"]
    if body.get("merchant_order_status") is not None:
        changes["merchant_order_status"] = str(body["merchant_order_status"])
    return changes
