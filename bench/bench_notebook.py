"""Benchmark the main job end to end: papermill runs reconciliation.ipynb against a sandbox with 10,000 orders.

    python bench/bench_notebook.py [--orders 10000]

The sandbox serves from a child process (as Backd would be remote); the ledger is built from what Backd
returns, one row per order (stale orders still make findings). Times the whole papermill run: kernel start, find_orders over every
order, the comparison, charts and every report file. Target (issue #5): ≤ 30 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import papermill as pm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sandbox_process import sandbox_process  # noqa: E402

from backd_ops import BackdClient, fetch_orders  # noqa: E402
from backd_ops.sandbox.demo import DEMO_COLUMN_MAP, _ledger_row  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "reconciliation.ipynb"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=10_000)
    args = parser.parse_args()
    with sandbox_process(orders=args.orders, latency_ms=0) as (base_url, pk, sk, ids), tempfile.TemporaryDirectory() as tmp:
        batch = fetch_orders(BackdClient(pk, sk, base_url=base_url), ids, progress=False)
        ledger = pd.DataFrame([_ledger_row(_wire(o)) for o in batch.orders.values()])
        ledger_path = Path(tmp) / "ledger.csv"
        ledger.to_csv(ledger_path, index=False)
        os.environ.update({"BACKD_PUBLIC_KEY": pk, "BACKD_SECRET_KEY": sk, "BACKD_BASE_URL": base_url, "BACKD_OPS_PROGRESS": "off"})
        started = time.perf_counter()
        pm.execute_notebook(str(NOTEBOOK), str(Path(tmp) / "executed.ipynb"), kernel_name="python3", progress_bar=False, cwd=tmp,
                            parameters={"ledger_path": str(ledger_path), "column_map": DEMO_COLUMN_MAP, "out_dir": str(Path(tmp) / "out"),
                                        "backend": "env", "progress": "off"})
        elapsed = time.perf_counter() - started
        files = sorted(p.name for p in (Path(tmp) / "out").iterdir())
    print(f"papermill reconciliation.ipynb, {args.orders:,} orders / {len(ledger):,} ledger rows: {elapsed:.1f} s end to end")
    print(f"files: {', '.join(files)}")


def _wire(order) -> dict:
    """The store-shaped dict _ledger_row expects, from a client Order."""
    return {"merchant_order_id": order.merchant_order_id, "backd_order_id": order.backd_order_id, "status": order.status,
            "order_total": order.order_total, "refunds": [{"amount": r.amount, "status": r.status} for r in order.refunds]}


if __name__ == "__main__":
    main()
