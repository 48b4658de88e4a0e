"""Undo before the lock: a plan that declines the refunds a run created, while they are still active and unlocked.

``undo_run`` reads the run's rows from the journal and each order from Backd, and returns an ordinary plan
(operation ``delete_refund``): executed through :func:`~backd_ops.execution.execute_plan` like any other,
re-checked for drift, journaled. Refunds that cannot be undone any more are listed with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from .client import BackdClient
from .errors import InputError, PlanAccountError
from .display import chicago_text
from .journal import IN_DOUBT_OUTCOMES, Journal
from .locking import CHICAGO
from .models import Order, format_money
from .operations import INVALID, OPERATIONS, PLANNED, OrderState, RowInput, Verdict, plan_undo_refund
from .plans import build_plan, new_info, written_since
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
        rows, created = _created_refunds(book, client, run_id)
    finally:
        if book is not journal:
            book.close()
    batch = fetch_orders(client, [r.backd_order_id for r in rows], max_workers=max_workers, progress=progress)
    moment = (now or datetime.now(CHICAGO)).astimezone(CHICAGO)
    verdicts = [_undo_verdict(row, batch.orders.get(row.backd_order_id), created[row.position], run_id, moment) for row in rows]
    info = new_info(client, "delete_refund", moment, source=f"undo of run {run_id}", undo_of=run_id)
    return build_plan(OPERATIONS["delete_refund"], rows, verdicts, info)


def _created_refunds(book: Journal, client: BackdClient, run_id: str) -> tuple[list[RowInput], dict[int, _Created]]:
    """The rows of ``run_id`` that created a refund, as delete_refund inputs, and what each set; with the rows it
    sent and never recorded (listed, not undone)."""
    run = book.run(run_id)
    if run is None:
        raise InputError(f"no run {run_id!r} in the journal {book.path}")
    if run["account"] != client.account.key:
        raise PlanAccountError(f"run {run_id} was made on {run['environment']} at {run['base_url']} with key …{run['public_key'][-4:]}; "
                               f"this client is {client.account.describe()}")
    if run["operation"] != "refund":
        raise InputError(f"run {run_id} was a {run['operation']} run; only refunds can be undone (before their 17:00 lock)")
    actions = book.actions(run_id)
    # Sent with no recorded result (a kill before its outcome was written, or uncertain): listed with what Backd shows.
    in_doubt = actions["intent_at"].notna() & (actions["outcome"].isna() | actions["outcome"].isin(IN_DOUBT_OUTCOMES))
    sent = actions[actions["outcome"].eq("done") | in_doubt]
    later = _later_refunds(book, client, run_id, sent)
    rows, created = [], {}
    for position, action in enumerate(sent.itertuples()):
        request = json.loads(action.request or "{}")
        values = {"backd_order_id": action.backd_order_id, "merchant_order_id": request.get("merchant_order_id")}
        rows.append(RowInput(position, _label(action.row_label), values))
        created[position] = _Created(Decimal(action.amount), _decimal(getattr(action, "replaced_amount", None)),
                                     in_doubt=action.outcome != "done", sent_at=_aware(action.intent_at),
                                     refunded_again_by=later.get(action.backd_order_id))
    return rows, created


@dataclass(frozen=True)
class _Created:
    amount: Decimal
    replaced: Decimal | None
    in_doubt: bool  # the run sent it but never recorded how it ended
    sent_at: datetime | None
    refunded_again_by: str | None  # a later run of ours that sent a refund on the order


def _in_doubt_text(row: RowInput, read: Order, created: _Created, run_id: str) -> str:
    """Listed, never declined automatically: Backd has no request ids, so an active request of the same amount may
    be this run's or anyone else's (a later run's, a dashboard's) and declining it would cancel a refund."""
    active, sent = read.active_refund, chicago_text(created.sent_at, missing="an unknown time", seconds=True)
    shows = (f"Backd shows an active {active.status} request of {format_money(active.amount)} made "
             f"{chicago_text(active.create_date, missing='at an unknown time', seconds=True)}"
             if active is not None else "Backd shows no active refund request")
    later = f"; run {created.refunded_again_by} sent a refund on this order since" if created.refunded_again_by else ""
    return (f"row {row.label}: run {run_id} sent a {format_money(created.amount)} refund at {sent} and never "
            f"recorded how it ended{later}; {shows}, which may be the run's or someone else's: not undone automatically "
            f"(if it is the run's, decline it with delete_refunds)")


def _later_refunds(book: Journal, client: BackdClient, run_id: str, sent: pd.DataFrame) -> dict[str, str]:
    """Per order of an in-doubt row: a later run of ours whose refund on it landed or may have."""
    doubtful = sent.loc[sent["outcome"] != "done", "backd_order_id"].tolist()
    later: dict[str, str] = {}
    for order_id, actions in book.evidence(client.account, "refund", doubtful).items():
        mine = [e for e in actions if e.run_id == run_id]
        after = written_since(actions, mine[-1]) if mine else []
        if after:
            later[order_id] = after[-1].run_id
    return later


def _aware(moment: Any) -> datetime | None:
    return None if moment is None or moment is pd.NaT else pd.Timestamp(moment).to_pydatetime()


def _decimal(text: str | None) -> Decimal | None:
    return Decimal(text) if isinstance(text, str) and text else None


def _label(text: str | None) -> object:
    return int(text) if text is not None and text.lstrip("-").isdigit() else text


def _undo_verdict(row: RowInput, read: Order | Exception | None, created: _Created, run_id: str, now: datetime) -> Verdict:
    if not isinstance(read, Order):
        return Verdict(INVALID, f"row {row.label}: could not read the order ({read}); not undone", "backd_order_id")
    if created.in_doubt:
        return Verdict(INVALID, _in_doubt_text(row, read, created, run_id), "backd_order_id")
    verdict = plan_undo_refund(row.values, read, now, row.label, amount_set=created.amount, set_by=run_id)
    message = verdict.message
    if verdict.outcome == PLANNED and created.replaced is not None:
        message += f"; the {format_money(created.replaced)} request it replaced stays declined (refund it again if it should stand)"
    return Verdict(verdict.outcome, message, verdict.column, verdict.amount, verdict.locked_at, OrderState.of(read))
