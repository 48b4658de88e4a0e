"""Reconciliation: the merchant's ledger against Backd, as a ``Reconciliation`` you can question and export.

Like datacompy's ``Compare``: one outer comparison (vectorised, in integer cents) yields ``.discrepancies``
(one row per finding, with kind, severity, values, difference and a suggested action), ``.summary``,
``.matched``, and frames of suggested corrections that feed straight into the bulk dry runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from . import report
from .client import BackdClient
from .errors import InputError, option_name
from .ledger import load_ledger
from .money import to_cents
from .locking import CHICAGO
from .models import OrderStatus, cents_to_money
from .progress import ProgressLike
from .reads import find_orders
from .tables import read_table, write_csv, write_excel

__all__ = ["KINDS", "Reconciliation", "load_snapshot", "reconcile"]


@dataclass(frozen=True)
class Kind:
    """A kind of finding: how bad it is, and what to do about it."""

    severity: str
    action: str


KINDS: dict[str, Kind] = {
    "missing_in_backd": Kind("high", "check the backd_order_id: Backd has no such order"),
    "lookup_failed": Kind("high", "Backd could not be read for this order: re-run the reconciliation"),
    "duplicate_in_ledger": Kind("high", "merge or remove the duplicate ledger rows"),
    "order_total_mismatch": Kind("high", "update_orders while order_placed, else correct the ledger"),
    "refunded_amount_mismatch": Kind("high", "refund_orders / delete_refunds (see suggested_refunds), or correct the ledger"),
    "refund_locks_soon": Kind("high", "last chance: change or delete this refund before it locks"),
    "status_mismatch": Kind("medium", "bring the ledger and Backd to the same status (see suggested_cancels)"),
    "merchant_order_id_mismatch": Kind("medium", "correct merchant_order_id in the ledger (or in Backd with update_order)"),
    "stale_order_placed": Kind("medium", "confirm_orders or cancel_orders: it has waited in order_placed too long"),
    "unverifiable": Kind("low", "add the backd_order_id to the ledger: Backd has no lookup by merchant id"),
}
SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}
DISCREPANCY_COLUMNS = ["kind", "severity", "row", "backd_order_id", "merchant_order_id", "ledger_value", "backd_value",
                       "difference", "at_stake", "action"]


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
    max_workers: int | None = None,
    progress: ProgressLike = True,
    decimal: str = ".",
    sheet: str | None = None,
) -> Reconciliation:
    """Compare the ledger with Backd: live with ``client``, or offline with a saved ``orders`` snapshot.

    Differences up to ``tolerance`` (in currency units, compared in exact cents) are not findings. The ledger
    is read by :func:`~backd_ops.ledger.load_ledger` (``column_map``, ``status_map``, ``decimal``, ``sheet``).

    Examples
    --------
    >>> rec = reconcile("ledger.csv", client=client)            # doctest: +SKIP
    >>> rec.summary                                              # doctest: +SKIP
    >>> refund_orders(client, rec.suggested_refunds())           # a dry run, as always  # doctest: +SKIP
    """
    typed = ledger if _is_loaded(ledger) else load_ledger(ledger, column_map, status_map, decimal=decimal, sheet=sheet)
    if orders is None:
        if client is None:
            raise InputError("reconcile needs either client= (to read Backd) or orders= (a saved snapshot)")
        ids = typed["backd_order_id"].dropna().unique().tolist()
        orders = find_orders(client, ids, max_workers=max_workers, progress=progress)
    snapshot = load_snapshot(orders)
    moment = (as_of or datetime.now(CHICAGO)).astimezone(CHICAGO)
    params = {"tolerance": str(tolerance), "as_of": moment.isoformat(), "stale_days": stale_days,
              "lock_window_hours": lock_window_hours}
    found = _compare(typed, snapshot, tolerance_cents=_cents(tolerance), as_of=moment, stale_days=stale_days,
                     lock_window_hours=lock_window_hours)
    return Reconciliation(typed, snapshot, found, params)


def _is_loaded(ledger: Any) -> bool:
    return isinstance(ledger, pd.DataFrame) and {"order_total_cents", "backd_status"} <= set(ledger.columns)


def _cents(amount: float | str) -> int:
    cents, problems = to_cents(pd.Series([str(amount)]))
    if problems.iloc[0] or pd.isna(cents.iloc[0]):
        raise InputError(f"{option_name('tolerance')} {amount!r} must be an amount with at most 2 decimals")
    return int(cents.iloc[0])


def load_snapshot(orders: pd.DataFrame | str | Path) -> pd.DataFrame:
    """A Backd snapshot (``find_orders`` frame, or its saved Parquet/CSV) with exact cents columns added."""
    frame = read_table(orders) if not isinstance(orders, pd.DataFrame) else orders.copy()
    if "backd_order_id" not in frame.columns:
        raise InputError("the orders snapshot has no backd_order_id column")
    for column in ("status", "merchant_order_id", "error"):
        if column not in frame.columns:
            frame[column] = pd.NA
    for money in ("order_total", "refunded_amount", "active_refund_amount"):
        missing = pd.Series(pd.NA, index=frame.index, dtype="Int64")
        frame[f"{money}_cents"] = to_cents(frame[money])[0] if money in frame.columns else missing
    for moment in ("create_date", "active_refund_locked_at"):
        frame[moment] = pd.to_datetime(frame[moment], utc=True).dt.tz_convert(CHICAGO) if moment in frame.columns else pd.NaT
    return frame.drop_duplicates("backd_order_id", keep="last").reset_index(drop=True)


# -- the comparison (vectorised) -------------------------------------------------------------------------------
def _compare(ledger: pd.DataFrame, orders: pd.DataFrame, *, tolerance_cents: int, as_of: datetime, stale_days: float,
             lock_window_hours: float) -> pd.DataFrame:
    side = orders[["backd_order_id", "merchant_order_id", "status", "order_total_cents", "refunded_amount_cents",
                   "active_refund_amount_cents", "create_date", "active_refund_locked_at", "error"]]
    merged = ledger.rename_axis("row").reset_index().merge(side, on="backd_order_id", how="left", suffixes=("", "_backd"),
                                                           indicator=True)  # snapshot ids are unique (load_snapshot)
    has_id = merged["backd_order_id"].notna()
    read_error = merged["error"].notna() & has_id
    not_found = has_id & ((merged["_merge"] == "left_only") | (read_error & merged["error"].astype("string").str.startswith("NotFoundError")))
    failed = read_error & ~not_found
    found = has_id & ~not_found & ~failed
    duplicated = has_id & merged["backd_order_id"].duplicated(keep=False)
    parts = [
        _finding("unverifiable", merged, ~has_id, ledger_value=merged["merchant_order_id"].astype("string"), at_stake=merged["order_total_cents"]),
        _finding("duplicate_in_ledger", merged, duplicated, ledger_value=merged["backd_order_id"], at_stake=merged["order_total_cents"]),
        _finding("missing_in_backd", merged, not_found, ledger_value=merged["backd_order_id"], at_stake=merged["order_total_cents"]),
        _finding("lookup_failed", merged, failed, backd_value=merged["error"].astype("string")),
        *_value_findings(merged, found, tolerance_cents),
        *_time_findings(merged, found, as_of, stale_days, lock_window_hours),
    ]
    findings = pd.concat([p for p in parts if not p.empty] or [_empty_findings()], ignore_index=True)
    findings["severity"] = pd.Categorical(findings["kind"].map(lambda k: KINDS[k].severity), categories=list(SEVERITY_ORDER), ordered=True)
    findings["action"] = findings["kind"].map(lambda k: KINDS[k].action).astype("string")
    findings = findings.sort_values(["severity", "at_stake_cents", "row"], ascending=[True, False, True], kind="stable")
    return findings.reset_index(drop=True)


def _value_findings(merged: pd.DataFrame, found: pd.Series, tolerance_cents: int) -> list[pd.DataFrame]:
    backd_status = merged["status_backd"].astype("string")
    canceled_both = merged["backd_status"].str.contains("cancel") & backd_status.str.contains("cancel")
    status_differs = found & (merged["backd_status"] != backd_status).fillna(True) & ~canceled_both.fillna(False)
    merchant_differs = found & (merged["merchant_order_id"] != merged["merchant_order_id_backd"]).fillna(True)
    total_diff = merged["order_total_cents_backd"] - merged["order_total_cents"]
    refund_diff = merged["refunded_amount_cents"] - merged["refunded_cents"]
    return [
        _finding("merchant_order_id_mismatch", merged, merchant_differs, ledger_value=merged["merchant_order_id"],
                 backd_value=merged["merchant_order_id_backd"]),
        _finding("status_mismatch", merged, status_differs, ledger_value=merged["status"], backd_value=backd_status,
                 at_stake=merged["order_total_cents"]),
        _finding("order_total_mismatch", merged, found & (total_diff.abs() > tolerance_cents).fillna(False),
                 ledger_value=merged["order_total_cents"], backd_value=merged["order_total_cents_backd"],
                 difference=total_diff, at_stake=total_diff.abs(), show=_money_text),
        _finding("refunded_amount_mismatch", merged, found & (refund_diff.abs() > tolerance_cents).fillna(False),
                 ledger_value=merged["refunded_cents"], backd_value=merged["refunded_amount_cents"],
                 difference=refund_diff, at_stake=refund_diff.abs(), show=_money_text),
    ]


def _time_findings(merged: pd.DataFrame, found: pd.Series, as_of: datetime, stale_days: float, lock_window_hours: float) -> list[pd.DataFrame]:
    stale_before = pd.Timestamp(as_of - timedelta(days=stale_days))
    stale = found & (merged["status_backd"] == OrderStatus.PLACED).fillna(False) & (merged["create_date"] < stale_before).fillna(False)
    lock_at = merged["active_refund_locked_at"]
    locks_soon = found & lock_at.notna() & (lock_at > pd.Timestamp(as_of)) & (lock_at <= pd.Timestamp(as_of + timedelta(hours=lock_window_hours)))
    return [
        _finding("stale_order_placed", merged, stale, backd_value=merged["create_date"],
                 at_stake=merged["order_total_cents_backd"], show=lambda d: d.dt.strftime("placed %Y-%m-%d")),
        _finding("refund_locks_soon", merged, locks_soon.fillna(False), ledger_value=merged["active_refund_amount_cents"],
                 backd_value=lock_at, at_stake=merged["active_refund_amount_cents"], show=_refund_lock_text),
    ]


def _finding(kind: str, merged: pd.DataFrame, mask: pd.Series, *, ledger_value: pd.Series | None = None,
             backd_value: pd.Series | None = None, difference: pd.Series | None = None, at_stake: pd.Series | None = None,
             show: Callable[[pd.Series], pd.Series] | None = None) -> pd.DataFrame:
    """The findings of one kind: the rows where ``mask`` holds; values are formatted (``show``) on those rows only."""
    mask = mask.fillna(False).astype(bool)
    if not mask.any():
        return pd.DataFrame()
    pick = lambda s: None if s is None else s[mask].to_numpy()  # noqa: E731
    shown = lambda s: None if s is None else (show(s[mask]) if show else s[mask]).to_numpy()  # noqa: E731
    return pd.DataFrame({
        "kind": kind, "row": merged.loc[mask, "row"].to_numpy(),
        "backd_order_id": merged.loc[mask, "backd_order_id"].to_numpy(),
        "merchant_order_id": merged.loc[mask, "merchant_order_id"].to_numpy(),
        "ledger_value": shown(ledger_value), "backd_value": shown(backd_value),
        "difference_cents": pick(difference), "at_stake_cents": pick(at_stake),
    })


def _empty_findings() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in ["kind", "row", "backd_order_id", "merchant_order_id", "ledger_value",
                                                               "backd_value", "difference_cents", "at_stake_cents"]})


def _refund_lock_text(values: pd.Series) -> pd.Series:
    """Cents → '12.50', lock times → 'locks 2026-04-14 17:00 CDT' (used for refund_locks_soon's two columns)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.strftime("locks %Y-%m-%d %H:%M %Z")
    return _money_text(values)


def _money_text(cents: pd.Series) -> pd.Series:
    """Cents as '1234.50' text (vectorised; <NA> stays missing)."""
    cents = cents.astype("Int64")
    sign = np.where(cents.fillna(0) < 0, "-", "")
    absolute = cents.abs()
    text = sign + (absolute // 100).astype("string") + "." + (absolute % 100).astype("string").str.zfill(2)
    return pd.Series(text, index=cents.index, dtype="string").where(cents.notna())


class Reconciliation:
    """The result of :func:`reconcile`: questions (``summary``, ``discrepancies``, ``matched``) and exports."""

    def __init__(self, ledger: pd.DataFrame, orders: pd.DataFrame, findings: pd.DataFrame, params: dict) -> None:
        self.ledger, self.orders, self._findings, self.params = ledger, orders, findings, params

    def __repr__(self) -> str:
        return f"Reconciliation(ledger_rows={len(self.ledger)}, findings={len(self._findings)}, match_rate={self.match_rate:.1%})"

    # -- questions ------------------------------------------------------------------------------------------------
    @property
    def discrepancies(self) -> pd.DataFrame:
        """One row per finding, most severe and most money first."""
        out = self._findings.copy()
        out["difference"] = _to_money(out["difference_cents"])
        out["at_stake"] = _to_money(out["at_stake_cents"])
        for column in ("kind", "backd_order_id", "merchant_order_id", "ledger_value", "backd_value"):
            out[column] = out[column].astype("string")
        return out[DISCREPANCY_COLUMNS]

    @property
    def matched(self) -> pd.DataFrame:
        """Ledger rows with no finding at all."""
        return self.ledger[~self.ledger.index.isin(self._findings["row"])]

    @property
    def match_rate(self) -> float:
        return len(self.matched) / len(self.ledger) if len(self.ledger) else 1.0

    @property
    def summary(self) -> pd.DataFrame:
        """Per kind: severity, findings, distinct ledger rows, money at stake; every kind listed (zeros too)."""
        grouped = self._findings.groupby("kind", observed=True)
        frame = pd.DataFrame({
            "severity": pd.Series({k: v.severity for k, v in KINDS.items()}),
            "findings": grouped.size(),
            "rows": grouped["row"].nunique(),
            "at_stake_cents": grouped["at_stake_cents"].sum(min_count=1),
        }).reindex(list(KINDS))
        frame[["findings", "rows"]] = frame[["findings", "rows"]].fillna(0).astype("int64")
        frame["at_stake"] = _to_money(frame.pop("at_stake_cents").fillna(0))
        frame.index.name = "kind"
        return frame

    @property
    def stats(self) -> dict[str, Any]:
        """Headline numbers: ledger rows, matched, match rate, findings by severity."""
        by_severity = self._findings["severity"].value_counts().reindex(list(SEVERITY_ORDER), fill_value=0)
        return {"ledger_rows": len(self.ledger), "matched_rows": len(self.matched), "match_rate": round(self.match_rate, 6),
                "findings": len(self._findings), **{f"{k}_findings": int(v) for k, v in by_severity.items()}, **self.params}

    def has_findings(self, kinds: Iterable[str] | None = None) -> bool:
        """Whether any finding of ``kinds`` (default: any kind) was made; what ``fail_on`` checks."""
        chosen = list(KINDS) if kinds is None else list(kinds)
        unknown = sorted(set(chosen) - set(KINDS))
        if unknown:
            raise InputError(f"unknown finding kind(s) {unknown}; known: {', '.join(KINDS)}")
        return bool(self._findings["kind"].isin(chosen).any())

    def suggested_refunds(self) -> pd.DataFrame:
        """Refunds that bring Backd up to the ledger's refunded amount (confirmed orders, unlocked): feed to ``refund_orders``."""
        rows = self._findings[self._findings["kind"] == "refunded_amount_mismatch"]
        merged = rows.merge(self.orders, on="backd_order_id", how="left", suffixes=("", "_backd"))
        ledger_refunded = self.ledger.loc[merged["row"], "refunded_cents"].to_numpy()
        held = merged["refunded_amount_cents"].fillna(0) - merged["active_refund_amount_cents"].fillna(0)
        target = pd.Series(ledger_refunded, index=merged.index).astype("Int64") - held
        ok = (merged["status"] == OrderStatus.CONFIRMED).fillna(False) & (merged["difference_cents"] < 0).fillna(False) & (target > 0).fillna(False)
        ok &= ~(merged["active_refund_locked_at"] <= pd.Timestamp(self.params["as_of"])).fillna(False)
        chosen = merged[ok]
        return pd.DataFrame({"backd_order_id": chosen["backd_order_id"].astype("string").to_numpy(),
                             "merchant_order_id": chosen["merchant_order_id_backd"].astype("string").to_numpy(),
                             "refund_amount": _to_money(target[ok]).to_numpy()})

    def suggested_cancels(self) -> pd.DataFrame:
        """Orders the ledger has canceled that Backd still has as ``order_placed``: feed to ``cancel_orders``."""
        rows = self._findings[self._findings["kind"] == "status_mismatch"]
        ledger_status = self.ledger.loc[rows["row"], "backd_status"].to_numpy()
        chosen = rows[(pd.Series(ledger_status, index=rows.index).str.contains("cancel")) & (rows["backd_value"] == OrderStatus.PLACED)]
        return pd.DataFrame({"backd_order_id": chosen["backd_order_id"].astype("string").to_numpy()})

    # -- exports --------------------------------------------------------------------------------------------------
    def to_csv(self, directory: str | Path) -> dict[str, Path]:
        """``discrepancies.csv``, ``summary.csv``, ``suggested_refunds.csv``, ``suggested_cancels.csv`` (formulas neutralised)."""
        out = Path(directory)
        return {
            "discrepancies": write_csv(self.discrepancies, out / "discrepancies.csv"),
            "summary": write_csv(self.summary, out / "summary.csv", index=True),
            "suggested_refunds": write_csv(self.suggested_refunds(), out / "suggested_refunds.csv"),
            "suggested_cancels": write_csv(self.suggested_cancels(), out / "suggested_cancels.csv"),
        }

    def to_excel(self, path: str | Path) -> Path:
        """One workbook: summary, discrepancies, suggested corrections (formulas neutralised)."""
        return write_excel({"summary": self.summary.reset_index(), "discrepancies": self.discrepancies,
                            "suggested_refunds": self.suggested_refunds(), "suggested_cancels": self.suggested_cancels()}, path)

    def to_html(self, path: str | Path) -> Path:
        """A self-contained HTML report with charts (discrepancies by kind, money at stake, status mix)."""
        return report.write_html_report(path, title="Backd reconciliation", stats=self.stats, summary=self.summary,
                                        discrepancies=self.discrepancies, charts=self.charts())

    def charts(self) -> dict[str, str]:
        """The report's charts as base64 PNGs."""
        summary = self.summary
        status_mix = pd.DataFrame({"ledger": self.ledger["backd_status"].value_counts(),
                                   "Backd": self.orders["status"].astype("string").value_counts()}).fillna(0)
        return {
            "Discrepancies by kind": report.bar_chart(summary["findings"], xlabel="findings"),
            "Money at stake by kind": report.bar_chart(summary["at_stake"].astype("float64"), xlabel="amount", log=True),
            "Status mix: ledger vs Backd": report.grouped_bar_chart(status_mix, xlabel="orders"),
        }

    def save_snapshot(self, path: str | Path) -> Path:
        """The Backd snapshot used (Parquet, exact decimals), so the run can be audited and re-run offline."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        keep = [c for c in self.orders.columns if not c.endswith("_cents")]
        self.orders[keep].to_parquet(path, index=False)
        return path

    def save(self, directory: str | Path) -> dict[str, Path]:
        """Everything a scheduled run leaves: CSVs, summary.json, report.html, report.xlsx and the snapshot."""
        out = Path(directory)
        files = self.to_csv(out)
        files["summary_json"] = out / "summary.json"
        files["summary_json"].write_text(json.dumps({"stats": self.stats, "by_kind": _jsonable(self.summary)}, indent=2, default=str))
        files["report_html"] = self.to_html(out / "report.html")
        files["report_xlsx"] = self.to_excel(out / "report.xlsx")
        files["snapshot"] = self.save_snapshot(out / "backd_snapshot.parquet")
        return files

    def _repr_html_(self) -> str:
        return report.summary_html(title="Backd reconciliation", stats=self.stats, summary=self.summary,
                                   discrepancies=self.discrepancies.head(10))


def _to_money(cents: pd.Series) -> pd.Series:
    """Integer cents (may be missing) as an exact two-place money column."""
    values = pd.to_numeric(pd.Series(cents), errors="coerce").astype("Int64")
    return pd.Series(cents_to_money(values.to_numpy(dtype="float64", na_value=np.nan)), index=values.index)


def _jsonable(summary: pd.DataFrame) -> dict:
    return {kind: {"severity": r.severity, "findings": int(r.findings), "rows": int(r.rows), "at_stake": str(r.at_stake)}
            for kind, r in summary.iterrows()}
