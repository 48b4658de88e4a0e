"""JupyterLab in headless Chromium: the analyst's path through bulk_refund.ipynb and reconciliation.ipynb.

Needs Debian's ``chromium`` (``apt-get install chromium``) and Playwright's Python package (a test extra);
no browser is downloaded at run time. Where Chromium is missing the test skips and says how to enable it,
except under CI (``CI=true``), where a skip would hide a broken install, so it fails instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from decimal import Decimal

import pandas as pd
import pytest
import requests

from backd_ops.runner import NOTEBOOK_DIR
from backd_ops.sandbox import run_sandbox
from backd_ops.sandbox.demo import DEMO_COLUMN_MAP, demo_ledger

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = Path(os.environ.get("BACKD_OPS_SCREENSHOTS", ROOT / "out" / "screenshots"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
HOW_TO_ENABLE = "install Debian's chromium (apt-get install chromium) and the test extra (pip install -e '.[test]')"


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test, but Chromium/Playwright are missing: {HOW_TO_ENABLE}")
        pytest.skip(f"no Chromium or Playwright here: {HOW_TO_ENABLE}")
    return path


def _lab_settings(root: Path) -> None:
    """Render every cell (no windowing), so what ran is on the page; no news pop-up over the corner."""
    settings = {"@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
                "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"}}
    for name, values in settings.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A sandbox and a JupyterLab on 127.0.0.1 with a token; the notebooks copied into a scratch workspace."""
    chromium = _chromium()
    workspace = tmp_path_factory.mktemp("lab")
    _lab_settings(workspace / ".jupyter" / "lab" / "user-settings")
    with run_sandbox(orders=200) as sandbox:
        env = {**os.environ, **sandbox.env(), "BACKD_OPS_JOURNAL": str(workspace / "journal.sqlite"),
               "JUPYTER_CONFIG_DIR": str(workspace / ".jupyter"), "JUPYTER_RUNTIME_DIR": str(workspace / ".runtime")}
        port, token = _free_port(), "backd-ops-browser-test"
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={workspace}", "--ServerApp.open_browser=False", "--ServerApp.allow_root=True",
             "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            cwd=workspace, env=env, stdout=subprocess.DEVNULL, stderr=open(workspace / "lab.log", "w"))
        try:
            _wait_for(f"http://127.0.0.1:{port}/api/status?token={token}", server, workspace / "lab.log")
            yield {"sandbox": sandbox, "workspace": workspace, "url": f"http://127.0.0.1:{port}", "token": token, "chromium": chromium}
        finally:
            server.terminate()
            server.wait(timeout=30)


def _wait_for(url: str, server: subprocess.Popen, log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited ({server.returncode}):\n{log.read_text()[-2000:]}")
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer at {url}")


def _copy_notebook(workspace: Path, name: str, parameters: dict) -> str:
    """Copy a notebook and set its parameters cell, as an analyst would edit it."""
    book = json.loads((NOTEBOOK_DIR / f"{name}.ipynb").read_text())
    cell = next(c for c in book["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    lines = "".join(cell["source"]).splitlines()
    for key, value in parameters.items():
        lines = [f"{key} = {value!r}" if line.startswith(f"{key} =") else line for line in lines]
    cell["source"] = "\n".join(lines)
    (workspace / f"{name}.ipynb").write_text(json.dumps(book))
    return f"{name}.ipynb"


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=lab["chromium"], headless=True, args=CHROMIUM_ARGS)
        try:
            yield chrome
        finally:
            chrome.close()


def _open_and_run_all(browser, lab, notebook: str):
    """Open ``notebook`` alone (a fresh workspace) and run all cells from the Run menu, as an analyst does."""
    page = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()
    page.set_default_timeout(90_000)
    stem = Path(notebook).stem
    page.goto(f"{lab['url']}/lab/workspaces/{stem}/tree/{notebook}?token={lab['token']}&reset")
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(state="visible")
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(state="attached", timeout=60_000)
    for _ in range(3):  # the first click can land before the kernel is connected; retry until cells run
        page.locator(".jp-NotebookPanel .jp-Cell").first.click()
        page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:
            page.locator(".jp-InputPrompt", has_text=re.compile(r"\[(\*|\d+)\]")).first.wait_for(state="attached", timeout=20_000)
            return page
        except Exception:
            continue
    raise AssertionError(f"{notebook}: Run All Cells did not start the cells")


def _wait_visible(page, locator, name: str) -> None:
    """Wait for ``locator``; on failure leave a screenshot and the page's text for the reader of the CI log."""
    try:
        locator.wait_for(state="visible")
    except Exception:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"failed_{name}.png"), full_page=True)
        (SCREENSHOTS / f"failed_{name}.txt").write_text(page.inner_text("body")[-6000:])
        raise


