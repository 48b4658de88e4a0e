"""Reconciliation: the merchant's ledger against Backd, as a ``Reconciliation`` you can question, track and sign off.

Like datacompy's ``Compare``: one comparison (:mod:`backd_ops.compare`, vectorised, in integer cents) yields
``.discrepancies`` (one row per finding, with kind, severity, values, difference, money at stake and an action),
``.summary`` (per kind, with a total that equals the table's column), ``.matched``, and suggested corrections
that feed straight into the bulk dry runs. Every reconciliation carries a :class:`RunRecord` saying what was
compared (account, ledger file and hash, ``as_of``, parameters, who, tool version); with a findings store it
also says what changed since the last run (:mod:`backd_ops.findings`).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import report
from .arrowtools import IdKeys, arrow_text
from .client import BackdClient
from .compare import KINDS, MONEY_KINDS, SEVERITY_ORDER, TIME_KINDS, compare
from .config import TOOL_VERSION, Account, current_user
from .errors import InputError, option_name
from .findings import ANNOTATION_STATUSES, Changes, FindingsStore
from .ledger import describe_ledger, load_ledger
from .locking import CHICAGO
from .models import OrderStatus, cents_to_money
from .money import to_cents
from .orderstore import OrderStore, default_order_store
from .refresh import AUDIT_SHARE, source_orders
from .progress import ProgressLike
from .tables import read_table, write_csv

__all__ = ["KINDS", "LedgerSource", "Reconciliation", "RunRecord", "load_snapshot", "reconcile"]

CURRENCY = "USD"
DISCREPANCY_COLUMNS = ["kind", "severity", "row", "backd_order_id", "merchant_order_id", "ledger_value", "backd_value",
                       "difference", "at_stake", "exposure", "action"]
TRACKED_COLUMNS = ["change", "first_seen", "age_days", "values_changed", "note", "owner", "note_status", "written_by", "suppressed"]
_SNAPSHOT_ACCOUNT = b"backd_ops.account"


@dataclass(frozen=True)
class LedgerSource:
    """What ledger was compared: its file name (or ``DataFrame``), SHA-256 of its bytes (or content) and rows."""

    name: str
    sha256: str
    rows: int
    how_read: str = ""
    """How the file was read and which header became which column (``describe_ledger``)."""


@dataclass(frozen=True)
class RunRecord:
    """What a reconciliation compared, when, how and by whom: the header of every artifact it leaves."""

    run_id: str
    account: Account | None
    ledger: LedgerSource
    as_of: datetime
    parameters: dict[str, Any]
    orders_live: int
    orders_from_snapshot: int
    coverage: str
    orders_from_store: int = 0
    sourcing: str = ""
    profiles: dict[str, Account] = field(default_factory=dict)
    """Profile name → account, when the run used named profiles (several accounts: ``account`` is None)."""
    run_by: str = field(default_factory=current_user)
    tool_version: str = TOOL_VERSION
    currency: str = CURRENCY

    @property
    def sandbox(self) -> bool:
        """Not production: a sandbox account (Backd's or the embedded one), or an account we cannot name."""
        if self.profiles and self.account is None:
            return all(a.environment != "production" for a in self.profiles.values())
        return self.account is None or self.account.environment != "production"

    def about(self) -> dict[str, str]:
        """Human labels → values, in the order reports show them."""
        account = self.account
        as_of = self.as_of.astimezone(CHICAGO)
        accounts = [account] if account else list(self.profiles.values())
        return {
            "Run id": self.run_id,
            "Environment": ("SANDBOX: " if self.sandbox else "")
                           + (", ".join(sorted({a.environment for a in accounts})) or "unknown (offline snapshot)"),
            "Backd host": ", ".join(sorted({a.host for a in accounts})) or "—",
            "Account (public key)": ", ".join(a.key_hint for a in accounts) or "—",
            **({"Profiles": "; ".join(f"{name}: {a.describe()}" for name, a in self.profiles.items())} if self.profiles else {}),
            "Ledger file": self.ledger.name,
            "Ledger SHA-256": self.ledger.sha256,
            "Ledger rows": f"{self.ledger.rows:,}",
            **({"Ledger read as": self.ledger.how_read} if self.ledger.how_read else {}),
            "As of (Chicago)": as_of.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "As of (UTC)": as_of.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "Currency": self.currency,
            "Orders read live from Backd": f"{self.orders_live:,}",
            "Orders from the order store": f"{self.orders_from_store:,}",
            "Orders from a snapshot": f"{self.orders_from_snapshot:,}",
            "How orders were read": self.sourcing,
            "Orders Backd has that the ledger lacks": self.coverage,
            "Parameters": ", ".join(f"{k}={v}" for k, v in self.parameters.items()),
            "Tool version": f"backd_ops {self.tool_version}",
            "Run by": self.run_by,
        }

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["account"] = None if self.account is None else {**asdict(self.account), "public_key": self.account.key_hint}
        data["profiles"] = {name: {**asdict(a), "public_key": a.key_hint} for name, a in self.profiles.items()}
        data["as_of"] = self.as_of.isoformat()
        data["as_of_utc"] = self.as_of.astimezone(timezone.utc).isoformat()
        data["sandbox"] = self.sandbox
        return data


def reconcile(
    ledger: pd.DataFrame | str | Path,
    orders: pd.DataFrame | str | Path | None = None,
    *,
    client: BackdClient | None = None,
    tolerance: float | str = "0.01",
    as_of: datetime | None = None,
    stale_days: float = 14,
    lock_window_hours: float = 24,
    column_map: Mapping[str, str] | None = None,
    status_map: Mapping[str, str] | None = None,
    decimal: str = ".",
    max_workers: int | None = None,
    progress: ProgressLike = True,
    sheet: str | None = None,
    findings: FindingsStore | str | Path | bool = False,
    run_id: str | None = None,
    refresh: str = "all",
    store: OrderStore | str | Path | bool = True,
    audit_share: float = AUDIT_SHARE,
    audit_seed: int | None = None,
) -> Reconciliation:
    """Compare the ledger with Backd: live with ``client``, or offline with a saved ``orders`` snapshot.

    Differences up to ``tolerance`` (in currency units, compared in exact cents) are not findings. ``as_of``
    must be timezone-aware (default: now). ``findings=True`` (or a store or its folder) tracks the findings
    across runs: ``rec.changes`` says what is new, still open and resolved since the last run.
    ``refresh`` says which orders are read live (:mod:`backd_ops.refresh`): ``"all"``, ``"changed"`` (only what can
    have changed, plus an audit sample of ``audit_share`` of the final ones) or ``"none"`` (the order store only).
    The ledger is read by :func:`~backd_ops.ledger.load_ledger` (``column_map``, ``status_map``, ``decimal``, ``sheet``).

    Examples
    --------
    >>> rec = reconcile("ledger.csv", client=client)            # doctest: +SKIP
    >>> rec.summary                                              # doctest: +SKIP
    >>> refund_orders(client, rec.suggested_refunds())           # a dry run, as always  # doctest: +SKIP
    """
    moment, tolerance_cents = _check_parameters(as_of, tolerance, stale_days, lock_window_hours)
    source = ledger_source(ledger)
    typed = ledger if _is_loaded(ledger) else load_ledger(ledger, column_map, status_map, decimal=decimal, sheet=sheet)
    source = replace(source, rows=len(typed), how_read=describe_ledger(typed))
    if orders is None and client is None:
        raise InputError("reconcile needs either client= (to read Backd) or orders= (a saved snapshot)")
    snapshot_account = snapshot_account_of(orders) if orders is not None and not isinstance(orders, pd.DataFrame) else None
    live = orders is None
    tracker = _tracker(findings)
    sourcing = None
    if live:
        keeper = default_order_store() if store is True else (OrderStore(store) if isinstance(store, (str, Path)) else store or None)
        open_ids = tracker.open_ids(client.account) if tracker is not None else []
        sourcing = source_orders(client, typed, refresh=refresh, store=keeper, open_finding_ids=open_ids, audit_share=audit_share,
                                 audit_seed=audit_seed, max_workers=max_workers, progress=progress)
        orders = sourcing.orders
    snapshot = load_snapshot(orders, dedupe=False)
    keys = IdKeys.build(typed["backd_order_id"], snapshot["backd_order_id"])  # the one hash pass over the ids
    keep = keys.last_orders()
    if not keep.all():  # the same order twice in a snapshot: its last row is the truth
        snapshot, keys = snapshot[keep].reset_index(drop=True), keys.only_orders(keep)
    params = {"tolerance": str(tolerance), "stale_days": stale_days, "lock_window_hours": lock_window_hours,
              **({"refresh": refresh} if live else {})}
    found = compare(typed, snapshot, tolerance_cents=tolerance_cents, as_of=moment, stale_days=stale_days,
                    lock_window_hours=lock_window_hours, check_missing_in_ledger=not live,
                    store_drift=sourcing.drifted if sourcing is not None else None, keys=keys)
    account = client.account if client is not None else snapshot_account
    record = RunRecord(run_id or uuid.uuid4().hex[:8], account, source, moment, params,
                       orders_live=sourcing.live if sourcing else 0, orders_from_snapshot=0 if live else len(snapshot),
                       coverage=_coverage(live, snapshot), orders_from_store=sourcing.from_store if sourcing else 0,
                       sourcing=sourcing.describe() if sourcing else "offline: a saved snapshot",
                       profiles={client.settings.profile: account} if client is not None and client.settings.profile else {})
    rec = Reconciliation(typed, snapshot, found, record)
    if tracker is not None:
        rec.track(tracker)
    return rec


def _tracker(findings: FindingsStore | str | Path | bool | None) -> FindingsStore | None:
    if findings is False or findings is None:
        return None
    return findings if isinstance(findings, FindingsStore) else FindingsStore(None if findings is True else findings)


def _check_parameters(as_of: datetime | None, tolerance: float | str, stale_days: float, lock_window_hours: float) -> tuple[datetime, int]:
    if as_of is not None and (as_of.tzinfo is None or as_of.utcoffset() is None):
        raise InputError(f"as_of {as_of.isoformat()} has no time zone: give one (e.g. 2026-04-14T09:00:00-05:00); "
                         "a naive time would be read in this machine's zone")
    cents, problems = to_cents(pd.Series([str(tolerance)]))
    if problems.iloc[0] or pd.isna(cents.iloc[0]):
        raise InputError(f"{option_name('tolerance')} {tolerance!r} must be an amount with at most 2 decimals")
    if int(cents.iloc[0]) < 0:
        raise InputError(f"{option_name('tolerance')} {tolerance!r} is negative: it is the largest difference that is not a finding")
    for name, value in (("stale_days", stale_days), ("lock_window_hours", lock_window_hours)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise InputError(f"{name} must be a number of at least 0, got {value!r}")
    return (as_of or datetime.now(CHICAGO)).astimezone(CHICAGO), int(cents.iloc[0])


def _coverage(live: bool, snapshot: pd.DataFrame) -> str:
    if live:
        return ("not checked: a live run reads only the ledger's orders, and Backd has no list endpoint "
                "(reconcile against a snapshot or the order store to check)")
    return f"checked against {len(snapshot):,} orders in the snapshot"


def ledger_source(ledger: pd.DataFrame | str | Path) -> LedgerSource:
    """Name, SHA-256 and rows of a ledger file (its bytes) or frame (its content)."""
    if isinstance(ledger, pd.DataFrame):
        return LedgerSource(str(ledger.attrs.get("source", "(in-memory DataFrame)")), _frame_digest(ledger), len(ledger))
    path = Path(ledger)
    if not path.is_file():
        raise InputError(f"no such ledger file: {path}")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return LedgerSource(path.name, digest.hexdigest(), -1)


def _frame_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's content as Arrow writes it (columnar and fast, unlike hashing row by row)."""
    import pyarrow as pa

    table = pa.Table.from_pandas(frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object}), preserve_index=True)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(memoryview(sink.getvalue())).hexdigest()


