"""Plans: what a bulk operation will do, made from the input and Backd's state, saved, verified and approved.

A plan is a DataFrame (one row per input row, in input order) plus a :class:`PlanInfo` in ``frame.attrs``.
It is content-addressed: ``plan_id`` is the SHA-256 of the operation, the account (environment, normalised
base URL, public key) and every row's input, outcome, amount, lock deadline and the order state it was
planned against. Change a cell, drop a row, point it at another account, and it is no longer that plan:
:func:`verify_plan` refuses it. Execution (:mod:`backd_ops.execution`) carries out exactly a verified plan.

Saved plans are one JSON file (``plan.backd.save(path)`` / :func:`load_plan`), readable without this package,
with the approvals recorded in it. The file holds the public key, never the secret.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import pyarrow as pa

from ._files import write_atomically
from .client import BackdClient
from .columns import ColumnMatch, describe_matches, parse_mapping
from .config import TOOL_VERSION, Account, ApprovalPolicy, current_user
from .display import as_plan_frame, chicago_text
from .errors import ApprovalError, AuthenticationError, BackdError, InputError, NotFoundError, PlanError, option_hint
from .journal import Evidence, Journal
from .locking import CHICAGO
from .models import MONEY_DTYPE, Order, format_money
from .money import parse_amount
from .operations import (
    ALREADY_DONE,
    DRIFTED,
    INVALID,
    OPERATIONS,
    PLANNED,
    Operation,
    OrderState,
    RowInput,
    Verdict,
    fill_from_backd,
    map_input,
    validate_frame,
)
from .progress import ProgressLike
from .reads import as_id_list, fetch_orders
from .tables import TableSource, read_table, table_source, write_csv

__all__ = [
    "OUTCOMES",
    "doer",
    "written_since",
    "Approval",
    "PlanInfo",
    "approve_plan",
    "confirmation_word",
    "load_plan",
    "make_plan",
    "plan_sentence",
    "request_key",
    "result_sentence",
    "same_person",
    "summarize_outcomes",
    "verify_plan",
]

FORMAT = "backd_ops.plan/1"
PLAN_ATTR = "backd_plan"
RESULT_ATTR = "backd_result"
OUTCOMES = ("planned", "done", "already_done", "drifted", "invalid", "failed", "uncertain")
FAILED = "failed"
STATE_COLUMNS = tuple(f"before_{name}" for name in OrderState.names())
_STATE_MONEY = ("before_order_total", "before_cart_amount", "before_tax_amount", "before_shipping_amount",
                "before_discount_amount", "before_active_refund_amount", "before_refundable_amount")
_TEXT_RESULT_COLUMNS = ("message", "column", "plan_id", "status_after", "run_id")
FrameLike = pd.DataFrame | str | Path


@dataclass(frozen=True)
class Approval:
    """Who approved a plan, and when (UTC, ISO 8601)."""

    approved_by: str
    approved_at: str


def same_person(a: str | None, b: str | None) -> bool:
    """Names compared as people mean them: "Ana " and "ana" are one person (four eyes need two).

    Examples
    --------
    >>> same_person("Ana ", "ana"), same_person("ana", "maria")
    (True, False)
    """
    return (a or "").strip().casefold() == (b or "").strip().casefold()


@dataclass(frozen=True)
class PlanInfo:
    """A plan's identity and provenance (``frame.attrs["backd_plan"]``).

    The maker and the approval policy in force when it was made are part of its hash; ``approvals`` are not
    (they are recorded in the file for people, and counted from the journal).
    """

    plan_id: str
    operation: str
    environment: str
    base_url: str
    public_key: str
    created_at: str
    created_by: str
    decimal: str = "."
    resend: bool = False
    source: str | None = None
    undo_of: str | None = None
    approvers_required: int = 0
    four_eyes_above: str | None = None
    tool_version: str = TOOL_VERSION
    approvals: tuple[Approval, ...] = field(default=())
    table: TableSource | None = None
    columns: tuple[ColumnMatch, ...] = ()
    unused_columns: tuple[str, ...] = ()

    @property
    def policy(self) -> ApprovalPolicy:
        """The approval policy in force when the plan was made (execution applies the stricter of it and its own)."""
        return ApprovalPolicy(self.approvers_required, Decimal(self.four_eyes_above) if self.four_eyes_above else None)

    @property
    def account(self) -> Account:
        return Account(self.environment, self.base_url, self.public_key)

    @property
    def op(self) -> Operation:
        return OPERATIONS[self.operation]

    def approved_by(self) -> list[str]:
        return [a.approved_by for a in self.approvals]

    def __deepcopy__(self, memo: dict) -> PlanInfo:
        # pandas deep-copies frame.attrs on nearly every operation; a frozen PlanInfo of immutable parts is its own copy
        return self

    def describe_input(self) -> str:
        """How the input was read and which header became which column, e.g. for the plan's header.

        Examples
        --------
        >>> info = PlanInfo("", "refund", "sandbox", "http://h/api", "pk", "", "", table=TableSource("r.csv", "csv", ";"),
        ...                 columns=(ColumnMatch("Order ID", "backd_order_id", "synonym"),))
        >>> info.describe_input()
        'r.csv: CSV, semicolon-separated. Columns: Order ID → backd_order_id; merchant_order_id from Backd'
        """
        parts = [self.table.describe()] if self.table is not None and self.table.format != "frame" else []
        if self.columns:
            text = f"Columns: {describe_matches(self.columns, self.unused_columns)}"
            if self.op.fills_merchant_id and "merchant_order_id" not in {m.column for m in self.columns}:
                text += "; merchant_order_id from Backd"
            parts.append(text)
        return ". ".join(parts)


# -- making a plan ---------------------------------------------------------------------------------------------------
def make_plan(client: BackdClient, operation: str | Operation, frame: FrameLike | Sequence[str], *,
              journal: Journal | str | Path | None = None, max_workers: int | None = None, progress: ProgressLike = True,
              now: datetime | None = None, decimal: str = ".", resend: bool = False,
              column_map: Mapping[str, str] | str | None = None, sheet: str | None = None) -> pd.DataFrame:
    """Validate the input, read every order, and plan each row: the dry run every bulk operation starts with.

    ``frame`` is a DataFrame, a CSV/TSV/XLSX/Parquet path (``sheet`` picks an XLSX sheet) or a list of ids.
    Headers are matched by name and common synonyms; ``column_map`` names the rest (see
    :mod:`backd_ops.columns`). A blank ``merchant_order_id`` is taken from Backd's record where the operation
    allows it, and a given one is checked against it. The journal (if one exists) is read, never written: a
    row an earlier run did is ``already_done`` (naming the run) where Backd shows it, and ``drifted`` where
    Backd no longer does (``resend=True`` plans it again).

    Examples
    --------
    >>> plan = make_plan(client, "refund", "refunds.csv", column_map="Order #=backd_order_id")   # doctest: +SKIP
    >>> plan.backd.plan_id, plan.backd.sentence(), plan.backd.info.describe_input()             # doctest: +SKIP
    """
    op = OPERATIONS[operation] if isinstance(operation, str) else operation
    source = str(frame) if isinstance(frame, (str, Path)) and _looks_like_path(str(frame)) else None
    table = input_frame(frame, sheet=sheet, header_names=parse_mapping(column_map))
    mapped = map_input(table, op, column_map=column_map)
    rows = validate_frame(mapped.frame, op, decimal=decimal)
    moment = (now or datetime.now(CHICAGO)).astimezone(CHICAGO)
    evidence = _evidence(journal, client.account, op, rows)
    orders = _read_orders(client, rows, max_workers=max_workers, progress=progress)
    rows = [fill_from_backd(op, row, read) if isinstance(read := orders.get(row.backd_order_id), Order) else row for row in rows]
    verdicts = [_plan_row(op, row, orders.get(row.backd_order_id), evidence.get(row.backd_order_id, []), moment, resend)
                for row in rows]
    info = new_info(client, op.name, moment, decimal=decimal, resend=resend, source=Path(source).name if source else None,
                    table=table_source(table), columns=mapped.matches, unused_columns=mapped.unused)
    return build_plan(op, rows, verdicts, info)


def new_info(client: BackdClient, operation: str, moment: datetime, **details: Any) -> PlanInfo:
    """A plan's provenance: its account, maker, time and the approval policy in force now."""
    policy = ApprovalPolicy.from_env()
    return PlanInfo("", operation, client.environment, client.account.base_url, client.public_key,
                    created_at=moment.astimezone(timezone.utc).isoformat(timespec="seconds"), created_by=current_user(),
                    approvers_required=policy.approvers_required,
                    four_eyes_above=None if policy.four_eyes_above is None else str(policy.four_eyes_above), **details)


