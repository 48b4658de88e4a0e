"""Undo before the lock: a plan that declines the refunds a run created, while they are still active and unlocked.

``undo_run`` reads the run's rows from the journal and each order from Backd, and returns an ordinary plan
(operation ``delete_refund``): executed through :func:`~backd_ops.execution.execute_plan` like any other,
re-checked for drift, journaled. Refunds that cannot be undone any more are listed with the reason.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd

from .client import BackdClient
from .errors import InputError, PlanAccountError
from .journal import Journal
from .locking import CHICAGO
from .models import Order, format_money
from .operations import INVALID, OPERATIONS, PLANNED, OrderState, RowInput, Verdict, plan_undo_refund
from .plans import build_plan, new_info
from .progress import ProgressLike
from .reads import fetch_orders

__all__ = ["undo_run"]


def undo_run(client: BackdClient, run_id: str, *, journal: Journal | str | Path | None = None, max_workers: int | None = None,
             progress: ProgressLike = True, now: datetime | None = None) -> pd.DataFrame:
    """A ``delete_refund`` plan for the refunds run ``run_id`` created that are still active, unlocked and unchanged.

    Examples
    --------
    >>> undo = backd_ops.undo_run(client, "20261129T150102Z-3f2a9c1d")      # doctest: +SKIP
    >>> undo.backd.sentence()                                                # doctest: +SKIP
    'Decline the refund on 3 orders, $60.00. Not sent: 1 invalid.'
    >>> backd_ops.execute_plan(client, undo)                                  # doctest: +SKIP
    """
    book = Journal.existing(journal)
    if book is None:
        raise InputError(f"no journal at {journal or 'the default path'}: nothing to undo")
    try:
        rows, amounts = _created_refunds(book, client, run_id)
    finally:
        if book is not journal:
            book.close()
    batch = fetch_orders(client, [r.backd_order_id for r in rows], max_workers=max_workers, progress=progress)
    moment = (now or datetime.now(CHICAGO)).astimezone(CHICAGO)
    verdicts = [_undo_verdict(row, batch.orders.get(row.backd_order_id), amounts[row.position], run_id, moment) for row in rows]
    info = new_info(client, "delete_refund", moment, source=f"undo of run {run_id}", undo_of=run_id)
    return build_plan(OPERATIONS["delete_refund"], rows, verdicts, info)


def _created_refunds(book: Journal, client: BackdClient, run_id: str) -> tuple[list[RowInput], dict[int, Decimal]]:
    """The rows of ``run_id`` that created a refund, as delete_refund inputs, and the amount each set."""
    run = book.run(run_id)
    if run is None:
        raise InputError(f"no run {run_id!r} in the journal {book.path}")
    if run["account"] != client.account.key:
        raise PlanAccountError(f"run {run_id} was made on {run['environment']} at {run['base_url']} with key …{run['public_key'][-4:]}; "
                               f"this client is {client.account.describe()}")
    if run["operation"] != "refund":
        raise InputError(f"run {run_id} was a {run['operation']} run; only refunds can be undone (before their 17:00 lock)")
    actions = book.actions(run_id)
    created = actions[actions["outcome"] == "done"]
    rows, amounts = [], {}
    for position, action in enumerate(created.itertuples()):
        request = json.loads(action.request or "{}")
        values = {"backd_order_id": action.backd_order_id, "merchant_order_id": request.get("merchant_order_id")}
        rows.append(RowInput(position, _label(action.row_label), values))
        amounts[position] = (Decimal(action.amount), _decimal(getattr(action, "replaced_amount", None)))
    return rows, amounts


def _decimal(text: str | None) -> Decimal | None:
    return Decimal(text) if isinstance(text, str) and text else None


def _label(text: str | None) -> object:
    return int(text) if text is not None and text.lstrip("-").isdigit() else text


def _undo_verdict(row: RowInput, read: Order | Exception | None, amounts: tuple[Decimal, Decimal | None], run_id: str,
                  now: datetime) -> Verdict:
    if not isinstance(read, Order):
        return Verdict(INVALID, f"row {row.label}: could not read the order ({read}); not undone", "backd_order_id")
    amount, replaced = amounts
    verdict = plan_undo_refund(row.values, read, now, row.label, amount_set=amount, set_by=run_id)
    message = verdict.message
    if verdict.outcome == PLANNED and replaced is not None:
        message += f"; the {format_money(replaced)} request it replaced stays declined (refund it again if it should stand)"
    return Verdict(verdict.outcome, message, verdict.column, verdict.amount, verdict.locked_at, OrderState.of(read))
