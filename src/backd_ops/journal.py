"""The run journal: an SQLite record of every execute run, each row's intent (before sending) and outcome.

It answers the questions a resume asks: which rows of this same input are already done, and which were
sent without a known outcome. It knows nothing of HTTP and never stores a secret (only the public key).

The file is in WAL mode with ``synchronous=NORMAL``: a committed intent survives a killed process or a
kernel restart; an OS crash may lose the last moments, which the planner's read-back covers anyway.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import pandas as pd

from .config import DEFAULT_JOURNAL_PATH

__all__ = ["Journal", "PriorAction", "default_journal_path"]

JOURNAL_ENV = "BACKD_OPS_JOURNAL"
TERMINAL_DONE = frozenset({"done", "already_done"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    environment TEXT NOT NULL,
    base_url TEXT NOT NULL,
    public_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    rows INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    user TEXT,
    host TEXT,
    resumed_from TEXT,
    counts TEXT
);
CREATE INDEX IF NOT EXISTS runs_identity ON runs (fingerprint, operation, environment, public_key);
CREATE TABLE IF NOT EXISTS actions (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    row INTEGER NOT NULL,
    row_label TEXT,
    backd_order_id TEXT,
    request TEXT,
    status_before TEXT,
    intent_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,
    message TEXT,
    status_after TEXT,
    amount TEXT,
    finished_at TEXT,
    PRIMARY KEY (run_id, row)
);
"""


def default_journal_path() -> Path:
    """``$BACKD_OPS_JOURNAL`` if set, else ``~/.backd_ops/journal.sqlite``."""
    return Path(os.environ.get(JOURNAL_ENV) or DEFAULT_JOURNAL_PATH)


@dataclass(frozen=True)
class PriorAction:
    """What an earlier run of the same input left for one row."""

    run_id: str
    outcome: str | None  # None: intent written, outcome never recorded (crash or kill)
    message: str | None
    amount: str | None = None

    @property
    def is_done(self) -> bool:
        return self.outcome in TERMINAL_DONE


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Journal:
    """An SQLite journal, safe to share between worker threads.

    Examples
    --------
    >>> j = Journal(":memory:")
    >>> run_id = j.start_run(operation="refund", environment="sandbox", base_url="http://x", public_key="pk",
    ...                      fingerprint="abc", rows=1)
    >>> j.record_intent(run_id, 0, backd_order_id="BO-1", request={"refund_amount": "5.00"}, status_before="order_confirmed")
    >>> j.prior_actions(fingerprint="abc", operation="refund", environment="sandbox", public_key="pk")[0].outcome is None
    True
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = str(path) if path is not None else str(default_journal_path())
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"Journal({self.path!r})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing --------------------------------------------------------------------------------------------
    def start_run(self, *, operation: str, environment: str, base_url: str, public_key: str, fingerprint: str,
                  rows: int, resumed_from: str | None = None) -> str:
        """Open a run and return its id."""
        run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        self._write(
            "INSERT INTO runs (run_id, operation, environment, base_url, public_key, fingerprint, rows, started_at, user, host, resumed_from)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, operation, environment, base_url, public_key, fingerprint, rows, _now(), _user(), socket.gethostname(), resumed_from),
        )
        return run_id

    def record_intent(self, run_id: str, row: int, *, backd_order_id: str, request: dict, status_before: str | None,
                      row_label: str | None = None) -> None:
        """Written and committed *before* the request is sent."""
        self._write(
            "INSERT INTO actions (run_id, row, row_label, backd_order_id, request, status_before, intent_at, attempts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 1)"
            " ON CONFLICT (run_id, row) DO UPDATE SET attempts = attempts + 1, intent_at = excluded.intent_at",
            (run_id, row, row_label, backd_order_id, json.dumps(request, default=str), status_before, _now()),
        )

    def record_outcome(self, run_id: str, row: int, *, outcome: str, message: str, status_after: str | None = None,
                       amount: str | None = None, backd_order_id: str | None = None, row_label: str | None = None) -> None:
        """The row's terminal outcome for this run."""
        self.record_outcomes(run_id, [(row, row_label, backd_order_id, outcome, message, status_after, amount)])

    def record_outcomes(self, run_id: str, rows: Iterable[tuple]) -> None:
        """Many outcomes in one transaction: ``(row, row_label, backd_order_id, outcome, message, status_after, amount)``."""
        stamp = _now()
        params = [(run_id, *r, stamp) for r in rows]
        if not params:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO actions (run_id, row, row_label, backd_order_id, outcome, message, status_after, amount, finished_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id, row) DO UPDATE SET outcome = excluded.outcome, message = excluded.message,"
                " status_after = excluded.status_after, amount = excluded.amount, finished_at = excluded.finished_at",
                params,
            )
            self._db.execute("COMMIT")

    def finish_run(self, run_id: str, counts: dict[str, int]) -> None:
        self._write("UPDATE runs SET finished_at = ?, counts = ? WHERE run_id = ?", (_now(), json.dumps(counts), run_id))

    def _write(self, sql: str, params: tuple) -> None:
        with self._lock:
            self._db.execute(sql, params)

    # -- questions ------------------------------------------------------------------------------------------
    def prior_actions(self, *, fingerprint: str, operation: str, environment: str, public_key: str) -> dict[int, PriorAction]:
        """Per row, the latest state left by earlier runs of this same input (newest run wins)."""
        with self._lock:
            cursor = self._db.execute(
                "SELECT a.row, a.run_id, a.outcome, a.message, a.amount FROM actions a JOIN runs r USING (run_id)"
                " WHERE r.fingerprint = ? AND r.operation = ? AND r.environment = ? AND r.public_key = ?"
                " ORDER BY r.started_at, a.rowid",
                (fingerprint, operation, environment, public_key),
            )
            rows = cursor.fetchall()
        latest: dict[int, PriorAction] = {}
        for row, run_id, outcome, message, amount in rows:
            previous = latest.get(row)
            if previous is not None and previous.is_done and not (outcome in TERMINAL_DONE):
                continue  # once done, a later run's view of the row cannot undo it
            latest[row] = PriorAction(run_id, outcome, message, amount)
        return latest

    def latest_run(self, *, fingerprint: str, operation: str, environment: str, public_key: str) -> str | None:
        with self._lock:
            found = self._db.execute(
                "SELECT run_id FROM runs WHERE fingerprint = ? AND operation = ? AND environment = ? AND public_key = ?"
                " ORDER BY started_at DESC LIMIT 1",
                (fingerprint, operation, environment, public_key),
            ).fetchone()
        return found[0] if found else None

    def runs(self) -> pd.DataFrame:
        """Every run, newest first.

        Examples
        --------
        >>> Journal(":memory:").runs().columns[:3].tolist()
        ['run_id', 'operation', 'environment']
        """
        frame = self._query("SELECT * FROM runs ORDER BY started_at DESC")
        for column in ("started_at", "finished_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        return frame

    def actions(self, run_id: str | None = None) -> pd.DataFrame:
        """The rows of one run (default: the newest), in input order."""
        run_id = run_id or self._newest_run_id()
        frame = self._query("SELECT * FROM actions WHERE run_id = ? ORDER BY row", (run_id,))
        for column in ("intent_at", "finished_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        return frame

    def _newest_run_id(self) -> str | None:
        with self._lock:
            found = self._db.execute("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
        return found[0] if found else None

    def _query(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        with self._lock:
            cursor = self._db.execute(sql, params)
            columns = [d[0] for d in cursor.description]
            return pd.DataFrame(cursor.fetchall(), columns=columns)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return os.environ.get("USER", "unknown")
