"""The findings store: every reconciliation finding by (account, order, kind) across nights, with analysts' notes.

It lives beside the journal (``~/.backd_ops/findings/``, or ``$BACKD_OPS_FINDINGS``), one folder per account:

- ``findings.parquet``: one row per (order, kind) ever seen: ``open`` or ``resolved``, first and last seen,
  a fingerprint of its values, its money at stake. Columnar, so a night of a million findings is compared
  with the store in a couple of vectorised steps;
- ``runs.parquet``: one row per tracked run (new, open, resolved, money at stake), for the 30-run chart;
- ``annotations.sqlite``: notes (owner, ``investigating`` or ``no_action_needed``, who wrote it, when, and the
  fingerprint of the values it was written against). Small concurrent edits belong in SQLite.

A finding's order is its ``backd_order_id``, or ``merchant:<merchant_order_id>`` when the ledger has no Backd id.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from ._files import locked as _locked, write_atomically
from .config import DEFAULT_JOURNAL_PATH, Account, current_user
from .errors import InputError

__all__ = ["ANNOTATION_STATUSES", "Changes", "FindingsStore", "default_findings_path"]

FINDINGS_ENV = "BACKD_OPS_FINDINGS"
ANNOTATION_STATUSES = ("investigating", "no_action_needed")
_STATE_COLUMNS = ["key", "order_key", "kind", "backd_order_id", "merchant_order_id", "status", "first_seen", "last_seen",
                  "resolved_at", "fingerprint", "ledger_value", "backd_value", "at_stake_cents"]


def default_findings_path() -> Path:
    """``$BACKD_OPS_FINDINGS`` if set, else ``findings/`` beside the default journal."""
    return Path(os.environ.get(FINDINGS_ENV) or DEFAULT_JOURNAL_PATH.parent / "findings")


@dataclass(frozen=True)
class Changes:
    """What changed since the account's last tracked run.

    ``current``: tonight's findings (one per order and kind) with ``change`` (``new`` or ``open``), ``first_seen``,
    ``age_days``, ``values_changed`` and any note; ``resolved``: findings open last run and gone tonight.
    """

    previous_run_id: str | None
    current: pd.DataFrame
    resolved: pd.DataFrame
    history: pd.DataFrame

    @property
    def counts(self) -> dict[str, int]:
        change = self.current["change"]
        return {"new": int((change == "new").sum()), "open": int((change == "open").sum()),
                "open_values_changed": int(((change == "open") & self.current["values_changed"]).sum()),
                "resolved": len(self.resolved)}


class FindingsStore:
    """Findings across nights for every account, in one folder.

    Examples
    --------
    >>> store = FindingsStore(tmp_path / "findings")                              # doctest: +SKIP
    >>> changes = store.track(account, findings, run_id="7f3a9c1d", as_of=now)     # doctest: +SKIP
    >>> changes.counts                                                             # doctest: +SKIP
    {'new': 3, 'open': 12, 'open_values_changed': 1, 'resolved': 2}
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_findings_path()

    def __repr__(self) -> str:
        return f"FindingsStore({str(self.path)!r})"

    def folder(self, account: Account) -> Path:
        """The account's folder (named as every store names it: :attr:`Account.slug`)."""
        return self.path / account.slug

    # -- a night ------------------------------------------------------------------------------------------------
    def track(self, account: Account, findings: pd.DataFrame, *, run_id: str, as_of: datetime) -> Changes:
        """Mark tonight's findings new/open, last night's missing ones resolved; persist; say what changed."""
        folder = self.folder(account)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = pd.Timestamp(as_of).tz_convert("UTC")
        tonight = _per_order_and_kind(findings)
        with _locked(folder / ".lock"):
            state = self._state(folder)
            previous = _previous_run(folder)
            current, resolved, new_state = _compare_nights(tonight, state, stamp)
            _write_parquet(new_state, folder / "findings.parquet")
            history = _append_run(folder, run_id, stamp, current, resolved)
        current = self._with_notes(account, current)
        return Changes(previous, current, resolved, history.tail(30).reset_index(drop=True))

    def _state(self, folder: Path) -> pd.DataFrame:
        path = folder / "findings.parquet"
        if not path.is_file():
            return pd.DataFrame({c: pd.Series(dtype="object") for c in _STATE_COLUMNS}).astype({"key": "uint64", "fingerprint": "uint64"})
        return pd.read_parquet(path)

    # -- notes ----------------------------------------------------------------------------------------------------
    def annotate(self, account: Account, order_key: str, kind: str, *, note: str, status: str, fingerprint: int | None,
                 owner: str | None = None, by: str | None = None, at: datetime | None = None) -> None:
        """Keep a note on a finding (it persists across nights; the latest note wins)."""
        if status not in ANNOTATION_STATUSES:
            raise InputError(f"status must be one of {', '.join(ANNOTATION_STATUSES)}, got {status!r}")
        written = (at or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(timespec="seconds")
        with self._notes(account) as db:
            db.execute("INSERT OR REPLACE INTO annotations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (order_key, kind, note, owner, status, by or current_user(), written,
                        None if fingerprint is None else str(int(fingerprint))))

    def annotate_open(self, account: Account, order_key: str, kind: str, *, note: str, status: str, owner: str | None = None) -> None:
        """Note an open finding as the store last saw it (the CLI's way in, without a reconciliation object)."""
        state = self._state(self.folder(account))
        match = state[(state["order_key"] == order_key) & (state["kind"] == kind) & (state["status"] == "open")]
        if match.empty:
            open_kinds = sorted(state.loc[(state["order_key"] == order_key) & (state["status"] == "open"), "kind"])
            raise InputError(f"no open {kind} finding for {order_key}" + (f"; its open findings: {', '.join(open_kinds)}" if open_kinds else ""))
        self.annotate(account, order_key, kind, note=note, status=status, owner=owner, fingerprint=int(match["fingerprint"].iloc[0]))

    def open_ids(self, account: Account) -> list[str]:
        """The backd_order_ids with an open finding (they are read live however final they look)."""
        state = self._state(self.folder(account))
        return state.loc[(state["status"] == "open") & state["backd_order_id"].notna(), "backd_order_id"].astype(str).unique().tolist()

    def open_findings(self, account: Account) -> pd.DataFrame:
        """Every open finding of the account as the last run left it, with its note."""
        state = self._state(self.folder(account))
        current = state[state["status"] == "open"]
        notes = self.annotations(account).rename(columns={"status": "note_status"})
        return current.merge(notes, on=["order_key", "kind"], how="left").drop(columns=["key", "fingerprint"], errors="ignore")

    def annotations(self, account: Account) -> pd.DataFrame:
        """Every note of the account: order_key, kind, note, owner, status, written_by, written_at, fingerprint."""
        if not (self.folder(account) / "annotations.sqlite").is_file():
            return pd.DataFrame(columns=["order_key", "kind", "note", "owner", "status", "written_by", "written_at", "fingerprint"])
        with self._notes(account) as db:
            cursor = db.execute("SELECT * FROM annotations")
            return pd.DataFrame(cursor.fetchall(), columns=[d[0] for d in cursor.description])

    @contextmanager
    def _notes(self, account: Account) -> Iterator[sqlite3.Connection]:
        folder = self.folder(account)
        folder.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(folder / "annotations.sqlite", timeout=30)
        try:
            db.execute("CREATE TABLE IF NOT EXISTS annotations (order_key TEXT NOT NULL, kind TEXT NOT NULL, note TEXT,"
                       " owner TEXT, status TEXT NOT NULL, written_by TEXT, written_at TEXT, fingerprint TEXT,"
                       " PRIMARY KEY (order_key, kind))")
            with db:
                yield db
        finally:
            db.close()

    def _with_notes(self, account: Account, current: pd.DataFrame) -> pd.DataFrame:
        notes = self.annotations(account).rename(columns={"status": "note_status", "fingerprint": "note_fingerprint"})
        if notes.empty:  # the usual night: no join of a million findings with nothing
            empty = {c: pd.Series(None, index=current.index, dtype=object) for c in notes.columns if c not in ("order_key", "kind")}
            return current.assign(**empty, suppressed=False)
        merged = current.merge(notes, on=["order_key", "kind"], how="left")
        same_values = merged["note_fingerprint"].astype("string") == merged["fingerprint"].astype("string")
        merged["suppressed"] = ((merged["note_status"] == "no_action_needed") & same_values.fillna(False)).astype(bool)
        return merged

    def history(self, account: Account, last: int = 30) -> pd.DataFrame:
        """The account's last ``last`` tracked runs: run_id, as_of, new, open, resolved, open money at stake (cents)."""
        path = self.folder(account) / "runs.parquet"
        return pd.read_parquet(path).tail(last).reset_index(drop=True) if path.is_file() else _empty_history()


