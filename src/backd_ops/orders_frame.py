"""Orders as DataFrames: one flat row per order, and tidy frames of their refunds and items."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd

from .errors import BackdError
from .locking import CHICAGO
from .models import AMOUNT_FIELDS, MONEY_DTYPE, Order

__all__ = ["ORDER_COLUMNS", "OrderBatch"]

ORDER_COLUMNS = (
    "backd_order_id", "merchant_order_id", "status", "merchant_order_status", *AMOUNT_FIELDS, "create_date",
    "company_name", "shipping_company_name", "refunded_amount", "refund_count", "active_refund_amount",
    "active_refund_status", "active_refund_locked_at", "error",
)
_MONEY = (*AMOUNT_FIELDS, "refunded_amount", "active_refund_amount")
_TIMES = ("create_date", "active_refund_locked_at")


@dataclass(frozen=True)
class OrderBatch:
    """What :func:`~backd_ops.bulk.fetch_orders` read: each requested id → its ``Order`` or the error."""

    requested: list[str]
    orders: dict[str, Order | BackdError]

    def __repr__(self) -> str:
        ok = sum(isinstance(o, Order) for o in self.orders.values())
        return f"OrderBatch(requested={len(self.requested)}, found={ok}, failed={len(self.orders) - ok})"

    def frame(self) -> pd.DataFrame:
        """One row per requested id (input order, duplicates kept); ids that failed carry ``error``."""
        records = [_flat(order_id, self.orders.get(order_id)) for order_id in self.requested]
        return _typed(pd.DataFrame.from_records(records, columns=list(ORDER_COLUMNS)))

    def refunds(self) -> pd.DataFrame:
        """Every refund request, one row each: ``backd_order_id``, ``amount``, ``status``, dates, ``is_active``."""
        records = [
            {"backd_order_id": o.backd_order_id, "amount": r.amount, "status": r.status, "create_date": r.create_date,
             "locked_at": r.locked_at, "is_active": r.is_active}
            for o in self._found() for r in o.refunds
        ]
        frame = pd.DataFrame.from_records(records, columns=["backd_order_id", "amount", "status", "create_date", "locked_at", "is_active"])
        frame["amount"] = pd.array(frame["amount"], dtype=MONEY_DTYPE)
        for column in ("create_date", "locked_at"):
            frame[column] = _aware(frame[column])
        return frame.astype({"backd_order_id": "string", "status": "string", "is_active": "boolean"})

    def items(self) -> pd.DataFrame:
        """Every line item, one row each, with ``line_total = unit_price × qty``."""
        records = [{"backd_order_id": o.backd_order_id, **item} for o in self._found() for item in o.items]
        frame = pd.DataFrame.from_records(records)
        if frame.empty:
            return pd.DataFrame(columns=["backd_order_id", "display_name", "sku", "unit_price", "qty", "line_total"])
        frame["unit_price"] = pd.array([_dec(v) for v in frame["unit_price"]], dtype=MONEY_DTYPE)
        frame["qty"] = pd.to_numeric(frame["qty"]).astype("Int64")
        frame["line_total"] = pd.array([p * q if p is not None and q is not pd.NA else None
                                        for p, q in zip(frame["unit_price"].astype(object), frame["qty"])], dtype=MONEY_DTYPE)
        return frame

    def _found(self) -> list[Order]:
        return [o for o in self.orders.values() if isinstance(o, Order)]


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _flat(order_id: str, order: Order | BackdError | None) -> dict:
    if not isinstance(order, Order):
        return {"backd_order_id": order_id, "error": _error_text(order)}
    active = order.active_refund
    return {
        "backd_order_id": order.backd_order_id or order_id,
        "merchant_order_id": order.merchant_order_id,
        "status": order.status,
        "merchant_order_status": order.merchant_order_status,
        **{name: getattr(order, name) for name in AMOUNT_FIELDS},
        "create_date": order.create_date,
        "company_name": (order.billing or {}).get("company_name"),
        "shipping_company_name": (order.shipping or {}).get("company_name"),
        "refunded_amount": order.refunded_amount,
        "refund_count": len(order.refunds),
        "active_refund_amount": active.amount if active else None,
        "active_refund_status": active.status if active else None,
        "active_refund_locked_at": active.locked_at if active else None,
        "error": None,
    }


def _error_text(error: BackdError | None) -> str:
    if error is None:
        return "blank id"
    return f"{type(error).__name__}: {error.message}"


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    for column in _MONEY:
        frame[column] = pd.array(frame[column].astype(object).where(frame[column].notna(), None), dtype=MONEY_DTYPE)
    for column in _TIMES:
        frame[column] = _aware(frame[column])
    frame["refund_count"] = frame["refund_count"].astype("Int64")
    text = [c for c in ORDER_COLUMNS if c not in _MONEY and c not in _TIMES and c != "refund_count"]
    return frame.astype({c: "string" for c in text})


def _aware(column: pd.Series) -> pd.Series:
    """Mixed-offset datetimes (CST/CDT) as one Chicago-time column."""
    return pd.to_datetime(column.astype(object), utc=True).dt.tz_convert(CHICAGO)
