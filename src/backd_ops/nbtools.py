"""What the notebooks call: their parameter specs and checks, and a connection to Backd or an embedded sandbox.

Each notebook has one ``parameters`` cell; its names and types are declared here once (``NOTEBOOK_PARAMETERS``),
so the notebook's check cell, ``backd-ops run`` (before papermill starts) and the tests agree. Credentials are
never parameters. A scheduled run (papermill, ``backd-ops run``) never falls back to the embedded sandbox: with
no keys it stops, saying how to set them or how to ask for the sandbox on purpose.
"""

from __future__ import annotations

import difflib
import os
import re
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .client import BackdClient
from .config import Settings
from .errors import ConfigurationError, FindingsError, InputError
from .execution import check_partial
from .plans import result_sentence
from .reconcile import KINDS, check_kinds

__all__ = ["NOTEBOOK_PARAMETERS", "Session", "check_parameters", "check_partial", "check_run_parameters", "is_scheduled",
           "open_session", "read_ids", "refuse_secret_parameters", "result_sentence"]

SCHEDULED_ENV = "BACKD_OPS_SCHEDULED"
_JUPYTER_SERVERS = ("jupyter-lab", "jupyter-notebook", "jupyter-server", "jupyter-nbclassic", "jupyterlab", "jupyter_server")

_SECRET_WORDS = ("secret", "password", "passwd", "token", "key", "auth", "credential", "private")
_SECRET_KEY_WORDS = tuple(w for w in _SECRET_WORDS if w != "key")  # inside a value: a header "Order Key" is fine
_SECRET_VALUE = re.compile(r"(?i)\bsk_[a-z0-9_\-]{4,}|\bbasic\s+[a-z0-9+/=]{8,}")


@dataclass(frozen=True)
class Param:
    """One notebook parameter: the types it accepts and what it means."""

    types: tuple[type, ...]
    help: str
    choices: tuple[str, ...] = ()


_COMMON = {
    "backend": Param((str,), '"auto": keys from the environment/.env if set, else an embedded sandbox; "sandbox"; "env"',
                     ("auto", "sandbox", "env")),
    "sandbox_orders": Param((int,), "orders in the embedded sandbox"),
    "profile": Param((str,), 'a named Backd account (backd_profiles.toml, BACKD_*_<NAME>); "" = BACKD_PROFILE or the plain keys'),
    "progress": Param((str, bool), '"auto", "plain" (log-friendly), "off" or False', ("auto", "plain", "off")),
}
NOTEBOOK_PARAMETERS: dict[str, dict[str, Param]] = {
    "reconciliation": {
        **_COMMON,
        "ledger_path": Param((str,), 'CSV/TSV/XLSX/Parquet ledger; "" uses the demo ledger of the embedded sandbox'),
        "sheet": Param((str,), 'the XLSX sheet; "" = the first'),
        "column_map": Param((dict,), "merchant column → our column"),
        "status_map": Param((dict,), "merchant status → Backd status (adds to the defaults)"),
        "out_dir": Param((str,), "where reports, CSVs and the snapshot go"),
        "tolerance": Param((str, float, int), "differences up to this amount are not findings"),
        "stale_days": Param((int, float), "order_placed longer than this is a finding"),
        "lock_window_hours": Param((int, float), "active refunds locking within this many hours are findings"),
        "fail_on": Param((list,), f"finding kinds that fail the run (exit 1): {', '.join(KINDS)}"),
        "as_of": Param((str,), 'when the run is judged, ISO 8601 with an offset (e.g. "2026-04-14T09:00:00-05:00"); "" = now'),
        "run_id": Param((str,), '"" = a new one; backd-ops run sets it so the executed notebook goes into the run folder'),
        "track_findings": Param((bool,), "keep findings across runs (new / open / resolved since last run)"),
        "findings_path": Param((str,), 'findings store folder; "" = beside the journal ($BACKD_OPS_FINDINGS)'),
        "decimal_comma": Param((bool,), "the ledger's amounts are written 1.234,50"),
        "refresh": Param((str,), '"changed": read live only what can have changed since the last run (nightly); '
                                 '"all": every order (the weekly sweep); "none": from the order store alone',
                         ("changed", "all", "none")),
        "profiles": Param((list,), 'several accounts in one run, e.g. ["us", "eu"]: the ledger\'s profile column says whose each row is'),
        "profile_map": Param((dict,), 'the ledger\'s profile values -> profile names, e.g. {"Brand A": "us"}'),
    },
    "bulk_operation": {
        **_COMMON,
        "operation": Param((str,), "refund, cancel, confirm, delete_refund, update or place",
                           ("refund", "cancel", "confirm", "delete_refund", "update", "place")),
        "input_path": Param((str,), 'CSV/TSV/XLSX/Parquet of rows; "" builds a small demo input from the sandbox'),
        "column_map": Param((dict,), "your header → our column, for headers not recognised by name or synonym"),
        "sheet": Param((str,), 'the XLSX sheet; "" = the first'),
        "plan_path": Param((str,), 'a saved (approved) plan to execute instead of planning input_path; "" plans input_path'),
        "execute": Param((bool,), "True executes the plan without the approval panel (scheduled/one-off runs)"),
        "allow_partial": Param((bool,), "with execute: also when some rows are invalid (else nothing is executed)"),
        "journal_path": Param((str,), 'SQLite journal; "" = the default (~/.backd_ops/journal.sqlite or $BACKD_OPS_JOURNAL)'),
        "out_dir": Param((str,), "where the plan and results CSVs go"),
        "max_workers": Param((int,), "concurrent requests"),
        "confirm_production": Param((bool,), "needed to execute against production"),
        "decimal_comma": Param((bool,), "amounts in the input are written 1.234,50"),
    },
    "order_lookup": {
        **_COMMON,
        "order_ids": Param((list, str), "ids to look up (a list, or text with one id per line)"),
        "ids_path": Param((str,), 'a CSV/TSV/XLSX/Parquet with a backd_order_id column; "" to use order_ids'),
    },
}


