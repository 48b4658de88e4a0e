"""The order store and incremental reconciliation: final vs live, changed ledger rows, open findings, the audit sample."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest

import backd_ops
from backd_ops.config import Account
from backd_ops.locking import CHICAGO
from backd_ops.orderstore import OrderStore, is_final
from backd_ops.reconcile import reconcile
from backd_ops.sandbox import run_sandbox

NIGHT = datetime(2026, 4, 14, 2, 0, tzinfo=CHICAGO)


@pytest.fixture
def book(tmp_path):
    with run_sandbox(orders=120, now=NIGHT) as sb:
        orders = [sb.store.find(i) for i in sb.store.ids()]
        ledger = pd.DataFrame([{"merchant_order_id": o["merchant_order_id"], "backd_order_id": o["backd_order_id"], "status": o["status"],
                                "order_total": f"{o['order_total']:.2f}",
                                "refunded_amount": f"{sum(r['amount'] for r in o['refunds'] if r['status'] != 'declined'):.2f}"}
                               for o in orders])
        yield sb, ledger, OrderStore(tmp_path / "orders")


def reads(sb) -> set[str]:
    return {r["backd_order_id"] for r in sb.requests if r["endpoint"] == "find_order"}


def night(sb, ledger, store, moment, **options):
    sb.app.requests.clear()
    return reconcile(ledger, client=sb.client(), as_of=moment, refresh="changed", store=store, progress=False,
                     stale_days=1000, **options)


def test_every_read_is_kept_and_final_orders_are_told_apart(book):
    sb, ledger, store = book
    backd_ops.find_orders(sb.client(), sb.store.ids()[:10], progress=False)  # any read fills the default store
    assert len(OrderStore(backd_ops.orderstore.default_order_store().path).load(sb.client().account)) == 10
    first = night(sb, ledger, store, NIGHT)
    kept = store.load(sb.client().account)
    assert len(kept) == len(ledger) and kept.read_at.notna().all() and first.record.orders_live == len(ledger)
    expected = {o["backd_order_id"] for o in (sb.store.find(i) for i in sb.store.ids())
                if o["status"] == "order_canceled" or (o["status"] == "refund" and not any(r["status"] == "draft" for r in o["refunds"]))}
    assert set(kept.loc[kept.final, "backd_order_id"]) == expected and expected
    assert is_final(pd.DataFrame({"status": ["refund"], "active_refund_status": ["draft"]})).tolist() == [False]


def test_the_second_night_reads_only_what_can_have_changed(book):
    sb, ledger, store = book
    night(sb, ledger, store, NIGHT)
    kept = store.load(sb.client().account)
    final = set(kept.loc[kept.final, "backd_order_id"])
    edited = ledger.copy()
    changed = edited.index[edited.backd_order_id.isin(final)][:2]
    edited.loc[changed, "order_total"] = (edited.loc[changed, "order_total"].astype(float) + 1).map("{:.2f}".format)  # changed in the ledger
    second = night(sb, edited, store, NIGHT + timedelta(days=1), audit_share=0.0)
    live = set(kept.loc[~kept.final, "backd_order_id"]) | set(edited.loc[changed, "backd_order_id"])
    assert reads(sb) == live
    assert second.record.orders_live == len(live) and second.record.orders_from_store == len(ledger) - len(live)
    assert "read live" in second.record.sourcing and "oldest read" in second.record.sourcing
    assert second.has_findings(["order_total_mismatch"])  # compared against the stored copy where not read


def test_orders_with_an_open_finding_are_read_live(book, tmp_path):
    sb, ledger, store = book
    kept_final = None
    first = night(sb, ledger, store, NIGHT, findings=tmp_path / "findings")
    kept = store.load(sb.client().account)
    kept_final = kept.loc[kept.final, "backd_order_id"].iloc[0]
    wrong = ledger.copy()
    wrong.loc[wrong.backd_order_id == kept_final, "status"] = "pending"
    night(sb, wrong, store, NIGHT + timedelta(days=1), findings=tmp_path / "findings", audit_share=0.0)  # new: read (ledger changed)
    third = night(sb, wrong, store, NIGHT + timedelta(days=2), findings=tmp_path / "findings", audit_share=0.0)
    assert kept_final in reads(sb) and third.changes.counts["open"] >= 1  # unchanged ledger, but its finding is open
    assert first.record.orders_live == len(ledger)


def test_the_audit_sample_catches_a_store_that_drifted_and_widens(book):
    sb, ledger, store = book
    night(sb, ledger, store, NIGHT)
    account = sb.client().account
    kept = store.load(account)
    canceled = kept.loc[kept.final & kept.status.eq("order_canceled"), "backd_order_id"].iloc[0]
    sb.store._orders[canceled]["order_total"] += Decimal("5.00")  # Backd changed behind the store's back
    rec = night(sb, ledger, store, NIGHT + timedelta(days=1), audit_share=1.0, audit_seed=7)
    drifted = rec.discrepancies[rec.discrepancies.kind == "store_drifted"]
    assert drifted.backd_order_id.tolist() == [canceled] and "order_total" in drifted.backd_value.iloc[0]
    assert "audit sample" in rec.record.sourcing and "seed 7" in rec.record.sourcing and "1 differed from the store" in rec.record.sourcing
    state = json.loads((store.folder(account) / "audit.json").read_text())
    assert state["drifted"] and state["next_share"] == 1.0  # widened (capped at everything)
    small = night(sb, ledger, store, NIGHT + timedelta(days=2), audit_share=0.01, audit_seed=3)
    assert "(100.0%" in small.record.sourcing  # the next night samples more widely than its base 1%
    assert store.load(account, [canceled]).order_total.iloc[0] == Decimal(str(sb.store.find(canceled)["order_total"]))


def test_refresh_none_reconciles_from_the_store_alone(book):
    sb, ledger, store = book
    night(sb, ledger, store, NIGHT)
    sb.app.requests.clear()
    offline = reconcile(ledger, client=sb.client(), as_of=NIGHT, refresh="none", store=store, progress=False, stale_days=1000)
    assert reads(sb) == set() and offline.record.orders_live == 0 and offline.record.orders_from_store == len(ledger)
    with pytest.raises(backd_ops.InputError, match="refresh must be one of"):
        reconcile(ledger, client=sb.client(), refresh="sometimes", store=store, progress=False)


def test_parts_whose_timestamps_differ_in_unit_load_as_one_table(tmp_path):
    """pandas parses "…:00.123Z" at ms and other text at us; a store written by both must still load."""
    store = OrderStore(tmp_path / "orders")
    account = Account("sandbox", "http://127.0.0.1/v1", "pk_sandbox_demo")
    base = {"status": "refund", "active_refund_status": "draft", "order_total": Decimal("10.00")}
    store.record(account, pd.DataFrame([{**base, "backd_order_id": "BO-1", "active_refund_locked_at": "2026-04-14T02:00:00.123Z"}]))
    store.record(account, pd.DataFrame([{**base, "backd_order_id": "BO-2", "active_refund_locked_at": "2026-04-14T02:00:00.123456Z"}]))
    import pyarrow as pa
    import pyarrow.parquet as pq
    legacy = pa.table({"backd_order_id": ["BO-3"], "active_refund_locked_at": pa.array([0], pa.timestamp("ms", tz="UTC")),
                       "read_at": pa.array([1], pa.timestamp("ms", tz="UTC"))})
    pq.write_table(legacy, store.folder(account) / "part-00000000T000000000000-legacy.parquet")
    loaded = store.load(account)
    assert sorted(loaded.backd_order_id) == ["BO-1", "BO-2", "BO-3"]
    assert loaded.set_index("backd_order_id").active_refund_locked_at["BO-1"].microsecond == 123000
