"""Reading analysts' files: delimiters, encodings, title rows, empty rows and sheets, with spreadsheet row numbers."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from backd_ops.errors import InputError
from backd_ops.tables import read_bytes, read_table, sniff_delimiter, table_source


@pytest.mark.parametrize(("delimiter", "name"), [(",", "comma"), (";", "semicolon"), ("\t", "tab"), ("|", "pipe")])
def test_the_delimiter_is_found_and_said(delimiter, name):
    text = delimiter.join(["Order ID", "Refund Amount", "Reason"]) + "\n" + delimiter.join(["BO-1", "1,50" if delimiter != "," else "1.50", "x"]) + "\n"
    frame = read_bytes(text.encode(), "refunds.csv")
    assert list(frame.columns) == ["Order ID", "Refund Amount", "Reason"] and frame.index.tolist() == [2]
    assert f"{name}-separated" in table_source(frame).describe()


def test_row_numbers_are_spreadsheet_lines_after_titles_blank_and_empty_rows():
    text = "Refunds for April\n\nbackd_order_id,refund_amount\nBO-1,1.00\n\n,\n \t, \nBO-2,abc\n"
    frame = read_bytes(text.encode(), "r.csv")
    assert frame.index.tolist() == [4, 8] and frame.loc[8, "refund_amount"] == "abc"
    source = table_source(frame)
    assert (source.header_line, source.skipped) == (3, (5, 6, 7))
    assert source.describe() == "r.csv: CSV, comma-separated, header on line 3; 3 empty rows skipped (lines 5, 6, 7)"


@pytest.mark.parametrize(("data", "encoding"), [
    ("\ufeffOrder ID,Amount\nBO-é,5\n".encode("utf-8"), None),
    ("Order ID,Amount\nBO-é,5\n".encode("cp1252"), "windows-1252"),
    ("Order ID\tAmount\nBO-é\t5\n".encode("utf-16"), "utf-16"),
])
def test_encodings_and_the_bom(data, encoding):
    frame = read_bytes(data, "r.csv")
    assert list(frame.columns) == ["Order ID", "Amount"] and frame["Order ID"].tolist() == ["BO-é"]
    assert (f"encoding {encoding}" in table_source(frame).describe()) == bool(encoding)


def test_xlsx_first_sheet_or_the_named_one_with_a_title_row(tmp_path):
    book = Workbook()
    sheet = book.active
    sheet.title = "Summary"
    sheet["A1"] = "nothing here"
    data = book.create_sheet("Refunds")
    data["A1"], data["A3"], data["B3"], data["A4"], data["B4"], data["A6"], data["B6"] = (
        "April refunds", "Order ID", "Amount", "BO-1", 1.5, 100045, 2)
    path = tmp_path / "refunds.xlsx"
    book.save(path)
    assert list(read_table(path).columns) == ["nothing here"]
    frame = read_table(path, sheet="Refunds")
    assert frame.index.tolist() == [4, 6] and frame["Amount"].tolist() == [1.5, 2]
    assert table_source(frame).describe() == "refunds.xlsx: XLSX, sheet 'Refunds', header on line 3; 1 empty row skipped (line 5)"
    with pytest.raises(InputError, match="has no sheet 'Nope'; its sheets are 'Summary', 'Refunds'. Pick one with sheet"):
        read_table(path, sheet="Nope")
    disguised = tmp_path / "ids.csv"  # an XLSX saved with the wrong name is still read as what it is
    disguised.write_bytes(path.read_bytes())
    assert table_source(read_table(disguised)).format == "xlsx"


def test_files_that_cannot_be_read_say_why(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="it is a directory"):
        read_table(tmp_path)
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0rest")
    with pytest.raises(InputError, match="old Excel .xls workbook; save it as .xlsx or CSV"):
        read_table(tmp_path / "old.xls")
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n1,2,3\n")
    with pytest.raises(InputError, match=r"ragged.csv, line 3: 3 cells, but the header has 2 \(read as comma-separated\)"):
        read_table(tmp_path / "ragged.csv")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="bad.parquet: cannot read it as PARQUET"):
        read_table(tmp_path / "bad.parquet")


def test_a_frame_is_copied_as_it_is():
    frame = pd.DataFrame({"backd_order_id": ["BO-1", None]}, index=[7, 8])
    copy = read_table(frame)
    assert copy is not frame and copy.index.tolist() == [7, 8]


def test_sniffing_falls_back_to_the_most_consistent_delimiter():
    assert sniff_delimiter("Title\nOrder ID;Amount;Reason\nBO-1;5,00;x\nBO-2;6;y\n") == ";"
    assert sniff_delimiter("backd_order_id\nBO-1\n") == ","


_CELL = st.one_of(st.just(""), st.just(" "), st.sampled_from(["BO-1", "1.234,50", '"quoted"', "a,b", "a;b", "line\nbreak", "=1+1", "é ü"]),
                  st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x00"), max_size=8))


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.lists(_CELL, min_size=3, max_size=3), min_size=1, max_size=12), delimiter=st.sampled_from([",", ";", "\t", "|"]))
def test_arrow_and_pandas_csv_readers_agree(rows, delimiter):
    """The fast reader (Arrow) and the fallback (pandas) must read every file the same way."""
    import csv
    import io

    from backd_ops.tables import _after_lines, _read_csv_arrow

    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(["a", "b", "c"])
    writer.writerows(rows)
    text = buffer.getvalue()
    fast = _read_csv_arrow(_after_lines(text, 1).encode("utf-8"), delimiter, 3)
    slow = pd.read_csv(io.StringIO(text), sep=delimiter, header=None, skiprows=1, names=range(3), index_col=False, dtype=str,
                       keep_default_na=False, na_values=[""], skip_blank_lines=False)
    assert fast is not None  # every record has the header's width: the fast path takes it
    pd.testing.assert_frame_equal(fast, slow, check_dtype=False, check_index_type=False)


_LARGE_FILE_CASES = {
    "plain": b"backd_order_id,refund_amount\nBO-1,5.00\nBO-2,6.00\n",
    "bom, title and blank lines": b"\xef\xbb\xbfRefunds for April\n\nOrder ID;Refund Amount\nBO-1;5,00\n;\n\nBO-2;6,00\n",
    "windows-1252 below the head": b"backd_order_id,reason\n" + b"BO-1,ok\n" * 10_000 + b"BO-2,caf\xe9\n",
    "a longer record further down": b"backd_order_id,refund_amount\nBO-1,5.00\nBO-2,6.00,,\n",
    "quotes in the header": b'"backd_order_id","refund_amount"\nBO-1,"1,234.50"\n',
    "a short record": b"backd_order_id,refund_amount,reason\nBO-1,5.00\n",
    # 64 Ki characters of two-byte letters: the sniffed sample is characters on both paths, not bytes on one
    "multi-byte text past the sample": ("Erstattungen, April 2026\nbackd_order_id;refund_amount;reason\n"
                                        + "".join(f"BO-{i};5.00;Rückgabe für Müller-Lüdenscheidt, Düsseldorf {'é' * 25}\n" for i in range(750))
                                        + "".join(f'BO-{i};5.00;"Rückgabe, zu groß"\n' for i in range(750, 1300))).encode(),
    "lines ending in a lone CR (CSV for Macintosh)": b"backd_order_id,refund_amount\rBO-1,5.00\rBO-2,6.00\r",
}


@pytest.mark.parametrize("case", sorted(_LARGE_FILE_CASES))
def test_a_large_file_read_from_its_bytes_is_read_as_a_small_one(case, monkeypatch):
    """Large UTF-8 files skip the decode and go to Arrow as bytes; every file must come out exactly as the eager path reads it."""
    import backd_ops.tables as tables

    data = _LARGE_FILE_CASES[case]
    eager = tables.read_bytes(data, "f.csv")
    monkeypatch.setattr(tables, "_EAGER_BYTES", 0)
    large = tables.read_bytes(data, "f.csv")
    pd.testing.assert_frame_equal(large, eager, check_dtype=False)
    assert large.attrs == eager.attrs


def test_a_csv_for_macintosh_keeps_its_header_and_columns():
    frame = read_bytes(b"backd_order_id,refund_amount\rBO-1,5.00\rBO-2,6.00\r", "refunds.csv")
    assert list(frame.columns) == ["backd_order_id", "refund_amount"] and frame.index.tolist() == [2, 3]
    assert frame["refund_amount"].tolist() == ["5.00", "6.00"]
