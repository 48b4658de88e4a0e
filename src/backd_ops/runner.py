"""Scheduled notebook runs: parameters checked before papermill starts, one folder per run, exit codes that mean something.

``run_notebook`` is what ``backd-ops run`` and ``backd-ops demo`` call. Parameters are checked first (a
credential-like name, an undeclared name, a bad value, a missing file: nothing is written, exit 2 or 3). The
kernel is told the run is scheduled (no silent sandbox). A reconciliation's executed notebook goes into its
run folder (``out_dir/<date>T<time>-<run id>/``) beside its reports; a failure is classified by its exception.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from .errors import InputError, exit_code_for
from .locking import CHICAGO
from .nbtools import SCHEDULED_ENV, check_run_parameters, refuse_secret_parameters
from .progress import PROGRESS_ENV

__all__ = ["NOTEBOOK_DIR", "RunOutcome", "five_lines", "resolve_notebook", "run_notebook"]

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
SPECS = {"reconciliation": "reconciliation", "bulk_refund": "bulk_operation", "bulk_cancel": "bulk_operation",
         "order_lookup": "order_lookup"}


@dataclass(frozen=True)
class RunOutcome:
    """How a notebook run ended: its exit code, the executed notebook, the run folder (reconciliation) and why."""

    code: int
    notebook: Path
    folder: Path | None
    error: str | None = None

    def summary_lines(self) -> list[str]:
        """Five lines for a scheduler's log, from the run folder's summary.json (empty if there is none)."""
        path = self.folder / "summary.json" if self.folder else None
        if path is None or not path.is_file():
            return []
        return five_lines(json.loads(path.read_text()), self.code, self.error)


def resolve_notebook(name: str) -> Path:
    """A notebook path, or the name of one in ``notebooks/``."""
    path = Path(name)
    if path.is_file():
        return path
    candidate = NOTEBOOK_DIR / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if candidate.is_file():
        return candidate
    raise InputError(f"no notebook {name!r}; the notebooks are: {', '.join(p.stem for p in sorted(NOTEBOOK_DIR.glob('*.ipynb')))}")


def run_notebook(name: str, parameters: dict[str, Any], *, out_dir: Path | None = None) -> RunOutcome:
    """Execute a notebook with papermill as a scheduled run; checks parameters before anything is written.

    Examples
    --------
    >>> outcome = run_notebook("reconciliation", {"ledger_path": "ledger.csv", "fail_on": ["missing_in_backd"]})  # doctest: +SKIP
    >>> outcome.code, outcome.folder                                                                              # doctest: +SKIP
    """
    import papermill as pm

    source = resolve_notebook(name)
    parameters = dict(parameters)
    _check(source, parameters)
    reconciliation = SPECS.get(source.stem) == "reconciliation"
    out = Path(out_dir or parameters.get("out_dir") or ("out/reconciliation" if reconciliation else "out")).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    run_id = str(parameters.get("run_id") or uuid.uuid4().hex[:8]) if reconciliation else ""
    if reconciliation:
        parameters.update(run_id=run_id, out_dir=str(out))
    stamp = f"{datetime.now(CHICAGO):%Y-%m-%dT%H%M%S}"
    output = out / (f".{source.stem}-{run_id}.running.ipynb" if reconciliation else f"{source.stem}-{stamp}.ipynb")
    code, error = 0, None
    with _scheduled_environment():
        try:
            pm.execute_notebook(str(source), str(output), parameters=parameters, kernel_name="python3", progress_bar=False,
                                log_output=False, cwd=str(Path.cwd()))
        except pm.PapermillExecutionError as exc:
            code, error = exit_code_for(exc.ename), f"{exc.ename}: {exc.evalue}"
    if not reconciliation:
        return RunOutcome(code, output, None, error)
    folder = _run_folder(out, run_id, stamp)
    final = folder / f"{source.stem}.ipynb"
    shutil.move(str(output), final)
    return RunOutcome(code, final, folder, error)


def _check(source: Path, parameters: dict[str, Any]) -> None:
    spec = SPECS.get(source.stem)
    if spec is not None:
        check_run_parameters(spec, parameters)
        return
    import papermill as pm

    declared = set(pm.inspect_notebook(str(source)))  # a notebook of the merchant's own: its parameters cell decides
    refuse_secret_parameters([n for n in parameters if n not in declared])
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise InputError(f"unknown parameter {', '.join(unknown)}; {source.name} takes: {', '.join(sorted(declared))}")


def _run_folder(out: Path, run_id: str, stamp: str) -> Path:
    """The folder the notebook saved its reports in, or (if it failed before saving) a new one for the evidence."""
    found = sorted(p for p in out.glob(f"*-{run_id}") if p.is_dir())
    if found:
        return found[-1]
    folder = out / f"{stamp}-{run_id}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def _scheduled_environment() -> Iterator[None]:
    """The kernel inherits our environment: tell it nobody is at the keyboard, and to log progress as lines."""
    saved = {k: os.environ.get(k) for k in (SCHEDULED_ENV, PROGRESS_ENV)}
    os.environ[SCHEDULED_ENV] = "1"
    os.environ.setdefault(PROGRESS_ENV, "plain")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def five_lines(summary: dict[str, Any], code: int, error: str | None) -> list[str]:
    """What a scheduler's log shows of a reconciliation: where, what, how much, what changed, and the verdict."""
    run, stats = summary["run"], summary["stats"]
    account = run.get("account") or {}
    profiles = run.get("profiles") or {}
    if account or not profiles:
        where = f"{account.get('environment', 'unknown')} at {account.get('base_url', '?')}"
    else:
        where = ", ".join(f"{name} ({a['environment']} at {a['base_url']})" for name, a in profiles.items())
    where += " (SANDBOX)" if summary.get("sandbox") else ""
    changes = summary.get("changes")
    lines = [
        f"reconciliation {run['run_id']} on {where}, as of {run['as_of']}",
        f"ledger {run['ledger']['name']} ({run['ledger']['rows']:,} rows, sha256 {run['ledger']['sha256'][:12]}…)",
        f"findings {stats['findings']:,} (high {stats['high_findings']:,}, medium {stats['medium_findings']:,}, "
        f"low {stats['low_findings']:,}); match rate {stats['match_rate']:.1%}; money at stake ${float(stats['at_stake']):,.2f}",
        (f"since last run: {changes['new']:,} new, {changes['open']:,} still open, {changes['resolved']:,} resolved"
         if changes else "findings not tracked across runs"),
        f"exit {code}: " + ("clean" if code == 0 else error or "see the executed notebook"),
    ]
    return lines