# -- the vectorised night-over-night comparison ------------------------------------------------------------------------------
def _per_order_and_kind(findings: pd.DataFrame) -> pd.DataFrame:
    """One row per (order, kind), with a fingerprint of its values that does not depend on row order."""
    frame = findings[["order_key", "kind", "backd_order_id", "merchant_order_id", "ledger_value", "backd_value",
                      "difference_cents", "at_stake_cents"]].reset_index(drop=True)
    frame["order_key"] = frame["order_key"].astype("string")
    frame["kind"] = frame["kind"].astype("string")
    values = frame[["ledger_value", "backd_value", "difference_cents"]].astype("string").fillna("")
    fingerprints = pd.util.hash_pandas_object(values, index=False).to_numpy()
    keys = _key_hashes(frame["order_key"] + "|" + frame["kind"])
    if pd.Index(keys).is_unique:  # the usual night: one finding per order and kind, nothing to group
        return frame.assign(key=keys, fingerprint=fingerprints,
                            at_stake_cents=pd.to_numeric(frame["at_stake_cents"], errors="coerce").fillna(0).to_numpy(dtype="int64"))
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]) if len(keys) else np.array([], dtype=int)
    # Each group's first row, groups in the order they first appear: with no repeats that is every row as it came
    # (no gather of a million text rows in hash order).
    by_row = np.argsort(order[starts], kind="stable")
    first = order[starts][by_row]
    grouped = frame if len(first) == len(frame) else frame.iloc[first].reset_index(drop=True)
    grouped["key"] = sorted_keys[starts][by_row]
    # XOR and sum over each group (a duplicated ledger row makes several findings of one order and kind)
    grouped["fingerprint"] = np.bitwise_xor.reduceat(fingerprints[order], starts)[by_row] if len(keys) else np.array([], dtype="uint64")
    stake = pd.to_numeric(frame["at_stake_cents"], errors="coerce").fillna(0).to_numpy(dtype="int64")
    grouped["at_stake_cents"] = np.add.reduceat(stake[order], starts)[by_row] if len(keys) else np.array([], dtype="int64")
    return grouped


