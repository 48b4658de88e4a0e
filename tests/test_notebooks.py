"""Every notebook executed by papermill against the sandbox (defaults, a failing fail_on case), and no secret in any output."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
import pytest

from backd_ops.cli import main
from backd_ops.runner import NOTEBOOK_DIR
from backd_ops.nbtools import NOTEBOOK_PARAMETERS
from backd_ops.sandbox import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY

NOTEBOOKS = sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))
SPEC = {"reconciliation": "reconciliation", "bulk_refund": "bulk_operation", "bulk_cancel": "bulk_operation", "order_lookup": "order_lookup"}


@pytest.fixture
def kernel_env(env_sandbox, monkeypatch, tmp_path):
    """The sandbox's keys reach the notebook's kernel through the environment only; log-friendly progress."""
    monkeypatch.setenv("BACKD_OPS_PROGRESS", "plain")
    monkeypatch.chdir(tmp_path)
    return env_sandbox


def test_every_notebook_has_one_parameters_cell_matching_its_spec():
    assert set(NOTEBOOKS) == set(SPEC)
    for name in NOTEBOOKS:
        book = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
        tagged = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        assert set(pm.inspect_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"))) == set(NOTEBOOK_PARAMETERS[SPEC[name]]), name
        assert all(not c.get("outputs") for c in book.cells if c.cell_type == "code"), f"{name} has committed outputs"


@pytest.fixture
def no_keys(monkeypatch, tmp_path):
    """No keys anywhere."""
    for name in ("BACKD_PUBLIC_KEY", "BACKD_SECRET_KEY", "BACKD_BASE_URL", "BACKD_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_against_the_sandbox_when_asked(no_keys, tmp_path, name):
    output = tmp_path / f"{name}.out.ipynb"
    pm.execute_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"), str(output), kernel_name="python3", progress_bar=False,
                        cwd=str(tmp_path), parameters={"backend": "sandbox"})
    book = nbformat.read(output, as_version=4)
    assert not [c for c in book.cells if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert "Connected to an embedded sandbox" in output.read_text()
    _assert_no_secret(output, DEMO_SECRET_KEY, DEMO_PUBLIC_KEY)
    if name == "reconciliation":
        assert {p.name for p in (tmp_path / "out/reconciliation/latest").iterdir()} >= {
            "discrepancies.csv", "summary.json", "report.html", "report.xlsx", "backd_snapshot.parquet",
            "suggested_refunds.csv", "suggested_cancels.csv", "changes.csv"}


def test_issue11_1_a_scheduled_run_with_no_keys_stops_instead_of_using_the_sandbox(no_keys, tmp_path, capsys):
    ledger = tmp_path / "ledger.csv"
    ledger.write_text("merchant_order_id,backd_order_id,status,order_total\nM-1,BO-DEMO-000001,paid,10.00\n")
    output = tmp_path / "out.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as info:  # papermill without backd-ops: still scheduled
        pm.execute_notebook(str(NOTEBOOK_DIR / "reconciliation.ipynb"), str(output), kernel_name="python3", progress_bar=False,
                            cwd=str(tmp_path), parameters={"ledger_path": str(ledger)})
    assert info.value.ename == "ConfigurationError" and 'backend="sandbox"' in info.value.evalue
    code = main(["run", "reconciliation", "-p", "ledger_path", str(ledger), "--out", str(tmp_path / "runs")])
    assert code == 3 and "no Backd keys" in capsys.readouterr().err
    assert not list((tmp_path / "runs").glob("*/report.html"))  # no plausible report from demo data


def test_bulk_notebook_executes_only_when_asked(kernel_env, tmp_path):
    confirmed = [kernel_env.store.find(i) for i in kernel_env.store.ids()]
    confirmed = [o for o in confirmed if o["status"] == "order_confirmed" and not o["refunds"]][:5]
    source = tmp_path / "refunds.csv"
    pd.DataFrame({"backd_order_id": [o["backd_order_id"] for o in confirmed], "merchant_order_id": [o["merchant_order_id"] for o in confirmed],
                  "refund_amount": "3.00"}).to_csv(source, index=False)
    out = tmp_path / "bulk.out.ipynb"
    params = {"backend": "env", "input_path": str(source)}
    pm.execute_notebook(str(NOTEBOOK_DIR / "bulk_refund.ipynb"), str(out), kernel_name="python3", progress_bar=False,
                        cwd=str(tmp_path), parameters=params)
    assert kernel_env.write_requests() == []  # a papermill run without execute=True moves no money
    for _ in range(2):  # the second run resumes: nothing is sent twice
        pm.execute_notebook(str(NOTEBOOK_DIR / "bulk_refund.ipynb"), str(out), kernel_name="python3", progress_bar=False,
                            cwd=str(tmp_path), parameters={**params, "execute": True})
    refunds = kernel_env.writes_per_order("refund")
    assert refunds == {o["backd_order_id"]: 1 for o in confirmed}
    assert (tmp_path / "out/bulk/refund_result.csv").is_file()
    _assert_no_secret(out, kernel_env.env()["BACKD_SECRET_KEY"], kernel_env.public_key)


def test_fail_on_makes_the_run_exit_1_after_saving_everything_in_its_folder(kernel_env, tmp_path, capsys):
    ledger = tmp_path / "ledger.csv"
    ledger.write_text("merchant_order_id,backd_order_id,status,order_total\nM-1,BO-DEMO-999999,paid,10.00\n")
    code = main(["run", "reconciliation", "-p", "ledger_path", str(ledger), "-p", "fail_on", '["missing_in_backd"]',
                 "--out", str(tmp_path / "runs")])
    assert code == 1
    captured = capsys.readouterr()
    assert "FindingsError" in captured.err and "run folder:" in captured.out and "exit 1:" in captured.out
    folder = (tmp_path / "runs/latest").resolve()
    assert {"discrepancies.csv", "report.html", "reconciliation.ipynb"} <= {p.name for p in folder.iterdir()}  # evidence, then failure
    _assert_no_secret(folder / "reconciliation.ipynb", kernel_env.env()["BACKD_SECRET_KEY"], kernel_env.public_key)


@pytest.mark.parametrize(("arguments", "code", "says"), [
    (["-p", "order_idz", '["BO-DEMO-000001"]'], 2, "did you mean 'order_ids'"),
    (["-p", "backend", "envv"], 2, "must be one of auto, sandbox, env"),
    (["-p", "ids_path", "missing.csv"], 2, "no such file"),
])
def test_bad_parameters_stop_the_run_before_papermill_starts(kernel_env, tmp_path, capsys, arguments, code, says):
    assert main(["run", "order_lookup", *arguments, "--out", str(tmp_path / "out")]) == code
    assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.ipynb"))


def test_issue11_5_exit_codes_tell_a_broken_job_from_findings(kernel_env, tmp_path, monkeypatch, capsys):
    good, bad = tmp_path / "ledger.csv", tmp_path / "bad.csv"
    good.write_text("merchant_order_id,backd_order_id,status,order_total\nM-1,BO-DEMO-999999,paid,10.00\n")
    bad.write_text("merchant_order_id,backd_order_id,status,order_total\nM-1,BO-DEMO-000001,paid,12,50\n")
    run = lambda *extra: main(["run", "reconciliation", "--out", str(tmp_path / "runs"), *extra])  # noqa: E731
    seen = len(kernel_env.requests)
    assert run("-p", "ledger_path", str(good), "-p", "fail_on", '["missing_in_bakd"]') == 2  # a typo, caught before any work
    assert "did you mean 'missing_in_backd'" in capsys.readouterr().err and len(kernel_env.requests) == seen
    assert run("-p", "ledger_pth", str(good)) == 2
    assert run("-p", "ledger_path", str(tmp_path / "nope.csv")) == 2
    assert run("-p", "ledger_path", str(bad)) == 2  # a bad ledger cell is bad input, not findings
    # Findings that fail the run exit 1, a clean run 0: test_fail_on_makes_the_run_exit_1_after_saving_everything_in_its_folder
    # and test_issue11_the_executed_notebook_opens_with_what_was_compared run those two notebooks (5 s each).
    assert main(["reconcile", "--ledger", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "r")]) == 2
    assert main(["reconcile", "--ledger", str(good), "--out", str(tmp_path / "r"), "--fail-on", "missing_in_bakd"]) == 2
    monkeypatch.setenv("BACKD_BASE_URL", "http://127.0.0.1:9/v1/backd/bnpl/api")  # nothing listens there
    assert run("-p", "ledger_path", str(good)) == 4
    assert main(["reconcile", "--ledger", str(good), "--out", str(tmp_path / "r"), "--progress", "off"]) == 4


def test_credentials_are_never_accepted_as_parameters(kernel_env, tmp_path, capsys):
    code = main(["run", "order_lookup", "-p", "secret_key", "sk_x", "--out", str(tmp_path)])
    assert code == 3 and "never from notebook parameters" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.ipynb"))  # refused before papermill wrote anything


def _assert_no_secret(path: Path, secret: str, public_key: str) -> None:
    import base64

    basic = base64.b64encode(f"{public_key}:{secret}".encode()).decode()
    text = path.read_text()
    assert secret not in text and basic not in text
    book = json.loads(text)
    assert secret not in json.dumps(book["metadata"].get("papermill", {}).get("parameters", {}))


def test_issue11_the_executed_notebook_opens_with_what_was_compared(kernel_env, tmp_path):
    ledger = tmp_path / "ledger.csv"
    ledger.write_text("merchant_order_id,backd_order_id,status,order_total\nM-100001,BO-DEMO-000001,paid,10.00\n")
    assert main(["run", "reconciliation", "-p", "ledger_path", str(ledger), "--out", str(tmp_path / "runs")]) == 0
    folder = (tmp_path / "runs/latest").resolve()
    book = nbformat.read(folder / "reconciliation.ipynb", as_version=4)
    first = next(o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", []))
    text = json.dumps(first)
    summary = json.loads((folder / "summary.json").read_text())
    for expected in ("About this run", summary["run"]["run_id"], "ledger.csv", summary["run"]["ledger"]["sha256"], "As of (UTC)",
                     "USD", "Orders read live from Backd", "Run by", "\\u2026demo", "SANDBOX"):
        assert expected in text, expected
    assert folder.name.endswith(summary["run"]["run_id"])


def test_issue11_three_nights_new_open_resolved_and_a_note(env_sandbox, tmp_path, capsys):
    from datetime import datetime, timedelta

    from backd_ops.locking import CHICAGO

    sb = env_sandbox
    nights = [datetime(2026, 4, 14, 2, 0, tzinfo=CHICAGO) + timedelta(days=i) for i in range(3)]
    placed = [o for o in (sb.store.find(i) for i in sb.store.ids()) if o["status"] == "order_placed"][:3]
    rows = [{"merchant_order_id": o["merchant_order_id"], "backd_order_id": o["backd_order_id"], "status": "pending",
             "order_total": f"{o['order_total']:.2f}"} for o in placed]
    a, b, c = (o["backd_order_id"] for o in placed)
    ledger = tmp_path / "ledger.csv"

    def night(i: int, ledger_rows: list[dict]) -> tuple[int, dict]:
        sb.clock.freeze(nights[i])
        pd.DataFrame(ledger_rows).to_csv(ledger, index=False)
        code = main(["run", "reconciliation", "-p", "ledger_path", str(ledger), "-p", "as_of", nights[i].isoformat(),
                     "-p", "fail_on", '["status_mismatch"]', "-p", "stale_days", "1000", "--out", str(tmp_path / "runs")])
        return code, json.loads(((tmp_path / "runs/latest").resolve() / "summary.json").read_text())

    first = [dict(r) for r in rows]
    first[0]["status"] = "cancelled"  # A: the ledger canceled, Backd still placed
    first[1]["order_total"] = str(Decimal(first[1]["order_total"]) + 5)  # B: totals differ
    code, summary = night(0, first)
    assert code == 1 and summary["changes"] == {"new": 2, "open": 0, "open_values_changed": 0, "resolved": 0}
    assert main(["findings", "note", a, "status_mismatch", "--note", "canceled by phone, ticket 4411", "--owner", "ana",
                 "--status", "no_action_needed"]) == 0

    second = [dict(r) for r in rows]
    second[0]["status"] = "cancelled"  # A still differs (noted: no action needed)
    second[2]["status"] = "cancelled"  # C: new tonight; B fixed in the ledger: resolved
    code, summary = night(1, second)
    assert summary["changes"] == {"new": 1, "open": 1, "open_values_changed": 0, "resolved": 1}
    assert code == 1  # C's status mismatch counts; A's is noted no_action_needed
    second[2]["status"] = "pending"
    code, summary = night(2, second)
    assert code == 0 and summary["changes"]["resolved"] == 1  # only A is left, and its note says no action is needed
    sb.client().confirm_order(a)  # Backd's side of A changes: the note no longer covers it
    sb.clock.freeze(nights[2] + timedelta(hours=1))
    code = main(["run", "reconciliation", "-p", "ledger_path", str(ledger), "-p", "as_of", (nights[2] + timedelta(hours=1)).isoformat(),
                 "-p", "fail_on", '["status_mismatch"]', "-p", "stale_days", "1000", "--out", str(tmp_path / "runs")])
    summary = json.loads(((tmp_path / "runs/latest").resolve() / "summary.json").read_text())
    assert code == 1 and summary["changes"]["open_values_changed"] == 1
    html = ((tmp_path / "runs/latest").resolve() / "report.html").read_text()
    assert "Changes since last run" in html and "canceled by phone, ticket 4411" in html and "ana" in html
    assert len(list((tmp_path / "runs").glob("2026-04-1*"))) == 4