def input_frame(frame: FrameLike | Sequence[str], *, sheet: str | None = None, header_names: Iterable[str] = ()) -> pd.DataFrame:
    """A copy of the caller's frame, a file read with spreadsheet row numbers, or ids as one column (empty rows dropped)."""
    if isinstance(frame, (pd.DataFrame, Path)) or (isinstance(frame, str) and _looks_like_path(frame)):
        return read_table(frame, sheet=sheet, header_names=header_names)
    if isinstance(frame, pd.Series):
        return frame.to_frame(name="backd_order_id")
    return pd.DataFrame({"backd_order_id": as_id_list(frame)})


def _looks_like_path(text: str) -> bool:
    return Path(text).suffix.lower() in (".csv", ".txt", ".tsv", ".xlsx", ".xlsm", ".xls", ".parquet")


def _evidence(journal: Journal | str | Path | None, account: Account, op: Operation, rows: list[RowInput]) -> dict[str, list[Evidence]]:
    book = journal if isinstance(journal, Journal) else Journal.existing(journal)
    if book is None:
        return {}
    try:
        return book.evidence(account, op.name, [r.backd_order_id for r in rows if r.error is None])
    finally:
        if book is not journal:
            book.close()


def _read_orders(client: BackdClient, rows: list[RowInput], *, max_workers: int | None, progress: ProgressLike) -> dict[str, Order | BackdError]:
    batch = fetch_orders(client, [r.backd_order_id for r in rows if r.error is None], max_workers=max_workers, progress=progress)
    auth_failure = next((o for o in batch.orders.values() if isinstance(o, AuthenticationError)), None)
    if auth_failure is not None:
        raise auth_failure  # wrong keys or environment: nothing in this plan can be right
    return batch.orders


