"""Tables people read: plans and results keep every column but show row, order, amount, outcome, message, lock time."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

import backd_ops
from backd_ops.display import PlanFrame, compact_view, lock_text, plan_html, plan_text
from backd_ops.locking import CHICAGO
from backd_ops.plans import verify_plan
from backd_ops.sandbox import run_sandbox


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    with run_sandbox(orders=40) as sb:
        orders = [sb.store.find(i) for i in sb.store.ids()]
        chosen = [o for o in orders if o["status"] == "order_confirmed" and not o["refunds"]][:2]
        frame = pd.DataFrame({"Order ID": [o["backd_order_id"] for o in chosen] + ["BO-NOPE"],
                              "Refund Amount": ["1234.5", "=HYPERLINK(\"x\")", "2"]})
        yield backd_ops.refund_orders(sb.client(), frame, progress=False)


def test_a_plan_keeps_every_column_and_shows_the_compact_view(plan):
    assert isinstance(plan, PlanFrame) and {"before_status", "column", "plan_id"} <= set(plan.columns)
    html = plan._repr_html_()
    assert "<th style" in html and "before_status" not in html and "&lt;NA&gt;" not in html and "<NA>" not in html
    assert "$1,234.50" in html and "backd-outcome backd-planned" in html and "backd-outcome backd-invalid" in html
    assert "Order ID → backd_order_id, Refund Amount → refund_amount; merchant_order_id from Backd" in html
    assert "=HYPERLINK(&quot;x&quot;)" in html  # escaped, never markup
    text = repr(plan)
    assert "before_status" not in text and "<NA>" not in text and "shown compactly" in text
    assert "before_status" in pd.DataFrame(plan).to_string()


def test_slices_stay_plans_and_keep_their_identity(plan):
    planned = plan[plan.outcome == "planned"]
    assert isinstance(planned, PlanFrame) and planned.attrs["backd_plan"].plan_id == plan.backd.plan_id
    assert verify_plan(plan.copy()).plan_id == plan.backd.plan_id  # the hash still holds on a copy


def test_a_saved_and_loaded_plan_is_equal_and_displays_alike(plan, tmp_path):
    loaded = backd_ops.load_plan(plan.backd.save(tmp_path / "plan.json"))
    assert isinstance(loaded, PlanFrame)
    pd.testing.assert_frame_equal(loaded, plan, check_index_type=False)
    assert loaded._repr_html_() == plan._repr_html_()


def test_lock_times_money_and_blanks():
    assert lock_text(pd.Timestamp("2026-04-13 22:00", tz="UTC")) == "Mon 17:00 CDT"
    assert lock_text(pd.Timestamp("2026-01-12 17:00", tz=CHICAGO)) == "Mon 17:00 CST"
    frame = pd.DataFrame({"backd_order_id": ["BO-1", None], "outcome": ["done", "invalid"], "message": [None, "x"],
                          "amount": pd.array([Decimal("1234567.5"), None], dtype=object), "locked_at": [pd.NaT, pd.NaT]})
    view = compact_view(frame)
    assert view.to_dict("records") == [{"order": "BO-1", "amount": "$1,234,567.50", "outcome": "done", "message": ""},
                                       {"order": "", "amount": "", "outcome": "invalid", "message": "x"}]
    assert "<NA>" not in plan_text(frame) and "None" not in plan_html(frame)


def test_a_long_plan_shows_its_first_and_last_rows():
    frame = pd.DataFrame({"backd_order_id": [f"BO-{i}" for i in range(200)], "outcome": "planned", "message": "m"})
    html = plan_html(frame)
    assert "BO-0<" in html and "BO-199<" in html and "BO-100<" not in html and "150 more rows" in html
