"""Progress bars for long work: ``tqdm.auto`` in Jupyter, plain log lines under papermill and in logs.

``tqdm.auto`` draws a widget that papermill's saved notebook and plain log files cannot show updating,
so scheduled runs set ``BACKD_OPS_PROGRESS=plain`` (``backd-ops run`` does) and get one line per 10%.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Protocol, Union

PROGRESS_ENV = "BACKD_OPS_PROGRESS"


class Bar(Protocol):
    def update(self, n: int = 1) -> Any: ...
    def close(self) -> None: ...


ProgressLike = Union[bool, str, Callable[[int, str], Bar]]
"""True/"auto", "plain", False/"off", or a function ``(total, desc) -> Bar`` (a panel's own progress widget)."""


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class PlainBar:
    """A log-friendly bar: a line at every 10% step and at the end, with elapsed time and rate."""

    def __init__(self, total: int, desc: str, stream: Any = None) -> None:
        self.total, self.desc, self.done = total, desc, 0
        self._stream = stream or sys.stderr
        self._started = time.monotonic()
        self._next_step = 10

    def update(self, n: int = 1) -> None:
        self.done += n
        percent = 100 * self.done // max(self.total, 1)
        if percent >= self._next_step and self.done < self.total:
            self._emit()
            self._next_step = (percent // 10 + 1) * 10

    def close(self) -> None:
        self._emit()

    def _emit(self) -> None:
        elapsed = time.monotonic() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        print(f"{self.desc}: {self.done}/{self.total} ({100 * self.done // max(self.total, 1)}%) {elapsed:.1f}s {rate:.0f}/s",
              file=self._stream, flush=True)


def progress_bar(total: int, desc: str, progress: ProgressLike = True) -> Bar:
    """A bar for ``total`` steps: ``progress`` True/"auto" (tqdm.auto, or plain if $BACKD_OPS_PROGRESS=plain), "plain",
    False, or a function making the bar.

    Examples
    --------
    >>> progress_bar(10, "refund", False).update(1)
    """
    if not progress or total == 0:
        return _NoBar()
    if callable(progress):
        return progress(total, desc)
    mode = progress if isinstance(progress, str) else os.environ.get(PROGRESS_ENV, "auto")
    if mode == "off":
        return _NoBar()
    if mode == "plain":
        return PlainBar(total, desc)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="order", leave=True)
