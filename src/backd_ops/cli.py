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
from .errors import AuthenticationError, BackdError, ConfigurationError, InputError, ProductionGuardError
from .journal import Journal
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
    try:
        return args.handler(args)
    except (ConfigurationError, AuthenticationError, ProductionGuardError) as exc:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backd-ops", description="Operate on Backd BNPL orders: look up, bulk-correct, reconcile.",
                                     epilog="Credentials: BACKD_PUBLIC_KEY, BACKD_SECRET_KEY, BACKD_ENVIRONMENT, BACKD_BASE_URL "
                                            "(environment or .env). Exit codes: 0 ok, 1 attention, 2 input, 3 config/auth, 4 Backd.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_sandbox(commands)
    _add_find(commands)
    for name, operation in _OPERATION_COMMANDS.items():
        _add_operation(commands, name, operation)
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
    frame = bulk.find_orders(BackdClient.from_env(), ids, max_workers=args.max_workers, progress=_progress(args))
    _show(frame[["backd_order_id", "merchant_order_id", "status", "order_total", "refunded_amount", "active_refund_amount",
                 "active_refund_locked_at", "error"]])
    _save(frame, args.out)
    return EXIT_ATTENTION if frame["error"].notna().any() else EXIT_OK


def _add_operation(commands: Any, name: str, operation: str) -> None:
    p = commands.add_parser(name, help=f"bulk {operation} from a file (dry run unless --execute)",
                            description=f"Bulk {operation}: a dry run unless --execute. Re-running resumes; nothing is applied twice.")
    p.add_argument("--file", type=Path, required=True, help="CSV/XLSX/Parquet input")
    p.add_argument("--execute", action="store_true", help="send the writes (default: dry run)")
    p.add_argument("--confirm-production", action="store_true", help="required to execute against production")
    p.add_argument("--journal", type=Path, default=None, help="SQLite journal (default ~/.backd_ops/journal.sqlite)")
    p.add_argument("--max-rps", type=float, default=None)
    _add_common(p)
    p.set_defaults(handler=_operation, operation=operation)


def _operation(args: argparse.Namespace) -> int:
    result = bulk.run_operation(BackdClient.from_env(), args.operation, args.file, execute=args.execute, journal=args.journal,
                                max_workers=args.max_workers, max_rps=args.max_rps, progress=_progress(args),
                                confirm_production=args.confirm_production)
    print(("EXECUTED" if args.execute else "DRY RUN (nothing sent; add --execute to apply)") + f": {args.operation}")
    _show(bulk.summarize_outcomes(result))
    attention = result.backd.needs_attention()
    if len(attention):
        print("\nRows that need attention:")
        _show(attention[["backd_order_id", "outcome", "message"]])
    if args.execute and len(result):
        print(f"\njournal run {result['run_id'].iloc[0]}")
    _save(result, args.out)
    return EXIT_ATTENTION if len(attention) else EXIT_OK


# -- reconcile -------------------------------------------------------------------------------------------------------
def _add_reconcile(commands: Any) -> None:
    p = commands.add_parser("reconcile", help="reconcile a ledger against Backd", description="Ledger vs Backd; reports to --out.")
    p.add_argument("--ledger", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="directory for reports, CSVs and the Backd snapshot")
    p.add_argument("--snapshot", type=Path, default=None, help="offline: a saved backd_snapshot.parquet instead of reading Backd")
    p.add_argument("--column-map", type=json.loads, default=None, help='JSON, e.g. \'{"Order #": "merchant_order_id"}\'')
    p.add_argument("--status-map", type=json.loads, default=None, help='JSON, e.g. \'{"dispatched": "order_confirmed"}\'')
    p.add_argument("--tolerance", default="0.01")
    p.add_argument("--stale-days", type=float, default=14)
    p.add_argument("--lock-window-hours", type=float, default=24)
    p.add_argument("--fail-on", default="", help=f"comma-separated kinds that make the exit code 1: {','.join(KINDS)}")
    _add_common(p, out=False)
    p.set_defaults(handler=_reconcile)


def _reconcile(args: argparse.Namespace) -> int:
    from .reconcile import reconcile

    fail_on = [k for k in args.fail_on.split(",") if k]
    client = None if args.snapshot else BackdClient.from_env()
    rec = reconcile(args.ledger, args.snapshot, client=client, tolerance=args.tolerance, stale_days=args.stale_days,
                    lock_window_hours=args.lock_window_hours, column_map=args.column_map, status_map=args.status_map,
                    max_workers=args.max_workers, progress=_progress(args))
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
        _show(journal.runs()[["run_id", "operation", "environment", "rows", "started_at", "finished_at", "counts"]])
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
