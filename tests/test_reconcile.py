"""Reconciliation against the sandbox: planted discrepancies all found, nothing else, reports, offline re-run."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest

import backd_ops
from backd_ops.locking import CHICAGO
from backd_ops.reconcile import KINDS, reconcile
from backd_ops.sandbox import run_sandbox
from backd_ops.sandbox.demo import DEMO_COLUMN_MAP, demo_ledger

AS_OF = datetime(2026, 4, 14, 9, 0, tzinfo=CHICAGO)


@pytest.fixture(scope="module")
def world():
    """A sandbox on a frozen Tuesday morning, its demo ledger with planted discrepancies, and a live reconciliation."""
    with run_sandbox(orders=250, now=AS_OF) as sb:
        orders = [sb.store.find(i) for i in sb.store.ids()]
        rows, planted = demo_ledger(orders)
        ledger = pd.DataFrame(rows)
        rec = reconcile(ledger, client=sb.client(), column_map=DEMO_COLUMN_MAP, as_of=AS_OF, stale_days=14,
                        lock_window_hours=10, progress=False)
        yield sb, ledger, planted, orders, rec


def expected_time_findings(orders):
    stale = {o["merchant_order_id"] for o in orders if o["status"] == "order_placed" and o["create_date"] < AS_OF - timedelta(days=14)}
    locks = {o["merchant_order_id"] for o in orders for r in o["refunds"]
             if r["status"] in ("draft", "approved") and AS_OF < r["locked_at"] <= AS_OF + timedelta(hours=10)}
    return stale, locks


def test_planted_discrepancies_are_found_and_nothing_else(world):
    sb, ledger, planted, orders, rec = world
    found = rec.discrepancies
    stale, locks = expected_time_findings(orders)
    # Planted status mismatches are orders placed in Backd that the ledger canceled; remove them from "stale".
    expected = {**{k: set(v) for k, v in planted.items()}, "stale_order_placed": stale, "refund_locks_soon": locks}
    got = {kind: set(found.loc[found.kind == kind, "merchant_order_id"]) for kind in KINDS}
    for kind in KINDS:
        assert got[kind] == expected.get(kind, set()), kind
    assert stale and locks  # the frozen clock makes both kinds occur in the demo data
    assert (found.kind == "duplicate_in_ledger").sum() == 2 * len(planted["duplicate_in_ledger"])  # both rows of each pair


def test_every_kind_keeps_its_shown_values_arrow_text(world):
    """One kind's missing or ``str`` values would turn every finding's values into Python objects on the concat
    (on a million findings, 0.4 s more to track them)."""
    findings = world[-1]._findings
    assert findings["kind"].nunique() >= 6
    assert [str(findings[c].dtype) for c in ("ledger_value", "backd_value")] == ["string", "string"]


def test_one_cent_within_tolerance_is_not_a_finding_but_two_cents_is(world):
    _, _, _, _, rec = world
    totals = rec.discrepancies[rec.discrepancies.kind == "order_total_mismatch"]
    assert (totals.exposure > Decimal("0.01")).all()
    strict = reconcile(rec.ledger, rec.orders, tolerance="0", as_of=AS_OF)
    assert len(strict.discrepancies.query("kind == 'order_total_mismatch'")) == len(totals) + 1


def test_offline_rerun_from_the_saved_snapshot_gives_the_same_findings(world, tmp_path):
    _, ledger, _, _, rec = world
    files = rec.save(tmp_path)
    offline = reconcile(ledger, files["snapshot"], column_map=DEMO_COLUMN_MAP, as_of=AS_OF, stale_days=14, lock_window_hours=10)
    pd.testing.assert_frame_equal(offline.discrepancies, rec.discrepancies)
    assert set(files) >= {"discrepancies", "summary", "summary_json", "report_html", "report_xlsx", "snapshot"}
    html = files["report_html"].read_text()
    assert html.count("data:image/png;base64,") == 3 and "Backd reconciliation" in html


def test_summary_and_matched(world):
    _, ledger, _, _, rec = world
    summary = rec.summary
    assert list(summary.index) == [*KINDS, "total"]
    found = rec.discrepancies
    assert found.loc[found.kind == "refunded_amount_mismatch", "exposure"].sum() == Decimal("75.00")
    assert summary.loc["total", "at_stake"] == found.at_stake.sum() == rec.at_stake  # the totals add up
    assert (summary.drop(index="total").at_stake.sum()) == summary.loc["total", "at_stake"]
    assert len(rec.matched) + rec.discrepancies.row.nunique() == len(ledger)
    assert 0 < rec.match_rate < 1 and rec.has_findings(["missing_in_backd"]) and not rec.has_findings(["lookup_failed"])
    assert "<table" in rec._repr_html_()


def test_suggested_corrections_feed_dry_runs(world):
    sb, _, planted, _, rec = world
    refunds = rec.suggested_refunds()
    assert len(refunds) == 3
    plan = backd_ops.refund_orders(sb.client(), refunds, progress=False, now=AS_OF)
    assert plan.outcome.eq("planned").all(), plan.message.tolist()
    cancels = rec.suggested_cancels()
    assert set(cancels.backd_order_id) == {f"BO-DEMO-{m[2:]}".replace("BO-DEMO-1", "BO-DEMO-0") for m in planted["status_mismatch"]}
    assert backd_ops.cancel_orders(sb.client(), cancels, progress=False).outcome.eq("planned").all()
    assert sb.write_requests() == []


def test_exports_neutralise_formulas(tmp_path):
    with run_sandbox(orders=5, now=AS_OF) as sb:
        ledger = pd.DataFrame({"merchant_order_id": ["=HYPERLINK(\"http://evil\")", "+1<b>x</b>"], "backd_order_id": ["", ""],
                               "status": ["paid", "paid"], "order_total": ["1.00", "2.00"]})
        rec = reconcile(ledger, client=sb.client(), as_of=AS_OF, progress=False)
        files = rec.save(tmp_path)
    text = files["discrepancies"].read_text()
    assert "'=HYPERLINK" in text and "\n=HYPERLINK" not in text and ",=HYPERLINK" not in text
    xlsx = pd.read_excel(files["report_xlsx"], sheet_name="Discrepancies", header=1)  # row 1: the SANDBOX banner
    assert xlsx["Merchant order"].str.startswith("'").all()
    html = files["report_html"].read_text()
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html  # ledger text cannot inject markup


def test_reconcile_needs_a_source():
    with pytest.raises(backd_ops.InputError, match="client= .* or orders="):
        reconcile(pd.DataFrame({"merchant_order_id": ["M"], "backd_order_id": ["B"], "status": ["paid"], "order_total": ["1"]}))


# -- issue 11: a reconciliation an auditor accepts ----------------------------------------------------------------------
def small_ledger(orders: list[dict], n: int = 6) -> pd.DataFrame:
    return pd.DataFrame([{"merchant_order_id": o["merchant_order_id"], "backd_order_id": o["backd_order_id"], "status": o["status"],
                          "order_total": f"{o['order_total']:.2f}",
                          "refunded_amount": f"{sum(r['amount'] for r in o['refunds'] if r['status'] != 'declined'):.2f}"}
                         for o in orders[:n]])


def test_issue11_2_every_artifact_says_what_was_compared(world, tmp_path):
    sb, ledger, *_ = world
    path = tmp_path / "ledger.csv"
    ledger.to_csv(path, index=False)
    rec = reconcile(path, client=sb.client(), column_map=DEMO_COLUMN_MAP, as_of=AS_OF, progress=False)
    files = rec.save(tmp_path / "out")
    import hashlib
    import json

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    html = files["report_html"].read_text()
    for text in (rec.record.run_id, "127.0.0.1", "…demo", "ledger.csv", digest, f"{len(ledger):,}", "2026-04-14 09:00:00 CDT",
                 "2026-04-14 14:00:00 UTC", "USD", "tolerance=0.01", "backd_ops ", "Run by", "Orders read live from Backd",
                 "SANDBOX"):
        assert text in html, text
    summary = json.loads(files["summary_json"].read_text())
    assert summary["run"]["ledger"] == {"name": "ledger.csv", "sha256": digest, "rows": len(ledger),
                                        "how_read": "ledger.csv: CSV, comma-separated; columns: Order # → merchant_order_id, "
                                                    "Backd ID → backd_order_id, Status → status, Total → order_total, "
                                                    "Refunded → refunded_amount"}
    assert "Order # → merchant_order_id" in html  # the report says which header became which column
    assert summary["run"]["account"]["public_key"] == "…demo" and summary["sandbox"] is True
    assert summary["run"]["as_of_utc"] == "2026-04-14T14:00:00+00:00" and summary["run"]["currency"] == "USD"
    about = pd.read_excel(files["report_xlsx"], sheet_name="About this run", header=1).set_index("Field")["Value"]
    assert about["Ledger SHA-256"] == digest and about["Run id"] == rec.record.run_id
    assert "pk_sandbox_demo" not in html + files["summary_json"].read_text()  # the public key's last four only


def test_issue11_3_one_folder_per_run_and_a_latest_pointer(world, tmp_path):
    _, _, _, _, rec = world
    first = rec.save_run(tmp_path)
    second = reconcile(rec.ledger, rec.orders, as_of=AS_OF + timedelta(days=1)).save_run(tmp_path)
    assert first != second and first.name.startswith("2026-04-14T090000-") and second.name.startswith("2026-04-15T090000-")
    assert (first / "report.html").is_file() and (second / "report.html").is_file()
    assert (tmp_path / "latest").resolve() == second.resolve()


def test_issue11_4_money_at_stake_counts_each_order_once_and_a_duplicate_its_excess():
    with run_sandbox(orders=40, now=AS_OF) as sb:
        orders = [o for o in (sb.store.find(i) for i in sb.store.ids()) if o["status"] == "order_placed"]
        ledger = small_ledger(orders, 3)
        ledger.loc[3] = ledger.loc[0]  # a duplicated row: one copy is the excess
        ledger.loc[1, "status"] = "order_canceled"  # status differs, and its total too: one order, two findings
        ledger.loc[1, "order_total"] = str(Decimal(ledger.loc[1, "order_total"]) + 7)
        rec = reconcile(ledger, client=sb.client(), as_of=AS_OF, stale_days=1000, progress=False)
    found = rec.discrepancies
    duplicates = found[found.kind == "duplicate_in_ledger"]
    assert len(duplicates) == 2 and duplicates.at_stake.sum() == Decimal(ledger.loc[0, "order_total"])
    second = found[found.backd_order_id == ledger.loc[1, "backd_order_id"]]
    assert set(second.kind) == {"status_mismatch", "order_total_mismatch"}
    assert second.at_stake.sum() == Decimal(orders[1]["order_total"]).quantize(Decimal("0.01"))  # once, at the largest
    assert rec.summary.loc["total", "at_stake"] == found.at_stake.sum()


def test_issue11_6_the_report_reads_like_a_report(world, tmp_path):
    _, _, _, _, rec = world
    files = rec.save(tmp_path)
    html = files["report_html"].read_text()
    assert "<NA>" not in html and "match_rate" not in html and "Match rate" in html and "Money at stake" in html
    assert 'class="total"' in html and '<td class="num">$' in html
    assert {"Money at stake by kind (each order once)", "Time findings: orders waiting, refunds locking"} <= set(rec.charts())
    from openpyxl import load_workbook

    book = load_workbook(files["report_xlsx"])
    sheet = book["Discrepancies"]
    header = [c.value for c in sheet[2]]
    money_column = header.index("Money at stake") + 1
    cell = sheet.cell(row=3, column=money_column)
    assert isinstance(cell.value, (int, float)) and "$" in cell.number_format
    assert sheet.freeze_panes == "A3" and sheet.auto_filter.ref.startswith("A2")
    assert sheet.column_dimensions["A"].width > 8
    totals = book["Summary"]
    last = totals.max_row
    assert totals.cell(row=last, column=1).value == "Total"


def test_issue11_7_missing_in_ledger_from_a_snapshot_and_said_plainly_when_live(world):
    sb, ledger, _, orders, rec = world
    fewer = ledger.iloc[5:]
    live = reconcile(fewer, client=sb.client(), column_map=DEMO_COLUMN_MAP, as_of=AS_OF, progress=False)
    assert not live.has_findings(["missing_in_ledger"]) and "not checked" in live.record.coverage
    offline = reconcile(fewer, rec.orders, column_map=DEMO_COLUMN_MAP, as_of=AS_OF)
    missing = offline.discrepancies[offline.discrepancies.kind == "missing_in_ledger"]
    expected = set(ledger.iloc[:5]["Backd ID"]) - set(fewer["Backd ID"]) - {""}
    assert set(missing.backd_order_id) == expected and missing.row.eq("").all() | missing.row.isna().all()


def test_issue11_7_any_index_works(world, tmp_path):
    sb, ledger, _, _, rec = world
    two_months = pd.concat([ledger.iloc[:100], ledger.iloc[100:]])  # a repeated 0..n index
    two_months.index = [0] * len(two_months)
    again = reconcile(two_months, rec.orders, column_map=DEMO_COLUMN_MAP, as_of=AS_OF)
    assert again.match_rate == pytest.approx(rec.match_rate) and len(again.matched) == len(rec.matched)
    assert again.save(tmp_path)["report_html"].is_file()


def test_issue11_7_stale_says_created_when_backd_gives_no_placed_date(world):
    found = world[4].discrepancies
    stale = found[found.kind == "stale_order_placed"]
    assert len(stale) and stale.backd_value.str.startswith("created ").all()
    # ...with the date (the text used to be re-aligned on the wrong index and came out as "created ")
    assert stale.backd_value.str.fullmatch(r"created \d{4}-\d{2}-\d{2}").all()
    locks = found[found.kind == "refund_locks_soon"]
    assert len(locks) and locks.backd_value.str.fullmatch(r"locks \d{4}-\d{2}-\d{2} \d{2}:\d{2} C[DS]T").all()


@pytest.mark.parametrize(("options", "message"), [
    ({"as_of": datetime(2026, 4, 14, 9, 0)}, "has no time zone"),
    ({"tolerance": "-0.01"}, "is negative"),
    ({"stale_days": -1}, "stale_days must be a number of at least 0"),
])
def test_issue11_7_bad_parameters_are_refused(world, options, message):
    _, ledger, _, _, rec = world
    with pytest.raises(backd_ops.InputError, match=message):
        reconcile(ledger, rec.orders, column_map=DEMO_COLUMN_MAP, **options)


def test_an_unreachable_backd_stops_the_run():
    client = backd_ops.BackdClient("pk", "sk", base_url="http://127.0.0.1:9/v1/backd/bnpl/api", timeout=(0.2, 0.2), max_retries=0)
    ledger = pd.DataFrame({"merchant_order_id": ["M-1"], "backd_order_id": ["BO-1"], "status": ["paid"], "order_total": ["1.00"]})
    with pytest.raises(backd_ops.NetworkError, match="could not be reached for any of the 1 orders"):
        reconcile(ledger, client=client, progress=False)


def test_charts_leave_the_users_matplotlib_alone():
    """Importing backd_ops and drawing its charts neither imports pyplot nor switches the kernel's backend."""
    code = ("import sys, pandas as pd, backd_ops\n"
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported with the package'\n"
            "from backd_ops import report\n"
            "png = report.bar_chart(pd.Series({'a': 1.0}), xlabel='x')\n"
            "assert len(png) > 100 and 'matplotlib.pyplot' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