def _is_loaded(ledger: Any) -> bool:
    return isinstance(ledger, pd.DataFrame) and {"order_total_cents", "backd_status"} <= set(ledger.columns)


def load_snapshot(orders: pd.DataFrame | str | Path, *, dedupe: bool = True) -> pd.DataFrame:
    """A Backd snapshot (``find_orders`` frame, or its saved Parquet/CSV) with exact cents columns added.

    ``dedupe``: keep only the last row of an order that appears twice (``reconcile`` does this itself, on the
    integer keys it needs anyway).
    """
    frame = read_table(orders) if not isinstance(orders, pd.DataFrame) else orders.copy()
    if "backd_order_id" not in frame.columns:
        raise InputError("the orders snapshot has no backd_order_id column")
    for column in ("status", "merchant_order_id", "error"):
        if column not in frame.columns:
            frame[column] = pd.NA
    for money in ("order_total", "refunded_amount", "active_refund_amount"):
        missing = pd.Series(pd.NA, index=frame.index, dtype="Int64")
        frame[f"{money}_cents"] = to_cents(frame[money])[0] if money in frame.columns else missing
    for moment in ("create_date", "placed_date", "active_refund_locked_at"):
        frame[moment] = pd.to_datetime(frame[moment], utc=True).dt.tz_convert(CHICAGO) if moment in frame.columns else pd.NaT
    if not dedupe or pc.count_distinct(arrow_text(frame["backd_order_id"])).as_py() == len(frame):
        return frame.reset_index(drop=True)  # a find_orders frame or a saved snapshot: already one row per order
    return frame.drop_duplicates("backd_order_id", keep="last").reset_index(drop=True)


