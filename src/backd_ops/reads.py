"""Reading orders in bulk: concurrent ``find_order`` calls on the client's pooled session, in input order.

Also home of the bounded pool every bulk step runs on (``concurrently``): results come back in input
order and an exception is returned in its item's place, never raised past the other items.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

import pandas as pd

from .client import BackdClient
from .columns import map_columns, parse_mapping
from .config import DEFAULT_MAX_WORKERS
from .errors import BackdError, InputError
from .ids import normalize_ids
from .models import Order
from .orders_frame import OrderBatch
from .orderstore import OrderStore, default_order_store
from .progress import ProgressLike, progress_bar
from .tables import read_table

__all__ = ["as_id_list", "concurrently", "fetch_orders", "find_orders", "read_ids", "read_order"]

T = TypeVar("T")
R = TypeVar("R")


def fetch_orders(client: BackdClient, backd_order_ids: Iterable[str], *, max_workers: int | None = None,
                 progress: ProgressLike = True, store: OrderStore | bool = True) -> OrderBatch:
    """Read orders concurrently: an :class:`OrderBatch` with ``.frame()``, ``.refunds()`` and ``.items()``.

    Every order read is kept in the order store (``store``: the default one, another, or False for none).

    Examples
    --------
    >>> batch = fetch_orders(client, ["BO-DEMO-000001", "BO-NOPE"])   # doctest: +SKIP
    >>> batch.frame()[["backd_order_id", "status", "error"]]            # doctest: +SKIP
    """
    requested = [str(i).strip() for i in as_id_list(backd_order_ids)]
    unique = list(dict.fromkeys(i for i in requested if i))
    results = concurrently(lambda order_id: read_order(client, order_id), unique, max_workers=max_workers,
                           progress=progress, desc="find_orders")
    batch = OrderBatch(requested, dict(zip(unique, results)))
    keeper = default_order_store() if store is True else (store or None)
    if keeper is not None and unique:
        keeper.record(client.account, OrderBatch(unique, batch.orders).frame())
    return batch


def find_orders(client: BackdClient, backd_order_ids: Iterable[str], *, max_workers: int | None = None,
                progress: ProgressLike = True) -> pd.DataFrame:
    """One row per requested id, in input order: status, amounts, refund summary; failures in ``error``.

    Examples
    --------
    >>> find_orders(client, ["BO-DEMO-000001"])[["backd_order_id", "status", "order_total"]]  # doctest: +SKIP
    """
    return fetch_orders(client, backd_order_ids, max_workers=max_workers, progress=progress).frame()


def read_order(client: BackdClient, backd_order_id: str) -> Order | BackdError:
    """The order, or the error that stopped the read (returned, not raised: a bulk step records it per row)."""
    try:
        return client.find_order(backd_order_id)
    except (BackdError, ValueError) as exc:
        return exc if isinstance(exc, BackdError) else InputError(str(exc), backd_order_id=backd_order_id)


def read_ids(source: str | Path | pd.DataFrame, *, sheet: str | None = None,
             column_map: Mapping[str, str] | str | None = None) -> list[str]:
    """The ids in a file's (or frame's) ``backd_order_id`` column, its header matched as in bulk files; blanks dropped.

    Examples
    --------
    >>> read_ids(pd.DataFrame({"Order ID": [" BO-1 ", None, 7.0]}))
    ['BO-1', '7']
    """
    frame = read_table(source, sheet=sheet, header_names=parse_mapping(column_map))
    column = map_columns(frame, ["backd_order_id"], column_map=column_map, what="the id file").frame["backd_order_id"]
    ids, problems = normalize_ids(column)
    bad = problems[problems != ""]
    if len(bad):
        raise InputError(f"row {bad.index[0]}, column backd_order_id: {bad.iloc[0]}")
    return ids.dropna().tolist()


def as_id_list(ids: Any) -> list:
    """Ids from a list, a Series, a frame's ``backd_order_id`` column, or text (one per line or comma separated)."""
    if isinstance(ids, pd.DataFrame):
        if "backd_order_id" not in ids.columns:
            raise InputError(f"expected a backd_order_id column; the frame has {', '.join(map(str, ids.columns))}")
        return ids["backd_order_id"].tolist()
    if isinstance(ids, str):
        return [part for part in ids.replace(",", "\n").split()]
    return list(ids)


def concurrently(fn: Callable[[T], R], items: Sequence[T], *, max_workers: int | None, progress: ProgressLike,
                 desc: str) -> list[R | BaseException]:
    """``fn`` over ``items`` on a bounded pool, results in input order; an exception is returned, not raised."""
    if not items:
        return []
    bar = progress_bar(len(items), desc, progress)
    results: list[Any] = [None] * len(items)

    def run(index: int) -> None:
        try:
            results[index] = fn(items[index])
        except BaseException as exc:  # noqa: BLE001 - recorded per item; the caller decides
            results[index] = exc
        bar.update(1)

    workers = max(1, min(max_workers or DEFAULT_MAX_WORKERS, len(items)))
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"backd-{desc}") as pool:
            list(pool.map(run, range(len(items))))
    finally:
        bar.close()
    return results