def refuse_secret_parameters(names: list[str] | Mapping[str, Any]) -> None:
    """Refuse anything that looks like a credential: it would be stored in the executed notebook.

    Names with a credential word, and (given a mapping) values that hold one: a key like ``sk_...``, a Basic
    credential, the configured ``BACKD_SECRET_KEY``, or a nested name such as ``{"secret": ...}``.

    Examples
    --------
    >>> refuse_secret_parameters({"ledger_path": "ledger.csv"})
    >>> refuse_secret_parameters(["secret_key"])
    Traceback (most recent call last):
    ...
    backd_ops.errors.ConfigurationError: secret_key looks like a credential: credentials come from the environment or .env, never from notebook parameters
    """
    for name in names:
        if any(word in name.lower() for word in _SECRET_WORDS):
            raise ConfigurationError(f"{name} looks like a credential: credentials come from the environment or .env, "
                                     "never from notebook parameters")
    if isinstance(names, Mapping):
        for name, value in names.items():
            if _holds_secret(value, _configured_secrets()):
                raise ConfigurationError(f"the value of {name} looks like a credential (a secret key or a name such as "
                                         "'secret'): credentials come from the environment or .env, never from notebook parameters")


def _holds_secret(value: Any, known: set[str]) -> bool:
    if isinstance(value, Mapping):
        return any(_holds_secret(str(k), known) or any(w in str(k).lower() for w in _SECRET_KEY_WORDS) or _holds_secret(v, known)
                   for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return any(_holds_secret(v, known) for v in value)
    text = str(value)
    return bool(_SECRET_VALUE.search(text)) or any(secret in text for secret in known)


def _configured_secrets() -> set[str]:
    """The secret key of the environment and .env (and its Basic form), if any."""
    from dotenv import dotenv_values

    found = {os.environ.get("BACKD_SECRET_KEY", ""), str(dotenv_values(".env").get("BACKD_SECRET_KEY") or "")}
    return {s.strip() for s in found if s and len(s.strip()) >= 6}


def check_run_parameters(notebook: str, parameters: Mapping[str, Any]) -> None:
    """Check parameters before papermill writes them anywhere: credentials (ConfigurationError), unknown names
    with a suggestion, types, choices, finding kinds and input files (InputError).

    Examples
    --------
    >>> check_run_parameters("reconciliation", {"fail_on": ["missing_in_bakd"]})
    Traceback (most recent call last):
    ...
    backd_ops.errors.InputError: unknown finding kind 'missing_in_bakd' (did you mean 'missing_in_backd'?); the kinds are: missing_in_backd, missing_in_ledger, lookup_failed, duplicate_in_ledger, order_total_mismatch, refunded_amount_mismatch, refund_locks_soon, status_mismatch, merchant_order_id_mismatch, stale_order_placed, unverifiable
    """
    spec = NOTEBOOK_PARAMETERS[notebook]
    refuse_secret_parameters(dict(parameters))  # names and values: papermill would store both in the notebook
    _refuse_unknown(notebook, parameters, spec)
    for name, value in parameters.items():
        _check_one(name, value, spec[name])
    for name in ("ledger_path", "input_path", "plan_path", "ids_path"):
        value = parameters.get(name)
        if value and not Path(os.path.expanduser(str(value))).is_file():
            raise InputError(f"parameter {name}: no such file {value!r}")


def _refuse_unknown(notebook: str, names: Mapping[str, Any] | set[str], spec: Mapping[str, Param]) -> None:
    unknown = sorted(set(names) - set(spec))
    if unknown:
        hints = [f"{n!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(n, spec, n=1)) else "") for n in unknown]
        raise InputError(f"unknown parameter {', '.join(hints)}; {notebook} takes: {', '.join(spec)}")


def check_parameters(notebook: str, namespace: Mapping[str, Any], before: set[str]) -> dict[str, Any]:
    """Check a notebook's parameters: unknown names are errors (with a suggestion), types and choices checked.

    ``before`` is the set of names defined before the parameters cell, so that names papermill injected
    (``injected-parameters``) but the notebook does not declare are caught.

    Examples
    --------
    >>> check_parameters("order_lookup", {"order_ids": [], "ids_path": "", "backend": "auto", "sandbox_orders": 10,
    ...                   "progress": "auto"}, before=set())["backend"]
    'auto'
    """
    spec = NOTEBOOK_PARAMETERS[notebook]
    defined = {n for n in namespace if n not in before and not n.startswith("_")}
    refuse_secret_parameters(sorted(defined - set(spec)))
    _refuse_unknown(notebook, defined, spec)
    values = {name: namespace[name] for name in spec if name in namespace}
    for name, value in values.items():
        _check_one(name, value, spec[name])
    missing = sorted(set(spec) - set(values))
    if missing:
        raise InputError(f"the parameters cell does not define {', '.join(missing)}")
    return values


def _check_one(name: str, value: Any, param: Param) -> None:
    if not isinstance(value, param.types) or (isinstance(value, bool) and bool not in param.types and int in param.types):
        expected = " or ".join(t.__name__ for t in param.types)
        raise InputError(f"parameter {name} must be {expected}, got {type(value).__name__} {value!r}")
    if param.choices and isinstance(value, str) and value not in param.choices:
        raise InputError(f"parameter {name} must be one of {', '.join(param.choices)}, got {value!r}")
    if name == "fail_on":
        check_kinds(value)
    if name == "as_of" and value:
        parse_as_of(value)
    if name == "tolerance":
        from .reconcile import _check_parameters

        _check_parameters(None, value, 0, 0)


def parse_as_of(text: str) -> datetime | None:
    """The ``as_of`` parameter: ISO 8601 with an offset, or "" for now; a time without a zone is refused.

    Examples
    --------
    >>> parse_as_of("2026-04-14T09:00:00-05:00").isoformat()
    '2026-04-14T09:00:00-05:00'
    """
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"as_of {text!r} is not an ISO 8601 time (e.g. 2026-04-14T09:00:00-05:00)") from None
    if moment.tzinfo is None:
        raise InputError(f"as_of {text!r} has no time zone: add one (e.g. -05:00); it would be read in this machine's zone")
    return moment


@dataclass
class Session:
    """A notebook's connection: the client, and the embedded sandbox if one was started (else None)."""

    client: BackdClient
    sandbox: Any
    _stack: ExitStack
    fell_back: bool = False
    clients: dict[str, BackdClient] | None = None
    """Profile name → client, when the session spans several accounts (``client`` is then the first)."""

    def close(self) -> None:
        for client in (self.clients or {"": self.client}).values():
            client.close()
        self._stack.close()

    def describe(self) -> str:
        if self.clients:
            return "Connected to " + "; ".join(f"{name}: Backd {c.environment} at {c.account.host}, key {c.account.key_hint}"
                                               for name, c in self.clients.items())
        where = "an embedded sandbox (demo data)" if self.sandbox is not None else f"Backd {self.client.environment}"
        named = f" (profile {self.client.settings.profile})" if self.client.settings.profile else ""
        return f"Connected to {where} at {self.client.account.host}, key {self.client.account.key_hint}{named}"

    def banner_html(self) -> str:
        """A banner a person cannot miss when this is not production (red for the embedded sandbox)."""
        import html

        if self.sandbox is None and self.client.is_production:
            return f"<p><b>{html.escape(self.describe())}</b></p>"
        why = " No Backd keys were found (BACKD_PUBLIC_KEY / BACKD_SECRET_KEY in the environment or .env)." if self.fell_back else ""
        return (f'<p style="background:#b42318;color:#fff;padding:6px 12px;font-weight:700">SANDBOX: '
                f"{html.escape(self.describe())}.{html.escape(why)}</p>")


def is_scheduled() -> bool:
    """Whether nobody is at the keyboard: ``$BACKD_OPS_SCHEDULED`` says so, else a kernel not started by a Jupyter
    server (papermill, nbconvert, a script) counts as scheduled."""
    flag = os.environ.get(SCHEDULED_ENV, "").strip().lower()
    if flag in ("1", "yes", "true"):
        return True
    if flag in ("0", "no", "false"):
        return False
    return not _started_by_jupyter_server()


def _started_by_jupyter_server() -> bool:
    try:
        argv = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    names = [Path(a.decode(errors="replace")).name for a in argv]
    for i, name in enumerate(names):
        if name in _JUPYTER_SERVERS or (name == "jupyter" and i + 1 < len(names) and names[i + 1] in ("lab", "notebook", "server", "nbclassic")):
            return True
    return False


def _has_credentials() -> bool:
    try:
        Settings.from_env()
    except ConfigurationError:
        return False
    return True


def open_session(backend: str = "auto", *, sandbox_orders: int = 500, profile: str = "",
                 profiles: list[str] | tuple[str, ...] = ()) -> Session:
    """Connect with the environment's keys, or start an embedded sandbox with demo data.

    ``profile`` names one account (else ``BACKD_PROFILE``, else the plain keys); ``profiles`` several, each read
    with its own keys (never the embedded sandbox: it is one account).

    Examples
    --------
    >>> session = open_session("sandbox", sandbox_orders=10)
    >>> session.sandbox is not None
    True
    >>> session.close()
    """
    if backend not in ("auto", "sandbox", "env"):
        raise InputError(f'backend must be "auto", "sandbox" or "env", got {backend!r}')
    stack = ExitStack()
    if (profiles or profile) and backend == "sandbox":
        raise InputError('profile/profiles name Backd accounts with their own keys: not with backend="sandbox"')
    if profiles:
        from .accounts import clients_for

        clients = clients_for(list(profiles))
        return Session(next(iter(clients.values())), None, stack, clients=clients)
    if backend == "env" or (backend == "auto" and (profile or _has_credentials())):  # a named profile never falls back
        return Session(BackdClient.from_env(profile=profile or None), None, stack)
    if backend == "auto" and is_scheduled():
        raise ConfigurationError(
            "no Backd keys: set BACKD_PUBLIC_KEY and BACKD_SECRET_KEY (environment or .env) for a scheduled run; "
            'to rehearse against the embedded sandbox on purpose, pass backend="sandbox" (-p backend sandbox)')
    from .sandbox import run_sandbox

    sandbox = stack.enter_context(run_sandbox(orders=sandbox_orders))
    return Session(sandbox.client(), sandbox, stack, fell_back=backend == "auto")


def demo_ledger_frame(session: Session) -> tuple[pd.DataFrame, dict[str, str]]:
    """The embedded sandbox's demo ledger (planted discrepancies) and the column map it needs."""
    from .sandbox.demo import DEMO_COLUMN_MAP, demo_ledger

    if session.sandbox is None:
        raise InputError("ledger_path is empty: give a ledger file, or use backend=\"sandbox\" for the demo ledger")
    store = session.sandbox.store
    rows, _ = demo_ledger([store.find(i) for i in store.ids()])
    frame = pd.DataFrame(rows)
    frame.attrs["source"] = "demo ledger of the embedded sandbox"
    return frame, dict(DEMO_COLUMN_MAP)


def demo_bulk_input(session: Session, operation: str, *, rows: int = 8) -> pd.DataFrame:
    """A small input for ``operation`` built from the embedded sandbox's orders (for rehearsals)."""
    from .bulk import find_orders

    if session.sandbox is None:
        raise InputError("input_path is empty: give an input file, or use backend=\"sandbox\" for a demo input")
    orders = find_orders(session.client, session.sandbox.store.ids(), progress=False)
    wanted = {"refund": "order_confirmed", "delete_refund": "order_confirmed", "cancel": "order_placed",
              "confirm": "order_placed", "update": "order_placed", "place": "terms_selected"}[operation]
    chosen = orders[orders["status"] == wanted]
    if operation == "refund":
        chosen = chosen[chosen["active_refund_amount"].isna()]
        return pd.DataFrame({"backd_order_id": chosen.backd_order_id, "merchant_order_id": chosen.merchant_order_id,
                             "refund_amount": "10.00"}).head(rows).reset_index(drop=True)
    if operation == "delete_refund":
        chosen = chosen[chosen["active_refund_locked_at"] > pd.Timestamp.now(tz="America/Chicago")]
    columns = ["backd_order_id"] if operation == "cancel" else ["backd_order_id", "merchant_order_id"]
    return chosen[columns].head(rows).reset_index(drop=True)


def read_ids(path: str, *, sheet: str | None = None, column_map: Mapping[str, str] | None = None) -> list[str]:
    """The ids in a file's ``backd_order_id`` column (its header matched as in bulk files: "Order ID", ...).

    Examples
    --------
    >>> read_ids("ids.xlsx")                 # doctest: +SKIP
    ['BO-DEMO-000001', 'BO-DEMO-000002']
    """
    from .reads import read_ids as read

    return read(path, sheet=sheet or None, column_map=column_map or None)


def saved_plan(path: str, operation: str) -> pd.DataFrame:
    """A saved plan for the notebook's ``operation`` (a refund notebook does not execute a cancel plan by mistake)."""
    from .plans import load_plan

    plan = load_plan(path)
    made_for = plan.backd.info.operation
    if made_for != operation:
        raise InputError(f"plan_path {path} is a {made_for} plan, and this notebook's operation is {operation}: "
                         f"set operation = {made_for!r} or use the {made_for} notebook")
    return plan


def show_charts(charts: Mapping[str, str]) -> None:
    """Display base64 PNG charts (from ``Reconciliation.charts()``) in the notebook."""
    import base64

    from IPython.display import Image, Markdown, display

    for title, png in charts.items():
        display(Markdown(f"**{title}**"), Image(data=base64.b64decode(png)))


def fail_on_findings(rec: Any, kinds: list[str]) -> None:
    """Raise :class:`FindingsError` (after the reports are saved) when ``rec`` has findings of ``kinds`` that count
    (a finding noted ``no_action_needed`` does not, until its values change)."""
    counts = rec.counting(kinds) if kinds else {}
    if any(counts.values()):
        found = ", ".join(f"{k}: {n}" for k, n in counts.items() if n)
        raise FindingsError(f"reconciliation found {found} (fail_on={kinds}); the reports are saved")


def progress_for(progress: str | bool) -> bool | str:
    """The notebook's ``progress`` parameter as the bulk and reconcile functions take it: "auto" shows bars to a person
    and nothing in a scheduled run (so the executed notebook's first output is its "About this run")."""
    if progress in (False, "off"):
        return False
    if progress == "auto":
        return False if is_scheduled() else True
    return progress


def about_html(rec: Any, folder: Path | None, session: Session | None = None) -> Any:
    """The executed notebook's first output: banner, "About this run", where the reports went, the headline."""
    import html

    from IPython.display import HTML

    from . import report

    where = f"<p>Reports: <code>{html.escape(str(folder))}</code></p>" if folder is not None else ""
    banner = session.banner_html() if session is not None else ""
    return HTML(f"{banner}<h3>About this run</h3>{report.pairs_html(rec.record.about(), 'about')}{where}"
                f"{report.pairs_html(rec.headline(), 'headline')}")


def output_dir(path: str) -> Path:
    """The output directory, created."""
    out = Path(os.path.expanduser(path))
    out.mkdir(parents=True, exist_ok=True)
    return out
