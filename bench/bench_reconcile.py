"""Benchmark the reconciliation's comparison step: 1,000,000 ledger rows × 1,000,000 Backd orders.

    python bench/bench_reconcile.py [--rows 1000000]

Builds both frames in memory (vectorised, seeded), then times ``reconcile(ledger, orders)`` (the
comparison, offline: no HTTP) and ``load_ledger`` on the raw ledger separately, and reports the process's
peak RSS. Target (issue #4): comparison ≤ 3 s and ≤ 2 GB peak on 2 cores.
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from backd_ops.ledger import load_ledger
from backd_ops.locking import CHICAGO
from backd_ops.models import cents_to_money
from backd_ops.reconcile import reconcile

STATUSES = np.array(["order_placed", "order_confirmed", "order_canceled", "refund", "terms_selected"])
MERCHANT = {"order_placed": "pending", "order_confirmed": "shipped", "order_canceled": "cancelled", "refund": "refunded",
            "terms_selected": "terms selected"}


def build(n: int, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = pd.Series(np.char.add("BO-", np.arange(n).astype(str)), dtype="string")
    merchant = pd.Series(np.char.add("M-", np.arange(n).astype(str)), dtype="string")
    total = rng.integers(1_000, 5_000_000, n)
    refunded = np.where(rng.random(n) < 0.1, total // 4, 0)
    status = STATUSES[rng.integers(0, len(STATUSES), n)]
    now = datetime(2026, 4, 14, 9, 0, tzinfo=CHICAGO)
    created = pd.Series(pd.Timestamp(now) - pd.to_timedelta(rng.integers(0, 30 * 86400, n), unit="s"))
    locks = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, America/Chicago]")
    active = rng.random(n) < 0.05
    locks[active] = pd.Timestamp(now + timedelta(hours=8))
    orders = pd.DataFrame({
        "backd_order_id": ids, "merchant_order_id": merchant, "status": pd.Series(status, dtype="string"),
        "order_total": cents_to_money(total), "refunded_amount": cents_to_money(refunded),
        "active_refund_amount": cents_to_money(np.where(active, refunded, np.nan)),
        "create_date": created.dt.tz_convert(CHICAGO), "active_refund_locked_at": locks, "error": pd.Series(pd.NA, index=range(n), dtype="string"),
    })
    ledger_total = total.copy()
    ledger_total[rng.integers(0, n, n // 1000)] += 500  # 0.1% planted total mismatches
    ledger = pd.DataFrame({"merchant_order_id": merchant, "backd_order_id": ids,
                           "status": pd.Series(status, dtype="string").map(MERCHANT),
                           "order_total": pd.Series(ledger_total / 100, dtype="float64"),
                           "refunded_amount": pd.Series(refunded / 100, dtype="float64")})
    return ledger, orders


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    ledger_raw, orders = build(args.rows)
    started = time.perf_counter()
    ledger = load_ledger(ledger_raw)
    load_s = time.perf_counter() - started
    del ledger_raw
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    as_of = datetime(2026, 4, 14, 9, 0, tzinfo=CHICAGO)
    started = time.perf_counter()
    rec = reconcile(ledger, orders, as_of=as_of)
    findings = rec.discrepancies
    compare_s = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"reconcile comparison, {args.rows:,} ledger rows x {len(orders):,} orders: {compare_s:.2f} s "
          f"({len(findings):,} findings)")
    print(f"load_ledger (validation, exact cents) on {args.rows:,} rows: {load_s:.2f} s")
    print(f"peak RSS: {peak_mb:,.0f} MB (before the comparison: {rss_before:,.0f} MB)")
    print(rec.summary[["findings"]].T.to_string())


if __name__ == "__main__":
    main()
