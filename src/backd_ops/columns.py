"""Column mapping: the analyst's headers to our column names, the same way for every bulk operation and the ledger.

Headers match case-, space- and punctuation-insensitively (``ORDER ID``, ``Order-Id`` and ``order_id`` are
one header) against our names and common synonyms (:data:`SYNONYMS`). A ``column_map`` (``{"Order #":
"backd_order_id"}``, or ``"Order #=backd_order_id,Amount=refund_amount"`` on the command line) says what the
synonyms cannot guess, and wins. Two headers that could both be one column are an error naming both: money
does not move on a guess. Every match is reported (:func:`describe_matches`), so the plan says which header
became which column.
"""

from __future__ import annotations

import ast
import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from .errors import InputError, option_hint, option_name

__all__ = [
    "SYNONYMS",
    "ColumnMatch",
    "MappedColumns",
    "describe_matches",
    "header_key",
    "known_headers",
    "map_columns",
    "parse_mapping",
]

SYNONYMS: dict[str, tuple[str, ...]] = {
    "backd_order_id": ("Order ID", "Backd Order", "Backd Order ID", "Backd ID", "Backd Order Number", "Backd Order No",
                       "Backd Ref", "Backd Reference", "BNPL Order ID"),
    "merchant_order_id": ("Merchant Order", "Merchant Order ID", "Merchant Order Number", "Merchant Order No", "Merchant Ref",
                          "Merchant Reference"),
    "refund_amount": ("Refund", "Refund Amount", "Amount", "Refund Amt", "Amount to Refund", "Refund Total"),
    "order_total": ("Order Total", "Total", "New Total", "New Order Total", "Order Amount", "Total Amount"),
    "cart_amount": ("Cart", "Cart Amount", "Subtotal", "Cart Subtotal"),
    "tax_amount": ("Tax", "Tax Amount", "Sales Tax"),
    "shipping_amount": ("Shipping", "Shipping Amount", "Shipping Cost", "Freight"),
    "discount_amount": ("Discount", "Discount Amount"),
    "merchant_order_status": ("Merchant Status", "Merchant Order Status", "Fulfillment Status", "Fulfilment Status"),
    "status": ("Order Status", "Ledger Status"),
    "refunded_amount": ("Refunded", "Refunded Amount", "Amount Refunded", "Total Refunded"),
    "profile": ("Backd Profile", "Backd Account", "Account"),
    "order_date": ("Date", "Order Date", "Created", "Create Date", "Created At"),
}
"""Our column → headers that mean it. A header is matched by :func:`header_key`, so spelling variants are free."""

_CURRENCY_SUFFIXES = ("usd",)


@dataclass(frozen=True)
class ColumnMatch:
    """One header taken as one of our columns, and why: ``"name"`` (our name), ``"synonym"`` or ``"column_map"``."""

    header: str
    column: str
    how: str


@dataclass(frozen=True)
class MappedColumns:
    """The input with our column names (only the columns we use), the matches made, and the headers not used."""

    frame: pd.DataFrame
    matches: tuple[ColumnMatch, ...]
    unused: tuple[str, ...]

    def describe(self) -> str:
        return describe_matches(self.matches, self.unused)


def header_key(header: Any) -> str:
    """The form headers are compared in: letters and digits only, lower case, accents and a currency suffix dropped.

    Examples
    --------
    >>> header_key(" Backd Order-ID "), header_key("Refund Amount (USD)"), header_key("\\ufeffOrder #")
    ('backdorderid', 'refundamount', 'order')
    """
    text = unicodedata.normalize("NFKD", str(header)).encode("ascii", "ignore").decode().lower()
    key = re.sub(r"[^a-z0-9]", "", text)
    for suffix in _CURRENCY_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            key = key[: -len(suffix)]
    return key


def known_headers(columns: Iterable[str] | None = None) -> set[str]:
    """The header keys that name ``columns`` (all our columns by default): what marks a file's header row.

    Examples
    --------
    >>> sorted(known_headers(["discount_amount"]))
    ['discount', 'discountamount']
    """
    names = SYNONYMS.keys() if columns is None else columns
    return {header_key(h) for c in names for h in (c, *SYNONYMS.get(c, ()))}


