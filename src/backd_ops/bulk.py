"""Bulk operations over DataFrames: validate → read every order → plan → (on execute) write, journaled.

Every function returns one row per input row, in input order, with its ``outcome``:

- dry run (the default): ``planned``, ``already_done``, ``invalid`` (or ``failed`` if the order could not be read);
- ``execute=True``: ``done``, ``already_done``, ``invalid``, ``failed``, or ``uncertain`` (the write may have
  been applied and the order could not be read back; re-run to settle it).

A write that may have reached Backd (timeout, dropped connection, 5xx) is settled by reading the order
back, never by resending blindly. Re-running the same input resumes from the journal.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import pandas as pd

from ._retry import RateLimiter
from .client import BackdClient
from .config import DEFAULT_MAX_WORKERS, DEFAULT_SETTLE_S, PRODUCTION_CONFIRM_ENV, production_confirmed
from .errors import (
    AuthenticationError,
    BackdError,
    InputError,
    NetworkError,
    NotFoundError,
    ProductionGuardError,
    RateLimitError,
    ServerError,
)
from .journal import Journal, PriorAction
from .locking import CHICAGO
from .models import MONEY_DTYPE, Order
from .operations import ALREADY_DONE, INVALID, OPERATIONS, PLANNED, Operation, RowInput, Verdict, fingerprint, validate_frame
from .orders_frame import OrderBatch
from .progress import progress_bar
from .tables import read_table

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

OUTCOMES = ("planned", "done", "already_done", "invalid", "failed", "uncertain")
DONE, FAILED, UNCERTAIN = "done", "failed", "uncertain"
MAX_SEND_ATTEMPTS = 5
"""Sends per row: the first, plus resends only after a read-back proved the write was not applied."""
SETTLE_READS = 3
"""Read-backs (each with the client's own retries) before an ambiguous write is left ``uncertain``."""

T = TypeVar("T")
R = TypeVar("R")
FrameLike = pd.DataFrame | str | Path


# -- reads ---------------------------------------------------------------------------------------------------------
def fetch_orders(client: BackdClient, backd_order_ids: Iterable[str], *, max_workers: int | None = None,
                 progress: bool | str = True) -> OrderBatch:
    """Read orders concurrently: an :class:`OrderBatch` with ``.frame()``, ``.refunds()`` and ``.items()``.

    Examples
    --------
    >>> batch = fetch_orders(client, ["BO-DEMO-000001", "BO-NOPE"])   # doctest: +SKIP
    >>> batch.frame()[["backd_order_id", "status", "error"]]            # doctest: +SKIP
    """
    requested = [str(i).strip() for i in _as_id_list(backd_order_ids)]
    unique = list(dict.fromkeys(i for i in requested if i))
    results = _concurrently(lambda order_id: _read(client, order_id), unique, max_workers=max_workers,
                            progress=progress, desc="find_orders")
    return OrderBatch(requested, dict(zip(unique, results)))


def find_orders(client: BackdClient, backd_order_ids: Iterable[str], *, max_workers: int | None = None,
                progress: bool | str = True) -> pd.DataFrame:
    """One row per requested id, in input order: status, amounts, refund summary; failures in ``error``.

    Examples
    --------
    >>> find_orders(client, ["BO-DEMO-000001"])[["backd_order_id", "status", "order_total"]]  # doctest: +SKIP
    """
    return fetch_orders(client, backd_order_ids, max_workers=max_workers, progress=progress).frame()


def _read(client: BackdClient, backd_order_id: str) -> Order | BackdError:
    try:
        return client.find_order(backd_order_id)
    except (BackdError, ValueError) as exc:
        return exc if isinstance(exc, BackdError) else InputError(str(exc), backd_order_id=backd_order_id)


def _as_id_list(ids: Any) -> list:
    if isinstance(ids, pd.DataFrame):
        if "backd_order_id" not in ids.columns:
            raise InputError(f"expected a backd_order_id column; the frame has {', '.join(map(str, ids.columns))}")
        return ids["backd_order_id"].tolist()
    if isinstance(ids, str):
        return [part for part in ids.replace(",", "\n").split()]
    return list(ids)


# -- the operations ------------------------------------------------------------------------------------------------
def refund_orders(client: BackdClient, frame: FrameLike, *, execute: bool = False, **options: Any) -> pd.DataFrame:
    """Refund ``refund_amount`` on each order (columns ``backd_order_id``, ``merchant_order_id``, ``refund_amount``).

    A dry run unless ``execute=True``. Options: ``journal``, ``max_workers``, ``max_rps``, ``progress``,
    ``confirm_production``, ``now`` (see :func:`run_operation`).

    Examples
    --------
    >>> plan = refund_orders(client, "refunds.csv")                  # doctest: +SKIP
    >>> plan.backd.summary()                                          # doctest: +SKIP
    >>> done = refund_orders(client, "refunds.csv", execute=True)     # doctest: +SKIP
    """
    return run_operation(client, "refund", frame, execute=execute, **options)


def cancel_orders(client: BackdClient, frame: FrameLike | Sequence[str], *, execute: bool = False, **options: Any) -> pd.DataFrame:
    """Cancel ``order_placed`` orders (a ``backd_order_id`` column, or a list of ids). Dry run by default."""
    return run_operation(client, "cancel", frame, execute=execute, **options)


def confirm_orders(client: BackdClient, frame: FrameLike | Sequence[str], *, execute: bool = False, **options: Any) -> pd.DataFrame:
    """Confirm ``order_placed`` orders (``backd_order_id``, optional ``merchant_order_id``). Dry run by default."""
    return run_operation(client, "confirm", frame, execute=execute, **options)


def delete_refunds(client: BackdClient, frame: FrameLike, *, execute: bool = False, **options: Any) -> pd.DataFrame:
    """Decline the active, unlocked refund request (``backd_order_id``, ``merchant_order_id``). Dry run by default."""
    return run_operation(client, "delete_refund", frame, execute=execute, **options)


def update_orders(client: BackdClient, frame: FrameLike, *, execute: bool = False, **options: Any) -> pd.DataFrame:
    """Update amounts/``merchant_order_status`` of ``order_placed`` orders; blank cells are left as they are."""
    return run_operation(client, "update", frame, execute=execute, **options)


def place_orders(client: BackdClient, frame: FrameLike, *, execute: bool = False, **options: Any) -> pd.DataFrame:
    """``order_placed`` for ``terms_selected`` orders (``backd_order_id``, ``merchant_order_id``). Dry run by default."""
    return run_operation(client, "place", frame, execute=execute, **options)


def run_operation(
    client: BackdClient,
    operation: str | Operation,
    frame: FrameLike | Sequence[str],
    *,
    execute: bool = False,
    journal: Journal | str | Path | None = None,
    max_workers: int | None = None,
    max_rps: float | None = None,
    progress: bool | str = True,
    confirm_production: bool = False,
    now: datetime | None = None,
    settle_s: float = DEFAULT_SETTLE_S,
) -> pd.DataFrame:
    """Validate, plan and (with ``execute=True``) apply one operation to every row.

    ``now`` is the time the lock rule is judged at (default: the real time); pass the sandbox's clock when
    rehearsing against a sandbox whose clock was moved.
    """
    op = OPERATIONS[operation] if isinstance(operation, str) else operation
    rows = validate_frame(_input_frame(frame), op)
    if execute:
        _guard_production(client, confirm_production)
    moment = now or datetime.now(CHICAGO)
    if not execute:
        plans = _plan_rows(client, op, rows, {}, moment, max_workers=max_workers, progress=progress)
        return _result_frame(op, rows, [_as_result(p) for p in plans], run_id=None)
    book = journal if isinstance(journal, Journal) else Journal(journal)
    try:
        identity = _identity(client, op, rows)
        plans = _plan_rows(client, op, rows, book.prior_actions(**identity), moment, max_workers=max_workers, progress=progress)
        run = _Run(client, op, book, identity, moment, RateLimiter(max_rps), settle_s)
        results = run.execute(rows, plans, max_workers=max_workers, progress=progress)
    finally:
        if book is not journal:  # we opened it, we close it; a caller's Journal stays open
            book.close()
    return _result_frame(op, rows, results, run_id=run.run_id)


def _input_frame(frame: FrameLike | Sequence[str]) -> pd.DataFrame:
    """A copy of the caller's frame, a file read with spreadsheet row numbers, or ids as one column."""
    if isinstance(frame, (pd.DataFrame, Path)) or (isinstance(frame, str) and _looks_like_path(frame)):
        return read_table(frame)
    if isinstance(frame, pd.Series):
        return frame.to_frame(name="backd_order_id")
    return pd.DataFrame({"backd_order_id": _as_id_list(frame)})


def _looks_like_path(text: str) -> bool:
    return Path(text).suffix.lower() in (".csv", ".txt", ".xlsx", ".xlsm", ".xls", ".parquet")


def _guard_production(client: BackdClient, confirmed: bool) -> None:
    if client.is_production and not (confirmed or production_confirmed()):
        raise ProductionGuardError(
            "this would move money in PRODUCTION. Run the dry run first, then pass confirm_production=True "
            f"(or set {PRODUCTION_CONFIRM_ENV}=yes) to execute."
        )


def _identity(client: BackdClient, op: Operation, rows: list[RowInput]) -> dict[str, str]:
    return {"fingerprint": fingerprint(op, rows), "operation": op.name, "environment": client.environment,
            "public_key": client.public_key}


# -- planning (reads every order, then the pure rules) --------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    verdict: Verdict
    order: Order | None = None
    read_error: BackdError | None = None


def _plan_rows(client: BackdClient, op: Operation, rows: list[RowInput], prior: dict[int, PriorAction], now: datetime,
               *, max_workers: int | None, progress: bool | str) -> list[_Plan]:
    to_read = [r.backd_order_id for r in rows if r.error is None and not _done_before(prior, r)]
    batch = fetch_orders(client, to_read, max_workers=max_workers, progress=progress)
    auth_failure = next((o for o in batch.orders.values() if isinstance(o, AuthenticationError)), None)
    if auth_failure is not None:
        raise auth_failure  # wrong keys or environment: nothing else in this run can work, and nothing was written
    return [_plan_row(op, row, prior.get(row.position), batch.orders.get(row.backd_order_id), now) for row in rows]


def _done_before(prior: dict[int, PriorAction], row: RowInput) -> bool:
    action = prior.get(row.position)
    return action is not None and action.is_done


def _plan_row(op: Operation, row: RowInput, prior: PriorAction | None, read: Order | BackdError | None, now: datetime) -> _Plan:
    if row.error is not None:
        return _Plan(row.error)
    if prior is not None and prior.is_done:
        amount = Decimal(prior.amount) if prior.amount else None
        return _Plan(Verdict(ALREADY_DONE, f"done in run {prior.run_id}: {prior.message}", amount=amount))
    if isinstance(read, NotFoundError):
        return _Plan(Verdict(INVALID, f"row {row.label}, column backd_order_id: Backd has no order {row.backd_order_id}", "backd_order_id"))
    if isinstance(read, BackdError) or read is None:
        return _Plan(Verdict(FAILED, f"could not read the order: {read}"), read_error=read if isinstance(read, BackdError) else None)
    return _Plan(op.plan(row.values, read, now, label=row.label), order=read)


def _as_result(plan: _Plan) -> Verdict:
    return replace(plan.verdict, status_before=plan.order.status if plan.order else None)


# -- execution -------------------------------------------------------------------------------------------------------
class _Run:
    """One execute run: journal the run, then write each planned row (intent before, outcome after)."""

    def __init__(self, client: BackdClient, op: Operation, journal: Journal, identity: dict[str, str], now: datetime,
                 limiter: RateLimiter, settle_s: float) -> None:
        self.client, self.op, self.journal, self.identity = client, op, journal, identity
        self.now, self.limiter, self.settle_s = now, limiter, settle_s
        self.run_id = ""

    def execute(self, rows: list[RowInput], plans: list[_Plan], *, max_workers: int | None, progress: bool | str) -> list[Verdict]:
        resumed_from = self.journal.latest_run(**self.identity)
        self.run_id = self.journal.start_run(operation=self.op.name, environment=self.client.environment,
                                             base_url=self.client.base_url, public_key=self.client.public_key,
                                             fingerprint=self.identity["fingerprint"], rows=len(rows), resumed_from=resumed_from)
        results: list[Verdict | None] = [None if p.verdict.outcome == PLANNED else _as_result(p) for p in plans]
        self._journal_outcomes(rows, results)
        todo = [i for i, r in enumerate(results) if r is None]
        written = _concurrently(lambda i: self._write_row(rows[i], plans[i]), todo, max_workers=max_workers,
                                progress=progress, desc=self.op.name)
        for i, result in zip(todo, written):
            results[i] = result if isinstance(result, Verdict) else Verdict(UNCERTAIN, f"internal error: {result!r}")
        final = [r for r in results if r is not None]
        self.journal.finish_run(self.run_id, pd.Series([r.outcome for r in final]).value_counts().to_dict())
        return final

    def _journal_outcomes(self, rows: list[RowInput], results: list[Verdict | None]) -> None:
        self.journal.record_outcomes(self.run_id, [
            (row.position, str(row.label), row.backd_order_id or None, r.outcome, r.message, r.status_after, _text(r.amount))
            for row, r in zip(rows, results) if r is not None
        ])

    def _write_row(self, row: RowInput, plan: _Plan) -> Verdict:
        try:
            result = self._send_until_settled(row, plan)
        except Exception as exc:  # a bug must not lose the row: it is recorded as uncertain
            result = Verdict(UNCERTAIN, f"internal error before the outcome was known: {exc!r}")
        self.journal.record_outcome(self.run_id, row.position, outcome=result.outcome, message=result.message,
                                    status_after=result.status_after, amount=_text(result.amount),
                                    backd_order_id=row.backd_order_id, row_label=str(row.label))
        return result

    def _send_until_settled(self, row: RowInput, plan: _Plan) -> Verdict:
        before = plan.order.status if plan.order else None
        verdict = plan.verdict
        for attempt in range(1, MAX_SEND_ATTEMPTS + 1):
            self.journal.record_intent(self.run_id, row.position, backd_order_id=row.backd_order_id,
                                       request=self.op.request(row.values), status_before=before, row_label=str(row.label))
            self.limiter.acquire()
            try:
                after = getattr(self.client, self.op.endpoint)(**self.op.request(row.values))
                return Verdict(DONE, verdict.message, amount=verdict.amount, locked_at=_locked_at(after, verdict),
                               status_before=before, status_after=after.status)
            except BackdError as error:
                if not error.may_have_been_applied:
                    return Verdict(FAILED, f"{type(error).__name__}: {error.message}", amount=verdict.amount, status_before=before)
                settled = self._settle(row, error, before, verdict)
                if settled is not None:
                    return settled
        return Verdict(FAILED, f"not applied after {MAX_SEND_ATTEMPTS} attempts (each settled by reading the order back)",
                       amount=verdict.amount, status_before=before)

    def _settle(self, row: RowInput, error: BackdError, before: str | None, verdict: Verdict) -> Verdict | None:
        """Read the order back after an ambiguous write: done, not applied (None: send again), or still unknown."""
        time.sleep(self.settle_s)
        read = _read(self.client, row.backd_order_id)
        for _ in range(SETTLE_READS - 1):  # an unsettled row costs an analyst's time: try harder than a plain read
            if not isinstance(read, (NetworkError, RateLimitError, ServerError)):
                break
            time.sleep(self.settle_s + self.client.backoff_initial_s)
            read = _read(self.client, row.backd_order_id)
        if isinstance(read, BackdError):
            return Verdict(UNCERTAIN, f"{type(error).__name__} after sending, and the read-back failed ({read.message}); "
                           "re-run the same input to settle it", amount=verdict.amount, status_before=before)
        now_verdict = self.op.plan(row.values, read, self.now, label=row.label)
        if now_verdict.outcome == ALREADY_DONE:
            return Verdict(DONE, f"{verdict.message} (confirmed by reading the order back after {type(error).__name__})",
                           amount=verdict.amount, locked_at=_locked_at(read, verdict), status_before=before, status_after=read.status)
        if now_verdict.outcome == PLANNED:
            return None
        return Verdict(FAILED, f"{type(error).__name__}, and the order now says: {now_verdict.message}", now_verdict.column,
                       amount=verdict.amount, status_before=before, status_after=read.status)


def _locked_at(order: Order, verdict: Verdict) -> datetime | None:
    active = order.active_refund
    return active.locked_at if active is not None and active.amount == verdict.amount else verdict.locked_at


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)


