"""Rendering for people: money as people read it, charts, a self-contained HTML report and a formatted workbook.

It renders frames and mappings it is given and knows nothing of how they were made. Every value is
HTML-escaped (ledger text cannot inject markup) and every text cell of a workbook has formulas neutralised.
Money is right-aligned with separators, tables have totals where they add up, and nothing shows ``<NA>``.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import pandas as pd

from .compare import KINDS
from .models import format_money
from .tables import neutralize_formulas

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["bar_chart", "discrepancies_for_people", "grouped_bar_chart", "history_chart", "money", "pairs_html", "summary_for_people",
           "summary_html", "write_html_report", "write_workbook"]

SANDBOX_BANNER = "SANDBOX: not production data"
_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1f2933}
h1{font-size:22px} h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;font-size:13px} th,td{border:1px solid #d9e2ec;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f4f8} td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.total td{font-weight:700;border-top:2px solid #52606d} .about td:first-child{font-weight:600;white-space:nowrap}
.charts img{max-width:520px;margin:8px 16px 8px 0} .sandbox{background:#b42318;color:#fff;padding:6px 12px;font-weight:700;display:inline-block}
.high{color:#b42318;font-weight:600} .medium{color:#b54708} .low{color:#52606d} .headline td{font-size:15px}
"""
_MONEY_FORMAT = '"$"#,##0.00;-"$"#,##0.00'


def money(value: Any) -> str:
    """An amount as people read it ("" when missing).

    Examples
    --------
    >>> money(Decimal("1234.5")), money(None)
    ('$1,234.50', '')
    """
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    return format_money(Decimal(str(value)))


# -- frames for people ------------------------------------------------------------------------------------------------
def summary_for_people(summary: pd.DataFrame) -> pd.DataFrame:
    """The per-kind summary with human labels (its last row is the total)."""
    return pd.DataFrame({"Kind": summary["label"].to_numpy(), "Severity": summary["severity"].to_numpy(),
                         "Findings": summary["findings"].to_numpy(), "Ledger rows": summary["rows"].to_numpy(),
                         "Money at stake": summary["at_stake"].astype(object).to_numpy()})


_PEOPLE_COLUMNS = {
    "kind": "Kind", "severity": "Severity", "row": "Ledger row", "backd_order_id": "Backd order", "merchant_order_id": "Merchant order",
    "ledger_value": "Ledger", "backd_value": "Backd", "difference": "Difference", "at_stake": "Money at stake", "action": "Action",
    "change": "Change", "first_seen": "First seen", "age_days": "Open (days)", "note": "Note", "owner": "Owner",
    "note_status": "Note status", "written_by": "Note by",
}


def discrepancies_for_people(discrepancies: pd.DataFrame, findings: pd.DataFrame) -> pd.DataFrame:
    """Findings with human labels; money kinds' values as money (numbers in a workbook), no missing markers."""
    out = discrepancies.drop(columns=[c for c in ("exposure", "values_changed", "suppressed") if c in discrepancies.columns]).copy()
    out["kind"] = out["kind"].map(lambda k: KINDS[k].label)
    out["severity"] = out["severity"].astype(str)
    for side in ("ledger", "backd"):
        cents = pd.to_numeric(findings[f"{side}_cents"], errors="coerce").reindex(out.index)
        text = out[f"{side}_value"].astype(object).to_numpy()
        out[f"{side}_value"] = [Decimal(int(c)) / 100 if pd.notna(c) else t for c, t in zip(cents, text)]
    if "first_seen" in out.columns:
        out["first_seen"] = pd.to_datetime(out["first_seen"], utc=True).dt.strftime("%Y-%m-%d")
        out["age_days"] = pd.to_numeric(out["age_days"], errors="coerce").round(0).astype("Int64")
    out = out.astype(object).where(out.notna(), "")
    return out.rename(columns=_PEOPLE_COLUMNS)


