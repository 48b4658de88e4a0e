"""The bulk operations as pure rules: the columns each takes, input validation, per-row planning and drift.

No network here. ``plan_*`` functions look at one input row and the order as Backd has it now and say
what a write would do: ``planned``, ``already_done`` or ``invalid`` (with the column at fault). The same
rule settles an ambiguous write: after reading the order back, ``already_done`` means it was applied.
:class:`OrderState` is what a row was planned against; :func:`describe_drift` says, in words, what changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Mapping

import pandas as pd

from .columns import MappedColumns, map_columns
from .errors import InputError
from .ids import check_backd_id, check_merchant_id, is_blank, normalize_id
from .locking import refund_locked_at
from .models import AMOUNT_FIELDS, Order, OrderStatus, RefundStatus, format_money
from .money import parse_amount

__all__ = ["OPERATIONS", "Operation", "OrderState", "RowInput", "Verdict", "columns_help", "describe_drift",
           "fill_from_backd", "map_input", "template_frame", "validate_frame"]

PLANNED, ALREADY_DONE, INVALID, DRIFTED = "planned", "already_done", "invalid", "drifted"
_COLUMN_ORDER = ("backd_order_id", "merchant_order_id", "refund_amount", *AMOUNT_FIELDS, "merchant_order_status")


@dataclass(frozen=True)
class OrderState:
    """What a row was planned against: the parts of an order a bulk write depends on.

    Execution compares it with a fresh read; any difference is drift and nothing is sent.
    """

    status: str
    merchant_order_id: str | None
    merchant_order_status: str | None
    order_total: Decimal
    cart_amount: Decimal
    tax_amount: Decimal
    shipping_amount: Decimal
    discount_amount: Decimal
    active_refund_amount: Decimal | None
    active_refund_status: str | None
    active_refund_locked_at: datetime | None
    refundable_amount: Decimal

    @classmethod
    def of(cls, order: Order) -> OrderState:
        """The state of ``order`` as Backd returned it.

        Examples
        --------
        >>> OrderState.of(Order.from_wire({"backd_order_id": "BO-1", "status": "order_confirmed", "order_total": 50})).refundable_amount
        Decimal('50.00')
        """
        active = order.active_refund
        return cls(order.status, order.merchant_order_id, order.merchant_order_status,
                   *(getattr(order, name) for name in AMOUNT_FIELDS),
                   active.amount if active else None, active.status if active else None,
                   active.locked_at if active else None, order.refundable_amount)

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(f.name for f in fields(OrderState))


_STATE_LABELS = {
    "status": "status", "merchant_order_id": "merchant_order_id", "merchant_order_status": "merchant_order_status",
    "order_total": "order_total", "cart_amount": "cart_amount", "tax_amount": "tax_amount",
    "shipping_amount": "shipping_amount", "discount_amount": "discount_amount", "active_refund_amount": "active refund",
    "active_refund_status": "active refund status", "active_refund_locked_at": "active refund lock",
    "refundable_amount": "refundable amount",
}


def describe_drift(planned: OrderState, now: OrderState) -> str | None:
    """What changed between the state a row was planned against and the order now; None if nothing did.

    Examples
    --------
    >>> before = OrderState.of(Order.from_wire({"backd_order_id": "BO-1", "status": "order_confirmed", "order_total": 50}))
    >>> after = OrderState.of(Order.from_wire({"backd_order_id": "BO-1", "status": "order_confirmed", "order_total": 50,
    ...     "refunds": [{"amount": 10, "status": "draft", "locked_at": "2026-04-14 17:00:00"}]}))
    >>> describe_drift(before, after)
    'active refund is now $10.00 (was none); active refund status is now draft (was none); active refund lock is now 2026-04-14 17:00 CDT (was none)'
    """
    changes = [f"{_STATE_LABELS[name]} is now {_state_text(getattr(now, name))} (was {_state_text(getattr(planned, name))})"
               for name in OrderState.names()
               if getattr(now, name) != getattr(planned, name) and name != "refundable_amount"]
    if not changes and now.refundable_amount != planned.refundable_amount:
        changes.append(f"refundable amount is now {_state_text(now.refundable_amount)} (was {_state_text(planned.refundable_amount)})")
    return "; ".join(changes) or None


def _state_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, Decimal):
        return format_money(value)
    if isinstance(value, datetime):
        return _when(value)
    return str(value)


@dataclass(frozen=True)
class Verdict:
    """The verdict on one row: its outcome, why, the input column at fault, the money, and (once known) the
    state the row was planned against and the status after executing."""

    outcome: str
    message: str
    column: str | None = None
    amount: Decimal | None = None
    locked_at: datetime | None = None
    state: OrderState | None = None
    status_after: str | None = None


@dataclass(frozen=True)
class RowInput:
    """One input row after validation: its position, index label, cleaned values, or why it is invalid."""

    position: int
    label: Any
    values: dict[str, Any]
    error: Verdict | None = None

    @property
    def backd_order_id(self) -> str:
        return str(self.values.get("backd_order_id") or "")


@dataclass(frozen=True)
class Operation:
    """A bulk operation: its client call, the columns it takes and the rule that plans a row."""

    name: str
    endpoint: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    amounts: tuple[str, ...] = ()
    plan: Callable[[dict, Order, datetime], Verdict] = field(repr=False, default=None)  # type: ignore[assignment]
    verb: str = ""
    past: str = ""
    fills_merchant_id: bool = False
    """A blank ``merchant_order_id`` is taken from Backd's record (and checked against it when given)."""
    needs_merchant_id: bool = False
    """The endpoint requires ``merchant_order_id``: blank in the file and absent from Backd's record is invalid."""

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns in one fixed order (it is part of every plan_id), whichever are required."""
        return tuple(sorted(self.required + self.optional, key=_COLUMN_ORDER.index))

    def request(self, values: dict) -> dict:
        """The call's arguments for this row (what is journaled and sent)."""
        return {k: v for k, v in values.items() if k in self.columns and v is not None}