def _key_hashes(text: pd.Series) -> np.ndarray:
    """``hash_pandas_object`` of a text column, value for value (the store's keys depend on it), twice as fast on
    Arrow-backed text: it hashes the strings once instead of factorizing them first."""
    hashes = pd.util.hash_array(text.to_numpy(dtype=object, na_value=None), categorize=False)
    hashes[text.isna().to_numpy()] = np.iinfo(np.uint64).max  # what hash_pandas_object gives a missing value
    return hashes


def _compare_nights(tonight: pd.DataFrame, state: pd.DataFrame, stamp: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    # Keys are unique in the state, so one lookup places each of tonight's findings in it and splits the state:
    # open and back tonight (replaced by tonight's row), open and gone (resolved now), closed and not back (kept).
    at = pd.Index(state["key"].to_numpy(dtype="uint64")).get_indexer(pd.Index(tonight["key"].to_numpy(dtype="uint64")))
    is_open = (state["status"] == "open").to_numpy(dtype=bool, na_value=False)
    seen = at >= 0
    open_last_night = seen.copy()
    open_last_night[seen] = is_open[at[seen]]
    in_tonight = np.zeros(len(state), dtype=bool)
    in_tonight[at[seen]] = True
    was_open = pd.Series(open_last_night, index=tonight.index)
    first_seen = pd.Series(state["first_seen"].array.take(np.where(open_last_night, at, -1), allow_fill=True), index=tonight.index)
    fingerprint_before = np.zeros(len(at), dtype="uint64")
    fingerprint_before[open_last_night] = state["fingerprint"].to_numpy(dtype="uint64")[at[open_last_night]]
    current = tonight.assign(
        first_seen=pd.to_datetime(first_seen, utc=True).where(was_open, stamp),
        change=np.where(was_open, "open", "new"),
        values_changed=was_open & (fingerprint_before != tonight["fingerprint"].to_numpy(dtype="uint64")),
    )
    current["age_days"] = (stamp - current["first_seen"]).dt.total_seconds() / 86400
    resolved = state[is_open & ~in_tonight].assign(status="resolved", resolved_at=stamp)
    kept = state[~is_open & ~in_tonight]
    now_open = current.assign(status="open", last_seen=stamp, resolved_at=pd.NaT)[_STATE_COLUMNS]
    new_state = pd.concat([_typed_state(kept), _typed_state(resolved[_STATE_COLUMNS]), _typed_state(now_open)], ignore_index=True)
    return current, resolved.reset_index(drop=True), new_state


def _typed_state(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.reindex(columns=_STATE_COLUMNS).copy()
    for column in ("first_seen", "last_seen", "resolved_at"):
        out[column] = pd.to_datetime(out[column], utc=True)
    for column in ("order_key", "kind", "backd_order_id", "merchant_order_id", "status", "ledger_value", "backd_value"):
        out[column] = out[column].astype("string")
    out["at_stake_cents"] = pd.to_numeric(out["at_stake_cents"], errors="coerce").astype("Int64")
    return out.astype({"key": "uint64", "fingerprint": "uint64"})


def _previous_run(folder: Path) -> str | None:
    path = folder / "runs.parquet"
    if not path.is_file():
        return None
    runs = pd.read_parquet(path, columns=["run_id"])
    return None if runs.empty else str(runs["run_id"].iloc[-1])


def _append_run(folder: Path, run_id: str, stamp: pd.Timestamp, current: pd.DataFrame, resolved: pd.DataFrame) -> pd.DataFrame:
    path = folder / "runs.parquet"
    runs = pd.read_parquet(path) if path.is_file() else _empty_history()
    row = pd.DataFrame({"run_id": [run_id], "as_of": [stamp], "new": [int((current["change"] == "new").sum())],
                        "open": [len(current)], "resolved": [len(resolved)],
                        "at_stake_cents": [int(pd.to_numeric(current["at_stake_cents"]).fillna(0).sum())]})
    runs = pd.concat([runs, row], ignore_index=True) if len(runs) else row
    _write_parquet(runs, path)
    return runs


def _empty_history() -> pd.DataFrame:
    return pd.DataFrame({"run_id": pd.Series(dtype="string"), "as_of": pd.Series(dtype="datetime64[ns, UTC]"),
                         "new": pd.Series(dtype="int64"), "open": pd.Series(dtype="int64"),
                         "resolved": pd.Series(dtype="int64"), "at_stake_cents": pd.Series(dtype="int64")})


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    write_atomically(path, lambda temporary: frame.to_parquet(temporary, index=False))
