"""Run the sandbox: its app on a threaded HTTP/1.1 keep-alive server on 127.0.0.1, in-process or from the CLI."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Iterator

from .app import API_PREFIX, SandboxApp
from .clock import SandboxClock
from .faults import FaultInjector, FaultProfile
from .http import SandboxHTTPServer
from .store import Mutation, OrderStore

if TYPE_CHECKING:
    from ..client import BackdClient

DEMO_PUBLIC_KEY = "pk_sandbox_demo"
DEMO_SECRET_KEY = "sk_sandbox_demo_not_a_real_secret"


class Sandbox:
    """A running sandbox: its URL, a client for it, hooks to move time and logs to assert on."""

    def __init__(self, app: SandboxApp, clock: SandboxClock, host: str, port: int, public_key: str, secret_key: str) -> None:
        self.app, self.clock, self.host, self.port = app, clock, host, port
        self.public_key = public_key
        self._secret_key = secret_key
        self.base_url = f"http://{host}:{port}{API_PREFIX}"

    def __repr__(self) -> str:
        return f"Sandbox(base_url={self.base_url!r}, orders={len(self.store)})"

    @property
    def store(self) -> OrderStore:
        return self.app.store

    def client(self, **options: object) -> BackdClient:
        """A :class:`~backd_ops.client.BackdClient` with this sandbox's keys and URL."""
        from ..client import BackdClient

        return BackdClient(self.public_key, self._secret_key, base_url=self.base_url, **options)  # type: ignore[arg-type]

    def env(self, profile: str | None = None) -> dict[str, str]:
        """Environment variables that point a subprocess (notebook kernel, CLI) at this sandbox.

        With ``profile``: the named profile's variables (``BACKD_PUBLIC_KEY_EU``...) instead of the plain ones.
        """
        from ..config import profile_suffix

        suffix = f"_{profile_suffix(profile)}" if profile else ""
        return {f"BACKD_PUBLIC_KEY{suffix}": self.public_key, f"BACKD_SECRET_KEY{suffix}": self._secret_key,
                f"BACKD_BASE_URL{suffix}": self.base_url, f"BACKD_ENVIRONMENT{suffix}": "sandbox"}

    # -- hooks ---------------------------------------------------------------------------------------------
    def reset(self, *, orders: int | None = None, seed: int | None = None, now: datetime | None = None,
              faults: FaultProfile | None = None) -> None:
        """Start over on the same URL and keys: fresh demo orders, empty logs, no faults but ``faults``.

        ``orders``/``seed`` default to the current book's; the clock is frozen at ``now``, or real time when None.

        Examples
        --------
        >>> with run_sandbox(orders=5) as sb:
        ...     sb.reset(orders=2); len(sb.store), sb.mutations
        (2, [])
        """
        self.app.reset(orders=orders, seed=seed, now=now, faults=faults)

    def set_faults(self, profile: FaultProfile | None, *, endpoint: str = "*") -> None:
        """Use ``profile`` (faults, slowness, rate limit) for ``endpoint``, "*" for every endpoint; None clears it."""
        self.app.faults.set(profile, endpoint=endpoint)

    def script_faults(self, endpoint: str, faults: list[str | None]) -> None:
        """Inject exactly these faults on the next requests to ``endpoint`` (e.g. ``["drop_after_apply"]``)."""
        self.app.faults.script(endpoint, faults)

    def select_terms(self, backd_order_id: str) -> dict:
        """The customer chose payment terms for a created order."""
        return self.store.select_terms(backd_order_id)

    def process_locked_refunds(self) -> list[str]:
        """Backd processes locked refunds: their orders move to ``refund``."""
        return self.store.process_locked_refunds()

    # -- logs ---------------------------------------------------------------------------------------------
    @property
    def mutations(self) -> list[Mutation]:
        return list(self.store.mutations)

    def writes_per_order(self, endpoint: str | None = None) -> Counter[str]:
        """Applied mutations per order (optionally for one endpoint): "refunded exactly once" is a 1 here."""
        return Counter(m.backd_order_id for m in self.store.mutations if endpoint in (None, m.endpoint))

    @property
    def requests(self) -> list[dict]:
        return list(self.app.requests)

    def write_requests(self) -> list[dict]:
        """Every request that was not a read."""
        return [r for r in self.app.requests if r["method"] != "GET"]

    def stats(self) -> dict:
        return self.app.stats()

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted so far (keep-alive reuses one per client thread)."""
        return self.app.counts["connections"]


@contextlib.contextmanager
def run_sandbox(
    orders: int = 0,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    seed: int = 42,
    now: datetime | None = None,
    faults: FaultProfile | None = None,
    public_key: str = DEMO_PUBLIC_KEY,
    secret_key: str = DEMO_SECRET_KEY,
    update_increase_limit: Decimal = Decimal("1000.00"),
) -> Iterator[Sandbox]:
    """Start a sandbox with ``orders`` demo orders; ready when the ``with`` block starts.

    Examples
    --------
    >>> with run_sandbox(orders=5) as sb:
    ...     sb.client().find_order("BO-DEMO-000001").backd_order_id
    'BO-DEMO-000001'
    """
    sandbox, server = start_sandbox(orders, port=port, host=host, seed=seed, now=now, faults=faults,
                                    public_key=public_key, secret_key=secret_key, update_increase_limit=update_increase_limit)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="backd-sandbox")
    thread.start()
    try:
        yield sandbox
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def start_sandbox(orders: int = 0, *, port: int = 0, host: str = "127.0.0.1", seed: int = 42, now: datetime | None = None,
                  faults: FaultProfile | None = None, public_key: str = DEMO_PUBLIC_KEY, secret_key: str = DEMO_SECRET_KEY,
                  update_increase_limit: Decimal = Decimal("1000.00")):
    """Build the app and bind its server (not yet serving): ``(Sandbox, server)``. The CLI serves it forever."""
    clock = SandboxClock(now)
    store = OrderStore(clock=clock, update_increase_limit=update_increase_limit)
    app = SandboxApp(store, keys={public_key: secret_key}, faults=FaultInjector(), clock=clock)
    app.reset(orders=orders, seed=seed, now=now, faults=faults)  # the same path as the reset hook
    server = SandboxHTTPServer((host, port), app)
    return Sandbox(app, clock, host, server.server_port, public_key, secret_key), server
