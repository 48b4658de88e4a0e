"""JupyterLab panels: look orders up, and upload → plan → approve (typed confirmation) → execute exactly that plan.

The decisions live in plain functions (``approval_text``, ``confirmation_word``, ``can_execute``) that tests
call directly; the panels only wire them to ipywidgets. Callback output goes to ``Output`` widgets, since
JupyterLab drops what a callback prints. The bulk panel executes the plan object it displayed (re-checked
for drift row by row), never a fresh plan of the same file. An uploaded file is read by the same reader as a
path (:func:`~backd_ops.tables.read_bytes`: delimiter, header row, spreadsheet row numbers); the results
are written through the neutralising writer and offered as a download.
"""

from __future__ import annotations

import base64
import html
import threading
from datetime import datetime
from pathlib import Path
from typing import Mapping

import ipywidgets as w
import pandas as pd
from IPython.display import HTML, display

from .client import BackdClient
from .config import current_user
from .errors import BackdError
from .execution import execute_plan
from .findings import ANNOTATION_STATUSES
from .journal import Journal, default_journal_path
from .operations import OPERATIONS
from .columns import parse_mapping
from .plans import PLANNED, confirmation_word, make_plan, plan_sentence, result_sentence, summarize_outcomes, verify_plan
from .progress import Bar
from .reads import fetch_orders
from .reconcile import KINDS, Reconciliation
from .tables import read_bytes, read_table, write_csv

__all__ = ["BulkRunPanel", "FindingsPanel", "OrderLookupPanel", "approval_text", "can_execute", "confirmation_word", "download_link"]

UPLOAD_TYPES = ".csv,.tsv,.txt,.xlsx,.xlsm,.parquet"
DOWNLOAD_LIMIT_BYTES = 20 * 1024 * 1024
"""Larger results are not inlined as a download link (the page would carry them); the path is shown instead."""


def _show(output: w.Output, *items: object) -> None:
    """Append rich displays to an Output widget (works in a kernel and headless, unlike print in a callback)."""
    for item in items:
        output.append_display_data(item)


def approval_text(plan: pd.DataFrame, operation: str | None = None, *, now: datetime | None = None) -> str:
    """Exactly what executing ``plan`` will do, net of replaced refunds, in one sentence.

    Examples
    --------
    >>> approval_text(plan)                      # doctest: +SKIP
    'Refund 3 orders, $60.00 (replacing 1 unlocked request of $500.00: net -$440.00), locks at 17:00 CST today.'
    """
    return plan_sentence(plan, operation, now=now)


def download_link(path: Path, *, label: str = "Download the results (CSV)") -> str:
    """An HTML link that downloads ``path`` from the page itself (a data: URL), so it works wherever the kernel runs.

    Examples
    --------
    >>> download_link(Path("out/bulk/refund_result.csv"))        # doctest: +SKIP
    '<a class="backd-download" download="refund_result.csv" href="data:text/csv;base64,...">Download the results (CSV)</a> ...'
    """
    data = path.read_bytes()
    where = f"<code>{html.escape(str(path))}</code>"
    if len(data) > DOWNLOAD_LIMIT_BYTES:
        return f"Results: {where} (too large to download from the page)"
    encoded = base64.b64encode(data).decode()
    return (f"<a class='backd-download' download='{html.escape(path.name)}' href='data:text/csv;base64,{encoded}'>"
            f"{html.escape(label)}</a> (also saved as {where})")


class _WidgetBar:
    """A progress bar on an ``IntProgress`` widget, for execute_plan's ``progress=`` (updated from worker threads)."""

    def __init__(self, widget: w.IntProgress, total: int, desc: str) -> None:
        self.widget, self._lock = widget, threading.Lock()
        widget.max, widget.value, widget.description, widget.bar_style = total, 0, desc, "info"
        widget.layout.visibility = "visible"

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.widget.value = min(self.widget.max, self.widget.value + n)

    def close(self) -> None:
        self.widget.bar_style = "success"


