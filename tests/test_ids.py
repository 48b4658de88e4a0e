"""One id normaliser for bulk files, ledgers and lookups: spreadsheet floats and padding undone alike."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from backd_ops.ids import check_backd_id, normalize_id, normalize_ids


@pytest.mark.parametrize(("value", "expected"), [
    (" BO-1 ", "BO-1"), ("\u00a0BO-1\u200b", "BO-1"), (100045.0, "100045"), (Decimal("7"), "7"), (12, "12"),
    ("", None), ("  ", None), (None, None), (float("nan"), None),
])
def test_normalize_id(value, expected):
    assert normalize_id(value) == expected


@pytest.mark.parametrize("value", [1.5, True, float("inf"), Decimal("NaN")])
def test_values_that_are_not_ids(value):
    with pytest.raises(ValueError, match="is not an id"):
        normalize_id(value)


def test_the_column_form_agrees_with_the_cell_form():
    cells = [" BO-1 ", 100045.0, 1.5, None, "", "\ufeffBO-2", 3]
    ids, problems = normalize_ids(pd.Series(cells, dtype=object))
    expected = []
    for cell in cells:
        try:
            expected.append(normalize_id(cell))
        except ValueError:
            expected.append(None)
    assert [None if pd.isna(i) else i for i in ids] == expected
    assert problems.tolist() == ["", "", "1.5 is not an id", "", "", "", ""]


def test_backd_id_shape():
    assert check_backd_id("BO-20260416-0001") == "BO-20260416-0001"
    with pytest.raises(ValueError, match="is not a Backd order id"):
        check_backd_id("BO 1")
