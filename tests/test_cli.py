"""backd-ops: every command's help, dry run vs execute, exit codes, reconcile reports, the journal view."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from backd_ops.cli import build_parser, main
from backd_ops.sandbox.demo import DEMO_COLUMN_MAP, demo_ledger


def test_every_command_has_help():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them here
    assert set(commands) == {"sandbox", "find", "refund", "cancel", "confirm", "delete-refund", "update", "place",
                             "approve", "execute", "undo", "reconcile", "findings", "journal", "run", "demo", "template"}
    for name in commands:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "backd_ops.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "Exit codes" in result.stdout


def test_refund_dry_run_then_execute_then_rerun(env_sandbox, tmp_path, capsys):
    orders = [env_sandbox.store.find(i) for i in env_sandbox.store.ids()]
    chosen = [o for o in orders if o["status"] == "order_confirmed" and not o["refunds"]][:4]
    path = tmp_path / "refunds.csv"
    pd.DataFrame({"backd_order_id": [o["backd_order_id"] for o in chosen], "merchant_order_id": [o["merchant_order_id"] for o in chosen],
                  "refund_amount": "2.00"}).to_csv(path, index=False)
    assert main(["refund", "--file", str(path), "--progress", "off"]) == 0
    assert "DRY RUN" in capsys.readouterr().out and env_sandbox.write_requests() == []
    assert main(["refund", "--file", str(path), "--execute", "--progress", "off", "--out", str(tmp_path / "result.csv")]) == 0
    assert "journal run" in capsys.readouterr().out and len(env_sandbox.write_requests()) == 4
    assert main(["refund", "--file", str(path), "--execute", "--progress", "off"]) == 0
    assert len(env_sandbox.write_requests()) == 4
    assert main(["journal"]) == 0 and "refund" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "result.csv").outcome.eq("done").all()


def test_max_rps_option_paces_every_request(env_sandbox, capsys):
    ids = env_sandbox.store.ids()[:6]
    assert main(["find", *ids, "--max-rps", "10", "--progress", "off"]) == 0
    arrivals = sorted(r["at"] for r in env_sandbox.requests)
    assert len(arrivals) == 6 and arrivals[-1] - arrivals[0] >= 5 / 10 * 0.9


def test_exit_codes(env_sandbox, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("backd_order_id\nBO-NOPE\n")
    assert main(["cancel", "--file", str(bad), "--progress", "off"]) == 1  # a row needs attention
    assert main(["refund", "--file", str(bad), "--progress", "off"]) == 2  # missing columns
    assert "missing column refund_amount; the input has 1 column: 'backd_order_id'" in capsys.readouterr().err
    monkeypatch.setenv("BACKD_SECRET_KEY", "sk_wrong")
    assert main(["find", "BO-DEMO-000001", "--progress", "off"]) == 1  # the lookup failed: the row says so
    monkeypatch.setenv("BACKD_ENVIRONMENT", "production")
    monkeypatch.setenv("BACKD_SECRET_KEY", env_sandbox.env()["BACKD_SECRET_KEY"])
    placed = tmp_path / "placed.csv"
    placed.write_text("backd_order_id\nBO-DEMO-000003\n")
    assert main(["cancel", "--file", str(placed), "--execute", "--progress", "off"]) == 3  # production guard
    assert "--confirm-production" in capsys.readouterr().err  # the CLI names its flag, not the Python argument
    assert env_sandbox.write_requests() == []


def test_reconcile_command_writes_reports_and_fails_on_request(env_sandbox, tmp_path, capsys):
    rows, _ = demo_ledger([env_sandbox.store.find(i) for i in env_sandbox.store.ids()])
    ledger = tmp_path / "ledger.csv"
    pd.DataFrame(rows).to_csv(ledger, index=False)
    column_map = '{"Order #": "merchant_order_id", "Backd ID": "backd_order_id", "Status": "status", "Total": "order_total", "Refunded": "refunded_amount"}'
    assert DEMO_COLUMN_MAP  # the same names as above
    out = tmp_path / "out"
    assert main(["reconcile", "--ledger", str(ledger), "--out", str(out), "--column-map", column_map, "--progress", "off"]) == 0
    printed = capsys.readouterr().out
    first = (out / "latest").resolve()
    assert (first / "report.html").is_file() and f"run folder: {first}" in printed and "exit 0: clean" in printed
    assert "ledger ledger.csv (" in printed and "since last run:" in printed  # the five-line summary
    assert main(["reconcile", "--ledger", str(ledger), "--out", str(out), "--column-map", column_map, "--progress", "off",
                 "--fail-on", "missing_in_backd"]) == 1
    assert (out / "latest").resolve() != first and len(list(out.glob("*-*"))) == 2  # nothing overwritten
    offline = tmp_path / "offline"
    assert main(["reconcile", "--ledger", str(ledger), "--out", str(offline), "--column-map", column_map,
                 "--snapshot", str(first / "backd_snapshot.parquet"), "--no-track"]) == 0
    columns = ["kind", "backd_order_id", "ledger_value", "backd_value", "at_stake"]
    assert pd.read_csv(offline / "latest/discrepancies.csv")[columns].equals(pd.read_csv(first / "discrepancies.csv")[columns])


def test_sandbox_command_serves_until_stopped(tmp_path):
    import signal

    from backd_ops import BackdClient

    proc = subprocess.Popen([sys.executable, "-m", "backd_ops.cli", "sandbox", "--port", "0", "--orders", "5"],
                            stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        base_url = first.split(" on ")[1].split(" with ")[0]
        assert base_url.startswith("http://127.0.0.1:")
        client = BackdClient("pk_sandbox_demo", "sk_sandbox_demo_not_a_real_secret", base_url=base_url)
        assert client.find_order("BO-DEMO-000001").backd_order_id == "BO-DEMO-000001"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.returncode == 0


def test_run_puts_the_executed_notebook_beside_its_reports(env_sandbox, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["run", "order_lookup", "-p", "order_ids", '["BO-DEMO-000001"]', "-p", "backend", "env"])
    assert code == 0 and list((tmp_path / "out").glob("order_lookup-*.ipynb"))


def test_save_approve_execute_and_undo_a_plan(env_sandbox, tmp_path, capsys, monkeypatch):
    orders = [env_sandbox.store.find(i) for i in env_sandbox.store.ids()]
    chosen = [o for o in orders if o["status"] == "order_confirmed" and not o["refunds"]][:3]
    path, plan = tmp_path / "refunds.csv", tmp_path / "plan.json"
    pd.DataFrame({"backd_order_id": [o["backd_order_id"] for o in chosen], "merchant_order_id": [o["merchant_order_id"] for o in chosen],
                  "refund_amount": "4,50"}).to_csv(path, index=False)
    assert main(["refund", "--file", str(path), "--progress", "off"]) == 1  # a decimal comma, not declared: every row invalid
    assert "pass --decimal-comma" in capsys.readouterr().out
    assert main(["refund", "--file", str(path), "--decimal-comma", "--save-plan", str(plan), "--progress", "off"]) == 0
    out = capsys.readouterr().out
    assert "Backd sandbox at 127.0.0.1:" in out and "Refund 3 orders, $13.50" in out and "DRY RUN" in out
    monkeypatch.setenv("BACKD_OPS_APPROVERS_REQUIRED", "1")
    assert main(["execute", str(plan), "--progress", "off"]) == 3  # the policy asks for an approval
    assert "needs 1 approver(s) and has 0" in capsys.readouterr().err and env_sandbox.write_requests() == []
    monkeypatch.setenv("BACKD_OPS_USER", "maria")
    assert main(["approve", str(plan), "--as", "maria"]) == 0 and "approvals: maria at" in capsys.readouterr().out
    assert main(["execute", str(plan), "--progress", "off"]) == 0
    run_id = capsys.readouterr().out.split("journal run ")[1].split()[0]
    assert len(env_sandbox.write_requests()) == 3
    assert main(["undo", run_id, "--progress", "off"]) == 0 and "Decline the refund on 3 orders, $13.50" in capsys.readouterr().out
    assert main(["undo", run_id, "--execute", "--as", "maria", "--progress", "off"]) == 0
    assert [r["status"] for o in chosen for r in env_sandbox.store.find(o["backd_order_id"])["refunds"]] == ["declined"] * 3


@pytest.mark.parametrize("name", ["refund", "cancel", "confirm", "delete-refund", "update", "place", "ledger"])
def test_template_writes_an_input_the_tool_accepts(tmp_path, capsys, name):
    from backd_ops.cli import _OPERATION_COMMANDS
    from backd_ops.ledger import load_ledger
    from backd_ops.operations import OPERATIONS, validate_frame
    from backd_ops.tables import read_table

    path = tmp_path / f"{name}.xlsx"
    assert main(["template", name, "--out", str(path)]) == 0 and f"wrote {path}" in capsys.readouterr().out
    if name == "ledger":
        assert len(load_ledger(path)) == 2
    else:
        rows = validate_frame(read_table(path), OPERATIONS[_OPERATION_COMMANDS[name]])
        assert [r.error for r in rows] == [None, None] and [r.label for r in rows] == [2, 3]
    assert main(["template", name, "--out", str(path)]) == 2  # never overwrites
    assert "exists" in capsys.readouterr().err