def can_execute(plan: pd.DataFrame | None, operation: str, typed: str) -> bool:
    """Execute is allowed only for a plan with planned rows, after the exact confirmation word was typed."""
    return plan is not None and bool((plan["outcome"] == PLANNED).any()) and typed.strip() == confirmation_word(plan, operation)


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
    """Upload or name a file (or open a saved plan) → the plan → read the approval → type the confirmation → execute it
    → results, with a progress bar while it runs and a download link for the results file (written to ``out_dir``).

    ``column_map``, ``sheet`` and ``decimal`` are read as by the bulk verbs.

    Examples
    --------
    >>> BulkRunPanel(client, "refund", source="refunds.csv")          # doctest: +SKIP
    >>> BulkRunPanel(client, plan=backd_ops.load_plan("plan.json"))   # doctest: +SKIP
    """

    def __init__(self, client: BackdClient, operation: str = "refund", *, journal: str | Path | None = None,
                 source: str | Path | pd.DataFrame | None = None, plan: pd.DataFrame | None = None,
                 max_workers: int | None = None, column_map: Mapping[str, str] | str | None = None,
                 sheet: str | None = None, decimal: str = ".", out_dir: str | Path = "out/bulk") -> None:
        if plan is not None:
            operation = verify_plan(plan).operation
        if operation not in OPERATIONS:
            raise ValueError(f"operation must be one of {', '.join(OPERATIONS)}")
        self.client, self.operation, self.max_workers = client, operation, max_workers
        self.journal_path = Path(journal) if journal else default_journal_path()
        self.source, self.column_map, self.sheet, self.decimal, self.out_dir = source, column_map, sheet, decimal, Path(out_dir)
        self.result_path: Path | None = None
        self.plan: pd.DataFrame | None = None
        self.result: pd.DataFrame | None = None
        self._lock = threading.Lock()
        self._build()
        if plan is not None:
            self._show_plan(plan)

    def _build(self) -> None:
        self.path = w.Text(value=str(self.source) if isinstance(self.source, (str, Path)) else "", placeholder="path to CSV/XLSX",
                           description="Input file", layout=w.Layout(width="480px"))
        self.upload = w.FileUpload(accept=UPLOAD_TYPES, multiple=False, description="Upload")
        self.progress_bar = w.IntProgress(value=0, min=0, max=1, description="", layout=w.Layout(width="480px", visibility="hidden"))
        self.download = w.HTML()
        self.plan_button = w.Button(description="Plan (dry run)", button_style="info", icon="list")
        self.approval = w.HTML()
        self.confirm = w.Text(placeholder="type the confirmation shown above", description="Confirm", disabled=True)
        self.execute_button = w.Button(description="Execute", button_style="danger", icon="play", disabled=True)
        self.production = w.Checkbox(value=False, description="I confirm this moves money in PRODUCTION",
                                     layout=w.Layout(display="flex" if self.client.is_production else "none"))
        # Progress is the panel's own IntProgress (updated from the kernel, also from worker threads): a tqdm bar
        # captured in an Output widget raced with the results appended to it.
        self.plan_output, self.result_output = w.Output(), w.Output()
        self.plan_button.on_click(lambda _: self.make_plan())
        self.confirm.observe(lambda _: self._refresh_execute(), names="value")
        self.execute_button.on_click(lambda _: self.execute())
        account = self.client.account
        title = w.HTML(f"<b>Bulk {self.operation}</b> on {account.describe()} ({account.base_url})")
        self.widget = w.VBox([title, w.HBox([self.path, self.upload]), self.plan_button, self.plan_output, self.approval,
                              w.HBox([self.confirm, self.execute_button]), self.production, self.progress_bar, self.download,
                              self.result_output])

    def _ipython_display_(self) -> None:
        display(self.widget)

    # -- steps ----------------------------------------------------------------------------------------------
    def make_plan(self) -> pd.DataFrame | None:
        """Read the input and make the plan (a real dry run); shows it, its summary and the rows that need attention."""
        self.plan_output.outputs = ()
        self._reset_approval()
        try:
            source = self._read_input()
            plan = make_plan(self.client, self.operation, source, journal=self.journal_path, max_workers=self.max_workers,
                             progress=self._bar, column_map=self.column_map, sheet=self.sheet, decimal=self.decimal)
        except Exception as exc:  # noqa: BLE001 - shown in the panel (a callback's exception would be lost in a kernel)
            _show(self.plan_output, HTML(f"<b>No plan:</b> {_escape(exc)}"))
            return None
        return self._show_plan(plan)

    def _show_plan(self, plan: pd.DataFrame) -> pd.DataFrame:
        attention = plan.backd.needs_attention()
        notes = [HTML(f"<b>{len(attention)} row(s) will not be sent:</b>"), attention] if len(attention) else []
        _show(self.plan_output, _outcomes_present(plan), *notes, plan)
        self.plan = plan
        word = confirmation_word(plan, self.operation)
        self.approval.value = (f"<p><b>{_escape(approval_text(plan, self.operation))}</b></p>"
                               f"<p>Plan <code class='backd-plan-id'>{plan.backd.plan_id[:12]}</code>. "
                               f"Type <code class='backd-confirmation'>{word}</code> to enable Execute.</p>")
        self.confirm.disabled = not (plan["outcome"] == PLANNED).any()
        return plan

    def execute(self) -> pd.DataFrame | None:
        """Execute the plan on screen (only with the exact confirmation typed); rows whose order changed are not sent."""
        if not can_execute(self.plan, self.operation, self.confirm.value):
            _show(self.result_output, HTML("<b>Not executed:</b> type the confirmation word exactly as shown."))
            return None
        if not self._lock.acquire(blocking=False):
            return None  # a double click: the first run is still going
        try:
            self.execute_button.disabled = self.confirm.disabled = True
            self.result_output.outputs = ()
            self.download.value = ""
            self.result = None
            self.result = execute_plan(self.client, self.plan, approved_by=current_user(), journal=self.journal_path,
                                       max_workers=self.max_workers, progress=self._bar, confirm_production=self.production.value)
            self._show_result(self.result)
        except Exception as exc:  # noqa: BLE001 - a refusal (or a bug) is shown; never the previous run's result
            what = "Not executed, nothing was sent" if isinstance(exc, BackdError) else \
                f"Stopped by an unexpected error (the journal {self.journal_path} holds what was sent)"
            _show(self.result_output, HTML(f"<b>{what}:</b> {_escape(exc)}"))
        finally:
            self.confirm.value = ""
            self._lock.release()
        return self.result

    def _show_result(self, result: pd.DataFrame) -> None:
        run_id = result.attrs.get("backd_result", {}).get("run_id")
        drifted = int((result["outcome"] == "drifted").sum())
        note = " Drifted rows changed on Backd after the plan was shown; nothing was sent for them." if drifted else ""
        try:
            self.result_path = write_csv(result, self.out_dir / f"{self.operation}_result_{run_id}.csv", index=True)
            self.download.value = download_link(self.result_path)
        except OSError as exc:  # the run is done and journaled; only the file is missing
            self.download.value = f"<b>The results file could not be written:</b> {_escape(exc)}"
        link = HTML(f"<b>Done.</b> {_escape(result_sentence(result))}{note} Journal: <code>{self.journal_path}</code>, "
                    f"run <code>{run_id}</code> (<code>Journal(r'{self.journal_path}').actions('{run_id}')</code>)")
        _show(self.result_output, link, _outcomes_present(result), result)

    # -- helpers ----------------------------------------------------------------------------------------------
    def _read_input(self) -> pd.DataFrame:
        headers = parse_mapping(self.column_map)
        if self.upload.value:  # ipywidgets 8: a tuple of {"name", "type", "size", "content": memoryview, ...}
            item = self.upload.value[0]
            return read_bytes(bytes(item["content"]), item["name"], sheet=self.sheet, header_names=headers)
        if isinstance(self.source, pd.DataFrame) and not self.path.value:
            return self.source.copy()
        return read_table(self.path.value, sheet=self.sheet, header_names=headers)

    def _bar(self, total: int, desc: str) -> Bar:
        return _WidgetBar(self.progress_bar, total, desc)

    def _reset_approval(self) -> None:
        self.plan = None
        self.approval.value = ""
        self.confirm.value = ""
        self.confirm.disabled = self.execute_button.disabled = True

    def _refresh_execute(self) -> None:
        self.execute_button.disabled = not can_execute(self.plan, self.operation, self.confirm.value)

    def journal(self) -> Journal:
        return Journal(self.journal_path)