def snapshot_account_of(path: str | Path) -> Account | None:
    """The account a saved snapshot was read from (kept in its Parquet metadata), if it says."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, ValueError):
        return None
    raw = metadata.get(_SNAPSHOT_ACCOUNT)
    return Account(**json.loads(raw)) if raw else None


class Reconciliation:
    """The result of :func:`reconcile`: questions (``summary``, ``discrepancies``, ``matched``), changes, notes, exports."""

    def __init__(self, ledger: pd.DataFrame, orders: pd.DataFrame, findings: pd.DataFrame, record: RunRecord) -> None:
        self.ledger, self.orders, self._findings, self.record = ledger, orders, findings, record
        self.changes: Changes | None = None
        self.store: FindingsStore | None = None
        self._drawn: tuple[str, dict[str, str]] | None = None  # the charts last drawn, and the data they show

    def __repr__(self) -> str:
        tracked = f", new={self.changes.counts['new']}, resolved={self.changes.counts['resolved']}" if self.changes else ""
        return (f"Reconciliation(run_id={self.record.run_id!r}, ledger_rows={len(self.ledger)}, findings={len(self._findings)}, "
                f"match_rate={self.match_rate:.1%}{tracked})")

    @property
    def params(self) -> dict[str, Any]:
        return {**self.record.parameters, "as_of": self.record.as_of.isoformat()}

    # -- questions ------------------------------------------------------------------------------------------------
    @property
    def discrepancies(self) -> pd.DataFrame:
        """One row per finding, most severe and most money first; ``at_stake`` adds up (see :mod:`backd_ops.compare`)."""
        out = self._findings.copy()
        for cents in ("difference", "at_stake", "exposure"):
            out[cents] = _to_money(out[f"{cents}_cents"])
        out["action"] = pd.Categorical(out["kind"], categories=list(KINDS)).map({k: v.action for k, v in KINDS.items()}).astype("string")
        for column in ("kind", "backd_order_id", "merchant_order_id", "ledger_value", "backd_value", "profile"):
            if column in out.columns:
                out[column] = out[column].astype("string")
        columns = ((["profile"] if "profile" in out.columns else []) + DISCREPANCY_COLUMNS
                   + ([c for c in TRACKED_COLUMNS if c in out.columns] if self.changes else []))
        return out[columns]

    @property
    def matched(self) -> pd.DataFrame:
        """Ledger rows with no finding at all (by position: any index works, duplicates too)."""
        hit = np.zeros(len(self.ledger), dtype=bool)
        hit[self._findings["pos"].dropna().astype("int64").to_numpy()] = True
        return self.ledger[~hit]

    @property
    def match_rate(self) -> float:
        return len(self.matched) / len(self.ledger) if len(self.ledger) else 1.0

    @property
    def summary(self) -> pd.DataFrame:
        """Per kind: label, severity, findings, distinct ledger rows, money at stake; every kind, and a total row."""
        grouped = self._findings.groupby("kind", observed=True)
        frame = pd.DataFrame({
            "label": pd.Series({k: v.label for k, v in KINDS.items()}),
            "severity": pd.Series({k: v.severity for k, v in KINDS.items()}),
            "findings": grouped.size(),
            "rows": grouped["pos"].nunique(),
            "at_stake_cents": grouped["at_stake_cents"].sum(min_count=1),
        }).reindex(list(KINDS))
        frame[["findings", "rows"]] = frame[["findings", "rows"]].fillna(0).astype("int64")
        frame.loc["total"] = ["Total", "", int(frame["findings"].sum()), int(self._findings["pos"].nunique()),
                              frame["at_stake_cents"].fillna(0).sum()]
        frame[["findings", "rows"]] = frame[["findings", "rows"]].astype("int64")
        frame["at_stake"] = _to_money(frame.pop("at_stake_cents").fillna(0))
        frame.index.name = "kind"
        return frame

    @property
    def at_stake(self) -> Any:
        """Money at stake over all findings (each order once)."""
        return self.summary.loc["total", "at_stake"]

    @property
    def stats(self) -> dict[str, Any]:
        """Headline numbers: ledger rows, matched, match rate, findings by severity, money at stake."""
        by_severity = self._findings["severity"].value_counts().reindex(list(SEVERITY_ORDER), fill_value=0)
        return {"ledger_rows": len(self.ledger), "matched_rows": len(self.matched), "match_rate": round(self.match_rate, 6),
                "findings": len(self._findings), **{f"{k}_findings": int(v) for k, v in by_severity.items()},
                "at_stake": str(self.at_stake), **self.params}

    def has_findings(self, kinds: Iterable[str] | None = None) -> bool:
        """Whether any finding of ``kinds`` (default: any kind) counts; what ``fail_on`` checks.

        A finding noted ``no_action_needed`` does not count until its values change.
        """
        return any(self.counting(kinds).values())

    def counting(self, kinds: Iterable[str] | None = None) -> dict[str, int]:
        """Per kind: findings that count toward ``fail_on`` (those noted ``no_action_needed``, values unchanged, do not)."""
        chosen = check_kinds(list(KINDS) if kinds is None else kinds)
        counts = {}
        for kind in chosen:
            rows = self._findings[self._findings["kind"] == kind]
            if self.changes is not None and "suppressed" in rows.columns:
                rows = rows[~rows["suppressed"].fillna(False).astype(bool)]
            counts[kind] = len(rows)
        return counts

    def suggested_refunds(self) -> pd.DataFrame:
        """Refunds that bring Backd up to the ledger's refunded amount (confirmed orders, unlocked): feed to ``refund_orders``."""
        rows = self._findings[self._findings["kind"] == "refunded_amount_mismatch"]
        merged = rows.merge(self.orders, on="backd_order_id", how="left", suffixes=("", "_backd"))
        ledger_refunded = self.ledger["refunded_cents"].to_numpy()[merged["pos"].astype("int64").to_numpy()]
        held = merged["refunded_amount_cents"].fillna(0) - merged["active_refund_amount_cents"].fillna(0)
        target = pd.Series(ledger_refunded, index=merged.index).astype("Int64") - held
        ok = (merged["status"] == OrderStatus.CONFIRMED).fillna(False) & (merged["difference_cents"] < 0).fillna(False) & (target > 0).fillna(False)
        ok &= ~(merged["active_refund_locked_at"] <= pd.Timestamp(self.record.as_of)).fillna(False)
        chosen = merged[ok]
        return pd.DataFrame({"backd_order_id": chosen["backd_order_id"].astype("string").to_numpy(),
                             "merchant_order_id": chosen["merchant_order_id_backd"].astype("string").to_numpy(),
                             "refund_amount": _to_money(target[ok]).to_numpy()})

    def suggested_cancels(self) -> pd.DataFrame:
        """Orders the ledger has canceled that Backd still has as ``order_placed``: feed to ``cancel_orders``."""
        rows = self._findings[self._findings["kind"] == "status_mismatch"]
        ledger_status = self.ledger["backd_status"].to_numpy()[rows["pos"].astype("int64").to_numpy()]
        chosen = rows[(pd.Series(ledger_status, index=rows.index).str.contains("cancel")) & (rows["backd_value"] == OrderStatus.PLACED)]
        return pd.DataFrame({"backd_order_id": chosen["backd_order_id"].astype("string").to_numpy()})

    # -- across nights ----------------------------------------------------------------------------------------------
    def track(self, store: FindingsStore | str | Path | bool = True) -> Changes:
        """Record tonight's findings in the store: each becomes new, stays open or is resolved since the last run."""
        if self.record.account is None:
            raise InputError("findings are tracked per account: reconcile with client=, or a snapshot saved by backd_ops")
        self.store = store if isinstance(store, FindingsStore) else FindingsStore(None if store is True else store)
        self.changes = self.store.track(self.record.account, self._findings, run_id=self.record.run_id, as_of=self.record.as_of)
        tracked = self.changes.for_rows([c for c in TRACKED_COLUMNS if c in self.changes.current.columns])
        self._findings = pd.concat([self._findings.reset_index(drop=True).drop(columns=tracked.columns, errors="ignore"), tracked], axis=1)
        return self.changes

    def annotate(self, order: str, kind: str, *, note: str, status: str = "investigating", owner: str | None = None) -> None:
        """Keep a note on a finding (``order``: its backd_order_id, or ``merchant:<id>``); it persists across runs.

        ``status="no_action_needed"`` stops the finding counting toward ``fail_on`` until its values change.

        Examples
        --------
        >>> rec.annotate("BO-DEMO-000017", "status_mismatch", note="canceled by phone; Backd ticket 4411",
        ...              owner="ana", status="no_action_needed")          # doctest: +SKIP
        """
        if self.changes is None or self.store is None:
            raise InputError("annotate needs a tracked reconciliation: reconcile(..., findings=True)")
        if status not in ANNOTATION_STATUSES:
            raise InputError(f"status must be one of {', '.join(ANNOTATION_STATUSES)}, got {status!r}")
        current = self.changes.current
        match = current[(current["order_key"] == order) & (current["kind"] == kind)]
        if match.empty:
            raise InputError(f"no {kind} finding for {order} in this run; the findings are in rec.discrepancies")
        self.store.annotate(self.record.account, order, kind, note=note, owner=owner, status=status,  # type: ignore[arg-type]
                            finding=match)

    # -- exports --------------------------------------------------------------------------------------------------
    def to_csv(self, directory: str | Path) -> dict[str, Path]:
        """``discrepancies.csv``, ``summary.csv``, ``suggested_refunds.csv``, ``suggested_cancels.csv`` (formulas neutralised)."""
        out = Path(directory)
        files = {
            "discrepancies": write_csv(self.discrepancies, out / "discrepancies.csv"),
            "summary": write_csv(self.summary, out / "summary.csv", index=True),
            "suggested_refunds": write_csv(self.suggested_refunds(), out / "suggested_refunds.csv"),
            "suggested_cancels": write_csv(self.suggested_cancels(), out / "suggested_cancels.csv"),
        }
        if self.changes is not None:
            files["changes"] = write_csv(self.changes_table(), out / "changes.csv")
        return files

    def changes_table(self) -> pd.DataFrame:
        """Tonight's new findings and the ones resolved since the last run (empty when not tracked)."""
        if self.changes is None:
            return pd.DataFrame(columns=["change", "kind", "order", "ledger_value", "backd_value", "at_stake"])
        current = self.changes.current[self.changes.current["change"] == "new"].assign(change="new")
        resolved = self.changes.resolved.assign(change="resolved since last run")
        both = pd.concat([current, resolved], ignore_index=True)
        table = pd.DataFrame({"change": both["change"], "kind": both["kind"].map(lambda k: KINDS[k].label), "order": both["order_key"],
                              "ledger_value": both["ledger_value"], "backd_value": both["backd_value"],
                              "at_stake": _to_money(both["at_stake_cents"])})
        if "profile" in both.columns:  # several accounts: an order key is unique only within its account
            table.insert(2, "profile", both["profile"])
        text = [c for c in ("change", "kind", "profile", "order", "ledger_value", "backd_value") if c in table.columns]
        table[text] = table[text].astype(object).where(table[text].notna(), "")
        return table

    def changes_sentence(self) -> str:
        """What changed since the last run, in one sentence."""
        if self.changes is None:
            return "Findings are not tracked across runs (reconcile with findings=True)."
        counts, previous = self.changes.counts, self.changes.previous_run_id
        since = f"since run {previous}" if previous else "(the first tracked run)"
        return (f"{counts['new']:,} new, {counts['open']:,} still open ({counts['open_values_changed']:,} with changed values), "
                f"{counts['resolved']:,} resolved {since}.")

    def to_excel(self, path: str | Path) -> Path:
        """One workbook for a controller: About this run, summary, changes, discrepancies, suggestions; numbers as numbers."""
        return report.write_workbook(path, about=self.record.about(), sandbox=self.record.sandbox, sheets={
            "Summary": report.summary_for_people(self.summary),
            "Changes since last run": self.changes_table(),
            "Discrepancies": report.discrepancies_for_people(self.discrepancies, self._findings),
            "Suggested refunds": self.suggested_refunds(),
            "Suggested cancels": self.suggested_cancels(),
        })

    def to_html(self, path: str | Path) -> Path:
        """A self-contained HTML report: run header, changes since last run, headline, charts, by kind, discrepancies."""
        return report.write_html_report(path, title="Backd reconciliation", about=self.record.about(), sandbox=self.record.sandbox,
                                        headline=self.headline(), summary=report.summary_for_people(self.summary),
                                        discrepancies=report.discrepancies_for_people(self.discrepancies, self._findings),
                                        changes=self._changes_for_report(), charts=self.charts())

    def findings_table(self, rows: int = 50) -> pd.DataFrame:
        """The most severe findings as people read them: labels, money as money, no missing markers.

        Examples
        --------
        >>> rec.findings_table(20)                  # doctest: +SKIP
        """
        top = self.discrepancies.head(rows)
        return report.discrepancies_for_people(top, self._findings.head(rows))

    def headline(self) -> dict[str, str]:
        """The few numbers a controller reads first, labelled for people."""
        return {"Ledger rows": f"{len(self.ledger):,}", "Rows with no finding": f"{len(self.matched):,}",
                "Match rate": f"{self.match_rate:.1%}", "Findings": f"{len(self._findings):,}",
                "Money at stake (each order once)": report.money(self.at_stake)}

    def _changes_for_report(self) -> dict[str, Any] | None:
        if self.changes is None:
            return None
        return {"counts": self.changes.counts, "previous_run_id": self.changes.previous_run_id, "table": self.changes_table(),
                "chart": report.history_chart(self.changes.history) if len(self.changes.history) else None}

    def charts(self) -> dict[str, str]:
        """The report's charts as base64 PNGs: money findings and time findings apart, linear scales; status mix."""
        summary = self.summary.drop(index="total")
        labels = {k: v.label for k, v in KINDS.items()}
        money = summary.loc[list(MONEY_KINDS), "at_stake"].astype("float64").rename(index=labels)
        time_kinds = summary.loc[list(TIME_KINDS)].rename(index=labels)
        status_mix = pd.DataFrame({"ledger": self.ledger["backd_status"].value_counts(),
                                   "Backd": self.orders["status"].astype("string").value_counts()}).fillna(0)
        shown = money[money > 0] if (money > 0).any() else money
        # Drawing is most of a small run's report time, and the notebook shows the charts the report just drew.
        data = "\n".join(x.to_csv() for x in (shown, time_kinds["findings"], status_mix))
        if self._drawn is None or self._drawn[0] != data:
            self._drawn = (data, {
                "Money at stake by kind (each order once)": report.bar_chart(shown, xlabel=f"{CURRENCY}", money=True),
                "Time findings: orders waiting, refunds locking": report.bar_chart(time_kinds["findings"], xlabel="findings"),
                "Status mix: ledger vs Backd": report.grouped_bar_chart(status_mix, xlabel="orders"),
            })
        return dict(self._drawn[1])

    def save_snapshot(self, path: str | Path) -> Path:
        """The Backd snapshot used (Parquet, exact decimals, the account in its metadata), to audit and re-run offline."""
        import pyarrow as pa

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        keep = [c for c in self.orders.columns if not c.endswith("_cents")]
        table = pa.Table.from_pandas(self.orders[keep], preserve_index=False)
        if self.record.account is not None:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), _SNAPSHOT_ACCOUNT: json.dumps(asdict(self.record.account))})
        pq.write_table(table, path)
        return path

    def summary_json(self) -> dict[str, Any]:
        """What ``summary.json`` holds: the run record, headline numbers, per kind, changes."""
        return {"run": self.record.to_json(), "sandbox": self.record.sandbox, "stats": self.stats,
                "by_kind": _jsonable(self.summary), "changes": self.changes.counts if self.changes else None}

    def save(self, directory: str | Path) -> dict[str, Path]:
        """Everything a run leaves, in ``directory``: CSVs, summary.json, report.html, report.xlsx and the snapshot."""
        out = Path(directory)
        files = self.to_csv(out)
        files["summary_json"] = out / "summary.json"
        files["summary_json"].write_text(json.dumps(self.summary_json(), indent=2, default=str))
        files["report_html"] = self.to_html(out / "report.html")
        files["report_xlsx"] = self.to_excel(out / "report.xlsx")
        files["snapshot"] = self.save_snapshot(out / "backd_snapshot.parquet")
        return files

    def save_run(self, out_dir: str | Path) -> Path:
        """Save into ``out_dir/<date>T<time>-<run id>/`` (never overwriting a night) and point ``out_dir/latest`` at it."""
        folder = run_folder(out_dir, self.record.run_id, self.record.as_of)
        self.save(folder)
        point_latest(folder)
        return folder

    def _repr_html_(self) -> str:
        return report.summary_html(title="Backd reconciliation", about=self.record.about(), sandbox=self.record.sandbox,
                                   headline=self.headline(), summary=report.summary_for_people(self.summary),
                                   discrepancies=report.discrepancies_for_people(self.discrepancies.head(10), self._findings.head(10)))