def test_bulk_refund_in_jupyterlab_uploads_approves_and_executes_the_plan_on_screen_once(lab, browser, tmp_path):
    """An Excel export is uploaded through the panel and planned; the plan on screen is what runs: an order changed
    on the server after display is drifted, not sent; the results can be downloaded."""
    sandbox, workspace = lab["sandbox"], lab["workspace"]
    orders = [sandbox.store.find(i) for i in sandbox.store.ids()]
    chosen = [o for o in orders if o["status"] == "order_confirmed" and not o["refunds"]][:9]
    pd.DataFrame({"backd_order_id": [o["backd_order_id"] for o in chosen[:5]], "merchant_order_id": [o["merchant_order_id"] for o in chosen[:5]],
                  "refund_amount": "15,00"}).to_csv(workspace / "refunds.csv", index=False)  # the file uses a decimal comma
    uploaded, upload = chosen[5:], tmp_path / "April refunds.csv"  # as Excel saves it: BOM, semicolons, its own headers
    lines = ["Order ID;Refund Amount"] + [f"{o['backd_order_id']};1.234,50" for o in uploaded[:2]] + [";"] \
        + [f"{o['backd_order_id']};20,00" for o in uploaded[2:]] + ["BO-NOPE;5,00"]
    upload.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode())
    notebook = _copy_notebook(workspace, "bulk_refund", {"input_path": "refunds.csv", "decimal_comma": True})
    page = _open_and_run_all(browser, lab, notebook)

    _wait_visible(page, page.locator(".widget-html", has_text="Refund 5 orders, $75.00"), "bulk_refund")
    with page.expect_file_chooser() as chooser:  # the widget's file input is not in the page: its button opens it
        page.locator(".widget-upload").first.click()
    chooser.value.set_files(str(upload))
    _wait_visible(page, page.locator(".widget-upload", has_text="(1)"), "bulk_refund_upload")
    page.get_by_role("button", name="Plan (dry run)").click()
    approval = page.locator(".widget-html", has_text="Refund 4 orders, $2,509.00")
    _wait_visible(page, approval, "bulk_refund_uploaded_plan")
    assert "Not sent: 1 invalid" in approval.inner_text()
    word = approval.locator("code.backd-confirmation").inner_text()
    assert word == "REFUND 4"
    table = page.locator(".backd-plan", has_text="April refunds.csv: CSV, semicolon-separated; 1 empty row skipped (line 4)").last
    _wait_visible(page, table, "bulk_refund_compact_plan")
    shown = table.inner_text()
    assert "$1,234.50" in shown and "CST" in shown or "CDT" in shown
    assert "before_status" not in shown and "<NA>" not in shown and "row 7, column backd_order_id" in shown
    execute = page.get_by_role("button", name="Execute")
    assert execute.is_disabled()
    assert sandbox.write_requests() == []  # the plan is on screen; nothing was sent
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    approval.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "bulk_refund_approval.png"))
    changed = uploaded[3]  # a colleague refunds one of them while the plan is on screen
    sandbox.client().refund(changed["backd_order_id"], changed["merchant_order_id"], "2.00")

    page.get_by_placeholder("type the confirmation shown above").fill(word)
    page.wait_for_function("() => [...document.querySelectorAll('button')].some(b => b.textContent.includes('Execute') && !b.disabled)")
    execute.click()
    _wait_visible(page, page.locator("text=Done."), "bulk_refund_execute")
    _wait_visible(page, page.locator("text=Not sent: 1 drifted"), "bulk_refund_drifted")
    link = page.locator("a.backd-download")
    _wait_visible(page, link, "bulk_refund_download")
    results = page.locator(".backd-plan", has_text="Run ").last
    _wait_visible(page, results, "bulk_refund_results")
    assert "drifted" in results.inner_text() and "refunded $1,234.50" in results.inner_text()
    link.evaluate("e => e.scrollIntoView({block: 'start'})")  # the link, then the sentence, the summary and the table
    page.screenshot(path=str(SCREENSHOTS / "bulk_refund_results.png"))
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert pd.read_csv(saved, index_col="row")["outcome"].tolist() == ["done", "done", "done", "drifted", "invalid"]

    per_order = sandbox.writes_per_order("refund")
    assert dict(per_order) == {o["backd_order_id"]: 1 for o in uploaded}  # three of ours, and the colleague's one
    assert [r["amount"] for r in sandbox.store.find(changed["backd_order_id"])["refunds"]] == [Decimal("2.00")]
    page.close()


def test_reconciliation_in_jupyterlab_shows_summary_and_charts(lab, browser):
    sandbox, workspace = lab["sandbox"], lab["workspace"]
    rows, _ = demo_ledger([sandbox.store.find(i) for i in sandbox.store.ids()])
    pd.DataFrame(rows).to_csv(workspace / "ledger.csv", index=False)
    notebook = _copy_notebook(workspace, "reconciliation", {"ledger_path": "ledger.csv", "column_map": DEMO_COLUMN_MAP})
    page = _open_and_run_all(browser, lab, notebook)
    summary = page.locator("h3", has_text="About this run")
    _wait_visible(page, summary, "reconciliation")
    assert "Ledger SHA-256" in page.locator(".jp-OutputArea-output", has_text="About this run").first.inner_text()
    changes = page.locator("h2", has_text="Changes since last run")
    _wait_visible(page, changes, "reconciliation_changes")
    chart = page.locator(".jp-OutputArea-output img").first
    _wait_visible(page, chart, "reconciliation_chart")
    assert chart.bounding_box()["width"] > 200
    page.wait_for_function("() => document.body.innerText.includes('session.close()')")
    summary.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "reconciliation_summary.png"))
    changes.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "reconciliation_changes.png"))
    chart.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "reconciliation_charts.png"))
    deadline = time.monotonic() + 60
    while not (workspace / "out/reconciliation/latest/report.html").is_file() and time.monotonic() < deadline:
        time.sleep(0.5)  # the cell that saves the reports runs after the charts are on screen
    assert (workspace / "out/reconciliation/latest/report.html").is_file()
    page.close()
