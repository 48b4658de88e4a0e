"""Drive a sandbox that runs in another process through its ``/_sandbox/`` hooks, and start one as a subprocess.

For tests whose own process must stay single-threaded (it forks executors): the sandbox runs in a child
started with ``python -m backd_ops.cli sandbox --port 0``, and nothing here starts a thread or keeps a pooled
connection that a forked child would inherit. The hooks are called with ``requests`` directly, not through
our client, so that what a test asserts on does not depend on the code under test.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import requests

from .faults import FaultProfile
from .store import Mutation, SandboxError

_BANNER_END = b"Ctrl-C stops it"  # the last line the sandbox command prints before it serves


class RemoteSandbox:
    """The hooks of a sandbox at ``base_url`` (its API base URL, as the sandbox command prints it).

    The methods mirror :class:`~backd_ops.sandbox.Sandbox`'s; a hook that says no raises
    :class:`~backd_ops.sandbox.store.SandboxError` with its HTTP status.

    Examples
    --------
    >>> remote = RemoteSandbox("http://127.0.0.1:8765/v1/backd/bnpl/api", "pk_sandbox_demo", "sk_sandbox_demo")
    >>> remote.hooks_url
    'http://127.0.0.1:8765/_sandbox'
    """

    def __init__(self, base_url: str, public_key: str, secret_key: str, *, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.public_key = public_key
        self._secret_key = secret_key
        self.timeout_s = timeout_s
        url = urlsplit(self.base_url)
        self.hooks_url = f"{url.scheme}://{url.netloc}/_sandbox"

    def __repr__(self) -> str:
        return f"RemoteSandbox(base_url={self.base_url!r})"

    def env(self) -> dict[str, str]:
        """Environment variables that point a client, CLI or kernel at this sandbox."""
        return {"BACKD_PUBLIC_KEY": self.public_key, "BACKD_SECRET_KEY": self._secret_key,
                "BACKD_BASE_URL": self.base_url, "BACKD_ENVIRONMENT": "sandbox"}

    # -- state ----------------------------------------------------------------------------------------------
    def reset(self, *, orders: int | None = None, seed: int | None = None, now: datetime | None = None,
              faults: FaultProfile | str | None = None) -> int:
        """Fresh demo orders on the same URL and keys, empty logs, no faults but ``faults``; the number of orders.

        ``orders``/``seed`` default to the current book's; the clock is frozen at ``now``, or real time when None.
        """
        body = {"orders": orders, "seed": seed, "now": _iso(now), "faults": _spec(faults)}
        return self._call("POST", "reset", body)["orders"]

    def set_faults(self, profile: FaultProfile | str | None, *, endpoint: str = "*") -> None:
        """Use ``profile`` (a :class:`FaultProfile` or its ``parse`` spec) for ``endpoint``; None clears it."""
        self._call("POST", "faults", {"profile": _spec(profile), "endpoint": endpoint})

    def script_faults(self, endpoint: str, faults: list[str | None]) -> None:
        """Inject exactly these faults on the next requests to ``endpoint`` (e.g. ``["slow", None]``)."""
        self._call("POST", "script_faults", {"endpoint": endpoint, "faults": faults})

    def select_terms(self, backd_order_id: str) -> dict:
        """The customer chose payment terms for a created order."""
        return self._call("POST", "select_terms", {"backd_order_id": backd_order_id})

    def process_locked_refunds(self) -> list[str]:
        """Backd processes locked refunds: their orders move to ``refund``; the ids processed."""
        return self._call("POST", "process_locked_refunds", {})["processed"]

    def freeze_clock(self, now: datetime | None) -> datetime:
        """Freeze the sandbox's clock at ``now`` (aware), or back to real time when None; the new now."""
        return datetime.fromisoformat(self._call("POST", "freeze_clock", {"now": _iso(now)})["now_iso"])

    def advance_clock(self, *, days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
        """Move the sandbox's clock forward (frozen or not); the new now."""
        delta = {"days": days, "hours": hours, "minutes": minutes, "seconds": seconds}
        return datetime.fromisoformat(self._call("POST", "advance_clock", delta)["now_iso"])

    # -- logs -----------------------------------------------------------------------------------------------
    def mutations(self) -> list[Mutation]:
        """Every applied change since start or reset, as :attr:`Sandbox.mutations` gives them."""
        return [Mutation(m["seq"], datetime.fromisoformat(m["at"]), m["endpoint"], m["backd_order_id"], m["detail"])
                for m in self._call("GET", "mutations")]

    def writes_per_order(self, endpoint: str | None = None) -> Counter[str]:
        """Applied mutations per order (optionally for one endpoint): "refunded exactly once" is a 1 here."""
        return Counter(m.backd_order_id for m in self.mutations() if endpoint in (None, m.endpoint))

    def orders(self) -> list[dict]:
        """Every order as find_order's ``data`` (with ``refunds``); numbers exact (whole: int, else Decimal)."""
        return self._call("GET", "orders")

    def order(self, backd_order_id: str) -> dict:
        """One order from :meth:`orders`; KeyError when the sandbox has none with that id."""
        found = {o["backd_order_id"]: o for o in self.orders()}
        return found[backd_order_id]

    def stats(self) -> dict:
        """Requests per endpoint and status, injected faults (``rate_limited_bucket`` too), mutations per endpoint."""
        return self._call("GET", "stats")

    def _call(self, method: str, hook: str, body: dict | None = None) -> Any:
        # One connection per call (no Session): a test process that forks must not share a pooled socket.
        response = requests.request(method, f"{self.hooks_url}/{hook}", json=body, timeout=self.timeout_s,
                                    auth=(self.public_key, self._secret_key))
        payload = json.loads(response.content, parse_float=Decimal)
        if response.status_code != 200:
            raise SandboxError(response.status_code, f"/_sandbox/{hook}: {payload.get('message')}")
        return payload["data"]


def spawn_sandbox(*, orders: int = 100, seed: int = 42, now: datetime | None = None,
                  faults: FaultProfile | str | None = None, rate_limit_rps: float | None = None,
                  burst: float | None = None, startup_timeout_s: float = 60.0) -> tuple[subprocess.Popen, RemoteSandbox]:
    """Start ``backd-ops sandbox --port 0`` in a child process; ``(process, RemoteSandbox)`` once it answers.

    Stop it with :func:`stop_sandbox`. The child uses this interpreter, so the same ``backd_ops``.

    Examples
    --------
    >>> proc, remote = spawn_sandbox(orders=3)  # doctest: +SKIP
    >>> remote.reset(orders=5), stop_sandbox(proc)  # doctest: +SKIP
    (5, 0)
    """
    command = _sandbox_command(orders=orders, seed=seed, now=now, faults=faults, rate_limit_rps=rate_limit_rps, burst=burst)
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        env = _read_banner_env(proc, timeout_s=startup_timeout_s)
        remote = RemoteSandbox(env["BACKD_BASE_URL"], env["BACKD_PUBLIC_KEY"], env["BACKD_SECRET_KEY"])
        remote.stats()  # ready: it answers over HTTP
    except BaseException:
        stop_sandbox(proc)
        raise
    return proc, remote


def stop_sandbox(proc: subprocess.Popen, *, timeout_s: float = 10.0) -> int | None:
    """Ctrl-C the sandbox process (the command then exits 0); kill it if it does not stop. Its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode


def _sandbox_command(*, orders: int, seed: int, now: datetime | None, faults: FaultProfile | str | None,
                     rate_limit_rps: float | None, burst: float | None) -> list[str]:
    command = [sys.executable, "-m", "backd_ops.cli", "sandbox", "--port", "0", "--orders", str(orders), "--seed", str(seed)]
    if now is not None:
        command += ["--now", _iso(now)]  # type: ignore[list-item]
    if faults:
        command += ["--fault", _spec(faults)]  # type: ignore[list-item]
    if rate_limit_rps:
        command += ["--rate-limit", str(rate_limit_rps)] + (["--burst", str(burst)] if burst else [])
    return command


def _read_banner_env(proc: subprocess.Popen, *, timeout_s: float) -> dict[str, str]:
    """The ``export NAME=VALUE`` lines the sandbox command prints before it serves (select, not a reader thread)."""
    fd, text, deadline = proc.stdout.fileno(), b"", time.monotonic() + timeout_s  # type: ignore[union-attr]
    while _BANNER_END not in text:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            reason = "timed out" if not ready else f"exited with {proc.wait()}"
            raise RuntimeError(f"the sandbox process {reason} before it was ready; it printed: {text.decode(errors='replace')!r}")
        text += chunk
    exports = (line.strip().removeprefix("export ") for line in text.decode().splitlines() if line.strip().startswith("export "))
    return dict(line.split("=", 1) for line in exports)


def _iso(moment: datetime | None) -> str | None:
    if moment is not None and moment.tzinfo is None:
        raise ValueError("the sandbox's clock needs a timezone-aware datetime")
    return None if moment is None else moment.isoformat()


def _spec(profile: FaultProfile | str | None) -> str | None:
    return profile.spec() if isinstance(profile, FaultProfile) else profile