# -- validation ------------------------------------------------------------------------------------------------
def map_input(frame: pd.DataFrame, operation: Operation, *, column_map: Mapping[str, str] | str | None = None) -> MappedColumns:
    """The operation's columns taken from ``frame`` by name, synonym or ``column_map`` (see :mod:`backd_ops.columns`).

    Examples
    --------
    >>> map_input(pd.DataFrame({"Order ID": ["BO-1"], "Amount": ["5"]}), OPERATIONS["refund"]).describe()
    'Order ID → backd_order_id, Amount → refund_amount'
    """
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"expected a DataFrame (or a CSV/XLSX/Parquet path), got {type(frame).__name__}")
    return map_columns(frame, operation.required, operation.optional, column_map=column_map, what=operation.name)


def validate_frame(frame: pd.DataFrame, operation: Operation, *, decimal: str = ".",
                   column_map: Mapping[str, str] | str | None = None) -> list[RowInput]:
    """Check columns (whole-frame error) and every cell (per-row ``invalid``), including duplicate orders.

    Examples
    --------
    >>> rows = validate_frame(pd.DataFrame({"backd_order_id": ["BO-1", "BO-1"]}), OPERATIONS["cancel"])
    >>> rows[1].error.message
    'row 1, column backd_order_id: BO-1 also appears in row 0; one action per order per run'
    """
    mapped = map_input(frame, operation, column_map=column_map).frame
    records = mapped.to_dict("records")
    rows = [_validate_row(pos, label, record, operation, decimal) for pos, (label, record) in enumerate(zip(mapped.index, records))]
    return _flag_duplicates(rows)


def columns_help(operation: Operation) -> str:
    """The columns an operation takes, for ``--help`` and docstrings.

    Examples
    --------
    >>> columns_help(OPERATIONS["refund"])
    'required: backd_order_id, refund_amount; optional: merchant_order_id (blank: taken from Backd, checked when given)'
    """
    optional = [f"{c} (blank: taken from Backd, checked when given)" if c == "merchant_order_id" and operation.fills_merchant_id else c
                for c in operation.columns if c in operation.optional]
    return f"required: {', '.join(operation.required)}" + (f"; optional: {', '.join(optional)}" if optional else "")


def _validate_row(position: int, label: Any, record: dict, operation: Operation, decimal: str) -> RowInput:
    values: dict[str, Any] = {}
    for column in operation.columns:
        raw = record.get(column)
        try:
            values[column] = _clean_cell(column, raw, operation, decimal)
        except ValueError as exc:
            verdict = Verdict(INVALID, f"row {label}, column {column}: {exc}", column)
            return RowInput(position, label, {**values, column: _display(raw)}, verdict)
    if operation.name == "update" and not any(values.get(c) is not None for c in _UPDATABLE):
        verdict = Verdict(INVALID, f"row {label}: nothing to update; fill at least one of {', '.join(_UPDATABLE)}")
        return RowInput(position, label, values, verdict)
    return RowInput(position, label, values)


