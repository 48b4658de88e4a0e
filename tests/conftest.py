"""Shared fixtures: a real sandbox over HTTP on 127.0.0.1 (ephemeral port), and a client for it."""

from __future__ import annotations

from datetime import datetime

import pytest

from backd_ops.sandbox import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, run_sandbox
from backd_ops.locking import CHICAGO

# A Tuesday morning, well before the 17:00 lock, so refund tests do not depend on the day CI runs.
TUESDAY_MORNING = datetime(2026, 4, 14, 9, 0, tzinfo=CHICAGO)


@pytest.fixture(autouse=True)
def own_stores(monkeypatch, tmp_path_factory):
    """Every test has its own journal and findings store: nothing is written under ~/.backd_ops, no test sees another's."""
    home = tmp_path_factory.mktemp("backd_ops_home")
    monkeypatch.setenv("BACKD_OPS_JOURNAL", str(home / "journal.sqlite"))
    monkeypatch.setenv("BACKD_OPS_FINDINGS", str(home / "findings"))
    monkeypatch.setenv("BACKD_OPS_ORDERS", str(home / "orders"))


@pytest.fixture
def sandbox():
    """A fresh sandbox with 60 demo orders and a clock frozen on a Tuesday morning."""
    with run_sandbox(orders=60, now=TUESDAY_MORNING) as sb:
        _fail_fast_if_down(sb)
        yield sb


@pytest.fixture
def client(sandbox):
    """A client with fast backoff so retry tests stay quick."""
    with sandbox.client(backoff_initial_s=0.01, timeout=(1.0, 5.0)) as c:
        yield c


@pytest.fixture
def env_sandbox(monkeypatch, tmp_path):
    """A sandbox (real time, 120 orders) whose keys and URL are in the environment, as a CLI or kernel sees them."""
    with run_sandbox(orders=120) as sb:
        for name, value in sb.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("BACKD_OPS_JOURNAL", str(tmp_path / "journal.sqlite"))
        yield sb


@pytest.fixture
def two_accounts(tmp_path, monkeypatch):
    """Two sandboxes (two Backd accounts, the same order ids in each), named us and eu in the environment."""
    monkeypatch.chdir(tmp_path)  # no stray .env or profiles file
    monkeypatch.setenv("BACKD_OPS_ORDERS", str(tmp_path / "orders"))
    with run_sandbox(orders=30, seed=1, public_key="pk_sandbox_us") as us, \
            run_sandbox(orders=20, seed=2, public_key="pk_sandbox_eu") as eu:
        for name, sb in (("us", us), ("eu", eu)):
            for variable, value in sb.env(name).items():
                monkeypatch.setenv(variable, value)
        yield us, eu


@pytest.fixture
def secret() -> str:
    return DEMO_SECRET_KEY


def pytest_sessionfinish(session, exitstatus):
    """After the whole suite: no artifact any test left (journals, reports, notebooks, CSV/XLSX) holds the secret."""
    from .secret_scan import find_secrets, needles

    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or exitstatus not in (0, 1):
        return
    leaks = find_secrets(factory.getbasetemp(), needles(DEMO_PUBLIC_KEY, DEMO_SECRET_KEY))
    if leaks:
        session.config.get_terminal_writer().line("SECRET FOUND IN TEST ARTIFACTS:\n" + "\n".join(leaks), red=True)
        session.exitstatus = 1


def _fail_fast_if_down(sb) -> None:
    import requests

    try:
        requests.get(f"http://{sb.host}:{sb.port}/", timeout=2)
    except requests.RequestException as exc:  # pragma: no cover - only when the server did not start
        pytest.fail(f"sandbox did not answer on {sb.base_url}: {exc}")


def order_in_status(sandbox, status: str, *, skip: int = 0, with_active_refund: bool | None = None) -> str:
    """The id of a demo order in ``status`` (optionally with/without an active refund)."""
    matches = []
    for order_id in sandbox.store.ids():
        order = sandbox.store.find(order_id)
        if order["status"] != status:
            continue
        active = any(r["status"] in ("draft", "approved") for r in order["refunds"])
        if with_active_refund is None or active == with_active_refund:
            matches.append(order_id)
    return matches[skip]
