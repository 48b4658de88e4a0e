"""Analysts' files in and out: read CSV/XLSX/Parquet with spreadsheet row numbers; export with formulas neutralised."""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .columns import header_key, known_headers
from .errors import InputError, option_name
from .ids import is_blank

__all__ = ["SOURCE_ATTR", "TableSource", "neutralize_formulas", "read_bytes", "read_table", "sniff_delimiter", "table_source",
           "write_csv", "write_excel"]

SOURCE_ATTR = "backd_source"
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
TEXT_SUFFIXES = (".csv", ".txt", ".tsv")
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
HEADER_SEARCH_ROWS = 30
"""How far down a title block may push the header row."""
_SNIFF_CHARS = 64 * 1024
_EAGER_BYTES = 16 * 1024 * 1024
"""Text files up to this size are decoded whole. A larger UTF-8 file goes to Arrow's reader as bytes: decoding and
re-encoding ten million ledger rows costs seconds, and Arrow checks the UTF-8 itself."""
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class TableSource:
    """How a table was read, for the plan's header and the CLI: file, format, delimiter, sheet, header line, rows skipped.

    ``skipped`` are the row numbers (spreadsheet lines for files) of fully empty rows below the header.
    """

    name: str | None = None
    format: str = "frame"
    delimiter: str | None = None
    encoding: str | None = None
    sheet: str | None = None
    header_line: int | None = None
    skipped: tuple[int, ...] = ()

    def describe(self) -> str:
        """In words, e.g. ``refunds.csv: CSV, semicolon-separated, header on line 3; 2 empty rows skipped (lines 5, 6)``.

        Examples
        --------
        >>> TableSource("r.csv", "csv", ";", "utf-8", header_line=1, skipped=(4,)).describe()
        'r.csv: CSV, semicolon-separated; 1 empty row skipped (line 4)'
        """
        parts = [self.format.upper() if self.format != "frame" else "a DataFrame"]
        if self.delimiter:
            parts.append(f"{DELIMITERS.get(self.delimiter, repr(self.delimiter))}-separated")
        if self.encoding and self.encoding not in ("utf-8", "utf-8-sig"):
            parts.append(f"encoding {self.encoding}")
        if self.sheet:
            parts.append(f"sheet {self.sheet!r}")
        if self.header_line and self.header_line != 1:
            parts.append(f"header on line {self.header_line}")
        text = f"{self.name}: {', '.join(parts)}" if self.name else ", ".join(parts)
        if self.skipped:
            where = "line" if self.format != "frame" else "row"
            shown = ", ".join(map(str, self.skipped[:10])) + (" ..." if len(self.skipped) > 10 else "")
            count = len(self.skipped)
            text += f"; {count} empty row{'s' if count != 1 else ''} skipped ({where}{'s' if count != 1 else ''} {shown})"
        return text


def table_source(frame: pd.DataFrame) -> TableSource:
    """How ``frame`` was read (a plain frame if it was not read by :func:`read_table`).

    Examples
    --------
    >>> table_source(pd.DataFrame()).format
    'frame'
    """
    found = frame.attrs.get(SOURCE_ATTR) if isinstance(frame, pd.DataFrame) else None
    if not isinstance(found, dict):
        return TableSource()
    return TableSource(**{**found, "skipped": tuple(found.get("skipped") or ())})


def read_table(source: str | Path | pd.DataFrame, *, sheet: str | None = None, header_names: Iterable[str] = ()) -> pd.DataFrame:
    """A DataFrame from a frame (copied) or a CSV/TSV/XLSX/Parquet file; text cells stay text.

    CSV: the delimiter (comma, semicolon, tab, pipe) and encoding (UTF-8 with or without BOM, UTF-16,
    Windows-1252) are detected. XLSX: the first sheet, or ``sheet``. A title block above the header is
    skipped (the header is the row naming the most known columns, or ``header_names``). A file's fully empty
    rows are dropped and counted (a frame is copied as it is). The index is the spreadsheet row number (line 1 is the first line of the file),
    so a message that says "row 7" points at what the analyst sees in Excel. How it was read is
    :func:`table_source` of the frame (kept in ``frame.attrs["backd_source"]``).

    Examples
    --------
    >>> read_table(pd.DataFrame({"backd_order_id": ["BO-1"]})).shape
    (1, 1)
    """
    if isinstance(source, pd.DataFrame):  # a caller's frame: every row is theirs to account for, empty or not
        return _with_source(source.copy(), table_source(source))
    path = Path(source)
    if not path.is_file():
        raise InputError(f"no such file: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path.name}: cannot read it ({exc.strerror or exc})") from None
    return read_bytes(data, path.name, sheet=sheet, header_names=header_names)


