"""Benchmark the second night of a large book with the order store: how many orders are read live, and the compute.

    python bench/bench_incremental.py [--orders 1000000]

Night one's reads are in the order store (95% of the book final, 5% live). On night two 2% of the ledger's
rows changed and the audit sample is 1% of the final orders. Backd is an in-process stand-in that serves
orders from memory (the question is how many reads, not how fast a network is); the time spent inside it
is subtracted, so "compute" is everything else: store, selection, ledger, comparison, findings.
Targets (issue 12): live reads ≤ 8% of the book, compute beyond the reads ≤ 60 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reconcile import build  # noqa: E402

from backd_ops.client import BackdClient  # noqa: E402
from backd_ops.locking import CHICAGO  # noqa: E402
from backd_ops.models import Order  # noqa: E402
from backd_ops.orderstore import OrderStore  # noqa: E402
from backd_ops.reconcile import reconcile  # noqa: E402


class MemoryBackd(BackdClient):
    """``find_order`` from a frame in memory; counts the reads and the time they take."""

    def __init__(self, orders: pd.DataFrame) -> None:
        super().__init__("pk_bench", "sk_bench", base_url="http://127.0.0.1:1/v1/backd/bnpl/api")
        self._rows = orders.set_index("backd_order_id", drop=False)
        self.reads, self.read_s = 0, 0.0

    def find_order(self, backd_order_id: str) -> Order:
        started = time.perf_counter()
        row = self._rows.loc[backd_order_id]
        active = pd.notna(row["active_refund_amount"])
        data = {"backd_order_id": backd_order_id, "merchant_order_id": row["merchant_order_id"], "status": row["status"],
                "order_total": str(row["order_total"]), "create_date": row["create_date"].strftime("%Y-%m-%d %H:%M:%S"),
                "refunds": [{"amount": str(row["active_refund_amount"]), "status": "draft",
                             "locked_at": row["active_refund_locked_at"].strftime("%Y-%m-%d %H:%M:%S")}] if active else []}
        order = Order.from_wire(data)
        self.reads += 1
        self.read_s += time.perf_counter() - started
        return order


def book(n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    ledger, orders = build(n)
    rng = np.random.default_rng(5)
    final = rng.random(n) < 0.95
    status = np.where(final, "order_canceled", "order_confirmed")
    orders["status"] = pd.Series(status, dtype="string[pyarrow]")
    orders.loc[final, ["active_refund_amount", "active_refund_locked_at"]] = None
    zero = orders["order_total"] - orders["order_total"]
    orders["refunded_amount"] = zero  # the stand-in serves no processed refunds: keep both sides at zero
    ledger["refunded_amount"] = 0.0
    ledger["status"] = pd.Series(np.where(final, "cancelled", "shipped"), dtype="string[pyarrow]")
    return ledger, orders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.orders
    ledger, orders = book(n)
    store = OrderStore(Path(tempfile.mkdtemp()) / "orders")
    client = MemoryBackd(orders)
    night_one = datetime(2026, 4, 14, 2, 0, tzinfo=CHICAGO)
    started = time.perf_counter()
    stored = orders.assign(refund_count=0, merchant_order_status=None, cart_amount=orders["order_total"], tax_amount=None,
                           shipping_amount=None, discount_amount=None, company_name=None, shipping_company_name=None,
                           active_refund_status=np.where(orders["active_refund_amount"].notna(), "draft", None))
    store.record(client.account, stored, read_at=night_one.astimezone(timezone.utc))
    reconcile(ledger, client=client, refresh="none", store=store, as_of=night_one, progress=False)  # remembers the ledger
    print(f"night one (store filled with {n:,} reads, ledger remembered): {time.perf_counter() - started:.1f} s")

    rng = np.random.default_rng(9)
    changed = rng.choice(n, size=n // 50, replace=False)
    ledger.loc[changed, "order_total"] = ledger.loc[changed, "order_total"] + 1.0
    started = time.perf_counter()
    rec = reconcile(ledger, client=client, refresh="changed", store=store, as_of=night_one.replace(day=15), progress=False,
                    audit_share=0.01, audit_seed=1, max_workers=1)  # one worker: the stand-in is Python, not I/O
    elapsed = time.perf_counter() - started
    print(f"night two: {client.reads:,} live reads = {client.reads / n:.1%} of the book "
          f"({rec.record.sourcing}); {len(rec.discrepancies):,} findings")
    print(f"night two compute beyond the reads: {elapsed - client.read_s:.1f} s (reads took {client.read_s:.1f} s in the stand-in; "
          f"wall {elapsed:.1f} s)")


if __name__ == "__main__":
    main()
