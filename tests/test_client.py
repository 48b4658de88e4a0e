"""BackdClient against the sandbox over real HTTP: every endpoint, error mapping, retries, exact amounts, no secrets."""

from __future__ import annotations

import json
import logging
import socket
import time
from decimal import Decimal

import pytest
import requests

from backd_ops import (
    AuthenticationError,
    BackdClient,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    OrderStateError,
    RateLimitError,
    ServerError,
)
from backd_ops.config import BASE_URLS
from backd_ops.errors import BackdError
from backd_ops.sandbox import FaultProfile, run_sandbox

from .conftest import order_in_status

BILLING = {
    "name": {"first": "Joe", "last": "Doe"},
    "company_name": "Big Business",
    "address": {"line1": "123 Main St", "line2": "Floor 1", "city": "Austin", "state": "TX", "zipcode": "78704", "country": "USA"},
    "phone_number": "4153334567",
    "email": "joedoe@example.com",
}
ITEMS = [{"display_name": "Widget", "sku": "W-1", "unit_price": "45.00", "qty": 2}]


def test_full_status_flow_from_create_to_refund(sandbox, client):
    created = client.create_order(
        order_total="100.00", cart_amount="90.00", tax_amount="7.00", shipping_amount="3.00", merchant_order_id="M-FLOW",
        billing=BILLING, items=ITEMS, mode={"type": "redirect", "order_success_url": "https://m.example/ok"},
    )
    assert created.status == "order_created"
    assert created.customer_url and created.backd_order_id in created.customer_url
    sandbox.select_terms(created.backd_order_id)
    assert client.find_order(created.backd_order_id).status == "terms_selected"
    placed = client.order_placed(created.backd_order_id, "M-FLOW")
    assert placed.status == "order_placed"
    updated = client.update_order(created.backd_order_id, "M-FLOW", merchant_order_status="shipped", order_total="110.00", cart_amount="100.00")
    assert (updated.order_total, updated.merchant_order_status) == (Decimal("110.00"), "shipped")
    assert client.confirm_order(created.backd_order_id, "M-FLOW").status == "order_confirmed"
    refunded = client.refund(created.backd_order_id, "M-FLOW", "25.10")
    assert refunded.active_refund.amount == Decimal("25.10")
    sandbox.clock.advance(hours=9)  # past Tuesday 17:00: the request locks
    assert created.backd_order_id in sandbox.process_locked_refunds()
    final = client.find_order(created.backd_order_id)
    assert final.status == "refund" and final.refunds[0].status == "processed"


def test_cancel_order_and_its_documented_response(sandbox, client):
    order_id = order_in_status(sandbox, "order_placed")
    canceled = client.cancel_order(order_id)
    assert canceled.status == "order_canceled" and canceled.is_canceled
    assert "merchant_order_status" not in canceled.raw


def test_refund_replacement_and_delete(sandbox, client):
    order_id = order_in_status(sandbox, "order_confirmed", with_active_refund=False)
    merchant_id = client.find_order(order_id).merchant_order_id
    client.refund(order_id, merchant_id, "10.00")
    replaced = client.refund(order_id, merchant_id, "20.00")
    assert [(r.amount, r.status) for r in replaced.refunds] == [(Decimal("10.00"), "declined"), (Decimal("20.00"), "draft")]
    deleted = client.delete_refund(order_id, merchant_id)
    assert [r.status for r in deleted.refunds] == ["declined", "declined"] and deleted.active_refund is None
    with pytest.raises(OrderStateError, match="no active refund"):
        client.delete_refund(order_id, merchant_id)


def test_locked_refund_cannot_be_replaced_or_deleted(sandbox, client):
    order_id = order_in_status(sandbox, "order_confirmed", with_active_refund=False)
    merchant_id = client.find_order(order_id).merchant_order_id
    order = client.refund(order_id, merchant_id, "5.00")
    assert order.active_refund.locked_at.isoformat() == "2026-04-14T17:00:00-05:00"  # Tue 09:00 → Tue 17:00
    sandbox.clock.advance(hours=8)  # exactly 17:00: locked
    with pytest.raises(OrderStateError, match="locked"):
        client.refund(order_id, merchant_id, "6.00")
    with pytest.raises(OrderStateError, match="locked"):
        client.delete_refund(order_id, merchant_id)