def read_bytes(data: bytes, name: str, *, sheet: str | None = None, header_names: Iterable[str] = ()) -> pd.DataFrame:
    """:func:`read_table` for a file's bytes (an upload); ``name`` gives the file type when the content does not.

    Examples
    --------
    >>> frame = read_bytes(b"Order ID;Amount\\r\\nBO-1;5,00\\r\\n", "refunds.csv")
    >>> table_source(frame).delimiter, frame.index.tolist()
    (';', [2])
    """
    kind = _kind(data, name)
    names = known_headers() | {header_key(h) for h in header_names}
    try:
        if kind == "parquet":
            return _with_source(pd.read_parquet(io.BytesIO(data)), TableSource(name, "parquet"))
        if kind == "xlsx":
            return _read_excel(data, name, sheet, names)
        return _read_text(data, name, names)
    except InputError:
        raise
    except (ValueError, OSError, KeyError, IndexError) as exc:  # pandas/openpyxl/pyarrow on a damaged file
        raise InputError(f"{name}: cannot read it as {kind.upper()} ({_first_line(exc)})") from None


def _kind(data: bytes, name: str) -> str:
    suffix = Path(name).suffix.lower()
    if data.startswith(b"PK\x03\x04"):
        return "xlsx"
    if data.startswith(b"PAR1"):
        return "parquet"
    if data.startswith(b"\xd0\xcf\x11\xe0") or suffix == ".xls":
        raise InputError(f"{name} is an old Excel .xls workbook; save it as .xlsx or CSV")
    if suffix in EXCEL_SUFFIXES or suffix == ".parquet":
        return "xlsx" if suffix in EXCEL_SUFFIXES else "parquet"
    return "csv"


# -- text files ------------------------------------------------------------------------------------------------
def _read_text(data: bytes, name: str, names: set[str]) -> pd.DataFrame:
    head = _utf8_head(data) if len(data) > _EAGER_BYTES else None
    text, encoding = (None, "utf-8") if head is not None else _decode(data, name)
    if text is not None:
        head = text[:_SNIFF_CHARS]
    delimiter = sniff_delimiter(head)
    records = _records(head, delimiter)
    header_index = _header_index([cells for cells, _ in records], names)
    header, lines_before = records[header_index] if records else ([], 0)
    widest = max((len(cells) for cells, _ in records[header_index + 1:]), default=0)
    width = max(len(header), 1)
    frame = None
    if text is None:  # a large UTF-8 file: Arrow reads its bytes; anything unusual takes the general path below
        body = _after_lines(data, lines_before + 1) if widest <= width else None
        frame = _read_csv_arrow(body, delimiter, width) if body is not None else None
        if frame is None:
            text, encoding = _decode(data, name)
    if frame is None:
        frame = _parse(text, delimiter, skip_lines=lines_before, width=width, first_line=header_index + 2, name=name,
                       widest_seen=widest)
    frame = frame.set_axis(_column_names(header, frame.shape[1]), axis=1)
    frame.index = pd.RangeIndex(header_index + 2, header_index + 2 + len(frame), name="row")
    frame, skipped = _drop_empty_rows(_drop_unnamed_empty(frame))
    source = TableSource(name, "tsv" if delimiter == "\t" and name.lower().endswith(".tsv") else "csv", delimiter, encoding,
                         header_line=header_index + 1, skipped=tuple(skipped))
    return _with_source(frame, source)


