"""Tables people read: a plan or result shown as row, order, amount, outcome, message and lock time, not all its columns.

Plan and result frames keep every column (the state each row was planned against, ``run_id``...): they are
audit records and :func:`~backd_ops.plans.verify_plan` hashes them. What Jupyter, the panels and the command
line *show* is the compact view: money as ``$1,234.50``, lock deadlines as ``Mon 17:00 CST``, outcomes
coloured, nothing shown as ``<NA>``. :class:`PlanFrame` is a DataFrame that displays itself that way;
``pd.DataFrame(plan)`` or ``plan.to_string()`` still shows everything.
"""

from __future__ import annotations

import html
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd

from .locking import CHICAGO
from .models import format_money

__all__ = ["OUTCOME_COLOURS", "PlanFrame", "compact_view", "lock_text", "plan_html", "plan_text", "readable_html"]

OUTCOME_COLOURS = {
    "planned": "#0969da", "done": "#1a7f37", "already_done": "#57606a", "drifted": "#9a6700",
    "invalid": "#cf222e", "failed": "#cf222e", "uncertain": "#bc4c00",
}
HEAD_ROWS, TAIL_ROWS = 40, 10
"""A long table shows its first and last rows, and says how many are between."""
_CELL = "padding:2px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #d0d7de"


class PlanFrame(pd.DataFrame):
    """A plan or result: every column kept, the compact view displayed (Jupyter, ``repr``).

    Slices and copies stay PlanFrames (``_constructor``), and ``attrs`` (the plan's identity) travel with them.
    """

    _metadata: list[str] = []

    @property
    def _constructor(self) -> type[PlanFrame]:
        return PlanFrame

    def _repr_html_(self) -> str | None:
        return plan_html(self) if "outcome" in self.columns else readable_html(self)

    def __repr__(self) -> str:
        if "outcome" not in self.columns:
            return super().__repr__()
        return plan_text(self) + f"\n[{len(self)} rows; {self.shape[1]} columns, shown compactly: pd.DataFrame(frame) shows all]"


def as_plan_frame(frame: pd.DataFrame) -> PlanFrame:
    """``frame`` as a :class:`PlanFrame`, with its ``attrs``.

    Examples
    --------
    >>> type(as_plan_frame(pd.DataFrame({"outcome": ["planned"]}))).__name__
    'PlanFrame'
    """
    if isinstance(frame, PlanFrame):
        return frame
    out = PlanFrame(frame)
    out.attrs = dict(frame.attrs)
    return out


def lock_text(moment: Any) -> str:
    """A lock deadline as people read it: weekday, time and zone in Chicago (``Mon 17:00 CST``); "" when none.

    Examples
    --------
    >>> lock_text(pd.Timestamp("2026-04-13 17:00", tz="America/Chicago")), lock_text(None)
    ('Mon 17:00 CDT', '')
    """
    if moment is None or moment is pd.NaT or (isinstance(moment, float) and moment != moment):
        return ""
    local = pd.Timestamp(moment)
    local = local.tz_localize(CHICAGO) if local.tzinfo is None else local.tz_convert(CHICAGO)
    return f"{local:%a %H:%M} {local.tzname()}"


def chicago_text(moment: datetime | None, *, missing: str, seconds: bool = False) -> str:
    """A moment as Chicago date, time and zone (``2026-04-13 16:59 CDT``); ``missing`` when there is none.

    Examples
    --------
    >>> chicago_text(pd.Timestamp("2026-04-13 21:59:30", tz="UTC"), missing="—", seconds=True), chicago_text(None, missing="—")
    ('2026-04-13 16:59:30 CDT', '—')
    """
    return missing if moment is None else moment.astimezone(CHICAGO).strftime(f"%Y-%m-%d %H:%M{':%S' if seconds else ''} %Z")


