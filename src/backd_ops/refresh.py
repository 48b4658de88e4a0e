"""Which orders a reconciliation reads live from Backd, and which it takes from the order store.

``refresh="all"`` reads every ledger order (the weekly sweep). ``refresh="changed"`` (the nightly default)
reads only what can have changed or matters tonight:

- orders the store has never seen, or holds as *live* (not final);
- ledger rows that are new or whose values changed since the last run (their fingerprints are kept);
- orders with an open finding;
- a random audit sample of *final* orders (default 1%, seeded, recorded), which catches a store that has
  drifted from Backd: any difference is a finding (``store_drifted``) and widens the next run's sample.

``refresh="none"`` reconciles offline from the store. Every run says how many orders came live, how many
from the store, and how old the oldest stored read is.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

import numpy as np
import pandas as pd

from .arrowtools import isin
from .client import BackdClient
from .config import Account
from .errors import AuthenticationError, BackdError, InputError, NetworkError, RateLimitError, ServerError
from .orders_frame import OrderBatch
from .orderstore import OrderStore
from .reads import fetch_orders

__all__ = ["AUDIT_SHARE", "REFRESH_MODES", "Sourcing", "ledger_fingerprints", "source_orders"]

REFRESH_MODES = ("all", "changed", "none")
AUDIT_SHARE = 0.01
AUDIT_WIDEN = 4.0
_AUDITED = ("status", "merchant_order_id", "order_total", "refunded_amount", "active_refund_amount", "active_refund_status")


@dataclass(frozen=True)
class Sourcing:
    """Where tonight's orders came from: the frame, and the counts a report states."""

    orders: pd.DataFrame
    refresh: str
    live: int
    from_store: int
    oldest_read: datetime | None
    audit_share: float = 0.0
    audit_seed: int | None = None
    audited: int = 0
    drifted: pd.DataFrame | None = None

    def describe(self) -> str:
        oldest = "—" if self.oldest_read is None else self.oldest_read.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        audit = f"; audit sample {self.audited:,} final orders ({self.audit_share:.1%}, seed {self.audit_seed})" if self.audited else ""
        drifted = f", {len(self.drifted):,} differed from the store" if self.drifted is not None and len(self.drifted) else ""
        return f"refresh={self.refresh}: {self.live:,} read live, {self.from_store:,} from the store (oldest read {oldest}){audit}{drifted}"


def ledger_fingerprints(ledger: pd.DataFrame) -> pd.Series:
    """One fingerprint per backd_order_id of what the ledger says about it (duplicates folded in)."""
    rows = ledger[ledger["backd_order_id"].notna()]
    values = rows[["merchant_order_id", "backd_status", "order_total_cents", "refunded_cents"]].astype("string").fillna("")
    hashes = pd.Series(pd.util.hash_pandas_object(values, index=False).to_numpy(), index=rows["backd_order_id"].to_numpy())
    return hashes.groupby(level=0).agg(lambda s: np.bitwise_xor.reduce(s.to_numpy())) if hashes.index.duplicated().any() else hashes


def source_orders(client: BackdClient, ledger: pd.DataFrame, *, refresh: str, store: OrderStore | None,
                  open_finding_ids: Iterable[str] = (), audit_share: float = AUDIT_SHARE, audit_seed: int | None = None,
                  max_workers: int | None = None, progress: bool | str = True) -> Sourcing:
    """The ledger's orders, read live where ``refresh`` says so and taken from ``store`` otherwise."""
    if refresh not in REFRESH_MODES:
        raise InputError(f"refresh must be one of {', '.join(REFRESH_MODES)}, got {refresh!r}")
    ids = ledger["backd_order_id"].dropna().unique().tolist()
    if refresh != "all" and store is None:
        raise InputError(f'refresh="{refresh}" needs the order store, and it is off ($BACKD_OPS_ORDERS=off)')
    if refresh == "all":
        live = _read(client, ids, store, max_workers, progress)
        return Sourcing(live, "all", len(ids), 0, None)
    account = client.account
    stored = store.load(account, ids)
    fingerprints = ledger_fingerprints(ledger)
    if refresh == "none":
        _remember_ledger(store, account, fingerprints)
        return Sourcing(stored, "none", 0, len(stored), _oldest(stored))
    share, seed = _audit_settings(store, account, audit_share, audit_seed)
    to_read, audit_ids = _selection(ids, stored, fingerprints, _previous_ledger(store, account), set(open_finding_ids), share, seed)
    live = _read(client, sorted(to_read | audit_ids), store, max_workers, progress)
    drifted = _drift(stored, live, audit_ids)
    _remember_ledger(store, account, fingerprints)
    _save_audit(store, account, audit_share, share, drifted_found=len(drifted) > 0)
    kept = stored[~isin(stored["backd_order_id"], live["backd_order_id"])]
    orders = pd.concat([kept, live], ignore_index=True) if len(kept) else live
    return Sourcing(orders, "changed", len(to_read | audit_ids), len(kept), _oldest(kept), share, seed, len(audit_ids), drifted)


def _read(client: BackdClient, ids: list[str], store: OrderStore | None, max_workers: int | None, progress: bool | str) -> pd.DataFrame:
    batch = fetch_orders(client, ids, max_workers=max_workers, progress=progress, store=store if store is not None else False)
    raise_if_unreachable(batch, ids)
    return batch.frame()


