"""The panels driven headlessly through the widget API, against the sandbox over HTTP."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from backd_ops.locking import CHICAGO
from backd_ops.widgets import BulkRunPanel, OrderLookupPanel, approval_text, can_execute, confirmation_word
from backd_ops.sandbox import run_sandbox


@pytest.fixture
def live(tmp_path):
    with run_sandbox(orders=150) as sb:
        yield sb


def refund_input(sb, n=6) -> pd.DataFrame:
    orders = [sb.store.find(i) for i in sb.store.ids()]
    chosen = [o for o in orders if o["status"] == "order_confirmed" and not o["refunds"]][:n]
    return pd.DataFrame({"backd_order_id": [o["backd_order_id"] for o in chosen],
                         "merchant_order_id": [o["merchant_order_id"] for o in chosen], "refund_amount": "12.50"})


def test_approval_cannot_execute_without_the_typed_confirmation(live, tmp_path):
    frame = refund_input(live)
    frame.loc[99] = ["BO-NOPE", "M-1", "1.00"]
    panel = BulkRunPanel(live.client(), "refund", source=frame, journal=tmp_path / "j.sqlite", out_dir=tmp_path)
    panel.plan_button.click()
    assert panel.plan is not None and live.write_requests() == []
    assert "Refund 6 orders, $75.00, locks at 17:00" in panel.approval.value and "Not sent: 1 invalid" in panel.approval.value
    assert f">{panel.plan.backd.plan_id[:12]}</code>" in panel.approval.value
    assert panel.execute_button.disabled
    panel.confirm.value = "refund 6"  # wrong case: not the word
    assert panel.execute_button.disabled
    panel.execute_button.click()  # even a programmatic click is refused
    assert panel.execute() is None and live.write_requests() == []
    panel.confirm.value = "REFUND 6"
    assert not panel.execute_button.disabled
    panel.execute_button.click()
    assert panel.result is not None and panel.result.outcome.value_counts()["done"] == 6
    assert set(live.writes_per_order("refund").values()) == {1} and len(live.writes_per_order("refund")) == 6
    assert panel.execute_button.disabled and panel.confirm.value == ""  # no second click on the same approval
    assert "run <code>" in panel.result_output.outputs[0]["data"]["text/html"]


def test_the_panel_executes_the_plan_it_displayed_and_says_what_drifted(live, tmp_path):
    """Shown: refund 2, the third not confirmed. Meanwhile the third is confirmed and one planned order changes.
    Executing sends only what was displayed and still holds: one refund; the changed row is drifted."""
    frame = refund_input(live, 2)
    placed = next(i for i in live.store.ids() if live.store.find(i)["status"] == "order_placed")
    frame.loc[2] = [placed, live.store.find(placed)["merchant_order_id"], "12.50"]
    client = live.client()
    panel = BulkRunPanel(client, "refund", source=frame, journal=tmp_path / "j.sqlite", out_dir=tmp_path)
    panel.make_plan()
    assert "Refund 2 orders, $25.00" in panel.approval.value and "Not sent: 1 invalid" in panel.approval.value
    client.confirm_order(placed)  # a colleague, while the plan is on screen
    client.refund(frame.backd_order_id[1], frame.merchant_order_id[1], "3.00")
    panel.confirm.value = "REFUND 2"
    result = panel.execute()
    assert result.outcome.tolist() == ["done", "drifted", "invalid"]
    assert "active refund is now $3.00 (was none)" in result.message[1]
    assert dict(live.writes_per_order("refund")) == {frame.backd_order_id[0]: 1, frame.backd_order_id[1]: 1}  # ours, and the colleague's
    assert "Not sent: 1 drifted" in panel.result_output.outputs[0]["data"]["text/html"]


def test_a_saved_plan_opens_in_the_panel(live, tmp_path):
    import backd_ops

    plan = backd_ops.refund_orders(live.client(), refund_input(live, 2), progress=False)
    panel = BulkRunPanel(live.client(), plan=backd_ops.load_plan(plan.backd.save(tmp_path / "plan.json")), journal=tmp_path / "j.sqlite", out_dir=tmp_path)
    assert panel.operation == "refund" and "Refund 2 orders, $25.00" in panel.approval.value
    panel.confirm.value = "REFUND 2"
    assert panel.execute().outcome.eq("done").all()


def test_approval_text_and_confirmation_word_are_plain_functions():
    plan = pd.DataFrame({
        "outcome": pd.Categorical(["planned", "planned", "already_done", "invalid"]),
        "amount": [10, 5.5, 1, None],
        "locked_at": pd.to_datetime(["2026-04-14 17:00", "2026-04-14 17:00", None, None]).tz_localize(CHICAGO),
    })
    now = datetime(2026, 4, 14, 9, 0, tzinfo=CHICAGO)
    assert approval_text(plan, "refund", now=now) == "Refund 2 orders, $15.50, locks at 17:00 CDT today. Not sent: 1 already done, 1 invalid."
    assert confirmation_word(plan, "refund") == "REFUND 2"
    assert can_execute(plan, "refund", " REFUND 2 ") and not can_execute(plan, "refund", "REFUND 3") and not can_execute(None, "refund", "")
    nothing = plan.assign(outcome=pd.Categorical(["invalid"] * 4))
    assert not can_execute(nothing, "refund", confirmation_word(nothing, "refund"))


def test_cancel_panel_reads_a_file(live, tmp_path):
    placed = [i for i in live.store.ids() if live.store.find(i)["status"] == "order_placed"][:3]
    path = tmp_path / "cancel.csv"
    pd.DataFrame({"backd_order_id": placed}).to_csv(path, index=False)
    panel = BulkRunPanel(live.client(), "cancel", journal=tmp_path / "j.sqlite", out_dir=tmp_path)
    panel.path.value = str(path)
    panel.make_plan()
    assert panel.approval.value.startswith("<p><b>Cancel 3 orders")
    panel.confirm.value = "CANCEL 3"
    assert panel.execute().outcome.eq("done").all()


def test_order_lookup_panel(live):
    panel = OrderLookupPanel(live.client())
    panel.ids.value = "BO-DEMO-000001\nBO-DEMO-000002, BO-NOPE"
    panel.button.click()
    assert panel.orders.backd_order_id.tolist() == ["BO-DEMO-000001", "BO-DEMO-000002", "BO-NOPE"]
    assert panel.output.outputs  # rendered into the Output widget, not lost


def test_an_uploaded_file_is_read_like_a_path_with_progress_and_a_download(live, tmp_path):
    """ipywidgets 8's FileUpload value: a semicolon export with a BOM and an empty row, headers as Excel has them."""
    import base64
    import re

    chosen = refund_input(live, 3)
    lines = ["Order ID;Refund Amount"] + [f"{i};12,50" for i in chosen.backd_order_id[:2]] + [";", f"{chosen.backd_order_id[2]};abc"]
    content = ("\ufeff" + "\r\n".join(lines) + "\r\n").encode()
    panel = BulkRunPanel(live.client(), "refund", journal=tmp_path / "j.sqlite", out_dir=tmp_path / "results")
    upload = lambda data: ({"name": "refunds.csv", "type": "text/csv", "size": len(data),  # noqa: E731
                             "content": memoryview(data), "last_modified": datetime(2026, 4, 14, 9, 0, tzinfo=CHICAGO)},)
    panel.upload.value = upload(content)
    panel.plan_button.click()
    plan = panel.plan
    assert plan is not None and plan.index.tolist() == [2, 3, 5]  # spreadsheet lines: the empty line 4 skipped
    assert plan.outcome.tolist() == ["invalid", "invalid", "invalid"]  # a decimal comma, not declared: said per row
    assert "pass decimal=\",\"" in plan.message[2]
    info = plan.backd.info
    assert "refunds.csv: CSV, semicolon-separated; 1 empty row skipped (line 4)" in info.describe_input()
    assert "Order ID → backd_order_id, Refund Amount → refund_amount" in info.describe_input()

    panel.upload.value = upload(content.replace(b"12,50", b"12.50"))
    panel.make_plan()
    assert panel.plan.outcome.tolist() == ["planned", "planned", "invalid"]
    panel.confirm.value = "REFUND 2"
    result = panel.execute()
    assert result.outcome.tolist() == ["done", "done", "invalid"]
    assert panel.progress_bar.value == panel.progress_bar.max == 2 and panel.progress_bar.bar_style == "success"
    encoded = re.search(r"base64,([^']+)'", panel.download.value).group(1)
    downloaded = base64.b64decode(encoded).decode()
    assert downloaded == panel.result_path.read_bytes().decode() and downloaded.startswith("row,backd_order_id")
    assert "Refunded 2 orders, $25.00. Not sent: 1 invalid." in panel.result_output.outputs[0]["data"]["text/html"]