def _utf8_head(data: bytes) -> str | None:
    """The first ``_SNIFF_CHARS`` characters of a UTF-8 file, exactly as the eager path samples them; None if they are
    not UTF-8, or the file's lines do not end in ``\n`` (then the eager path reads it)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None
    head = data[: 4 * _SNIFF_CHARS + 3]  # enough bytes for _SNIFF_CHARS characters of up to 4 bytes, and a BOM
    end = head.rfind(b"\n")
    try:  # a newline byte is never inside a UTF-8 sequence: a cut there splits no character
        text = head[: end + 1].decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    return text[:_SNIFF_CHARS] if len(text) >= _SNIFF_CHARS and "\r" not in text.replace("\r\n", "") else None


def _decode(data: bytes, name: str) -> tuple[str, str]:
    text, encoding = _decoded(data, name)
    if "\r" in text and "\n" not in text:  # Excel's "CSV (Macintosh)": lines end in a lone CR
        text = text.replace("\r", "\n")
    return text, encoding


def _decoded(data: bytes, name: str) -> tuple[str, str]:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"  # Excel's "Unicode Text"
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "windows-1252"  # Excel's plain "CSV" on Windows
    except UnicodeDecodeError:
        raise InputError(f"{name}: not a text file this tool can read (neither UTF-8 nor Windows-1252); "
                         "save it as CSV UTF-8 or XLSX") from None


def sniff_delimiter(sample: str) -> str:
    """The sample's delimiter among comma, semicolon, tab and pipe (csv.Sniffer, then the most consistent count).

    Examples
    --------
    >>> sniff_delimiter("Refunds\\nOrder ID;Amount\\nBO-1;5,00\\n"), sniff_delimiter("backd_order_id\\nBO-1\\n")
    (';', ',')
    """
    sample = sample[: sample.rfind("\n") + 1] or sample  # no half line at the end
    try:
        return csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        pass
    lines = [line for line in sample.splitlines() if line.strip()]
    scores = {}
    for delimiter in DELIMITERS:
        counts = Counter(line.count(delimiter) for line in lines)
        width, lines_with_it = max(counts.items(), key=lambda item: (item[0] > 0, item[1]), default=(0, 0))
        scores[delimiter] = lines_with_it if width else 0
    best = max(scores, key=lambda d: scores[d])
    return best if scores[best] else ","


def _records(sample: str, delimiter: str) -> list[tuple[list[str], int]]:
    """The first records of the sample, each with the number of physical lines before it."""
    reader = csv.reader(io.StringIO(sample), delimiter=delimiter)
    found, before = [], 0
    try:
        for cells in reader:
            found.append((cells, before))
            before = reader.line_num
            if len(found) >= HEADER_SEARCH_ROWS:
                break
    except csv.Error:
        pass  # a quoted cell cut off by the end of the sample
    return found


def _header_index(rows: list[list[Any]], names: set[str]) -> int:
    """The header row: the first naming the most known columns (a title block above it is skipped); else the first row."""
    known = [sum(header_key(c) in names for c in cells if not is_blank(c)) for cells in rows]
    if known and max(known) > 0:
        return known.index(max(known))
    return next((i for i, cells in enumerate(rows) if any(not is_blank(c) for c in cells)), 0)


def _parse(text: str, delimiter: str, *, skip_lines: int, width: int, first_line: int, name: str,
           widest_seen: int) -> pd.DataFrame:
    """The records below the header as text, ``width`` columns; extra cells are an error unless they are empty."""
    try:
        if widest_seen <= width:  # pandas would take a wider first record's extra cells as an index
            return _read_csv(text, delimiter, skip_lines, width)
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=range(width), dtype=str)
    except pd.errors.ParserError:
        pass  # a longer record further down: read it all, then see whether the extra cells hold anything
    records = csv.reader(io.StringIO(text), delimiter=delimiter)
    wide = _read_csv(text, delimiter, skip_lines, max(len(r) for r in records))
    extra = wide.iloc[:, width:]
    filled = ~pd.concat([_empty_cells(extra.iloc[:, i]) for i in range(extra.shape[1])], axis=1).all(axis=1)
    if filled.any():
        position = int(filled.to_numpy().argmax())
        cells = width + int((~_empty_row_cells(extra.iloc[position])).to_numpy().nonzero()[0].max()) + 1
        raise InputError(f"{name}, line {first_line + position}: {cells} cells, but the header has {width} (read as "
                         f"{DELIMITERS[delimiter]}-separated); remove the extra cells or name their column")
    return wide.iloc[:, :width]


def _read_csv(text: str, delimiter: str, skip_lines: int, width: int) -> pd.DataFrame:
    body = _after_lines(text, skip_lines + 1)
    fast = _read_csv_arrow(body.encode("utf-8"), delimiter, width) if body is not None else None
    if fast is not None:
        return fast
    return pd.read_csv(io.StringIO(text), sep=delimiter, header=None, skiprows=skip_lines + 1, names=range(width),
                       index_col=False, dtype=str, keep_default_na=False, na_values=[""], skip_blank_lines=False)


def _after_lines(content: str | bytes, lines: int) -> str | memoryview | None:
    """What follows the first ``lines`` lines; None if there are fewer, or quotes above the cut (where lines and
    records could be counted differently)."""
    newline, quote = ("\n", '"') if isinstance(content, str) else (b"\n", b'"')
    cut = -1
    for _ in range(lines):
        cut = content.find(newline, cut + 1)  # type: ignore[arg-type]
        if cut < 0:
            return None
    if quote in content[:cut]:  # type: ignore[operator]
        return None
    return content[cut + 1:] if isinstance(content, str) else memoryview(content)[cut + 1:]  # bytes: no copy of the file


def _read_csv_arrow(body: bytes | memoryview, delimiter: str, width: int) -> pd.DataFrame | None:
    """Arrow's multi-threaded CSV reader, for the common file: several times faster than pandas' on a million rows,
    with the same result (every cell text, empty cells missing, blank lines as empty rows). None: let pandas read it
    (a short or long record, text that is not UTF-8)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    names = [str(i) for i in range(width)]
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(body),
            read_options=pa_csv.ReadOptions(column_names=names, block_size=1 << 24),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=True,
                                                  null_values=[""], quoted_strings_can_be_null=True))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    # Arrow-backed text with <NA> for empty cells: what every reader of the frame converts to (``astype("string")``
    # is then free, where from pandas' default text dtype it copies every column).
    frame = table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get)
    frame.columns = range(width)
    return frame


