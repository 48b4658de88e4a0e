"""JupyterLab panels: look orders up, and plan → approve (typed confirmation) → execute a bulk run.

The decisions live in plain functions (``approval_text``, ``confirmation_word``, ``can_execute``) that tests
call directly; the panels only wire them to ipywidgets. Callback output goes to ``Output`` widgets, since
JupyterLab drops what a callback prints.
"""

from __future__ import annotations

import io
import threading
from datetime import datetime
from pathlib import Path

import ipywidgets as w
import pandas as pd
from IPython.display import HTML, display

from .bulk import fetch_orders, run_operation, summarize_outcomes
from .client import BackdClient
from .journal import Journal, default_journal_path
from .locking import CHICAGO
from .models import format_money
from .operations import OPERATIONS
from .tables import read_table

__all__ = ["BulkRunPanel", "OrderLookupPanel", "approval_text", "can_execute", "confirmation_word"]


def _show(output: w.Output, *items: object) -> None:
    """Append rich displays to an Output widget (works in a kernel and headless, unlike print in a callback)."""
    for item in items:
        output.append_display_data(item)


def approval_text(plan: pd.DataFrame, operation: str, *, now: datetime | None = None) -> str:
    """Exactly what executing ``plan`` will do, in one sentence.

    Examples
    --------
    >>> approval_text(plan, "refund")                      # doctest: +SKIP
    'Refund 123 orders, $4,567.89, locks at 17:00 CST today. Not sent: 2 already done, 1 invalid.'
    """
    planned = plan[plan["outcome"] == "planned"]
    count = len(planned)
    total = planned["amount"].dropna().sum() if count else 0
    text = f"{OPERATIONS[operation].verb} {count} order{'' if count == 1 else 's'}, {format_money(total or 0)}"
    if operation == "refund" and count and planned["locked_at"].notna().any():
        text += f", locks at {_when(planned['locked_at'].min(), now)}"
    skipped = plan[plan["outcome"] != "planned"]["outcome"].value_counts()
    skipped = skipped[skipped > 0]
    if len(skipped):
        text += ". Not sent: " + ", ".join(f"{n} {o.replace('_', ' ')}" for o, n in skipped.items())
    return text + "."


def _when(moment: pd.Timestamp, now: datetime | None) -> str:
    local = moment.tz_convert(CHICAGO)
    today = (now or datetime.now(CHICAGO)).astimezone(CHICAGO).date()
    day = {0: "today", 1: "tomorrow"}.get((local.date() - today).days, local.strftime("%a %Y-%m-%d"))
    return f"{local:%H:%M} {local.tzname()} {day}"


def confirmation_word(plan: pd.DataFrame, operation: str) -> str:
    """What the analyst types to enable execute: the operation and the count, e.g. ``REFUND 123``."""
    return f"{operation.upper()} {int((plan['outcome'] == 'planned').sum())}"


def can_execute(plan: pd.DataFrame | None, operation: str, typed: str) -> bool:
    """Execute is allowed only for a plan with planned rows, after the exact confirmation word was typed."""
    return plan is not None and bool((plan["outcome"] == "planned").any()) and typed.strip() == confirmation_word(plan, operation)


class OrderLookupPanel:
    """Paste ids → a table of orders, their refunds and items."""

    def __init__(self, client: BackdClient) -> None:
        self.client = client
        self.ids = w.Textarea(placeholder="backd_order_id, one per line (or comma separated)", layout=w.Layout(width="420px", height="120px"))
        self.button = w.Button(description="Look up", button_style="primary", icon="search")
        self.progress, self.output = w.Output(), w.Output()
        self.orders: pd.DataFrame | None = None
        self.button.on_click(lambda _: self.look_up())
        self.widget = w.VBox([w.HTML("<b>Order lookup</b>"), self.ids, self.button, self.progress, self.output])

    def _ipython_display_(self) -> None:
        display(self.widget)

    def look_up(self) -> pd.DataFrame:
        self.output.outputs = self.progress.outputs = ()
        with self.progress:  # in a kernel, the progress bar renders here
            batch = fetch_orders(self.client, self.ids.value)
        self.orders = batch.frame()
        refunds = batch.refunds()
        _show(self.output, self.orders, *([HTML("<b>Refund requests</b>"), refunds] if len(refunds) else []))
        return self.orders


