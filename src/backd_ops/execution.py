"""Execution: carry out exactly a verified plan: claim it, re-check each order, send, settle, record.

For every row the plan marked ``planned``, and for no other row:

1. hold the order (no other live run of ours may write it meanwhile);
2. read it from Backd and decide, with the journal as evidence: ``already_done`` only where Backd shows the
   effect and a run of ours sent it; ``drifted`` (nothing sent) where the order changed since the plan, where
   Backd already shows the effect without us, where a run of ours did it and Backd no longer shows it, or where
   a refund's 17:00 lock passed since the plan was made; wait while a write of ours may still be landing;
3. commit the intent, send exactly the planned request;
4. settle an ambiguous answer (timeout, dropped connection, 5xx) by reading the order back over a settle window
   at least as long as the read timeout; resend only when the read-back proved the write absent after that
   window, else ``uncertain``; record the outcome.

Every row ends with exactly one outcome in the result and the journal.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from .client import BackdClient
from .config import SETTLE_WINDOW_FLOOR_S, ApprovalPolicy, current_user, production_confirmed
from .errors import (
    ApprovalError,
    BackdError,
    NetworkError,
    PartialPlanError,
    PlanAccountError,
    ProductionGuardError,
    RateLimitError,
    ServerError,
    WriteWithheldError,
    option_hint,
)
from .journal import CLAIM_LEASE_S, HEARTBEAT_S, Claim, Evidence, Journal
from .locking import CHICAGO
from .models import Order, format_money
from .operations import ALREADY_DONE, DRIFTED, PLANNED, Operation, OrderState, Verdict, describe_drift, done_message
from .plans import (
    FAILED,
    RESULT_ATTR,
    STATE_COLUMNS,
    Approval,
    PlanInfo,
    doer,
    record_plan,
    same_person,
    request_key,
    typed_plan_frame,
    verify_plan,
    written_since,
)
from .progress import ProgressLike
from .reads import concurrently, read_order

__all__ = ["check_partial", "execute_plan", "guard_production"]

log = logging.getLogger(__name__)

DONE, UNCERTAIN = "done", "uncertain"
MAX_SENDS = 5
"""Sends per row: the first, plus resends only after a read-back proved the write absent."""
SETTLE_READS = 3
"""Failed read-backs (each with the client's own retries) before an ambiguous write is left ``uncertain``."""
ANSWERED_SETTLE_S = 1.0
"""After an error Backd answered (a 500, say), nothing is still in flight: read back for this long, not the window."""
OUTCOME_BATCH_ROWS, OUTCOME_BATCH_S = 64, 0.25
"""Outcomes are committed to the journal when this many rows are waiting, and every this many seconds."""
Clock = Callable[[], datetime]


def execute_plan(client: BackdClient, plan: pd.DataFrame, *, approved_by: str | None = None, max_workers: int | None = None,
                 journal: Journal | str | Path | None = None, progress: ProgressLike = True, confirm_production: bool = False,
                 approval_policy: ApprovalPolicy | None = None, now: datetime | Clock | None = None,
                 settle_window_s: float | None = None, max_rps: float | None = None) -> pd.DataFrame:
    """Execute exactly the rows ``plan`` marked planned, with their planned amounts; returns one result row per plan row.

    Refuses (before any request) a plan that was edited, one made for another environment, base URL or account,
    production without ``confirm_production``, a plan missing an approval the policy asks for, and a plan another
    process is executing. ``approved_by`` records an approval given now (the person pressing execute).
    ``max_rps`` caps the client's rate for this run, every request alike: the reads before writing, the writes
    and the read-backs (None: the client's own setting, :attr:`BackdClient.max_rps`).

    Examples
    --------
    >>> plan = backd_ops.refund_orders(client, "refunds.csv")                 # doctest: +SKIP
    >>> result = backd_ops.execute_plan(client, plan, approved_by="ana")      # doctest: +SKIP
    >>> result.backd.summary()                                                 # doctest: +SKIP
    """
    info = verify_plan(plan)
    check_account(client, info)
    guard_production(client, confirm_production)
    book = journal if isinstance(journal, Journal) else Journal(journal)
    try:
        approvals = gather_approvals(info, book, approved_by)
        check_approvals(plan, info, approvals, effective_policy(info, approval_policy or ApprovalPolicy.from_env()))
        record_plan(plan, info, book, approvals=approvals)
        claim = book.claim(info.plan_id, info.account)
        try:
            with _Every(HEARTBEAT_S, lambda: book.heartbeat(claim), "backd-claim-heartbeat"), client.limited(max_rps):
                run = _Run(client, info, book, claim, clock=_clock(now), settle_window_s=settle_window(client, settle_window_s))
                results = run.execute(plan, approved_by=", ".join(a.approved_by for a in approvals) or None,
                                      max_workers=max_workers, progress=progress)
        finally:
            _keep_trying(lambda: book.release(claim), "release its claim on the plan (it goes stale in a minute)")
    finally:
        if book is not journal:  # we opened it, we close it; a caller's Journal stays open
            book.close()
    return result_frame(plan, info, results, run_id=claim.run_id)


# -- refusals before any request -----------------------------------------------------------------------------------------
def check_account(client: BackdClient, info: PlanInfo) -> None:
    if client.account != info.account:
        raise PlanAccountError(f"plan {info.plan_id[:12]} was made for {info.account.describe()} ({info.base_url}); this client "
                               f"is {client.account.describe()} ({client.account.base_url}). Nothing was sent")


def guard_production(client: BackdClient, confirmed: bool) -> None:
    """Production writes need a second yes, checked before any request."""
    if client.is_production and not (confirmed or production_confirmed()):
        raise ProductionGuardError(
            "this would move money in PRODUCTION. Run the dry run first, then pass "
            f"{option_hint('confirm_production')} (or set BACKD_CONFIRM_PRODUCTION=yes) to execute. Nothing was sent")


def check_partial(plan: pd.DataFrame, allow_partial: bool) -> None:
    """Refuse to carry out part of an input: with invalid rows, only ``allow_partial`` executes the planned ones.

    Checked before any request, by the bulk verbs with ``execute=True`` and by the command line.

    Examples
    --------
    >>> check_partial(pd.DataFrame({"outcome": ["planned", "invalid"]}, index=[2, 3]), allow_partial=False)
    Traceback (most recent call last):
    ...
    backd_ops.errors.PartialPlanError: 1 of 2 rows is invalid (row 3); nothing was sent. Fix the input and run again, or pass allow_partial=True to execute the 1 planned row and leave the invalid one
    """
    outcomes = plan["outcome"].astype(str)
    invalid, planned = plan.index[outcomes == "invalid"], int((outcomes == PLANNED).sum())
    if allow_partial or not len(invalid) or not planned:
        return
    rows = ", ".join(map(str, invalid[:10])) + (", ..." if len(invalid) > 10 else "")
    one = len(invalid) == 1
    raise PartialPlanError(
        f"{len(invalid)} of {len(plan)} rows {'is' if one else 'are'} invalid (row{'' if one else 's'} {rows}); nothing was sent. "
        f"Fix the input and run again, or pass {option_hint('allow_partial')} to execute the {planned} planned "
        f"row{'' if planned == 1 else 's'} and leave the invalid {'one' if one else 'ones'}", plan=plan)


def gather_approvals(info: PlanInfo, journal: Journal, approved_by: str | None) -> tuple[Approval, ...]:
    """The approvals that count: those the journal recorded for this very plan_id, and the one given now by the person
    running this (``approved_by``); one per person. Approvals written in a plan file are for reading, not counted."""
    known: dict[str, Approval] = {}
    for name, at in journal.approvals(info.plan_id):
        known.setdefault(name.strip().casefold(), Approval(name, at))
    if approved_by and approved_by.strip():
        if not same_person(approved_by, current_user()):
            raise ApprovalError(f"you are {current_user()!r}: approve as yourself (or set BACKD_OPS_USER); nothing was sent")
        known.setdefault(approved_by.strip().casefold(),
                         Approval(approved_by.strip(), datetime.now(timezone.utc).isoformat(timespec="seconds")))
    return tuple(known.values())


def effective_policy(info: PlanInfo, executor: ApprovalPolicy) -> ApprovalPolicy:
    """The stricter of the policy the plan was made under and the one in force where it runs."""
    made, now = info.policy, executor
    thresholds = [t for t in (made.four_eyes_above, now.four_eyes_above) if t is not None]
    return ApprovalPolicy(max(made.approvers_required, now.approvers_required), min(thresholds) if thresholds else None)


def check_approvals(plan: pd.DataFrame, info: PlanInfo, approvals: tuple[Approval, ...], policy: ApprovalPolicy) -> None:
    """Raise :class:`ApprovalError` saying which approval is missing, if the policy is not met."""
    names = {a.approved_by.strip().casefold() for a in approvals}
    moved = sum((Decimal(str(v)) for v in plan.loc[plan["outcome"] == PLANNED, "amount"].dropna()), Decimal("0.00"))
    missing = []
    if len(names) < policy.approvers_required:
        shown = ", ".join(sorted(a.approved_by for a in approvals))
        missing.append(f"{policy.approvers_required} approver(s) and has {len(names)}" + (f" ({shown})" if names else ""))
    if policy.four_eyes_above is not None and moved > policy.four_eyes_above and not names - {info.created_by.strip().casefold()}:
        missing.append(f"an approver other than its maker {info.created_by!r}, because it moves {format_money(moved)} "
                       f"(more than {format_money(policy.four_eyes_above)})")
    if missing:
        raise ApprovalError(f"plan {info.plan_id[:12]} needs " + "; and ".join(missing) +
                            f". Approve it with {option_hint('approved_by')}. Nothing was sent")


def settle_window(client: BackdClient, requested_s: float | None) -> float:
    """How long an ambiguous write is read back before it may be called absent: at least the read timeout."""
    floor = client.settings.read_timeout_s
    return max(floor, requested_s) if requested_s is not None else max(floor, SETTLE_WINDOW_FLOOR_S)


def _clock(now: datetime | Clock | None) -> Clock:
    if now is None:
        return lambda: datetime.now(CHICAGO)
    if callable(now):
        return now
    fixed = now.astimezone(CHICAGO)
    return lambda: fixed


class _Every:
    """Calls ``fn`` every ``seconds`` on a daemon thread while the ``with`` block lasts (a claim's heartbeat,
    the flush of buffered outcomes)."""

    def __init__(self, seconds: float, fn: Callable[[], None], name: str) -> None:
        self._seconds, self._fn, self._stop = seconds, fn, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)

    def __enter__(self) -> _Every:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._seconds):
            self._fn()


