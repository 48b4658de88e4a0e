"""The findings store: every reconciliation finding by (account, order, kind) across nights, with analysts' notes.

It lives beside the journal (``~/.backd_ops/findings/``, or ``$BACKD_OPS_FINDINGS``), one folder per account:

- ``findings.parquet``: one row per (order, kind) ever seen: ``open`` or ``resolved``, first and last seen,
  its values and money at stake. Columnar, so a night of a million findings is compared with the store in a
  few vectorised steps (read while tonight's findings are keyed, written while the notes are joined). Its
  metadata holds the runs (new, open, resolved, money at stake: the 30-run chart), so that a night is one
  file replaced whole: there is no moment at which the findings say one night and the runs another;
- ``annotations.sqlite``: notes (owner, ``investigating`` or ``no_action_needed``, who wrote it, when, and the
  fingerprint of the values it was written against). Small concurrent edits belong in SQLite.

A finding's order is its ``backd_order_id``, or ``merchant:<merchant_order_id>`` when the ledger has no Backd id.
"""

from __future__ import annotations

import json
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ._files import clear_staged, locked as _locked, staged
from .arrowtools import arrow_text
from .config import DEFAULT_JOURNAL_PATH, Account, current_user
from .errors import InputError

__all__ = ["ANNOTATION_STATUSES", "Changes", "FindingsStore", "default_findings_path"]

