"""The bulk verbs analysts call: each makes a plan (a dry run) and, only with ``execute=True``, executes it.

Every verb returns one row per input row, in input order, with its ``outcome``:

- the plan (the default): ``planned``, ``already_done``, ``drifted``, ``invalid`` or ``failed`` (the order
  could not be read), plus the order state each row was planned against and the plan's ``plan_id``;
- ``execute=True``: the same plan carried out by :func:`~backd_ops.execution.execute_plan`: ``done``,
  ``already_done``, ``drifted`` (nothing sent: the order changed), ``invalid``, ``failed`` or ``uncertain``
  (the write may have landed and could not be read back; run again to settle it).

``refund_orders(client, frame, execute=True)`` is ``execute_plan(client, refund_orders(client, frame))``:
the same code, for scheduled runs, except that a file with invalid rows is executed only with
``allow_partial=True`` (else nothing is sent: :class:`~backd_ops.errors.PartialPlanError`). Interactive work
saves, reviews and approves the plan in between.

Every verb reads a DataFrame or a CSV/TSV/XLSX/Parquet file (``sheet`` picks an XLSX sheet). Headers match our
column names and common synonyms whatever their case, spacing and punctuation (``Order ID``, ``Refund
Amount``); ``column_map`` names the others (``{"Order #": "backd_order_id"}`` or ``"Order #=backd_order_id"``).
A blank ``merchant_order_id`` is taken from Backd's record (refund, confirm, delete_refund, update) and a given
one is checked against it. The columns of each operation are in its docstring.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from .client import BackdClient
from .config import ApprovalPolicy
from .execution import Clock, check_partial, execute_plan, guard_production
from .journal import Journal
from .operations import OPERATIONS, Operation
from .plans import OUTCOMES, make_plan, summarize_outcomes
from .progress import ProgressLike
from .reads import fetch_orders, find_orders

__all__ = [
    "OUTCOMES",
    "cancel_orders",
    "confirm_orders",
    "delete_refunds",
    "fetch_orders",
    "find_orders",
    "place_orders",
    "refund_orders",
    "run_operation",
    "summarize_outcomes",
    "update_orders",
]

FrameLike = pd.DataFrame | str | Path
JournalLike = Journal | str | Path | None
ColumnMap = Mapping[str, str] | str | None


def refund_orders(client: BackdClient, frame: FrameLike, *, execute: bool = False, journal: JournalLike = None,
                  max_workers: int | None = None, max_rps: float | None = None, progress: ProgressLike = True,
                  confirm_production: bool = False, approved_by: str | None = None, decimal: str = ".",
                  resend: bool = False, now: datetime | Clock | None = None, settle_window_s: float | None = None,
                  column_map: ColumnMap = None, sheet: str | None = None, allow_partial: bool = False) -> pd.DataFrame:
    """Refund ``refund_amount`` on each order.

    Columns: required ``backd_order_id``, ``refund_amount``; optional ``merchant_order_id`` (blank: taken from
    Backd's record). A plan (dry run: every order read, nothing sent) unless ``execute=True``. ``decimal=","``
    reads amounts written with a decimal comma. See :func:`run_operation` for the other options.

    Examples
    --------
    >>> plan = refund_orders(client, "refunds.csv")                  # doctest: +SKIP
    >>> plan.backd.sentence(), plan.backd.save("refund-plan.json")   # doctest: +SKIP
    >>> done = execute_plan(client, plan)                             # doctest: +SKIP
    """
    return run_operation(client, "refund", frame, execute=execute, journal=journal, max_workers=max_workers, max_rps=max_rps,
                         progress=progress, confirm_production=confirm_production, approved_by=approved_by, decimal=decimal,
                         resend=resend, now=now, settle_window_s=settle_window_s, column_map=column_map, sheet=sheet,
                         allow_partial=allow_partial)


def cancel_orders(client: BackdClient, frame: FrameLike | Sequence[str], *, execute: bool = False, journal: JournalLike = None,
                  max_workers: int | None = None, max_rps: float | None = None, progress: ProgressLike = True,
                  confirm_production: bool = False, approved_by: str | None = None, resend: bool = False,
                  now: datetime | Clock | None = None, settle_window_s: float | None = None,
                  column_map: ColumnMap = None, sheet: str | None = None, allow_partial: bool = False) -> pd.DataFrame:
    """Cancel ``order_placed`` orders. A plan unless ``execute=True``.

    Columns: required ``backd_order_id`` (or give a list of ids).

    Examples
    --------
    >>> cancel_orders(client, ["BO-DEMO-000003"]).backd.sentence()   # doctest: +SKIP
    'Cancel 1 order, $1,520.00.'
    """
    return run_operation(client, "cancel", frame, execute=execute, journal=journal, max_workers=max_workers, max_rps=max_rps,
                         progress=progress, confirm_production=confirm_production, approved_by=approved_by, resend=resend,
                         now=now, settle_window_s=settle_window_s, column_map=column_map, sheet=sheet,
                         allow_partial=allow_partial)


def confirm_orders(client: BackdClient, frame: FrameLike | Sequence[str], *, execute: bool = False, journal: JournalLike = None,
                   max_workers: int | None = None, max_rps: float | None = None, progress: ProgressLike = True,
                   confirm_production: bool = False, approved_by: str | None = None, resend: bool = False,
                   now: datetime | Clock | None = None, settle_window_s: float | None = None,
                  column_map: ColumnMap = None, sheet: str | None = None, allow_partial: bool = False) -> pd.DataFrame:
    """Confirm ``order_placed`` orders. A plan unless ``execute=True``.

    Columns: required ``backd_order_id`` (or give a list of ids); optional ``merchant_order_id`` (blank: taken
    from Backd's record).

    Examples
    --------
    >>> confirm_orders(client, "confirm.csv", execute=True)          # doctest: +SKIP
    """
    return run_operation(client, "confirm", frame, execute=execute, journal=journal, max_workers=max_workers, max_rps=max_rps,
                         progress=progress, confirm_production=confirm_production, approved_by=approved_by, resend=resend,
                         now=now, settle_window_s=settle_window_s, column_map=column_map, sheet=sheet,
                         allow_partial=allow_partial)


def delete_refunds(client: BackdClient, frame: FrameLike, *, execute: bool = False, journal: JournalLike = None,
                   max_workers: int | None = None, max_rps: float | None = None, progress: ProgressLike = True,
                   confirm_production: bool = False, approved_by: str | None = None, resend: bool = False,
                   now: datetime | Clock | None = None, settle_window_s: float | None = None,
                  column_map: ColumnMap = None, sheet: str | None = None, allow_partial: bool = False) -> pd.DataFrame:
    """Decline the active, unlocked refund request. A plan unless ``execute=True``.

    Columns: required ``backd_order_id``; optional ``merchant_order_id`` (blank: taken from Backd's record).

    Examples
    --------
    >>> delete_refunds(client, "mistaken-refunds.csv")               # doctest: +SKIP
    """
    return run_operation(client, "delete_refund", frame, execute=execute, journal=journal, max_workers=max_workers,
                         max_rps=max_rps, progress=progress, confirm_production=confirm_production, approved_by=approved_by,
                         resend=resend, now=now, settle_window_s=settle_window_s, column_map=column_map, sheet=sheet,
                         allow_partial=allow_partial)


def update_orders(client: BackdClient, frame: FrameLike, *, execute: bool = False, journal: JournalLike = None,
                  max_workers: int | None = None, max_rps: float | None = None, progress: ProgressLike = True,
                  confirm_production: bool = False, approved_by: str | None = None, decimal: str = ".",
                  resend: bool = False, now: datetime | Clock | None = None, settle_window_s: float | None = None,
                  column_map: ColumnMap = None, sheet: str | None = None, allow_partial: bool = False) -> pd.DataFrame:
    """Update amounts/``merchant_order_status`` of ``order_placed`` orders; blank cells are left as they are.

    Columns: required ``backd_order_id``; optional ``merchant_order_id`` (blank: taken from Backd's record),
    ``order_total``, ``cart_amount``, ``tax_amount``, ``shipping_amount``, ``discount_amount``,
    ``merchant_order_status`` (at least one of the last six).

    Examples
    --------
    >>> update_orders(client, "new-totals.csv")                       # doctest: +SKIP
    """
    return run_operation(client, "update", frame, execute=execute, journal=journal, max_workers=max_workers, max_rps=max_rps,
                         progress=progress, confirm_production=confirm_production, approved_by=approved_by, decimal=decimal,
                         resend=resend, now=now, settle_window_s=settle_window_s, column_map=column_map, sheet=sheet,
                         allow_partial=allow_partial)


def place_orders(client: BackdClient, frame: FrameLike, *, execute: bool = False, journal: JournalLike = None,
                 max_workers: int | None = None, max_rps: float | None = None, progress: ProgressLike = True,
                 confirm_production: bool = False, approved_by: str | None = None, resend: bool = False,
                 now: datetime | Clock | None = None, settle_window_s: float | None = None,
                  column_map: ColumnMap = None, sheet: str | None = None, allow_partial: bool = False) -> pd.DataFrame:
    """``order_placed`` for ``terms_selected`` orders. A plan unless ``execute=True``.

    Columns: required ``backd_order_id``, ``merchant_order_id`` (the id the order is placed under).

    Examples
    --------
    >>> place_orders(client, "placed.csv", execute=True)              # doctest: +SKIP
    """
    return run_operation(client, "place", frame, execute=execute, journal=journal, max_workers=max_workers, max_rps=max_rps,
                         progress=progress, confirm_production=confirm_production, approved_by=approved_by, resend=resend,
                         now=now, settle_window_s=settle_window_s, column_map=column_map, sheet=sheet,
                         allow_partial=allow_partial)


def run_operation(client: BackdClient, operation: str | Operation, frame: FrameLike | Sequence[str], *, execute: bool = False,
                  journal: JournalLike = None, max_workers: int | None = None, max_rps: float | None = None,
                  progress: ProgressLike = True, confirm_production: bool = False, approved_by: str | None = None,
                  approval_policy: ApprovalPolicy | None = None, decimal: str = ".", resend: bool = False,
                  now: datetime | Clock | None = None, settle_window_s: float | None = None,
                  column_map: ColumnMap = None, sheet: str | None = None, allow_partial: bool = False) -> pd.DataFrame:
    """Plan one operation for every row and, with ``execute=True``, execute that plan.

    ``now`` is the time the lock rule is judged at (default: the real time; a clock function or a fixed
    datetime when rehearsing against a sandbox whose clock was moved). ``journal`` is read while planning
    (never created by a dry run) and written while executing. ``column_map`` and ``sheet``: see the module
    docstring. ``allow_partial=True`` executes the planned rows of an input that also has invalid rows;
    without it such an input is refused before anything is sent (:class:`~backd_ops.errors.PartialPlanError`).
    ``max_rps`` caps the client's rate for this call, the plan's reads and the execution's requests alike
    (None: the client's own, :attr:`BackdClient.max_rps`).

    Examples
    --------
    >>> run_operation(client, "cancel", ["BO-DEMO-000003"]).outcome.tolist()   # doctest: +SKIP
    ['planned']
    """
    op = OPERATIONS[operation] if isinstance(operation, str) else operation
    if execute:
        guard_production(client, confirm_production)  # before the plan's reads: a refused run sends nothing at all
    moment = now() if callable(now) else now
    with client.limited(max_rps):
        plan = make_plan(client, op, frame, journal=journal, max_workers=max_workers, progress=progress, now=moment,
                         decimal=decimal, resend=resend, column_map=column_map, sheet=sheet)
        if not execute:
            return plan
        check_partial(plan, allow_partial)
        return execute_plan(client, plan, approved_by=approved_by, max_workers=max_workers, journal=journal,
                            progress=progress, confirm_production=confirm_production, approval_policy=approval_policy,
                            now=now, settle_window_s=settle_window_s)
