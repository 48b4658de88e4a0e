"""Every notebook executed by papermill against the sandbox (defaults, a failing fail_on case), and no secret in any output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
import pytest

from backd_ops.cli import NOTEBOOK_DIR, main
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
    """No keys anywhere: the notebooks' defaults must rehearse against their embedded sandbox."""
    for name in ("BACKD_PUBLIC_KEY", "BACKD_SECRET_KEY", "BACKD_BASE_URL", "BACKD_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BACKD_OPS_JOURNAL", str(tmp_path / "journal.sqlite"))
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_with_defaults_against_the_sandbox(no_keys, tmp_path, name):
    output = tmp_path / f"{name}.out.ipynb"
    pm.execute_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"), str(output), kernel_name="python3", progress_bar=False,
                        cwd=str(tmp_path))
    book = nbformat.read(output, as_version=4)
    assert not [c for c in book.cells if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert "Connected to an embedded sandbox" in output.read_text()
    _assert_no_secret(output, DEMO_SECRET_KEY, DEMO_PUBLIC_KEY)
    if name == "reconciliation":
        assert {p.name for p in (tmp_path / "out/reconciliation").iterdir()} >= {
            "discrepancies.csv", "summary.json", "report.html", "report.xlsx", "backd_snapshot.parquet",
            "suggested_refunds.csv", "suggested_cancels.csv"}


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


def test_fail_on_makes_the_run_exit_non_zero_after_saving(kernel_env, tmp_path, capsys):
    ledger = tmp_path / "ledger.csv"
    ledger.write_text("merchant_order_id,backd_order_id,status,order_total\nM-1,BO-DEMO-999999,paid,10.00\n")
    code = main(["run", "reconciliation", "-p", "ledger_path", str(ledger), "-p", "fail_on", '["missing_in_backd"]',
                 "-p", "backend", "env", "--out", str(tmp_path / "runs")])
    assert code == 1
    assert "FindingsError" in capsys.readouterr().err
    assert (tmp_path / "out/reconciliation/discrepancies.csv").is_file()  # evidence first, then the failure
    executed = next((tmp_path / "runs").glob("reconciliation-*.ipynb"))
    _assert_no_secret(executed, kernel_env.env()["BACKD_SECRET_KEY"], kernel_env.public_key)


def test_misspelt_parameter_is_an_error_not_a_warning(kernel_env, tmp_path, capsys):
    code = main(["run", "order_lookup", "-p", "order_idz", '["BO-DEMO-000001"]', "-p", "backend", "env", "--out", str(tmp_path)])
    assert code == 2  # refused before papermill: no executed notebook holds the misspelt name
    assert "did you mean 'order_ids'" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.ipynb"))


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
