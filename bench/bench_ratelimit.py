"""Benchmark the client's rate limiter against a sandbox that limits each key to 50 requests/s.

    python bench/bench_ratelimit.py                 # 5,000 reads per mode (about 4 minutes)
    python bench/bench_ratelimit.py --reads 1000    # a quicker look

The sandbox runs in a child process (``backd-ops sandbox --rate-limit 50``: a token bucket per key, default
burst 10, 429 with a fractional Retry-After; 25 ms added latency). For each mode a fresh client reads N
orders with ``find_orders`` and 16 workers, on a sandbox reset in between (bucket full, counts zero):

- ``max_rps=50``: the client paces every request at the limit;
- no limit set: the client adapts (backs off on 429, probes upward again).

Prints per mode: the sustained rate (reads / wall time) and its share of 50/s, the sandbox's count of 429s and
their share of all requests, the limiter's congestion events and final rate, and a timeline every 10 s.
Targets (issue 12): ``max_rps=50``: ≥ 95% of 50/s and 0 429s; no limit: ≥ 85% of 50/s and 429s ≤ 1% of requests.
"""

from __future__ import annotations

import argparse
import threading
import time

from backd_ops import BackdClient, find_orders
from backd_ops.sandbox import FaultProfile
from backd_ops.sandbox.remote import RemoteSandbox, spawn_sandbox, stop_sandbox

LIMIT_RPS = 50.0
LATENCY_MS = 25.0
WORKERS = 16
REFUSED = "rate_limited_bucket"


def _counts(remote: RemoteSandbox) -> tuple[int, int]:
    """(API requests answered, of which 429 from the token bucket), as the sandbox counted them."""
    stats = remote.stats()
    return sum(stats["requests"].values()), stats["faults"].get(REFUSED, 0)


class _Timeline:
    """Samples the sandbox's counts and the limiter's rate every ``every_s`` seconds, from a thread."""

    def __init__(self, remote: RemoteSandbox, client: BackdClient, every_s: float) -> None:
        self.remote, self.client, self.every_s = remote, client, every_s
        self.rows: list[tuple[float, int, int, float | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Timeline:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            requests, refused = _counts(self.remote)
            self.rows.append((time.perf_counter() - self._started, requests, refused, self.client.limiter.rate_rps))

    def lines(self) -> list[str]:
        out, last = [], (0.0, 0, 0)
        for at, requests, refused, rate in self.rows:
            span = at - last[0]
            admitted = (requests - refused) - (last[1] - last[2])
            out.append(f"    {at:6.1f} s  admitted {admitted / span:5.1f}/s  429s {refused - last[2]:3d}  "
                       f"limiter {'unpaced' if rate is None else f'{rate:5.1f} rps'}")
            last = (at, requests, refused)
        return out


def run_mode(remote: RemoteSandbox, ids: list[str], *, max_rps: float | None, profile: FaultProfile) -> dict:
    """Read ``ids`` with a fresh client on a freshly reset sandbox; the figures of that run."""
    remote.reset(faults=profile)  # a full bucket, zero counts; the rate limit stays
    client = BackdClient(remote.public_key, remote.env()["BACKD_SECRET_KEY"], base_url=remote.base_url, max_rps=max_rps)
    with _Timeline(remote, client, every_s=10.0) as timeline:
        started = time.perf_counter()
        frame = find_orders(client, ids, max_workers=WORKERS, progress=False)
        elapsed_s = time.perf_counter() - started
    requests, refused = _counts(remote)
    return {"reads": len(ids), "errors": int(frame.error.notna().sum()), "elapsed_s": elapsed_s,
            "rate_rps": len(ids) / elapsed_s, "requests": requests, "refused": refused,
            "events": client.limiter.congestion_events, "final_rps": client.limiter.rate_rps, "timeline": timeline.lines()}


def report(name: str, r: dict, *, target_pct: float, max_refused_pct: float) -> bool:
    pct = 100 * r["rate_rps"] / LIMIT_RPS
    refused_pct = 100 * r["refused"] / max(1, r["requests"])
    ok = pct >= target_pct and refused_pct <= max_refused_pct and r["errors"] == 0
    final = "unpaced" if r["final_rps"] is None else f"{r['final_rps']:.1f} rps"
    print(f"{name}: {r['reads']} reads in {r['elapsed_s']:.1f} s = {r['rate_rps']:.2f} reads/s = {pct:.1f}% of "
          f"{LIMIT_RPS:g}/s (target ≥ {target_pct:g}%)")
    print(f"    429s: {r['refused']} of {r['requests']} requests = {refused_pct:.2f}% (target ≤ {max_refused_pct:g}%)   "
          f"read errors: {r['errors']}   congestion events: {r['events']}   limiter ends at {final}   "
          f"{'OK' if ok else 'MISSED'}")
    print("\n".join(r["timeline"]))
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--latency-ms", type=float, default=LATENCY_MS)
    parser.add_argument("--burst", type=float, default=None, help="the sandbox bucket's size (default max(2, RPS/5))")
    args = parser.parse_args()
    profile = FaultProfile(latency_ms=args.latency_ms, rate_limit_rps=LIMIT_RPS, rate_limit_burst=args.burst)
    print(f"backd_ops rate-limit benchmark: sandbox in a child process limiting to {LIMIT_RPS:g} requests/s per key "
          f"(burst {profile.bucket_burst:g}), {args.latency_ms:g} ms latency, {WORKERS} workers, {args.reads} reads per mode\n")
    proc, remote = spawn_sandbox(orders=args.reads, faults=profile)
    try:
        ids = [f"BO-DEMO-{i:06d}" for i in range(1, args.reads + 1)]
        fixed = report("max_rps=50", run_mode(remote, ids, max_rps=LIMIT_RPS, profile=profile), target_pct=95, max_refused_pct=0)
        print()
        adaptive = report("no limit set (adaptive)", run_mode(remote, ids, max_rps=None, profile=profile), target_pct=85,
                          max_refused_pct=1)
    finally:
        stop_sandbox(proc)
    raise SystemExit(0 if fixed and adaptive else 1)


if __name__ == "__main__":
    main()