@pytest.mark.parametrize(
    ("call", "status"),
    [
        ("order_placed", "order_placed"),
        ("confirm_order", "order_confirmed"),
        ("confirm_order", "terms_selected"),
        ("cancel_order", "order_confirmed"),
        ("cancel_order", "order_canceled"),
        ("update_order", "order_confirmed"),
        ("refund", "order_placed"),
        ("refund", "order_canceled"),
        ("delete_refund", "order_placed"),
    ],
)
def test_disallowed_states_are_conflicts(sandbox, client, call, status):
    order_id = order_in_status(sandbox, status)
    merchant_id = sandbox.store.find(order_id)["merchant_order_id"]
    args = {
        "order_placed": (order_id, "M-OTHER"),
        "confirm_order": (order_id,),
        "cancel_order": (order_id,),
        "update_order": (order_id, merchant_id),
        "refund": (order_id, merchant_id, "1.00"),
        "delete_refund": (order_id, merchant_id),
    }[call]
    before = len(sandbox.mutations)
    with pytest.raises(OrderStateError) as info:
        getattr(client, call)(*args)
    assert info.value.status == 409 and info.value.backd_order_id == order_id
    assert not info.value.may_have_been_applied
    assert len(sandbox.mutations) == before


def test_refund_amount_validation(sandbox, client):
    order_id = order_in_status(sandbox, "order_confirmed", with_active_refund=False)
    order = client.find_order(order_id)
    with pytest.raises(InvalidRequestError, match="exceeds the refundable"):
        client.refund(order_id, order.merchant_order_id, order.order_total + Decimal("0.01"))
    with pytest.raises(ValueError, match="more than 2 decimals"):
        client.refund(order_id, order.merchant_order_id, "1.005")
    with pytest.raises(InvalidRequestError, match="does not match"):
        client.refund(order_id, "M-WRONG", "1.00")


def test_update_increase_limit(sandbox, client):
    order_id = order_in_status(sandbox, "order_placed")
    order = client.find_order(order_id)
    with pytest.raises(InvalidRequestError, match="agreed limit"):
        client.update_order(order_id, order.merchant_order_id, order_total=order.order_total + Decimal("1000.01"))
    assert client.update_order(order_id, order.merchant_order_id, order_total=order.order_total - 1).order_total == order.order_total - 1


def test_update_order_rejects_undocumented_fields(client):
    with pytest.raises(ValueError, match="does not take"):
        client.update_order("BO-1", "M-1", status="order_confirmed")


def test_auth_failure_and_not_found(sandbox, client):
    bad = BackdClient(sandbox.public_key, "sk_wrong", base_url=sandbox.base_url)
    with pytest.raises(AuthenticationError) as info:
        bad.find_order("BO-DEMO-000001")
    assert info.value.status == 401
    with pytest.raises(NotFoundError) as info:
        client.find_order("BO-NOPE")
    assert info.value.status == 404 and "BO-NOPE" in str(info.value)


def test_hostile_id_stays_in_the_path_segment(client):
    with pytest.raises(NotFoundError):
        client.find_order("../../etc/passwd")
    with pytest.raises(ValueError, match="blank"):
        client.find_order("   ")


def test_amounts_that_drift_as_floats_stay_exact():
    with run_sandbox(orders=20, update_increase_limit=Decimal("1e9")) as sandbox:
        _check_amounts_stay_exact(sandbox, sandbox.client())


def _check_amounts_stay_exact(sandbox, client):
    order_id = order_in_status(sandbox, "order_placed")
    merchant_id = client.find_order(order_id).merchant_order_id
    drifting = 0.1 + 0.2  # 0.30000000000000004
    order = client.update_order(order_id, merchant_id, order_total="1234567.89", cart_amount=1234567.59, tax_amount=drifting, discount_amount=Decimal("0.00"))
    assert order.order_total == Decimal("1234567.89") and order.cart_amount == Decimal("1234567.59")
    assert order.tax_amount == Decimal("0.30")
    stored = sandbox.store.find(order_id)
    assert stored["order_total"] == Decimal("1234567.89") and stored["tax_amount"] == Decimal("0.30")
    cents = [Decimal("0.07"), Decimal("19.99"), Decimal("100.10")]
    confirmed = client.confirm_order(order_id)
    assert confirmed.status == "order_confirmed"
    for amount in cents:
        assert client.refund(order_id, merchant_id, amount).active_refund.amount == amount