FINDINGS_ENV = "BACKD_OPS_FINDINGS"
ANNOTATION_STATUSES = ("investigating", "no_action_needed")
_NOTE_COLUMNS = ["note", "owner", "note_status", "written_by", "written_at", "note_fingerprint"]


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
    rows: np.ndarray | None = field(default=None, repr=False)  # each tracked row's finding in ``current`` (None: its own)

    def for_rows(self, columns: list[str]) -> pd.DataFrame:
        """``columns`` of ``current`` for each row of the findings that were tracked, in their order (a finding
        repeated on several rows, as a duplicated ledger row makes it, on each of them)."""
        picked = self.current[columns]
        return picked.reset_index(drop=True) if self.rows is None else picked.iloc[self.rows].reset_index(drop=True)

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
        # Reading and writing the state is Arrow's work outside the GIL: it overlaps keying tonight's findings and
        # joining the notes, which on a million findings is most of what a night adds. The new state (with the
        # runs) is staged and put in place at the end: a night that fails halfway leaves the store as it was.
        with _locked(folder / ".lock"):
            clear_staged(folder / "findings.parquet")  # a night that was killed (we hold the lock: nobody else writes)
            with staged(folder / "findings.parquet") as state_file, ThreadPoolExecutor(1, "findings-store") as io:
                reading = io.submit(_read_state, folder)
                tonight, rows = _per_order_and_kind(findings)
                stored = reading.result()
                placed = _Placement.of(tonight, stored.table, stamp)
                new_state, resolved = _next_state(tonight, stored.table, placed)
                runs = _with_run(stored.runs, run_id, stamp, tonight, placed, resolved)
                writing = io.submit(_write_state, new_state, runs, state_file.temporary)
                current = self._with_notes(account, _marked(tonight, stored.table, placed, stored.scheme))
                writing.result()
                state_file.commit()
            (folder / "runs.parquet").unlink(missing_ok=True)  # the first layout's runs, now in the state
        previous = None if stored.runs.empty else str(stored.runs["run_id"].iloc[-1])
        return Changes(previous, current, resolved, runs.tail(30).reset_index(drop=True), rows)

    def _state(self, folder: Path) -> pd.DataFrame:
        return _to_frame(_read_state(folder).table)

    # -- notes ----------------------------------------------------------------------------------------------------
    def annotate(self, account: Account, order_key: str, kind: str, *, note: str, status: str, finding: pd.DataFrame | None,
                 owner: str | None = None, by: str | None = None, at: datetime | None = None) -> None:
        """Keep a note on a finding (it persists across nights; the latest note wins), written against the values
        ``finding`` (its row as tracked) shows: ``no_action_needed`` covers it until they change."""
        against = None if finding is None else _note_fingerprint(finding, "sum")
        self._write_note(account, order_key, kind, note=note, status=status, owner=owner, by=by, at=at, against=against)

    def _write_note(self, account: Account, order_key: str, kind: str, *, note: str, status: str, owner: str | None,
                    by: str | None, at: datetime | None, against: str | None) -> None:
        if status not in ANNOTATION_STATUSES:
            raise InputError(f"status must be one of {', '.join(ANNOTATION_STATUSES)}, got {status!r}")
        written = (at or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(timespec="seconds")
        with self._notes(account) as db:
            db.execute("INSERT OR REPLACE INTO annotations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (order_key, kind, note, owner, status, by or current_user(), written, against))

    def annotate_open(self, account: Account, order_key: str, kind: str, *, note: str, status: str, owner: str | None = None) -> None:
        """Note an open finding as the store last saw it (the CLI's way in, without a reconciliation object)."""
        stored = _read_state(self.folder(account))
        state = _to_frame(stored.table)
        match = state[(state["order_key"] == order_key) & (state["kind"] == kind) & (state["status"] == "open")]
        if match.empty:
            open_kinds = sorted(state.loc[(state["order_key"] == order_key) & (state["status"] == "open"), "kind"])
            raise InputError(f"no open {kind} finding for {order_key}" + (f"; its open findings: {', '.join(open_kinds)}" if open_kinds else ""))
        self._write_note(account, order_key, kind, note=note, status=status, owner=owner, by=None, at=None,
                         against=_note_fingerprint(match, stored.scheme))

    def open_ids(self, account: Account) -> list[str]:
        """The backd_order_ids with an open finding (they are read live however final they look)."""
        state = self._state(self.folder(account))
        return state.loc[(state["status"] == "open") & state["backd_order_id"].notna(), "backd_order_id"].astype(str).unique().tolist()

    def open_findings(self, account: Account) -> pd.DataFrame:
        """Every open finding of the account as the last run left it, with its note."""
        state = self._state(self.folder(account))
        current = state[state["status"] == "open"]
        notes = self.annotations(account).rename(columns={"status": "note_status", "fingerprint": "note_fingerprint"})
        return current.merge(notes, on=["order_key", "kind"], how="left").drop(columns=["key", "fingerprint", "note_fingerprint"])

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
        """Each finding's note, if any; ``suppressed``: noted ``no_action_needed`` and its values unchanged since."""
        notes = self.annotations(account).rename(columns={"status": "note_status", "fingerprint": "note_fingerprint"})
        out = current.assign(**{c: pd.Series(None, index=current.index, dtype=object) for c in _NOTE_COLUMNS}, suppressed=False)
        # Notes are few: look each finding's key up among theirs rather than join a million findings on text.
        keys = _finding_keys(arrow_text(notes["order_key"]), arrow_text(notes["kind"]))
        keep = ~pd.Series(keys).duplicated(keep="last").to_numpy()  # made-up kinds with "|" could share a key
        notes = notes[keep]
        at = pd.Index(keys[keep]).get_indexer(current["key"].to_numpy(dtype="uint64"))
        noted = at >= 0
        if not noted.any():
            return out
        for column in _NOTE_COLUMNS:
            out.loc[noted, column] = notes[column].to_numpy(dtype=object)[at[noted]]
        unchanged = _written_against(out.loc[noted, "note_fingerprint"], current[noted])
        out.loc[noted, "suppressed"] = (out.loc[noted, "note_status"] == "no_action_needed").to_numpy(dtype=bool) & unchanged
        return out

    def history(self, account: Account, last: int = 30) -> pd.DataFrame:
        """The account's last ``last`` tracked runs: run_id, as_of, new, open, resolved, open money at stake (cents)."""
        folder = self.folder(account)
        state = folder / "findings.parquet"
        return _runs(pq.read_schema(state).metadata if state.is_file() else None, folder).tail(last).reset_index(drop=True)


# -- the vectorised night-over-night comparison ------------------------------------------------------------------------------
def _per_order_and_kind(findings: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray | None]:
    """One row per (order, kind), and for each input row the row it was folded into (None: each its own).

    A finding of several rows (a duplicated ledger row repeats its findings) keeps the first row's values, the sum
    of their stakes and the sum of their row fingerprints (a sum, not XOR: two identical rows must not cancel out;
    ``fingerprint_xor``, the first layout's, is kept beside it to read that layout's stores and notes). A finding of
    one row has no stored fingerprint: its values are compared directly, which is what makes a night of a million
    findings cheap.
    """
    frame = findings[["order_key", "kind", "backd_order_id", "merchant_order_id", "ledger_value", "backd_value",
                      "difference_cents", "at_stake_cents"]].reset_index(drop=True)
    text = {c: arrow_text(frame[c]) for c in ("order_key", "kind", "backd_order_id", "merchant_order_id", "ledger_value", "backd_value")}
    for column, values in text.items():
        frame[column] = pd.array(values, dtype="string")
    for column in ("difference_cents", "at_stake_cents"):
        frame[column] = _cents(frame[column], column)
    keys = _finding_keys(text["order_key"], text["kind"])
    index = pd.Index(keys)
    if index.is_unique:  # the usual night: one finding per order and kind, nothing to group
        none = _hashes(np.zeros(len(frame), "uint64"), False)
        return frame.assign(key=index, fingerprint=none, fingerprint_xor=none.copy(), at_stake_cents=frame["at_stake_cents"].fillna(0)), None
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    # Groups in the order they first appear; each input row's group in that order
    by_row = np.argsort(order[starts], kind="stable")
    position = np.empty(len(starts), dtype=np.intp)
    position[by_row] = np.arange(len(starts))
    rows = np.empty(len(keys), dtype=np.intp)
    rows[order] = np.repeat(position, sizes)
    grouped = frame.iloc[order[starts][by_row]].reset_index(drop=True)
    grouped["key"] = sorted_keys[starts][by_row]
    repeated = sizes > 1
    row_fingerprints = np.zeros(len(keys), dtype="uint64")
    in_repeated = order[np.repeat(repeated, sizes)]
    row_fingerprints[in_repeated] = _row_fingerprints(frame.iloc[in_repeated])
    in_order, several = row_fingerprints[order], repeated[by_row]
    grouped["fingerprint"] = _hashes(np.add.reduceat(in_order, starts)[by_row], several)  # uint64: wraps, as a hash may
    grouped["fingerprint_xor"] = _hashes(np.bitwise_xor.reduceat(in_order, starts)[by_row], several)
    stake = frame["at_stake_cents"].fillna(0).to_numpy(dtype="int64")
    grouped["at_stake_cents"] = pd.array(np.add.reduceat(stake[order], starts)[by_row], dtype="Int64")
    return grouped, rows


def _cents(values: pd.Series, column: str) -> pd.Series:
    """Whole cents (nullable); anything else is refused with the column's name."""
    if pd.api.types.is_integer_dtype(values.dtype) and not pd.api.types.is_unsigned_integer_dtype(values.dtype):
        return values.astype("Int64")
    numbers = pd.to_numeric(values, errors="coerce").astype("Float64")
    bad = (numbers.isna() & values.notna()) | ~(numbers.abs() < 2**63) | (numbers != numbers.round())
    wrong = np.flatnonzero(bad.fillna(False).to_numpy(dtype=bool))
    if len(wrong):
        raise InputError(f"{column} holds whole cents; row {wrong[0]} has {values.iloc[wrong[0]]}")
    return numbers.astype("Int64")


def _hashes(values: np.ndarray, present: np.ndarray | bool) -> pd.arrays.IntegerArray:
    """Fingerprints as a nullable column: missing where not ``present`` (a finding of one row keeps none)."""
    return pd.arrays.IntegerArray(values.astype("uint64"), ~np.broadcast_to(np.asarray(present, dtype=bool), values.shape).copy())


def _finding_keys(order_key: pa.Array, kind: pa.Array) -> np.ndarray:
    """Each finding's key in the store: the hash of ``order_key|kind`` (joined by Arrow, not through Python objects)."""
    # A finding with no order (neither id) is keyed per kind: "|kind" (a missing part would make every kind one).
    joined = pc.binary_join_element_wise(order_key, kind, "|", null_handling="replace", null_replacement="")
    return _key_hashes(pd.Series(pd.array(joined, dtype="string")))


def _key_hashes(text: pd.Series) -> np.ndarray:
    """``hash_pandas_object`` of a text column, value for value (the store's keys depend on it), twice as fast on
    Arrow-backed text: it hashes the strings once instead of factorizing them first."""
    hashes = pd.util.hash_array(text.to_numpy(dtype=object, na_value=None), categorize=False)
    hashes[text.isna().to_numpy()] = np.iinfo(np.uint64).max  # what hash_pandas_object gives a missing value
    return hashes


_VALUES = ["ledger_value", "backd_value", "difference_cents"]


def _row_fingerprints(rows: pd.DataFrame) -> np.ndarray:
    """A finding row's fingerprint: a hash of its values as text (a missing value as ""), row by row."""
    if rows.empty:
        return np.array([], dtype="uint64")
    return pd.util.hash_pandas_object(rows[_VALUES].astype("string").fillna(""), index=False).to_numpy()


def _fingerprints(findings: pd.DataFrame, scheme: str = "sum") -> np.ndarray:
    """Each finding's fingerprint (what a note was written against): the stored one of a finding of several rows
    (``scheme`` "xor": the first layout's, where tonight's findings carry it), else its one row's. A row of the
    first layout's store has a fingerprint for every finding, which this reads as such."""
    column = "fingerprint_xor" if scheme == "xor" and "fingerprint_xor" in findings.columns else "fingerprint"
    stored = findings[column].astype("UInt64")
    out = stored.to_numpy(dtype="uint64", na_value=0)
    missing = stored.isna().to_numpy()
    if missing.any():
        out[missing] = _row_fingerprints(findings[missing])
    return out


def _same_values(tonight: pd.DataFrame, before: pa.Table, compared: np.ndarray, scheme: str) -> np.ndarray:
    """Row by row (tonight's findings, and the store's rows of the same findings where ``compared``), whether a
    finding shows the values it showed before: the values shown, compared directly, and the fingerprints (made as
    the store's ``scheme`` makes them) where one side is a finding of several rows, or the store is of the first
    layout (which kept no difference_cents to compare)."""
    same = np.ones(len(tonight), dtype=bool)
    for column in _VALUES if scheme == "sum" else ["ledger_value", "backd_value"]:
        now, then = pa.array(tonight[column].array), before.column(column)
        if pa.types.is_integer(now.type):
            equal = pc.fill_null(pc.equal(now, then), pc.and_(pc.is_null(now), pc.is_null(then)))
        else:  # as text, a missing value is "" (as in a fingerprint)
            equal = pc.equal(pc.fill_null(now, ""), pc.fill_null(then, ""))
        same &= equal.to_numpy(zero_copy_only=False)
    one_row = tonight["fingerprint"].isna().to_numpy() & pc.is_null(before.column("fingerprint")).to_numpy(zero_copy_only=False)
    by_fingerprint = compared & (~one_row if scheme == "sum" else True)
    if by_fingerprint.any():
        same[by_fingerprint] &= (_fingerprints(tonight[by_fingerprint], scheme)
                                 == _fingerprints(_to_frame(before.filter(pa.array(by_fingerprint)))))
    return same | ~compared


@dataclass(frozen=True)
class _Placement:
    """Where tonight's findings stand in the state: each one's row there (-1: not there), whether that row was open,
    which state rows are back tonight, and tonight's time in microseconds."""

    at: np.ndarray
    open_before: np.ndarray
    in_tonight: np.ndarray
    is_open: np.ndarray
    now_us: int

    @classmethod
    def of(cls, tonight: pd.DataFrame, state: pa.Table, stamp: pd.Timestamp) -> "_Placement":
        # The state's keys are unique, so one lookup places each of tonight's findings in it.
        at = pd.Index(state.column("key").to_numpy()).get_indexer(tonight["key"].to_numpy(dtype="uint64"))
        is_open = pc.fill_null(pc.equal(state.column("status"), "open"), False).to_numpy(zero_copy_only=False)
        seen = at >= 0
        open_before = seen.copy()
        open_before[seen] = is_open[at[seen]]
        in_tonight = np.zeros(state.num_rows, dtype=bool)
        in_tonight[at[seen]] = True
        return cls(at, open_before, in_tonight, is_open, stamp.value // 1000)  # .value: nanoseconds whatever the unit


def _next_state(tonight: pd.DataFrame, state: pa.Table, placed: _Placement) -> tuple[pa.Table, pd.DataFrame]:
    """The state after tonight, and the findings it resolves: open and back tonight → tonight's row (first seen
    kept); open and gone → resolved now; closed and not back → kept as it was."""
    gone = ~placed.in_tonight
    rest = state.filter(pa.array(gone))
    resolving = pa.array(placed.is_open[gone])
    rest = rest.set_column(rest.schema.get_field_index("status"), "status", pc.if_else(resolving, "resolved", rest.column("status")))
    rest = rest.set_column(rest.schema.get_field_index("resolved_at"), "resolved_at",
                           pc.if_else(resolving, pa.scalar(placed.now_us, pa.timestamp("us", "UTC")), rest.column("resolved_at")))
    return pa.concat_tables([rest, _open_rows(tonight, _first_seen_us(state, placed), placed.now_us)]), _to_frame(rest.filter(resolving))


def _marked(tonight: pd.DataFrame, state: pa.Table, placed: _Placement, scheme: str) -> pd.DataFrame:
    """Tonight's findings with ``change`` (new or open), ``first_seen``, ``age_days`` and ``values_changed``."""
    before = state.select(_VALUES + ["fingerprint"]).take(pa.array(placed.at, mask=~placed.open_before))
    first_seen_us = _first_seen_us(state, placed)
    return tonight.assign(
        first_seen=pd.Series(first_seen_us.view("datetime64[us]"), index=tonight.index).dt.tz_localize("UTC"),
        change=pd.Categorical.from_codes(placed.open_before.astype("int8"), ["new", "open"]),
        values_changed=~_same_values(tonight, before, placed.open_before, scheme),
        age_days=(placed.now_us - first_seen_us) / 86_400e6)


def _first_seen_us(state: pa.Table, placed: _Placement) -> np.ndarray:
    # Microseconds since the epoch: tz-aware pandas times go through Python objects on their way to Arrow.
    seen = state.column("first_seen").cast(pa.int64()).take(pa.array(placed.at, mask=~placed.open_before))
    return pc.fill_null(seen, placed.now_us).to_numpy()


def _open_rows(current: pd.DataFrame, first_seen_us: np.ndarray, now_us: int) -> pa.Table:
    """Tonight's findings as rows of the state: open, seen tonight (a later night compares its values with these)."""
    when = pa.timestamp("us", "UTC")
    columns = {c: pa.array(current[c].array) for c in ("order_key", "kind", "backd_order_id", "merchant_order_id", "fingerprint",
                                                       "ledger_value", "backd_value", "difference_cents", "at_stake_cents")}
    columns |= {"key": pa.array(current["key"].to_numpy(dtype="uint64")), "status": pa.repeat(pa.scalar("open", pa.large_string()), len(current)),
                "first_seen": pa.array(first_seen_us, type=when), "last_seen": pa.repeat(pa.scalar(now_us, when), len(current)),
                "resolved_at": pa.nulls(len(current), when)}
    return pa.table([columns[c] for c in _STATE_SCHEMA.names], names=_STATE_SCHEMA.names).cast(_STATE_SCHEMA)


# -- the state on disk ------------------------------------------------------------------------------------------------------
_STATE_SCHEMA = pa.schema([
    ("key", pa.uint64()), ("order_key", pa.large_string()), ("kind", pa.large_string()),
    ("backd_order_id", pa.large_string()), ("merchant_order_id", pa.large_string()), ("status", pa.large_string()),
    ("first_seen", pa.timestamp("us", "UTC")), ("last_seen", pa.timestamp("us", "UTC")), ("resolved_at", pa.timestamp("us", "UTC")),
    ("fingerprint", pa.uint64()), ("ledger_value", pa.large_string()), ("backd_value", pa.large_string()),
    ("difference_cents", pa.int64()), ("at_stake_cents", pa.int64()),
])


# The state's metadata: how a finding of several rows is fingerprinted, "sum" (this layout; a store of the first
# layout says nothing and folded them by XOR, under which two identical rows cancel out), and the runs.
_SCHEME, _RUNS = b"backd_ops.fingerprints", b"backd_ops.runs"


@dataclass(frozen=True)
class _Stored:
    """The account's store as the last run left it: the findings, how their fingerprints were made, the runs."""

    table: pa.Table
    scheme: str
    runs: pd.DataFrame


def _read_state(folder: Path) -> _Stored:
    """The account's store (one of the first layout: the columns it lacks are missing values; it kept a
    fingerprint for every finding, and its runs in ``runs.parquet``)."""
    path = folder / "findings.parquet"
    if not path.is_file():
        return _Stored(_STATE_SCHEMA.empty_table(), "sum", _runs(None, folder))
    table = pq.read_table(path, use_threads=False)  # a thread of its own, beside the keying of tonight's findings
    metadata = table.schema.metadata or {}
    columns = [table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type) for f in _STATE_SCHEMA]
    return _Stored(pa.table(columns, names=_STATE_SCHEMA.names).cast(_STATE_SCHEMA, safe=False),
                   metadata.get(_SCHEME, b"xor").decode(), _runs(metadata, folder))


def _write_state(state: pa.Table, runs: pd.DataFrame, path: str) -> None:
    records = [{"run_id": str(r.run_id), "as_of": pd.Timestamp(r.as_of).isoformat(), "new": int(r.new), "open": int(r.open),
                "resolved": int(r.resolved), "at_stake_cents": int(r.at_stake_cents)} for r in runs.itertuples()]
    metadata = {_SCHEME: b"sum", _RUNS: json.dumps(records).encode()}
    # Statistics and dictionaries of a million distinct ids cost a third of the write and no reader uses them.
    pq.write_table(state.replace_schema_metadata(metadata), path, use_dictionary=["kind", "status"], write_statistics=False)


def _runs(metadata: dict[bytes, bytes] | None, folder: Path) -> pd.DataFrame:
    """The runs kept in the state's metadata, else (the first layout) in ``runs.parquet``."""
    if metadata and _RUNS in metadata:
        runs = pd.DataFrame(json.loads(metadata[_RUNS]), columns=list(_empty_history().columns))
        return runs.assign(as_of=pd.to_datetime(runs["as_of"], utc=True)).astype(_empty_history().dtypes.to_dict())
    path = folder / "runs.parquet"
    return pd.read_parquet(path) if path.is_file() else _empty_history()


def _to_frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype(), pa.uint64(): pd.UInt64Dtype()}.get)


