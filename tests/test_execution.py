"""execute_plan over real HTTP: exactly the approved rows, drift, Backd over the journal, settling, claims, undo.

The tests named ``test_issue10_*`` reproduce the eight defects of the plans issue; each failed on the
``main`` that had no plans, and passes here.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

import backd_ops
from backd_ops import ApprovalError, ApprovalPolicy, ConcurrentRunError, PlanAccountError, PlanError
from backd_ops.config import Account
from backd_ops.journal import Journal
from backd_ops.sandbox import FaultProfile, run_sandbox

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def live():
    """A sandbox on real time (the planner's clock and the sandbox's agree) with 200 demo orders."""
    with run_sandbox(orders=200) as sb:
        yield sb


@pytest.fixture
def client(live):
    return live.client(backoff_initial_s=0.005, timeout=(1.0, 1.0))


@pytest.fixture
def journal(tmp_path):
    return tmp_path / "journal.sqlite"


def confirmed(live, n: int, *, skip: int = 0) -> list[dict]:
    orders = [live.store.find(i) for i in live.store.ids()]
    return [o for o in orders if o["status"] == "order_confirmed" and not o["refunds"]][skip:skip + n]


def refunds(orders: list[dict], amount: str = "5.00") -> pd.DataFrame:
    return pd.DataFrame({"backd_order_id": [o["backd_order_id"] for o in orders],
                         "merchant_order_id": [o["merchant_order_id"] for o in orders], "refund_amount": amount})


def refund_history(live, order_id: str) -> list[tuple[str, str]]:
    return [(str(r["amount"]), r["status"]) for r in live.store.find(order_id)["refunds"]]


# -- the eight reproductions ---------------------------------------------------------------------------------------------
def test_issue10_1_the_approved_plan_runs_not_a_fresh_one(live, client, journal):
    """Planned 2 of 3 (the third was not confirmed); it is confirmed meanwhile; executing the plan sends 2, not 3."""
    chosen = confirmed(live, 2)
    placed = next(i for i in live.store.ids() if live.store.find(i)["status"] == "order_placed")
    frame = refunds(chosen, "40.00")
    frame.loc[2] = [placed, live.store.find(placed)["merchant_order_id"], "40.00"]
    plan = backd_ops.refund_orders(client, frame, progress=False)
    assert plan.backd.sentence().startswith("Refund 2 orders, $80.00") and "Not sent: 1 invalid" in plan.backd.sentence()
    client.confirm_order(placed)  # a colleague, meanwhile
    result = backd_ops.execute_plan(client, plan, journal=journal, progress=False)
    assert result.outcome.tolist() == ["done", "done", "invalid"]
    assert dict(live.writes_per_order("refund")) == {o["backd_order_id"]: 1 for o in chosen}


def test_issue10_2_backd_is_the_truth_and_the_journal_evidence(live, client, journal):
    """Our refund deleted outside the tool: the dry run and the execute agree (drifted, naming the run); nothing sent."""
    chosen = confirmed(live, 3)
    first = backd_ops.refund_orders(client, refunds(chosen), execute=True, journal=journal, progress=False)
    run_id = first.attrs["backd_result"]["run_id"]
    client.delete_refund(chosen[0]["backd_order_id"], chosen[0]["merchant_order_id"])  # someone, outside the tool
    writes = len(live.write_requests())
    dry = backd_ops.refund_orders(client, refunds(chosen), journal=journal, progress=False)
    executed = backd_ops.refund_orders(client, refunds(chosen), execute=True, journal=journal, progress=False)
    for result in (dry, executed):
        assert result.outcome.tolist() == ["drifted", "already_done", "already_done"]
        assert f"run {run_id} did this" in result.message[0] and "no longer shows it" in result.message[0]
    assert len(live.write_requests()) == writes
    again = backd_ops.refund_orders(client, refunds(chosen), execute=True, journal=journal, progress=False, resend=True)
    assert again.outcome.tolist() == ["done", "already_done", "already_done"]  # sending again is a decision, made explicitly
    assert refund_history(live, chosen[0]["backd_order_id"]) == [("5.00", "declined"), ("5.00", "draft")]


def test_issue10_2_a_reset_sandbox_holds_none_of_the_refunds(live, client, journal):
    chosen = confirmed(live, 3)
    backd_ops.refund_orders(client, refunds(chosen), execute=True, journal=journal, progress=False)
    live.reset()  # same URL, same keys, same file, same journal: Backd holds none of the refunds now
    plan = backd_ops.refund_orders(client, refunds(chosen), journal=journal, progress=False)
    assert plan.outcome.eq("drifted").all() and plan.message.str.contains("no longer shows it").all()
    assert not plan.outcome.eq("already_done").any()


def test_issue10_2_the_account_includes_the_base_url(live, client, journal):
    chosen = confirmed(live, 2)
    backd_ops.refund_orders(client, refunds(chosen), execute=True, journal=journal, progress=False)
    with run_sandbox(orders=200) as other:  # the same keys and orders, another base URL: another account's records
        plan = backd_ops.refund_orders(other.client(), refunds(chosen), journal=journal, progress=False)
        assert plan.outcome.eq("planned").all(), plan.message.tolist()


def test_issue10_3_a_decimal_comma_is_refused_not_multiplied(live, client):
    frame = refunds(confirmed(live, 2), "12,50")
    frame.loc[1, "refund_amount"] = "1,2,3"
    plan = backd_ops.refund_orders(client, frame, progress=False)
    assert plan.outcome.eq("invalid").all() and plan.column.eq("refund_amount").all()
    assert plan.message[0] == ("row 0, column refund_amount: '12,50' has a comma that is not a thousands separator; "
                               'if the file uses a decimal comma, pass decimal=","')
    assert live.write_requests() == [] and not any(r["endpoint"] == "find_order" for r in live.requests)
    comma = backd_ops.refund_orders(client, refunds(confirmed(live, 1), "1.234,50"), decimal=",", progress=False)
    assert comma.refund_amount[0] == Decimal("1234.50") and comma.amount[0] == Decimal("1234.50")


@pytest.mark.parametrize("url", [
    "https://service.bnpl.backd.com:443/v1/backd/bnpl/api",
    "https://SERVICE.BNPL.BACKD.COM/v1/backd/bnpl/api",
    "HTTPS://service.bnpl.backd.com/v1/backd/bnpl/api",
    "https://service.bnpl.backd.com./v1/backd/bnpl/api",
    "https://service.bnpl.backd.com/v1/backd/bnpl/api/",
])
def test_issue10_4_production_is_recognised_however_the_url_is_written(url):
    with pytest.raises(backd_ops.ConfigurationError, match="production host"):
        backd_ops.BackdClient("pk", "sk", environment="sandbox", base_url=url)
    production = backd_ops.BackdClient("pk", "sk", environment="production", base_url=url)
    assert production.is_production and production.account.base_url == "https://service.bnpl.backd.com/v1/backd/bnpl/api"
    with pytest.raises(backd_ops.ProductionGuardError):  # checked before any request (this host is unreachable here)
        backd_ops.cancel_orders(production, ["BO-1"], execute=True, progress=False)


def test_issue10_5_a_write_slower_than_the_read_timeout_is_not_sent_twice(live, journal):
    client = live.client(timeout=(1.0, 0.3), backoff_initial_s=0.005)
    chosen = confirmed(live, 4)
    live.set_faults(FaultProfile(slow=1.0, slow_ms=1200), endpoint="refund")  # Backd takes 1.2 s; we wait 0.3 s
    result = backd_ops.refund_orders(client, refunds(chosen), execute=True, journal=journal, progress=False)
    assert result.outcome.eq("done").all(), result.message.tolist()
    assert result.message.str.contains("confirmed by reading the order back after RequestTimeout").all()
    for order in chosen:
        assert refund_history(live, order["backd_order_id"]) == [("5.00", "draft")]
    assert set(live.writes_per_order("refund").values()) == {1}


def test_issue10_6_two_processes_executing_the_same_file_write_once(tmp_path):
    with run_sandbox(orders=200) as sb:
        sb.set_faults(FaultProfile(slow=1.0, slow_ms=4000), endpoint="refund")  # the first's writes are in flight a while
        source, journal = tmp_path / "refunds.csv", tmp_path / "journal.sqlite"
        refunds(confirmed(sb, 12)).to_csv(source, index=False)
        env = {**os.environ, **sb.env(), "PYTHONPATH": str(ROOT), "BACKD_OPS_JOURNAL": str(journal)}
        command = [sys.executable, "-m", "backd_ops.cli", "refund", "--file", str(source), "--execute", "--progress", "off"]
        first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for_claim(journal)
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        first.communicate(timeout=120)
        assert first.returncode == 0
        assert second.returncode == 3 and "is being executed right now by pid" in second.stderr, second.stderr
        assert set(sb.writes_per_order("refund").values()) == {1} and len(sb.writes_per_order("refund")) == 12


def _wait_for_claim(journal: Path, timeout_s: float = 60) -> None:

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if journal.is_file():
            with sqlite3.connect(journal) as db:
                if db.execute("SELECT name FROM sqlite_master WHERE name = 'claims'").fetchone() and \
                        db.execute("SELECT count(*) FROM claims").fetchone()[0]:
                    return
        time.sleep(0.05)
    raise TimeoutError("the first executor never claimed the plan")


def test_issue10_7_a_processed_refund_is_not_sent_again_after_the_file_is_edited(live, client, journal):
    chosen = confirmed(live, 3)
    backd_ops.refund_orders(client, refunds(chosen[:2]), execute=True, journal=journal, progress=False)
    for order in chosen[:2]:  # Backd processed the refund; the order still says order_confirmed
        live.store.process_active_refund(order["backd_order_id"], order_status="order_confirmed")
    edited = refunds(chosen)  # a row added to the file
    result = backd_ops.refund_orders(client, edited, execute=True, journal=journal, progress=False)
    assert result.outcome.tolist() == ["already_done", "already_done", "done"]
    assert "a processed refund of $5.00 exists" in result.message[0]
    assert dict(live.writes_per_order("refund")) == {o["backd_order_id"]: 1 for o in chosen}


def test_issue10_8_the_sentence_states_replacements_and_net_money(live, client):
    chosen = confirmed(live, 3)
    client.refund(chosen[0]["backd_order_id"], chosen[0]["merchant_order_id"], "500.00")
    plan = backd_ops.refund_orders(client, refunds(chosen, "20.00"), progress=False)
    assert plan.backd.sentence().startswith("Refund 3 orders, $60.00 (replacing 1 unlocked request of $500.00: net -$440.00), locks at 17:00")


# -- plans as artifacts -----------------------------------------------------------------------------------------------------
def test_a_plan_is_saved_loaded_and_verified(live, client, tmp_path):
    plan = backd_ops.refund_orders(client, refunds(confirmed(live, 3)), progress=False)
    path = plan.backd.save(tmp_path / "plan.json")
    text = path.read_text()
    assert live.env()["BACKD_SECRET_KEY"] not in text and '"public_key": "pk_sandbox_demo"' in text
    loaded = backd_ops.load_plan(path)
    assert loaded.backd.plan_id == plan.backd.plan_id and loaded.backd.info.created_by == plan.backd.info.created_by
    pd.testing.assert_frame_equal(loaded.drop(columns="message"), plan.drop(columns="message"), check_index_type=False)
    edited = text.replace('"refund_amount": "5.00"', '"refund_amount": "50.00"', 1)
    (tmp_path / "edited.json").write_text(edited)
    with pytest.raises(PlanError, match="changed after it was made"):
        backd_ops.load_plan(tmp_path / "edited.json")


def test_a_changed_or_filtered_plan_frame_is_refused_before_any_request(live, client, journal):
    plan = backd_ops.refund_orders(client, refunds(confirmed(live, 3)), progress=False)
    seen = len(live.requests)
    edited = plan.copy()
    edited.loc[0, "refund_amount"] = Decimal("9.00")
    for changed in (plan[plan.index != 1], edited, plan.iloc[::-1]):
        with pytest.raises(PlanError, match="changed after it was made"):
            backd_ops.execute_plan(client, changed, journal=journal, progress=False)
    with pytest.raises(PlanError, match="not a plan"):
        backd_ops.execute_plan(client, pd.DataFrame(plan.to_dict()), journal=journal, progress=False)
    assert len(live.requests) == seen and live.write_requests() == []


def test_a_plan_for_another_account_is_refused(live, client, journal):
    plan = backd_ops.refund_orders(client, refunds(confirmed(live, 1)), progress=False)
    with run_sandbox(orders=10) as other:
        with pytest.raises(PlanAccountError, match="was made for sandbox at 127.0.0.1"):
            backd_ops.execute_plan(other.client(), plan, journal=journal, progress=False)
        assert other.requests == []


def test_the_plan_id_is_the_content(live, client):
    frame = refunds(confirmed(live, 2))
    first = backd_ops.refund_orders(client, frame, progress=False)
    assert backd_ops.refund_orders(client, frame, progress=False).backd.plan_id == first.backd.plan_id
    client.refund(frame.backd_order_id[0], frame.merchant_order_id[0], "1.00")  # the state it was planned against changed
    assert backd_ops.refund_orders(client, frame, progress=False).backd.plan_id != first.backd.plan_id


# -- drift ----------------------------------------------------------------------------------------------------------------
def test_drift_says_what_changed_and_sends_nothing_for_that_row(live, client, journal):
    chosen = confirmed(live, 3)
    plan = backd_ops.refund_orders(client, refunds(chosen), progress=False)
    client.refund(chosen[1]["backd_order_id"], chosen[1]["merchant_order_id"], "10.00")
    result = backd_ops.execute_plan(client, plan, journal=journal, progress=False)
    assert result.outcome.tolist() == ["done", "drifted", "done"]
    assert "active refund is now $10.00 (was none)" in result.message[1]
    assert refund_history(live, chosen[1]["backd_order_id"]) == [("10.00", "draft")]


def test_a_refund_plan_made_before_the_lock_is_drifted_after_it(tmp_path):
    from datetime import datetime

    from backd_ops.locking import CHICAGO

    before = datetime(2026, 4, 14, 16, 55, tzinfo=CHICAGO)
    with run_sandbox(orders=80, now=before) as sb:
        client = sb.client()
        plan = backd_ops.refund_orders(client, refunds(confirmed(sb, 2)), progress=False, now=before)
        sb.clock.advance(minutes=10)  # 17:05: the 17:00 lock the plan stated has passed
        result = backd_ops.execute_plan(client, plan, journal=tmp_path / "j.sqlite", progress=False, now=sb.clock.now)
        assert result.outcome.eq("drifted").all()
        assert "the 17:00 lock of Tue 2026-04-14 17:00 CDT passed since the plan was made" in result.message[0]
        assert sb.write_requests() == []


# -- approvals ---------------------------------------------------------------------------------------------------------------
def test_four_eyes_policy_is_enforced(live, client, journal, tmp_path, monkeypatch):
    monkeypatch.setenv("BACKD_OPS_USER", "ana")
    plan = backd_ops.refund_orders(client, refunds(confirmed(live, 3), "600.00"), progress=False)
    path = plan.backd.save(tmp_path / "plan.json")
    policy = ApprovalPolicy(approvers_required=1, four_eyes_above=Decimal("1000"))
    with pytest.raises(ApprovalError, match="needs 1 approver.s. and has 0"):
        backd_ops.execute_plan(client, backd_ops.load_plan(path), journal=journal, approval_policy=policy, progress=False)
    backd_ops.approve_plan(path, "ana", journal=journal)  # the maker approving her own plan is not four eyes
    moved = plan.loc[plan.outcome == "planned", "amount"].sum()
    assert moved > 1000
    with pytest.raises(ApprovalError, match=f"an approver other than its maker 'ana', because it moves \\${moved:,.2f}"):
        backd_ops.execute_plan(client, backd_ops.load_plan(path), journal=journal, approval_policy=policy, progress=False)
    assert live.write_requests() == []
    with pytest.raises(ApprovalError, match="you are 'ana'"):  # an approval is given, not entered for someone else
        backd_ops.approve_plan(path, "maria", journal=journal)
    monkeypatch.setenv("BACKD_OPS_USER", "maria")
    approved = backd_ops.approve_plan(path, "maria", journal=journal)
    assert [a.approved_by for a in backd_ops.load_plan(path).backd.info.approvals] == ["ana", "maria"]
    assert approved.backd.plan_id == plan.backd.plan_id  # approvals are not content
    result = backd_ops.execute_plan(client, backd_ops.load_plan(path), journal=journal, approval_policy=policy, progress=False)
    assert result.outcome.eq("done").tolist() == plan.outcome.eq("planned").tolist()
    assert Journal(journal).runs().approved_by[0] == "ana, maria"


def test_approvals_count_only_from_the_journal_for_that_very_plan(live, client, journal, tmp_path, monkeypatch):
    """An approval pasted into a plan file, a renamed maker, "Ana" for "ana": none of them is four eyes."""
    import json

    monkeypatch.setenv("BACKD_OPS_USER", "ana")
    policy = ApprovalPolicy(approvers_required=1, four_eyes_above=Decimal("1"))
    plan = backd_ops.refund_orders(client, refunds(confirmed(live, 2)), progress=False)
    path = plan.backd.save(tmp_path / "plan.json")
    document = json.loads(path.read_text())
    document["approvals"] = [{"approved_by": "maria", "approved_at": "2026-11-29T10:00:00+00:00"}]
    path.write_text(json.dumps(document))
    with pytest.raises(ApprovalError, match="needs 1 approver.s. and has 0"):  # the file says maria; the journal does not
        backd_ops.execute_plan(client, backd_ops.load_plan(path), journal=journal, approval_policy=policy, progress=False)
    document["created_by"] = "somebody-else"
    path.write_text(json.dumps(document))
    with pytest.raises(PlanError, match="changed after it was made"):  # the maker is part of the plan
        backd_ops.load_plan(path)
    monkeypatch.setenv("BACKD_OPS_USER", "Ana ")
    with pytest.raises(ApprovalError, match="other than its maker"):
        backd_ops.execute_plan(client, plan, journal=journal, approved_by="Ana ", approval_policy=policy, progress=False)
    assert live.write_requests() == []


def test_the_policy_a_plan_was_made_under_travels_with_it(live, client, journal, monkeypatch):
    monkeypatch.setenv("BACKD_OPS_APPROVERS_REQUIRED", "1")
    plan = backd_ops.refund_orders(client, refunds(confirmed(live, 1)), progress=False)
    monkeypatch.delenv("BACKD_OPS_APPROVERS_REQUIRED")  # the executor's machine has no policy set
    with pytest.raises(ApprovalError, match="needs 1 approver"):
        backd_ops.execute_plan(client, plan, journal=journal, progress=False)


def test_a_plan_with_two_rows_for_one_order_is_refused_even_if_rehashed(live, client, journal):
    from dataclasses import replace

    from backd_ops.plans import PLAN_ATTR, compute_plan_id

    plan = backd_ops.refund_orders(client, refunds(confirmed(live, 2)), progress=False)
    forged = plan.copy()
    forged.loc[1, "backd_order_id"] = forged.loc[0, "backd_order_id"]
    info = replace(forged.attrs[PLAN_ATTR], plan_id="")
    info = replace(info, plan_id=compute_plan_id(forged, info))
    forged.attrs[PLAN_ATTR], forged["plan_id"] = info, info.plan_id
    with pytest.raises(PlanError, match="more than once"):
        backd_ops.execute_plan(client, forged, journal=journal, progress=False)
    assert live.write_requests() == []


# -- claims -------------------------------------------------------------------------------------------------------------------
def _intent(book: Journal, claim, row: int) -> bool:
    return book.record_intent(claim, row, operation="refund", backd_order_id=f"BO-{row}", request={"refund_amount": "1.00"},
                              request_key="1.00", amount="1.00", status_before="order_confirmed")


def test_intents_from_many_threads_are_each_committed_once_and_only_while_the_claim_holds(tmp_path):
    """Intents are group-committed: every caller returns only once its own intent is in the file (read here from a
    second connection), and a claim lost meanwhile refuses every intent of the batch."""
    path = tmp_path / "journal.sqlite"
    book, account = Journal(path), Account("sandbox", "http://127.0.0.1:1/v1/backd/bnpl/api", "pk")
    claim = book.claim("plan-1", account, run_id="run-1")
    book.start_run(claim, operation="refund", account=account, rows=200)
    book.lease(claim, [f"BO-{row}" for row in range(240)])
    committed_when_returned = []

    def intend(row: int) -> bool:
        held = _intent(book, claim, row)
        with sqlite3.connect(path) as other:
            committed_when_returned.append(other.execute("SELECT count(*) FROM actions WHERE row = ?", (row,)).fetchone()[0])
        return held

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(intend, range(200)))
    assert committed_when_returned == [1] * 200
    assert book.actions("run-1").attempts.eq(1).all() and len(book.actions("run-1")) == 200
    assert _intent(book, claim, 0) and book.actions("run-1").attempts[0] == 2  # a later attempt of the same row
    book.release(claim)
    with ThreadPoolExecutor(8) as pool:
        assert not any(pool.map(lambda row: _intent(book, claim, row), range(200, 240)))
    assert len(book.actions("run-1")) == 200


def test_a_failed_intent_commit_reaches_every_caller_of_its_batch(tmp_path, monkeypatch):
    book, account = Journal(tmp_path / "journal.sqlite"), Account("sandbox", "http://127.0.0.1:1/v1/backd/bnpl/api", "pk")
    claim = book.claim("plan-1", account, run_id="run-1")

    def disk_full(batch):
        time.sleep(0.05)  # the other callers queue up behind this one and are written (and fail) as one batch
        raise OSError(f"disk full ({len(batch)} intents)")

    def intend(row: int) -> BaseException | bool:
        try:
            return _intent(book, claim, row)
        except OSError as exc:
            return exc

    monkeypatch.setattr(book._intents, "_write", disk_full)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(intend, range(8)))
    assert all(isinstance(o, OSError) for o in outcomes), outcomes
    assert any("(1 intents)" not in str(o) for o in outcomes)  # some failed as part of a batch, not alone


def test_a_second_executor_of_the_same_plan_is_refused_naming_the_holder(live, client, journal):
    plan = backd_ops.refund_orders(client, refunds(confirmed(live, 2)), progress=False)
    book = Journal(journal)
    claim = book.claim(plan.backd.plan_id, client.account)
    with pytest.raises(ConcurrentRunError, match=f"pid {os.getpid()} on .* started at"):
        backd_ops.execute_plan(client, plan, journal=journal, progress=False)
    book.release(claim)
    assert backd_ops.execute_plan(client, plan, journal=journal, progress=False).outcome.eq("done").all()


def test_a_killed_executors_claim_is_taken_over(live, client, journal, tmp_path):
    plan = backd_ops.refund_orders(client, refunds(confirmed(live, 2)), progress=False)
    path = plan.backd.save(tmp_path / "plan.json")
    code = (f"import os, backd_ops; from backd_ops.journal import Journal; "
            f"Journal({str(journal)!r}).claim(backd_ops.load_plan({str(path)!r}).backd.plan_id, "
            f"backd_ops.connect().account); os._exit(0)")
    subprocess.run([sys.executable, "-c", code], env={**os.environ, **live.env()}, check=True, timeout=60)
    result = backd_ops.execute_plan(client, backd_ops.load_plan(path), journal=journal, progress=False)
    assert result.outcome.eq("done").all()


def test_two_plans_never_write_one_order_at_once(live, client, journal):
    chosen = confirmed(live, 1)
    plan = backd_ops.refund_orders(client, refunds(chosen), progress=False)
    other = backd_ops.refund_orders(client, refunds(chosen, "6.00"), progress=False)
    book = Journal(journal)
    holder = book.claim(other.backd.plan_id, client.account)
    assert book.lease(holder, [chosen[0]["backd_order_id"]]) == {}
    result = backd_ops.execute_plan(client, plan, journal=journal, progress=False)
    assert result.outcome.tolist() == ["failed"] and "is writing this order right now" in result.message[0]
    assert live.write_requests() == []


# -- outcomes in the journal -------------------------------------------------------------------------------------------------
def test_a_finished_rows_outcome_and_lease_are_written_while_another_row_still_settles(live, client, journal):
    """Outcomes are batched, but on a timer: a done row is not left in doubt (nor its order held) for as long as
    another row takes to settle."""
    plan = backd_ops.refund_orders(client, refunds(confirmed(live, 2)), progress=False)
    live.script_faults("refund", ["reset_before"])  # one refund is not applied: its row reads back for the window
    results = {}
    runner = threading.Thread(target=lambda: results.update(result=backd_ops.execute_plan(
        client, plan, journal=journal, progress=False, settle_window_s=4, max_workers=2)))
    runner.start()
    time.sleep(2)
    with sqlite3.connect(journal) as db:
        outcomes = db.execute("SELECT outcome FROM actions ORDER BY outcome").fetchall()
        leases = db.execute("SELECT count(*) FROM leases").fetchone()[0]
    runner.join(30)
    assert outcomes == [(None,), ("done",)] and leases == 1  # the settling row's intent is still in doubt
    assert results["result"].outcome.tolist() == ["done", "done"]


def test_a_journal_that_fails_to_record_outcomes_loses_neither_them_nor_the_results(live, client, journal, monkeypatch, caplog):
    original, calls = Journal.record_outcomes, {"n": 0}

    def locked_once(self, claim, operation, rows):
        rows = list(rows)
        if rows and calls["n"] == 0:
            calls["n"] += 1
            raise sqlite3.OperationalError("database is locked")
        return original(self, claim, operation, rows)

    monkeypatch.setattr(Journal, "record_outcomes", locked_once)
    plan = backd_ops.refund_orders(client, refunds(confirmed(live, 20)), progress=False)
    result = backd_ops.execute_plan(client, plan, journal=journal, progress=False)
    assert calls["n"] == 1 and result.outcome.eq("done").all()
    assert Journal(journal).actions().outcome.eq("done").sum() == 20  # the failed batch was written later

    def always_locked(self, claim, operation, rows):
        if list(rows):
            raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(Journal, "record_outcomes", always_locked)
    plan = backd_ops.refund_orders(client, refunds(confirmed(live, 3)), progress=False)
    result = backd_ops.execute_plan(client, plan, journal=journal, progress=False)
    assert result.outcome.eq("done").all()  # the money moved: the analyst still gets the results
    assert "the returned results are the only record" in caplog.text
    again = backd_ops.execute_plan(client, plan, journal=journal, progress=False, settle_window_s=0.5)
    assert again.outcome.eq("already_done").all() and again.message.str.contains("done by run").all()


# -- undo -----------------------------------------------------------------------------------------------------------------------
def test_undo_lists_refunds_a_killed_run_sent_but_never_recorded_and_a_resume_after_declining_them_sends_nothing(
        live, client, journal, monkeypatch):
    """A kill between the writes and their (batched) outcomes leaves the rows in doubt. Undo lists them with what
    Backd shows but declines none (Backd has no request ids: a refund of the same amount may be anyone's); once the
    analyst declines them (journaled, even if that run is killed too), running the plan again sends nothing."""
    chosen = confirmed(live, 3)
    plan = backd_ops.refund_orders(client, refunds(chosen), progress=False)
    with monkeypatch.context() as patched:  # as if the process died before any outcome was written
        patched.setattr(Journal, "record_outcomes", lambda self, claim, operation, rows: None)
        killed = backd_ops.execute_plan(client, plan, journal=journal, progress=False)
    killed_run = killed.run_id.iloc[0]
    assert Journal(journal).actions(killed_run).outcome.isna().all()
    undo = backd_ops.undo_run(client, killed_run, journal=journal, progress=False)
    assert undo.outcome.tolist() == ["invalid"] * 3
    assert undo.message.str.contains("never recorded how it ended; Backd shows an active draft request of \\$5.00").all()
    declines = refunds(chosen[:2]).drop(columns="refund_amount")
    with monkeypatch.context() as patched:  # the declines land, and are left in doubt too: still a write of ours since
        patched.setattr(Journal, "record_outcomes", lambda self, claim, operation, rows: None)
        assert backd_ops.delete_refunds(client, declines, execute=True, journal=journal, progress=False).outcome.eq("done").all()
    resumed = backd_ops.execute_plan(client, plan, journal=journal, progress=False, settle_window_s=0.5)
    assert resumed.outcome.tolist() == ["drifted", "drifted", "already_done"]
    assert "sent delete_refund on this order since" in resumed.message[0]
    assert dict(live.writes_per_order("refund")) == {o["backd_order_id"]: 1 for o in chosen}


def test_undo_declines_what_the_run_created_while_it_is_unlocked_and_unchanged(live, client, journal):
    chosen = confirmed(live, 3)
    done = backd_ops.refund_orders(client, refunds(chosen), execute=True, journal=journal, progress=False)
    client.refund(chosen[2]["backd_order_id"], chosen[2]["merchant_order_id"], "7.00")  # changed since: not ours to undo
    undo = backd_ops.undo_run(client, done.attrs["backd_result"]["run_id"], journal=journal, progress=False)
    assert undo.outcome.tolist() == ["planned", "planned", "invalid"]
    assert "the active refund is $7.00, not the $5.00 run" in undo.message[2]
    assert undo.backd.sentence().startswith("Decline the refund on 2 orders, $10.00")
    result = backd_ops.execute_plan(client, undo, journal=journal, progress=False)
    assert result.outcome.tolist() == ["done", "done", "invalid"]
    assert refund_history(live, chosen[0]["backd_order_id"]) == [("5.00", "declined")]
    assert refund_history(live, chosen[2]["backd_order_id"]) == [("5.00", "declined"), ("7.00", "draft")]


@pytest.mark.parametrize("taken", ["plan", "orders"])
def test_a_write_waiting_for_its_rate_limit_slot_is_not_sent_once_the_run_lost_its_claim(live, client, journal, taken):
    """The claim is checked when a write leaves, not only when its intent is recorded: a run interrupted (or taken
    over) while its writes queue behind the limiter sends none of them, and a re-run then writes each order once."""
    chosen = confirmed(live, 6)
    plan = backd_ops.refund_orders(client, refunds(chosen), progress=False)
    results = {}
    runner = threading.Thread(target=lambda: results.update(
        first=backd_ops.execute_plan(client, plan, journal=journal, progress=False, max_rps=2, max_workers=6)))
    runner.start()
    deadline = time.monotonic() + 30
    while not live.writes_per_order("refund") and time.monotonic() < deadline:
        time.sleep(0.01)
    with sqlite3.connect(journal) as db:  # another executor takes over, as after a stale heartbeat: this plan, or
        # (a run of another plan on the same orders) the orders' leases, while this run still holds its plan
        db.execute("UPDATE claims SET token = 'another-run'" if taken == "plan" else "UPDATE leases SET token = 'another-run'")
    runner.join(60)
    first = results["first"]
    sent = dict(live.writes_per_order("refund"))
    assert 1 <= len(sent) < 6 and set(sent.values()) == {1}
    withheld = first[first.outcome == "failed"]
    assert len(withheld) == 6 - len(sent) and withheld.message.str.contains("lost its hold on the plan").all()
    with sqlite3.connect(journal) as db:
        db.execute("DELETE FROM claims")
        db.execute("DELETE FROM leases")
    again = backd_ops.execute_plan(client, plan, journal=journal, progress=False)
    assert sorted(again.outcome) == sorted(["already_done"] * len(sent) + ["done"] * (6 - len(sent)))
    assert dict(live.writes_per_order("refund")) == {o["backd_order_id"]: 1 for o in chosen}


def test_a_send_guard_that_says_no_sends_nothing(live, client):
    from backd_ops.errors import WriteWithheldError

    order = confirmed(live, 1)[0]
    with client.send_guard(lambda: False), pytest.raises(WriteWithheldError):
        client.refund(order["backd_order_id"], order["merchant_order_id"], Decimal("5.00"))
    assert not dict(live.writes_per_order("refund")) and not [r for r in live.requests if r["endpoint"] == "refund"]
    assert client.find_order(order["backd_order_id"]).status == "order_confirmed"  # reads are never guarded
