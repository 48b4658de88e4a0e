"""Deterministic demo orders: every status, realistic B2B amounts, some draft refunds. No real customers."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal

from ..locking import refund_locked_at

CENT = Decimal("0.01")
_COMPANIES = [
    "Acme Industrial Supply", "Blue Ridge Fasteners", "Cedar Lane Provisions", "Delta Lab Equipment",
    "Evergreen Office Goods", "Foxglove Hospitality", "Granite State Tooling", "Harbor Freightworks",
    "Ironwood Builders", "Juniper Medical Supply", "Keystone Packaging", "Lakeside Restaurant Group",
]
_FIRST = ["Joe", "Ana", "Sam", "Priya", "Lee", "Maria", "Tom", "Kim", "Raj", "Eva"]
_LAST = ["Doe", "Ortiz", "Nguyen", "Shah", "Kowalski", "Brown", "Okafor", "Smith", "Chen", "Novak"]
_STATUS_WEIGHTS = [
    ("order_created", 3), ("terms_selected", 8), ("order_placed", 34), ("order_confirmed", 43),
    ("order_canceled", 6), ("refund", 6),
]


def demo_order_id(n: int) -> str:
    """The id of the n-th demo order (1-based), e.g. ``BO-DEMO-000001``."""
    return f"BO-DEMO-{n:06d}"


def demo_orders(count: int, *, now: datetime, seed: int = 42) -> list[dict]:
    """``count`` orders whose ids, amounts and statuses depend only on ``seed`` and ``count``."""
    rng = random.Random(seed)
    statuses = [s for s, w in _STATUS_WEIGHTS for _ in range(w)]
    return [_demo_order(n, rng, rng.choice(statuses), now) for n in range(1, count + 1)]


def _money(rng: random.Random, low: int, high: int) -> Decimal:
    return (Decimal(rng.randint(low * 100, high * 100)) * CENT).quantize(CENT)


def _contact(rng: random.Random, company: str) -> dict:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return {
        "name": {"first": first, "last": last},
        "company_name": company,
        "address": {"line1": f"{rng.randint(10, 9999)} Main St", "line2": "", "city": "Austin", "state": "TX",
                    "zipcode": "78704", "country": "USA"},
        "phone_number": f"555{rng.randint(1000000, 9999999)}",
        "email": f"{first.lower()}.{last.lower()}@example.com",
    }


def _demo_order(n: int, rng: random.Random, status: str, now: datetime) -> dict:
    qty, unit = rng.randint(1, 40), _money(rng, 5, 900)
    cart = unit * qty
    tax = (cart * Decimal("0.0825")).quantize(CENT)
    shipping = Decimal(rng.choice([0, 15, 25, 50])).quantize(CENT)
    discount = (cart * Decimal(rng.choice([0, 0, 0, 5, 10])) / 100).quantize(CENT)
    company = rng.choice(_COMPANIES)
    created = now - timedelta(days=rng.randint(0, 30), minutes=rng.randint(0, 1440))
    contact = _contact(rng, company)
    order = {
        "backd_order_id": demo_order_id(n), "create_date": created, "status": status,
        "merchant_order_id": f"M-{100000 + n}", "merchant_order_status": "processing",
        "order_total": cart + tax + shipping - discount, "cart_amount": cart, "tax_amount": tax,
        "shipping_amount": shipping, "discount_amount": discount, "shipping": contact, "billing": dict(contact),
        "items": [{"display_name": "Wholesale item", "sku": f"SKU-{rng.randint(1000, 9999)}", "unit_price": unit, "qty": qty}],
        "refunds": [],
    }
    if status in ("order_confirmed", "refund") and (status == "refund" or rng.random() < 0.25):
        order["refunds"].append(_demo_refund(rng, order["order_total"], now, processed=status == "refund"))
    return order


def _demo_refund(rng: random.Random, total: Decimal, now: datetime, *, processed: bool) -> dict:
    hours_ago = rng.choice([200, 300]) if processed else rng.choice([1, 2, 5, 30, 80])
    submitted = now - timedelta(hours=hours_ago)
    amount = (total * Decimal(rng.choice([10, 25, 50, 100])) / 100).quantize(CENT)
    return {"amount": amount, "create_date": submitted, "status": "processed" if processed else "draft",
            "locked_at": refund_locked_at(submitted)}


_MERCHANT_STATUS = {"order_created": "created", "terms_selected": "terms selected", "order_placed": "pending",
                    "order_confirmed": "shipped", "order_canceled": "cancelled", "refund": "refunded"}
DEMO_COLUMN_MAP = {"Order #": "merchant_order_id", "Backd ID": "backd_order_id", "Status": "status",
                   "Total": "order_total", "Refunded": "refunded_amount"}
PLANTED_KINDS = ("missing_in_backd", "merchant_order_id_mismatch", "status_mismatch", "order_total_mismatch",
                 "refunded_amount_mismatch", "duplicate_in_ledger", "unverifiable")


def demo_ledger(orders: list[dict], *, seed: int = 7, per_kind: int = 3) -> tuple[list[dict], dict[str, list[str]]]:
    """A merchant ledger that agrees with ``orders`` except for ``per_kind`` planted discrepancies of each kind.

    Returns the ledger rows (merchant column names: ``Order #``, ``Backd ID``, ``Status``, ``Total``, ``Refunded``)
    and, per kind, the ``Order #`` of the rows planted. A ``0.01`` difference is planted too, which the default
    tolerance must not report.
    """
    rng = random.Random(seed)
    rows = [_ledger_row(o) for o in orders]
    order_ids = [o["backd_order_id"] for o in orders]
    planted: dict[str, list[str]] = {kind: [] for kind in PLANTED_KINDS}
    candidates = rng.sample(range(len(rows)), k=min(len(rows), per_kind * 6 + 1))
    pick = iter(candidates)
    for kind in ("merchant_order_id_mismatch", "order_total_mismatch", "unverifiable", "duplicate_in_ledger"):
        for _ in range(per_kind):
            i = next(pick)
            _plant(kind, rows, i, rng)
            planted[kind].append(rows[i]["Order #"])
    confirmed = [i for i, o in enumerate(orders) if o["status"] == "order_confirmed" and i not in candidates]
    for i in confirmed[:per_kind]:
        rows[i]["Refunded"] = str(Decimal(rows[i]["Refunded"]) + Decimal("25.00"))
        planted["refunded_amount_mismatch"].append(rows[i]["Order #"])
    placed = [i for i, o in enumerate(orders) if o["status"] == "order_placed" and i not in candidates]
    for i in placed[:per_kind]:
        rows[i]["Status"] = "cancelled"  # the merchant canceled; Backd was never told
        planted["status_mismatch"].append(rows[i]["Order #"])
    within_tolerance = next(pick, None)
    if within_tolerance is not None:
        rows[within_tolerance]["Total"] = str(Decimal(rows[within_tolerance]["Total"]) + Decimal("0.01"))
    for n in range(per_kind):
        unknown = f"BO-DEMO-9{n:05d}"
        assert unknown not in order_ids
        rows.append({"Order #": f"M-9{n:05d}", "Backd ID": unknown, "Status": "shipped", "Total": "100.00", "Refunded": "0.00"})
        planted["missing_in_backd"].append(f"M-9{n:05d}")
    return rows, planted


def _ledger_row(order: dict) -> dict:
    refunded = sum((r["amount"] for r in order["refunds"] if r["status"] != "declined"), Decimal("0"))
    return {"Order #": order["merchant_order_id"], "Backd ID": order["backd_order_id"],
            "Status": _MERCHANT_STATUS[order["status"]], "Total": f"{order['order_total']:.2f}", "Refunded": f"{refunded:.2f}"}


def _plant(kind: str, rows: list[dict], i: int, rng: random.Random) -> None:
    if kind == "merchant_order_id_mismatch":
        rows[i]["Order #"] = rows[i]["Order #"] + "-X"
    elif kind == "order_total_mismatch":
        rows[i]["Total"] = str(Decimal(rows[i]["Total"]) + Decimal(rng.choice(["0.02", "10.00", "-5.50"])))
    elif kind == "unverifiable":
        rows[i]["Backd ID"] = ""
    elif kind == "duplicate_in_ledger":
        rows.append(dict(rows[i]))