def _clean_cell(column: str, raw: Any, operation: Operation, decimal: str) -> Any:
    blank = is_blank(raw)
    if column in operation.amounts:
        if blank:
            if column in operation.required:
                raise ValueError("is missing")
            return None
        amount = parse_amount(raw, decimal=decimal)
        if column == "refund_amount" and amount <= 0:
            raise ValueError(f"{amount} must be greater than 0")
        return amount
    if blank:
        if column in operation.required:
            raise ValueError("is blank")
        return None
    text = normalize_id(raw) if column.endswith("_id") else str(raw).strip()
    if column == "backd_order_id":
        return check_backd_id(text)
    if column == "merchant_order_id":
        return check_merchant_id(text)
    return text


def _flag_duplicates(rows: list[RowInput]) -> list[RowInput]:
    """Every row whose order appears in another row is invalid (even if the other row is invalid itself)."""
    seen: dict[str, list[RowInput]] = {}
    for row in rows:
        if row.backd_order_id:
            seen.setdefault(row.backd_order_id, []).append(row)
    flagged = {}
    for order_id, group in seen.items():
        for row in group if len(group) > 1 else ():
            if row.error is not None:
                continue
            others = ", ".join(str(o.label) for o in group if o is not row)
            message = f"row {row.label}, column backd_order_id: {order_id} also appears in row {others}; one action per order per run"
            flagged[row.position] = RowInput(row.position, row.label, row.values, Verdict(INVALID, message, "backd_order_id"))
    return [flagged.get(row.position, row) for row in rows]


def _display(value: Any) -> str:
    text = "" if is_blank(value) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- planning ----------------------------------------------------------------------------------------------------
def _wrong_status(order: Order, needed: str, label: Any, action: str) -> Verdict:
    return Verdict(INVALID, f"row {label}: {action} needs status {needed}; {order.backd_order_id} is {order.status}", "backd_order_id")


def _merchant_mismatch(values: dict, order: Order, label: Any) -> Verdict | None:
    given = values.get("merchant_order_id")
    if given is not None and order.merchant_order_id is not None and given != order.merchant_order_id:
        return Verdict(INVALID, f"row {label}, column merchant_order_id: {given!r} but Backd has {order.merchant_order_id!r}", "merchant_order_id")
    return None


def plan_refund(values: dict, order: Order, now: datetime, label: Any = "") -> Verdict:
    amount: Decimal = values["refund_amount"]
    active = order.active_refund
    processed = next((r for r in reversed(order.refunds) if r.status == RefundStatus.PROCESSED and r.amount == amount), None)
    if active is not None and active.amount == amount:
        return Verdict(ALREADY_DONE, f"an active {active.status} refund of {format_money(amount)} exists", amount=amount, locked_at=active.locked_at)
    if processed is not None:  # whatever the order's status: Backd may not have moved it to `refund` yet
        return Verdict(ALREADY_DONE, f"a processed refund of {format_money(amount)} exists", amount=amount, locked_at=processed.locked_at)
    if order.status != OrderStatus.CONFIRMED:
        return _wrong_status(order, OrderStatus.CONFIRMED, label, "refund")
    if (mismatch := _merchant_mismatch(values, order, label)) is not None:
        return mismatch
    if active is not None and active.is_locked(now):
        return Verdict(INVALID, f"row {label}: the active refund of {format_money(active.amount)} locked at {_when(active.locked_at)} and cannot be replaced", "refund_amount")
    if amount > order.refundable_amount:
        return Verdict(INVALID, f"row {label}, column refund_amount: {format_money(amount)} exceeds the refundable {format_money(order.refundable_amount)}", "refund_amount")
    locks = refund_locked_at(now)
    if active is not None:
        return Verdict(PLANNED, f"refund {format_money(amount)}; replaces the active {active.status} refund of {format_money(active.amount)}", amount=amount, locked_at=locks)
    return Verdict(PLANNED, f"refund {format_money(amount)}", amount=amount, locked_at=locks)


def plan_cancel(values: dict, order: Order, now: datetime, label: Any = "") -> Verdict:
    if order.is_canceled:
        return Verdict(ALREADY_DONE, "already canceled", amount=order.order_total)
    if order.status != OrderStatus.PLACED:
        return _wrong_status(order, OrderStatus.PLACED, label, "cancel")
    return Verdict(PLANNED, f"cancel {format_money(order.order_total)}", amount=order.order_total)


