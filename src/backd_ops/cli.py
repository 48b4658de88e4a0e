"""The ``backd-ops`` command: parse arguments, delegate to the package, map outcomes to exit codes.

Exit codes (for schedulers; the same for ``run`` and ``reconcile``, see ``errors.EXIT_CODES``):

====  =====================================================================================
0     clean: every row planned/done/already done; a reconciliation without counting ``fail_on`` findings
1     findings matched ``fail_on``; bulk rows that need attention (invalid, drifted, failed, uncertain)
2     bad input or parameters, checked before any work (missing column, unreadable file, unknown parameter)
3     configuration, credentials or a guard (missing or wrong keys, production, approval, a run in progress)
4     Backd could not be reached or answered with an error that stopped the command
5     the job failed for an unexpected reason (a bug): see the message and the executed notebook
141   the output was closed early (``backd-ops find ... | head``); nothing else went wrong
====  =====================================================================================

Expected conditions (a missing or unreadable file, bad JSON, a closed pipe) end with one line on stderr,
never a traceback.
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
from .columns import SYNONYMS, parse_mapping
from .config import TOOL_VERSION, Account, Settings
from .display import HEAD_ROWS, TAIL_ROWS, plan_text
from .errors import EXIT_CODES, BackdError, ConfigurationError, InputError, PartialPlanError, exit_code_for, set_option_style
from .execution import check_partial, execute_plan, guard_production
from .journal import Journal
from .models import format_money
from .operations import OPERATIONS, columns_help, template_frame
from .plans import approve_plan, load_plan, make_plan, plan_sentence, result_sentence, summarize_outcomes
from .reads import read_ids
from .reconcile import KINDS
from .runner import five_lines, resolve_notebook, run_notebook
from .tables import write_csv, write_excel
from .undo import undo_run

EXIT_OK, EXIT_ATTENTION, EXIT_INPUT, EXIT_CONFIG, EXIT_BACKD, EXIT_BUG, EXIT_PIPE = 0, 1, 2, 3, 4, 5, 141
_EXIT_HELP = "Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + "; 141 the output was closed early."
_OPERATION_COMMANDS = {"refund": "refund", "cancel": "cancel", "confirm": "confirm", "delete-refund": "delete_refund",
                       "update": "update", "place": "place"}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``backd-ops``; returns the exit code."""
    set_option_style("cli")  # messages name --flags, not Python arguments (argparse's own errors included)
    try:
        return _main(argv)
    finally:
        set_option_style("python")  # main() is also called in-process (tests, notebooks)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_INPUT
    try:
        code = args.handler(args)
        sys.stdout.flush()  # a reader that went away shows here, not as a traceback at exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_PIPE
    except BackdError as exc:  # one classification for every command (errors.exit_code_for)
        return _fail(exc, exit_code_for(exc))
    except OSError as exc:  # a file we were asked to write or read: no such directory, permission denied, disk full
        return _fail(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", EXIT_INPUT)
    except KeyboardInterrupt:
        return _fail("interrupted; re-run the same command to resume (nothing is applied twice)", 130)
    except Exception as exc:  # noqa: BLE001 - a bug: say so plainly, with a way to see the traceback
        if os.environ.get("BACKD_OPS_DEBUG"):
            raise
        return _fail(f"unexpected error ({type(exc).__name__}: {exc}); this is a bug, not your input. "
                     "Set BACKD_OPS_DEBUG=1 to see the traceback", EXIT_BUG)


def _fail(message: object, code: int) -> int:
    print(f"backd-ops: {message}", file=sys.stderr)
    return code


def _silence_stdout() -> None:
    """After a closed pipe, send what is left to /dev/null, so Python's exit-time flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (tests capture it)
        pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backd-ops", description="Operate on Backd BNPL orders: look up, bulk-correct, reconcile.",
                                     epilog="Credentials: BACKD_PUBLIC_KEY, BACKD_SECRET_KEY, BACKD_ENVIRONMENT, BACKD_BASE_URL "
                                            "(environment or .env). " + _EXIT_HELP)
    parser.add_argument("--version", action="version", version=f"backd-ops {TOOL_VERSION}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_sandbox(commands)
    _add_find(commands)
    for name, operation in _OPERATION_COMMANDS.items():
        _add_operation(commands, name, operation)
    _add_approve(commands)
    _add_execute(commands)
    _add_undo(commands)
    _add_reconcile(commands)
    _add_findings(commands)
    _add_journal(commands)
    _add_run(commands)
    _add_demo(commands)
    _add_template(commands)
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
def _add_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default=None, metavar="NAME",
                   help="which Backd account: BACKD_*_<NAME> variables / backd_profiles.toml (default: BACKD_PROFILE)")


def _add_common(p: argparse.ArgumentParser, *, out: bool = True) -> None:
    _add_profile(p)
    p.add_argument("--max-workers", type=int, default=None)
    p.add_argument("--max-rps", type=float, default=None, metavar="RPS",
                   help="requests per second at most, reads and writes alike (default: BACKD_MAX_RPS; unset: adapt to 429s)")
    if out:
        p.add_argument("--out", type=Path, default=None, help="write the result table as CSV (formulas neutralised)")
    p.add_argument("--progress", choices=["auto", "plain", "off"], default="plain")


def _add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--column-map", type=_mapping_arg("column_map"), default=None, metavar="MAP",
                   help='your headers → our columns: "Order #=backd_order_id,Amount=refund_amount" or JSON')
    p.add_argument("--sheet", default=None, help="the XLSX sheet to read (default: the first)")


def _mapping_arg(option: str) -> Any:
    def parse(text: str) -> dict[str, str]:
        try:
            return parse_mapping(text, option=option)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _add_find(commands: Any) -> None:
    p = commands.add_parser("find", help="look orders up", description="Look orders up by backd_order_id, given as "
                            "arguments or in a CSV/TSV/XLSX/Parquet file (its backd_order_id column; 'Order ID' and the "
                            "other usual headers are recognised).")
    p.add_argument("ids", nargs="*", help="backd_order_id values")
    p.add_argument("--file", type=Path, help="CSV/TSV/XLSX/Parquet with a backd_order_id column")
    _add_input_options(p)
    _add_common(p)
    p.set_defaults(handler=_find)


def _find(args: argparse.Namespace) -> int:
    if not args.ids and not args.file:
        raise InputError("give ids or --file")
    ids = [*args.ids, *(read_ids(args.file, sheet=args.sheet, column_map=args.column_map) if args.file else [])]
    client = _client(args)
    _header(client.account)
    frame = bulk.find_orders(client, ids, max_workers=args.max_workers, progress=_progress(args))
    _show(frame[["backd_order_id", "merchant_order_id", "status", "order_total", "refunded_amount", "active_refund_amount",
                 "active_refund_locked_at", "error"]])
    _save(frame, args.out, index=False)  # the index is only a position here: no unnamed first column
    return EXIT_ATTENTION if frame["error"].notna().any() else EXIT_OK


def _add_operation(commands: Any, name: str, operation: str) -> None:
    p = commands.add_parser(name, help=f"bulk {operation} from a file (a plan unless --execute)",
                            formatter_class=argparse.RawDescriptionHelpFormatter, description=_operation_description(name, operation))
    p.add_argument("--file", type=Path, required=True, help="CSV/TSV/XLSX/Parquet input (delimiter and header row detected)")
    _add_input_options(p)
    p.add_argument("--save-plan", type=Path, default=None, metavar="PLAN.json", help="write the plan as JSON (no secret in it)")
    p.add_argument("--execute", action="store_true", help="execute the plan now (default: plan only)")
    if bulk.OPERATIONS[operation].amounts:
        p.add_argument("--decimal-comma", action="store_true", help="amounts are written 1.234,50 (decimal comma)")
    p.add_argument("--resend", action="store_true", help="plan again rows a past run did that Backd no longer shows")
    _add_execute_options(p)
    p.set_defaults(handler=_operation, operation=operation)


def _operation_description(name: str, operation: str) -> str:
    op = OPERATIONS[operation]
    also = [f"  {c}: also {', '.join(repr(s) for s in SYNONYMS[c][:5])}" for c in op.columns if SYNONYMS.get(c)]
    return "\n".join([
        f"Bulk {operation}: makes the plan (every order read, nothing sent) and prints it; --save-plan keeps it for review,",
        "approval (backd-ops approve) and backd-ops execute; --execute carries it out now (an input with invalid rows",
        "only with --allow-partial). Re-running never applies anything twice.",
        "",
        f"Columns: {columns_help(op)}.",
        "Headers are matched ignoring case, spaces and punctuation:",
        *also,
        f'Other headers: --column-map "Their header=backd_order_id". An example file: backd-ops template {name}.',
    ])


def _add_execute_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-partial", action="store_true",
                   help="execute the planned rows even if other rows are invalid (default: execute nothing then)")
    p.add_argument("--as", dest="approved_by", default=None, metavar="NAME", help="record your approval as NAME when executing")
    p.add_argument("--confirm-production", action="store_true", help="required to execute against production")
    p.add_argument("--journal", type=Path, default=None, help="SQLite journal (default ~/.backd_ops/journal.sqlite)")
    _add_common(p)


def _operation(args: argparse.Namespace) -> int:
    client = _client(args)
    _header(client.account)
    if args.execute:
        guard_production(client, args.confirm_production)  # before any request
    plan = make_plan(client, args.operation, args.file, journal=args.journal, max_workers=args.max_workers, progress=_progress(args),
                     decimal="," if getattr(args, "decimal_comma", False) else ".", resend=args.resend,
                     column_map=args.column_map, sheet=args.sheet)
    _plan_header(plan)
    if args.save_plan:
        print(f"plan saved: {plan.backd.save(args.save_plan)} (approve: backd-ops approve {args.save_plan} --as NAME; "
              f"execute: backd-ops execute {args.save_plan})")
    if not args.execute:
        print("DRY RUN: nothing was sent (add --execute to apply, or save, approve and execute the plan)")
        return _report(plan, args.out)
    return _execute(client, plan, args)


def _plan_header(plan: pd.DataFrame) -> None:
    print(f"PLAN {plan.backd.plan_id[:12]}: {plan_sentence(plan)}")
    described = plan.backd.info.describe_input()
    if described:
        print(f"Input: {described}")


def _execute(client: BackdClient, plan: pd.DataFrame, args: argparse.Namespace, *, allow_partial: bool = False) -> int:
    try:
        check_partial(plan, allow_partial or args.allow_partial)
    except PartialPlanError as exc:
        _report(plan, args.out)
        print(f"backd-ops: NOT EXECUTED: {exc}", file=sys.stderr)
        return EXIT_ATTENTION
    result = execute_plan(client, plan, approved_by=args.approved_by, journal=args.journal, max_workers=args.max_workers,
                          progress=_progress(args), confirm_production=args.confirm_production)
    print(f"EXECUTED plan {plan.backd.plan_id[:12]}: journal run {result.attrs['backd_result']['run_id']}")
    print(result_sentence(result))
    return _report(result, args.out)


def _report(frame: pd.DataFrame, out: Path | None) -> int:
    print(plan_text(frame))
    _show_summary(summarize_outcomes(frame))
    attention = frame.backd.needs_attention()
    if len(attention) and len(frame) > HEAD_ROWS + TAIL_ROWS:  # the table above shows only the first and last rows
        print("\nRows that need attention:")
        print(plan_text(attention))
    _save(frame, out)
    return EXIT_ATTENTION if len(attention) else EXIT_OK


def _show_summary(summary: pd.DataFrame) -> None:
    rows = [f"{outcome}: {int(r.rows)} row{'' if r.rows == 1 else 's'}" + (f", {format_money(r.amount)}" if r.amount else "")
            for outcome, r in summary.iterrows() if r.rows and outcome != "total"]
    print("\n" + ("; ".join(rows) or "no rows") + f" (total {int(summary.loc['total', 'rows'])} rows)")


def _header(account: Account | None, note: str = "") -> None:
    """Every command starts by saying where it works: environment, base URL host and account (public key hint)."""
    where = f"Backd {account.describe()} ({account.base_url})" if account is not None else "Backd: no keys in the environment"
    print(where + (f"; {note}" if note else ""))


def _client(args: argparse.Namespace) -> BackdClient:
    """The command's client: ``--profile`` (else ``BACKD_PROFILE``) and ``--max-rps`` over the environment's keys."""
    return BackdClient.from_env(profile=getattr(args, "profile", None), max_rps=getattr(args, "max_rps", None))


def _env_account(args: argparse.Namespace) -> Account | None:
    try:
        return Settings.from_env(profile=getattr(args, "profile", None)).account
    except ConfigurationError:
        return None


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
    _header(info.account, "the plan's account")
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
    client = _client(args)
    _header(client.account)
    _plan_header(plan)
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
    client = _client(args)
    _header(client.account)
    if args.execute:
        guard_production(client, args.confirm_production)
    plan = undo_run(client, args.run_id, journal=args.journal, max_workers=args.max_workers, progress=_progress(args))
    print(f"UNDO PLAN {plan.backd.plan_id[:12]}: {plan_sentence(plan)}")
    if args.save_plan:
        print(f"plan saved: {plan.backd.save(args.save_plan)}")
    if not args.execute:
        print("DRY RUN: nothing was sent (add --execute to decline these refunds)")
        return _report(plan, args.out)
    return _execute(client, plan, args, allow_partial=True)  # undo declines what it still can, by design


# -- reconcile -------------------------------------------------------------------------------------------------------
def _add_reconcile(commands: Any) -> None:
    p = commands.add_parser("reconcile", help="reconcile a ledger against Backd",
                            description="Ledger vs Backd; everything goes into a new folder OUT/<date>T<time>-<run id>/ "
                                        "(OUT/latest points at it). " + _EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ledger", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="parent directory of the run folders")
    p.add_argument("--snapshot", type=Path, default=None, help="offline: a saved backd_snapshot.parquet instead of reading Backd")
    _add_input_options(p)
    p.add_argument("--status-map", type=_mapping_arg("status_map"), default=None, metavar="MAP",
                   help='their status → Backd status: "dispatched=order_confirmed" or JSON')
    p.add_argument("--decimal-comma", action="store_true", help="the ledger's amounts are written 1.234,50 (decimal comma)")
    p.add_argument("--tolerance", default="0.01")
    p.add_argument("--stale-days", type=float, default=14)
    p.add_argument("--lock-window-hours", type=float, default=24)
    p.add_argument("--as-of", default="", help="ISO 8601 with an offset (default: now)")
    p.add_argument("--fail-on", default="", help=f"comma-separated kinds that make the exit code 1: {','.join(KINDS)}")
    p.add_argument("--no-track", action="store_true", help="do not keep findings across runs")
    p.add_argument("--findings", type=Path, default=None, help="findings store folder (default beside the journal)")
    p.add_argument("--refresh", choices=["changed", "all", "none"], default="changed",
                   help="changed: read live only what can have changed since the last run (the nightly default); "
                        "all: read every order (the weekly sweep); none: from the order store alone")
    p.add_argument("--profiles", default="", metavar="NAMES",
                   help="several accounts in one run: comma-separated profile names; the ledger's profile column says whose each row is")
    p.add_argument("--profile-map", type=_mapping_arg("profile_map"), default=None, metavar="MAP",
                   help='the ledger\'s values → profile names: "Brand A=us,Brand B=eu" or JSON')
    _add_common(p, out=False)
    p.set_defaults(handler=_reconcile)


def _reconcile(args: argparse.Namespace) -> int:
    from .nbtools import parse_as_of
    from .reconcile import check_kinds, reconcile

    fail_on = check_kinds([k.strip() for k in args.fail_on.split(",") if k.strip()])  # a typo stops us before any work
    as_of = parse_as_of(args.as_of)
    if not args.ledger.is_file():
        raise InputError(f"no such file {args.ledger} (--ledger)")
    options = dict(tolerance=args.tolerance, stale_days=args.stale_days, lock_window_hours=args.lock_window_hours,
                   column_map=args.column_map, status_map=args.status_map, sheet=args.sheet, max_workers=args.max_workers,
                   progress=_progress(args), decimal="," if args.decimal_comma else ".", as_of=as_of)
    if args.profiles:
        rec = _reconcile_accounts(args, options)
    else:
        client = None if args.snapshot else _client(args)
        _header(client.account if client else _env_account(args), f"offline: Backd as saved in {args.snapshot}" if args.snapshot else "")
        rec = reconcile(args.ledger, args.snapshot, client=client, **options, **({"refresh": args.refresh} if client else {}),
                        findings=False if args.no_track or rec_untrackable(client, args.snapshot) else (args.findings or True))
    folder = rec.save_run(args.out)
    if rec.record.ledger.how_read:
        print(f"Ledger: {rec.record.ledger.how_read}")
    counts = rec.counting(fail_on) if fail_on else {}
    code = EXIT_ATTENTION if any(counts.values()) else EXIT_OK
    found = ", ".join(f"{k}: {n}" for k, n in counts.items() if n)
    _print_run(folder, five_lines(rec.summary_json(), code, f"fail_on found {found}" if found else None))
    return code


def _reconcile_accounts(args: argparse.Namespace, options: dict[str, Any]) -> Any:
    from .accounts import clients_for, reconcile_accounts

    if args.snapshot or args.profile:
        raise InputError("--profiles reads every named account live: it takes neither --snapshot nor --profile")
    clients = clients_for(args.profiles, max_rps=args.max_rps)
    for name, client in clients.items():
        _header(client.account, f"profile {name}")
    return reconcile_accounts(args.ledger, clients, profile_map=args.profile_map, refresh=args.refresh,
                              findings=False if args.no_track else (args.findings or True), **options)


def rec_untrackable(client: BackdClient | None, snapshot: Path | None) -> bool:
    """Offline runs track findings only when the snapshot says whose orders it holds."""
    from .reconcile import snapshot_account_of

    return client is None and (snapshot is None or snapshot_account_of(snapshot) is None)


def _print_run(folder: Path | None, lines: list[str]) -> None:
    if folder is not None:
        print(f"run folder: {folder}")
    for line in lines:
        print(f"  {line}")



# -- findings ------------------------------------------------------------------------------------------------------------
def _add_findings(commands: Any) -> None:
    p = commands.add_parser("findings", help="open findings and notes across runs",
                            description="List the open findings the last reconciliation left, or keep a note on one.")
    actions = p.add_subparsers(title="actions", metavar="ACTION")
    listing = actions.add_parser("list", help="open findings with their notes")
    listing.add_argument("--findings", type=Path, default=None)
    _add_profile(listing)
    listing.set_defaults(handler=_findings_list)
    note = actions.add_parser("note", help="keep a note on an open finding")
    note.add_argument("order", help="backd_order_id, or merchant:<merchant_order_id> for a ledger row without one")
    note.add_argument("kind", choices=list(KINDS))
    note.add_argument("--note", required=True)
    note.add_argument("--owner", default=None)
    note.add_argument("--status", choices=["investigating", "no_action_needed"], default="investigating")
    note.add_argument("--findings", type=Path, default=None)
    _add_profile(note)
    note.set_defaults(handler=_findings_note)


def _findings_list(args: argparse.Namespace) -> int:
    from .findings import FindingsStore

    client = _client(args)
    _header(client.account)
    found = FindingsStore(args.findings).open_findings(client.account)
    _show(found[["order_key", "kind", "first_seen", "last_seen", "ledger_value", "backd_value", "note", "owner", "note_status"]])
    return EXIT_OK


def _findings_note(args: argparse.Namespace) -> int:
    from .findings import FindingsStore

    client = _client(args)
    _header(client.account)
    FindingsStore(args.findings).annotate_open(client.account, args.order, args.kind, note=args.note, status=args.status, owner=args.owner)
    print(f"noted {args.kind} on {args.order}: {args.status}")
    return EXIT_OK


# -- journal -----------------------------------------------------------------------------------------------------------
def _add_journal(commands: Any) -> None:
    p = commands.add_parser("journal", help="list runs, or the rows of one run", description="Show the run journal.")
    p.add_argument("run_id", nargs="?")
    p.add_argument("--journal", type=Path, default=None)
    _add_profile(p)
    p.set_defaults(handler=_journal)


def _journal(args: argparse.Namespace) -> int:
    journal = Journal(args.journal)
    _header(_env_account(args), f"journal {journal.path} (runs of every account it holds)")
    if args.run_id:
        _show(journal.actions(args.run_id)[["row_label", "backd_order_id", "outcome", "message", "intent_at", "finished_at"]])
    else:
        runs = journal.runs()
        runs["plan_id"] = runs["plan_id"].str.slice(0, 12)
        _show(runs[["run_id", "plan_id", "operation", "environment", "rows", "user", "started_at", "finished_at", "counts"]])
    return EXIT_OK


# -- notebooks -----------------------------------------------------------------------------------------------------------
def _add_run(commands: Any) -> None:
    p = commands.add_parser("run", help="execute a notebook with papermill (a scheduled run)",
                            description="papermill with our checks: parameters are checked before anything is written; "
                                        "with no keys the run stops (pass -p backend sandbox to rehearse); a reconciliation "
                                        "goes into its own run folder. " + _EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("notebook", help="path, or a name in notebooks/ (e.g. reconciliation)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="VALUE is read as JSON when it parses (numbers, true, lists), else as text")
    p.add_argument("--out", type=Path, default=None, help="where the run goes (default: the out_dir parameter)")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    parameters = {name: _parse_value(value) for name, value in args.parameter}
    _header(_env_account(args), "the notebook's kernel gets the keys from the environment" if _env_account(args) else
            "with no keys a scheduled run stops (pass -p backend sandbox to rehearse)")
    outcome = run_notebook(args.notebook, parameters, out_dir=args.out)
    _print_run(outcome.folder, outcome.summary_lines())
    print(f"executed notebook: {outcome.notebook}")
    if outcome.error:
        print(f"backd-ops: {resolve_notebook(args.notebook).name} failed: {outcome.error} (exit {outcome.code})", file=sys.stderr)
    return outcome.code


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


# -- demo -------------------------------------------------------------------------------------------------------------
def _add_demo(commands: Any) -> None:
    p = commands.add_parser("demo", help="the main job against an embedded sandbox",
                            description="Run reconciliation.ipynb through papermill against the embedded sandbox (passed "
                                        "explicitly: backend=sandbox) and its demo ledger with planted discrepancies.")
    p.add_argument("--orders", type=int, default=500)
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    parameters = {"backend": "sandbox", "sandbox_orders": args.orders, "out_dir": str(args.out),
                  "findings_path": str(args.out / "findings")}
    outcome = run_notebook("reconciliation", parameters, out_dir=args.out)
    _print_run(outcome.folder, outcome.summary_lines())
    print(f"report: {outcome.folder / 'report.html' if outcome.folder else '—'}\ndone in {time.monotonic() - started:.1f} s")
    return outcome.code


# -- template ---------------------------------------------------------------------------------------------------------
def _add_template(commands: Any) -> None:
    names = [*_OPERATION_COMMANDS, "ledger"]
    p = commands.add_parser("template", help="write an example input file", description="Write an example file for an "
                            "operation (or a ledger for reconcile): its columns, an example row with every column and one "
                            "with only what is needed. Offline: no keys, no Backd call.")
    p.add_argument("operation", choices=names, metavar="OPERATION", help=", ".join(names))
    p.add_argument("--out", type=Path, default=None, help="CSV or .xlsx (default: OPERATION_template.csv)")
    p.set_defaults(handler=_template)


def _template(args: argparse.Namespace) -> int:
    from .ledger import OPTIONAL, REQUIRED
    from .ledger import template_frame as ledger_template

    if args.operation == "ledger":
        frame, needs = ledger_template(), f"required: {', '.join(REQUIRED)}; optional: {', '.join(OPTIONAL)}"
    else:
        op = OPERATIONS[_OPERATION_COMMANDS[args.operation]]
        frame, needs = template_frame(op), columns_help(op)
    path = args.out or Path(f"{args.operation.replace('-', '_')}_template.csv")
    if path.exists():
        raise InputError(f"{path} exists; name another file with --out")
    written = write_excel({args.operation: frame}, path) if path.suffix.lower() in (".xlsx", ".xlsm") else write_csv(frame, path)
    print(f"wrote {written}: {', '.join(frame.columns)} ({needs})")
    return EXIT_OK


# -- output helpers ---------------------------------------------------------------------------------------------------
def _progress(args: argparse.Namespace) -> bool | str:
    return False if args.progress == "off" else args.progress


def _show(frame: pd.DataFrame, max_rows: int = 40) -> None:
    readable = frame.astype(object).where(frame.notna(), "")  # blanks, not <NA>
    with pd.option_context("display.max_rows", max_rows, "display.width", 200, "display.max_colwidth", 90):
        print(readable.to_string(max_rows=max_rows))


def _save(frame: pd.DataFrame, path: Path | None, *, index: bool = True) -> None:
    """Write a table for people: formulas neutralised (tables.write_csv), the index only where it is a row number."""
    if path is not None:
        print(f"wrote {write_csv(frame, path, index=index)}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