def request_key(op: Operation, values: dict) -> str:
    """What makes two actions on one order the same action: the request without the order id.

    Examples
    --------
    >>> request_key(OPERATIONS["refund"], {"backd_order_id": "BO-1", "merchant_order_id": "M-1", "refund_amount": Decimal("5.00")})
    '{"merchant_order_id":"M-1","refund_amount":"5.00"}'
    """
    request = {k: v for k, v in op.request(values).items() if k != "backd_order_id"}
    return json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)


def _plan_row(op: Operation, row: RowInput, read: Order | BackdError | None, evidence: list[Evidence], now: datetime,
              resend: bool) -> Verdict:
    if row.error is not None:
        return row.error
    if isinstance(read, NotFoundError):
        return Verdict(INVALID, f"row {row.label}, column backd_order_id: Backd has no order {row.backd_order_id}", "backd_order_id")
    if not isinstance(read, Order):
        return Verdict(FAILED, f"could not read the order: {read}")
    verdict = replace(op.plan(row.values, read, now, label=row.label), state=OrderState.of(read))
    same = [e for e in evidence if e.request_key == request_key(op, row.values)]
    did = doer(same)
    if verdict.outcome == ALREADY_DONE and (did or same):
        return replace(verdict, message=f"{verdict.message} (done by run {(did or same[-1]).run_id})")
    if verdict.outcome == PLANNED and did is not None:
        if resend:
            return replace(verdict, message=f"{verdict.message}; again: run {did.run_id} did this, and Backd no longer shows it")
        return replace(verdict, outcome=DRIFTED, message=(
            f"run {did.run_id} did this ({verdict.message}) on {chicago_text(did.finished_at, missing='an unknown date')}, but Backd no longer shows it "
            f"(the order is {read.status}{_active_text(read)}); so it is not sent. Plan again with {option_hint('resend')} to send it again"))
    return verdict