def plan_confirm(values: dict, order: Order, now: datetime, label: Any = "") -> Verdict:
    if (mismatch := _merchant_mismatch(values, order, label)) is not None:
        return mismatch
    if order.status in (OrderStatus.CONFIRMED, OrderStatus.REFUND):
        return Verdict(ALREADY_DONE, f"already confirmed ({order.status})", amount=order.order_total)
    if order.status != OrderStatus.PLACED:
        return _wrong_status(order, OrderStatus.PLACED, label, "confirm")
    return Verdict(PLANNED, f"confirm {format_money(order.order_total)}", amount=order.order_total)


def plan_place(values: dict, order: Order, now: datetime, label: Any = "") -> Verdict:
    if order.status == OrderStatus.PLACED and order.merchant_order_id == values["merchant_order_id"]:
        return Verdict(ALREADY_DONE, "already placed with this merchant_order_id", amount=order.order_total)
    if order.status != OrderStatus.TERMS_SELECTED:
        return _wrong_status(order, OrderStatus.TERMS_SELECTED, label, "order_placed")
    return Verdict(PLANNED, f"place as {values['merchant_order_id']}", amount=order.order_total)


def plan_delete_refund(values: dict, order: Order, now: datetime, label: Any = "") -> Verdict:
    active = order.active_refund
    if active is None:
        if order.refunds and order.refunds[-1].status == RefundStatus.DECLINED and order.status == OrderStatus.CONFIRMED:
            return Verdict(ALREADY_DONE, "no active refund request; the latest is declined", amount=order.refunds[-1].amount)
        return Verdict(INVALID, f"row {label}: {order.backd_order_id} has no active refund request to delete", "backd_order_id")
    if order.status != OrderStatus.CONFIRMED:
        return _wrong_status(order, OrderStatus.CONFIRMED, label, "delete_refund")
    if (mismatch := _merchant_mismatch(values, order, label)) is not None:
        return mismatch
    if active.is_locked(now):
        return Verdict(INVALID, f"row {label}: the active refund of {format_money(active.amount)} locked at {_when(active.locked_at)}", "backd_order_id")
    return Verdict(PLANNED, f"decline the active {active.status} refund of {format_money(active.amount)}", amount=active.amount, locked_at=active.locked_at)


_UPDATABLE = (*AMOUNT_FIELDS, "merchant_order_status")


def plan_update(values: dict, order: Order, now: datetime, label: Any = "") -> Verdict:
    if (mismatch := _merchant_mismatch(values, order, label)) is not None:
        return mismatch
    changes = [f"{c} {_show(getattr(order, c))} → {_show(values[c])}" for c in _UPDATABLE
               if values.get(c) is not None and getattr(order, c) != values[c]]
    amount = values.get("order_total") or order.order_total
    if not changes:
        return Verdict(ALREADY_DONE, "Backd already has these values", amount=amount)
    if order.status != OrderStatus.PLACED:
        return _wrong_status(order, OrderStatus.PLACED, label, "update_order")
    return Verdict(PLANNED, "; ".join(changes), amount=amount)


def plan_undo_refund(values: dict, order: Order, now: datetime, label: Any = "", *, amount_set: Decimal,
                     set_by: str) -> Verdict:
    """Undo a refund run ``set_by`` made: only while it is still the active, unlocked request of ``amount_set``.

    Examples
    --------
    >>> order = Order.from_wire({"backd_order_id": "BO-1", "status": "order_confirmed", "order_total": 50, "merchant_order_id": "M-1"})
    >>> plan_undo_refund({"backd_order_id": "BO-1", "merchant_order_id": "M-1"}, order, datetime.now(), amount_set=Decimal("5.00"),
    ...                  set_by="run-1").message
    'row : no active refund request: the $5.00 refund run run-1 set is no longer active'
    """
    active = order.active_refund
    if active is None:
        return Verdict(INVALID, f"row {label}: no active refund request: the {format_money(amount_set)} refund run {set_by} set is no longer active", "backd_order_id")
    if active.amount != amount_set:
        return Verdict(INVALID, f"row {label}: the active refund is {format_money(active.amount)}, not the {format_money(amount_set)} run {set_by} set: "
                       "someone changed it since; not undone", "backd_order_id")
    verdict = plan_delete_refund(values, order, now, label)
    if verdict.outcome == PLANNED:
        return Verdict(PLANNED, f"undo run {set_by}: decline its {active.status} refund of {format_money(active.amount)}",
                       amount=active.amount, locked_at=active.locked_at)
    return verdict


_PAST = (
    ("undo run ", "undid run "), ("refund ", "refunded "), ("cancel ", "canceled "), ("confirm ", "confirmed "),
    ("place as ", "placed as "), ("decline the active ", "declined the active "),
)


