"""The Arrow helpers the reconciliation stands on: shared id codes must group exactly as the strings do."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backd_ops import arrowtools
from backd_ops.arrowtools import IdKeys, shared_codes

_IDS = st.one_of(st.none(), st.just(""), st.sampled_from(["BO-1", "BO-10", "BO-01", "1", "01", "é", "ü1", "a1", "q1"]),
                 st.text(max_size=6))


def _same_groups(codes: np.ndarray, values: list) -> bool:
    """Equal strings share a code, different strings differ, missing is -1."""
    expected = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)[0]
    return bool((codes < 0).tolist() == (expected < 0).tolist()
                and (pd.factorize(codes)[0] == pd.factorize(expected)[0]).all())


@settings(max_examples=200, deadline=None)
@given(values=st.lists(_IDS, max_size=60), skip=st.integers(0, 3))
def test_partitioned_codes_group_exactly_as_the_strings(values, skip):
    array = pa.array(["x"] * skip + values, type=pa.string()).slice(skip)  # a sliced array: offsets do not start at 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(arrowtools, "PARTITIONED_FROM", 0)
        codes, size = shared_codes(array)
    assert _same_groups(codes, values)
    assert size == len({v for v in values if v is not None})
    serial, serial_size = shared_codes(array)  # the small path: one hash table
    assert _same_groups(serial, values) and serial_size == size


def test_a_large_join_by_partitions_finds_every_order():
    rng = np.random.default_rng(5)
    ids = np.char.add("BO-", rng.permutation(600_000).astype(str))
    ledger = pd.Series(ids[:550_000], dtype="string")
    orders = pd.Series(np.concatenate([ids[50_000:], ["BO-X", "BO-X"]]), dtype="string")
    keys = IdKeys.build(ledger, orders)
    at = keys.order_at()
    found = at >= 0
    assert found.sum() == 500_000 and not found[:50_000].any()
    assert (orders.to_numpy()[at[found]] == ledger.to_numpy()[found]).all()
    assert keys.last_orders().sum() == len(orders) - 1  # the repeated BO-X keeps its last row


def test_large_strings_are_coded_like_strings(monkeypatch):
    monkeypatch.setattr(arrowtools, "PARTITIONED_FROM", 0)
    values = ["BO-1", "BO-2", "BO-1", None, "é1", "BO-2"]
    codes, size = shared_codes(pa.array(values, type=pa.large_string()))
    assert _same_groups(codes, values) and size == 3
