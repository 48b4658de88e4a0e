"""The merchant's ledger: load it from CSV/XLSX/Parquet or a frame, map its names, validate every cell at once.

Money becomes exact integer cents (vectorised; a million rows in well under a second); a cell that is not
an amount with at most two decimals is reported, never coerced. Every bad row and column is reported in
one :class:`LedgerError`, with a ``problems`` frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import InputError
from .models import OrderStatus
from .operations import normalize_columns
from .tables import read_table

__all__ = ["DEFAULT_STATUS_MAP", "LedgerError", "load_ledger", "to_cents"]

REQUIRED = ("merchant_order_id", "backd_order_id", "status", "order_total")
OPTIONAL = ("refunded_amount", "order_date")
DEFAULT_STATUS_MAP: dict[str, str] = {
    **{s.value: s.value for s in OrderStatus},
    "created": "order_created", "terms selected": "terms_selected", "placed": "order_placed", "pending": "order_placed",
    "open": "order_placed", "confirmed": "order_confirmed", "shipped": "order_confirmed", "fulfilled": "order_confirmed",
    "completed": "order_confirmed", "paid": "order_confirmed", "canceled": "order_canceled", "cancelled": "order_canceled",
    "order_cancelled": "order_canceled", "refunded": "refund",
}
_MONEY_TEXT = r"^\s*(-)?\$?\s*(\d{1,13})(?:\.(\d{1,2}))?\s*$"
_BACKD_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class LedgerError(InputError):
    """The ledger has bad cells; ``problems`` lists every one (row, column, value, problem)."""

    def __init__(self, problems: pd.DataFrame) -> None:
        self.problems = problems
        shown = "\n".join(f"  row {r.row}, column {r.column}: {r.problem} (value {r.value!r})" for r in problems.head(20).itertuples())
        more = f"\n  ... and {len(problems) - 20} more (see .problems)" if len(problems) > 20 else ""
        super().__init__(f"the ledger has {len(problems)} bad cell(s); nothing was compared:\n{shown}{more}")


def to_cents(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Exact cents (Int64) and a problem text per cell ('' when fine); blank cells are <NA> with no problem.

    Examples
    --------
    >>> cents, problems = to_cents(pd.Series(["1,234.50", "0.1", "1.005", "abc", None]))
    >>> cents.tolist(), problems.tolist()
    ([123450, 10, <NA>, <NA>, <NA>], ['', '', 'not an amount with at most 2 decimals', 'not an amount with at most 2 decimals', ''])
    """
    if isinstance(values.dtype, pd.ArrowDtype) and pa.types.is_decimal(values.dtype.pyarrow_dtype):
        return _decimal_cents(values)
    if pd.api.types.is_bool_dtype(values.dtype):
        return pd.Series(pd.NA, index=values.index, dtype="Int64"), pd.Series("not an amount", index=values.index)
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.astype("Int64") * 100, pd.Series("", index=values.index)
    if pd.api.types.is_float_dtype(values.dtype):
        return _float_cents(values.astype("float64"))
    return _text_cents(values)