# -- charts -----------------------------------------------------------------------------------------------------------
def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    """A figure outside pyplot: no global backend switched in the user's kernel, nothing to close, and matplotlib
    imported only when a chart is drawn (it is a third of the package's import time)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _money_axis(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda x, _: f"${x:,.0f}"))


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")  # Figure.savefig renders PNG with Agg
    return base64.b64encode(buffer.getvalue()).decode()


def bar_chart(values: pd.Series, *, xlabel: str, money: bool = False) -> str:
    """A horizontal bar chart of a labelled series on a linear axis, as a base64 PNG.

    Examples
    --------
    >>> len(bar_chart(pd.Series({"a": 1, "b": 3}), xlabel="count")) > 100
    True
    """
    fig, ax = _figure(6, 0.35 * max(len(values), 3) + 0.8)
    shown = values.astype("float64")[::-1]
    ax.barh([str(i) for i in shown.index], shown.to_numpy(), color="#3e7cb1")
    if money:
        _money_axis(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def grouped_bar_chart(frame: pd.DataFrame, *, xlabel: str) -> str:
    """Side-by-side horizontal bars, one group per row, one bar per column, as a base64 PNG."""
    fig, ax = _figure(6, 0.45 * max(len(frame), 3) + 0.8)
    shown = frame.astype("float64").iloc[::-1]
    height = 0.8 / max(len(shown.columns), 1)
    for n, (column, color) in enumerate(zip(shown.columns, ["#3e7cb1", "#f0a202", "#7a9e7e"])):
        positions = [i - 0.4 + height * (n + 0.5) for i in range(len(shown))]
        ax.barh(positions, shown[column].to_numpy(), height=height, color=color, label=str(column))
    ax.set_yticks(range(len(shown)), [str(i) for i in shown.index])
    ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def history_chart(history: pd.DataFrame) -> str:
    """Open findings (bars) and money at stake (line) over the last runs, as a base64 PNG."""
    fig, ax = _figure(7, 3)
    days = pd.to_datetime(history["as_of"], utc=True).dt.strftime("%m-%d").tolist()
    ax.bar(range(len(history)), history["open"], color="#3e7cb1", label="open findings")
    ax.set_xticks(range(len(history)), days, rotation=45, fontsize=8)
    ax.set_ylabel("open findings")
    money_axis = ax.twinx()
    money_axis.plot(range(len(history)), history["at_stake_cents"] / 100, color="#b42318", marker="o", label="money at stake")
    _money_axis(money_axis.yaxis)
    money_axis.set_ylim(bottom=0)
    fig.legend(loc="upper left", fontsize=8)
    return _png(fig)


# -- HTML ---------------------------------------------------------------------------------------------------------------
def _cell(value: Any) -> tuple[str, bool]:
    if isinstance(value, Decimal):
        return money(value), True
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return f"{value:,}", True
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return "", False
    return str(value), False


def table_html(frame: pd.DataFrame, *, total_last: bool = False, classes: str = "") -> str:
    """An escaped HTML table: numbers and money right-aligned with separators, blanks for missing, optional total row."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    records = frame.astype(object).to_numpy().tolist()
    for i, record in enumerate(records):
        cells = []
        for value in record:
            text, numeric = _cell(value)
            cells.append(f'<td class="num">{html.escape(text)}</td>' if numeric else f"<td>{html.escape(text)}</td>")
        css = ' class="total"' if total_last and i == len(records) - 1 else ""
        rows.append(f"<tr{css}>{''.join(cells)}</tr>")
    return f'<table class="{classes}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def pairs_html(mapping: Mapping[str, Any], css: str) -> str:
    """A two-column table of labels and values (the run header, the headline numbers)."""
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in mapping.items())
    return f'<table class="{css}">{rows}</table>'


def _banner(sandbox: bool) -> str:
    return f'<p class="sandbox">{SANDBOX_BANNER}</p>' if sandbox else ""


def _changes_html(changes: Mapping[str, Any] | None) -> str:
    if changes is None:
        return "<h2>Changes since last run</h2><p>Not tracked (reconcile with findings=True to track findings across runs).</p>"
    counts = changes["counts"]
    previous = changes["previous_run_id"] or "none (this is the first tracked run)"
    text = (f"<p>Since run {html.escape(str(previous))}: <b>{counts['new']:,} new</b>, {counts['open']:,} still open "
            f"({counts['open_values_changed']:,} with changed values), <b>{counts['resolved']:,} resolved</b>.</p>")
    chart = f'<img alt="open findings over the last runs" src="data:image/png;base64,{changes["chart"]}">' if changes.get("chart") else ""
    table = table_html(changes["table"].head(500)) if len(changes["table"]) else ""
    return f"<h2>Changes since last run</h2>{text}{chart}{table}"