# -- the run ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedRow:
    """One plan row as execution needs it (``key``: the request without the order id, as evidence is keyed)."""

    position: int
    label: Any
    values: dict[str, Any]
    verdict: Verdict
    key: str

    @property
    def backd_order_id(self) -> str:
        return str(self.values.get("backd_order_id") or "")


@dataclass(frozen=True)
class _Wait:
    seconds: float


@dataclass(frozen=True)
class _Send:
    verdict: Verdict  # the verdict on the order as just read: what the write will do


class _Run:
    """One execute run of one plan: every row gets exactly one outcome, in the result and in the journal."""

    def __init__(self, client: BackdClient, info: PlanInfo, journal: Journal, claim: Claim, *, clock: Clock,
                 settle_window_s: float) -> None:
        self.client, self.info, self.op, self.journal, self.claim = client, info, info.op, journal, claim
        self.clock, self.window_s = clock, settle_window_s
        self.held: dict[str, str] = {}
        self.evidence: dict[str, list[Evidence]] = {}
        self.outcomes = _Outcomes(journal, claim, info.op.name)

    def execute(self, plan: pd.DataFrame, *, approved_by: str | None, max_workers: int | None, progress: ProgressLike) -> list[Verdict]:
        rows = planned_rows(plan, self.op)
        self.journal.start_run(self.claim, operation=self.op.name, account=self.info.account, rows=len(rows), approved_by=approved_by)
        results: list[Verdict | None] = [None if r.verdict.outcome == PLANNED else r.verdict for r in rows]
        self.journal.record_outcomes(self.claim, self.op.name, [self._record(r, v) for r, v in zip(rows, results) if v is not None])
        todo = [i for i, r in enumerate(results) if r is None]
        ids = [rows[i].backd_order_id for i in todo]
        self.held = self.journal.lease(self.claim, ids)  # one transaction for the run's orders, not one per row
        self.evidence = self.journal.evidence(self.info.account, None, ids)  # every operation: any may be in flight
        try:
            with _Every(OUTCOME_BATCH_S, self.outcomes.flush, "backd-outcomes"):
                written = concurrently(lambda i: self._execute_row(rows[i]), todo, max_workers=max_workers, progress=progress,
                                       desc=self.op.name)
        finally:
            self.outcomes.flush(final=True)
        for i, result in zip(todo, written):
            results[i] = result if isinstance(result, Verdict) else Verdict(UNCERTAIN, f"internal error: {result!r}; run the plan again to settle it")
        final = [r for r in results if r is not None]
        counts = pd.Series([r.outcome for r in final], dtype=object).value_counts().to_dict()
        _keep_trying(lambda: self.journal.finish_run(self.claim.run_id, counts), f"mark run {self.claim.run_id} finished")
        return final

    def _record(self, row: PlannedRow, verdict: Verdict) -> dict[str, Any]:
        return {"row": row.position, "row_label": str(row.label), "backd_order_id": row.backd_order_id or None,
                "request_key": row.key, "amount": _text(verdict.amount or row.verdict.amount),
                "outcome": verdict.outcome, "message": verdict.message, "status_after": verdict.status_after}

    def _execute_row(self, row: PlannedRow) -> Verdict:
        try:
            result = self._carry_out(row)
        except Exception as exc:  # a bug must not lose the row: it is recorded as uncertain
            result = self._result(row, UNCERTAIN, f"internal error before the outcome was known: {exc!r}; run the plan again to settle it")
        self.outcomes.add(self._record(row, result))
        return result

    def _carry_out(self, row: PlannedRow) -> Verdict:
        holder = self.held.get(row.backd_order_id)
        if holder is not None:
            return self._result(row, FAILED, f"not sent: {holder} is writing this order right now; run this plan again when it has finished")
        sends, evidence = 0, self.evidence.get(row.backd_order_id, [])
        while True:
            order = self._read_back(row)
            if isinstance(order, BackdError):
                outcome = FAILED if sends == 0 else UNCERTAIN
                return self._result(row, outcome, f"could not read the order before writing ({order.message}); "
                                    + ("nothing sent" if sends == 0 else "the last write may have landed: run the plan again to settle it"))
            if sends:  # our own intent and its read-back are evidence now
                evidence = self.journal.evidence(self.info.account, None, [row.backd_order_id]).get(row.backd_order_id, [])
            decision = self._decide(row, order, evidence)
            if isinstance(decision, _Wait):
                time.sleep(decision.seconds)
                continue
            if not isinstance(decision, _Send):
                return decision
            if sends >= MAX_SENDS:
                return self._result(row, FAILED, f"not applied after {MAX_SENDS} sends, each proved absent by reading the order back")
            sends += 1
            sent = self._send(row, order, decision.verdict, again=sends > 1)
            if sent is not None:
                return sent

    # -- deciding ------------------------------------------------------------------------------------------------------
    def _matching(self, row: PlannedRow, found: list[Evidence]) -> list[Evidence]:
        """Evidence of this very request (under ``resend``, only this plan's own runs count)."""
        return [e for e in found if e.operation == self.op.name and e.request_key == row.key
                and (not self.info.resend or e.plan_id == self.info.plan_id)]

    def _decide(self, row: PlannedRow, order: Order, on_order: list[Evidence]) -> Verdict | _Wait | _Send:
        """What to do with a row, given the order as Backd has it now and every action of ours on it: a verdict, wait, or send."""
        now = self.clock()
        verdict_now = self.op.plan(row.values, order, now, label=row.label)
        evidence = self._matching(row, on_order)
        ours = [e for e in evidence if e.is_done or e.in_doubt]
        if verdict_now.outcome == ALREADY_DONE:
            if ours:
                by = doer(ours) or ours[-1]
                return self._result(row, ALREADY_DONE, f"{verdict_now.message}: done by run {by.run_id}", order=order)
            return self._result(row, DRIFTED, f"not sent: Backd already shows this ({verdict_now.message}), but no run of ours "
                                f"did it: the order changed since the plan", order=order)
        did = doer(evidence)
        if did is not None:
            return self._result(row, DRIFTED, f"not sent: run {did.run_id} did this, but Backd no longer shows it "
                                f"({describe_drift(row.verdict.state, OrderState.of(order)) or 'it was undone'})", order=order)
        acted = _acted_since_doubt(evidence, on_order)
        if acted is not None:  # e.g. a killed run's refund the analyst declined since: it landed, yet shows as absent
            doubt, since = acted
            return self._result(row, DRIFTED, f"not sent: run {doubt.run_id} sent this and never recorded how it ended, and "
                                f"run {since.run_id} sent {since.operation} on this order since: make a new plan", order=order)
        # Any write of ours on this order that may still be landing (another request, operation or plan, a killed
        # run's) is waited out first: the read above may be from before it lands.
        doubt = max((e.intent_at for e in on_order if e.in_doubt and e.intent_at is not None), default=None)
        if doubt is not None:
            waited = (datetime.now(timezone.utc) - doubt).total_seconds()
            if waited < self.window_s:
                return _Wait(min(self.window_s - waited, max(0.05, self.window_s / 8)))
        return self._drift(row, order, verdict_now, now) or _Send(verdict_now)

    def _drift(self, row: PlannedRow, order: Order, verdict_now: Verdict, now: datetime) -> Verdict | None:
        changed = describe_drift(row.verdict.state, OrderState.of(order)) if row.verdict.state else None
        if changed:
            return self._result(row, DRIFTED, f"not sent: the order changed since the plan: {changed}", order=order)
        if verdict_now.outcome != PLANNED or verdict_now.amount != row.verdict.amount:
            return self._result(row, DRIFTED, f"not sent: {verdict_now.message}", order=order)
        if self.op.name == "refund" and verdict_now.locked_at != row.verdict.locked_at:
            return self._result(row, DRIFTED, f"not sent: the 17:00 lock of {_day(row.verdict.locked_at)} passed since the plan was "
                                f"made; the refund would now lock {_day(verdict_now.locked_at)}. Make a new plan", order=order)
        return None

    # -- sending and settling --------------------------------------------------------------------------------------------
    def _send(self, row: PlannedRow, order: Order, verdict_now: Verdict, *, again: bool) -> Verdict | None:
        """Send once; a verdict, or None when a read-back proved the write absent (the caller may send again).

        Messages come from the order as just read, not from the plan's text.
        """
        request = self.op.request(row.values)

        def intend() -> bool:  # asked as each attempt leaves: a write's doubt window starts when it is sent
            return self.journal.record_intent(self.claim, row.position, operation=self.op.name, backd_order_id=row.backd_order_id,
                                              request=request, request_key=row.key, amount=_text(row.verdict.amount),
                                              status_before=order.status, row_label=str(row.label),
                                              replaced_amount=_replaced(self.op.name, order))

        done = done_message(self.op.name, verdict_now.message) + (
            "; sent again after read-backs proved the first send absent" if again else "")
        try:
            with self.client.send_guard(intend):
                after = getattr(self.client, self.op.endpoint)(**request)
        except WriteWithheldError:
            return self._result(row, FAILED, "not sent: this run lost its hold on the plan or on this order before the write "
                                f"left (interrupted, or stalled longer than {CLAIM_LEASE_S:.0f} s and taken over by another run); "
                                "run the plan again to settle it", order=order)
        except BackdError as error:
            if not error.may_have_been_applied:
                return self._result(row, FAILED, f"Backd refused it: {type(error).__name__}: {error.message}", order=order)
            return self._settle(row, error, done)
        return self._result(row, DONE, done, order=after, locked_from=after)

    def _settle(self, row: PlannedRow, error: BackdError, done: str) -> Verdict | None:
        """Read back until the write shows, or until the window proves it absent (None), or reads keep failing."""
        window_s = self.window_s if _may_still_land(error) else min(self.window_s, ANSWERED_SETTLE_S)
        deadline = time.monotonic() + window_s
        interval_s, failures = min(0.25, max(0.01, window_s / 8)), 0
        while True:
            time.sleep(interval_s)
            read = self._read_back(row)
            if isinstance(read, BackdError):
                failures += 1
                if failures >= SETTLE_READS and time.monotonic() >= deadline:
                    return self._result(row, UNCERTAIN, f"{type(error).__name__} after sending, and the read-back failed "
                                        f"({read.message}); run the plan again to settle it")
            elif self.op.plan(row.values, read, self.clock(), label=row.label).outcome == ALREADY_DONE:
                return self._result(row, DONE, f"{done} (confirmed by reading the order back after {type(error).__name__})",
                                    order=read, locked_from=read)
            elif time.monotonic() >= deadline:
                self.journal.mark_not_applied(self.claim, row.position, f"{type(error).__name__}; not on the order after "
                                              f"{window_s:.1f} s of read-backs")
                return None
            interval_s = min(interval_s * 2, 1.0)

    def _read_back(self, row: PlannedRow) -> Order | BackdError:
        read = read_order(self.client, row.backd_order_id)
        for _ in range(SETTLE_READS - 1):  # an unsettled row costs an analyst's time: try harder than a plain read
            if not isinstance(read, BackdError) or not _transient(read):
                break
            time.sleep(self.client.backoff_initial_s)
            read = read_order(self.client, row.backd_order_id)
        return read

    def _result(self, row: PlannedRow, outcome: str, message: str, *, order: Order | None = None,
                locked_from: Order | None = None) -> Verdict:
        locked_at = row.verdict.locked_at
        if locked_from is not None and locked_from.active_refund is not None and locked_from.active_refund.amount == row.verdict.amount:
            locked_at = locked_from.active_refund.locked_at
        return replace(row.verdict, outcome=outcome, message=message, locked_at=locked_at,
                       status_after=order.status if order is not None else None)


