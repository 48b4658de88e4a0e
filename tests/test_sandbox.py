"""The sandbox itself: the locking table, demo data, fault injection and the wire format it speaks."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import pytest
import requests

from backd_ops.sandbox import FaultProfile, refund_locked_at, run_sandbox
from backd_ops.locking import CHICAGO


@pytest.mark.parametrize(
    ("submitted", "locked"),
    [
        ("2026-04-14 09:00:00", "2026-04-14 17:00:00"),  # Tue 09:00 → Tue 17:00
        ("2026-04-14 17:00:00", "2026-04-15 17:00:00"),  # Tue 17:00:00 → Wed 17:00
        ("2026-04-16 18:30:00", "2026-04-17 17:00:00"),  # Thu 18:30 → Fri 17:00
        ("2026-04-17 16:59:00", "2026-04-17 17:00:00"),  # Fri 16:59 → Fri 17:00
        ("2026-04-17 17:00:00", "2026-04-20 17:00:00"),  # Fri 17:00 → Mon 17:00
        ("2026-04-19 12:00:00", "2026-04-20 17:00:00"),  # Sun 12:00 → Mon 17:00
        ("2026-04-18 00:00:00", "2026-04-20 17:00:00"),  # Sat midnight → Mon 17:00
    ],
)
def test_locking_table_worked_examples(submitted, locked):
    at = datetime.fromisoformat(submitted).replace(tzinfo=CHICAGO)
    assert refund_locked_at(at) == datetime.fromisoformat(locked).replace(tzinfo=CHICAGO)


def test_locking_across_dst_changes_keeps_17_local():
    # Fri 2026-03-06 18:00 CST → Mon 2026-03-09 17:00 CDT (DST began Sun 03-08): 22:00 UTC, not 23:00.
    spring = refund_locked_at(datetime(2026, 3, 6, 18, 0, tzinfo=CHICAGO))
    assert spring.isoformat() == "2026-03-09T17:00:00-05:00"
    # Fri 2026-10-30 17:30 CDT → Mon 2026-11-02 17:00 CST (DST ended Sun 11-01).
    autumn = refund_locked_at(datetime(2026, 10, 30, 17, 30, tzinfo=CHICAGO))
    assert autumn.isoformat() == "2026-11-02T17:00:00-06:00"
    # A UTC submission is read in Chicago time: Tue 22:30 UTC is 17:30 CDT → Wed.
    from zoneinfo import ZoneInfo

    assert refund_locked_at(datetime(2026, 4, 14, 22, 30, tzinfo=ZoneInfo("UTC"))).date().isoformat() == "2026-04-15"


def test_locked_at_over_http_across_dst(sandbox, client):
    sandbox.clock.freeze(datetime(2026, 3, 6, 18, 0, tzinfo=CHICAGO))
    order_id = next(i for i in sandbox.store.ids() if sandbox.store.find(i)["status"] == "order_confirmed"
                    and not any(r["status"] == "draft" for r in sandbox.store.find(i)["refunds"]))
    order = client.refund(order_id, sandbox.store.find(order_id)["merchant_order_id"], "1.00")
    assert order.active_refund.locked_at.isoformat() == "2026-03-09T17:00:00-05:00"


def test_demo_data_is_deterministic_and_consistent():
    now = datetime(2026, 4, 14, 9, 0, tzinfo=CHICAGO)
    with run_sandbox(orders=200, now=now) as a, run_sandbox(orders=200, now=now) as b:
        assert [a.store.find(i) for i in a.store.ids()] == [b.store.find(i) for i in b.store.ids()]
        statuses = {a.store.find(i)["status"] for i in a.store.ids()}
        assert statuses >= {"order_created", "terms_selected", "order_placed", "order_confirmed", "order_canceled", "refund"}
        for order_id in a.store.ids():
            o = a.store.find(order_id)
            assert o["order_total"] == o["cart_amount"] + o["tax_amount"] + o["shipping_amount"] - o["discount_amount"]
        assert any(r["status"] == "draft" for i in a.store.ids() for r in a.store.find(i)["refunds"])


def test_wire_format_is_the_documented_envelope(sandbox):
    url = f"{sandbox.base_url}/find_order/BO-DEMO-000001"
    raw = requests.get(url, auth=(sandbox.public_key, sandbox.env()["BACKD_SECRET_KEY"]), timeout=5)
    body = raw.json()
    assert set(body) == {"data", "message", "status"}
    assert body["status"] == {"type": "success", "code": 200, "error": False}
    assert isinstance(body["data"]["order_total"], (int, float))  # numbers, never strings
    assert len(body["data"]["create_date"]) == 19 and "refunds" in body["data"]
    query = requests.get(f"{sandbox.base_url}/find_order", params={"backd_order_id": "BO-DEMO-000001"},
                         auth=(sandbox.public_key, sandbox.env()["BACKD_SECRET_KEY"]), timeout=5)
    assert query.json()["data"]["backd_order_id"] == "BO-DEMO-000001"


def test_errors_use_the_envelope_and_codes(sandbox):
    auth = (sandbox.public_key, sandbox.env()["BACKD_SECRET_KEY"])
    unauth = requests.get(f"{sandbox.base_url}/find_order/BO-DEMO-000001", timeout=5)
    assert unauth.status_code == 401 and unauth.json()["status"]["error"] is True
    bad = requests.post(f"{sandbox.base_url}/refund", data="{not json", auth=auth, timeout=5,
                        headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    string_amount = requests.post(f"{sandbox.base_url}/refund", auth=auth, timeout=5,
                                  json={"backd_order_id": "BO-DEMO-000001", "merchant_order_id": "M-100001", "refund_amount": "5"})
    assert string_amount.status_code == 400 and "JSON number" in string_amount.json()["message"]
    get_order_placed = requests.get(f"{sandbox.base_url}/order_placed", auth=auth, timeout=5)
    assert get_order_placed.status_code == 405


def test_delete_refund_needs_a_json_body(sandbox):
    auth = (sandbox.public_key, sandbox.env()["BACKD_SECRET_KEY"])
    response = requests.delete(f"{sandbox.base_url}/refund", auth=auth, timeout=5)
    assert response.status_code == 400


def test_fault_profile_counts_and_mutation_log(sandbox):
    sandbox.set_faults(FaultProfile(error_before=0.5, seed=3))
    client = sandbox.client(max_retries=0)
    outcomes = []
    for _ in range(40):
        try:
            client.find_order("BO-DEMO-000001")
            outcomes.append("ok")
        except Exception:
            outcomes.append("fault")
    assert sandbox.stats()["faults"]["error_before"] == outcomes.count("fault") > 5
    assert sandbox.mutations == []


def test_fault_profile_parses_cli_spec():
    profile = FaultProfile.parse("latency_ms=25,drop_after_apply=0.02,seed=9")
    assert (profile.latency_ms, profile.drop_after_apply, profile.seed) == (25.0, 0.02, 9)
    with pytest.raises(ValueError, match="unknown fault"):
        FaultProfile.parse("explode=1")


def test_keep_alive_reuses_connections(sandbox, client):
    opened = sandbox.connections_opened
    for _ in range(10):
        client.find_order("BO-DEMO-000001")
    with pytest.raises(Exception):
        client.find_order("BO-NOPE")  # an error answer keeps the connection too
    client.cancel_order(next(i for i in sandbox.store.ids() if sandbox.store.find(i)["status"] == "order_placed"))
    for _ in range(10):
        client.find_order("BO-DEMO-000001")
    assert sandbox.connections_opened == opened + 1
