"""Analysts' files in and out: read CSV/XLSX/Parquet with spreadsheet row numbers; export with formulas neutralised."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .errors import InputError

__all__ = ["neutralize_formulas", "read_table", "write_csv", "write_excel"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def read_table(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """A DataFrame from a frame (copied) or a CSV/XLSX/Parquet file; text cells stay text.

    For files the index is the spreadsheet row number (the header is row 1), so a message that says
    "row 7" points at what the analyst sees in Excel.

    Examples
    --------
    >>> read_table(pd.DataFrame({"backd_order_id": ["BO-1"]})).shape
    (1, 1)
    """
    if isinstance(source, pd.DataFrame):
        return source.copy()
    path = Path(source)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        elif suffix in (".xlsx", ".xlsm", ".xls"):
            frame = pd.read_excel(path, dtype=object)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            raise InputError(f"{path.name}: unsupported file type {suffix!r}; use .csv, .xlsx or .parquet")
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path.name}: cannot read it ({exc})") from None
    if suffix != ".parquet":
        frame.index = pd.RangeIndex(2, len(frame) + 2, name="row")
    return frame


def neutralize_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells that a spreadsheet would run as formulas start with a quote instead.

    Examples
    --------
    >>> neutralize_formulas(pd.DataFrame({"note": ["=HYPERLINK(1)", "ok", "-5"]}))["note"].tolist()
    ["'=HYPERLINK(1)", 'ok', "'-5"]
    """
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column].dtype):
            out[column] = out[column].map(_neutralize_cell)
    return out


def _neutralize_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_csv(frame: pd.DataFrame, path: str | Path, *, index: bool = False) -> Path:
    """CSV with formula cells neutralised; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # CRLF (RFC 4180) also makes the writer quote cells holding a bare \r, which Excel would read as a row break.
    neutralize_formulas(frame).to_csv(path, index=index, lineterminator="\r\n")
    return path


def write_excel(sheets: dict[str, pd.DataFrame], path: str | Path) -> Path:
    """An XLSX workbook (one sheet per frame) with formula cells neutralised and timezones dropped."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            _excel_ready(neutralize_formulas(frame)).to_excel(writer, sheet_name=name[:31], index=False)
    return path


def _excel_ready(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        dtype = out[column].dtype
        if isinstance(dtype, pd.DatetimeTZDtype):
            out[column] = out[column].dt.tz_localize(None)
        elif isinstance(dtype, pd.ArrowDtype):
            out[column] = out[column].astype(object)
    return out
