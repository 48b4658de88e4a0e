"""Run a sandbox in a child process so the benchmark measures only the client's CPU."""

from __future__ import annotations

import multiprocessing as mp
from contextlib import contextmanager
from typing import Iterator


def _serve(queue: mp.Queue, orders: int, latency_ms: float) -> None:
    from backd_ops.sandbox import FaultProfile, start_sandbox

    sandbox, server = start_sandbox(orders, faults=FaultProfile(latency_ms=latency_ms) if latency_ms else None)
    queue.put((sandbox.base_url, sandbox.public_key, sandbox.env()["BACKD_SECRET_KEY"], sandbox.store.ids()))
    server.serve_forever()


@contextmanager
def sandbox_process(orders: int, latency_ms: float) -> Iterator[tuple[str, str, str, list[str]]]:
    """Yields ``(base_url, public_key, secret_key, order_ids)`` of a sandbox serving in a child process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(queue, orders, latency_ms), daemon=True)
    proc.start()
    try:
        yield queue.get(timeout=60)
    finally:
        proc.terminate()
        proc.join(timeout=10)
