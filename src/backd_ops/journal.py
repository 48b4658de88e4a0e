"""The run journal: an SQLite record of plans, approvals, execute runs and each row's intent and outcome.

It is evidence, not truth. Execution always reads the order from Backd; the journal says what to look for
first (a write that may have landed, a run that did this already) and who did what, when, under which plan.
It also holds the claims that keep two executors of one plan, or of one order, from running at once.
It knows nothing of HTTP and never stores a secret (only the account's public key).

The file is in WAL mode with ``synchronous=NORMAL``: a committed intent survives a killed process or a
kernel restart; an OS crash may lose the last moments, which the read-back before every write covers anyway.
Intents that worker threads record at the same moment share one transaction (each is committed before its own
write leaves); execution writes outcomes a batch at a time, so a kill can leave a finished row in doubt, which
the next run settles by reading the order back.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from .config import DEFAULT_JOURNAL_PATH, Account, current_user
from .errors import ConcurrentRunError, InputError

__all__ = ["Claim", "Evidence", "Journal", "default_journal_path"]

JOURNAL_ENV = "BACKD_OPS_JOURNAL"
SCHEMA_VERSION = 2
CLAIM_LEASE_S = 60.0
"""A claim whose heartbeat is older than this is stale (its process hung or is on a host we cannot check)."""
HEARTBEAT_S = 5.0
DONE_OUTCOMES = frozenset({"done", "already_done"})
IN_DOUBT_OUTCOMES = frozenset({None, "uncertain"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS plans (
    plan_id TEXT PRIMARY KEY, operation TEXT NOT NULL, account TEXT NOT NULL, environment TEXT NOT NULL,
    base_url TEXT NOT NULL, public_key TEXT NOT NULL, created_at TEXT NOT NULL, created_by TEXT,
    rows INTEGER NOT NULL, planned_rows INTEGER NOT NULL, planned_amount TEXT, recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (
    plan_id TEXT NOT NULL, approved_by TEXT NOT NULL, approved_at TEXT NOT NULL, host TEXT, os_user TEXT,
    PRIMARY KEY (plan_id, approved_by)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, plan_id TEXT NOT NULL, operation TEXT NOT NULL, account TEXT NOT NULL,
    environment TEXT NOT NULL, base_url TEXT NOT NULL, public_key TEXT NOT NULL, rows INTEGER NOT NULL,
    started_at TEXT NOT NULL, finished_at TEXT, user TEXT, host TEXT, pid INTEGER, approved_by TEXT,
    resumed_from TEXT, counts TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_plan ON runs (plan_id, account);
CREATE TABLE IF NOT EXISTS actions (
    run_id TEXT NOT NULL REFERENCES runs (run_id), row INTEGER NOT NULL, plan_id TEXT NOT NULL,
    account TEXT NOT NULL, operation TEXT NOT NULL, row_label TEXT, backd_order_id TEXT, request_key TEXT,
    amount TEXT, request TEXT, status_before TEXT, intent_at TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    outcome TEXT, message TEXT, status_after TEXT, finished_at TEXT, replaced_amount TEXT,
    PRIMARY KEY (run_id, row)
);
CREATE INDEX IF NOT EXISTS actions_evidence ON actions (account, backd_order_id, operation);
CREATE TABLE IF NOT EXISTS claims (
    plan_id TEXT NOT NULL, account TEXT NOT NULL, token TEXT NOT NULL, run_id TEXT, pid INTEGER, pid_started TEXT,
    host TEXT, user TEXT, started_at TEXT NOT NULL, heartbeat_at REAL NOT NULL, pid_ns TEXT,
    PRIMARY KEY (plan_id, account)
);
CREATE TABLE IF NOT EXISTS leases (
    account TEXT NOT NULL, backd_order_id TEXT NOT NULL, token TEXT NOT NULL, run_id TEXT,
    PRIMARY KEY (account, backd_order_id)
);
"""


def default_journal_path() -> Path:
    """``$BACKD_OPS_JOURNAL`` if set, else ``~/.backd_ops/journal.sqlite``."""
    return Path(os.environ.get(JOURNAL_ENV) or DEFAULT_JOURNAL_PATH)