def _concurrently(fn: Callable[[T], R], items: Sequence[T], *, max_workers: int | None, progress: bool | str,
                  desc: str) -> list[R | BaseException]:
    """``fn`` over ``items`` on a bounded pool, results in input order; an exception is returned, not raised."""
    if not items:
        return []
    bar = progress_bar(len(items), desc, progress)
    results: list[Any] = [None] * len(items)

    def run(index: int) -> None:
        try:
            results[index] = fn(items[index])
        except BaseException as exc:  # noqa: BLE001 - recorded per item; the caller decides
            results[index] = exc
        bar.update(1)

    workers = max(1, min(max_workers or DEFAULT_MAX_WORKERS, len(items)))
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"backd-{desc}") as pool:
            list(pool.map(run, range(len(items))))
    finally:
        bar.close()
    return results


# -- results ---------------------------------------------------------------------------------------------------------
def _result_frame(op: Operation, rows: list[RowInput], results: list[Verdict], *, run_id: str | None) -> pd.DataFrame:
    data: dict[str, Any] = {c: [row.values.get(c) for row in rows] for c in op.columns}
    data.update({
        "outcome": pd.Categorical([r.outcome for r in results], categories=OUTCOMES),
        "message": [r.message for r in results],
        "column": [r.column for r in results],
        "status_before": [r.status_before for r in results],
        "status_after": [r.status_after for r in results],
        "amount": pd.array([r.amount for r in results], dtype=MONEY_DTYPE),
        # .array: a Series here would align on its own 0..n index, not on the input's row labels
        "locked_at": pd.to_datetime(pd.Series([r.locked_at for r in results], dtype=object), utc=True).dt.tz_convert(CHICAGO).array,
        "run_id": run_id,
    })
    frame = pd.DataFrame(data, index=pd.Index([row.label for row in rows], name="row"))
    for column in op.amounts:
        frame[column] = pd.array([_money_or_none(v) for v in frame[column]], dtype=MONEY_DTYPE)
    for column in ("message", "column", "status_before", "status_after", "run_id", *[c for c in op.columns if c not in op.amounts]):
        frame[column] = frame[column].astype("string")
    return frame