def summary_html(*, title: str, about: Mapping[str, str], sandbox: bool, headline: Mapping[str, str], summary: pd.DataFrame,
                 discrepancies: pd.DataFrame) -> str:
    """The compact view for Jupyter: banner, run header, headline numbers, the per-kind summary, the top findings."""
    return (f"<div>{_banner(sandbox)}<h3>{html.escape(title)}</h3>{pairs_html(about, 'about')}{pairs_html(headline, 'headline')}"
            f"<h4>By kind</h4>{table_html(summary, total_last=True)}<h4>Top findings</h4>{table_html(discrepancies)}</div>")


def write_html_report(path: str | Path, *, title: str, about: Mapping[str, str], sandbox: bool, headline: Mapping[str, str],
                      summary: pd.DataFrame, discrepancies: pd.DataFrame, changes: Mapping[str, Any] | None,
                      charts: Mapping[str, str], max_rows: int = 2000) -> Path:
    """A self-contained HTML file (charts embedded) that opens anywhere, including from an email."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = "".join(f'<figure><figcaption>{html.escape(name)}</figcaption><img alt="{html.escape(name)}" '
                     f'src="data:image/png;base64,{png}"></figure>' for name, png in charts.items())
    shown = discrepancies.head(max_rows)
    note = f"<p>First {max_rows:,} of {len(discrepancies):,}; all are in discrepancies.csv.</p>" if len(discrepancies) > max_rows else ""
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body>{_banner(sandbox)}<h1>{html.escape(title)}</h1><h2>About this run</h2>{pairs_html(about, 'about')}"
            f"<p>Report written {written}.</p>{_changes_html(changes)}<h2>Headline</h2>{pairs_html(headline, 'headline')}"
            f"<h2>Charts</h2><div class='charts'>{images}</div><h2>By kind</h2>{table_html(summary, total_last=True)}"
            f"<h2>Discrepancies</h2>{note}{table_html(shown)}{_banner(sandbox)}</body></html>")
    path.write_text(page, encoding="utf-8")
    return path


# -- the workbook ----------------------------------------------------------------------------------------------------------
def write_workbook(path: str | Path, *, about: Mapping[str, str], sandbox: bool, sheets: Mapping[str, pd.DataFrame]) -> Path:
    """An XLSX a controller can work in: an "About this run" sheet, numbers as numbers with currency formats,
    frozen headers, filters and widths; a sandbox run says so on every sheet."""
    from openpyxl import Workbook

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    book = Workbook()
    first = book.active
    first.title = "About this run"
    _fill(first, pd.DataFrame({"Field": list(about), "Value": list(about.values())}), sandbox)
    for name, frame in sheets.items():
        _fill(book.create_sheet(name[:31]), frame, sandbox)
    book.save(path)
    return path


def _fill(sheet: Any, frame: pd.DataFrame, sandbox: bool) -> None:
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    top = 1
    if sandbox:
        sheet.cell(row=1, column=1, value=SANDBOX_BANNER).font = Font(bold=True, color="FFFFFF")
        sheet.cell(row=1, column=1).fill = PatternFill("solid", fgColor="B42318")
        top = 2
    clean = neutralize_formulas(frame.astype(object).where(frame.notna(), None))
    for j, column in enumerate(clean.columns, start=1):
        sheet.cell(row=top, column=j, value=str(column)).font = Font(bold=True)
    widths = [len(str(c)) for c in clean.columns]
    for i, record in enumerate(clean.itertuples(index=False), start=top + 1):
        for j, value in enumerate(record, start=1):
            cell = sheet.cell(row=i, column=j, value=_excel_value(value))
            if isinstance(value, Decimal):
                cell.number_format = _MONEY_FORMAT
            widths[j - 1] = max(widths[j - 1], len(money(value) if isinstance(value, Decimal) else str(value or "")))
    for j, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(j)].width = min(max(width + 2, 8), 60)
    sheet.freeze_panes = sheet.cell(row=top + 1, column=1)
    if len(clean.columns):
        sheet.auto_filter.ref = f"A{top}:{get_column_letter(len(clean.columns))}{top + max(len(clean), 1)}"


def _excel_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)  # two-place amounts under 1e13 are exact to the cent as doubles
    if isinstance(value, pd.Timestamp):
        return value.tz_localize(None) if value.tzinfo else value
    if hasattr(value, "item") and not isinstance(value, str):
        return value.item()
    return value