def _empty_row_cells(row: pd.Series) -> pd.Series:
    return row.isna() | row.astype("string").str.strip().eq("").fillna(True).astype(bool)


def _column_names(header: list[Any], width: int) -> list[str]:
    cells = [*header, *[""] * (width - len(header))]
    return [str(c).strip() if not is_blank(c) else f"Unnamed: {i}" for i, c in enumerate(cells[:width])]


# -- workbooks -------------------------------------------------------------------------------------------------------
def _read_excel(data: bytes, name: str, sheet: str | None, names: set[str]) -> pd.DataFrame:
    book = pd.ExcelFile(io.BytesIO(data), engine="openpyxl")
    if sheet is not None and sheet not in book.sheet_names:
        raise InputError(f"{name} has no sheet {sheet!r}; its sheets are {', '.join(map(repr, book.sheet_names))}. "
                         f"Pick one with {option_name('sheet')}")
    chosen = sheet if sheet is not None else book.sheet_names[0]
    cells = pd.read_excel(book, sheet_name=chosen, header=None, dtype=object)
    rows = cells.head(HEADER_SEARCH_ROWS).to_numpy(dtype=object).tolist()
    header_index = _header_index(rows, names)
    header = rows[header_index] if rows else []
    frame = cells.iloc[header_index + 1:].set_axis(_column_names(header, cells.shape[1]), axis=1)
    frame.index = pd.RangeIndex(header_index + 2, header_index + 2 + len(frame), name="row")
    frame, skipped = _drop_empty_rows(_drop_unnamed_empty(frame))
    source = TableSource(name, "xlsx", sheet=chosen if len(book.sheet_names) > 1 or sheet else None,
                         header_line=header_index + 1, skipped=tuple(skipped))
    return _with_source(frame, source)


# -- shared --------------------------------------------------------------------------------------------------------
def _drop_unnamed_empty(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns with no header and no value (a trailing delimiter, Excel's formatted-but-empty columns)."""
    keep = [i for i, c in enumerate(frame.columns) if not (str(c).startswith("Unnamed: ") and _empty_cells(frame.iloc[:, i]).all())]
    return frame.iloc[:, keep]


def _drop_empty_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Any]]:
    """The frame without fully empty rows (``,,,``), and the labels of those rows."""
    if frame.empty:
        return frame, []
    candidates = np.arange(len(frame))  # rows empty in every column so far: after the first column, a handful
    for i in range(frame.shape[1]):
        column = frame.iloc[:, i] if len(candidates) == len(frame) else frame.iloc[candidates, i]
        candidates = candidates[_empty_cells(column).to_numpy(dtype=bool)]
        if not len(candidates):
            return frame, []
    labels = [int(x) if pd.api.types.is_integer(x) else str(x) for x in frame.index[candidates]]
    keep = np.ones(len(frame), dtype=bool)
    keep[candidates] = False
    return frame[keep], labels


def _empty_cells(column: pd.Series) -> pd.Series:
    missing = column.isna()
    if column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
        text = column.astype("string").str.strip(" \t\u00a0\u200b\ufeff")
        missing |= text.eq("").fillna(True).astype(bool)
    return missing.reset_index(drop=True).set_axis(column.index)


def _with_source(frame: pd.DataFrame, source: TableSource) -> pd.DataFrame:
    # A plain dict: attrs travel into Parquet metadata as JSON (and deep copies); a dataclass would not.
    frame.attrs = {**frame.attrs, SOURCE_ATTR: asdict(source)}
    return frame


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


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
