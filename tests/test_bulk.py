"""Bulk operations against the sandbox over real HTTP: dry runs, faults, idempotent re-runs, every row accounted for."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

import backd_ops
from backd_ops import bulk
from backd_ops.errors import InputError, ProductionGuardError
from backd_ops.journal import Journal
from backd_ops.operations import OPERATIONS
from backd_ops.plans import request_key
from backd_ops.sandbox import FaultProfile, run_sandbox

FAULTS = FaultProfile(latency_ms=2, jitter_ms=3, error_before=0.08, rate_limit=0.08, retry_after_s=0.02,
                      drop_after_apply=0.08, error_after_apply=0.05, reset_before=0.03, seed=11)


@pytest.fixture
def live():
    """A sandbox on real time (so the planner's clock and the sandbox's agree) with 400 demo orders."""
    with run_sandbox(orders=400) as sb:
        yield sb


@pytest.fixture
def live_client(live):
    """Short timeouts keep the settle window (at least the read timeout) short under injected faults."""
    return live.client(backoff_initial_s=0.005, timeout=(1.0, 1.0))


@pytest.fixture
def journal(tmp_path):
    return Journal(tmp_path / "journal.sqlite")


def orders_frame(client, live):
    return bulk.find_orders(client, live.store.ids(), progress=False)


def refund_input(orders: pd.DataFrame, n: int = 60) -> pd.DataFrame:
    confirmed = orders[(orders.status == "order_confirmed") & orders.active_refund_amount.isna()].head(n)
    return pd.DataFrame({
        "backd_order_id": confirmed.backd_order_id.tolist(),
        "merchant_order_id": confirmed.merchant_order_id.tolist(),
        "refund_amount": ["1.01"] * len(confirmed),
    })


def writes(sandbox) -> list[dict]:
    return sandbox.write_requests()


# -- dry runs --------------------------------------------------------------------------------------------------------
def test_dry_run_reads_everything_and_writes_nothing(live, live_client):
    orders = orders_frame(live_client, live)
    frame = refund_input(orders, 20)
    frame.loc[100] = ["BO-UNKNOWN", "M-1", "5.00"]
    frame.loc[101] = [frame.backd_order_id[0], frame.merchant_order_id[0], "2.50"]  # duplicate order
    frame.loc[2, "refund_amount"] = "1000000000"  # over the refundable amount
    before = len(live.requests)
    plan = backd_ops.refund_orders(live_client, frame, progress=False)
    assert writes(live) == []
    assert len(live.requests) > before  # the plan is real: it read the orders
    assert plan.index.tolist() == frame.index.tolist()
    assert plan.loc[100, "outcome"] == "invalid" and "Backd has no order BO-UNKNOWN" in plan.loc[100, "message"]
    assert plan.loc[101, "outcome"] == plan.loc[0, "outcome"] == "invalid"
    assert "row 101, column backd_order_id" in plan.loc[101, "message"] and "also appears in row 0" in plan.loc[101, "message"]
    assert plan.loc[2, "column"] == "refund_amount" and "exceeds the refundable" in plan.loc[2, "message"]
    assert (plan.loc[3:19, "outcome"] == "planned").all()
    summary = plan.backd.summary()
    assert summary.loc["planned", "rows"] == 18 and summary.loc["planned", "amount"] == Decimal("18.18")


def test_dry_run_tells_replacement_and_locked_refunds(live, live_client):
    orders = orders_frame(live_client, live)
    with_active = orders[(orders.status == "order_confirmed") & orders.active_refund_amount.notna()]
    now = pd.Timestamp.now(tz="America/Chicago")
    unlocked = with_active[with_active.active_refund_locked_at > now].iloc[0]
    locked = with_active[with_active.active_refund_locked_at <= now].iloc[0]
    frame = pd.DataFrame({"backd_order_id": [unlocked.backd_order_id, locked.backd_order_id],
                          "merchant_order_id": [unlocked.merchant_order_id, locked.merchant_order_id],
                          "refund_amount": ["3.00", "3.00"]})
    plan = backd_ops.refund_orders(live_client, frame, progress=False)
    assert plan.outcome.tolist() == ["planned", "invalid"]
    assert "replaces the active draft refund" in plan.message[0]
    assert "locked at" in plan.message[1]


# -- execute with faults -------------------------------------------------------------------------------------------
def test_execute_under_faults_applies_each_row_exactly_once(live, live_client, journal):
    orders = orders_frame(live_client, live)
    frame = refund_input(orders, 80)
    frame.loc[500] = ["BO-UNKNOWN", "M-1", "5.00"]
    frame.loc[501] = [orders.backd_order_id[0], orders.merchant_order_id[0], "-4"]
    live.set_faults(FAULTS)
    result = backd_ops.refund_orders(live_client, frame, execute=True, journal=journal, progress=False, settle_window_s=1.0,
                                     allow_partial=True)  # two invalid rows: the others are executed only when asked
    valid = frame.backd_order_id[:80].tolist()
    assert result.loc[frame.index[:80], "outcome"].eq("done").all(), result[result.outcome != "done"].message.tolist()
    assert result.loc[[500, 501], "outcome"].tolist() == ["invalid", "invalid"]
    per_order = live.writes_per_order("refund")
    assert {order_id: per_order[order_id] for order_id in valid} == {order_id: 1 for order_id in valid}
    assert {w["backd_order_id"] for w in writes(live)} <= set(valid)  # invalid rows never reach the server
    faults = live.stats()["faults"]
    assert faults.get("drop_after_apply", 0) + faults.get("error_after_apply", 0) > 0  # the ambiguous case happened
    for order_id in valid:
        assert live.store.find(order_id)["refunds"][-1]["amount"] == Decimal("1.01")

    live.set_faults(None)
    writes_before = len(writes(live))
    again = backd_ops.refund_orders(live_client, frame, execute=True, journal=journal, progress=False, allow_partial=True)
    assert len(writes(live)) == writes_before
    assert again.loc[frame.index[:80], "outcome"].eq("already_done").all()
    first_run = result.attrs["backd_result"]["run_id"]
    assert again.loc[frame.index[:80], "message"].str.endswith(f"(done by run {first_run})").all()


def test_journal_and_result_agree(live, live_client, journal):
    frame = refund_input(orders_frame(live_client, live), 15)
    frame.loc[99] = ["", "M-1", "1.00"]
    result = backd_ops.refund_orders(live_client, frame, execute=True, journal=journal, progress=False, allow_partial=True)
    actions = journal.actions(result.run_id.iloc[0])
    assert len(actions) == len(frame)
    assert actions.outcome.tolist() == result.outcome.astype(str).tolist()
    assert actions.row_label.tolist() == [str(i) for i in frame.index]
    assert (actions.loc[actions.outcome == "done", "intent_at"] <= actions.loc[actions.outcome == "done", "finished_at"]).all()


@pytest.mark.parametrize("operation", ["cancel", "confirm", "place", "delete_refund", "update"])
def test_every_operation_executes_once_and_reruns_as_already_done(live, live_client, journal, operation):
    orders = orders_frame(live_client, live)
    frame = _input_for(operation, orders)
    live.set_faults(FAULTS)
    result = bulk.run_operation(live_client, operation, frame, execute=True, journal=journal, progress=False, settle_window_s=1.0)
    assert result.outcome.eq("done").all(), result[result.outcome != "done"].message.tolist()
    endpoint = bulk.OPERATIONS[operation].endpoint
    assert set(live.writes_per_order(endpoint).values()) == {1}
    live.set_faults(None)
    count = len(writes(live))
    fresh_journal = Journal(journal.path + ".other")  # no journal help: the order's state alone says already done
    rerun = bulk.run_operation(live_client, operation, frame, execute=True, journal=fresh_journal, progress=False)
    assert rerun.outcome.eq("already_done").all(), rerun.message.tolist()
    assert len(writes(live)) == count


def _input_for(operation: str, orders: pd.DataFrame) -> pd.DataFrame:
    by_status = lambda s: orders[orders.status == s].head(12)  # noqa: E731
    if operation == "cancel":
        return pd.DataFrame({"backd_order_id": by_status("order_placed").backd_order_id})
    if operation == "confirm":
        placed = by_status("order_placed")
        return pd.DataFrame({"backd_order_id": placed.backd_order_id, "merchant_order_id": placed.merchant_order_id})
    if operation == "place":
        terms = by_status("terms_selected")
        return pd.DataFrame({"backd_order_id": terms.backd_order_id, "merchant_order_id": "NEW-" + terms.merchant_order_id})
    if operation == "delete_refund":
        now = pd.Timestamp.now(tz="America/Chicago")
        active = orders[(orders.status == "order_confirmed") & (orders.active_refund_locked_at > now)].head(12)
        return pd.DataFrame({"backd_order_id": active.backd_order_id, "merchant_order_id": active.merchant_order_id})
    placed = by_status("order_placed")
    return pd.DataFrame({"backd_order_id": placed.backd_order_id, "merchant_order_id": placed.merchant_order_id,
                         "order_total": [str(Decimal(str(t)) - 1) for t in placed.order_total], "merchant_order_status": "shipped"})


def test_already_done_is_not_an_error(live, live_client):
    orders = orders_frame(live_client, live)
    canceled = orders[orders.status == "order_canceled"].head(3)
    confirmed = orders[orders.status == "order_confirmed"].head(3)
    active = orders[orders.active_refund_amount.notna() & (orders.status == "order_confirmed")].head(1)
    assert backd_ops.cancel_orders(live_client, canceled.backd_order_id.tolist(), progress=False).outcome.eq("already_done").all()
    assert backd_ops.confirm_orders(live_client, confirmed.backd_order_id, progress=False).outcome.eq("already_done").all()
    same = pd.DataFrame({"backd_order_id": active.backd_order_id, "merchant_order_id": active.merchant_order_id,
                         "refund_amount": [str(a) for a in active.active_refund_amount]})
    assert backd_ops.refund_orders(live_client, same, progress=False).outcome.tolist() == ["already_done"]
    assert writes(live) == []


def test_wrong_state_rows_are_invalid_and_never_sent(live, live_client, journal):
    orders = orders_frame(live_client, live)
    wrong = orders[orders.status.isin(["order_confirmed", "terms_selected"])].head(10)
    result = backd_ops.cancel_orders(live_client, wrong.backd_order_id, execute=True, journal=journal, progress=False)
    assert result.outcome.eq("invalid").all() and result.message.str.contains("needs status order_placed").all()
    assert writes(live) == []


def test_uncertain_prior_intent_is_settled_by_reading_back(live, live_client, journal):
    """A run killed between 'intent written' and 'outcome written' resumes without a second write."""
    frame = refund_input(orders_frame(live_client, live), 4)
    plan = backd_ops.refund_orders(live_client, frame, progress=False)
    claim = journal.claim(plan.backd.plan_id, live_client.account)
    journal.start_run(claim, operation="refund", account=live_client.account, rows=len(plan))
    first = frame.iloc[0]
    journal.lease(claim, [first.backd_order_id])
    assert journal.record_intent(claim, 0, operation="refund", backd_order_id=first.backd_order_id, amount="1.01",
                          request={}, request_key=request_key(OPERATIONS["refund"], {**first.to_dict(), "refund_amount": Decimal("1.01")}),
                          status_before="order_confirmed")
    live.script_faults("refund", ["drop_after_apply"])
    with pytest.raises(backd_ops.NetworkError):  # the write lands, the answer is lost, the process "dies"
        live.client(max_retries=0).refund(first.backd_order_id, first.merchant_order_id, first.refund_amount)
    journal.release(claim)  # what the dead process's claim amounts to: nothing holds the plan any more
    resumed = backd_ops.execute_plan(live_client, plan, journal=journal, progress=False, settle_window_s=1.0)
    assert resumed.outcome.tolist() == ["already_done", "done", "done", "done"]
    assert resumed.message[0].endswith(f"done by run {claim.run_id}")
    assert set(live.writes_per_order("refund").values()) == {1}


# -- guards and inputs --------------------------------------------------------------------------------------------
def test_production_execute_needs_explicit_confirmation(live, journal, monkeypatch):
    monkeypatch.delenv("BACKD_CONFIRM_PRODUCTION", raising=False)
    prod = backd_ops.BackdClient(live.public_key, live.env()["BACKD_SECRET_KEY"], environment="production", base_url=live.base_url)
    frame = pd.DataFrame({"backd_order_id": ["BO-DEMO-000003"]})
    with pytest.raises(ProductionGuardError, match="confirm_production=True"):
        backd_ops.cancel_orders(prod, frame, execute=True, journal=journal, progress=False)
    assert live.requests == []
    assert backd_ops.cancel_orders(prod, frame, progress=False).outcome.notna().all()  # a dry run is always allowed
    monkeypatch.setenv("BACKD_CONFIRM_PRODUCTION", "yes")
    backd_ops.cancel_orders(prod, frame, execute=True, journal=journal, progress=False)


def test_missing_column_names_it_and_sends_nothing(live, live_client):
    with pytest.raises(InputError, match="missing column refund_amount; the input has 2 columns: 'backd_order_id', 'merchant_order_id'"):
        backd_ops.refund_orders(live_client, pd.DataFrame({"backd_order_id": ["BO-1"], "merchant_order_id": ["M-1"]}))
    assert live.requests == []


def test_headers_are_matched_forgivingly_and_input_is_not_mutated(live, live_client):
    frame = pd.DataFrame({" Backd Order ID ": ["BO-DEMO-000001"], "Merchant-Order-Id": ["M-100001"], "Refund Amount": [1.5]})
    original = frame.copy()
    plan = backd_ops.refund_orders(live_client, frame, progress=False)
    assert plan.refund_amount[0] == Decimal("1.50")
    pd.testing.assert_frame_equal(frame, original)


def test_reads_csv_with_spreadsheet_row_numbers(live, live_client, tmp_path):
    path = tmp_path / "refunds.csv"
    path.write_text("backd_order_id,merchant_order_id,refund_amount\nBO-DEMO-000001,M-100001,1.00\nBO-DEMO-000002,M-100002,1.005\n")
    plan = backd_ops.refund_orders(live_client, path, progress=False)
    assert plan.index.tolist() == [2, 3]
    assert plan.loc[2, "outcome"] == "planned" and pd.notna(plan.loc[2, "locked_at"])  # aligned on the file's row numbers
    assert plan.loc[3, "message"] == "row 3, column refund_amount: '1.005' has more than 2 decimals"


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        (None, "is missing"),
        (float("nan"), "is missing"),
        ("", "is missing"),
        ("abc", "is not a number"),
        ("-5", "is negative"),
        ("0", "must be greater than 0"),
        ("1.001", "more than 2 decimals"),
        (float("inf"), "not a finite amount"),
        ("1e30", "scientific notation"),
        ("99999999999999", "too large"),
        (True, "is not an amount"),
    ],
)
def test_bad_amounts_are_invalid_with_row_and_column(live, live_client, cell, reason):
    frame = pd.DataFrame({"backd_order_id": ["BO-DEMO-000001"], "merchant_order_id": ["M-100001"], "refund_amount": [cell]}, index=[7])
    plan = backd_ops.refund_orders(live_client, frame, progress=False)
    assert plan.outcome[7] == "invalid" and plan.column[7] == "refund_amount"
    assert plan.message[7].startswith("row 7, column refund_amount:") and reason in plan.message[7]
    assert live.requests == []


@pytest.mark.parametrize("operation", list(bulk.OPERATIONS))
def test_bad_input_matrix_for_every_operation(live, live_client, operation):
    op = bulk.OPERATIONS[operation]
    with pytest.raises(InputError, match="missing column"):
        bulk.run_operation(live_client, operation, pd.DataFrame({"something_else": [1]}), progress=False)
    empty = bulk.run_operation(live_client, operation, pd.DataFrame(columns=list(op.required)), progress=False)
    assert empty.empty and list(empty.columns[: len(op.columns)]) == list(op.columns)
    hostile = pd.DataFrame({c: ["../../etc/passwd", "BO 1", "=HYPERLINK(\"x\")", "\x00", "BO-ok", "BO-ok"] for c in op.required})
    for column in op.amounts:
        hostile[column] = ["1", "2", "3", "4", "nan", "5"]
    plan = bulk.run_operation(live_client, operation, hostile, progress=False)
    assert plan.outcome.eq("invalid").all()
    assert writes(live) == [] and live.requests == []


def test_huge_frame_of_invalid_rows_is_fast_and_sends_nothing(live, live_client):
    import time

    n = 100_000
    frame = pd.DataFrame({"backd_order_id": [f"BO-{i}" for i in range(n)], "merchant_order_id": "M-1", "refund_amount": "-1"})
    started = time.perf_counter()
    plan = backd_ops.refund_orders(live_client, frame, progress=False)
    assert len(plan) == n and plan.outcome.eq("invalid").all()
    assert time.perf_counter() - started < 30
    assert live.requests == []


def test_find_orders_keeps_input_order_and_reports_errors(live, live_client):
    ids = ["BO-DEMO-000003", "BO-NOPE", "BO-DEMO-000001", "BO-DEMO-000003"]
    found = backd_ops.find_orders(live_client, ids, progress=False)
    assert found.backd_order_id.tolist() == ids
    assert found.error[1].startswith("NotFoundError") and found.error.isna().sum() == 3
    assert str(found.order_total.dtype).startswith("decimal128") and str(found.create_date.dtype).startswith("datetime64")
    assert sum(r["endpoint"] == "find_order" for r in live.requests) == 3  # duplicates read once


def test_max_rps_spaces_the_writes(live, live_client, journal):
    """``max_rps`` paces every request of the call: the plan's reads, the reads before writing and the writes."""
    import time

    frame = refund_input(orders_frame(live_client, live), 10)
    before = len(live.requests)
    started = time.monotonic()
    backd_ops.refund_orders(live_client, frame, execute=True, journal=journal, progress=False, max_rps=20)
    writes_at = sorted(r["at"] for r in live.requests if r["method"] == "POST")
    assert len(writes_at) == 10 and writes_at[-1] - writes_at[0] >= 9 / 20 * 0.9
    assert time.monotonic() - started >= 0.4
    every = sorted(r["at"] for r in live.requests[before:])
    assert len(every) == 30  # 10 plan reads, 10 reads before writing, 10 writes
    assert all(every[i + 20] - every[i] >= 20 / 20 * 0.9 for i in range(len(every) - 20))  # never 21 starts in a second
    assert live_client.max_rps is None  # the call's cap is lifted afterwards


