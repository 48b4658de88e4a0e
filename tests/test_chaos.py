"""Chaos runs: bulk execute under injected faults; invariants checked and figures printed.

CI runs the short profile (300 rows per operation). The long profile (2,000 rows per operation, as in
issue #6) is marked ``slow``: ``make test-long`` or ``pytest -m slow -s tests/test_chaos.py``.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pandas as pd
import pytest

from backd_ops import bulk
from backd_ops.journal import Journal
from backd_ops.sandbox import FaultProfile, run_sandbox

CHAOS = dict(latency_ms=2, jitter_ms=4, error_before=0.05, rate_limit=0.05, retry_after_s=0.05, reset_before=0.01,
             drop_after_apply=0.02, error_after_apply=0.01)
STATUS_NEEDED = {"refund": "order_confirmed", "cancel": "order_placed", "confirm": "order_placed", "update": "order_placed"}


def build_input(operation: str, store, n: int) -> tuple[pd.DataFrame, dict]:
    """The input rows, and per order the final state the run intends."""
    orders = [store.find(i) for i in store.ids()]
    chosen = [o for o in orders if o["status"] == STATUS_NEEDED[operation] and not o["refunds"]][:n]
    assert len(chosen) == n, f"need {n} {STATUS_NEEDED[operation]} orders, the sandbox has {len(chosen)}"
    ids = [o["backd_order_id"] for o in chosen]
    merchant = [o["merchant_order_id"] for o in chosen]
    if operation == "refund":
        amounts = [str((o["order_total"] / 3).quantize(Decimal("0.01"))) for o in chosen]
        frame = pd.DataFrame({"backd_order_id": ids, "merchant_order_id": merchant, "refund_amount": amounts})
        intended = {i: (lambda o, a=Decimal(a): [r["amount"] for r in o["refunds"]] == [a] and o["refunds"][0]["status"] == "draft")
                    for i, a in zip(ids, amounts)}
    elif operation == "update":
        totals = [str(o["order_total"] - Decimal("1.11")) for o in chosen]
        frame = pd.DataFrame({"backd_order_id": ids, "merchant_order_id": merchant, "order_total": totals, "merchant_order_status": "shipped"})
        intended = {i: (lambda o, t=Decimal(t): o["order_total"] == t and o["merchant_order_status"] == "shipped") for i, t in zip(ids, totals)}
    else:
        frame = pd.DataFrame({"backd_order_id": ids})
        final = "order_canceled" if operation == "cancel" else "order_confirmed"
        intended = {i: (lambda o, s=final: o["status"] == s) for i in ids}
    return frame, intended


def run_chaos(operation: str, rows: int, tmp_path, seed: int) -> dict:
    endpoint = bulk.OPERATIONS[operation].endpoint
    with run_sandbox(orders=int(rows * 3.6) + 50, seed=seed) as sb:
        frame, intended = build_input(operation, sb.store, rows)
        journal = Journal(tmp_path / f"{operation}.sqlite")
        sb.set_faults(FaultProfile(**CHAOS, seed=seed))
        client = sb.client(backoff_initial_s=0.005, timeout=(1.0, 1.0))  # the settle window is at least the read timeout
        result = bulk.run_operation(client, operation, frame, execute=True, journal=journal, progress=False, settle_window_s=1.0)
        sb.set_faults(None)
        requests, faults = len(sb.requests), dict(sb.stats()["faults"])
        writes = sb.writes_per_order(endpoint)
        violations = _violations(frame, result, intended, writes, journal, sb.store)
        writes_before = len(sb.write_requests())
        rerun = bulk.run_operation(sb.client(), operation, frame, execute=True, journal=journal, progress=False)
        if len(sb.write_requests()) != writes_before or not rerun.outcome.eq("already_done").all():
            violations.append("the re-run was not all already_done with zero writes")
    outcomes = {k: v for k, v in result.outcome.value_counts().items() if v}
    return {"operation": operation, "rows": rows, "requests": requests, "faults": faults, "outcomes": outcomes,
            "double_writes": sum(1 for v in writes.values() if v > 1), "violations": violations}


def _violations(frame, result, intended, writes, journal, store) -> list[str]:
    found = []
    if len(result) != len(frame) or result.index.tolist() != frame.index.tolist():
        found.append("rows lost or reordered")
    not_done = result[result.outcome != "done"]
    found += [f"row {i}: {r.outcome} ({r.message})" for i, r in not_done.iterrows()]
    found += [f"{i}: final state is not the intended one" for i, check in intended.items() if not check(store.find(i))]
    found += [f"{i}: {n} accepted writes" for i, n in writes.items() if n != 1]
    found += [f"{i}: never written" for i in intended if writes[i] == 0]
    actions = journal.actions(result.attrs["backd_result"]["run_id"])
    if actions.outcome.tolist() != result.outcome.astype(str).tolist():
        found.append("the journal and the result frame disagree")
    return found


def _print(report: dict, capsys) -> None:
    with capsys.disabled():
        print(f"\nchaos {report['operation']:7s} rows={report['rows']} requests={report['requests']} "
              f"faults={report['faults']} outcomes={report['outcomes']} double_writes={report['double_writes']} "
              f"invariant_violations={len(report['violations'])}")


@pytest.mark.parametrize("operation", list(STATUS_NEEDED))
def test_chaos_short_profile(operation, tmp_path, capsys):
    report = run_chaos(operation, 300, tmp_path, seed=101)
    _print(report, capsys)
    assert sum(report["faults"].values()) > 30
    assert report["violations"] == [] and report["double_writes"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("operation", list(STATUS_NEEDED))
def test_chaos_long_profile(operation, tmp_path, capsys):
    report = run_chaos(operation, 2000, tmp_path, seed=202)
    _print(report, capsys)
    assert report["violations"] == [] and report["double_writes"] == 0


def test_fault_mix_matches_the_profile(tmp_path):
    """The injected mix is what the profile says (so the figures above mean what they claim)."""
    with run_sandbox(orders=50) as sb:
        sb.set_faults(FaultProfile(**CHAOS, seed=5))
        counts: Counter[str] = Counter()
        for _ in range(4000):
            plan = sb.app.faults.draw("refund")
            counts[plan.before or plan.after or "none"] += 1
    share = {k: v / 4000 for k, v in counts.items()}
    assert abs(share["error_before"] - 0.05) < 0.015 and abs(share["rate_limit"] - 0.05) < 0.015
    assert abs(share["drop_after_apply"] - 0.02 * 0.89) < 0.01 and share["error_after_apply"] > 0.003
