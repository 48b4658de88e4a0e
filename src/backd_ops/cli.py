"""The ``backd-ops`` command: parse arguments, delegate to the package, map outcomes to exit codes.

Exit codes (for schedulers):

====  =====================================================================================
0     success: every row planned/done/already done; reconciliation without ``--fail-on`` findings
1     attention needed: rows invalid/failed/uncertain, ``--fail-on`` findings, or a notebook failed
2     bad input or usage (missing column, unreadable file, unknown parameter)
3     configuration or authentication (missing keys, wrong keys, production guard)
4     Backd could not be reached or answered with an error that stopped the command
====  =====================================================================================
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from . import bulk
from .client import BackdClient
from .errors import (
    ApprovalError,
    AuthenticationError,
    BackdError,
    ConcurrentRunError,
    ConfigurationError,
    InputError,
    ProductionGuardError,
    set_option_style,
)
from .execution import execute_plan, guard_production
from .journal import Journal
from .plans import approve_plan, load_plan, make_plan, plan_sentence, summarize_outcomes
from .undo import undo_run
from .locking import CHICAGO
from .progress import PROGRESS_ENV
from .reconcile import KINDS

EXIT_OK, EXIT_ATTENTION, EXIT_INPUT, EXIT_CONFIG, EXIT_BACKD = 0, 1, 2, 3, 4
NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
_OPERATION_COMMANDS = {"refund": "refund", "cancel": "cancel", "confirm": "confirm", "delete-refund": "delete_refund",
                       "update": "update", "place": "place"}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``backd-ops``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_INPUT
    set_option_style("cli")  # messages name --flags, not Python arguments
    try:
        return args.handler(args)
    except (ConfigurationError, AuthenticationError, ProductionGuardError, ApprovalError, ConcurrentRunError) as exc:
        print(f"backd-ops: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except InputError as exc:
        print(f"backd-ops: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except BackdError as exc:
        print(f"backd-ops: {exc}", file=sys.stderr)
        return EXIT_BACKD
    except KeyboardInterrupt:
        print("backd-ops: interrupted; re-run the same command to resume (nothing is applied twice)", file=sys.stderr)
        return 130
    finally:
        set_option_style("python")  # main() is also called in-process (tests, notebooks)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backd-ops", description="Operate on Backd BNPL orders: look up, bulk-correct, reconcile.",
                                     epilog="Credentials: BACKD_PUBLIC_KEY, BACKD_SECRET_KEY, BACKD_ENVIRONMENT, BACKD_BASE_URL "
                                            "(environment or .env). Exit codes: 0 ok, 1 attention, 2 input, 3 config/auth, 4 Backd.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_sandbox(commands)
    _add_find(commands)
    for name, operation in _OPERATION_COMMANDS.items():
        _add_operation(commands, name, operation)
    _add_approve(commands)
    _add_execute(commands)
    _add_undo(commands)
    _add_reconcile(commands)
    _add_journal(commands)
    _add_run(commands)
    _add_demo(commands)
    return parser


# -- sandbox -------------------------------------------------------------------------------------------------------
def _add_sandbox(commands: Any) -> None:
    p = commands.add_parser("sandbox", help="run a local Backd-compatible sandbox",
                            description="Run the sandbox until Ctrl-C. Tests in another process drive it through its "
                                        "/_sandbox/ hooks (backd_ops.sandbox.remote); see docs/sandbox.md.")
    p.add_argument("--port", type=int, default=8765, help="0: any free port (the URL is printed)")
    p.add_argument("--orders", type=int, default=500, help="demo orders to create")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--now", default=None, help="freeze the clock at this ISO datetime with offset, e.g. 2026-04-14T09:00:00-05:00")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--rate-limit", type=float, default=None, metavar="RPS",
                   help="token bucket per key: over RPS requests/s the answer is 429 with Retry-After")
    p.add_argument("--burst", type=float, default=None, metavar="N", help="bucket size for --rate-limit (default max(2, RPS/5))")
    p.add_argument("--fault", default="", help='e.g. "error_before=0.05,rate_limit=0.05,drop_after_apply=0.02,slow=0.01,slow_ms=800,seed=1"')
    p.set_defaults(handler=_sandbox)


def _sandbox(args: argparse.Namespace) -> int:
    from .sandbox import FaultProfile, start_sandbox

    if args.burst and not args.rate_limit:
        raise InputError("--burst needs --rate-limit")
    options = [f"latency_ms={args.latency_ms}" if args.latency_ms else "", args.fault,
               f"rate_limit_rps={args.rate_limit}" if args.rate_limit else "", f"rate_limit_burst={args.burst}" if args.burst else ""]
    spec = ",".join(filter(None, options))
    try:
        faults = FaultProfile.parse(spec) if spec else None
        now = datetime.fromisoformat(args.now) if args.now else None
        sandbox, server = start_sandbox(args.orders, port=args.port, seed=args.seed, now=now, faults=faults)
    except ValueError as exc:  # a bad --fault/--now (a naive --now too) is the caller's input
        raise InputError(f"sandbox: {exc}") from exc
    print(f"Backd sandbox on {sandbox.base_url} with {args.orders} demo orders. Point the client at it with:")
    for name, value in sandbox.env().items():
        print(f"  export {name}={value}")
    if faults and faults.rate_limit_rps:
        print(f"Rate limit: {faults.rate_limit_rps:g} requests/s per key, burst {faults.bucket_burst:g}.")
    print(f"Clock: {'frozen at ' + sandbox.clock.now().isoformat() if now else 'real time'}.")
    print("(demo keys, not secrets). Ctrl-C stops it.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return EXIT_OK


# -- find and bulk ---------------------------------------------------------------------------------------------------
def _add_common(p: argparse.ArgumentParser, *, out: bool = True) -> None:
    p.add_argument("--max-workers", type=int, default=None)
    p.add_argument("--max-rps", type=float, default=None, metavar="RPS",
                   help="requests per second at most, reads and writes alike (default: BACKD_MAX_RPS; unset: adapt to 429s)")
    if out:
        p.add_argument("--out", type=Path, default=None, help="write the result table as CSV")
    p.add_argument("--progress", choices=["auto", "plain", "off"], default="plain")


def _add_find(commands: Any) -> None:
    p = commands.add_parser("find", help="look orders up", description="Look orders up by backd_order_id.")
    p.add_argument("ids", nargs="*", help="backd_order_id values")
    p.add_argument("--file", type=Path, help="CSV/XLSX with a backd_order_id column")
    _add_common(p)
    p.set_defaults(handler=_find)


def _find(args: argparse.Namespace) -> int:
    if not args.ids and not args.file:
        raise InputError("give ids or --file")
    ids = pd.read_csv(args.file, dtype=str)["backd_order_id"].tolist() if args.file else args.ids
    frame = bulk.find_orders(BackdClient.from_env(max_rps=args.max_rps), ids, max_workers=args.max_workers, progress=_progress(args))
    _show(frame[["backd_order_id", "merchant_order_id", "status", "order_total", "refunded_amount", "active_refund_amount",
                 "active_refund_locked_at", "error"]])
    _save(frame, args.out)
    return EXIT_ATTENTION if frame["error"].notna().any() else EXIT_OK


def _add_operation(commands: Any, name: str, operation: str) -> None:
    p = commands.add_parser(name, help=f"bulk {operation} from a file (a plan unless --execute)",
                            description=f"Bulk {operation}: makes the plan (every order read, nothing sent) and prints it; "
                                        "--save-plan keeps it for review, approval (backd-ops approve) and backd-ops execute; "
                                        "--execute carries it out now. Re-running never applies anything twice.")
    p.add_argument("--file", type=Path, required=True, help="CSV/XLSX/Parquet input")
    p.add_argument("--save-plan", type=Path, default=None, metavar="PLAN.json", help="write the plan as JSON (no secret in it)")
    p.add_argument("--execute", action="store_true", help="execute the plan now (default: plan only)")
    if bulk.OPERATIONS[operation].amounts:
        p.add_argument("--decimal-comma", action="store_true", help="amounts are written 1.234,50 (decimal comma)")
    p.add_argument("--resend", action="store_true", help="plan again rows a past run did that Backd no longer shows")
    _add_execute_options(p)
    p.set_defaults(handler=_operation, operation=operation)


def _add_execute_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--as", dest="approved_by", default=None, metavar="NAME", help="record your approval as NAME when executing")
    p.add_argument("--confirm-production", action="store_true", help="required to execute against production")
    p.add_argument("--journal", type=Path, default=None, help="SQLite journal (default ~/.backd_ops/journal.sqlite)")
    _add_common(p)


def _operation(args: argparse.Namespace) -> int:
    client = BackdClient.from_env(max_rps=args.max_rps)
    _header(client)
    if args.execute:
        guard_production(client, args.confirm_production)  # before any request
    plan = make_plan(client, args.operation, args.file, journal=args.journal, max_workers=args.max_workers, progress=_progress(args),
                     decimal="," if getattr(args, "decimal_comma", False) else ".", resend=args.resend)
    print(f"PLAN {plan.backd.plan_id[:12]}: {plan_sentence(plan)}")
    if args.save_plan:
        print(f"plan saved: {plan.backd.save(args.save_plan)} (approve: backd-ops approve {args.save_plan} --as NAME; "
              f"execute: backd-ops execute {args.save_plan})")
    if not args.execute:
        print("DRY RUN: nothing was sent (add --execute to apply, or save, approve and execute the plan)")
        return _report(plan, args.out)
    return _execute(client, plan, args)


def _execute(client: BackdClient, plan: pd.DataFrame, args: argparse.Namespace) -> int:
    result = execute_plan(client, plan, approved_by=args.approved_by, journal=args.journal, max_workers=args.max_workers,
                          progress=_progress(args), confirm_production=args.confirm_production)
    print(f"EXECUTED plan {plan.backd.plan_id[:12]}: journal run {result.attrs['backd_result']['run_id']}")
    return _report(result, args.out)


def _report(frame: pd.DataFrame, out: Path | None) -> int:
    _show(summarize_outcomes(frame))
    attention = frame.backd.needs_attention()
    if len(attention):
        print("\nRows that need attention:")
        _show(attention[["backd_order_id", "outcome", "message"]])
    _save(frame, out)
    return EXIT_ATTENTION if len(attention) else EXIT_OK


def _header(client: BackdClient) -> None:
    print(f"Backd {client.account.describe()} ({client.account.base_url})")


# -- plans: approve, execute, undo ----------------------------------------------------------------------------------------
def _add_approve(commands: Any) -> None:
    p = commands.add_parser("approve", help="approve a saved plan", description="Record your approval in the plan file and the journal.")
    p.add_argument("plan", type=Path, metavar="PLAN.json")
    p.add_argument("--as", dest="approved_by", required=True, metavar="NAME", help="who approves (e.g. your email)")
    p.add_argument("--journal", type=Path, default=None)
    p.set_defaults(handler=_approve)


def _approve(args: argparse.Namespace) -> int:
    plan = approve_plan(args.plan, args.approved_by, journal=args.journal)
    info = plan.backd.info
    print(f"approved plan {info.plan_id[:12]} ({info.operation}, made by {info.created_by} at {info.created_at}): {plan_sentence(plan)}")
    print("approvals: " + ", ".join(f"{a.approved_by} at {a.approved_at}" for a in info.approvals))
    return EXIT_OK


def _add_execute(commands: Any) -> None:
    p = commands.add_parser("execute", help="execute a saved plan", description="Execute exactly the planned rows of a saved plan; "
                            "rows whose order changed since the plan are reported as drifted and not sent.")
    p.add_argument("plan", type=Path, metavar="PLAN.json")
    _add_execute_options(p)
    p.set_defaults(handler=_execute_saved)


def _execute_saved(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    client = BackdClient.from_env(max_rps=args.max_rps)
    _header(client)
    print(f"PLAN {plan.backd.plan_id[:12]}: {plan_sentence(plan)}")
    return _execute(client, plan, args)


def _add_undo(commands: Any) -> None:
    p = commands.add_parser("undo", help="decline the refunds a run created, before they lock",
                            description="Plan (and with --execute, execute) declining the refunds RUN_ID created that are "
                                        "still the active, unlocked request with the amount it set.")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--execute", action="store_true")
    p.add_argument("--save-plan", type=Path, default=None, metavar="PLAN.json")
    _add_execute_options(p)
    p.set_defaults(handler=_undo)


def _undo(args: argparse.Namespace) -> int:
    client = BackdClient.from_env(max_rps=args.max_rps)
    _header(client)
    if args.execute:
        guard_production(client, args.confirm_production)
    plan = undo_run(client, args.run_id, journal=args.journal, max_workers=args.max_workers, progress=_progress(args))
    print(f"UNDO PLAN {plan.backd.plan_id[:12]}: {plan_sentence(plan)}")
    if args.save_plan:
        print(f"plan saved: {plan.backd.save(args.save_plan)}")
    if not args.execute:
        print("DRY RUN: nothing was sent (add --execute to decline these refunds)")
        return _report(plan, args.out)
    return _execute(client, plan, args)


# -- reconcile -------------------------------------------------------------------------------------------------------
def _add_reconcile(commands: Any) -> None:
    p = commands.add_parser("reconcile", help="reconcile a ledger against Backd", description="Ledger vs Backd; reports to --out.")
    p.add_argument("--ledger", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="directory for reports, CSVs and the Backd snapshot")
    p.add_argument("--snapshot", type=Path, default=None, help="offline: a saved backd_snapshot.parquet instead of reading Backd")
    p.add_argument("--column-map", type=json.loads, default=None, help='JSON, e.g. \'{"Order #": "merchant_order_id"}\'')
    p.add_argument("--status-map", type=json.loads, default=None, help='JSON, e.g. \'{"dispatched": "order_confirmed"}\'')
    p.add_argument("--decimal-comma", action="store_true", help="the ledger's amounts are written 1.234,50 (decimal comma)")
    p.add_argument("--tolerance", default="0.01")
    p.add_argument("--stale-days", type=float, default=14)
    p.add_argument("--lock-window-hours", type=float, default=24)
    p.add_argument("--fail-on", default="", help=f"comma-separated kinds that make the exit code 1: {','.join(KINDS)}")
    _add_common(p, out=False)
    p.set_defaults(handler=_reconcile)


def _reconcile(args: argparse.Namespace) -> int:
    from .reconcile import reconcile

    fail_on = [k for k in args.fail_on.split(",") if k]
    client = None if args.snapshot else BackdClient.from_env(max_rps=args.max_rps)
    rec = reconcile(args.ledger, args.snapshot, client=client, tolerance=args.tolerance, stale_days=args.stale_days,
                    lock_window_hours=args.lock_window_hours, column_map=args.column_map, status_map=args.status_map,
                    max_workers=args.max_workers, progress=_progress(args), decimal="," if args.decimal_comma else ".")
    files = rec.save(args.out)
    print(repr(rec))
    _show(rec.summary)
    print(f"\nreport: {files['report_html']}")
    return EXIT_ATTENTION if fail_on and rec.has_findings(fail_on) else EXIT_OK


# -- journal -----------------------------------------------------------------------------------------------------------
def _add_journal(commands: Any) -> None:
    p = commands.add_parser("journal", help="list runs, or the rows of one run", description="Show the run journal.")
    p.add_argument("run_id", nargs="?")
    p.add_argument("--journal", type=Path, default=None)
    p.set_defaults(handler=_journal)


def _journal(args: argparse.Namespace) -> int:
    journal = Journal(args.journal)
    if args.run_id:
        _show(journal.actions(args.run_id)[["row_label", "backd_order_id", "outcome", "message", "intent_at", "finished_at"]])
    else:
        runs = journal.runs()
        runs["plan_id"] = runs["plan_id"].str.slice(0, 12)
        _show(runs[["run_id", "plan_id", "operation", "environment", "rows", "user", "started_at", "finished_at", "counts"]])
    return EXIT_OK


# -- notebooks -----------------------------------------------------------------------------------------------------------
def _add_run(commands: Any) -> None:
    p = commands.add_parser("run", help="execute a notebook with papermill", description="papermill with our defaults.")
    p.add_argument("notebook", help="path, or a name in notebooks/ (e.g. reconciliation)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="VALUE is read as JSON when it parses (numbers, true, lists), else as text")
    p.add_argument("--out", type=Path, default=None, help="directory for the executed notebook (default: the out_dir parameter, else out/)")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    parameters = {name: _parse_value(value) for name, value in args.parameter}
    out_dir = args.out or Path(str(parameters.get("out_dir") or "out"))  # the executed notebook lies beside its reports
    executed = run_notebook(args.notebook, parameters, out_dir=out_dir)
    return EXIT_OK if executed else EXIT_ATTENTION


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def resolve_notebook(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    candidate = NOTEBOOK_DIR / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if candidate.is_file():
        return candidate
    raise InputError(f"no notebook {name!r}; the notebooks are: {', '.join(p.stem for p in sorted(NOTEBOOK_DIR.glob('*.ipynb')))}")


def run_notebook(name: str, parameters: dict[str, Any], *, out_dir: Path) -> Path | None:
    """Execute a notebook with papermill; the executed copy goes under ``out_dir``. None if it failed."""
    import papermill as pm

    from .nbtools import refuse_secret_parameters

    refuse_secret_parameters(parameters)  # before papermill writes them into the executed notebook
    source = resolve_notebook(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{source.stem}-{datetime.now(CHICAGO):%Y%m%dT%H%M%S}.ipynb"
    os.environ.setdefault(PROGRESS_ENV, "plain")
    try:
        pm.execute_notebook(str(source), str(output), parameters=parameters, kernel_name="python3", progress_bar=False,
                            log_output=False, cwd=str(Path.cwd()))
    except pm.PapermillExecutionError as exc:
        print(f"backd-ops: {source.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}", file=sys.stderr)
        print(f"backd-ops: the executed notebook (with the error) is {output}", file=sys.stderr)
        return None
    print(f"executed notebook: {output}")
    return output


# -- demo -------------------------------------------------------------------------------------------------------------
def _add_demo(commands: Any) -> None:
    p = commands.add_parser("demo", help="the main job against an embedded sandbox",
                            description="Start a sandbox with demo data and a demo ledger with planted discrepancies, "
                                        "run reconciliation.ipynb through papermill and print the summary.")
    p.add_argument("--orders", type=int, default=500)
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from .sandbox import run_sandbox
    from .sandbox.demo import DEMO_COLUMN_MAP, demo_ledger

    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    with run_sandbox(orders=args.orders) as sandbox:
        rows, _ = demo_ledger([sandbox.store.find(i) for i in sandbox.store.ids()])
        ledger_path = args.out / "demo_ledger.csv"
        pd.DataFrame(rows).to_csv(ledger_path, index=False)
        print(f"sandbox {sandbox.base_url} with {args.orders} demo orders; demo ledger {ledger_path} ({len(rows)} rows)")
        os.environ.update(sandbox.env())  # the notebook's kernel inherits these: keys never become parameters
        executed = run_notebook("reconciliation", {"ledger_path": str(ledger_path), "column_map": DEMO_COLUMN_MAP,
                                                   "out_dir": str(args.out), "backend": "env"}, out_dir=args.out)
    if executed is None:
        return EXIT_ATTENTION
    summary = json.loads((args.out / "summary.json").read_text())
    print(f"\nreport: {args.out / 'report.html'}\nfindings: {summary['stats']['findings']} "
          f"(match rate {summary['stats']['match_rate']:.1%})")
    for kind, row in summary["by_kind"].items():
        if row["findings"]:
            print(f"  {kind:28s} {row['severity']:6s} {row['findings']:5d}  at stake {row['at_stake']:>12s}")
    print(f"done in {time.monotonic() - started:.1f} s")
    return EXIT_OK


# -- output helpers ---------------------------------------------------------------------------------------------------
def _progress(args: argparse.Namespace) -> bool | str:
    return False if args.progress == "off" else args.progress


def _show(frame: pd.DataFrame, max_rows: int = 40) -> None:
    with pd.option_context("display.max_rows", max_rows, "display.width", 200, "display.max_colwidth", 90):
        print(frame.to_string(max_rows=max_rows))


def _save(frame: pd.DataFrame, path: Path | None) -> None:
    if path is not None:
        from .tables import write_csv

        print(f"wrote {write_csv(frame, path, index=True)}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