def check_kinds(kinds: Iterable[str]) -> list[str]:
    """``kinds`` if every one is a finding kind, else :class:`InputError` with a suggestion for each typo."""
    import difflib

    chosen = list(kinds)
    unknown = [k for k in chosen if k not in KINDS]
    if unknown:
        hints = [f"{k!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, KINDS, n=1)) else "") for k in unknown]
        raise InputError(f"unknown finding kind {', '.join(hints)}; the kinds are: {', '.join(KINDS)}")
    return chosen


def run_folder(out_dir: str | Path, run_id: str, as_of: datetime) -> Path:
    """``out_dir/<date>T<time>-<run id>/`` in Chicago time, created; an existing folder is never reused."""
    folder = Path(out_dir).expanduser() / f"{as_of.astimezone(CHICAGO):%Y-%m-%dT%H%M%S}-{run_id}"
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def point_latest(folder: Path) -> Path:
    """``latest`` beside ``folder`` points at it (a symlink; a text file where links are not allowed)."""
    link = folder.parent / "latest"
    temporary = folder.parent / f".latest-{uuid.uuid4().hex[:6]}"
    try:
        os.symlink(folder.name, temporary)
        os.replace(temporary, link)
    except OSError:
        (folder.parent / "LATEST").write_text(folder.name + "\n")
    return link


def _to_money(cents: pd.Series) -> pd.Series:
    """Integer cents (may be missing) as an exact two-place money column."""
    values = pd.to_numeric(pd.Series(cents), errors="coerce").astype("Int64")
    return pd.Series(cents_to_money(values.to_numpy(dtype="float64", na_value=np.nan)), index=values.index)


def _jsonable(summary: pd.DataFrame) -> dict:
    return {kind: {"label": r.label, "severity": r.severity, "findings": int(r.findings), "rows": int(r.rows), "at_stake": str(r.at_stake)}
            for kind, r in summary.iterrows()}
