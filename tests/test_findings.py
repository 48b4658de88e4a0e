"""The findings store: new, open and resolved across nights; notes that persist; no_action_needed until values change."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
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
    a finding's fingerprint is that of its values as text, and a night with a repeated finding groups it (each input
    row knows its finding) without changing any other row's key, fingerprint or stake."""
    from backd_ops.findings import _fingerprints, _key_hashes, _per_order_and_kind

    text = pd.Series(["BO-1|order_total_mismatch", None, "BO-2|stale_order_placed"], dtype="string")
    assert _key_hashes(text).tolist() == pd.util.hash_pandas_object(text, index=False).tolist()
    night = findings(("BO-1", "order_total_mismatch", "10.00", "12.00", 200), ("BO-2", "stale_order_placed", "", "", 0),
                     ("BO-3", "order_total_mismatch", "5.00", "6.00", 100))
    unique, rows = _per_order_and_kind(night)
    as_text = night[["ledger_value", "backd_value", "difference_cents"]].astype("string").fillna("")
    assert rows is None and _fingerprints(unique).tolist() == pd.util.hash_pandas_object(as_text, index=False).tolist()
    repeated, rows = _per_order_and_kind(pd.concat([night, night.iloc[[2]]], ignore_index=True))
    assert rows.tolist() == [0, 1, 2, 2] and repeated["key"].tolist() == unique["key"].tolist()  # in the order they first appear
    assert repeated.iloc[:2][["fingerprint", "at_stake_cents"]].equals(unique.iloc[:2][["fingerprint", "at_stake_cents"]])
    assert repeated["at_stake_cents"].iloc[2] == 2 * unique["at_stake_cents"].iloc[2]
    # two identical rows must not cancel out: the pair's fingerprint is neither 0 nor its one row's
    assert _fingerprints(repeated)[2] not in (0, _fingerprints(unique)[2])


def test_a_repeated_finding_whose_rows_change_together_has_changed(tmp_path):
    store = FindingsStore(tmp_path)
    twice = lambda value: findings(*[("BO-A", "order_total_mismatch", "10.00", value, 100)] * 2)  # noqa: E731
    store.track(ACCOUNT, twice("12.00"), run_id="r1", as_of=NIGHT)
    same = store.track(ACCOUNT, twice("12.00"), run_id="r2", as_of=NIGHT + timedelta(days=1))
    assert same.counts == {"new": 0, "open": 1, "open_values_changed": 0, "resolved": 0}
    assert same.for_rows(["change", "at_stake_cents"]).to_dict("list") == {"change": ["open", "open"], "at_stake_cents": [200, 200]}
    changed = store.track(ACCOUNT, twice("13.00"), run_id="r3", as_of=NIGHT + timedelta(days=2))
    assert changed.counts["open_values_changed"] == 1
    alone = store.track(ACCOUNT, findings(("BO-A", "order_total_mismatch", "10.00", "13.00", 100)), run_id="r4",
                        as_of=NIGHT + timedelta(days=3))
    assert alone.counts["open_values_changed"] == 1  # one copy fewer is a change too


def test_a_note_on_a_finding_of_several_rows_covers_what_it_showed():
    """The rows in another order show another first row: that is a change, and the note no longer covers it."""
    import tempfile

    store = FindingsStore(tempfile.mkdtemp())
    rows = [("BO-A", "status_mismatch", "paid", "order_placed", 10), ("BO-A", "status_mismatch", "shipped", "order_placed", 10)]
    first = store.track(ACCOUNT, findings(*rows), run_id="r1", as_of=NIGHT)
    store.annotate(ACCOUNT, "BO-A", "status_mismatch", note="fine", status="no_action_needed", finding=first.current)
    same = store.track(ACCOUNT, findings(*rows), run_id="r2", as_of=NIGHT + timedelta(days=1)).current.iloc[0]
    swapped = store.track(ACCOUNT, findings(*rows[::-1]), run_id="r3", as_of=NIGHT + timedelta(days=2)).current.iloc[0]
    assert (same.values_changed, same.suppressed) == (False, True)
    assert (swapped.ledger_value, swapped.values_changed, swapped.suppressed) == ("shipped", True, False)


