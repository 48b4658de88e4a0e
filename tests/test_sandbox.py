"""The sandbox itself: the locking table, demo data, faults, the rate limit, its hooks and the wire format it speaks."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
import requests

from backd_ops.sandbox import FaultProfile, refund_locked_at, run_sandbox
from backd_ops.sandbox.faults import FaultInjector
from backd_ops.sandbox.ratelimit import TokenBucket, retry_after_text
from backd_ops.sandbox.remote import RemoteSandbox, spawn_sandbox, stop_sandbox
from backd_ops.locking import CHICAGO

from .conftest import TUESDAY_MORNING, order_in_status


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


# -- slow: the write lands after the client gave up -----------------------------------------------------------------
def _auth(sandbox) -> tuple[str, str]:
    return sandbox.public_key, sandbox.env()["BACKD_SECRET_KEY"]


def test_fault_profile_parses_slow_and_rate_limit():
    profile = FaultProfile.parse("slow=0.1,slow_ms=800,rate_limit_rps=50,rate_limit_burst=10")
    assert (profile.slow, profile.slow_ms, profile.rate_limit_rps, profile.bucket_burst) == (0.1, 800.0, 50.0, 10.0)
    assert FaultProfile(rate_limit_rps=50).bucket_burst == 10 and FaultProfile(rate_limit_rps=4).bucket_burst == 2
    assert FaultProfile.parse(profile.spec()) == profile and FaultProfile().spec() == ""
    with pytest.raises(ValueError, match="rate_limit_burst"):
        FaultProfile(rate_limit_rps=5, rate_limit_burst=0.5)
    with pytest.raises(ValueError, match="slow"):
        FaultProfile(slow=2)


def test_slow_write_is_applied_after_the_client_timed_out(sandbox):
    order_id = order_in_status(sandbox, "order_confirmed", with_active_refund=False)
    body = {"backd_order_id": order_id, "merchant_order_id": sandbox.store.find(order_id)["merchant_order_id"], "refund_amount": 12.5}
    sandbox.set_faults(FaultProfile(slow_ms=600), endpoint="refund")
    sandbox.script_faults("refund", ["slow"])
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        requests.post(f"{sandbox.base_url}/refund", json=body, auth=_auth(sandbox), timeout=(1.0, 0.2))
    assert sandbox.writes_per_order("refund")[order_id] == 0  # not yet: Backd is still "working"
    while not sandbox.writes_per_order("refund")[order_id] and time.monotonic() - started < 3:
        time.sleep(0.02)
    assert time.monotonic() - started >= 0.6
    after = requests.get(f"{sandbox.base_url}/find_order/{order_id}", auth=_auth(sandbox), timeout=5).json()["data"]
    assert [(r["amount"], r["status"]) for r in after["refunds"]] == [(12.5, "draft")]
    assert sandbox.writes_per_order("refund")[order_id] == 1 and sandbox.stats()["faults"] == {"slow": 1}


def test_slow_fault_works_on_any_endpoint_and_scripts_take_the_profile_delay(sandbox):
    sandbox.set_faults(FaultProfile(slow=1.0, slow_ms=150), endpoint="find_order")
    started = time.monotonic()
    assert requests.get(f"{sandbox.base_url}/find_order/BO-DEMO-000001", auth=_auth(sandbox), timeout=5).status_code == 200
    assert time.monotonic() - started >= 0.15
    sandbox.script_faults("cancel_order", ["slow"])  # no profile for cancel_order: the default second
    assert sandbox.app.faults.draw("cancel_order").slow_s == 1.0
    sandbox.script_faults("find_order", ["slow", None])  # None: exactly no fault, then the profile again
    assert [sandbox.app.faults.draw("find_order").slow_s for _ in range(3)] == [0.15, 0.0, 0.15]
    assert sandbox.stats()["faults"]["slow"] == 4


# -- the token bucket ------------------------------------------------------------------------------------------------
def test_token_bucket_arithmetic():
    now = [100.0]
    bucket = TokenBucket(20, 3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.05)  # empty: one token is 1/20 s away
    now[0] += 0.03
    assert bucket.take() == pytest.approx(0.02)  # 0.6 of a token came back
    now[0] += 10
    assert [bucket.take() for _ in range(4)][3] > 0  # refills to the burst, never above it
    assert (retry_after_text(0.02), retry_after_text(0.0201), retry_after_text(0.0000001), retry_after_text(3)) == ("0.02", "0.021", "0.001", "3")


def test_buckets_are_per_public_key_and_per_profile_scope():
    faults = FaultInjector()
    faults.set(FaultProfile(rate_limit_rps=0.001, rate_limit_burst=1))
    assert faults.admit("find_order", "pk_a") == 0.0 and faults.admit("refund", "pk_a") > 0  # "*": one bucket
    assert faults.admit("find_order", "pk_b") == 0.0  # another key, another bucket
    faults.set(FaultProfile(rate_limit_rps=0.001, rate_limit_burst=1), endpoint="refund")
    assert faults.admit("refund", "pk_a") == 0.0  # refund's own profile: its own bucket
    faults.set(FaultProfile(rate_limit_rps=0.001, rate_limit_burst=1))
    assert faults.admit("find_order", "pk_a") == 0.0  # a new profile starts full
    assert faults.counts["rate_limited_bucket"] == 1


def test_a_burst_over_the_rate_limit_gets_429_with_retry_after(sandbox):
    sandbox.set_faults(FaultProfile(rate_limit_rps=20, rate_limit_burst=5))
    url = f"{sandbox.base_url}/find_order/BO-DEMO-000001"
    with requests.Session() as session:
        session.auth = _auth(sandbox)
        answers = [session.get(url, timeout=5) for _ in range(15)]
        codes = [a.status_code for a in answers]
        assert codes[:5] == [200] * 5 and codes.count(429) >= 8
        refused = answers[-1]
        while refused.status_code != 429:  # a token that came back since: Retry-After must be from the latest answer
            refused = session.get(url, timeout=5)
            codes.append(refused.status_code)
        assert refused.json()["status"] == {"type": "error", "code": 429, "error": True} and refused.json()["data"] is None
        retry_after = float(refused.headers["Retry-After"])
        assert 0 < retry_after <= 0.051
        assert session.get(f"http://{sandbox.host}:{sandbox.port}/_sandbox/stats", timeout=5).status_code == 200  # hooks: no limit
        time.sleep(retry_after)
        assert session.get(url, timeout=5).status_code == 200  # waiting Retry-After is enough
    stats = sandbox.stats()
    assert stats["faults"]["rate_limited_bucket"] == codes.count(429) == stats["requests"]["find_order rate_limited_bucket"]


def test_a_client_pacing_under_the_rate_limit_is_never_refused(sandbox):
    sandbox.set_faults(FaultProfile(rate_limit_rps=50))  # default burst: 10
    url, interval_s = f"{sandbox.base_url}/find_order/BO-DEMO-000001", 1 / 45  # 90% of the rate
    codes, next_at, deadline = [], time.monotonic(), time.monotonic() + 2.0
    with requests.Session() as session:
        session.auth = _auth(sandbox)
        while time.monotonic() < deadline:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at, time.monotonic()) + interval_s  # like the client's pacer: no catching up
            codes.append(session.get(url, timeout=5).status_code)
    assert len(codes) >= 80 and codes.count(429) == 0


def test_a_client_pacing_over_the_rate_limit_gets_just_the_rate(sandbox):
    sandbox.set_faults(FaultProfile(rate_limit_rps=50, rate_limit_burst=2))
    url, interval_s = f"{sandbox.base_url}/find_order/BO-DEMO-000001", 1 / 100  # twice the rate
    codes, next_at, started = [], time.monotonic(), time.monotonic()
    with requests.Session() as session:
        session.auth = _auth(sandbox)
        while time.monotonic() - started < 0.8:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at, time.monotonic()) + interval_s
            codes.append(session.get(url, timeout=5).status_code)
    elapsed_s, admitted = time.monotonic() - started, codes.count(200)
    assert admitted <= 2 + 50 * elapsed_s  # the burst, then the rate: never more
    assert admitted >= min(len(codes), 0.8 * 50 * elapsed_s) and codes.count(429) >= 10  # and not much less


# -- reset and the hooks over HTTP -----------------------------------------------------------------------------------
def test_reset_gives_back_a_fresh_book_on_the_same_url_and_keys(sandbox, client):
    original = [sandbox.store.find(i) for i in sandbox.store.ids()]
    order_id = order_in_status(sandbox, "order_placed")
    client.cancel_order(order_id)
    sandbox.set_faults(FaultProfile(error_before=1.0), endpoint="refund")
    sandbox.script_faults("confirm_order", ["drop_after_apply"])
    base_url = sandbox.base_url
    sandbox.reset(orders=60, seed=42, now=TUESDAY_MORNING)
    assert [sandbox.store.find(i) for i in sandbox.store.ids()] == original  # the same book as at the start
    assert (sandbox.mutations, sandbox.requests, sandbox.base_url) == ([], [], base_url)
    assert sandbox.stats() == {"requests": {}, "faults": {}, "mutations": {}}
    found = requests.get(f"{base_url}/find_order/{order_id}", auth=_auth(sandbox), timeout=5)  # same keys still work
    assert found.json()["data"]["status"] == "order_placed"
    hooks = f"http://{sandbox.host}:{sandbox.port}/_sandbox"
    answer = requests.post(f"{hooks}/reset", json={"orders": 5, "seed": 1, "now": None}, auth=_auth(sandbox), timeout=5)
    assert answer.status_code == 200 and answer.json()["data"]["orders"] == 5 and answer.json()["data"]["frozen"] is False
    assert len(sandbox.store) == 5 and not sandbox.clock.frozen


def test_remote_sandbox_drives_every_hook(sandbox):
    remote = RemoteSandbox(sandbox.base_url, *_auth(sandbox))
    assert remote.reset(now=TUESDAY_MORNING) == 60  # orders and seed: the current book's
    remote.set_faults(FaultProfile(rate_limit_rps=1000), endpoint="refund")
    assert sandbox.app.faults.profile_for("refund").rate_limit_rps == 1000
    order = next(o for o in remote.orders() if o["status"] == "order_confirmed" and not o["refunds"])
    remote.script_faults("refund", ["error_after_apply"])
    refund = {"backd_order_id": order["backd_order_id"], "merchant_order_id": order["merchant_order_id"], "refund_amount": 1}
    assert requests.post(f"{sandbox.base_url}/refund", json=refund, auth=_auth(sandbox), timeout=5).status_code == 500
    [mutation] = remote.mutations()
    assert (mutation.seq, mutation.endpoint, mutation.detail["amount"], mutation.at) == (1, "refund", "1.00", TUESDAY_MORNING)
    assert remote.writes_per_order("refund") == {order["backd_order_id"]: 1}
    assert remote.order(order["backd_order_id"])["refunds"][0]["amount"] == 1
    assert remote.advance_clock(hours=8) == remote.freeze_clock(datetime(2026, 4, 14, 17, 0, tzinfo=CHICAGO))
    assert order["backd_order_id"] in remote.process_locked_refunds()  # with the demo book's own old drafts
    assert remote.order(order["backd_order_id"])["status"] == "refund"
    assert remote.stats()["faults"] == {"error_after_apply": 1}
    for bad in ({"endpoint": "refund", "faults": ["explode"]}, {"endpoint": "refund"}):
        assert requests.post(f"{remote.hooks_url}/script_faults", json=bad, auth=_auth(sandbox), timeout=5).status_code == 400
    with pytest.raises(Exception, match="400.*no UTC offset|no UTC offset"):
        remote._call("POST", "freeze_clock", {"now": "2026-04-14T09:00:00"})
    assert requests.get(f"{remote.hooks_url}/orders", timeout=5).status_code == 401  # same Basic auth as the API


def test_remote_sandbox_in_a_subprocess():
    proc, remote = spawn_sandbox(orders=20, now=TUESDAY_MORNING, rate_limit_rps=5, burst=2)
    try:
        auth = (remote.public_key, remote.env()["BACKD_SECRET_KEY"])
        codes = [requests.get(f"{remote.base_url}/find_order/BO-DEMO-000001", auth=auth, timeout=5).status_code for _ in range(4)]
        assert 429 in codes  # --rate-limit 5 --burst 2
        assert remote.advance_clock() == TUESDAY_MORNING  # --now froze it
        assert remote.reset(orders=10, seed=7, now=TUESDAY_MORNING) == 10 and remote.mutations() == []
        order = next(o for o in remote.orders() if o["status"] == "order_confirmed" and not o["refunds"])
        remote.script_faults("refund", ["drop_after_apply"])
        refund = {"backd_order_id": order["backd_order_id"], "merchant_order_id": order["merchant_order_id"], "refund_amount": 3}
        with pytest.raises(requests.ConnectionError):  # the rate limit went with the reset; the drop did not
            requests.post(f"{remote.base_url}/refund", json=refund, auth=auth, timeout=5)
        assert [(m.endpoint, m.backd_order_id) for m in remote.mutations()] == [("refund", order["backd_order_id"])]
        assert remote.order(order["backd_order_id"])["refunds"][0]["status"] == "draft"
    finally:
        assert stop_sandbox(proc) == 0
