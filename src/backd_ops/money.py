"""Money from analysts' files: one grammar, one scalar and one vectorised parser, exact to the cent.

Bulk files (``parse_amount``, cell by cell) and ledgers (``to_cents``, a million cells at once) read
amounts by the same rules, so a cell means the same thing wherever it is used:

- ``1234.5``, ``1,234.50``, ``$1,234.50``, ``USD 12.00``, ``-5`` (where negatives are allowed) and
  ``(5.00)`` (an accountant's negative) are amounts;
- a comma that is not a thousands separator (``12,50``, ``1,2,3``) is refused with a message that says how
  to declare a decimal comma (``decimal=","``); under it ``1.234,50`` and ``12,50`` parse;
- scientific notation (``1e3``), more than two decimals (``1.005``) and floats that are not a whole number
  of cents once binary noise is allowed for (``1.005``, but not ``0.1 + 0.2``) are refused the same way.

A float from a spreadsheet is accepted when it is within four units in the last place of a two-decimal
amount: that is binary noise (``19.990000000000002``), not a sub-cent value.
"""

from __future__ import annotations

import math
import numbers
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .arrowtools import arrow_text, row_texts
from .errors import option_hint

__all__ = ["CENT", "DECIMAL_SEPARATORS", "MAX_AMOUNT", "amount_problem", "parse_amount", "to_cents"]

CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("1e13")
MAX_INTEGER_DIGITS = 13
DECIMAL_SEPARATORS = (".", ",")
_NOISE_ULPS = 4
_MINUS = "-\u2212"  # ASCII hyphen-minus and the Unicode minus sign Excel sometimes exports
_GROUP = {".": ",", ",": "[. \u00a0\u202f]"}  # literal characters: RE2 (pyarrow) has no \\u escapes


_SPACE_CHARS = " \t\r\n\u00a0\u202f"
_SPACE = f"[{_SPACE_CHARS}]*"  # explicit: Python's \s is Unicode-aware, RE2's is ASCII only


def _grammar(decimal: str) -> str:
    """The amount grammar for a decimal separator, in the syntax Python's re and RE2 (pyarrow) share."""
    point, group, sp = re.escape(decimal), _GROUP[decimal], _SPACE
    return (
        rf"^{sp}(?P<open>\()?{sp}(?P<sign>[{_MINUS}])?{sp}(?:\$|US\$|USD)?{sp}(?P<sign2>[{_MINUS}])?{sp}"
        rf"(?P<whole>[0-9]{{1,3}}(?:{group}[0-9]{{3}})+|[0-9]+)?(?:{point}(?P<frac>[0-9]*))?"
        rf"{sp}(?:USD)?{sp}(?P<close>\))?{sp}$"
    )


_PATTERNS = {d: re.compile(_grammar(d)) for d in DECIMAL_SEPARATORS}


def _check_decimal(decimal: str) -> None:
    if decimal not in DECIMAL_SEPARATORS:
        raise ValueError(f'decimal must be "." or ",", got {decimal!r}')


# -- scalar ------------------------------------------------------------------------------------------------------
def parse_amount(value: Any, *, allow_negative: bool = False, decimal: str = ".") -> Decimal:
    """An amount, exactly, with two places; ``ValueError`` says why a value is not one.

    Examples
    --------
    >>> parse_amount("$1,234.5"), parse_amount(0.1 + 0.2), parse_amount("1.234,50", decimal=",")
    (Decimal('1234.50'), Decimal('0.30'), Decimal('1234.50'))
    >>> parse_amount("12,50")
    Traceback (most recent call last):
    ...
    ValueError: '12,50' has a comma that is not a thousands separator; if the file uses a decimal comma, pass decimal=","
    """
    _check_decimal(decimal)
    if _is_missing(value):
        raise ValueError("is missing")
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{value!r} is not an amount")
    amount = _exact(value, decimal)
    if abs(amount) >= MAX_AMOUNT:
        raise ValueError(f"{_shown(value)} is too large")
    if amount < 0 and not allow_negative:
        raise ValueError(f"{_shown(value)} is negative")
    return amount


