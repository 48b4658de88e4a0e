"""The package's shape: dependencies declared alike for pip and conda, the public API pinned, layers kept."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import backd_ops

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "backd_ops"


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower().replace("_", "-")


def test_environment_yml_declares_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_side = {_normalise(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    text = (ROOT / "environment.yml").read_text().split("dependencies:", 1)[1]
    conda_lines = [line.strip()[2:] for line in text.splitlines() if line.strip().startswith("- ")]
    conda_side = {_normalise(line) for line in conda_lines if re.split(r"[<>=]", line)[0] not in ("python", "pip")}
    assert conda_side == pip_side


def test_public_api_is_pinned():
    assert backd_ops.__all__ == [
        "APIError", "ApprovalError", "ApprovalPolicy", "AuthenticationError", "BackdClient", "BackdError", "ConcurrentRunError",
        "ConfigurationError", "FindingsError", "InputError", "InvalidRequestError", "NetworkError", "NotFoundError", "Order",
        "OrderStateError", "OrderStatus", "PartialPlanError", "PlanAccountError", "PlanError", "ProductionGuardError", "RateLimitError", "Refund",
        "RefundStatus", "RequestTimeout", "ServerError", "Journal", "LedgerError", "Reconciliation", "approve_plan",
        "cancel_orders", "confirm_orders", "connect", "delete_refunds", "execute_plan", "fetch_orders", "find_orders",
        "load_ledger", "load_plan", "parse_amount", "place_orders", "read_table", "reconcile", "reconcile_accounts", "refund_orders", "run_operation",
        "summarize_outcomes", "undo_run", "update_orders",
    ]
    for name in backd_ops.__all__:
        assert getattr(backd_ops, name) is not None


def test_every_module_opens_with_a_one_line_docstring():
    for path in SRC.rglob("*.py"):
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring, f"{path.relative_to(ROOT)} has no module docstring"
        assert docstring.splitlines()[0].endswith((".", ":")), f"{path.relative_to(ROOT)}: first line should be a sentence"


def test_import_layers_are_kept():
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]


def test_no_notebook_outputs_or_secrets_are_committed():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert ".env" not in tracked
    for name in tracked:
        if name.endswith(".ipynb"):
            import nbformat

            book = nbformat.read(ROOT / name, as_version=4)
            assert all(not c.get("outputs") for c in book.cells if c.cell_type == "code"), name