def map_columns(frame: pd.DataFrame, required: Sequence[str], optional: Sequence[str] = (), *,
                column_map: Mapping[str, str] | str | None = None, what: str = "the input") -> MappedColumns:
    """Take ``required`` and ``optional`` columns from ``frame`` by name, synonym or ``column_map``.

    Raises :class:`InputError` for a missing required column (naming the headers there are and how to map
    one), for two headers that could be one column (naming both), and for a ``column_map`` entry that names
    no header or no column of ours.

    Examples
    --------
    >>> frame = pd.DataFrame({"ORDER ID": ["BO-1"], "Refund Amount": ["5"], "Notes": ["x"]})
    >>> mapped = map_columns(frame, ["backd_order_id", "refund_amount"], ["merchant_order_id"])
    >>> list(mapped.frame.columns), mapped.describe()
    (['backd_order_id', 'refund_amount'], 'ORDER ID → backd_order_id, Refund Amount → refund_amount; not used: Notes')
    """
    wanted = [*required, *optional]
    headers = [str(h) for h in frame.columns]
    chosen = _explicit(parse_mapping(column_map), headers, wanted, what)
    for tier in ("name", "synonym"):
        for column in wanted:
            if column not in {m.column for m in chosen.values()}:
                _match_tier(column, tier, headers, chosen)
    missing = [c for c in required if c not in {m.column for m in chosen.values()}]
    if missing:
        raise InputError(_missing_message(missing, required, optional, headers, what))
    matches = tuple(sorted(chosen.values(), key=lambda m: wanted.index(m.column)))
    positions = [headers.index(m.header) for m in matches]
    mapped = frame.iloc[:, positions].set_axis([m.column for m in matches], axis=1)
    unused = tuple(h for h in headers if h not in chosen and not _is_unnamed(h))
    return MappedColumns(mapped, matches, unused)


def _explicit(column_map: dict[str, str], headers: list[str], wanted: list[str], what: str) -> dict[str, ColumnMatch]:
    """The column_map's entries, checked: each names a header of the input and a column of ours."""
    chosen: dict[str, ColumnMatch] = {}
    by_key = {header_key(h): h for h in headers}
    for theirs, ours in column_map.items():
        column = next((c for c in wanted if header_key(c) == header_key(ours)), None)
        header = theirs if theirs in headers else by_key.get(header_key(theirs))
        if header is None and column is None and header_key(theirs) in {header_key(c) for c in wanted}:
            raise InputError(f"{option_name('column_map')}: {theirs!r}={ours!r} is the wrong way round; write it as "
                             f"{ours!r}={theirs!r} (your header first, then our column)")
        if column is None:
            raise InputError(f"{option_name('column_map')}: {ours!r} is not a column {what} takes; it takes {', '.join(wanted)}")
        if header is None:
            raise InputError(f"{option_name('column_map')}: the input has no header {theirs!r}; its headers are {_listed(headers)}")
        if column in {m.column for m in chosen.values()}:
            raise InputError(f"{option_name('column_map')} maps two headers to {column}; keep one")
        chosen[header] = ColumnMatch(header, column, "column_map")
    return chosen


def _match_tier(column: str, tier: str, headers: list[str], chosen: dict[str, ColumnMatch]) -> None:
    keys = {header_key(column)} if tier == "name" else {header_key(s) for s in SYNONYMS.get(column, ())}
    found = [h for h in headers if h not in chosen and header_key(h) in keys]
    if len(found) > 1:
        raise InputError(f"column {column}: the headers {_listed(found, 'and')} both match it; keep one, or say which "
                         f"with {option_hint('column_map')}")
    if found:
        chosen[found[0]] = ColumnMatch(found[0], column, tier)