class _Outcomes:
    """Rows' outcomes, written to the journal a batch at a time (one transaction per batch, not one per row).

    Sixteen workers committing a row each contend for one lock and one GIL; batching takes that off every row.
    A batch is written when it is full, every ``OUTCOME_BATCH_S`` (the run's timer) and at the end. A kill
    loses at most that much: those rows' intents stay in doubt, and the next run reads them back first. A write
    that fails (a locked or full disk) keeps its batch for the next one.
    """

    def __init__(self, journal: Journal, claim: Claim, operation: str) -> None:
        self._journal, self._claim, self._operation = journal, claim, operation
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()  # guards the pending list
        self._writing = threading.Lock()  # one write at a time: the final flush waits for the timer's, and sees its put-back

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._pending.append(record)
            full = len(self._pending) >= OUTCOME_BATCH_ROWS
        if full:
            self.flush()

    def flush(self, *, final: bool = False) -> None:
        """Write what is pending; at the end (``final``) keep trying, then warn rather than lose the run's results."""
        if final:
            _keep_trying(lambda: self._write(raise_errors=True), "record the outcomes of finished rows")
        else:
            self._write(raise_errors=False)

    def _write(self, *, raise_errors: bool) -> None:
        with self._writing:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                self._journal.record_outcomes(self._claim, self._operation, batch)
            except (sqlite3.Error, OSError) as exc:
                with self._lock:
                    self._pending[:0] = batch
                if raise_errors:
                    raise
                log.warning("the journal could not record %d outcomes yet (%s); trying again", len(batch), exc)