def _outcomes_present(frame: pd.DataFrame) -> pd.DataFrame:
    """The outcome summary without its zero rows (the panel has little room; the total stays)."""
    summary = summarize_outcomes(frame)
    return summary[summary["rows"] > 0]


class FindingsPanel:
    """Pick a finding of a tracked reconciliation, write a note (owner, status); it persists across runs.

    Examples
    --------
    >>> FindingsPanel(rec)              # doctest: +SKIP
    """

    def __init__(self, rec: Reconciliation) -> None:
        if rec.changes is None:
            raise ValueError("notes need a tracked reconciliation: reconcile(..., findings=True)")
        self.rec = rec
        current = rec.changes.current
        options = [(f"{KINDS[k].label} · {o}" + (" (noted)" if isinstance(n, str) else ""), (o, k))
                   for o, k, n in zip(current["order_key"], current["kind"], current.get("note", [None] * len(current)))]
        self.finding = w.Dropdown(options=options, description="Finding", layout=w.Layout(width="520px"))
        self.note = w.Textarea(placeholder="what you found out", description="Note", layout=w.Layout(width="520px"))
        self.owner = w.Text(value=current_user(), description="Owner")
        self.status = w.ToggleButtons(options=list(ANNOTATION_STATUSES), description="Status")
        self.save_button = w.Button(description="Save note", button_style="primary", icon="save")
        self.output = w.Output()
        self.save_button.on_click(lambda _: self.save())
        self.widget = w.VBox([w.HTML("<b>Notes on findings</b>"), self.finding, self.note, self.owner, self.status,
                              self.save_button, self.output])

    def _ipython_display_(self) -> None:
        display(self.widget)

    def save(self) -> None:
        """Keep the note; a ``no_action_needed`` finding stops counting toward ``fail_on`` until its values change."""
        if self.finding.value is None or not self.note.value.strip():
            _show(self.output, HTML("<b>Not saved:</b> pick a finding and write a note."))
            return
        order, kind = self.finding.value
        try:
            self.rec.annotate(order, kind, note=self.note.value.strip(), owner=self.owner.value.strip() or None, status=self.status.value)
        except BackdError as exc:
            _show(self.output, HTML(f"<b>Not saved:</b> {_escape(exc)}"))
            return
        _show(self.output, HTML(f"Saved: {_escape(KINDS[kind].label)} on {_escape(order)} is <b>{_escape(self.status.value)}</b>."))


def _escape(value: object) -> str:
    return html.escape(str(value))