def now_iso() -> str:
    """Now, in UTC, as the journal writes times."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Evidence:
    """What an earlier action on the same account and order left: which run, what it asked, how it ended."""

    run_id: str
    plan_id: str
    operation: str
    request_key: str | None
    amount: str | None
    outcome: str | None  # None: intent written, outcome never recorded (a kill or a crash)
    intent_at: datetime | None
    finished_at: datetime | None

    @property
    def is_done(self) -> bool:
        return self.outcome in DONE_OUTCOMES

    @property
    def may_have_landed(self) -> bool:
        """Sent, and not known to have failed: done, or in doubt."""
        return self.intent_at is not None and self.outcome not in ("failed", "not_applied")

    @property
    def in_doubt(self) -> bool:
        """Sent (or about to be) with no known result: the write may have landed."""
        return self.intent_at is not None and self.outcome in IN_DOUBT_OUTCOMES


@dataclass(frozen=True)
class Claim:
    """This process's hold on a plan (and, row by row, on orders) for the length of one execute run."""

    plan_id: str
    account: str
    token: str
    run_id: str


class Journal:
    """An SQLite journal, safe to share between worker threads and between processes.

    Examples
    --------
    >>> from backd_ops.config import Account
    >>> j = Journal(":memory:")
    >>> account = Account("sandbox", "http://127.0.0.1:1/v1/backd/bnpl/api", "pk")
    >>> claim = j.claim("plan-1", account, run_id="run-1")
    >>> j.start_run(claim, operation="refund", account=account, rows=1)
    'run-1'
    >>> j.lease(claim, ["BO-1"])        # no other run holds the order
    {}
    >>> j.record_intent(claim, 0, operation="refund", backd_order_id="BO-1", request={"refund_amount": "5.00"},
    ...                 request_key="5.00", amount="5.00", status_before="order_confirmed")
    True
    >>> j.evidence(account, "refund", ["BO-1"])["BO-1"][0].in_doubt
    True
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = str(path) if path is not None else str(default_journal_path())
        self._lock = threading.RLock()
        self._intents = _GroupCommit(self._commit_intents)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except (OSError, sqlite3.DatabaseError) as exc:
            raise InputError(f"cannot use {self.path} as the journal ({exc}): it must be a writable SQLite file "
                             f"(--journal, journal=, or ${JOURNAL_ENV})") from None

    @classmethod
    def existing(cls, path: str | Path | None = None) -> Journal | None:
        """The journal at ``path`` if the file exists (a dry run reads evidence but never creates a journal)."""
        target = Path(path) if path is not None else default_journal_path()
        return cls(target) if str(target) == ":memory:" or target.is_file() else None

    def __repr__(self) -> str:
        return f"Journal({self.path!r})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> None:
        """Keep a version-1 journal (runs keyed by file fingerprint) as evidence under ``*_v1`` names."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "claims" in tables and "pid_ns" not in {r[1] for r in self._db.execute("PRAGMA table_info(claims)")}:
            self._db.execute("ALTER TABLE claims ADD COLUMN pid_ns TEXT")
        if "actions" in tables and "plan_id" in {r[1] for r in self._db.execute("PRAGMA table_info(actions)")} \
                and "replaced_amount" not in {r[1] for r in self._db.execute("PRAGMA table_info(actions)")}:
            self._db.execute("ALTER TABLE actions ADD COLUMN replaced_amount TEXT")
        if "approvals" in tables and "os_user" not in {r[1] for r in self._db.execute("PRAGMA table_info(approvals)")}:
            self._db.execute("ALTER TABLE approvals ADD COLUMN os_user TEXT")
        if version < SCHEMA_VERSION and "runs" in tables:
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(runs)")}
            if "plan_id" not in columns:
                self._db.execute("ALTER TABLE runs RENAME TO runs_v1")
                if "actions" in tables:
                    self._db.execute("ALTER TABLE actions RENAME TO actions_v1")
                self._db.execute("DROP INDEX IF EXISTS runs_identity")

    # -- plans and approvals ------------------------------------------------------------------------------------
    def record_plan(self, *, plan_id: str, operation: str, account: Account, created_at: str, created_by: str,
                    rows: int, planned_rows: int, planned_amount: str | None) -> None:
        """Remember a plan that was approved or executed (idempotent: a plan is content-addressed)."""
        self._write(
            "INSERT OR IGNORE INTO plans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (plan_id, operation, account.key, account.environment, account.base_url, account.public_key, created_at,
             created_by, rows, planned_rows, planned_amount, now_iso()),
        )

    def record_approval(self, plan_id: str, approved_by: str, approved_at: str) -> None:
        """An approval of ``plan_id``, with the host and OS account it was given from (evidence for an auditor)."""
        self._write("INSERT OR IGNORE INTO approvals VALUES (?, ?, ?, ?, ?)",
                    (plan_id, approved_by, approved_at, socket.gethostname(), _os_user()))

    def approvals(self, plan_id: str) -> list[tuple[str, str]]:
        """``(approved_by, approved_at)`` recorded for ``plan_id``, oldest first."""
        with self._lock:
            return list(self._db.execute("SELECT approved_by, approved_at FROM approvals WHERE plan_id = ? ORDER BY approved_at", (plan_id,)))

    # -- claims ---------------------------------------------------------------------------------------------------
    def claim(self, plan_id: str, account: Account, *, run_id: str | None = None) -> Claim:
        """Hold ``plan_id`` for this account, or raise :class:`ConcurrentRunError` naming the live holder.

        A claim left by a process that is gone (same host, pid dead) or silent for ``CLAIM_LEASE_S`` is taken over.
        """
        claim = Claim(plan_id, account.key, uuid.uuid4().hex, run_id or new_run_id())
        with self._transaction():
            held = self._db.execute("SELECT pid, pid_started, host, pid_ns, user, started_at, heartbeat_at, run_id FROM claims"
                                    " WHERE plan_id = ? AND account = ?", (plan_id, account.key)).fetchone()
            if held is not None and _holder_alive(*held[:4], heartbeat_at=held[6]):
                pid, _, host, _, user, started_at, _, holder_run = held
                raise ConcurrentRunError(
                    f"plan {plan_id[:12]} is being executed right now by pid {pid} on {host} ({user}), run {holder_run}, "
                    f"started at {started_at}; wait for it to finish (a claim of a killed process is taken over)")
            self._db.execute("INSERT OR REPLACE INTO claims (plan_id, account, token, run_id, pid, pid_started, host, user,"
                             " started_at, heartbeat_at, pid_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (plan_id, account.key, claim.token, claim.run_id, os.getpid(), _pid_started(os.getpid()),
                              socket.gethostname(), current_user(), now_iso(), time.time(), _pid_namespace()))
        return claim

    def heartbeat(self, claim: Claim) -> None:
        self._write("UPDATE claims SET heartbeat_at = ? WHERE plan_id = ? AND account = ? AND token = ?",
                    (time.time(), claim.plan_id, claim.account, claim.token))

    def release(self, claim: Claim) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM claims WHERE plan_id = ? AND account = ? AND token = ?", (claim.plan_id, claim.account, claim.token))
            self._db.execute("DELETE FROM leases WHERE token = ?", (claim.token,))

    def lease(self, claim: Claim, backd_order_ids: Iterable[str]) -> dict[str, str]:
        """Hold these orders for this claim's run, in one transaction; the ones another live run holds, and who.

        Examples
        --------
        >>> journal.lease(claim, ["BO-1", "BO-2"])          # doctest: +SKIP
        {'BO-2': 'run 20261129T150102Z-3f2a9c1d (pid 4242 on finance-01)'}
        """
        held_by_others: dict[str, str] = {}
        with self._transaction():
            for order_id in dict.fromkeys(i for i in backd_order_ids if i):
                held = self._db.execute(
                    "SELECT l.token, l.run_id, c.pid, c.pid_started, c.host, c.pid_ns, c.heartbeat_at FROM leases l"
                    " LEFT JOIN claims c ON c.token = l.token WHERE l.account = ? AND l.backd_order_id = ?",
                    (claim.account, order_id)).fetchone()
                if held is not None and held[0] != claim.token and held[2] is not None \
                        and _holder_alive(held[2], held[3], held[4], held[5], heartbeat_at=held[6]):
                    held_by_others[order_id] = f"run {held[1]} (pid {held[2]} on {held[4]})"
                    continue
                self._db.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?)", (claim.account, order_id, claim.token, claim.run_id))
        return held_by_others

    # -- runs and rows --------------------------------------------------------------------------------------------
    def start_run(self, claim: Claim, *, operation: str, account: Account, rows: int, approved_by: str | None = None) -> str:
        """Open the run this claim was made for; ``resumed_from`` is the previous run of the same plan."""
        previous = self.latest_run(claim.plan_id, account)
        self._write(
            "INSERT INTO runs (run_id, plan_id, operation, account, environment, base_url, public_key, rows, started_at,"
            " user, host, pid, approved_by, resumed_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (claim.run_id, claim.plan_id, operation, account.key, account.environment, account.base_url, account.public_key,
             rows, now_iso(), current_user(), socket.gethostname(), os.getpid(), approved_by, previous),
        )
        return claim.run_id

    def record_intent(self, claim: Claim, row: int, *, operation: str, backd_order_id: str, request: dict, request_key: str,
                      amount: str | None, status_before: str | None, row_label: str | None = None,
                      replaced_amount: str | None = None) -> bool:
        """Written and committed as each attempt of a write leaves (after its rate-limit wait), only while this run
        still holds the plan (``claim``) and the order's lease; False if not (interrupted, or another run took over a
        stalled one): then nothing may be sent. A later attempt counts in ``attempts`` and moves ``intent_at``: the doubt window starts when a
        write was sent. ``replaced_amount``: the active refund request this write will decline by replacing it (what
        an undo cannot bring back)."""
        values = (claim.run_id, row, claim.plan_id, claim.account, operation, row_label, backd_order_id, request_key, amount,
                  json.dumps(request, default=str), status_before, replaced_amount)
        return self._intents.commit(_Intent(claim, backd_order_id, values))

    def _commit_intents(self, batch: list[_Intent]) -> None:
        """One transaction for a batch of intents: each is written only while its run still holds the plan and the
        order (``held``). A run stalled past its lease may have lost either to another run, which may be writing
        the same orders now."""
        with self._transaction():
            stamp = now_iso()  # inside the write lock, just before the sends it allows
            holding = {claim: self._holds(claim) for claim in {i.claim for i in batch}}
            for intent in batch:
                intent.held = holding[intent.claim] and self._holds_order(intent.claim, intent.backd_order_id)
            self._db.executemany(
                "INSERT INTO actions (run_id, row, plan_id, account, operation, row_label, backd_order_id, request_key, amount,"
                " request, status_before, replaced_amount, intent_at, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)"
                " ON CONFLICT (run_id, row) DO UPDATE SET attempts = attempts + 1, intent_at = excluded.intent_at,"
                " outcome = NULL, message = NULL",
                [(*i.values, stamp) for i in batch if i.held],
            )

    def _holds_order(self, claim: Claim, backd_order_id: str | None) -> bool:
        if not backd_order_id:
            return True  # no order yet (create_order): nothing another run could hold
        return self._db.execute("SELECT 1 FROM leases WHERE account = ? AND backd_order_id = ? AND token = ?",
                                (claim.account, backd_order_id, claim.token)).fetchone() is not None

    def _holds(self, claim: Claim) -> bool:
        return self._db.execute("SELECT 1 FROM claims WHERE plan_id = ? AND account = ? AND token = ?",
                                (claim.plan_id, claim.account, claim.token)).fetchone() is not None

    def record_outcomes(self, claim: Claim, operation: str, rows: Iterable[dict[str, Any]]) -> None:
        """Terminal outcomes in one transaction (keys: row, row_label, backd_order_id, request_key, amount, outcome,
        message, status_after); each row's order lease is released with it."""
        stamp = now_iso()
        params = [(claim.run_id, r["row"], claim.plan_id, claim.account, operation, r.get("row_label"), r.get("backd_order_id"),
                   r.get("request_key"), r.get("amount"), r["outcome"], r["message"], r.get("status_after"), stamp)
                  for r in rows]
        if not params:
            return
        with self._transaction():
            self._db.executemany(
                "INSERT INTO actions (run_id, row, plan_id, account, operation, row_label, backd_order_id, request_key, amount,"
                " outcome, message, status_after, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id, row) DO UPDATE SET outcome = excluded.outcome, message = excluded.message,"
                " status_after = excluded.status_after, finished_at = excluded.finished_at",
                params,
            )
            self._db.executemany("DELETE FROM leases WHERE account = ? AND backd_order_id = ? AND token = ?",
                                 [(claim.account, p[6], claim.token) for p in params if p[6]])

    def mark_not_applied(self, claim: Claim, row: int, message: str) -> None:
        """A sent write that reading back proved absent: no longer in doubt; the order stays held for a resend."""
        self._write("UPDATE actions SET outcome = 'not_applied', message = ?, finished_at = ? WHERE run_id = ? AND row = ?",
                    (message, now_iso(), claim.run_id, row))

    def finish_run(self, run_id: str, counts: dict[str, int]) -> None:
        self._write("UPDATE runs SET finished_at = ?, counts = ? WHERE run_id = ?", (now_iso(), json.dumps(counts), run_id))

    # -- questions --------------------------------------------------------------------------------------------------
    def evidence(self, account: Account, operation: str | None, backd_order_ids: Iterable[str]) -> dict[str, list[Evidence]]:
        """Per order, every earlier action on it for this account (of ``operation``, or of any when None), oldest first."""
        ids = sorted({i for i in backd_order_ids if i})
        found: dict[str, list[Evidence]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            where, params = ("AND operation = ?", (operation,)) if operation else ("", ())
            with self._lock:
                rows = self._db.execute(
                    "SELECT backd_order_id, run_id, plan_id, operation, request_key, amount, outcome, intent_at, finished_at"
                    f" FROM actions WHERE account = ? {where} AND backd_order_id IN ({marks}) ORDER BY rowid",
                    (account.key, *params, *chunk)).fetchall()
            for order_id, run_id, plan_id, op, key, amount, outcome, intent_at, finished_at in rows:
                found.setdefault(order_id, []).append(Evidence(run_id, plan_id, op, key, amount, outcome, _time(intent_at), _time(finished_at)))
        return found

    def latest_run(self, plan_id: str, account: Account) -> str | None:
        with self._lock:
            found = self._db.execute("SELECT run_id FROM runs WHERE plan_id = ? AND account = ? ORDER BY started_at DESC LIMIT 1",
                                     (plan_id, account.key)).fetchone()
        return found[0] if found else None

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run's record, or None."""
        frame = self._query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return None if frame.empty else frame.iloc[0].to_dict()

    def runs(self) -> pd.DataFrame:
        """Every run, newest first.

        Examples
        --------
        >>> Journal(":memory:").runs().columns[:3].tolist()
        ['run_id', 'plan_id', 'operation']
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

    # -- plumbing ---------------------------------------------------------------------------------------------------
    def _write(self, sql: str, params: tuple) -> None:
        with self._lock:
            self._db.execute(sql, params)

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def _query(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        with self._lock:
            cursor = self._db.execute(sql, params)
            columns = [d[0] for d in cursor.description]
            return pd.DataFrame(cursor.fetchall(), columns=columns)


@dataclass(eq=False)
class _Intent:
    claim: Claim
    backd_order_id: str
    values: tuple  # the actions row, as record_intent lays it out
    held: bool = False
    done: bool = False
    error: BaseException | None = None


class _GroupCommit:
    """Intents from many worker threads, committed together: whoever takes the commit lock writes every intent
    queued so far in one transaction, and a thread whose intent was written meanwhile just returns.

    Each intent is still durable before its write is sent; sixteen workers no longer queue for sixteen
    transactions (a quarter of a row's client CPU went to them, most of it handing the GIL around).
    """

    def __init__(self, write: Callable[[list[_Intent]], None]) -> None:
        self._write = write
        self._queue: list[_Intent] = []
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()

    def commit(self, intent: _Intent) -> bool:
        """Block until this intent is committed (or refused); True if its run still held the plan and the order."""
        with self._queue_lock:
            self._queue.append(intent)
        with self._commit_lock:
            if not intent.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                try:
                    self._write(batch)
                except BaseException as exc:
                    for queued in batch:
                        queued.error = exc
                    raise
                finally:
                    for queued in batch:
                        queued.done = True
        if intent.error is not None:
            raise intent.error
        return intent.held


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: the write lock is taken before reading, so check-then-claim is atomic
    across processes as well as threads."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def __enter__(self) -> None:
        self._journal._lock.acquire()
        try:
            self._journal._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._journal._lock.release()
            raise

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        try:
            self._journal._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._journal._lock.release()


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _holder_alive(pid: int | None, pid_started: str | None, host: str | None, pid_ns: str | None, *,
                  heartbeat_at: float | None) -> bool:
    """A holder is alive if it beat recently and, where we can see its process (same host and pid namespace),
    that process still exists and is the same one."""
    if heartbeat_at is None or time.time() - heartbeat_at > CLAIM_LEASE_S:
        return False
    if host != socket.gethostname() or pid is None or pid_ns != _pid_namespace():
        return True  # another host or container: its heartbeat is all we can check
    return _pid_alive(pid) and (pid_started is None or _pid_started(pid) == pid_started)


def _pid_namespace() -> str | None:
    """Which pid namespace we are in (containers that share a hostname do not share pids)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_stat(pid)
    return stat is None or stat[0] != "Z"  # a killed child not yet reaped is a zombie: gone for our purposes


def _pid_started(pid: int) -> str | None:
    """The process's start time (Linux /proc), so a reused pid is not mistaken for the holder."""
    stat = _proc_stat(pid)
    return stat[19] if stat is not None and len(stat) > 19 else None


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()