def _exact(value: Any, decimal: str) -> Decimal:
    if isinstance(value, numbers.Integral) and not isinstance(value, Decimal):
        value = Decimal(int(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{_shown(value)} is not a finite amount")
        if abs(value) >= MAX_AMOUNT:
            raise ValueError(f"{_shown(value)} is too large")
        if value != value.quantize(CENT, rounding="ROUND_HALF_EVEN"):
            raise ValueError(f"{_shown(value)} has more than 2 decimals")
        return value.quantize(CENT)
    if isinstance(value, (float, np.floating)):
        cents, good, problem = _float_cents(np.array([float(value)]))
        if problem is not None and problem[0]:
            raise ValueError(f"{_shown(_float_text(value))} {problem[0]}")
        return Decimal(int(cents[0])) * CENT
    return _parse_text(str(value), decimal)


def _parse_text(text: str, decimal: str) -> Decimal:
    match = _PATTERNS[decimal].match(text)
    if match is None or not (match["whole"] or match["frac"]) or bool(match["open"]) != bool(match["close"]):
        raise ValueError(amount_problem(text, decimal))
    if sum(bool(match[name]) for name in ("sign", "sign2", "open")) > 1:
        raise ValueError(f"{_shown(text)} is marked negative twice; write one minus sign or parentheses")
    whole = re.sub(r"[^0-9]", "", match["whole"] or "0")
    frac = match["frac"] or ""
    if len(whole.lstrip("0")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"{_shown(text)} is too large")
    if frac[2:].strip("0"):
        raise ValueError(f"{_shown(text)} has more than 2 decimals")
    amount = Decimal(f"{whole}.{(frac + '00')[:2]}")
    negative = bool(match["sign"] or match["sign2"]) != bool(match["open"])
    return -amount if negative and amount else amount


def amount_problem(text: str, decimal: str = ".") -> str:
    """Why ``text`` is not an amount, in words an analyst can act on (the same for files and ledgers).

    Examples
    --------
    >>> amount_problem("1e3")
    "'1e3' is in scientific notation; write the amount out (1000.00)"
    """
    shown = _shown(text)
    stripped = text.strip()
    if _PATTERNS[decimal].match(stripped) and not re.search(r"[0-9]", stripped):
        return "is blank" if not stripped else f"{shown} is not a number"
    if re.fullmatch(r"\s*[-+]?[0-9.,]*[0-9][eE][-+]?[0-9]+\s*", text):
        return f"{shown} is in scientific notation; write the amount out ({_spelled(text)})"
    other = "," if decimal == "." else "."
    if other in text and re.fullmatch(r"[\s$()\-\u2212USD0-9.,]*", text):
        if decimal == ".":
            return (f"{shown} has a comma that is not a thousands separator; if the file uses a decimal comma, "
                    f"pass {option_hint('decimal_comma')}")
        return f"{shown} has a point that is not a thousands separator (the file is read with a decimal comma)"
    if text.count(decimal) > 1:
        word = "point" if decimal == "." else "comma"
        hint = f"; if the file writes thousands with points, pass {option_hint('decimal_comma')}" if decimal == "." else ""
        return f"{shown} has more than one decimal {word}{hint}"
    frac = re.search(re.escape(decimal) + r"([0-9]+)\s*\)?\s*$", text)
    if frac and len(frac.group(1)) > 2:
        return f"{shown} has more than 2 decimals"
    return f"{shown} is not a number"


def _spelled(text: str) -> str:
    try:
        return f"{Decimal(text.strip()):.2f}"
    except InvalidOperation:
        return "digits only"


def _shown(value: Any) -> str:
    return repr(str(value)[:40])


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


# -- vectorised -------------------------------------------------------------------------------------------------
def to_cents(values: pd.Series, *, decimal: str = ".") -> tuple[pd.Series, pd.Series]:
    """Exact cents (``Int64``) and a problem per cell (``""`` when fine); blank cells are ``<NA>`` with no problem.

    Examples
    --------
    >>> cents, problems = to_cents(pd.Series(["1,234.50", "0.1", "1.005", "12,50", None]))
    >>> cents.tolist()
    [123450, 10, <NA>, <NA>, <NA>]
    >>> problems.tolist()[2]
    "'1.005' has more than 2 decimals"
    """
    _check_decimal(decimal)
    dtype = values.dtype
    if isinstance(dtype, pd.ArrowDtype) and pa.types.is_decimal(dtype.pyarrow_dtype):
        return _decimal_cents(values)
    if pd.api.types.is_bool_dtype(dtype):
        return _all_bad(values, "is not an amount")
    if pd.api.types.is_integer_dtype(dtype):
        return _integer_cents(values)
    if pd.api.types.is_float_dtype(dtype):
        floats = values.to_numpy(dtype="float64", na_value=np.nan)
        cents, good, problems = _float_cents(floats)
        return _as_series(cents, good, problems, values.index, shown=values)
    if dtype == object and _has_non_text(values):
        return _mixed_cents(values, decimal)
    return _text_cents(values, decimal)


def _as_series(cents: np.ndarray, good: np.ndarray, problems: np.ndarray | None, index: pd.Index, *,
               shown: pd.Series | None = None) -> tuple[pd.Series, pd.Series]:
    if shown is not None and problems is not None:  # name the value in the message, as parse_amount does
        bad = problems != ""
        texts = shown.to_numpy()[bad]
        problems[bad] = [f"{_shown(_float_text(v))} {p}" for v, p in zip(texts, problems[bad])]
    out = pd.arrays.IntegerArray(cents, ~good)
    return pd.Series(out, index=index), row_texts(problems, index)


def _float_text(value: Any) -> str:
    return repr(float(value)) if isinstance(value, (float, np.floating)) else str(value)


def _float_cents(floats: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Cents of float amounts, which are good, and a problem per value (None: no problems at all; NaN is missing:
    not good, no problem). Problems are made only when there are some: ten million empty texts cost seconds."""
    missing = np.isnan(floats)
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.round(floats * 100)
        noise = np.abs(floats - scaled / 100) <= _NOISE_ULPS * np.spacing(np.abs(floats))
        finite = np.isfinite(floats)
        small = np.abs(floats) < float(MAX_AMOUNT)
    faults = [(~missing & ~finite, "is not a finite amount"), (finite & ~small, "is too large"),
              (finite & small & ~noise, "has more than 2 decimals")]
    good = finite & small & noise
    problems = None
    if not good[~missing].all():
        problems = np.full(len(floats), "", dtype=object)
        for mask, text in faults:
            problems[mask] = text
    cents = np.where(good, scaled, 0).astype("int64")
    return cents, good, problems


def _integer_cents(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    ints = values.astype("Int64")
    too_large = (ints.abs() >= int(MAX_AMOUNT)).fillna(False)
    cents = (ints.where(~too_large) * 100).astype("Int64")
    problems = pd.Series(np.where(too_large, "is too large", ""), index=values.index, dtype=object)
    return cents, problems


def _decimal_cents(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    array = pa.array(values)
    if array.type.scale == 2 and isinstance(array, pa.Array):
        fast = _scale2_cents(array, values.index)
        if fast is not None:
            return fast
    too_large = pc.fill_null(pc.greater_equal(pc.abs(array.cast(pa.float64())), float(MAX_AMOUNT)), False)
    if pc.any(too_large).as_py():  # refused like any other too-large amount, never wrapped by a cast
        array = pc.if_else(too_large, pa.scalar(None, array.type), array)
    # 34 digits leave room for the ×100 (Arrow adds the factor's precision, and 38 is the most decimal128 holds)
    scaled = pc.multiply(array.cast(pa.decimal128(34, array.type.scale)), pa.scalar(100, pa.decimal128(3, 0)))
    whole = pc.cast(pc.round(scaled, 0), pa.decimal128(38, 0))
    exact = pc.equal(pc.cast(scaled, pa.decimal128(38, array.type.scale + 2)), pc.cast(whole, pa.decimal128(38, array.type.scale + 2)))
    cents = pc.cast(whole, pa.int64()).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    bad = ~pd.Series(exact.to_pandas(), index=values.index).fillna(True).astype(bool)
    cents = pd.Series(cents.to_numpy(), index=values.index, dtype="Int64").where(~bad)
    problems = np.where(bad, "has more than 2 decimals", "").astype(object)
    problems[np.asarray(too_large, dtype=bool)] = "is too large"
    return cents, pd.Series(problems, index=values.index, dtype=object)


def _scale2_cents(array: pa.Array, index: pd.Index) -> tuple[pd.Series, pd.Series] | None:
    """A two-place decimal column stores cents already: its unscaled 128-bit integers. When every value fits a
    64-bit integer under MAX_AMOUNT (the high word only extends the sign), those are the cents; else None."""
    words = np.frombuffer(array.buffers()[1], dtype=np.int64)[2 * array.offset: 2 * (array.offset + len(array))]
    low, high = words[::2], words[1::2]
    valid = np.asarray(array.is_valid(), dtype=bool)
    fits = (high == (low >> 63)) & (np.abs(low) < int(MAX_AMOUNT) * 100)
    if not fits[valid].all():
        return None
    cents = pd.arrays.IntegerArray(low.copy(), ~valid)
    return pd.Series(cents, index=index), row_texts(None, index)


def _all_bad(values: pd.Series, problem: str) -> tuple[pd.Series, pd.Series]:
    return pd.Series(pd.NA, index=values.index, dtype="Int64"), pd.Series(problem, index=values.index, dtype=object)


def _has_non_text(values: pd.Series) -> bool:
    return not values.map(lambda v: v is None or isinstance(v, str) or _is_missing(v)).all()


def _mixed_cents(values: pd.Series, decimal: str) -> tuple[pd.Series, pd.Series]:
    """An object column from a spreadsheet: numbers by the number rules, text by the grammar, cell by cell."""
    cents, problems = [], []
    for value in values:
        if _is_missing(value) or (isinstance(value, str) and not value.strip()):
            cents.append(pd.NA), problems.append("")
            continue
        try:
            amount = parse_amount(value, allow_negative=True, decimal=decimal)
            cents.append(int(amount * 100)), problems.append("")
        except ValueError as exc:
            cents.append(pd.NA), problems.append(str(exc))
    return pd.Series(cents, index=values.index, dtype="Int64"), pd.Series(problems, index=values.index, dtype=object)


CENTS_TEXT = "cents"
"""A fast shape whose digits, the decimal mark taken out, are the cents: cast straight to integers."""

_FAST = {  # (pattern, characters to drop before the cast): the shapes nearly every export uses, matched by a DFA
    ".": [(r"^-?[0-9]{1,13}\.[0-9]{2}$", CENTS_TEXT),  # what spreadsheets and to_csv write: the digits are the cents
          (r"^-?[0-9]{1,13}(\.[0-9]{1,2})?$", None),
          (r"^(-?\$?|\$-)[0-9]{1,3}(,[0-9]{3}){0,3}(\.[0-9]{1,2})?$", r"[$,]")],  # up to 12 digits; longer: the grammar
    ",": [(r"^-?[0-9]{1,13},[0-9]{2}$", CENTS_TEXT),
          (r"^-?[0-9]{1,13}(,[0-9]{1,2})?$", None),
          (r"^(-?\$?|\$-)[0-9]{1,3}([. ][0-9]{3}){0,3}(,[0-9]{1,2})?$", r"[$. ]")],
}


def _text_cents(values: pd.Series, decimal: str) -> tuple[pd.Series, pd.Series]:
    """Text amounts in pyarrow: common shapes by a fast match and cast, the rest by the full grammar (RE2)."""
    text = pc.utf8_trim(arrow_text(values), _SPACE_CHARS)  # the grammar's spaces only, as parse_amount trims
    blank = np.asarray(pc.fill_null(pc.equal(text, ""), True), dtype=bool)
    cents = np.zeros(len(values), dtype="int64")
    good = np.zeros(len(values), dtype=bool)
    for pattern, drop in _FAST[decimal]:
        todo = np.flatnonzero(~good & ~blank)
        if not len(todo):
            break
        subset = text if len(todo) == len(text) else text.take(pa.array(todo))  # a copy only when some are done
        hit = np.asarray(pc.fill_null(pc.match_substring_regex(subset, pattern), False), dtype=bool)
        if hit.any():
            cents[todo[hit]] = _cast_cents(subset if hit.all() else subset.filter(pa.array(hit)), drop, decimal)
            good[todo[hit]] = True
    rest = np.flatnonzero(~good & ~blank)
    if len(rest):
        cents[rest], good[rest] = _grammar_cents(text.take(pa.array(rest)), decimal)
    bad = ~good & ~blank
    problems = None
    if bad.any():  # made only when needed: ten million empty texts cost seconds
        problems = np.full(len(values), "", dtype=object)
        problems[bad] = [_text_problem(str(v), decimal) for v in values.to_numpy(dtype=object)[bad]]
    return pd.Series(pd.arrays.IntegerArray(cents, ~good), index=values.index), row_texts(problems, values.index)


def _cast_cents(text: pa.Array, drop: str | None, decimal: str) -> np.ndarray:
    if drop == CENTS_TEXT:  # "-12.50" -> -1250: no decimal arithmetic (a fifth of the time, measured at 1,000,000 rows)
        return np.asarray(pc.cast(pc.replace_substring(text, decimal, ""), pa.int64()))
    numbers = pc.replace_substring_regex(text, drop, "") if drop else text
    if decimal == ",":
        numbers = pc.replace_substring(numbers, ",", ".")
    exact = pc.cast(numbers, pa.decimal128(16, 2))
    return np.asarray(pc.cast(pc.multiply(exact, pa.scalar(100, pa.decimal128(3, 0))), pa.int64(), safe=False))


def _grammar_cents(text: pa.Array, decimal: str) -> tuple[np.ndarray, np.ndarray]:
    """Cents and validity of amounts written with separators, symbols, signs or parentheses."""
    parts = pc.extract_regex(text, _grammar(decimal))
    whole_text = pc.replace_substring_regex(pc.fill_null(parts.field("whole"), ""), r"[^0-9]", "")
    frac = pc.fill_null(parts.field("frac"), "")
    ok = _text_ok(parts, whole_text, frac)
    whole = pc.cast(pc.if_else(pc.and_(ok, pc.not_equal(whole_text, "")), whole_text, "0"), pa.int64())
    frac2 = pc.cast(pc.if_else(ok, pc.utf8_slice_codeunits(pc.utf8_rpad(frac, 2, "0"), 0, 2), "0"), pa.int64())
    cents = np.asarray(pc.add(pc.multiply(whole, 100), frac2))
    signs = [np.asarray(pc.is_valid(_nonempty(parts.field(name))), dtype=bool) for name in ("sign", "sign2", "open")]
    negative = (signs[0] | signs[1]) != signs[2]
    return np.where(negative, -cents, cents), np.array(ok, dtype=bool)


def _nonempty(array: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(pc.fill_null(array, ""), ""), pa.scalar(None, pa.string()), array)


def _text_ok(parts: pa.StructArray, whole_text: pa.Array, frac: pa.Array) -> pa.Array:
    matched = pc.is_valid(parts)
    has_digits = pc.or_(pc.not_equal(whole_text, ""), pc.not_equal(frac, ""))
    marks = [pc.cast(pc.is_valid(_nonempty(parts.field(name))), pa.int8()) for name in ("sign", "sign2", "open")]
    balanced = pc.and_(pc.equal(pc.is_valid(_nonempty(parts.field("open"))), pc.is_valid(_nonempty(parts.field("close")))),
                       pc.less_equal(pc.add(pc.add(marks[0], marks[1]), marks[2]), 1))  # one way of saying negative
    not_too_large = pc.less_equal(pc.utf8_length(pc.utf8_ltrim(whole_text, "0")), MAX_INTEGER_DIGITS)
    cents_only = pc.match_substring_regex(pc.utf8_slice_codeunits(frac, 2, 1 << 30), r"^0*$")
    ok = pc.and_(pc.and_(matched, has_digits), pc.and_(pc.and_(balanced, not_too_large), cents_only))
    return pc.fill_null(ok, False)


def _text_problem(text: str, decimal: str) -> str:
    try:
        parse_amount(text, allow_negative=True, decimal=decimal)
    except ValueError as exc:
        return str(exc)
    return f"{_shown(text)} is not a number"