def _text_cents(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    as_text = values.astype("string")
    blank = as_text.isna() | as_text.str.strip().eq("")
    parts = as_text.str.replace(",", "", regex=False).str.extract(_MONEY_TEXT)
    whole = pd.to_numeric(parts[1], errors="coerce").astype("Int64")
    frac = pd.to_numeric(parts[2].str.ljust(2, "0"), errors="coerce").fillna(0).astype("Int64")
    cents = whole * 100 + frac
    cents = cents.where(parts[0].isna(), -cents)
    bad = cents.isna() & ~blank
    return cents.where(~blank), pd.Series(np.where(bad, "not an amount with at most 2 decimals", ""), index=values.index)


def _float_cents(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    scaled = values * 100
    rounded = scaled.round()
    finite = np.isfinite(values)
    exact = (scaled - rounded).abs() <= 1e-6 * np.maximum(1.0, scaled.abs())
    bad = values.notna() & ~(finite & exact & (values.abs() < 1e13))
    cents = rounded.where(~bad & values.notna()).astype("Int64")
    return cents, pd.Series(np.where(bad, "not an amount with at most 2 decimals", ""), index=values.index)


def _decimal_cents(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    array = pa.array(values)
    scaled = pc.multiply(array.cast(pa.decimal128(20, 2)), pa.scalar(100, pa.decimal128(3, 0)))
    cents = pd.Series(pc.cast(scaled, pa.int64(), safe=False).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get), index=values.index)
    return cents, pd.Series("", index=values.index)


def load_ledger(source: str | Path | pd.DataFrame, column_map: Mapping[str, str] | None = None,
                status_map: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Load and validate the ledger; returns our columns plus ``backd_status``, ``order_total_cents``, ``refunded_cents``.

    ``column_map`` renames the merchant's columns to ours (``merchant_order_id``, ``backd_order_id``, ``status``,
    ``order_total``, optional ``refunded_amount``, ``order_date``); ``status_map`` adds to
    :data:`DEFAULT_STATUS_MAP` (case-insensitive). Raises :class:`LedgerError` naming every bad cell.

    Examples
    --------
    >>> ledger = load_ledger("ledger.csv", column_map={"Order #": "merchant_order_id", "Total": "order_total"})  # doctest: +SKIP
    """
    frame = read_table(source)
    if column_map:
        frame = frame.rename(columns={k: v for k, v in column_map.items()})
    frame = normalize_columns(frame)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise InputError(f"the ledger is missing column {', '.join(missing)}; it has {', '.join(map(str, frame.columns))}. "
                         "Map yours with column_map={'Their name': 'our_name'}")
    statuses = {k.strip().lower(): v for k, v in {**DEFAULT_STATUS_MAP, **(status_map or {})}.items()}
    typed, problems = _typed_ledger(frame, statuses)
    if not problems.empty:
        raise LedgerError(problems)
    return typed


def _typed_ledger(frame: pd.DataFrame, statuses: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    out = pd.DataFrame(index=frame.index)
    checks: list[tuple[str, pd.Series, pd.Series]] = []  # (column, bad mask, problem text)
    for column in ("merchant_order_id", "backd_order_id"):
        text = frame[column].astype("string").str.strip()
        text = text.where(text != "")
        out[column] = text
    checks.append(("merchant_order_id", out["merchant_order_id"].isna(), pd.Series("is blank", index=frame.index)))
    bad_id = out["backd_order_id"].notna() & ~out["backd_order_id"].str.fullmatch(_BACKD_ID).fillna(False).astype(bool)
    checks.append(("backd_order_id", bad_id, pd.Series("is not a Backd order id", index=frame.index)))
    out["status"] = frame["status"].astype("string").str.strip()
    out["backd_status"] = out["status"].str.lower().map(statuses).astype("string")
    checks.append(("status", out["backd_status"].isna(), "is not a known status; add it to status_map"))
    out["order_total_cents"], total_problem = to_cents(frame["order_total"])
    checks.append(("order_total", total_problem.ne("") | out["order_total_cents"].isna(), total_problem.replace("", "is missing")))
    checks.append(("order_total", out["order_total_cents"].fillna(0) < 0, pd.Series("is negative", index=frame.index)))
    if "refunded_amount" in frame.columns:
        refunded, refund_problem = to_cents(frame["refunded_amount"])
    else:
        refunded, refund_problem = pd.Series(0, index=frame.index, dtype="Int64"), pd.Series("", index=frame.index)
    out["refunded_cents"] = refunded.fillna(0)
    checks.append(("refunded_amount", refund_problem.ne(""), refund_problem))
    checks.append(("refunded_amount", out["refunded_cents"] < 0, pd.Series("is negative", index=frame.index)))
    checks.append(("refunded_amount", out["refunded_cents"] > out["order_total_cents"].fillna(np.iinfo(np.int64).max),
                   pd.Series("is more than order_total", index=frame.index)))
    if "order_date" in frame.columns:
        out["order_date"] = pd.to_datetime(frame["order_date"], errors="coerce")
        checks.append(("order_date", out["order_date"].isna() & frame["order_date"].notna(), pd.Series("is not a date", index=frame.index)))
    return out, _problems(frame, checks)


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
