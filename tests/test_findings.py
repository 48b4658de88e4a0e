"""The findings store: new, open and resolved across nights; notes that persist; no_action_needed until values change."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

import backd_ops
from backd_ops.config import Account
from backd_ops.findings import FindingsStore
from backd_ops.locking import CHICAGO
from backd_ops.reconcile import reconcile
from backd_ops.sandbox import run_sandbox

ACCOUNT = Account("sandbox", "http://127.0.0.1:1/v1/backd/bnpl/api", "pk_test_1234")
NIGHT = datetime(2026, 4, 14, 2, 0, tzinfo=CHICAGO)


def findings(*rows: tuple[str, str, str, str, int]) -> pd.DataFrame:
    """(order, kind, ledger_value, backd_value, at_stake_cents) per finding."""
    return pd.DataFrame({"order_key": [r[0] for r in rows], "kind": [r[1] for r in rows], "backd_order_id": [r[0] for r in rows],
                         "merchant_order_id": "M", "ledger_value": [r[2] for r in rows], "backd_value": [r[3] for r in rows],
                         "difference_cents": pd.array([None] * len(rows), dtype="Int64"),
                         "at_stake_cents": pd.array([r[4] for r in rows], dtype="Int64")})


def test_new_open_resolved_across_nights(tmp_path):
    store = FindingsStore(tmp_path)
    first = store.track(ACCOUNT, findings(("BO-A", "status_mismatch", "paid", "order_placed", 100),
                                          ("BO-B", "order_total_mismatch", "10.00", "15.00", 500)), run_id="r1", as_of=NIGHT)
    assert first.counts == {"new": 2, "open": 0, "open_values_changed": 0, "resolved": 0} and first.previous_run_id is None
    second = store.track(ACCOUNT, findings(("BO-A", "status_mismatch", "paid", "order_placed", 100),
                                           ("BO-B", "order_total_mismatch", "10.00", "17.00", 700),
                                           ("BO-C", "missing_in_backd", "BO-C", None, 50)), run_id="r2", as_of=NIGHT + timedelta(days=1))
    assert second.counts == {"new": 1, "open": 2, "open_values_changed": 1, "resolved": 0} and second.previous_run_id == "r1"
    row = second.current.set_index("order_key").loc["BO-A"]
    assert row.change == "open" and row.age_days == pytest.approx(1.0) and not row.values_changed
    assert second.current.set_index("order_key").loc["BO-B"].values_changed
    third = store.track(ACCOUNT, findings(("BO-C", "missing_in_backd", "BO-C", None, 50)), run_id="r3", as_of=NIGHT + timedelta(days=2))
    assert third.counts == {"new": 0, "open": 1, "open_values_changed": 0, "resolved": 2}
    assert set(third.resolved.order_key) == {"BO-A", "BO-B"}
    fourth = store.track(ACCOUNT, findings(("BO-A", "status_mismatch", "paid", "order_placed", 100)), run_id="r4",
                         as_of=NIGHT + timedelta(days=3))
    assert fourth.counts == {"new": 1, "open": 0, "open_values_changed": 0, "resolved": 1}  # back again: new, first seen tonight
    assert store.history(ACCOUNT).run_id.tolist() == ["r1", "r2", "r3", "r4"]
    assert store.history(ACCOUNT).open.tolist() == [2, 3, 1, 1]


def test_accounts_are_kept_apart(tmp_path):
    store = FindingsStore(tmp_path)
    other = Account("sandbox", "http://127.0.0.1:2/v1/backd/bnpl/api", "pk_test_1234")  # the same key, another base URL
    store.track(ACCOUNT, findings(("BO-A", "status_mismatch", "paid", "order_placed", 100)), run_id="r1", as_of=NIGHT)
    assert store.track(other, findings(("BO-A", "status_mismatch", "paid", "order_placed", 100)), run_id="r2", as_of=NIGHT).counts["new"] == 1
    assert store.folder(ACCOUNT) != store.folder(other) and "1234" in store.folder(ACCOUNT).name


def test_a_note_of_no_action_needed_stops_failing_the_run_until_the_values_change(tmp_path):
    with run_sandbox(orders=40, now=NIGHT) as sb:
        placed = [o for o in (sb.store.find(i) for i in sb.store.ids()) if o["status"] == "order_placed"][:2]
        ledger = pd.DataFrame({"merchant_order_id": [o["merchant_order_id"] for o in placed], "backd_order_id": [o["backd_order_id"] for o in placed],
                               "status": ["cancelled", "pending"], "order_total": [f"{o['order_total']:.2f}" for o in placed]})
        client = sb.client()
        options = {"client": client, "stale_days": 1000, "progress": False, "findings": tmp_path}
        first = reconcile(ledger, as_of=NIGHT, **options)
        assert first.has_findings(["status_mismatch"])
        first.annotate(placed[0]["backd_order_id"], "status_mismatch", note="canceled by phone; Backd ticket 4411", owner="ana",
                       status="no_action_needed")
        second = reconcile(ledger, as_of=NIGHT + timedelta(days=1), **options)
        assert not second.has_findings(["status_mismatch"]) and second.counting(["status_mismatch"]) == {"status_mismatch": 0}
        row = second.discrepancies.set_index("kind").loc["status_mismatch"]
        assert row.note == "canceled by phone; Backd ticket 4411" and row.owner == "ana" and row.change == "open"
        html = second.save(tmp_path / "night2")["report_html"].read_text()
        assert "canceled by phone; Backd ticket 4411" in html and "Changes since last run" in html
        client.confirm_order(placed[0]["backd_order_id"])  # the values change: the note no longer covers it
        third = reconcile(ledger, as_of=NIGHT + timedelta(days=2), **options)
        assert third.has_findings(["status_mismatch"])
        with pytest.raises(backd_ops.InputError, match="no order_total_mismatch finding"):
            third.annotate(placed[0]["backd_order_id"], "order_total_mismatch", note="x")


def test_keys_and_fingerprints_do_not_depend_on_the_fast_paths():
    """Stored keys are hash_pandas_object of 'order_key|kind' (a store written by an earlier version still matches),
    and a night with a repeated finding groups it without changing any other row's key, fingerprint or stake."""
    from backd_ops.findings import _key_hashes, _per_order_and_kind

    text = pd.Series(["BO-1|order_total_mismatch", None, "BO-2|stale_order_placed"], dtype="string")
    assert _key_hashes(text).tolist() == pd.util.hash_pandas_object(text, index=False).tolist()
    night = findings(("BO-1", "order_total_mismatch", "10.00", "12.00", 200), ("BO-2", "stale_order_placed", "", "", 0),
                     ("BO-3", "order_total_mismatch", "5.00", "6.00", 100))
    unique = _per_order_and_kind(night).set_index("key")
    repeated = _per_order_and_kind(pd.concat([night, night.iloc[[2]]], ignore_index=True)).set_index("key")
    assert list(repeated.index) == list(unique.index)  # in the order they first appear
    others = unique.index[:2]
    assert repeated.loc[others, ["fingerprint", "at_stake_cents"]].equals(unique.loc[others, ["fingerprint", "at_stake_cents"]])
    assert repeated.loc[unique.index[2], "at_stake_cents"] == 2 * unique.loc[unique.index[2], "at_stake_cents"]