# -- retries ---------------------------------------------------------------------------------------------------
def test_get_is_retried_on_5xx_reset_and_429(sandbox, client):
    sandbox.script_faults("find_order", ["error_before", "reset_before", "rate_limit"])
    order = client.find_order("BO-DEMO-000001")
    assert order.backd_order_id == "BO-DEMO-000001"
    assert [r["fault"] or r["status"] for r in sandbox.requests if r["endpoint"] == "find_order"] == [
        "error_before", "reset_before", "rate_limit", 200]


def test_get_gives_up_after_max_retries(sandbox):
    client = sandbox.client(max_retries=2, backoff_initial_s=0.01)
    sandbox.script_faults("find_order", ["error_before"] * 5)
    with pytest.raises(ServerError):
        client.find_order("BO-DEMO-000001")
    assert sum(r["endpoint"] == "find_order" for r in sandbox.requests) == 3


def test_write_is_not_retried_after_apply_then_drop(sandbox, client):
    order_id = order_in_status(sandbox, "order_placed")
    sandbox.script_faults("confirm_order", ["drop_after_apply"])
    with pytest.raises(NetworkError) as info:
        client.confirm_order(order_id)
    assert info.value.may_have_been_applied
    assert sum(r["endpoint"] == "confirm_order" for r in sandbox.requests) == 1
    assert sandbox.writes_per_order("confirm_order")[order_id] == 1
    assert client.find_order(order_id).status == "order_confirmed"  # the ambiguity is settled by reading back


def test_write_5xx_is_surfaced_as_maybe_applied_not_retried(sandbox, client):
    order_id = order_in_status(sandbox, "order_placed")
    sandbox.script_faults("cancel_order", ["error_after_apply"])
    with pytest.raises(ServerError) as info:
        client.cancel_order(order_id)
    assert info.value.may_have_been_applied and info.value.status == 500
    assert sum(r["endpoint"] == "cancel_order" for r in sandbox.requests) == 1


def test_write_429_is_retried_after_retry_after(sandbox, client):
    order_id = order_in_status(sandbox, "order_placed")
    sandbox.set_faults(FaultProfile(retry_after_s=0.3), endpoint="cancel_order")
    sandbox.script_faults("cancel_order", ["rate_limit"])
    started = time.monotonic()
    assert client.cancel_order(order_id).status == "order_canceled"
    assert time.monotonic() - started >= 0.3
    assert sandbox.writes_per_order("cancel_order")[order_id] == 1


def test_429_gives_retry_after_on_the_error(sandbox):
    client = sandbox.client(max_retries=0)
    sandbox.script_faults("find_order", ["rate_limit"])
    with pytest.raises(RateLimitError) as info:
        client.find_order("BO-DEMO-000001")
    assert info.value.retry_after == 1.0


def test_every_attempt_is_paced_retries_too(sandbox):
    client = sandbox.client(max_rps=10, backoff_initial_s=0.001)
    sandbox.script_faults("find_order", ["error_before", "error_before"])
    client.find_order("BO-DEMO-000001")
    arrivals = [r["at"] for r in sandbox.requests if r["endpoint"] == "find_order"]
    assert len(arrivals) == 3 and all(b - a >= 0.1 * 0.9 for a, b in zip(arrivals, arrivals[1:]))


def test_a_429_pauses_the_other_workers_even_when_it_is_not_retried(sandbox):
    client = sandbox.client(max_retries=0)
    sandbox.set_faults(FaultProfile(retry_after_s=0.5), endpoint="find_order")
    sandbox.script_faults("find_order", ["rate_limit"])
    with pytest.raises(RateLimitError):
        client.find_order("BO-DEMO-000001")
    refused_at = time.monotonic()
    client.find_order("BO-DEMO-000002")
    assert time.monotonic() - refused_at >= 0.45