def compact_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns people read, as text: row (the index), order, amount, outcome, message, locks.

    Examples
    --------
    >>> plan = pd.DataFrame({"backd_order_id": ["BO-1"], "outcome": ["planned"], "message": ["refund $1,234.50"],
    ...                      "amount": [Decimal("1234.50")], "locked_at": [pd.Timestamp("2026-04-13 17:00", tz=CHICAGO)]})
    >>> compact_view(plan).iloc[0].tolist()
    ['BO-1', '$1,234.50', 'planned', 'refund $1,234.50', 'Mon 17:00 CDT']
    """
    column = lambda name: frame[name] if name in frame.columns else pd.Series(None, index=frame.index, dtype=object)  # noqa: E731
    view = pd.DataFrame({
        "order": [_text(v) for v in column("backd_order_id")],
        "amount": [_money(v) for v in column("amount")],
        "outcome": [_text(v) for v in column("outcome")],
        "message": [_text(v) for v in column("message")],
        "locks": [lock_text(v) for v in column("locked_at")],
    }, index=frame.index)
    return view[[c for c in view.columns if c != "locks" or view[c].ne("").any()]]


def plan_text(frame: pd.DataFrame, *, max_rows: int = HEAD_ROWS + TAIL_ROWS) -> str:
    """The compact view as plain text (the command line's table).

    Examples
    --------
    >>> print(plan_text(pd.DataFrame({"backd_order_id": ["BO-1"], "outcome": ["planned"], "message": ["cancel $5.00"]})))
          order amount  outcome       message
    0  BO-1          planned  cancel $5.00
    """
    view = compact_view(frame)  # messages whole: they name the row, the column and what to do
    with pd.option_context("display.max_rows", max_rows, "display.min_rows", max_rows, "display.width", 250,
                           "display.max_colwidth", None):
        return view.to_string(max_rows=max_rows)


def plan_html(frame: pd.DataFrame) -> str:
    """The compact view as HTML: a caption (plan, account, how the input was read), then the rows, outcomes coloured.

    Examples
    --------
    >>> "backd-outcome backd-done" in plan_html(pd.DataFrame({"outcome": ["done"]}))
    True
    """
    view = compact_view(frame)
    shown, hidden = _shown_rows(view)
    header = "".join(f"<th style='{_CELL}'>{name}</th>" for name in ("row", *view.columns))
    rows = []
    for label, record in shown:
        if label is None:
            rows.append(f"<tr><td colspan='{len(view.columns) + 1}' style='{_CELL};color:#57606a'>… {hidden:,} more rows …</td></tr>")
            continue
        cells = [f"<td style='{_CELL};white-space:nowrap'>{html.escape(str(label))}</td>"]
        cells += [_html_cell(name, value) for name, value in record.items()]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    caption = _caption(frame)
    caption_html = f"<div class='backd-caption' style='margin:4px 0;color:#57606a'>{html.escape(caption)}</div>" if caption else ""
    return (f"<div class='backd-plan'>{caption_html}<table class='backd-table' style='border-collapse:collapse;font-size:13px'>"
            f"<thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def readable_html(frame: pd.DataFrame) -> str:
    """Any small frame for people: money with separators, blanks instead of ``<NA>`` (the summary tables).

    Examples
    --------
    >>> "$1,000.00" in readable_html(pd.DataFrame({"amount": [Decimal("1000")]}))
    True
    """
    text = frame.copy()
    for name in text.columns:
        text[name] = [_money(v) if isinstance(v, Decimal) else _text(v) for v in frame[name]]
    return text.to_html(classes="backd-table", border=0, na_rep="", escape=True)


def _shown_rows(view: pd.DataFrame) -> tuple[list[tuple[Any, dict]], int]:
    records = list(zip(view.index, view.to_dict("records")))
    if len(records) <= HEAD_ROWS + TAIL_ROWS:
        return records, 0
    hidden = len(records) - HEAD_ROWS - TAIL_ROWS
    return [*records[:HEAD_ROWS], (None, {}), *records[-TAIL_ROWS:]], hidden


def _html_cell(name: str, value: str) -> str:
    if name == "outcome" and value:
        colour = OUTCOME_COLOURS.get(value, "#57606a")
        pill = f"color:#fff;background:{colour};border-radius:3px;padding:0 5px"
        return f"<td style='{_CELL};white-space:nowrap'><span class='backd-outcome backd-{value}' style='{pill}'>{html.escape(value)}</span></td>"
    wrap = "" if name == "message" else ";white-space:nowrap"
    align = ";text-align:right" if name == "amount" else ""
    return f"<td style='{_CELL}{wrap}{align}'>{html.escape(value)}</td>"


def _caption(frame: pd.DataFrame) -> str:
    """Whose plan or run this is and how its input was read (duck-typed on the attrs plans and execution set)."""
    info, result = frame.attrs.get("backd_plan"), frame.attrs.get("backd_result")
    if isinstance(result, dict):
        text = f"Run {result.get('run_id')} of plan {str(result.get('plan_id'))[:12]} · {result.get('operation')} · {result.get('account', '')}"
        return text + (f" · {result['input']}" if result.get("input") else "")
    if info is not None and hasattr(info, "plan_id"):
        text = f"Plan {info.plan_id[:12]} · {info.operation} · {info.account.describe()}"
        described = info.describe_input()
        return text + (f" · {described}" if described else "")
    return ""


def _money(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    try:
        return format_money(Decimal(str(value)))
    except ArithmeticError:
        return str(value)


def _text(value: Any) -> str:
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, datetime):
        return lock_text(value)
    return str(value)
