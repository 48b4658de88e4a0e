"""The merchant's ledger: load it from CSV/XLSX/Parquet or a frame, map its names, validate every cell at once.

Money becomes exact integer cents through the same parser as bulk files (:mod:`backd_ops.money`; a million
rows in well under a second); a cell that is not an amount with at most two decimals is reported, never coerced.
Every bad row and column is reported in one :class:`LedgerError`, with a ``problems`` frame.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from .arrowtools import row_texts
from .columns import map_columns, parse_mapping
from .errors import InputError
from .ids import BACKD_ID_PATTERN, normalize_ids
from .models import OrderStatus
from .money import to_cents
from .tables import SOURCE_ATTR, read_table, table_source

__all__ = ["DEFAULT_STATUS_MAP", "LedgerError", "describe_ledger", "load_ledger", "template_frame", "to_cents"]

COLUMNS_ATTR = "backd_columns"
REQUIRED = ("merchant_order_id", "backd_order_id", "status", "order_total")
OPTIONAL = ("refunded_amount", "order_date", "profile")
DEFAULT_STATUS_MAP: dict[str, str] = {
    **{s.value: s.value for s in OrderStatus},
    "created": "order_created", "terms selected": "terms_selected", "placed": "order_placed", "pending": "order_placed",
    "open": "order_placed", "confirmed": "order_confirmed", "shipped": "order_confirmed", "fulfilled": "order_confirmed",
    "completed": "order_confirmed", "paid": "order_confirmed", "canceled": "order_canceled", "cancelled": "order_canceled",
    "order_cancelled": "order_canceled", "refunded": "refund",
}


class LedgerError(InputError):
    """The ledger has bad cells; ``problems`` lists every one (row, column, value, problem)."""

    def __init__(self, problems: pd.DataFrame) -> None:
        self.problems = problems
        shown = "\n".join(f"  row {r.row}, column {r.column}: {r.problem} (value {r.value!r})" for r in problems.head(20).itertuples())
        more = f"\n  ... and {len(problems) - 20} more (see .problems)" if len(problems) > 20 else ""
        super().__init__(f"the ledger has {len(problems)} bad cell(s); nothing was compared:\n{shown}{more}")


def load_ledger(source: str | Path | pd.DataFrame, column_map: Mapping[str, str] | str | None = None,
                status_map: Mapping[str, str] | str | None = None, *, decimal: str = ".", sheet: str | None = None) -> pd.DataFrame:
    """Load and validate the ledger; returns our columns plus ``backd_status``, ``order_total_cents``, ``refunded_cents``.

    Columns: required ``merchant_order_id``, ``backd_order_id``, ``status``, ``order_total``; optional
    ``refunded_amount``, ``order_date``. Headers are matched as in the bulk files (``Backd ID``, ``Total``,
    ``Refunded``... see :mod:`backd_ops.columns`); ``column_map`` names the others (``{"Order #":
    "merchant_order_id"}`` or ``"Order #=merchant_order_id"``). ``status_map`` adds to
    :data:`DEFAULT_STATUS_MAP` (case-insensitive). ``decimal=","`` reads ``1.234,50`` style amounts;
    ``sheet`` picks an XLSX sheet. Raises :class:`LedgerError` naming every bad cell.

    Examples
    --------
    >>> ledger = load_ledger("ledger.csv", column_map={"Order #": "merchant_order_id", "Total": "order_total"})  # doctest: +SKIP
    """
    table = read_table(source, sheet=sheet, header_names=parse_mapping(column_map))
    mapped = map_columns(table, REQUIRED, OPTIONAL, column_map=column_map, what="the ledger")
    statuses = {k.strip().lower(): v for k, v in {**DEFAULT_STATUS_MAP, **parse_mapping(status_map, option="status_map")}.items()}
    typed, problems = _typed_ledger(mapped.frame, statuses, decimal)
    if not problems.empty:
        raise LedgerError(problems)
    typed.attrs = {SOURCE_ATTR: table.attrs.get(SOURCE_ATTR), COLUMNS_ATTR: mapped.describe()}
    return typed


def describe_ledger(ledger: pd.DataFrame) -> str:
    """How a loaded ledger was read and which header became which column.

    Examples
    --------
    >>> describe_ledger(load_ledger(pd.DataFrame({"Order #": ["M-1"], "Backd ID": ["BO-1"], "Status": ["paid"], "Total": ["5"]}),
    ...                             column_map="Order #=merchant_order_id"))
    'columns: Order # → merchant_order_id, Backd ID → backd_order_id, Status → status, Total → order_total'
    """
    source = table_source(ledger)
    parts = [source.describe()] if source.format != "frame" else []
    if ledger.attrs.get(COLUMNS_ATTR):
        parts.append(f"columns: {ledger.attrs[COLUMNS_ATTR]}")
    return "; ".join(parts)


def template_frame() -> pd.DataFrame:
    """An example ledger: the required columns, then the optional ones.

    Examples
    --------
    >>> list(template_frame().columns)
    ['merchant_order_id', 'backd_order_id', 'status', 'order_total', 'refunded_amount', 'order_date']
    """
    return pd.DataFrame({"merchant_order_id": ["JKLMO4321", "JKLMO4322"], "backd_order_id": ["BO-20260416-0001", ""],
                         "status": ["shipped", "pending"], "order_total": ["9,150.00", "120.00"], "refunded_amount": ["25.00", ""],
                         "order_date": ["2026-04-16", "2026-04-17"]})


def _typed_ledger(frame: pd.DataFrame, statuses: dict[str, str], decimal: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    out = pd.DataFrame(index=frame.index)
    # (column, bad mask, problem text): a constant text stays a str, made into rows only where the mask holds
    checks: list[tuple[str, pd.Series, pd.Series | str]] = []
    # Each column parses on its own, mostly inside Arrow, which releases the GIL: side by side on every core
    # (a quarter off a ten-million-row ledger's load on two).
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="backd-ledger") as pool:
        merchant = pool.submit(normalize_ids, frame["merchant_order_id"])
        backd = pool.submit(_backd_ids, frame["backd_order_id"])
        status = pool.submit(_statuses, frame["status"], statuses)
        total = pool.submit(to_cents, frame["order_total"], decimal=decimal)
        refunded = pool.submit(to_cents, frame["refunded_amount"], decimal=decimal) if "refunded_amount" in frame.columns else None
        out["merchant_order_id"], id_problem = merchant.result()
        checks.append(("merchant_order_id", id_problem.ne(""), id_problem))
        out["backd_order_id"], id_problem, bad_id = backd.result()
        checks.append(("backd_order_id", id_problem.ne(""), id_problem))
        out["status"], out["backd_status"] = status.result()
        out["order_total_cents"], total_problem = total.result()
        refunded_cents, refund_problem = refunded.result() if refunded is not None else (
            pd.Series(0, index=frame.index, dtype="Int64"), row_texts(None, frame.index))
    checks.append(("merchant_order_id", out["merchant_order_id"].isna(), "is blank"))
    checks.append(("backd_order_id", bad_id, "is not a Backd order id"))
    checks.append(("status", out["backd_status"].isna(), "is not a known status; add it to status_map"))
    total_bad = total_problem.ne("")
    checks.append(("order_total", total_bad, total_problem))
    checks.append(("order_total", out["order_total_cents"].isna() & ~total_bad, "is missing"))
    checks.append(("order_total", out["order_total_cents"].fillna(0) < 0, "is negative"))
    out["refunded_cents"] = refunded_cents.fillna(0)
    checks.append(("refunded_amount", refund_problem.ne(""), refund_problem))
    checks.append(("refunded_amount", out["refunded_cents"] < 0, "is negative"))
    checks.append(("refunded_amount", out["refunded_cents"] > out["order_total_cents"].fillna(np.iinfo(np.int64).max),
                   "is more than order_total"))
    if "profile" in frame.columns:  # whose account the row is (backd_ops.accounts); ignored by a one-account run
        out["profile"] = frame["profile"].astype("string").str.strip()
    if "order_date" in frame.columns:
        out["order_date"] = pd.to_datetime(frame["order_date"], errors="coerce")
        checks.append(("order_date", out["order_date"].isna() & frame["order_date"].notna(), "is not a date"))
    return out, _problems(frame, checks)


def _backd_ids(column: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """The normalised ids, a problem per cell, and which present ids are not shaped like a Backd order id."""
    ids, problems = normalize_ids(column)
    bad = ids.notna() & ~ids.str.fullmatch(BACKD_ID_PATTERN).fillna(False).astype(bool)
    return ids, problems, bad


def _statuses(column: pd.Series, statuses: dict[str, str]) -> tuple[pd.Series, pd.Series]:
    """The ledger's statuses (trimmed) and Backd's status for each."""
    status = column.astype("string").str.strip()
    return status, _mapped_statuses(status, statuses)


def _mapped_statuses(status: pd.Series, statuses: dict[str, str]) -> pd.Series:
    """Each status through the map (case-insensitive): a handful of distinct values, so map those, then gather."""
    codes, uniques = pd.factorize(status, use_na_sentinel=True)
    mapped = pd.Series(uniques, dtype="string").str.lower().map(statuses).astype("string")
    gathered = mapped.array.take(codes, allow_fill=True)  # -1 (a blank status) becomes missing
    return pd.Series(gathered, index=status.index, dtype="string")


def _problems(frame: pd.DataFrame, checks: list[tuple[str, pd.Series, pd.Series | str]]) -> pd.DataFrame:
    parts = []
    for column, mask, text in checks:
        mask = mask.fillna(False).astype(bool)
        if not mask.any():
            continue
        texts = text[mask] if isinstance(text, pd.Series) else pd.Series(text, index=mask[mask].index)
        values = frame.loc[mask, column].astype("string").str.slice(0, 60) if column in frame.columns else pd.Series("", index=mask[mask].index)
        parts.append(pd.DataFrame({"row": mask[mask].index, "column": column,
                                   "value": values.to_numpy(),
                                   "problem": texts.to_numpy()}))
    if not parts:
        return pd.DataFrame(columns=["row", "column", "value", "problem"])
    problems = pd.concat(parts, ignore_index=True)
    problems = problems.drop_duplicates(["row", "column"])
    return problems.sort_values(["row", "column"], kind="stable").reset_index(drop=True)