def _keep_trying(write: Callable[[], None], what: str, *, attempts: int = 3) -> None:
    """Journal bookkeeping after the writes were made: retried, and if the journal stays unwritable, a warning
    rather than an exception (the caller still gets the results; the next run reads these orders back first)."""
    for attempt in range(attempts):
        try:
            write()
            return
        except (sqlite3.Error, OSError) as exc:
            if attempt == attempts - 1:
                log.warning("the journal could not %s (%s): the returned results are the only record of them; "
                            "the next run of this plan reads these orders back before any write", what, exc)
                return
            time.sleep(0.2 * 4 ** attempt)


def _acted_since_doubt(evidence: list[Evidence], on_order: list[Evidence]) -> tuple[Evidence, Evidence] | None:
    """This request's latest in-doubt send, and a later write of ours on the order (another request) that landed or
    may have: the order may have changed after the write in doubt, so "absent now" no longer proves it never did."""
    doubts = [e for e in evidence if e.in_doubt]
    if not doubts:
        return None
    later = [e for e in written_since(on_order, doubts[-1]) if e not in evidence]
    return (doubts[-1], later[-1]) if later else None


def _replaced(operation: str, order: Order) -> str | None:
    """The active refund request a new refund will decline by replacing it (recorded so an undo can say so)."""
    active = order.active_refund
    return str(active.amount) if operation == "refund" and active is not None else None


