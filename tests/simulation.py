"""Seeded simulation of the execute path: faults, a SIGKILL, a second executor and outside changes, then invariants.

Each seed draws, from its own random generator: an operation and 4–10 input rows (some invalid), outside
changes to some orders between the plan and its execution, a fault profile (5xx before and after applying,
429, connection resets, writes slower than the read timeout), when executor A is SIGKILLed, and when a second
executor B of the same plan starts. After both, the plan is executed once more (the resume) and we check:

1. no order has more than one write of ours per planned row, and none for a row that was not planned or whose
   order was changed outside (such a row is ``drifted``);
2. every row has exactly one outcome, in the result and in the resume's journal run; none is left ``uncertain``;
3. ``already_done`` (and ``done``) only where Backd shows the effect.

The test process stays single-threaded: the sandbox runs in a subprocess, executors are forked children.
Replay one seed: ``python -m tests.simulation --seed 17`` (``-v`` prints the timeline).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pandas as pd

from backd_ops import BackdClient, ConcurrentRunError
from backd_ops.execution import execute_plan
from backd_ops.models import Order
from backd_ops.operations import ALREADY_DONE, OPERATIONS
from backd_ops.plans import load_plan, make_plan
from backd_ops.sandbox import FaultProfile
from backd_ops.sandbox.remote import RemoteSandbox, spawn_sandbox, stop_sandbox

READ_TIMEOUT_S = 0.3
SLOW_MS = 500  # longer than the read timeout: the write lands after the client gave up
SETTLE_WINDOW_S = 0.6  # read timeout + window > SLOW_MS: a slow write shows before a resend is allowed
ORDERS = 60
NEEDS = {"refund": "order_confirmed", "cancel": "order_placed", "confirm": "order_placed", "update": "order_placed",
         "delete_refund": "order_confirmed"}
EXIT_REFUSED = 3


@dataclass
class Report:
    """What one seed did and which invariants it broke (none, we hope)."""

    seed: int
    operation: str = ""
    rows: int = 0
    planned: int = 0
    outside: list[str] = field(default_factory=list)
    killed_after_s: float | None = None
    second_exit: int | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)

    def replay(self) -> str:
        return f"python -m tests.simulation --seed {self.seed} -v"


def client_for(remote: RemoteSandbox) -> BackdClient:
    env = remote.env()
    return BackdClient(env["BACKD_PUBLIC_KEY"], env["BACKD_SECRET_KEY"], base_url=env["BACKD_BASE_URL"],
                       timeout=(1.0, READ_TIMEOUT_S), backoff_initial_s=0.005, max_retries=3)


# -- one seed -------------------------------------------------------------------------------------------------------
def run_seed(seed: int, remote: RemoteSandbox, workdir: Path) -> Report:
    rng = random.Random(seed)
    report = Report(seed)
    remote.reset(orders=ORDERS, seed=seed)
    journal, plan_path = workdir / f"journal-{seed}.sqlite", workdir / f"plan-{seed}.json"
    client = client_for(remote)
    report.operation = operation = rng.choice(["refund", "refund", "cancel", "confirm", "update", "delete_refund"])
    frame = _input(operation, remote.orders(), rng)
    plan = make_plan(client, operation, frame, journal=journal, progress=False, max_workers=4)
    plan.backd.save(plan_path)
    report.rows, report.planned = len(plan), int((plan.outcome == "planned").sum())
    planned_ids = set(plan.loc[plan.outcome == "planned", "backd_order_id"])
    report.outside = _outside_changes(client, plan, rng)
    first_ours = len(remote.mutations())
    remote.set_faults(_faults(rng))
    _executors(remote, plan_path, journal, rng, report)
    remote.set_faults(None)
    result = execute_plan(client, load_plan(plan_path), journal=journal, progress=False, settle_window_s=SETTLE_WINDOW_S,
                          max_workers=4)
    client.close()
    time.sleep(SLOW_MS / 1000 + 0.1)  # a write still in flight lands before we count writes
    report.outcomes = {k: int(v) for k, v in result.outcome.astype(str).value_counts().items()}
    report.violations = _violations(operation, plan, result, remote, first_ours, planned_ids, set(report.outside), journal)
    return report


def _input(operation: str, orders: list[dict], rng: random.Random) -> pd.DataFrame:
    suitable = [o for o in orders if o["status"] == NEEDS[operation] and _fits(operation, o)]
    chosen = rng.sample(suitable, min(len(suitable), rng.randint(3, 8)))
    others = rng.sample([o for o in orders if o not in chosen], 2)  # wrong status for some operations: invalid rows
    rows = [_row(operation, o, rng) for o in chosen + others]
    if rng.random() < 0.3:
        rows.append({**_row(operation, chosen[0], rng), "backd_order_id": "BO-NOPE-0001"})
    rng.shuffle(rows)
    return pd.DataFrame(rows)


def _fits(operation: str, order: dict) -> bool:
    active = any(r["status"] in ("draft", "approved") for r in order["refunds"])
    if operation == "delete_refund":
        return active and _unlocked(order)
    if operation == "refund":
        return not active or _unlocked(order)
    return True


def _unlocked(order: dict) -> bool:
    parsed = Order.from_wire(order)
    return parsed.active_refund is not None and not parsed.active_refund.is_locked(pd.Timestamp.now(tz="America/Chicago"))


def _row(operation: str, order: dict, rng: random.Random) -> dict:
    row = {"backd_order_id": order["backd_order_id"], "merchant_order_id": order["merchant_order_id"]}
    total = Decimal(str(order["order_total"]))
    if operation == "refund":
        row["refund_amount"] = str((total * Decimal(rng.choice(["0.1", "0.25", "0.5"]))).quantize(Decimal("0.01")))
    elif operation == "update":
        row.update(order_total=str(total - Decimal("1.00")), merchant_order_status="shipped")
    elif operation == "cancel":
        row.pop("merchant_order_id")
    return row


def _outside_changes(client: BackdClient, plan: pd.DataFrame, rng: random.Random) -> list[str]:
    """Someone else changes some planned orders between the plan and its execution."""
    changed = []
    for row in plan[plan.outcome == "planned"].itertuples():
        if rng.random() >= 0.25:
            continue
        order = client.find_order(row.backd_order_id)
        if order.status == "order_confirmed":
            active = order.active_refund
            if active is not None and rng.random() < 0.5:
                client.delete_refund(order.backd_order_id, order.merchant_order_id)
            else:
                client.refund(order.backd_order_id, order.merchant_order_id, Decimal("0.37"))
        elif rng.random() < 0.5:
            client.update_order(order.backd_order_id, order.merchant_order_id, merchant_order_status="changed-outside")
        else:
            client.confirm_order(order.backd_order_id)
        changed.append(row.backd_order_id)
    return changed


def _faults(rng: random.Random) -> FaultProfile:
    pick = lambda top: round(rng.uniform(0, top), 3)  # noqa: E731
    return FaultProfile(latency_ms=1, jitter_ms=3, error_before=pick(0.12), rate_limit=pick(0.1), retry_after_s=0.02,
                        reset_before=pick(0.06), drop_after_apply=pick(0.12), error_after_apply=pick(0.08),
                        slow=pick(0.25), slow_ms=SLOW_MS, seed=rng.randrange(1 << 30))


# -- the executors (forked children) ------------------------------------------------------------------------------------
def _executors(remote: RemoteSandbox, plan_path: Path, journal: Path, rng: random.Random, report: Report) -> None:
    kill_after = rng.choice([None, rng.uniform(0.0, 0.8)])
    second_after = rng.uniform(0.0, 0.6)
    started = time.monotonic()
    first = _fork_executor(remote, plan_path, journal)
    report.timeline.append(f"A started (pid {first}); kill after {kill_after}; B after {second_after:.2f}s")
    second = None
    events = sorted([(second_after, "start_b")] + ([(kill_after, "kill_a")] if kill_after is not None else []))
    for at, event in events:
        time.sleep(max(0.0, at - (time.monotonic() - started)))
        if event == "kill_a":
            _kill(first)
            report.killed_after_s = round(at, 3)
            report.timeline.append(f"A killed at {at:.2f}s")
        else:
            second = _fork_executor(remote, plan_path, journal)
            report.timeline.append(f"B started at {at:.2f}s (pid {second})")
    codes = {"A": _wait(first), "B": _wait(second) if second else None}
    report.second_exit = codes["B"]
    report.timeline.append(f"exit codes {codes}")


def _fork_executor(remote: RemoteSandbox, plan_path: Path, journal: Path) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:  # the child: its own client and journal connection; nothing inherited is used
        client = client_for(remote)
        execute_plan(client, load_plan(plan_path), journal=journal, progress=False, settle_window_s=SETTLE_WINDOW_S, max_workers=4)
        code = 0
    except ConcurrentRunError:
        code = EXIT_REFUSED
    except BaseException as exc:  # noqa: BLE001 - reported through the exit code and stderr
        print(f"executor {os.getpid()} failed: {exc!r}", file=sys.stderr)
    finally:
        os._exit(code)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait(pid: int, timeout_s: float = 120.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        time.sleep(0.01)
    _kill(pid)
    os.waitpid(pid, 0)
    return -999  # hung: a violation of its own


# -- invariants -----------------------------------------------------------------------------------------------------------
def _violations(operation: str, plan: pd.DataFrame, result: pd.DataFrame, remote: RemoteSandbox, first_ours: int,
                planned_ids: set[str], outside: set[str], journal: Path) -> list[str]:
    from backd_ops.journal import Journal

    op = OPERATIONS[operation]
    found = []
    mutations, final = remote.mutations(), {o["backd_order_id"]: o for o in remote.orders()}
    ours = [m for m in mutations[first_ours:] if m.endpoint == op.endpoint]
    per_order: dict[str, int] = {}
    for m in ours:
        per_order[m.backd_order_id] = per_order.get(m.backd_order_id, 0) + 1
    for order_id, count in per_order.items():
        allowed = 1 if order_id in planned_ids and order_id not in outside else 0
        if count > allowed:
            found.append(f"{order_id}: {count} writes of ours (allowed {allowed}; planned={order_id in planned_ids}, "
                         f"changed outside={order_id in outside})")
    if len(result) != len(plan) or result.index.tolist() != plan.index.tolist():
        found.append("rows lost or reordered")
    found += [f"row {i}: left uncertain ({r.message})" for i, r in result[result.outcome == "uncertain"].iterrows()]
    for i, r in result[result.outcome.isin(["done", ALREADY_DONE])].iterrows():
        order = Order.from_wire(final[r.backd_order_id])
        values = {c: (None if pd.isna(r[c]) else r[c]) for c in op.columns}
        if op.plan(values, order, pd.Timestamp.now(tz="America/Chicago").to_pydatetime(), label=i).outcome != ALREADY_DONE:
            found.append(f"row {i}: {r.outcome}, but Backd does not show the effect ({r.message})")
    for i, r in result[result.backd_order_id.isin(outside) & (result.outcome != "drifted")].iterrows():
        found.append(f"row {i}: its order was changed outside after the plan, yet the outcome is {r.outcome} ({r.message})")
    book = Journal(journal)
    try:
        actions = book.actions(result.attrs["backd_result"]["run_id"])
    finally:
        book.close()
    if sorted(actions.row.tolist()) != list(range(len(plan))) or actions.outcome.isna().any():
        found.append("the resume's journal run does not hold exactly one outcome per row")
    return found


# -- many seeds, in parallel worker processes ---------------------------------------------------------------------------------
def run_chunk(seeds: list[int]) -> list[Report]:
    """Run ``seeds`` with one sandbox subprocess (a worker process's share of the seeds)."""
    proc, remote = spawn_sandbox(orders=ORDERS)
    try:
        with tempfile.TemporaryDirectory(prefix="backd-sim-") as workdir:
            return [_safe_seed(seed, remote, Path(workdir)) for seed in seeds]
    finally:
        stop_sandbox(proc)


def _safe_seed(seed: int, remote: RemoteSandbox, workdir: Path) -> Report:
    try:
        return run_seed(seed, remote, workdir)
    except Exception as exc:  # noqa: BLE001 - a crash of the harness or the code is a finding, with its seed
        return Report(seed, violations=[f"crashed: {exc!r}"])


def run_seeds(seeds: list[int], *, workers: int = 4) -> list[Report]:
    """All seeds over ``workers`` fresh processes (spawned, so that each is single-threaded when it forks)."""
    import multiprocessing

    chunks = [seeds[i::workers] for i in range(workers) if seeds[i::workers]]
    with multiprocessing.get_context("spawn").Pool(len(chunks)) as pool:
        return sorted((r for chunk in pool.map(run_chunk, chunks) for r in chunk), key=lambda r: r.seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, action="append", help="one seed (repeatable)")
    parser.add_argument("--seeds", type=int, default=0, help="run seeds 0..N-1 instead")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    seeds = args.seed or list(range(args.seeds))
    started = time.monotonic()
    reports = run_chunk(seeds) if len(seeds) == 1 else run_seeds(seeds, workers=args.workers)
    for report in reports:
        if args.verbose or report.violations:
            print(f"seed {report.seed}: {report.operation} rows={report.rows} planned={report.planned} outside={report.outside} "
                  f"killed_after={report.killed_after_s} second_exit={report.second_exit} outcomes={report.outcomes}")
            for line in report.timeline if args.verbose else []:
                print(f"    {line}")
            for line in report.violations:
                print(f"  VIOLATION {line}\n  replay: {report.replay()}")
    bad = [r for r in reports if r.violations]
    print(f"{len(reports)} seeds in {time.monotonic() - started:.1f} s: {len(bad)} with violations")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