def written_since(on_order: list[Evidence], since: Evidence) -> list[Evidence]:
    """Our writes on an order recorded after ``since`` (oldest first) that landed or may have."""
    return [e for e in on_order[on_order.index(since) + 1:] if e.may_have_landed]


def doer(evidence: list[Evidence]) -> Evidence | None:
    """The run that did it: the latest ``done``, else the latest that found it done."""
    return next((e for e in reversed(evidence) if e.outcome == "done"), None) or next((e for e in reversed(evidence) if e.is_done), None)


def _active_text(order: Order) -> str:
    active = order.active_refund
    return f", active refund {format_money(active.amount)}" if active else ", no active refund" if order.refunds else ""


# -- the plan frame -----------------------------------------------------------------------------------------------------
def build_plan(op: Operation, rows: list[RowInput], verdicts: list[Verdict], info: PlanInfo) -> pd.DataFrame:
    """The plan frame for ``rows`` and their verdicts, with its ``plan_id`` computed and attached."""
    frame = verdict_frame(op, rows, verdicts)
    return attach_info(frame, replace(info, plan_id=compute_plan_id(frame, info)))


def verdict_frame(op: Operation, rows: list[RowInput], verdicts: list[Verdict]) -> pd.DataFrame:
    """Input values, outcome, message, money, lock time and planned-against state, one row per input row."""
    data: dict[str, Any] = {c: [row.values.get(c) for row in rows] for c in op.columns}
    data.update({
        "outcome": [v.outcome for v in verdicts],
        "message": [v.message for v in verdicts],
        "column": [v.column for v in verdicts],
        "amount": [v.amount for v in verdicts],
        "locked_at": [v.locked_at for v in verdicts],
    })
    for name, column in zip(OrderState.names(), STATE_COLUMNS):
        data[column] = [getattr(v.state, name) if v.state is not None else None for v in verdicts]
    return typed_plan_frame(pd.DataFrame(data, index=pd.Index([row.label for row in rows], name="row")), op)


def typed_plan_frame(frame: pd.DataFrame, op: Operation, *, only: Iterable[str] | None = None) -> pd.DataFrame:
    """One set of dtypes for plans made, loaded and executed: exact money, Chicago times, text as ``string``.

    ``only``: type just these columns (the rest are typed already: a result adds five columns to a typed plan).
    """
    columns = set(frame.columns if only is None else only)
    for column in columns.intersection((*op.amounts, "amount", *_STATE_MONEY)):
        frame[column] = pd.array([_money_or_none(v) for v in frame[column]], dtype=MONEY_DTYPE)
    for column in columns.intersection(("locked_at", "before_active_refund_locked_at")):
        frame[column] = _chicago(frame[column])
    if "outcome" in columns:
        frame["outcome"] = pd.Categorical(frame["outcome"], categories=OUTCOMES)
    text = [c for c in frame.columns if c in columns and c in (*_TEXT_RESULT_COLUMNS, *op.columns, *STATE_COLUMNS)
            and c not in (*op.amounts, *_STATE_MONEY, "before_active_refund_locked_at")]
    return as_plan_frame(frame.astype({c: "string" for c in text}) if text else frame)


def _chicago(values: pd.Series) -> pd.arrays.DatetimeArray:
    # .array: a Series here would align on its own index, not on the input's row labels
    return pd.to_datetime(pd.Series(list(values), dtype=object), utc=True).dt.tz_convert(CHICAGO).array


def _money_or_none(value: Any) -> Decimal | None:
    """Exact amounts stay; an invalid cell's text (its message shows it) is not shown as if it were money."""
    return value if isinstance(value, Decimal) else None


def _saved_money(value: Any) -> Decimal | None:
    """A saved plan's "12.50" back as money (only what save_plan writes: two-place decimals under 1e13)."""
    if value is None or (isinstance(value, float) and value != value):  # null in the file; a frame may hold it as NaN
        return None
    try:
        amount = parse_amount(str(value), allow_negative=True)
    except ValueError as exc:
        raise PlanError(f"the plan file has {str(value)[:40]!r} where an amount belongs ({exc})") from None
    return amount