def test_connection_refused_is_not_applied():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = BackdClient("pk", "sk_never_listening", base_url=f"http://127.0.0.1:{port}/v1/backd/bnpl/api", max_retries=1, timeout=(0.5, 0.5))
    with pytest.raises(NetworkError) as info:
        client.cancel_order("BO-1")
    assert info.value.may_have_been_applied is False


# -- configuration and secrets -----------------------------------------------------------------------------------
def test_environment_maps_to_documented_base_urls():
    assert BackdClient("pk", "sk").base_url == BASE_URLS["sandbox"]
    prod = BackdClient("pk", "sk", environment="production")
    assert prod.base_url == "https://service.bnpl.backd.com/v1/backd/bnpl/api" and prod.is_production


def test_from_env_reads_dotenv_and_environment(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("BACKD_PUBLIC_KEY=pk_file\nBACKD_SECRET_KEY=sk_file_secret\nBACKD_ENVIRONMENT=production\n")
    monkeypatch.chdir(tmp_path)
    for name in ("BACKD_PUBLIC_KEY", "BACKD_SECRET_KEY", "BACKD_ENVIRONMENT", "BACKD_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BACKD_ENVIRONMENT", "sandbox")  # the environment wins over the file
    client = BackdClient.from_env()
    assert (client.public_key, client.environment) == ("pk_file", "sandbox")
    assert "sk_file_secret" not in repr(client) and "sk_file_secret" not in repr(client.settings)


def test_max_rps_comes_from_the_argument_or_backd_max_rps(monkeypatch, tmp_path):
    import backd_ops
    from backd_ops.errors import ConfigurationError

    monkeypatch.chdir(tmp_path)
    for name in ("BACKD_ENVIRONMENT", "BACKD_BASE_URL", "BACKD_MAX_RPS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BACKD_PUBLIC_KEY", "pk_env")
    monkeypatch.setenv("BACKD_SECRET_KEY", "sk_env")
    assert backd_ops.connect().max_rps is None and backd_ops.connect().limiter.rate_rps is None  # adaptive, unpaced
    monkeypatch.setenv("BACKD_MAX_RPS", "25")
    assert backd_ops.connect().max_rps == 25 and backd_ops.connect(max_rps=10).max_rps == 10
    monkeypatch.setenv("BACKD_MAX_RPS", "fast")
    with pytest.raises(ConfigurationError, match="BACKD_MAX_RPS"):
        backd_ops.connect()
    with pytest.raises(ConfigurationError, match="max_rps"):
        BackdClient("pk", "sk", max_rps=0)


def test_missing_keys_say_where_to_put_them(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in ("BACKD_PUBLIC_KEY", "BACKD_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="BACKD_SECRET_KEY"):
        BackdClient.from_env()


def test_secret_never_in_repr_errors_or_logs(sandbox, client, secret, caplog):
    caplog.set_level(logging.DEBUG)
    texts = [repr(client), str(client.settings), repr(client._session.auth)]
    sandbox.script_faults("cancel_order", ["error_after_apply"])
    for call in (lambda: client.find_order("BO-NOPE"), lambda: client.cancel_order(order_in_status(sandbox, "order_placed")),
                 lambda: BackdClient(sandbox.public_key, secret + "x", base_url=sandbox.base_url).find_order("BO-1")):
        with pytest.raises(BackdError) as info:
            call()
        texts += [str(info.value), repr(info.value), str(info.value.body)]
    texts.append(caplog.text)
    import base64

    basic = base64.b64encode(f"{sandbox.public_key}:{secret}".encode()).decode()
    assert caplog.text  # the DEBUG log did capture requests
    for text in texts:
        assert secret not in text and basic not in text


def test_200_with_error_flag_is_an_error():
    from backd_ops.client import _parse_response

    response = requests.Response()
    response.status_code = 200
    response._content = b'{"data": null, "message": "order is locked", "status": {"type": "error", "code": 409, "error": true}}'
    with pytest.raises(OrderStateError, match="order is locked"):
        _parse_response(response, is_write=True, endpoint="refund", backd_order_id="BO-1")


def test_refunds_beside_data_are_read():
    from backd_ops.models import Order

    order = Order.from_wire({"backd_order_id": "BO-1", "status": "order_confirmed", "order_total": 100},
                            refunds=[{"amount": 12.5, "status": "draft", "locked_at": "2026-04-14 17:00:00"}])
    assert order.active_refund.amount == Decimal("12.50")


def test_the_adapter_reuses_one_pool_per_host_and_recovers_after_close(sandbox, client):
    """The transport adapter remembers the host's pool (no per-call proxy or pool lookup), keeps no cookies, and
    after ``close()`` (the pool manager cleared) fetches a fresh pool instead of failing on the closed one."""
    first = sandbox.store.ids()[0]
    client.find_order(first)
    pools = dict(client._adapter._pools)
    assert len(pools) == 1
    pool = next(iter(pools.values()))
    for order_id in sandbox.store.ids()[:5]:
        client.find_order(order_id)
    assert client._adapter._pools == pools and pool.num_requests >= 6  # the same pool carried every call
    client._adapter.close()
    assert client.find_order(first).backd_order_id == first
    assert next(iter(client._adapter._pools.values())) is not pool
    response = client._adapter.send(client._prepare("GET", f"{client.base_url}/find_order/{first}", None), timeout=(5, 5))
    assert response.headers.get("content-type", "").startswith("application/json")  # case-insensitive, as requests'
    assert len(response.cookies) == 0 and response.json()["data"]["backd_order_id"] == first


def test_a_declared_charset_is_honoured_and_an_undeclared_json_encoding_is_detected():
    """The lean adapter decodes as requests does: the response's charset, else the JSON's own encoding (RFC 8259)."""
    import json
    import threading

    body = {"status": {"error": False, "code": 200}, "refunds": [],
            "data": {"backd_order_id": "BO-1", "merchant_order_id": "Bestellung-Müller", "status": "order_confirmed", "order_total": 100.1}}
    cases = [(b"Content-Type: application/json; charset=iso-8859-1\r\n", json.dumps(body, ensure_ascii=False).encode("latin-1")),
             (b"", json.dumps(body).encode("utf-16"))]
    for header, payload in cases:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def answer() -> None:
            conn, _ = server.accept()
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n" + header + b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
            conn.close()

        threading.Thread(target=answer, daemon=True).start()
        client = BackdClient("pk_test_charset", "sk_test_charset", base_url=f"http://127.0.0.1:{server.getsockname()[1]}/v1", max_retries=0)
        try:
            assert client.find_order("BO-1").merchant_order_id == "Bestellung-Müller"
        finally:
            client.close()
            server.close()


@pytest.mark.parametrize(("code", "expected", "may_have_been_applied"), [
    (404, 404, False), ("422", 422, False), (None, 400, False), ("E42", 502, True), (200, 502, True),
])
def test_a_200_flagged_as_an_error_maps_any_code_to_an_error_of_ours(code, expected, may_have_been_applied):
    """A code we cannot read (not a number from 400 to 599) is an answer we cannot read: ambiguous on a write."""
    from backd_ops.client import _parse_response

    response = requests.Response()
    response.status_code, response.url = 200, "http://127.0.0.1/v1/backd/bnpl/api/refund"
    response._content = json.dumps({"status": {"error": True, "code": code}, "message": "no"}).encode()
    with pytest.raises(BackdError) as info:
        _parse_response(response, is_write=True, endpoint="refund", backd_order_id="BO-1")
    assert info.value.status == expected and info.value.may_have_been_applied is may_have_been_applied


def test_a_503_with_retry_after_is_waited_for_on_a_read():
    from backd_ops._retry import retry_delay_s
    from backd_ops.client import _parse_response

    response = requests.Response()
    response.status_code, response.url = 503, "http://127.0.0.1/v1/backd/bnpl/api/find_order/BO-1"
    response.headers["Retry-After"] = "3"
    response._content = b"{}"
    with pytest.raises(ServerError) as info:
        _parse_response(response, is_write=False, endpoint="find_order", backd_order_id="BO-1")
    assert info.value.retry_after == 3.0 and retry_delay_s(info.value, 0) == 3.0
