"""Backd's data as Python values: order and refund records, status strings, exact money and timestamps.

Amounts are :class:`decimal.Decimal` with two places from the moment they leave the wire; a float never
touches a cent. Amounts typed by people (files, ledgers) are parsed in :mod:`backd_ops.money`. Timestamps without an offset are read as America/Chicago wall time, the clock Backd's
refund-locking rule is stated in (see ``docs/sandbox.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .money import CENT, parse_amount

__all__ = [
    "AMOUNT_FIELDS",
    "BACKD_TZ",
    "MONEY_DTYPE",
    "CENT",
    "cents_to_money",
    "Order",
    "OrderStatus",
    "Refund",
    "RefundStatus",
    "format_money",
    "parse_amount",
    "parse_timestamp",
]

BACKD_TZ = ZoneInfo("America/Chicago")
MONEY_DTYPE = pd.ArrowDtype(pa.decimal128(18, 2))
"""Exact two-place money column: sums and comparisons never drift."""

AMOUNT_FIELDS = ("order_total", "cart_amount", "tax_amount", "shipping_amount", "discount_amount")


class OrderStatus(StrEnum):
    """Order statuses. ``order_created`` and ``order_canceled`` are our choices where the docs are silent."""

    CREATED = "order_created"
    TERMS_SELECTED = "terms_selected"
    PLACED = "order_placed"
    CONFIRMED = "order_confirmed"
    CANCELED = "order_canceled"
    REFUND = "refund"


class RefundStatus(StrEnum):
    """Refund request states: ``draft``/``approved`` are active; ``declined`` replaced or deleted."""

    DRAFT = "draft"
    APPROVED = "approved"
    DECLINED = "declined"
    PROCESSED = "processed"


ACTIVE_REFUND_STATUSES = frozenset({RefundStatus.DRAFT.value, RefundStatus.APPROVED.value})


def _wire_amount(value: Any) -> Decimal:
    """An amount as Backd sent it; tolerant of ints, floats and strings, never of garbage."""
    if isinstance(value, Decimal):
        return value.quantize(CENT, rounding=ROUND_HALF_UP)
    if value is None:
        return Decimal("0.00")
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def cents_to_money(cents: Any) -> pd.arrays.ArrowExtensionArray:
    """Whole cents (ints, or floats holding whole numbers; NaN/None missing) as an exact money array.

    Examples
    --------
    >>> cents_to_money([123450, None, -5]).tolist()
    [Decimal('1234.50'), None, Decimal('-0.05')]
    """
    ints = pa.array(pd.array(cents, dtype="Int64"), type=pa.int64())
    exact = pc.multiply(ints.cast(pa.decimal128(19, 0)), pa.scalar(CENT, pa.decimal128(3, 2)))
    return pd.array(exact.cast(pa.decimal128(18, 2)), dtype=MONEY_DTYPE)


def format_money(amount: Decimal | None) -> str:
    """Amount as an analyst reads it.

    Examples
    --------
    >>> format_money(Decimal("4567.8"))
    '$4,567.80'
    """
    if amount is None:
        return "—"
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}"


def parse_timestamp(value: Any) -> datetime | None:
    """Parse Backd's timestamps leniently into an aware datetime (naive → America/Chicago).

    Examples
    --------
    >>> parse_timestamp("2026-04-16 10:30:00").isoformat()
    '2026-04-16T10:30:00-05:00'
    >>> parse_timestamp("2026-04-16T15:30:00Z").isoformat()
    '2026-04-16T15:30:00+00:00'
    """
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            return None
    return parsed.replace(tzinfo=BACKD_TZ) if parsed.tzinfo is None else parsed


@dataclass(frozen=True, slots=True)
class Refund:
    """One refund request on an order."""

    amount: Decimal
    status: str
    create_date: datetime | None = None
    locked_at: datetime | None = None

    @property
    def is_active(self) -> bool:
        """Draft or approved: the one request that may still be replaced or deleted (until locked)."""
        return self.status in ACTIVE_REFUND_STATUSES

    def is_locked(self, now: datetime) -> bool:
        """Whether the lock deadline has passed at ``now`` (aware datetime)."""
        return self.locked_at is not None and now >= self.locked_at

    @classmethod
    def from_wire(cls, raw: dict) -> Refund:
        return cls(
            amount=_wire_amount(raw.get("amount")),
            status=str(raw.get("status") or ""),
            create_date=parse_timestamp(raw.get("create_date")),
            locked_at=parse_timestamp(raw.get("locked_at")),
        )


@dataclass(frozen=True, slots=True)
class Order:
    """An order as Backd returns it (the envelope's ``data``), with exact amounts.

    Examples
    --------
    >>> o = Order.from_wire({"backd_order_id": "BO-1", "status": "order_confirmed", "order_total": 9150})
    >>> o.order_total, o.refundable_amount
    (Decimal('9150.00'), Decimal('9150.00'))
    """

    backd_order_id: str
    status: str
    merchant_order_id: str | None = None
    merchant_order_status: str | None = None
    create_date: datetime | None = None
    order_total: Decimal = Decimal("0.00")
    cart_amount: Decimal = Decimal("0.00")
    tax_amount: Decimal = Decimal("0.00")
    shipping_amount: Decimal = Decimal("0.00")
    discount_amount: Decimal = Decimal("0.00")
    refunds: tuple[Refund, ...] = ()
    items: tuple[dict, ...] = ()
    shipping: dict | None = None
    billing: dict | None = None
    customer_url: str | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_wire(cls, data: dict, *, refunds: list | None = None) -> Order:
        """Build from the envelope's ``data``; ``refunds`` may come from beside ``data`` instead."""
        raw_refunds = data.get("refunds") if data.get("refunds") is not None else refunds
        return cls(
            backd_order_id=str(data.get("backd_order_id") or ""),
            status=str(data.get("status") or ""),
            merchant_order_id=data.get("merchant_order_id"),
            merchant_order_status=data.get("merchant_order_status"),
            create_date=parse_timestamp(data.get("create_date")),
            **{name: _wire_amount(data.get(name)) for name in AMOUNT_FIELDS},
            refunds=tuple(Refund.from_wire(r) for r in (raw_refunds or [])),
            items=tuple(data.get("items") or ()),
            shipping=data.get("shipping"),
            billing=data.get("billing"),
            customer_url=data.get("customer_url"),
            raw=data,
        )

    @property
    def is_canceled(self) -> bool:
        """Any status that spells cancel (the exact string is undocumented)."""
        return "cancel" in self.status.lower()

    @property
    def active_refund(self) -> Refund | None:
        """The one draft/approved refund request, if any."""
        return next((r for r in reversed(self.refunds) if r.is_active), None)

    @property
    def refunded_amount(self) -> Decimal:
        """Sum of refund requests that are not declined."""
        return sum((r.amount for r in self.refunds if r.status != RefundStatus.DECLINED), Decimal("0.00"))

    @property
    def refundable_amount(self) -> Decimal:
        """What a new refund request may still ask for, if it replaces the active unlocked one."""
        active = self.active_refund
        held = self.refunded_amount - (active.amount if active else Decimal("0.00"))
        return self.order_total - held
