"""Text columns through Arrow: set operations, ids as shared integer codes, per-row texts without Python objects.

pandas' own ``isin`` on Arrow strings goes row by row in Python; here a million order ids are looked up in a
fraction of a second, where ``Series.isin`` takes seconds.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["IdKeys", "arrow_text", "isin", "positions", "row_texts", "shared_codes"]

PARTITIONED_FROM = 500_000
"""From this many strings on, :func:`shared_codes` hashes them in partitions that fit the CPU's cache."""


def arrow_text(values: pd.Series | pd.Index | Iterable[str]) -> pa.Array:
    """Any column (or index, or iterable of str) as one Arrow string array, missing values null, each value as
    ``astype("string")`` writes it. Text (Python strings, ``str``, categories of text) is converted by Arrow:
    ``astype`` goes row by row through Python objects (0.2 s for a million categorical values)."""
    if not isinstance(values, (pd.Series, pd.Index)):
        values = pd.Series(list(values), dtype="string")
    series = pd.Series(values)
    array = _text_by_arrow(series)
    if array is None:  # numbers, decimals, mixed objects: as pandas writes them
        array = pa.array(series.astype("string").array)
    return (array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array).cast(pa.string())


def _text_by_arrow(series: pd.Series) -> pa.Array | pa.ChunkedArray | None:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return pa.array(series.array, from_pandas=True) if pd.api.types.is_string_dtype(series.cat.categories) else None
    if isinstance(series.dtype, pd.StringDtype):
        return pa.array(series.array)
    try:
        return pa.array(series.to_numpy(), from_pandas=True, type=pa.string()) if series.dtype == object else None
    except (pa.ArrowException, TypeError, ValueError):
        return None


def row_texts(texts: np.ndarray | None, index: pd.Index) -> pd.Series:
    """A text per row (a problem per cell, "" when fine) as Arrow-backed strings; None: "" in every row.

    Made in Arrow rather than from a Python object per row, and compared ("" or not) vectorised: at ten million
    rows, object columns of empty problems cost seconds of a ledger's load.

    Examples
    --------
    >>> row_texts(None, pd.RangeIndex(2)).tolist(), row_texts(np.array(["", "is blank"], dtype=object), pd.RangeIndex(2)).ne("").tolist()
    (['', ''], [False, True])
    """
    if texts is None:  # n empty strings: offsets all zero, no characters
        empty = pa.StringArray.from_buffers(len(index), pa.py_buffer(np.zeros(len(index) + 1, dtype=np.int32)), pa.py_buffer(b""))
        return pd.Series(pd.arrays.ArrowStringArray(empty), index=index)
    return pd.Series(texts, index=index, dtype=pd.StringDtype("pyarrow"))


def isin(values: pd.Series | pd.Index, among: pd.Series | pd.Index | Iterable[str]) -> np.ndarray:
    """``values.isin(among)`` as a boolean array (missing values are never in).

    Examples
    --------
    >>> isin(pd.Series(["BO-1", "BO-2", None]), ["BO-2"]).tolist()
    [False, True, False]
    """
    found = pc.is_in(arrow_text(values), value_set=arrow_text(among))
    return np.asarray(pc.fill_null(found, False), dtype=bool)


def positions(values: pd.Series | pd.Index, among: pd.Series | pd.Index) -> np.ndarray:
    """For each value, its position in ``among`` (unique), or -1.

    Examples
    --------
    >>> positions(pd.Series(["b", "x", "a"]), pd.Series(["a", "b"])).tolist()
    [1, -1, 0]
    """
    at = pc.index_in(arrow_text(values), value_set=arrow_text(among))
    return np.asarray(pc.fill_null(at, -1), dtype=np.int64)


