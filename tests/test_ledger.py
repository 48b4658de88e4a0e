"""load_ledger: names mapped, money exact in cents, every bad cell reported at once, nothing coerced silently."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from backd_ops.errors import InputError
from backd_ops.ledger import LedgerError, load_ledger, to_cents
from backd_ops.models import MONEY_DTYPE
from backd_ops.money import parse_amount


def good(**overrides) -> pd.DataFrame:
    base = {"merchant_order_id": ["M-1", "M-2"], "backd_order_id": ["BO-1", ""], "status": ["Shipped", "pending"],
            "order_total": ["1,234.50", "10"], "refunded_amount": ["0.10", ""]}
    base.update(overrides)
    return pd.DataFrame(base)


def test_loads_and_maps_statuses_and_money():
    ledger = load_ledger(good())
    assert ledger["order_total_cents"].tolist() == [123450, 1000]
    assert ledger["refunded_cents"].tolist() == [10, 0]
    assert ledger["backd_status"].tolist() == ["order_confirmed", "order_placed"]
    assert ledger["backd_order_id"].isna().tolist() == [False, True]  # blank ids are kept, to be reported as unverifiable


def test_column_and_status_maps():
    frame = good().rename(columns={"merchant_order_id": "Order #", "order_total": "Total"})
    frame["status"] = ["Dispatched", "pending"]
    ledger = load_ledger(frame, column_map={"Order #": "merchant_order_id", "Total": "order_total"}, status_map={"dispatched": "order_confirmed"})
    assert ledger["backd_status"].tolist() == ["order_confirmed", "order_placed"]


def test_every_bad_cell_is_reported_at_once():
    frame = good(merchant_order_id=["", "M-2"], backd_order_id=["BO 1", "=cmd|' /C calc'!A0"], status=["paid", "lost"],
                 order_total=["12.345", "-1"], refunded_amount=["x", "11"])
    with pytest.raises(LedgerError) as info:
        load_ledger(frame)
    problems = info.value.problems
    assert set(zip(problems.row, problems.column)) == {
        (0, "merchant_order_id"), (0, "backd_order_id"), (0, "order_total"), (0, "refunded_amount"),
        (1, "backd_order_id"), (1, "status"), (1, "order_total"), (1, "refunded_amount"),
    }
    assert "row 0, column order_total: '12.345' has more than 2 decimals" in str(info.value)


def test_missing_columns_say_how_to_map(tmp_path):
    with pytest.raises(InputError, match="missing column order_total.*column_map"):
        load_ledger(pd.DataFrame({"merchant_order_id": ["M"], "backd_order_id": ["B"], "status": ["paid"]}))


def test_reads_files_with_spreadsheet_rows(tmp_path):
    path = tmp_path / "ledger.csv"
    good(order_total=["1.00", "oops"]).to_csv(path, index=False)
    with pytest.raises(LedgerError) as info:
        load_ledger(path)
    assert info.value.problems.row.tolist() == [3]  # header is row 1, so the second record is row 3
    xlsx = tmp_path / "ledger.xlsx"
    good().to_excel(xlsx, index=False)
    assert load_ledger(xlsx)["order_total_cents"].tolist() == [123450, 1000]
    parquet = tmp_path / "ledger.parquet"
    good(order_total=pd.array([Decimal("1.50"), Decimal("2.00")], dtype=MONEY_DTYPE)).to_parquet(parquet)
    assert load_ledger(parquet)["order_total_cents"].tolist() == [150, 200]


def test_float_columns_are_exact_or_rejected():
    cents, problems = to_cents(pd.Series([0.1 + 0.2, 19.99, 1.005, float("nan")]))
    assert cents.tolist()[:2] == [30, 1999] and problems.tolist()[2] != "" and pd.isna(cents[3])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.decimals(min_value=-10**9, max_value=10**9, places=2, allow_nan=False, allow_infinity=False), min_size=1, max_size=30))
def test_text_cents_round_trip_exactly(amounts):
    cents, problems = to_cents(pd.Series([f"{a:.2f}" for a in amounts]))
    assert (problems == "").all()
    assert cents.tolist() == [int(a * 100) for a in amounts]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="0123456789.,-$ ()\u00a0\u2003\u3000\x0b", max_size=16), min_size=1, max_size=25),
       st.sampled_from([".", ","]))
@example(["12.50", "-0.05", "-.50", ".50", "00.10", "1234567890123.45", "12345678901234.50", "-0.00", "1.5", "7"], ".")
@example(["12,50", "-0,05", "1.234,50", "12.50", "1 234,50", "-1,2"], ",")
def test_the_column_parser_agrees_with_the_cell_parser(cells, decimal):
    """One grammar, two implementations: every fast path of the column form gives what parse_amount gives, cell by cell."""
    cents, problems = to_cents(pd.Series(cells, dtype="string"), decimal=decimal)
    for cell, got, problem in zip(cells, cents.tolist(), problems.tolist()):
        if not cell.strip(" \t\r\n\u00a0\u202f"):  # blank: only the spaces the amount grammar allows around a number
            assert got is pd.NA and problem == ""
            continue
        try:
            expected = int(parse_amount(cell, allow_negative=True, decimal=decimal) * 100)
        except ValueError:
            assert got is pd.NA and problem != "", cell
        else:
            assert got == expected and problem == "", cell


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=12), st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.none()),
                min_size=1, max_size=20))
def test_hostile_cells_never_crash_and_are_named(cells):
    frame = pd.DataFrame({"merchant_order_id": cells, "backd_order_id": cells, "status": cells, "order_total": cells})
    try:
        ledger = load_ledger(frame.astype(object))
    except LedgerError as exc:
        assert set(exc.problems.column) <= {"merchant_order_id", "backd_order_id", "status", "order_total", "refunded_amount"}
        assert set(exc.problems.row) <= set(frame.index)
    else:
        assert len(ledger) == len(frame)


def test_chunked_text_columns_parse_like_whole_ones():
    """Arrow's CSV reader (16 MB blocks) and multi-row-group Parquet hand over chunked columns; the grammar path too."""
    import pyarrow as pa

    chunked = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([["12.50", "USD 12.00"], ["(5.00)", "N/A", None]])))
    cents, problems = to_cents(chunked)
    assert cents.tolist()[:3] == [1250, 1200, -500] and cents.isna().tolist()[3:] == [True, True]
    assert problems.tolist()[3] != "" and problems.tolist()[4] == ""