def earlier_layout(folder, night: pd.DataFrame) -> None:
    """The store as the first layout wrote it: a fingerprint for every finding (a repeated one: XOR of its rows'), no
    difference_cents, timestamps in whatever unit pandas chose, no note of how fingerprints were made."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = night[["ledger_value", "backd_value", "difference_cents"]].astype("string").fillna("")
    night = night.assign(key=pd.util.hash_pandas_object((night["order_key"] + "|" + night["kind"]).astype("string"), index=False).to_numpy(),
                         fingerprint=pd.util.hash_pandas_object(values, index=False).to_numpy())
    grouped = night.groupby("key", sort=False).agg(
        {**{c: "first" for c in ("order_key", "kind", "backd_order_id", "merchant_order_id", "ledger_value", "backd_value")},
         "fingerprint": lambda f: np.bitwise_xor.reduce(f.to_numpy()), "at_stake_cents": "sum"}).reset_index()
    seen = pd.Series(pd.Timestamp(NIGHT).tz_convert("UTC"), index=grouped.index).astype("datetime64[ms, UTC]")
    earlier = grouped.assign(status="open", first_seen=seen, last_seen=seen.astype("datetime64[ns, UTC]"),
                             resolved_at=pd.Series(pd.NaT, index=grouped.index, dtype="datetime64[ns, UTC]"))
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(earlier, preserve_index=False), folder / "findings.parquet")


def test_a_store_written_by_the_earlier_layout_is_read_without_false_changes(tmp_path):
    """Tonight's unchanged findings stay unchanged (money findings with a difference, a finding repeated on two
    different rows), a changed one changes, a note written by this version against the first layout's store covers
    its finding; a first-layout note on a finding of several rows is not trusted (its XOR fold cancels identical
    rows out, so it could not tell they changed): the finding counts until it is noted again. The runs carry on."""
    import sqlite3

    store = FindingsStore(tmp_path)
    night = findings(("BO-A", "status_mismatch", "paid", "order_placed", 100), ("BO-B", "order_total_mismatch", "10.00", "15.00", 500),
                     ("BO-C", "order_total_mismatch", "10.00", "12.00", 200), ("BO-D", "status_mismatch", "paid", "order_placed", 10),
                     ("BO-D", "status_mismatch", "shipped", "order_placed", 10))
    night["difference_cents"] = pd.array([None, -500, -200, None, None], dtype="Int64")
    earlier_layout(store.folder(ACCOUNT), night)
    pd.DataFrame({"run_id": ["r1"], "as_of": [pd.Timestamp(NIGHT).tz_convert("UTC")], "new": [4], "open": [4], "resolved": [0],
                  "at_stake_cents": [820]}).to_parquet(store.folder(ACCOUNT) / "runs.parquet")
    store.annotate_open(ACCOUNT, "BO-A", "status_mismatch", note="known", status="no_action_needed")
    rows = night.iloc[3:][["ledger_value", "backd_value", "difference_cents"]].astype("string").fillna("")
    xor = np.bitwise_xor.reduce(pd.util.hash_pandas_object(rows, index=False).to_numpy())
    with sqlite3.connect(store.folder(ACCOUNT) / "annotations.sqlite") as db:  # as the first layout's annotate wrote it
        db.execute("INSERT INTO annotations VALUES ('BO-D', 'status_mismatch', 'two rows, fine', NULL, 'no_action_needed', 'ana',"
                   " '2026-04-14T07:00:00+00:00', ?)", (str(int(xor)),))
    tonight = night.copy()
    tonight.loc[1, ["backd_value", "difference_cents"]] = ["16.00", -600]
    changes = store.track(ACCOUNT, tonight, run_id="r2", as_of=NIGHT + timedelta(days=1))
    current = changes.current.set_index("order_key")
    assert changes.counts == {"new": 0, "open": 4, "open_values_changed": 1, "resolved": 0}
    assert current["values_changed"].to_dict() == {"BO-A": False, "BO-B": True, "BO-C": False, "BO-D": False}
    assert current["suppressed"].to_dict() == {"BO-A": True, "BO-B": False, "BO-C": False, "BO-D": False}
    assert current.loc["BO-A", "age_days"] == pytest.approx(1.0) and changes.previous_run_id == "r1"
    store.annotate(ACCOUNT, "BO-D", "status_mismatch", note="two rows, fine", status="no_action_needed",
                   finding=changes.current[changes.current["order_key"] == "BO-D"])
    again = store.track(ACCOUNT, tonight, run_id="r3", as_of=NIGHT + timedelta(days=2))  # now in this layout
    assert again.counts["open_values_changed"] == 0
    assert again.current.set_index("order_key")["suppressed"].to_dict() == {"BO-A": True, "BO-B": False, "BO-C": False, "BO-D": True}
    assert store.history(ACCOUNT).run_id.tolist() == ["r1", "r2", "r3"] and not (store.folder(ACCOUNT) / "runs.parquet").exists()


def test_a_night_that_fails_halfway_leaves_the_store_as_it_was(tmp_path):
    store = FindingsStore(tmp_path)
    store.track(ACCOUNT, findings(("BO-A", "status_mismatch", "paid", "order_placed", 100)), run_id="r1", as_of=NIGHT)
    folder = store.folder(ACCOUNT)
    before = (folder / "findings.parquet").read_bytes()  # the findings, and the runs in its metadata
    (folder / "annotations.sqlite").write_bytes(b"not a database" * 100)  # the notes are read after the state is written
    tonight = findings(("BO-A", "status_mismatch", "paid", "order_placed", 100), ("BO-B", "order_total_mismatch", "10.00", "15.00", 500))
    with pytest.raises(Exception, match="not a database"):
        store.track(ACCOUNT, tonight, run_id="r2", as_of=NIGHT + timedelta(days=1))
    assert (folder / "findings.parquet").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "annotations.sqlite", "findings.parquet"]
    (folder / "annotations.sqlite").unlink()
    (folder / ".findings.parquet.k1ll3d.tmp").write_bytes(b"half a night")  # staged by a night that was killed
    retried = store.track(ACCOUNT, tonight, run_id="r2", as_of=NIGHT + timedelta(days=1))
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "findings.parquet"]
    assert retried.counts == {"new": 1, "open": 1, "open_values_changed": 0, "resolved": 0}
    assert store.history(ACCOUNT).run_id.tolist() == ["r1", "r2"]


def test_odd_input_is_keyed_and_checked():
    """A finding with no order is kept apart per kind (not all folded into one); cents must be whole."""
    from backd_ops.findings import _per_order_and_kind

    night = findings(("BO-1", "status_mismatch", "a", "b", 1), ("BO-2", "order_total_mismatch", "1", "2", 2),
                     ("BO-3", "status_mismatch", "c", "d", 3))
    night.loc[[0, 1], "order_key"] = None
    grouped, rows = _per_order_and_kind(night)
    assert len(grouped) == 3 and rows is None
    with pytest.raises(backd_ops.InputError, match="at_stake_cents holds whole cents; row 0 has 1.5"):
        _per_order_and_kind(night.assign(at_stake_cents=[1.5, 2, 3]))
