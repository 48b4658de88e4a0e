"""Reconciliation against the sandbox: planted discrepancies all found, nothing else, reports, offline re-run."""

from __future__ import annotations

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


def test_one_cent_within_tolerance_is_not_a_finding_but_two_cents_is(world):
    _, _, _, _, rec = world
    totals = rec.discrepancies[rec.discrepancies.kind == "order_total_mismatch"]
    assert (totals.at_stake > Decimal("0.01")).all()
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
    assert list(summary.index) == list(KINDS)
    assert summary.loc["refunded_amount_mismatch", "at_stake"] == Decimal("75.00")
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
    xlsx = pd.read_excel(files["report_xlsx"], sheet_name="discrepancies")
    assert xlsx.merchant_order_id.str.startswith("'").all()
    html = files["report_html"].read_text()
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html  # ledger text cannot inject markup


def test_reconcile_needs_a_source():
    with pytest.raises(backd_ops.InputError, match="client= .* or orders="):
        reconcile(pd.DataFrame({"merchant_order_id": ["M"], "backd_order_id": ["B"], "status": ["paid"], "order_total": ["1"]}))
