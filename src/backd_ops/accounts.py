"""One reconciliation across several Backd accounts (profiles): the ledger says whose each row is, or a map does.

A merchant with several brands or regions has one Backd account (one key pair, one profile) per brand. Their
ledger is often one file. :func:`reconcile_accounts` splits it by its ``profile`` column (``profile_map`` turns
the ledger's own values, such as ``"Brand A"``, into profile names), reconciles each part with that profile's
client, its order store and its findings, and joins the parts into one :class:`~backd_ops.reconcile.Reconciliation`
whose findings carry a ``profile`` column. A row whose profile is blank or unknown stops the run before any
request, naming the row and the column.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .client import BackdClient
from .errors import InputError
from .findings import Changes
from .ledger import describe_ledger, load_ledger
from .reconcile import Reconciliation, ledger_source, reconcile

__all__ = ["AccountsReconciliation", "assign_profiles", "clients_for", "reconcile_accounts"]

PROFILE_COLUMN = "profile"


def assign_profiles(ledger: pd.DataFrame, profiles: list[str], profile_map: Mapping[str, str] | None = None) -> pd.Series:
    """The profile of every ledger row: its ``profile`` cell, through ``profile_map`` (case-insensitive) if given.

    Raises :class:`InputError` naming every row whose profile is blank or not one of ``profiles``.

    Examples
    --------
    >>> ledger = pd.DataFrame({"profile": ["Brand A", "brand b"]}, index=[2, 3])
    >>> assign_profiles(ledger, ["us", "eu"], {"Brand A": "us", "Brand B": "eu"}).tolist()
    ['us', 'eu']
    """
    if PROFILE_COLUMN not in ledger.columns:
        raise InputError("the ledger has no profile column: add one (or map a column to it, e.g. column_map={'Brand': 'profile'}) "
                         "saying which account each row belongs to")
    given = ledger[PROFILE_COLUMN].astype("string").str.strip()
    if profile_map:
        lookup = {str(k).strip().lower(): v for k, v in profile_map.items()}
        unknown_targets = sorted(set(lookup.values()) - set(profiles))
        if unknown_targets:
            raise InputError(f"profile_map names unknown profile {', '.join(map(repr, unknown_targets))}; the profiles are {', '.join(profiles)}")
        mapped = given.str.lower().map(lookup).astype("string")
        given = mapped.where(mapped.notna(), given.where(given.isin(profiles)))
    bad = given.isna() | ~given.isin(profiles)
    if bad.any():
        shown = "; ".join(f"row {row}: {'blank' if pd.isna(value) else repr(value)}"
                          for row, value in ledger.loc[bad.to_numpy(), PROFILE_COLUMN].head(10).items())
        more = f" and {int(bad.sum()) - 10} more" if bad.sum() > 10 else ""
        raise InputError(f"{int(bad.sum())} ledger row(s) have no known profile in column profile ({shown}{more}); "
                         f"the profiles are {', '.join(profiles)}" + ("" if profile_map else " (or pass profile_map)")
                         + ". Nothing was compared")
    return given


def clients_for(profiles: str | list[str], **options: Any) -> dict[str, BackdClient]:
    """A client per named profile (``"us,eu"`` or ``["us", "eu"]``), each from its own keys.

    Examples
    --------
    >>> clients_for("us, eu")                                     # doctest: +SKIP
    {'us': BackdClient(profile='us', ...), 'eu': BackdClient(profile='eu', ...)}
    """
    names = [n.strip() for n in (profiles.split(",") if isinstance(profiles, str) else profiles) if n and n.strip()]
    if not names:
        raise InputError("no profiles named: give them as \"us,eu\"")
    if len(set(names)) != len(names):
        raise InputError(f"a profile is named twice in {', '.join(names)}")
    return {name: BackdClient.from_env(profile=name, **options) for name in names}


def reconcile_accounts(ledger: pd.DataFrame | str | Path, clients: Mapping[str, BackdClient], *,
                       profile_map: Mapping[str, str] | None = None, column_map: Mapping[str, str] | str | None = None,
                       status_map: Mapping[str, str] | str | None = None, decimal: str = ".", sheet: str | None = None,
                       run_id: str | None = None, **options: Any) -> AccountsReconciliation:
    """Reconcile one ledger against several accounts: ``clients`` maps profile name → client.

    ``options`` are :func:`~backd_ops.reconcile.reconcile`'s (``refresh``, ``findings``, ``as_of``...); each
    account keeps its own order store and findings. The parts share one run id.

    Examples
    --------
    >>> clients = {"us": backd_ops.connect(profile="us"), "eu": backd_ops.connect(profile="eu")}   # doctest: +SKIP
    >>> rec = reconcile_accounts("ledger.csv", clients, profile_map={"Brand A": "us", "Brand B": "eu"})  # doctest: +SKIP
    >>> rec.discrepancies.groupby("profile").size()                                               # doctest: +SKIP
    """
    if not clients:
        raise InputError("reconcile_accounts needs at least one profile's client")
    accounts = [client.account.key for client in clients.values()]
    if len(set(accounts)) != len(accounts):
        raise InputError("two profiles name the same Backd account: each profile must be a different account")
    source = ledger_source(ledger)
    typed = load_ledger(ledger, column_map, status_map, decimal=decimal, sheet=sheet)
    source = replace(source, rows=len(typed), how_read=describe_ledger(typed))
    owner = assign_profiles(typed, list(clients), profile_map)
    run_id = run_id or uuid.uuid4().hex[:8]
    parts = {name: reconcile(typed[(owner == name).to_numpy()], client=client, run_id=run_id, **options)
             for name, client in clients.items()}
    return AccountsReconciliation(parts, source)


class AccountsReconciliation(Reconciliation):
    """Several accounts' reconciliations read as one: every table carries ``profile``; ``parts`` holds each account's."""

    def __init__(self, parts: dict[str, Reconciliation], source: Any) -> None:
        self.parts = parts
        offsets, total = {}, 0
        for name, part in parts.items():
            offsets[name], total = total, total + len(part.ledger)
        ledger = pd.concat([p.ledger.assign(profile=name) for name, p in parts.items()])
        orders = pd.concat([p.orders.assign(profile=name) for name, p in parts.items()], ignore_index=True)
        findings = pd.concat([_shifted(p._findings, offsets[name]).assign(profile=name) for name, p in parts.items()],
                             ignore_index=True)
        first = next(iter(parts.values())).record
        record = replace(first, account=None, ledger=source,
                         profiles={name: p.record.account for name, p in parts.items()},
                         orders_live=sum(p.record.orders_live for p in parts.values()),
                         orders_from_store=sum(p.record.orders_from_store for p in parts.values()),
                         orders_from_snapshot=sum(p.record.orders_from_snapshot for p in parts.values()),
                         sourcing="; ".join(f"{name}: {p.record.sourcing}" for name, p in parts.items()))
        ranked = findings.sort_values(["severity", "exposure_cents", "pos"], ascending=[True, False, True], kind="stable",
                                      na_position="last").reset_index(drop=True)  # as compare() ranks one account's
        super().__init__(ledger, orders, ranked, record)
        self.changes = _joined_changes({n: p.changes for n, p in parts.items()})

    def track(self, store: Any = True) -> Changes:
        raise InputError("findings are tracked per account: pass findings=True to reconcile_accounts")

    def annotate(self, order: str, kind: str, *, note: str, status: str = "investigating", owner: str | None = None,
                 profile: str | None = None) -> None:
        """Keep a note on a finding of one account (``profile`` needed only when two accounts have the same order key)."""
        holders = [n for n, p in self.parts.items() if p.changes is not None
                   and ((p.changes.current["order_key"] == order) & (p.changes.current["kind"] == kind)).any()]
        if profile is not None:
            holders = [n for n in holders if n == profile]
        if len(holders) != 1:
            raise InputError(f"no {kind} finding for {order} in this run" if not holders else
                             f"{order} has a {kind} finding in {', '.join(holders)}: pass profile=")
        self.parts[holders[0]].annotate(order, kind, note=note, status=status, owner=owner)


def _shifted(findings: pd.DataFrame, offset: int) -> pd.DataFrame:
    out = findings.copy()
    out["pos"] = out["pos"] + offset
    return out


def _joined_changes(changes: dict[str, Changes | None]) -> Changes | None:
    if any(c is None for c in changes.values()):
        return None
    current = pd.concat([c.current.assign(profile=n) for n, c in changes.items()], ignore_index=True)
    resolved = pd.concat([c.resolved.assign(profile=n) for n, c in changes.items()], ignore_index=True)
    histories = [c.history for c in changes.values() if len(c.history)]
    history = (pd.concat(histories).groupby("run_id", sort=False).agg(
        {"as_of": "max", "new": "sum", "open": "sum", "resolved": "sum", "at_stake_cents": "sum"}).reset_index()
        .sort_values("as_of", kind="stable").reset_index(drop=True)) if histories else next(iter(changes.values())).history
    previous = {c.previous_run_id for c in changes.values()}
    return Changes(previous.pop() if len(previous) == 1 else ", ".join(sorted(p for p in previous if p)) or None,
                   current, resolved, history)
