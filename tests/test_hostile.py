"""Hostile input, generated (hypothesis): no traceback an analyst can't read, no request for an invalid row."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backd_ops import bulk
from backd_ops.errors import InputError
from backd_ops.operations import validate_frame
from backd_ops.sandbox import run_sandbox
from backd_ops.tables import neutralize_formulas, write_csv

NASTY = ["", "   ", "\t", "=HYPERLINK(\"http://x\",\"y\")", "+cmd", "-1", "@SUM(A1)", "../../etc/passwd", "..\\..\\win.ini",
         "BO-DEMO-000001", "BO-DEMO-000003", "BO-DEMO-000005", "M-100001", "１２３", "ß", "😀", "1e400", "0.001", "-0", "NaN",
         "inf", "\x00", "a" * 300, "12,345.67", "$5", "0", "1.00", "99999999999999.99"]
CELLS = st.one_of(
    st.none(), st.booleans(), st.sampled_from(NASTY), st.text(max_size=16),
    st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-10**20, max_value=10**20),
    st.decimals(allow_nan=True, allow_infinity=True, places=3),
)


@pytest.fixture(scope="module")
def sandbox():
    with run_sandbox(orders=40) as sb:
        yield sb


def frames(columns: tuple[str, ...]):
    return st.integers(min_value=0, max_value=6).flatmap(
        lambda n: st.fixed_dictionaries({c: st.lists(CELLS, min_size=n, max_size=n) for c in columns}).map(pd.DataFrame)
    )


@pytest.mark.parametrize("operation", list(bulk.OPERATIONS))
def test_hostile_frames_for_every_operation(sandbox, operation):
    op = bulk.OPERATIONS[operation]
    client = sandbox.client(max_retries=0)

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(frame=frames(op.columns))
    def check(frame: pd.DataFrame) -> None:
        seen = len(sandbox.requests)
        try:
            plan = bulk.run_operation(client, operation, frame.astype(object), progress=False)
        except InputError as exc:  # the only error an input may raise: a whole-frame problem, in words
            assert str(exc) and "Traceback" not in str(exc)
            return
        assert len(plan) == len(frame) and plan.index.tolist() == frame.index.tolist()
        assert plan.outcome.isin(["planned", "already_done", "drifted", "invalid", "failed"]).all()
        invalid = plan[(plan.outcome == "invalid") & plan.column.notna()]
        assert invalid.message.str.startswith("row ").all()
        new = sandbox.requests[seen:]
        assert all(r["method"] == "GET" for r in new)  # a dry run never writes
        valid_ids = {row.backd_order_id for row in validate_frame(frame.astype(object), op) if row.error is None}
        assert {r["backd_order_id"] for r in new} <= valid_ids  # no request for an invalid row
        exported = neutralize_formulas(plan)
        for column in exported.select_dtypes(include=["object", "string"]).columns:
            assert not exported[column].dropna().astype(str).str.match(r"^[=+\-@\t\r]").any()

    check()


def test_duplicated_and_missing_columns_are_clear_errors(sandbox):
    client = sandbox.client()
    duplicated = pd.DataFrame([["BO-1", "BO-2"]], columns=["backd_order_id", "Backd Order ID"])
    with pytest.raises(InputError, match="column backd_order_id: the headers 'backd_order_id' and 'Backd Order ID' both match it"):
        bulk.cancel_orders(client, duplicated, progress=False)
    with pytest.raises(InputError, match="missing column backd_order_id"):
        bulk.cancel_orders(client, pd.DataFrame({"id": ["BO-1"]}), progress=False)
    with pytest.raises(InputError, match="no such file"):
        bulk.cancel_orders(client, "missing.csv", progress=False)


def test_zero_rows_and_whitespace_ids(sandbox):
    client = sandbox.client()
    assert bulk.cancel_orders(client, [], progress=False).empty
    plan = bulk.cancel_orders(client, pd.DataFrame({"backd_order_id": ["  ", "\t", " BO-DEMO-000003 "]}), progress=False)
    assert plan.outcome.tolist()[:2] == ["invalid", "invalid"] and plan.backd_order_id.tolist()[2] == "BO-DEMO-000003"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=30))
def test_exports_neutralise_every_formula_cell(tmp_path, text):
    frame = pd.DataFrame({"note": [text], "amount": [Decimal("1.00")]})
    path = write_csv(frame, tmp_path / "out.csv")
    import csv

    with open(path, newline="") as handle:
        header, row = list(csv.reader(handle))
    assert header == ["note", "amount"] and row[1] == "1.00"
    assert not row[0].startswith(("=", "+", "-", "@", "\t", "\r"))