def _may_still_land(error: BackdError) -> bool:
    """No answer (timeout, connection dropped after sending) or a gateway's 502/504: Backd may still be working on it."""
    return isinstance(error, NetworkError) or (isinstance(error, ServerError) and error.status in (502, 504))


def _transient(error: BackdError) -> bool:
    return isinstance(error, (NetworkError, RateLimitError, ServerError))


def _day(moment: datetime | None) -> str:
    return "—" if moment is None else pd.Timestamp(moment).tz_convert(CHICAGO).strftime("%a %Y-%m-%d %H:%M %Z")


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)


# -- plan rows in, result rows out ------------------------------------------------------------------------------------------------
def planned_rows(plan: pd.DataFrame, op: Operation) -> list[PlannedRow]:
    """The plan's rows as values and verdicts (exact Decimals, aware datetimes, None for missing)."""
    columns = {c: plan[c].tolist() for c in plan.columns}  # column by column: half the time of to_dict("records")
    rows = []
    for position, (label, values) in enumerate(zip(plan.index, zip(*columns.values()))):
        clean = {k: _none(v) for k, v in zip(columns, values)}
        state = None
        if clean.get("before_status") is not None:
            state = OrderState(**{c.removeprefix("before_"): _py(clean[c]) for c in STATE_COLUMNS})
        verdict = Verdict(str(clean["outcome"]), clean.get("message") or "", clean.get("column"), clean.get("amount"),
                          _py(clean.get("locked_at")), state)
        values = {c: clean.get(c) for c in op.columns}
        rows.append(PlannedRow(position, label, values, verdict, request_key(op, values)))
    return rows


def _none(value: Any) -> Any:
    return None if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value) else value


def _py(value: Any) -> Any:
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value


def result_frame(plan: pd.DataFrame, info: PlanInfo, results: list[Verdict], *, run_id: str) -> pd.DataFrame:
    """The plan's rows with what happened: outcome, message, status after, lock time and the run id."""
    frame = plan.copy()
    frame.attrs = {RESULT_ATTR: {"plan_id": info.plan_id, "run_id": run_id, "operation": info.operation,
                                 "account": info.account.describe(), "input": info.describe_input()}}
    frame["outcome"] = [r.outcome for r in results]
    frame["message"] = [r.message for r in results]
    frame["locked_at"] = [r.locked_at for r in results]
    frame["status_after"] = [r.status_after for r in results]
    frame["run_id"] = run_id
    typed = typed_plan_frame(frame, info.op, only=("outcome", "message", "locked_at", "status_after", "run_id"))
    typed.attrs = frame.attrs
    return typed
