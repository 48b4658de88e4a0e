"""Order ids from analysts' files: one normaliser for bulk files, ledgers and lookups, cell by cell or a column at once.

A spreadsheet turns the id ``100045`` into the float ``100045.0``, pads cells with spaces (ordinary,
non-breaking, zero-width) and leaves a byte-order mark on the first header: all of that is undone the same
way wherever an id is read, so an id means the same thing in a refund file, a ledger and ``find --file``.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from .arrowtools import row_texts

__all__ = ["BACKD_ID_PATTERN", "check_backd_id", "check_merchant_id", "is_blank", "normalize_id", "normalize_ids"]

BACKD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_BACKD_ID = re.compile(BACKD_ID_PATTERN)
_MERCHANT_ID = re.compile(r"^[^=+@\x00-\x1f\x7f][^\x00-\x1f\x7f]{0,127}$")
_PADDING = " \t\r\n\u00a0\u2007\u202f\u200b\ufeff"  # spaces Excel and web pages leave around a value


def is_blank(value: Any) -> bool:
    """True for None, NaN, NA and text that is only spaces.

    Examples
    --------
    >>> is_blank(float("nan")), is_blank("\\u00a0 "), is_blank("0")
    (True, True, False)
    """
    if isinstance(value, str):  # first: nearly every cell of a file is text
        return not value.strip(_PADDING)
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def normalize_id(value: Any) -> str | None:
    """An id as text (None when blank); ``ValueError`` for a value that cannot be an id (``1.5``, ``True``).

    Examples
    --------
    >>> normalize_id(" BO-1\\u00a0"), normalize_id(100045.0), normalize_id("")
    ('BO-1', '100045', None)
    """
    if isinstance(value, str):
        return value.strip(_PADDING) or None
    if is_blank(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{value!r} is not an id")
    if isinstance(value, (float, np.floating, Decimal)):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"{value!r} is not an id")
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value).strip(_PADDING) or None


def normalize_ids(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """A column of ids at once: the ids (``string``, NA when blank) and a problem per cell ("" when fine).

    Text cells (all of a CSV) take a vectorised path; only other cells (an XLSX's floats) go one by one.

    Examples
    --------
    >>> ids, problems = normalize_ids(pd.Series([" BO-1 ", 7.0, 1.5, None]))
    >>> ids.tolist(), problems.tolist()
    (['BO-1', '7', <NA>, <NA>], ['', '', '1.5 is not an id', ''])
    """
    if pd.api.types.is_string_dtype(values.dtype) and values.dtype != object:
        text = values.astype("string").str.strip(_PADDING)
        return text.where(text != ""), row_texts(None, values.index)
    problems = np.full(len(values), "", dtype=object)
    objects = values.to_numpy(dtype=object)
    is_text = np.fromiter((type(v) is str for v in objects), dtype=bool, count=len(objects))
    out = np.full(len(objects), pd.NA, dtype=object)
    if is_text.any():
        stripped = pd.Series(objects[is_text], dtype="string").str.strip(_PADDING)
        out[is_text] = stripped.where(stripped != "").to_numpy(dtype=object, na_value=pd.NA)
    for position in np.flatnonzero(~is_text):  # an XLSX's numbers, NaN for empty cells: few, one by one
        try:
            out[position] = normalize_id(objects[position])
        except ValueError as exc:
            problems[position] = str(exc)
    ids = pd.Series(out, index=values.index, dtype="string")
    return ids.where(ids.notna(), pd.NA), row_texts(problems, values.index)


def check_backd_id(text: str) -> str:
    """``text`` if it is a well-formed Backd order id, else ``ValueError`` saying what one looks like.

    Examples
    --------
    >>> check_backd_id("BO-20260416-0001")
    'BO-20260416-0001'
    """
    if not _BACKD_ID.match(text):
        raise ValueError(f"{_shown(text)!r} is not a Backd order id (letters, digits, '-', '_', '.', ':'; at most 128)")
    return text


def check_merchant_id(text: str) -> str:
    """``text`` if it can be a merchant_order_id (no control characters or formula start), else ``ValueError``.

    Examples
    --------
    >>> check_merchant_id("JKLMO4321")
    'JKLMO4321'
    """
    if not _MERCHANT_ID.match(text):
        raise ValueError(f"{_shown(text)!r} is not a valid merchant_order_id (no control characters or leading =, +, @; at most 128)")
    return text


def _shown(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."
