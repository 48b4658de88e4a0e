"""Benchmark bulk reads and writes against the sandbox (25 ms added latency), in one run.

    python bench/bench_bulk.py            # full run (about 2 minutes, most of it the sequential baseline)
    python bench/bench_bulk.py --quick    # smaller N, for a smoke check

Prints: find_orders on N ids vs a sequential client.find_order loop (speedup, % of the ideal wall time
N × latency / workers); client CPU per call at zero latency; a refund plan (N reads) and ``execute_plan`` of
it incl. the journal, claims and the read before every write (% of its ideal: reads + writes, 2 × N × latency
/ workers); and a worker-count sweep.
Targets: find ≥ 90% of ideal and ≥ 12× sequential; ≤ 0.5 ms client CPU per call; execute_plan ≥ 75% (issue 10).
Also printed: the measured sequential round trip, which bounds any concurrency (the sandbox and the client share
this machine's two cores), and each figure against it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sandbox_process import sandbox_process  # noqa: E402

from backd_ops import BackdClient, execute_plan, find_orders, refund_orders  # noqa: E402
from backd_ops.config import DEFAULT_MAX_WORKERS  # noqa: E402

LATENCY_MS = 25.0


def _client(base_url: str, pk: str, sk: str, _ids: object = None) -> BackdClient:
    return BackdClient(pk, sk, base_url=base_url)


def bench_find(ids: list[str], conn: tuple, workers: int) -> float:
    client = _client(*conn)
    find_orders(client, ids[:50], progress=False, max_workers=workers)  # warm the pool
    started = time.perf_counter()
    frame = find_orders(client, ids, progress=False, max_workers=workers)
    elapsed = time.perf_counter() - started
    assert frame.error.isna().all()
    return elapsed


def bench_sequential(ids: list[str], conn: tuple) -> float:
    client = _client(*conn)
    started = time.perf_counter()
    for order_id in ids:
        client.find_order(order_id)
    return time.perf_counter() - started


def bench_cpu(ids: list[str], conn: tuple) -> float:
    client = _client(*conn)
    find_orders(client, ids[:100], progress=False)
    cpu0 = time.process_time()
    find_orders(client, ids, progress=False)
    return (time.process_time() - cpu0) / len(ids) * 1000


def bench_refund(n: int, conn: tuple, workers: int) -> tuple[float, float, pd.Series]:
    """Seconds to plan N refunds, seconds to execute that plan, and the outcomes."""
    client = _client(*conn)
    orders = find_orders(client, conn[3], progress=False)
    eligible = orders[(orders.status == "order_confirmed") & orders.active_refund_amount.isna()].head(n)
    frame = pd.DataFrame({"backd_order_id": eligible.backd_order_id, "merchant_order_id": eligible.merchant_order_id,
                          "refund_amount": "1.00"})
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        plan = refund_orders(client, frame, progress=False, max_workers=workers)
        planned = time.perf_counter()
        result = execute_plan(client, plan, journal=Path(tmp) / "j.sqlite", progress=False, max_workers=workers)
        executed = time.perf_counter()
    return planned - started, executed - planned, result.outcome.value_counts()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_find, n_seq, n_refund = (400, 100, 200) if args.quick else (2000, 2000, 1000)
    workers = DEFAULT_MAX_WORKERS
    latency_s = LATENCY_MS / 1000
    print(f"backd_ops bulk benchmark: sandbox in a child process, {LATENCY_MS:.0f} ms added latency, {workers} workers\n")

    with sandbox_process(orders=max(n_find, 2 * n_refund + 1500), latency_ms=LATENCY_MS) as conn:
        ids = conn[3][:n_find]
        find_s = bench_find(ids, conn, workers)
        ideal = n_find * latency_s / workers
        seq_s = bench_sequential(conn[3][:n_seq], conn) * (n_find / n_seq)
        print(f"find_orders, {n_find} ids:      {find_s:6.2f} s   ideal {ideal:.2f} s   {100 * ideal / find_s:5.1f}% of ideal")
        print(f"sequential find_order loop:   {seq_s:6.2f} s   ({'measured' if n_seq == n_find else f'{n_seq} measured, scaled'})"
              f"   speedup {seq_s / find_s:5.1f}x")
        round_trip_s = seq_s / n_find
        print(f"  one round trip here: {1000 * round_trip_s:.1f} ms against {LATENCY_MS:.0f} ms of latency: no number of workers "
              f"gets past {100 * latency_s / round_trip_s:.0f}% of ideal on this machine;\n"
              f"  find_orders is {100 * (n_find * round_trip_s / workers) / find_s:.0f}% of N x round trip / workers")
        plan_s, execute_s, outcomes = bench_refund(n_refund, conn, workers)
        ideal_plan, ideal_execute = n_refund * latency_s / workers, 2 * n_refund * latency_s / workers
        print(f"refund plan, {n_refund} rows:     {plan_s:6.2f} s   ideal {ideal_plan:.2f} s   {100 * ideal_plan / plan_s:5.1f}% of ideal")
        print(f"execute_plan, {n_refund} rows:    {execute_s:6.2f} s   ideal {ideal_execute:.2f} s   "
              f"{100 * ideal_execute / execute_s:5.1f}% of ideal (reads + writes); "
              f"{100 * (2 * n_refund * round_trip_s / workers) / execute_s:.0f}% of 2N x round trip / workers   "
              f"outcomes {outcomes.to_dict()}")
        print("\nworker sweep (find_orders):")
        for w in (4, 8, 16, 32):
            elapsed = bench_find(ids, conn, w)
            print(f"  {w:3d} workers: {elapsed:6.2f} s  {100 * (n_find * latency_s / w) / elapsed:5.1f}% of ideal  "
                  f"{n_find / elapsed:7.0f} orders/s")

    with sandbox_process(orders=n_find, latency_ms=0) as conn:
        cpu_ms = bench_cpu(conn[3][:n_find], conn)
        print(f"\nclient CPU per call at zero latency: {cpu_ms:.3f} ms (find_orders, {n_find} ids, incl. the DataFrame)")


if __name__ == "__main__":
    main()