class BulkRunPanel:
    """Choose a file → plan (a real dry run) → read the approval → type the confirmation → execute → results."""

    def __init__(self, client: BackdClient, operation: str = "refund", *, journal: str | Path | None = None,
                 source: str | Path | pd.DataFrame | None = None, max_workers: int | None = None) -> None:
        if operation not in OPERATIONS:
            raise ValueError(f"operation must be one of {', '.join(OPERATIONS)}")
        self.client, self.operation, self.max_workers = client, operation, max_workers
        self.journal_path = Path(journal) if journal else default_journal_path()
        self.source = source
        self.plan: pd.DataFrame | None = None
        self.result: pd.DataFrame | None = None
        self._input: pd.DataFrame | None = None
        self._lock = threading.Lock()
        self._build()

    def _build(self) -> None:
        self.path = w.Text(value=str(self.source) if isinstance(self.source, (str, Path)) else "", placeholder="path to CSV/XLSX",
                           description="Input file", layout=w.Layout(width="480px"))
        self.upload = w.FileUpload(accept=".csv,.xlsx", multiple=False, description="Upload")
        self.plan_button = w.Button(description="Plan (dry run)", button_style="info", icon="list")
        self.approval = w.HTML()
        self.confirm = w.Text(placeholder="type the confirmation shown above", description="Confirm", disabled=True)
        self.execute_button = w.Button(description="Execute", button_style="danger", icon="play", disabled=True)
        # Progress bars are captured by the frontend (``with self.progress``); results are appended from the
        # kernel. Mixing both in one Output widget races, and the frontend can drop what the kernel appended.
        self.progress, self.plan_output, self.result_output = w.Output(), w.Output(), w.Output()
        self.plan_button.on_click(lambda _: self.make_plan())
        self.confirm.observe(lambda _: self._refresh_execute(), names="value")
        self.execute_button.on_click(lambda _: self.execute())
        title = w.HTML(f"<b>Bulk {self.operation}</b> on {self.client.environment} ({self.client.base_url})")
        self.widget = w.VBox([title, w.HBox([self.path, self.upload]), self.plan_button, self.plan_output, self.approval,
                              w.HBox([self.confirm, self.execute_button]), self.progress, self.result_output])

    def _ipython_display_(self) -> None:
        display(self.widget)

    # -- steps ----------------------------------------------------------------------------------------------
    def make_plan(self) -> pd.DataFrame | None:
        """Read the input and run the dry run; shows the plan, its summary and the rows that need attention."""
        self.plan_output.outputs = self.progress.outputs = ()
        self._reset_approval()
        self._input = self._read_input()
        with self.progress:
            plan = run_operation(self.client, self.operation, self._input, max_workers=self.max_workers)
        attention = plan.backd.needs_attention()
        notes = [HTML(f"<b>{len(attention)} row(s) will not be sent:</b>"), attention[["backd_order_id", "outcome", "message"]]] if len(attention) else []
        _show(self.plan_output, summarize_outcomes(plan), *notes, plan)
        self.plan = plan
        word = confirmation_word(self.plan, self.operation)
        self.approval.value = (f"<p><b>{approval_text(self.plan, self.operation)}</b></p>"
                               f"<p>Type <code>{word}</code> to enable Execute.</p>")
        self.confirm.disabled = not (self.plan["outcome"] == "planned").any()
        return self.plan

    def execute(self) -> pd.DataFrame | None:
        """Execute the approved plan (only with the exact confirmation typed); shows results and the journal run."""
        if not can_execute(self.plan, self.operation, self.confirm.value):
            _show(self.result_output, HTML("<b>Not executed:</b> type the confirmation word exactly as shown."))
            return None
        if not self._lock.acquire(blocking=False):
            return None  # a double click: the first run is still going
        try:
            self.execute_button.disabled = self.confirm.disabled = True
            self.result_output.outputs = self.progress.outputs = ()
            with self.progress:
                self.result = run_operation(self.client, self.operation, self._input, execute=True, journal=self.journal_path,
                                            max_workers=self.max_workers)
            run_id = self.result["run_id"].iloc[0] if len(self.result) else None
            link = HTML(f"<b>Done.</b> Journal: <code>{self.journal_path}</code>, run <code>{run_id}</code> "
                          f"(<code>Journal(r'{self.journal_path}').actions('{run_id}')</code>)")
            _show(self.result_output, link, summarize_outcomes(self.result), self.result)
        finally:
            self.confirm.value = ""
            self._lock.release()
        return self.result

    # -- helpers ----------------------------------------------------------------------------------------------
    def _read_input(self) -> pd.DataFrame:
        if self.upload.value:
            item = self.upload.value[0]
            name, content = item["name"], bytes(item["content"])
            return pd.read_excel(io.BytesIO(content), dtype=object) if name.lower().endswith(".xlsx") \
                else pd.read_csv(io.BytesIO(content), dtype=str, keep_default_na=False, na_values=[""])
        if isinstance(self.source, pd.DataFrame) and not self.path.value:
            return self.source.copy()
        return read_table(self.path.value)

    def _reset_approval(self) -> None:
        self.plan = None
        self.approval.value = ""
        self.confirm.value = ""
        self.confirm.disabled = self.execute_button.disabled = True

    def _refresh_execute(self) -> None:
        self.execute_button.disabled = not can_execute(self.plan, self.operation, self.confirm.value)

    def journal(self) -> Journal:
        return Journal(self.journal_path)