def _note_fingerprint(finding: pd.DataFrame, scheme: str) -> str:
    """What a note keeps of the values it was written against: "sum:<the finding's fingerprint>:<its shown row's>"
    (a finding of several rows shows its first row). Against a store of the first layout, as that layout wrote
    it: the bare XOR fold, which covers a finding of one row only (see :func:`_written_against`)."""
    first = finding.iloc[:1]
    if scheme == "xor":
        return str(int(_fingerprints(first, "xor")[0]))
    return f"sum:{int(_fingerprints(first)[0])}:{int(_row_fingerprints(first)[0])}"


def _written_against(note_fingerprint: object, finding: pd.DataFrame) -> np.ndarray:
    """For each finding with a note (``note_fingerprint`` beside it), whether it still shows the values the note was
    written against. A first layout's note (a bare number) is trusted on a finding of one row only: its XOR fold
    of several rows cancels out identical ones, so it cannot tell that they changed."""
    shown = _row_fingerprints(finding)
    by_sum, by_xor = _fingerprints(finding), _fingerprints(finding, "xor")
    one_row = finding["fingerprint"].isna().to_numpy()
    out = []
    for text, total, row, xor, single in zip(note_fingerprint, by_sum, shown, by_xor, one_row):
        text = "" if text is None or pd.isna(text) else str(text)
        out.append(text == f"sum:{total}:{row}" if text.startswith("sum:") else bool(single) and text == str(xor))
    return np.array(out, dtype=bool)


def _with_run(runs: pd.DataFrame, run_id: str, stamp: pd.Timestamp, tonight: pd.DataFrame, placed: _Placement,
              resolved: pd.DataFrame) -> pd.DataFrame:
    """The runs with tonight's added: new, open, resolved, money at stake."""
    row = pd.DataFrame({"run_id": [run_id], "as_of": [stamp], "new": [int((~placed.open_before).sum())],
                        "open": [len(tonight)], "resolved": [len(resolved)],
                        "at_stake_cents": [int(tonight["at_stake_cents"].fillna(0).sum())]})
    return pd.concat([runs, row], ignore_index=True) if len(runs) else row


def _empty_history() -> pd.DataFrame:
    return pd.DataFrame({"run_id": pd.Series(dtype="string"), "as_of": pd.Series(dtype="datetime64[ns, UTC]"),
                         "new": pd.Series(dtype="int64"), "open": pd.Series(dtype="int64"),
                         "resolved": pd.Series(dtype="int64"), "at_stake_cents": pd.Series(dtype="int64")})