def _money_or_none(value: Any) -> Decimal | None:
    return value if isinstance(value, Decimal) else None


def summarize_outcomes(result: pd.DataFrame) -> pd.DataFrame:
    """Rows and money per outcome (every outcome listed, zeros included), with a total row.

    Examples
    --------
    >>> summarize_outcomes(refund_orders(client, frame))          # doctest: +SKIP
    """
    grouped = result.groupby("outcome", observed=False)
    summary = pd.DataFrame({"rows": grouped.size(), "amount": grouped["amount"].sum()})
    summary.loc["total"] = [int(summary["rows"].sum()), summary["amount"].sum()]
    summary["rows"] = summary["rows"].astype("int64")
    summary["amount"] = summary["amount"].astype(MONEY_DTYPE)
    return summary


@pd.api.extensions.register_dataframe_accessor("backd")
class BulkAccessor:
    """``result.backd.summary()``, ``.by_outcome(name)``, ``.needs_attention()``: questions about a bulk result."""

    def __init__(self, frame: pd.DataFrame) -> None:
        if "outcome" not in frame.columns:
            raise AttributeError("not a backd_ops bulk result (no outcome column)")
        self._frame = frame

    def summary(self) -> pd.DataFrame:
        return summarize_outcomes(self._frame)

    def by_outcome(self, outcome: str) -> pd.DataFrame:
        return self._frame[self._frame["outcome"] == outcome]

    def needs_attention(self) -> pd.DataFrame:
        """Rows an analyst must look at: invalid, failed or uncertain."""
        return self._frame[self._frame["outcome"].isin([INVALID, FAILED, UNCERTAIN])]

    @property
    def all_settled(self) -> bool:
        """True when no row is ``uncertain`` (nothing is left in doubt)."""
        return not (self._frame["outcome"] == UNCERTAIN).any()