def test_one_429_pauses_every_worker(live):
    from backd_ops.sandbox import FaultProfile

    client = live.client()
    live.set_faults(FaultProfile(retry_after_s=0.5), endpoint="find_order")
    live.script_faults("find_order", ["rate_limit"])
    bulk.find_orders(client, live.store.ids()[:60], progress=False, max_workers=8)
    limited = next(r for r in live.requests if r["fault"] == "rate_limit")
    # Up to one request per worker was in flight, and one more per worker may start before the 429's answer arrives.
    later = [r for r in live.requests if r["seq"] > limited["seq"] + 2 * 8]
    assert later and min(r["at"] for r in later) >= limited["at"] + 0.45


def test_unsettled_write_is_uncertain_then_settled_by_a_rerun(live, journal):
    client = live.client(max_retries=0, backoff_initial_s=0.001, timeout=(0.5, 0.5))
    frame = refund_input(orders_frame(live.client(), live), 1)
    live.script_faults("refund", ["drop_after_apply"])
    live.script_faults("find_order", [None, None])  # the plan's read and the read before writing; then every read-back fails
    live.set_faults(FaultProfile(error_before=1.0), endpoint="find_order")
    first = backd_ops.refund_orders(client, frame, execute=True, journal=journal, progress=False, settle_window_s=0.5)
    live.set_faults(None, endpoint="find_order")
    assert first.outcome.tolist() == ["uncertain"] and "run the plan again to settle it" in first.message[0]
    assert not first.backd.all_settled
    again = backd_ops.refund_orders(client, frame, execute=True, journal=journal, progress=False)
    assert again.outcome.tolist() == ["already_done"]
    assert set(live.writes_per_order("refund").values()) == {1}