def attach_info(frame: pd.DataFrame, info: PlanInfo) -> pd.DataFrame:
    frame["plan_id"] = pd.array([info.plan_id] * len(frame), dtype="string")
    frame.attrs[PLAN_ATTR] = info
    return frame


def compute_plan_id(frame: pd.DataFrame, info: PlanInfo) -> str:
    """SHA-256 over the operation, the account, the maker, the policy and every row's content and message.

    Not in it: approvals (added later) and the time it was made (the same plan made twice is one plan).
    """
    op = OPERATIONS[info.operation]
    columns = [*op.columns, "outcome", "message", "amount", "locked_at", *STATE_COLUMNS]
    rows = [[str(label), *(_canonical(v) for v in values)]
            for label, values in zip(frame.index, frame[columns].itertuples(index=False, name=None))]
    payload = {"format": FORMAT, "operation": op.name, "environment": info.environment, "base_url": info.base_url,
               "public_key": info.public_key, "created_by": info.created_by, "resend": info.resend, "undo_of": info.undo_of,
               "policy": [info.approvers_required, info.four_eyes_above], "columns": columns, "rows": rows}
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, str):  # most values: checked first, the rest as before
        return value
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        stamp = pd.Timestamp(value)
        return (stamp.tz_convert("UTC") if stamp.tzinfo else stamp).isoformat()
    return str(value)


# -- verifying, saving, loading, approving -------------------------------------------------------------------------------
def verify_plan(plan: pd.DataFrame) -> PlanInfo:
    """The plan's info, after checking that its rows still hash to its ``plan_id``; else :class:`PlanError`.

    Examples
    --------
    >>> verify_plan(plan).plan_id == plan.backd.plan_id             # doctest: +SKIP
    True
    """
    info = plan.attrs.get(PLAN_ATTR) if isinstance(plan, pd.DataFrame) else None
    if not isinstance(info, PlanInfo):
        raise PlanError("this is not a plan made by backd_ops (no plan information): make one with refund_orders(...) "
                        "or load a saved one with load_plan(path)")
    try:
        actual = compute_plan_id(plan, info)
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"this is not a complete plan ({exc}); make one with refund_orders(...) or load_plan(path)") from None
    if actual != info.plan_id or not plan["plan_id"].eq(info.plan_id).all():
        raise PlanError(f"this frame is no longer plan {info.plan_id[:12]}: its rows or values were changed after it was made "
                        "(filtered, edited or re-ordered). Make a new plan from the corrected input; nothing was sent")
    _check_consistent(plan, info)
    return info


def _check_consistent(plan: pd.DataFrame, info: PlanInfo) -> None:
    """What every plan we make satisfies; a hand-made one (re-hashed) that does not is refused."""
    planned = plan[plan["outcome"] == PLANNED]
    repeated = planned["backd_order_id"][planned["backd_order_id"].duplicated()]
    if len(repeated):
        raise PlanError(f"plan {info.plan_id[:12]} plans order {repeated.iloc[0]} more than once; one action per order per plan")
    if info.operation == "refund" and not planned["refund_amount"].eq(planned["amount"]).all():
        raise PlanError(f"plan {info.plan_id[:12]}: a planned refund's amount differs from its refund_amount")


def save_plan(plan: pd.DataFrame, path: str | Path) -> Path:
    """Write the plan as one JSON file (atomically); what :func:`load_plan` reads and any tool can inspect."""
    info = verify_plan(plan)
    document = {"format": FORMAT, **{k: v for k, v in asdict(info).items() if k != "approvals"},
                "approvals": [asdict(a) for a in info.approvals], "summary": _summary(plan),
                "rows": [{"row": _json_label(label), **{k: _canonical(v) for k, v in record.items() if k != "plan_id"}}
                         for label, record in zip(plan.index, plan.to_dict("records"))]}
    return _write_atomically(Path(path), json.dumps(document, indent=1, ensure_ascii=False))


def _json_label(label: Any) -> Any:
    """Labels are hashed as text; integers stay integers in the file so a loaded plan keeps its row numbers."""
    return int(label) if pd.api.types.is_integer(label) else str(label)


