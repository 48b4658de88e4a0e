"""Secrets and environments: every artifact of a full flow is scanned; wrong keys and environments fail clearly, with no writes."""

from __future__ import annotations

import logging
import pickle

import pandas as pd
import pytest

import backd_ops
from backd_ops import AuthenticationError, BackdError, ProductionGuardError
from backd_ops.cli import main
from backd_ops.sandbox import FaultProfile, run_sandbox
from backd_ops.sandbox.demo import DEMO_COLUMN_MAP, demo_ledger

from .secret_scan import find_secrets, needles

OTHER_SECRET = "sk_sandbox_other_secret_value"


def test_every_artifact_of_a_full_flow_is_free_of_the_secret(tmp_path, monkeypatch, capsys):
    log_file = tmp_path / "debug.log"
    handler = logging.FileHandler(log_file)
    logging.getLogger("backd_ops").addHandler(handler)
    logging.getLogger("backd_ops").setLevel(logging.DEBUG)
    texts: list[str] = []
    try:
        with run_sandbox(orders=120, secret_key=OTHER_SECRET) as sb:
            for name, value in sb.env().items():
                monkeypatch.setenv(name, value)
            client = backd_ops.connect(timeout=(1.0, 1.0))
            texts += [repr(client), str(client.settings), repr(client._session.auth), str(vars(client))]
            orders = backd_ops.find_orders(client, sb.store.ids(), progress=False)
            confirmed = orders[(orders.status == "order_confirmed") & orders.active_refund_amount.isna()].head(10)
            frame = pd.DataFrame({"backd_order_id": confirmed.backd_order_id, "merchant_order_id": confirmed.merchant_order_id,
                                  "refund_amount": "1.00"})
            sb.set_faults(FaultProfile(error_before=0.2, drop_after_apply=0.2, error_after_apply=0.1, seed=3))
            result = backd_ops.refund_orders(client, frame, execute=True, journal=tmp_path / "journal.sqlite", progress=False,
                                              settle_window_s=1.0)
            sb.set_faults(None)
            result.to_csv(tmp_path / "result.csv")
            result.backd.to_csv(tmp_path / "result_for_people.csv")
            plan = backd_ops.refund_orders(client, frame, progress=False)
            plan.backd.save(tmp_path / "plan.json")
            monkeypatch.setenv("BACKD_OPS_USER", "maria")
            backd_ops.approve_plan(tmp_path / "plan.json", "maria", journal=tmp_path / "journal.sqlite")
            texts.append(repr(plan.attrs))
            texts.append(result.to_string())
            rows, _ = demo_ledger([sb.store.find(i) for i in sb.store.ids()])
            rec = backd_ops.reconcile(pd.DataFrame(rows), client=client, column_map=DEMO_COLUMN_MAP, progress=False)
            rec.save(tmp_path / "reports")
            texts.append(rec._repr_html_())
            for bad in (lambda: client.find_order("BO-NOPE"), lambda: client.cancel_order("BO-DEMO-000001"),
                        lambda: backd_ops.BackdClient(sb.public_key, OTHER_SECRET + "x", base_url=sb.base_url).find_order("BO-1")):
                with pytest.raises(BackdError) as info:
                    bad()
                texts += [str(info.value), repr(info.value), str(info.value.body), str(pickle.loads(pickle.dumps(info.value)))]
            assert main(["journal", "--journal", str(tmp_path / "journal.sqlite")]) == 0
            public_key = sb.public_key
    finally:
        logging.getLogger("backd_ops").removeHandler(handler)
        handler.close()
    (tmp_path / "texts.txt").write_text("\n".join(texts) + capsys.readouterr().out)
    assert log_file.stat().st_size > 1000  # the DEBUG log really recorded the requests
    assert find_secrets(tmp_path, needles(public_key, OTHER_SECRET)) == []


def test_the_scanner_finds_what_it_should(tmp_path):
    (tmp_path / "leak.txt").write_text(f"key={OTHER_SECRET}")
    pd.DataFrame({"x": [OTHER_SECRET]}).to_parquet(tmp_path / "leak.parquet", compression="snappy")
    pd.DataFrame({"x": [OTHER_SECRET]}).to_excel(tmp_path / "leak.xlsx")
    assert len(find_secrets(tmp_path, needles("pk", OTHER_SECRET))) == 3


def test_secret_key_cannot_be_pickled_or_printed():
    from backd_ops.config import SecretKey

    key = SecretKey(OTHER_SECRET)
    assert OTHER_SECRET not in f"{key} {key!r} {[key]}"
    with pytest.raises(TypeError):
        pickle.dumps(key)


# -- auth and environments ----------------------------------------------------------------------------------------
def test_wrong_keys_fail_clearly_with_no_writes(tmp_path):
    with run_sandbox(orders=30) as sb:
        client = backd_ops.BackdClient(sb.public_key, "sk_wrong_value", base_url=sb.base_url)
        frame = pd.DataFrame({"backd_order_id": ["BO-DEMO-000003"]})
        for execute in (False, True):
            with pytest.raises(AuthenticationError, match="check BACKD_PUBLIC_KEY / BACKD_SECRET_KEY"):
                backd_ops.cancel_orders(client, frame, execute=execute, journal=tmp_path / "j.sqlite", progress=False)
        assert sb.write_requests() == []


def test_sandbox_keys_against_a_production_endpoint_are_refused(tmp_path, monkeypatch):
    """A stand-in for production that knows only its own keys: the sandbox's demo keys get a clear 401."""
    monkeypatch.delenv("BACKD_CONFIRM_PRODUCTION", raising=False)
    with run_sandbox(orders=30, public_key="pk_prd_merchant", secret_key="prd-secret-value") as production:
        client = backd_ops.BackdClient("pk_sandbox_demo", "sk_sandbox_demo_not_a_real_secret", environment="production",
                                       base_url=production.base_url)
        with pytest.raises(AuthenticationError, match="sandbox and production keys differ"):
            backd_ops.find_orders(client, ["BO-DEMO-000001"], progress=False).pipe(lambda f: client.find_order("BO-DEMO-000001"))
        with pytest.raises(ProductionGuardError):
            backd_ops.cancel_orders(client, ["BO-DEMO-000003"], execute=True, journal=tmp_path / "j.sqlite", progress=False)
        assert production.write_requests() == []
        assert all(r["status"] in (401, None) for r in production.requests)
