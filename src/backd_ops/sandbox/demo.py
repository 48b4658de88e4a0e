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
