"""Run one bulk execute in this process, optionally SIGKILLing itself at a chosen moment (for crash tests).

Usage: python -m tests.crash_worker OPERATION INPUT JOURNAL [KILL_POINT N]
KILL_POINT: after_intent (intent committed, request not yet sent) or before_outcome (request applied,
outcome not yet written), at the N-th row to reach it. The sandbox's URL and keys come from the environment.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import backd_ops
from backd_ops import bulk
from backd_ops.journal import Journal


def _kill_on_nth(method_name: str, n: int) -> None:
    original = getattr(Journal, method_name)
    count = {"n": 0}
    lock = threading.Lock()

    def wrapped(self, *args, **kwargs):
        if method_name == "record_outcomes":
            args = (*args[:-1], list(args[-1]))
            if not args[-1]:
                return original(self, *args, **kwargs)  # the batch of rows that were not planned: nothing was sent for them
        with lock:
            # outcomes are written in batches: the batch that holds the n-th row is the one that never lands
            count["n"] += len(args[-1]) if method_name == "record_outcomes" else 1
            reached = count["n"] >= n
        if method_name == "record_outcomes" and reached:
            os.kill(os.getpid(), signal.SIGKILL)  # the writes were applied; their outcomes are never written
        result = original(self, *args, **kwargs)
        if method_name == "record_intent" and reached:
            os.kill(os.getpid(), signal.SIGKILL)  # the intent is committed; the request is never sent
        return result

    setattr(Journal, method_name, wrapped)


def main(argv: list[str]) -> None:
    operation, source, journal = argv[:3]
    if len(argv) > 3:
        point, n = argv[3], int(argv[4])
        _kill_on_nth({"after_intent": "record_intent", "before_outcome": "record_outcomes"}[point], n)
    client = backd_ops.connect(backoff_initial_s=0.01, timeout=(1.0, 1.0))
    print("STARTED", flush=True)
    result = bulk.run_operation(client, operation, source, execute=True, journal=journal, progress=False, max_workers=4,
                                settle_window_s=1.0)
    print(result.outcome.value_counts().to_dict(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
