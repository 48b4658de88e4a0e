"""A local Backd-compatible server for tests, demos and dry rehearsals (status flow, refund locking, faults).

Start it with ``with run_sandbox(orders=500) as sb:`` (``sb.base_url``, ``sb.client()``) or from a terminal
with ``backd-ops sandbox --port 8765 --orders 500``; a test in another process drives that one through
``remote.RemoteSandbox`` (``spawn_sandbox()`` starts it). The choices made where Backd's docs are silent are
listed in ``docs/sandbox.md``.
"""

from .clock import SandboxClock
from .demo import demo_order_id
from .faults import FaultProfile
from ..locking import refund_locked_at
from .remote import RemoteSandbox, spawn_sandbox, stop_sandbox
from .server import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, Sandbox, run_sandbox, start_sandbox

__all__ = [
    "DEMO_PUBLIC_KEY",
    "DEMO_SECRET_KEY",
    "FaultProfile",
    "RemoteSandbox",
    "Sandbox",
    "SandboxClock",
    "demo_order_id",
    "refund_locked_at",
    "run_sandbox",
    "spawn_sandbox",
    "start_sandbox",
    "stop_sandbox",
]