def _summary(plan: pd.DataFrame) -> dict[str, Any]:
    planned = plan[plan["outcome"] == PLANNED]
    return {"rows": len(plan), "planned_rows": len(planned), "planned_amount": str(_total(planned["amount"])),
            "sentence": plan_sentence(plan)}


def _write_atomically(path: Path, text: str) -> Path:
    try:
        write_atomically(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot write the plan to {path}: {exc.strerror or exc}") from None
    return path


def load_plan(path: str | Path) -> pd.DataFrame:
    """A saved plan, verified against its ``plan_id`` (an edited file is refused with :class:`PlanError`).

    Examples
    --------
    >>> plan = load_plan("refund-plan.json")                        # doctest: +SKIP
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlanError(f"{path}: cannot read the plan ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise PlanError(f"{path}: not a backd_ops plan file (format {FORMAT!r} expected)")
    try:
        info = PlanInfo(**{k: document[k] for k in PlanInfo.__dataclass_fields__ if k in document and k not in _NESTED},
                        approvals=tuple(Approval(**a) for a in document.get("approvals", [])),
                        table=_saved_table(document.get("table")),
                        columns=tuple(ColumnMatch(**m) for m in document.get("columns") or ()),
                        unused_columns=tuple(document.get("unused_columns") or ()))
        op = info.op
        records = document["rows"]
        frame = pd.DataFrame.from_records(records, columns=["row", *op.columns, "outcome", "message", "column", "amount",
                                                            "locked_at", *STATE_COLUMNS])
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"{path}: the plan file is incomplete ({exc})") from None
    try:
        for column in (*op.amounts, "amount", *_STATE_MONEY):
            frame[column] = [_saved_money(v) for v in frame[column]]
        frame = typed_plan_frame(frame.set_index("row"), op)
    except (ValueError, TypeError, ArithmeticError, pa.ArrowException) as exc:
        raise PlanError(f"{path}: the plan file has a value that is not what backd_ops writes ({str(exc)[:200]})") from None
    verify_plan(attach_info(frame, info))
    return frame


_NESTED = ("approvals", "table", "columns", "unused_columns")


def _saved_table(saved: dict | None) -> TableSource | None:
    return None if not saved else TableSource(**{**saved, "skipped": tuple(saved.get("skipped") or ())})


def approve_plan(plan_or_path: pd.DataFrame | str | Path, approved_by: str, *, journal: Journal | str | Path | None = None,
                 at: datetime | None = None) -> pd.DataFrame:
    """Record that ``approved_by`` approved this exact plan, in the journal (what execution counts) and in the plan
    file if given a path (what people read).

    ``approved_by`` must be the person running this (``$BACKD_OPS_USER``, else the OS user): an approval is
    given, not entered on someone's behalf. An edited plan cannot be approved; approving again is harmless.

    Examples
    --------
    >>> approved = approve_plan("refund-plan.json", approved_by="maria@finance")   # doctest: +SKIP
    """
    name = str(approved_by or "").strip()
    if not name:
        raise InputError(f"the approver's name is empty: give it with {option_hint('approver')}")
    if not same_person(name, current_user()):
        raise ApprovalError(f"you are {current_user()!r}: an approval is given by the person running this, so approve as "
                            f"yourself (or set BACKD_OPS_USER to the name you sign with); nothing was recorded")
    plan = load_plan(plan_or_path) if isinstance(plan_or_path, (str, Path)) else plan_or_path.copy()
    info = verify_plan(plan)
    stamp = (at or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(timespec="seconds")
    if not any(same_person(name, given) for given in info.approved_by()):
        info = replace(info, approvals=(*info.approvals, Approval(name, stamp)))
    plan.attrs[PLAN_ATTR] = info
    record_plan(plan, info, journal, approvals=[a for a in info.approvals if same_person(a.approved_by, name)])
    if isinstance(plan_or_path, (str, Path)):
        save_plan(plan, plan_or_path)
    return plan


def record_plan(plan: pd.DataFrame, info: PlanInfo, journal: Journal | str | Path | None, *,
                approvals: Iterable[Approval] = ()) -> None:
    """Put the plan (and approvals) in the journal, opening and closing it if given a path.

    ``info`` is what :func:`verify_plan` returned for ``plan`` (a thousand-row plan takes ~50 ms to hash again).
    """
    book = journal if isinstance(journal, Journal) else Journal(journal)
    try:
        planned = plan[plan["outcome"] == PLANNED]
        book.record_plan(plan_id=info.plan_id, operation=info.operation, account=info.account, created_at=info.created_at,
                         created_by=info.created_by, rows=len(plan), planned_rows=len(planned),
                         planned_amount=str(_total(planned["amount"])))
        for approval in approvals:
            book.record_approval(info.plan_id, approval.approved_by, approval.approved_at)
    finally:
        if book is not journal:
            book.close()


# -- words for people ------------------------------------------------------------------------------------------------------
def plan_sentence(plan: pd.DataFrame, operation: str | None = None, *, now: datetime | None = None) -> str:
    """Exactly what executing ``plan`` will do, net of replaced refunds, in one sentence.

    Examples
    --------
    >>> plan_sentence(plan)                      # doctest: +SKIP
    'Refund 3 orders, $60.00 (replacing 1 unlocked request of $500.00: net -$440.00), locks at 17:00 CST today.'
    """
    info = plan.attrs.get(PLAN_ATTR)
    operation = operation or (info.operation if isinstance(info, PlanInfo) else _guess_operation(plan))
    planned = plan[plan["outcome"] == PLANNED]
    count, total = len(planned), _total(planned["amount"])
    text = f"{OPERATIONS[operation].verb} {count} order{'' if count == 1 else 's'}, {format_money(total)}"
    if operation == "refund" and count:
        text += _replacement_text(planned, total)
        if planned["locked_at"].notna().any():
            text += f", locks at {_when(planned['locked_at'].min(), now)}"
    if isinstance(info, PlanInfo) and info.undo_of and count:
        staying = int(planned["message"].str.contains("stays declined", regex=False).sum())
        if staying:
            text += f" ({staying} of them replaced an earlier request, which stays declined)"
    skipped = plan.loc[plan["outcome"] != PLANNED, "outcome"].astype(str).value_counts()
    if len(skipped):
        text += ". Not sent: " + ", ".join(f"{n} {o.replace('_', ' ')}" for o, n in skipped.items())
    return text + "."


def result_sentence(result: pd.DataFrame, operation: str | None = None) -> str:
    """What executing did, in the past tense, in one sentence.

    Examples
    --------
    >>> result_sentence(result)                  # doctest: +SKIP
    'Refunded 4 orders, $60.00. Already done: 1. Not sent: 1 drifted, 2 invalid.'
    """
    info = result.attrs.get(PLAN_ATTR)
    made = result.attrs.get(RESULT_ATTR, {}).get("operation") or (info.operation if isinstance(info, PlanInfo) else None)
    op = OPERATIONS[operation or made or _guess_operation(result)]
    outcomes = result["outcome"].astype(str)
    done = result[outcomes == "done"]
    text = f"{op.past} {len(done)} order{'' if len(done) == 1 else 's'}, {format_money(_total(done['amount']))}"
    counts = outcomes.value_counts()
    if counts.get("already_done"):
        text += f". Already done: {counts['already_done']}"
    not_sent = [f"{counts[o]} {o}" for o in ("drifted", "invalid", "failed") if counts.get(o)]
    if not_sent:
        text += ". Not sent: " + ", ".join(not_sent)
    if counts.get("uncertain"):
        text += f". Uncertain: {counts['uncertain']} (run the plan again to settle them)"
    return text + "."


def _replacement_text(planned: pd.DataFrame, total: Decimal) -> str:
    if "before_active_refund_amount" not in planned.columns:
        return ""
    replaced = planned["before_active_refund_amount"].dropna()
    if replaced.empty:
        return ""
    gross = _total(replaced)
    noun = "request" if len(replaced) == 1 else "requests"
    return f" (replacing {len(replaced)} unlocked {noun} of {format_money(gross)}: net {format_money(total - gross)})"


def _guess_operation(plan: pd.DataFrame) -> str:
    for name, op in OPERATIONS.items():
        if set(op.required) <= set(plan.columns) and set(op.amounts) & set(plan.columns):
            return name
    return "cancel"


def _total(values: pd.Series) -> Decimal:
    return sum((Decimal(str(v)) for v in values.dropna()), Decimal("0.00"))


def _when(moment: pd.Timestamp, now: datetime | None) -> str:
    local = moment.tz_convert(CHICAGO)
    today = (now or datetime.now(CHICAGO)).astimezone(CHICAGO).date()
    day = {0: "today", 1: "tomorrow"}.get((local.date() - today).days, local.strftime("%a %Y-%m-%d"))
    return f"{local:%H:%M} {local.tzname()} {day}"


def confirmation_word(plan: pd.DataFrame, operation: str | None = None) -> str:
    """What the analyst types to enable execute: the operation and the count of planned rows, e.g. ``REFUND 123``."""
    info = plan.attrs.get(PLAN_ATTR)
    name = operation or (info.operation if isinstance(info, PlanInfo) else "execute")
    return f"{name.upper()} {int((plan['outcome'] == PLANNED).sum())}"


def summarize_outcomes(result: pd.DataFrame) -> pd.DataFrame:
    """Rows and money per outcome (every outcome listed, zeros included), with a total row.

    Examples
    --------
    >>> summarize_outcomes(refund_orders(client, frame))          # doctest: +SKIP
    """
    outcome = pd.Categorical(result["outcome"].astype(str), categories=OUTCOMES)
    grouped = result.assign(outcome=outcome).groupby("outcome", observed=False)
    summary = pd.DataFrame({"rows": grouped.size(), "amount": grouped["amount"].sum()})
    summary.loc["total"] = [int(summary["rows"].sum()), summary["amount"].sum()]
    summary["rows"] = summary["rows"].astype("int64")
    summary["amount"] = summary["amount"].astype(MONEY_DTYPE)
    return as_plan_frame(summary)  # shown with money separators


def needs_attention(result: pd.DataFrame) -> pd.DataFrame:
    """Rows an analyst must look at: drifted, invalid, failed or uncertain."""
    return result[result["outcome"].isin([DRIFTED, INVALID, FAILED, "uncertain"])]


@pd.api.extensions.register_dataframe_accessor("backd")
class PlanAccessor:
    """``plan.backd``: questions about a plan or a result (``summary()``, ``needs_attention()``) and the plan's
    identity (``plan_id``, ``info``, ``sentence()``), ``save(path)`` and ``approve(by)``."""

    def __init__(self, frame: pd.DataFrame) -> None:
        if "outcome" not in frame.columns:
            raise AttributeError("not a backd_ops plan or result (no outcome column)")
        self._frame = frame

    @property
    def info(self) -> PlanInfo:
        return verify_plan(self._frame)

    @property
    def plan_id(self) -> str:
        return self.info.plan_id

    def summary(self) -> pd.DataFrame:
        return summarize_outcomes(self._frame)

    def by_outcome(self, outcome: str) -> pd.DataFrame:
        return self._frame[self._frame["outcome"] == outcome]

    def needs_attention(self) -> pd.DataFrame:
        return needs_attention(self._frame)

    def sentence(self, *, now: datetime | None = None) -> str:
        return plan_sentence(self._frame, now=now)

    def save(self, path: str | Path) -> Path:
        """Save the plan as JSON (see :func:`load_plan`)."""
        return save_plan(self._frame, path)

    def to_csv(self, path: str | Path) -> Path:
        """The table as CSV for people (formulas neutralised); not a plan: use ``save`` to keep the plan."""
        return write_csv(self._frame, path, index=True)

    def approve(self, approved_by: str, *, journal: Journal | str | Path | None = None) -> pd.DataFrame:
        return approve_plan(self._frame, approved_by, journal=journal)

    @property
    def all_settled(self) -> bool:
        """True when no row is ``uncertain`` (nothing is left in doubt)."""
        return not (self._frame["outcome"] == "uncertain").any()
