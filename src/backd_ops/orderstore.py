"""The order store: every order read from Backd, kept per account with when it was read, as a Parquet dataset.

Backd offers one read, ``find_order`` by id; a nightly reconciliation of a large book cannot afford to read
every order again. The store keeps the last read of every order so that only what can still change is read
live: an order in a final state (canceled; refunded and processed with nothing active) is *final*, the rest
are *live* (see :func:`is_final`).

Layout, beside the journal (``~/.backd_ops/orders/``, or ``$BACKD_OPS_ORDERS``; ``off`` disables it), one folder
per account (:attr:`Account.slug`): ``base.parquet`` plus ``part-*.parquet`` files, one per batch of reads, folded
into the base when they pile up. Parquet, not a DuckDB file: pandas, DuckDB and Spark all read the folder
directly (``pd.read_parquet(folder)``, ``duckdb.read_parquet(folder + "/*.parquet")``), appends never rewrite
what is there, and exact money stays ``decimal128``. The latest read of an order wins.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ._files import locked as _locked, write_atomically
from .config import DEFAULT_JOURNAL_PATH, Account
from .models import OrderStatus

__all__ = ["ORDERS_ENV", "OrderStore", "default_order_store", "is_final"]

ORDERS_ENV = "BACKD_OPS_ORDERS"
STORED_COLUMNS = ("backd_order_id", "merchant_order_id", "status", "merchant_order_status", "order_total", "cart_amount",
                  "tax_amount", "shipping_amount", "discount_amount", "create_date", "company_name", "shipping_company_name",
                  "refunded_amount", "refund_count", "active_refund_amount", "active_refund_status", "active_refund_locked_at")
COMPACT_AFTER_PARTS = 24


def default_order_store() -> OrderStore | None:
    """The store at ``$BACKD_OPS_ORDERS`` (``off``: none), else ``orders/`` beside the default journal."""
    setting = os.environ.get(ORDERS_ENV, "").strip()
    if setting.lower() in ("off", "0", "no", "false"):
        return None
    return OrderStore(setting or DEFAULT_JOURNAL_PATH.parent / "orders")


def is_final(frame: pd.DataFrame) -> pd.Series:
    """Final orders cannot change any more: canceled, or refunded (Backd processed it) with no active request.

    Examples
    --------
    >>> is_final(pd.DataFrame({"status": ["order_canceled", "refund", "refund", "order_confirmed"],
    ...                        "active_refund_status": [None, None, "draft", None]})).tolist()
    [True, True, False, False]
    """
    status = frame["status"].astype("string").fillna("")
    canceled = status.str.contains("cancel")
    refunded = (status == OrderStatus.REFUND) & frame["active_refund_status"].isna()
    return (canceled | refunded).astype(bool)


class OrderStore:
    """Orders as last read, per account.

    Examples
    --------
    >>> store = OrderStore(tmp_path / "orders")                       # doctest: +SKIP
    >>> store.record(client.account, find_orders(client, ids))        # doctest: +SKIP
    >>> store.load(client.account).read_at.min()                      # doctest: +SKIP
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"OrderStore({str(self.path)!r})"

    def folder(self, account: Account) -> Path:
        return self.path / account.slug

    def record(self, account: Account, orders: pd.DataFrame, *, read_at: datetime | None = None) -> int:
        """Keep these reads (a ``find_orders`` frame; rows that failed are skipped); how many were kept."""
        found = orders[orders["error"].isna()] if "error" in orders.columns else orders
        found = found.drop_duplicates("backd_order_id", keep="last")
        if found.empty:
            return 0
        frame = found.reindex(columns=list(STORED_COLUMNS)).reset_index(drop=True)
        frame["read_at"] = pd.Timestamp(read_at or datetime.now(timezone.utc)).tz_convert("UTC")
        frame["final"] = is_final(frame)
        folder = self.folder(account)
        folder.mkdir(parents=True, exist_ok=True)
        _write(_to_utc(frame), folder / f"part-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:6]}.parquet")
        if len(list(folder.glob("part-*.parquet"))) > COMPACT_AFTER_PARTS:
            self.compact(account)
        return len(frame)

    def load(self, account: Account, backd_order_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """The latest read of each stored order (of ``backd_order_ids`` if given), with ``read_at`` and ``final``."""
        folder = self.folder(account)
        files = [p for p in [folder / "base.parquet", *sorted(folder.glob("part-*.parquet"))] if p.is_file()]
        if not files:
            return _empty()
        wanted = None if backd_order_ids is None else list(dict.fromkeys(backd_order_ids))
        tables = [_read(path, wanted) for path in files]
        table = pa.concat_tables([t for t in tables if t is not None], promote_options="permissive")  # older parts may differ in unit
        frame = table.to_pandas(types_mapper=_types)
        frame = frame.sort_values("read_at", kind="stable").drop_duplicates("backd_order_id", keep="last")
        return _to_chicago(frame.reset_index(drop=True))

    def compact(self, account: Account) -> None:
        """Fold every part into the base (the latest read of each order), under a lock."""
        folder = self.folder(account)
        with _locked(folder / ".lock"):
            parts = sorted(folder.glob("part-*.parquet"))
            if not parts:
                return
            latest = self.load(account)
            _write(_to_utc(latest), folder / "base.parquet")
            for part in parts:
                part.unlink(missing_ok=True)


def _read(path: Path, wanted: list[str] | None) -> pa.Table | None:
    try:
        filters = None if wanted is None else [("backd_order_id", "in", wanted)]
        return pq.read_table(path, filters=filters)
    except FileNotFoundError:  # folded into the base by a compaction meanwhile
        return None


def _types(arrow_type: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
    if pa.types.is_decimal(arrow_type):
        return pd.ArrowDtype(arrow_type)
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return pd.StringDtype()
    if pa.types.is_integer(arrow_type):
        return pd.Int64Dtype()
    return None


def _to_utc(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in ("create_date", "active_refund_locked_at", "read_at"):
        # pandas infers a unit from the text it parsed (ms for "…:00.123Z", us otherwise); a store whose parts
        # disagree on the unit cannot be read back as one table, so every part is written in microseconds.
        out[column] = pd.to_datetime(out[column], utc=True).dt.as_unit("us")
    return out


def _to_chicago(frame: pd.DataFrame) -> pd.DataFrame:
    from .locking import CHICAGO

    for column in ("create_date", "active_refund_locked_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True).dt.tz_convert(CHICAGO)
    frame["read_at"] = pd.to_datetime(frame["read_at"], utc=True)
    return frame


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in (*STORED_COLUMNS, "read_at", "final")})


def _write(frame: pd.DataFrame, path: Path) -> None:
    write_atomically(path, lambda temporary: frame.to_parquet(temporary, index=False))