def done_message(operation: str, planned: str) -> str:
    """A plan row's message in the past tense, once Backd has applied it.

    Examples
    --------
    >>> done_message("refund", "refund $5.00; replaces the active draft refund of $9.00")
    'refunded $5.00; the active draft refund of $9.00 was declined'
    >>> done_message("update", "order_total $10.00 → $9.00")
    'updated: order_total $10.00 → $9.00'
    """
    text = re.sub(r"; replaces the active (\w+) refund of (\S+)$", r"; the active \1 refund of \2 was declined", planned)
    text = text.replace(": decline its ", ": declined its ")
    for now, past in _PAST:
        if text.startswith(now):
            return past + text[len(now):]
    return f"updated: {text}" if operation == "update" else f"done: {text}"


def _show(value: Any) -> str:
    return format_money(value) if isinstance(value, Decimal) else repr(value)


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M %Z")


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("refund", "refund", ("backd_order_id", "refund_amount"), ("merchant_order_id",), amounts=("refund_amount",),
                  plan=plan_refund, verb="Refund", past="Refunded", fills_merchant_id=True, needs_merchant_id=True),
        Operation("cancel", "cancel_order", ("backd_order_id",), plan=plan_cancel, verb="Cancel", past="Canceled"),
        Operation("confirm", "confirm_order", ("backd_order_id",), ("merchant_order_id",), plan=plan_confirm, verb="Confirm",
                  past="Confirmed", fills_merchant_id=True),
        Operation("delete_refund", "delete_refund", ("backd_order_id",), ("merchant_order_id",), plan=plan_delete_refund,
                  verb="Decline the refund on", past="Declined the refund on", fills_merchant_id=True, needs_merchant_id=True),
        Operation("update", "update_order", ("backd_order_id",), ("merchant_order_id", *_UPDATABLE), amounts=AMOUNT_FIELDS,
                  plan=plan_update, verb="Update", past="Updated", fills_merchant_id=True, needs_merchant_id=True),
        Operation("place", "order_placed", ("backd_order_id", "merchant_order_id"), plan=plan_place, verb="Place", past="Placed"),
    )
}


_EXAMPLE = {
    "backd_order_id": ("BO-20260416-0001", "BO-20260416-0002"), "merchant_order_id": ("JKLMO4321", "JKLMO4322"),
    "refund_amount": ("25.00", "1,250.50"), "order_total": ("9150.00", ""), "cart_amount": ("9000.00", ""),
    "tax_amount": ("100.00", ""), "shipping_amount": ("50.00", ""), "discount_amount": ("0.00", ""),
    "merchant_order_status": ("shipped", "processing"),
}


def template_frame(operation: Operation) -> pd.DataFrame:
    """An example input for ``operation``: every column filled in the first row, only what is needed in the second.

    Examples
    --------
    >>> template_frame(OPERATIONS["refund"]).to_dict("records")[1]
    {'backd_order_id': 'BO-20260416-0002', 'merchant_order_id': '', 'refund_amount': '1,250.50'}
    """
    needed = set(operation.required) | ({"merchant_order_status"} if operation.name == "update" else set())
    return pd.DataFrame({c: [_EXAMPLE[c][0], _EXAMPLE[c][1] if c in needed else ""] for c in operation.columns})


def fill_from_backd(operation: Operation, row: RowInput, order: Order) -> RowInput:
    """The row with a blank ``merchant_order_id`` taken from Backd's record, so the plan (and its hash) carries what is sent.

    A given ``merchant_order_id`` is left as it is (the planning rule checks it against Backd's).

    Examples
    --------
    >>> row = RowInput(0, 2, {"backd_order_id": "BO-1", "merchant_order_id": None, "refund_amount": Decimal("5.00")})
    >>> order = Order.from_wire({"backd_order_id": "BO-1", "merchant_order_id": "M-1", "status": "order_confirmed", "order_total": 9})
    >>> fill_from_backd(OPERATIONS["refund"], row, order).values["merchant_order_id"]
    'M-1'
    """
    if row.error is not None or not operation.fills_merchant_id or row.values.get("merchant_order_id") is not None:
        return row
    if order.merchant_order_id:
        return replace(row, values={**row.values, "merchant_order_id": order.merchant_order_id})
    if operation.needs_merchant_id:
        verdict = Verdict(INVALID, f"row {row.label}, column merchant_order_id: is blank, and Backd's order "
                          f"{order.backd_order_id} has none to use; fill it in", "merchant_order_id")
        return replace(row, error=verdict)
    return row