def _missing_message(missing: list[str], required: Sequence[str], optional: Sequence[str], headers: list[str], what: str) -> str:
    named = [h for h in headers if not _is_unnamed(h)]
    has = f"{len(named)} column{'s' if len(named) != 1 else ''}: {_listed(named)}" if named else "no columns"
    text = (f"{what}: missing column {', '.join(missing)}; the input has {has}. {what.capitalize()} needs "
            f"{', '.join(required)}" + (f" (optional: {', '.join(optional)})" if optional else ""))
    for column in missing:
        if SYNONYMS.get(column):
            text += f"; {column} is also recognised as {', '.join(repr(s) for s in SYNONYMS[column][:4])}"
    return text + f". Name yours with {option_hint('column_map')}" + _delimiter_hint(named)


def _delimiter_hint(headers: Sequence[str]) -> str:
    """A sentence when a header holds another delimiter: the file was split on the wrong character."""
    names = {";": "semicolon", "\t": "tab", "|": "pipe", ",": "comma"}
    for char, name in names.items():
        if any(h.count(char) >= (2 if char == "," else 1) for h in headers):
            return (f". A header contains {name}s ({next(h for h in headers if char in h)[:80]!r}): the file looks "
                    f"{name}-separated but was not read that way")
    return ""


def describe_matches(matches: Sequence[ColumnMatch], unused: Sequence[str] = ()) -> str:
    """Which header became which column, for the plan's header and the CLI.

    Examples
    --------
    >>> describe_matches([ColumnMatch("backd_order_id", "backd_order_id", "name"), ColumnMatch("Amount", "refund_amount", "synonym")])
    'backd_order_id, Amount → refund_amount'
    """
    parts = [m.column if m.header == m.column else f"{m.header} → {m.column}" for m in matches]
    text = ", ".join(parts)
    return text + (f"; not used: {', '.join(unused)}" if unused else "")


def parse_mapping(value: Mapping[str, str] | str | None, *, option: str = "column_map") -> dict[str, str]:
    """A mapping from a dict, JSON, a Python dict literal, or ``"Their name=our_name,Other=ours"``.

    Examples
    --------
    >>> parse_mapping("Order #=backd_order_id, Amount=refund_amount")
    {'Order #': 'backd_order_id', 'Amount': 'refund_amount'}
    >>> parse_mapping("{'Order #': 'backd_order_id'}")
    {'Order #': 'backd_order_id'}
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        parsed: Any = dict(value)
    elif not isinstance(value, str):
        raise InputError(f"{option_name(option)}: expected a mapping, got {type(value).__name__}")
    elif value.strip().startswith("{"):
        parsed = _parse_literal(value, option)
    else:
        parsed = _parse_pairs(value, option)
    if not all(isinstance(k, str) and isinstance(v, str) and k.strip() and v.strip() for k, v in parsed.items()):
        raise InputError(f"{option_name(option)}: every name must be non-empty text, got {parsed!r}")
    return {k.strip(): v.strip() for k, v in parsed.items()}


def _parse_literal(text: str, option: str) -> dict:
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        try:
            parsed = ast.literal_eval(text)  # {'Order #': ...}, as Python people write it
        except (ValueError, SyntaxError):
            raise InputError(f"{option_name(option)}: {text!r} is neither JSON ({exc}) nor a Python dict; write "
                             f"{option_hint(option)}") from None
    if not isinstance(parsed, dict):
        raise InputError(f"{option_name(option)}: expected an object of names, got {type(parsed).__name__}")
    return parsed


def _parse_pairs(text: str, option: str) -> dict:
    parsed = {}
    for pair in filter(str.strip, text.split(",")):
        if "=" not in pair:
            raise InputError(f"{option_name(option)}: {pair.strip()!r} has no '='; write {option_hint(option)}")
        theirs, ours = pair.rsplit("=", 1)
        parsed[theirs.strip()] = ours.strip()
    return parsed


def _listed(items: Sequence[str], last: str = "") -> str:
    quoted = [repr(i) for i in items]
    if last and len(quoted) > 1:
        return f"{', '.join(quoted[:-1])} {last} {quoted[-1]}"
    return ", ".join(quoted[:12]) + (f" and {len(quoted) - 12} more" if len(quoted) > 12 else "")


def _is_unnamed(header: str) -> bool:
    return not header.strip() or bool(re.fullmatch(r"Unnamed: \d+", header))
