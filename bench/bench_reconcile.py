"""Benchmark the reconciliation at scale: N ledger rows × N Backd orders, offline (no HTTP), one process.

    python bench/bench_reconcile.py                 # 1,000,000 and 10,000,000 rows, ledger as a float frame and as CSV
    python bench/bench_reconcile.py --rows 1000000  # one size
    python bench/bench_reconcile.py --track         # also the changes-since-last-run step: ~1,000,000 findings a night

Each case runs in a fresh child process (so peak RSS is its own) and times ``reconcile(ledger, orders)``
end to end: loading and validating the ledger (exact cents), the comparison, the findings. Targets
(issues 11 and 12): 1,000,000 × 1,000,000 ≤ 3 s; 10,000,000 × 10,000,000 ≤ 30 s and ≤ 8 GB peak; the tracked
changes step on 1,000,000 store rows and a 1,000,000-row night adds ≤ 2 s.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

STATUSES = np.array(["order_placed", "order_confirmed", "order_canceled", "refund", "terms_selected"])
MERCHANT = {"order_placed": "pending", "order_confirmed": "shipped", "order_canceled": "cancelled", "refund": "refunded",
            "terms_selected": "terms selected"}


def build(n: int, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A ledger (float money, as a DataFrame from a spreadsheet) and Backd's orders, with 0.1% planted mismatches."""
    from backd_ops.locking import CHICAGO
    from backd_ops.models import cents_to_money

    rng = np.random.default_rng(seed)
    ids = pd.Series(np.char.add("BO-", np.arange(n).astype(str)), dtype="string[pyarrow]")
    merchant = pd.Series(np.char.add("M-", np.arange(n).astype(str)), dtype="string[pyarrow]")
    total = rng.integers(1_000, 5_000_000, n)
    refunded = np.where(rng.random(n) < 0.1, total // 4, 0)
    status = STATUSES[rng.integers(0, len(STATUSES), n)]
    now = datetime(2026, 4, 14, 9, 0, tzinfo=CHICAGO)
    created = pd.Series(pd.Timestamp(now) - pd.to_timedelta(rng.integers(0, 30 * 86400, n), unit="s"))
    active = rng.random(n) < 0.05
    locks = pd.Series(np.where(active, pd.Timestamp(now + timedelta(hours=8)).value, np.iinfo(np.int64).min)).astype("datetime64[ns]")
    orders = pd.DataFrame({
        "backd_order_id": ids, "merchant_order_id": merchant, "status": pd.Series(status, dtype="string[pyarrow]"),
        "order_total": cents_to_money(total), "refunded_amount": cents_to_money(refunded),
        "active_refund_amount": cents_to_money(np.where(active, refunded, np.nan)),
        "create_date": created.dt.tz_convert(CHICAGO), "active_refund_locked_at": locks.dt.tz_localize("UTC").dt.tz_convert(CHICAGO),
        "error": pd.Series(pd.NA, index=range(n), dtype="string[pyarrow]"),
    })
    ledger_total = total.copy()
    ledger_total[rng.integers(0, n, n // 1000)] += 500
    ledger = pd.DataFrame({"merchant_order_id": merchant, "backd_order_id": ids,
                           "status": pd.Series(status).map(MERCHANT).astype("string[pyarrow]"),
                           "order_total": ledger_total / 100, "refunded_amount": refunded / 100})
    return ledger, orders


def _case(n: int, form: str, queue: mp.Queue) -> None:
    from backd_ops.locking import CHICAGO
    from backd_ops.reconcile import reconcile

    ledger, orders = build(n)
    source: object = ledger
    if form == "csv":
        path = Path(tempfile.mkdtemp()) / "ledger.csv"
        ledger.to_csv(path, index=False, float_format="%.2f")
        source, ledger = path, None
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    rec = reconcile(source, orders, as_of=datetime(2026, 4, 14, 9, 0, tzinfo=CHICAGO), progress=False)
    findings = len(rec.discrepancies)
    elapsed = time.perf_counter() - started
    queue.put({"rows": n, "form": form, "seconds": elapsed, "findings": findings,
               "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "before_mb": rss_before})


def _track(n: int, queue: mp.Queue) -> None:
    """Two nights of a real reconciliation with about a million findings each (95% of order totals off by a dollar or
    two, drawn again each night): time ``rec.track`` on the second, everything tracking adds to a reconciliation."""
    import dataclasses

    from backd_ops.config import Account
    from backd_ops.findings import FindingsStore
    from backd_ops.locking import CHICAGO
    from backd_ops.reconcile import reconcile

    ledger, orders = build(n)
    account = Account("sandbox", "http://127.0.0.1:1/v1/backd/bnpl/api", "pk_bench")
    store = FindingsStore(tempfile.mkdtemp())
    moment = datetime(2026, 4, 14, 9, 0, tzinfo=CHICAGO)

    def night(seed: int):
        rng = np.random.default_rng(seed)
        off = np.where(rng.random(n) < 0.95, rng.integers(1, 3, n), 0)  # dollars
        rec = reconcile(ledger.assign(order_total=ledger["order_total"] + off), orders, as_of=moment + timedelta(days=seed),
                        progress=False)
        # Offline (Backd's orders as a frame) a reconciliation has no account; tracking is per account.
        rec.record = dataclasses.replace(rec.record, account=account)
        return rec

    night(1).track(store)
    tonight = night(2)
    started = time.perf_counter()
    changes = tonight.track(store)
    queue.put({"rows": n, "form": "track", "seconds": time.perf_counter() - started, "findings": changes.counts,
               "tonight": len(changes.current), "store": len(store._state(store.folder(account))),
               "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "before_mb": 0})


def run(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get(timeout=3600)
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append")
    parser.add_argument("--forms", default="frame,csv")
    parser.add_argument("--track", action="store_true")
    args = parser.parse_args()
    sizes = args.rows or [1_000_000, 10_000_000]
    for n in sizes:
        for form in args.forms.split(","):
            r = run(_case, n, form)
            print(f"reconcile {r['rows']:>11,} x {r['rows']:,} ledger as {r['form']:5s}: {r['seconds']:6.2f} s, "
                  f"{r['findings']:,} findings, peak RSS {r['peak_mb']:,.0f} MB (data built: {r['before_mb']:,.0f} MB)", flush=True)
    if args.track:
        r = run(_track, 1_000_000)
        print(f"changes since last run, {r['store']:,} store rows x {r['tonight']:,} findings tonight: {r['seconds']:.2f} s {r['findings']}")


if __name__ == "__main__":
    main()