@dataclass(frozen=True)
class IdKeys:
    """The ledger's and the orders' ids as integer codes over one shared dictionary: one hash pass, then numpy.

    Hashing ten million strings is the costliest step of a large reconciliation; the join, the ledger's
    duplicates, the orders' duplicates and the orders missing from the ledger all follow from these codes
    with integer arithmetic. A missing id is ``-1``.

    Examples
    --------
    >>> keys = IdKeys.build(pd.Series(["b", "x", "b", None]), pd.Series(["a", "b", "a"]))
    >>> keys.order_at().tolist(), keys.ledger_counts()[keys.orders].tolist(), keys.last_orders().tolist()
    ([1, -1, 1, -1], [0, 2, 0], [False, True, True])
    """

    ledger: np.ndarray
    orders: np.ndarray
    size: int

    @classmethod
    def build(cls, ledger_ids: pd.Series | pd.Index, order_ids: pd.Series | pd.Index) -> IdKeys:
        left, right = arrow_text(ledger_ids), arrow_text(order_ids)
        codes, size = shared_codes(pa.concat_arrays([left, right]))
        return cls(codes[: len(left)], codes[len(left):], size)

    def order_at(self) -> np.ndarray:
        """For each ledger row, the position of its order (the last row with that id), or -1."""
        last = self._last_order_position
        return np.where(self.ledger >= 0, last[np.maximum(self.ledger, 0)], -1)

    def last_orders(self) -> np.ndarray:
        """Which order rows to keep: the last row of each id (and every row without an id)."""
        last = self._last_order_position
        rows = np.arange(len(self.orders))
        return (self.orders < 0) | (last[np.maximum(self.orders, 0)] == rows)

    def only_orders(self, keep: np.ndarray) -> IdKeys:
        """The same keys for the order rows ``keep`` (a boolean mask), e.g. after dropping duplicates."""
        return IdKeys(self.ledger, self.orders[keep], self.size)

    def ledger_counts(self) -> np.ndarray:
        """How many ledger rows each code has (index by code)."""
        return np.bincount(self.ledger[self.ledger >= 0], minlength=max(self.size, 1))

    @cached_property
    def _last_order_position(self) -> np.ndarray:
        last = np.full(max(self.size, 1), -1, dtype=np.int64)
        valid = self.orders >= 0
        np.maximum.at(last, self.orders[valid], np.flatnonzero(valid))
        return last


def shared_codes(values: pa.StringArray) -> tuple[np.ndarray, int]:
    """An integer code per string (equal strings, equal codes; null: -1) and how many distinct strings there are.

    One hash table over millions of distinct ids misses the CPU's cache on nearly every insert. Large inputs are
    split into 256 partitions by their last two bytes (equal strings always land together), each small enough to
    stay in cache, and hashed on every core (Arrow releases the GIL): about twice as fast at a million ids.

    Examples
    --------
    >>> codes, size = shared_codes(pa.array(["b", "a", None, "b"]))
    >>> codes.tolist(), size
    ([0, 1, -1, 0], 2)
    """
    if values.type != pa.string():  # large_string has 64-bit offsets; the partition key reads 32-bit ones
        values = values.cast(pa.string())
    if len(values) < PARTITIONED_FROM or values.buffers()[2] is None:
        encoded = pc.dictionary_encode(values)
        return _codes(encoded), len(encoded.dictionary)
    key = _partition_key(values)
    order = np.argsort(key, kind="stable")  # a radix sort of 8-bit keys: linear
    counts = np.bincount(key, minlength=256)
    grouped = values.take(pa.array(order))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    parts = [grouped.slice(int(start), int(count)) for start, count in zip(starts, counts) if count]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        encoded = list(pool.map(pc.dictionary_encode, parts))
    local = np.empty(len(values), dtype=np.int64)
    base, at = 0, 0
    for part in encoded:
        codes = _codes(part)
        local[at: at + len(codes)] = np.where(codes >= 0, codes + base, -1)
        at, base = at + len(codes), base + len(part.dictionary)
    codes = np.empty(len(values), dtype=np.int64)
    codes[order] = local
    return codes, base


def _codes(encoded: pa.DictionaryArray) -> np.ndarray:
    return np.asarray(pc.fill_null(encoded.indices.cast(pa.int64()), -1), dtype=np.int64)


def _partition_key(values: pa.StringArray) -> np.ndarray:
    """A byte per string from its last two bytes (0 when it is shorter): equal strings, equal keys."""
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32, count=len(values) + 1, offset=4 * values.offset)
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)
    ends, lengths = offsets[1:], np.diff(offsets)
    if not len(data):
        return np.zeros(len(values), dtype=np.uint8)
    last = np.where(lengths >= 1, data[np.clip(ends - 1, 0, len(data) - 1)], 0).astype(np.uint8)
    before = np.where(lengths >= 2, data[np.clip(ends - 2, 0, len(data) - 1)], 0).astype(np.uint8)
    return ((last & 0x0F) | ((before & 0x0F) << 4)) ^ (last & 0xF0)