def raise_if_unreachable(batch: OrderBatch, ids: list[str]) -> None:
    """Wrong keys or an unreachable Backd stop a reconciliation: they are not findings about orders."""
    errors = [o for o in batch.orders.values() if isinstance(o, BackdError)]
    auth = next((e for e in errors if isinstance(e, AuthenticationError)), None)
    if auth is not None:
        raise auth
    unreachable = [e for e in errors if isinstance(e, (NetworkError, ServerError, RateLimitError))]
    if ids and len(unreachable) == len(batch.orders):
        raise NetworkError(f"Backd could not be reached for any of the {len(ids):,} orders ({unreachable[0].message}); "
                           "nothing was compared", endpoint="find_order")


def _selection(ids: list[str], stored: pd.DataFrame, fingerprints: pd.Series, previous: pd.Series, open_ids: set[str],
               share: float, seed: int) -> tuple[set[str], set[str]]:
    """(orders to read because they can have changed or matter tonight, the audit sample of final ones)."""
    known = set(stored["backd_order_id"])
    final = set(stored.loc[stored["final"].astype(bool), "backd_order_id"])
    changed_ledger = fingerprints.index[~isin(fingerprints.index, previous.index)].tolist()
    common = fingerprints.index.intersection(previous.index)
    changed_ledger += common[fingerprints[common].to_numpy() != previous[common].to_numpy()].tolist()
    to_read = {i for i in ids if i not in known or i not in final} | (set(changed_ledger) | open_ids) & set(ids)
    candidates = sorted(final - to_read)
    size = min(len(candidates), math.ceil(share * len(final))) if candidates else 0
    return to_read, set(random.Random(seed).sample(candidates, size))


def _drift(stored: pd.DataFrame, live: pd.DataFrame, audited: set[str]) -> pd.DataFrame:
    """The audited orders whose live read differs from what the store held: ``backd_order_id``, ``stored``, ``live``."""
    columns = [c for c in _AUDITED if c in stored.columns and c in live.columns]
    before = stored[isin(stored["backd_order_id"], audited)].set_index("backd_order_id")[columns].astype("string")
    after = live[isin(live["backd_order_id"], audited) & live["error"].isna().to_numpy()].set_index("backd_order_id")[columns].astype("string")
    both = before.index.intersection(after.index)
    before, after = before.loc[both].fillna(""), after.loc[both].fillna("")
    differs = (before != after).any(axis=1)
    text = lambda f: f.apply(lambda r: ", ".join(f"{c} {v or '—'}" for c, v in r.items()), axis=1)  # noqa: E731
    if not differs.any():
        return pd.DataFrame(columns=["backd_order_id", "stored", "live"])
    return pd.DataFrame({"backd_order_id": both[differs.to_numpy()], "stored": text(before[differs]).to_numpy(),
                         "live": text(after[differs]).to_numpy()})


def _oldest(frame: pd.DataFrame) -> datetime | None:
    if frame.empty or "read_at" not in frame.columns or frame["read_at"].isna().all():
        return None
    return pd.Timestamp(frame["read_at"].min()).to_pydatetime()


# -- what the store remembers between runs -------------------------------------------------------------------------------
def _previous_ledger(store: OrderStore, account: Account) -> pd.Series:
    path = store.folder(account) / "ledger.parquet"
    if not path.is_file():
        return pd.Series(dtype="uint64")
    frame = pd.read_parquet(path)
    return pd.Series(frame["fingerprint"].to_numpy(), index=frame["backd_order_id"].to_numpy())


def _remember_ledger(store: OrderStore, account: Account, fingerprints: pd.Series) -> None:
    folder = store.folder(account)
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"backd_order_id": fingerprints.index.astype(str), "fingerprint": fingerprints.to_numpy(dtype="uint64")})
    previous = _previous_ledger(store, account)
    kept = previous[~isin(previous.index, fingerprints.index)]  # a partial ledger does not forget other orders
    if len(kept):
        frame = pd.concat([pd.DataFrame({"backd_order_id": kept.index.astype(str), "fingerprint": kept.to_numpy(dtype="uint64")}), frame])
    temporary = folder / ".ledger.parquet.tmp"
    frame.to_parquet(temporary, index=False)
    temporary.replace(folder / "ledger.parquet")


def _audit_settings(store: OrderStore, account: Account, base: float, seed: int | None) -> tuple[float, int]:
    path = store.folder(account) / "audit.json"
    state = json.loads(path.read_text()) if path.is_file() else {}
    share = max(base, float(state.get("next_share") or 0.0))
    return min(share, 1.0), seed if seed is not None else random.SystemRandom().randrange(1 << 31)


def _save_audit(store: OrderStore, account: Account, base: float, share: float, *, drifted_found: bool) -> None:
    """A drifted store is audited more widely next time; after a clean audit the next run is back to its own share."""
    path = store.folder(account) / "audit.json"
    next_share = min(1.0, max(share, base) * AUDIT_WIDEN) if drifted_found else None
    path.write_text(json.dumps({"next_share": next_share, "last_share": share, "drifted": drifted_found,
                                "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}))

