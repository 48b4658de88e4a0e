"""Rendering for people: charts (matplotlib, as embedded PNGs) and self-contained HTML from summary frames.

It renders frames it is given and knows nothing of how they were made, so both bulk results and
reconciliations use it. Every value is HTML-escaped: ledger text cannot inject markup.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI; notebooks embed the PNG instead
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

__all__ = ["bar_chart", "grouped_bar_chart", "summary_html", "write_html_report"]

_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1f2933}
h1{font-size:22px} h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;font-size:13px} th,td{border:1px solid #d9e2ec;padding:4px 8px;text-align:left}
th{background:#f0f4f8} .stats td:first-child{font-weight:600} .charts img{max-width:520px;margin:8px 16px 8px 0}
.high{color:#b42318;font-weight:600} .medium{color:#b54708} .low{color:#52606d}
"""


def _png(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def bar_chart(values: pd.Series, *, xlabel: str, log: bool = False) -> str:
    """A horizontal bar chart of a labelled series, as a base64 PNG.

    Examples
    --------
    >>> len(bar_chart(pd.Series({"a": 1, "b": 3}), xlabel="count")) > 100
    True
    """
    fig, ax = plt.subplots(figsize=(6, 0.35 * max(len(values), 3) + 0.8))
    shown = values.astype("float64")[::-1]
    ax.barh([str(i) for i in shown.index], shown.to_numpy(), color="#3e7cb1")
    if log:  # money spans cents to millions: a log axis keeps the small but urgent kinds visible
        ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel(xlabel + (" (log scale)" if log else ""))
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def grouped_bar_chart(frame: pd.DataFrame, *, xlabel: str) -> str:
    """Side-by-side horizontal bars, one group per row, one bar per column, as a base64 PNG."""
    fig, ax = plt.subplots(figsize=(6, 0.45 * max(len(frame), 3) + 0.8))
    frame.astype("float64").iloc[::-1].plot.barh(ax=ax, color=["#3e7cb1", "#f0a202", "#7a9e7e"][: len(frame.columns)])
    ax.set_xlabel(xlabel)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def _table(frame: pd.DataFrame, *, index: bool = True) -> str:
    return frame.to_html(index=index, escape=True, na_rep="", border=0)


def _stats_table(stats: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in stats.items())
    return f'<table class="stats">{rows}</table>'


def summary_html(*, title: str, stats: Mapping[str, Any], summary: pd.DataFrame, discrepancies: pd.DataFrame) -> str:
    """The compact view for Jupyter: headline numbers, the per-kind summary, the top findings."""
    return (f"<div><h3>{html.escape(title)}</h3>{_stats_table(stats)}<h4>By kind</h4>{_table(summary)}"
            f"<h4>Top findings</h4>{_table(discrepancies, index=False)}</div>")


def write_html_report(path: str | Path, *, title: str, stats: Mapping[str, Any], summary: pd.DataFrame,
                      discrepancies: pd.DataFrame, charts: Mapping[str, str], max_rows: int = 2000) -> Path:
    """A self-contained HTML file (charts embedded) that opens anywhere, including from an email."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = "".join(f'<figure><figcaption>{html.escape(name)}</figcaption><img alt="{html.escape(name)}" '
                     f'src="data:image/png;base64,{png}"></figure>' for name, png in charts.items())
    shown = discrepancies.head(max_rows)
    note = f"<p>First {max_rows} of {len(discrepancies)}; all are in discrepancies.csv.</p>" if len(discrepancies) > max_rows else ""
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body><h1>{html.escape(title)}</h1><p>Generated {generated}</p>{_stats_table(stats)}"
            f"<h2>Charts</h2><div class='charts'>{images}</div><h2>By kind</h2>{_table(summary)}"
            f"<h2>Discrepancies</h2>{note}{_table(shown, index=False)}</body></html>")
    path.write_text(page, encoding="utf-8")
    return path
