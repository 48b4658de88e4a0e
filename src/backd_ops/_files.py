"""Files our stores share: written whole or not at all (temporary file, then rename), and advisory locks."""

from __future__ import annotations

import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


def write_atomically(path: Path, write: Callable[[str], None]) -> Path:
    """Call ``write(temporary_path)``, then rename the result over ``path``: a reader (or a run killed halfway)
    sees the old file or the new one, never half of one.

    Examples
    --------
    >>> import pandas as pd
    >>> write_atomically(folder / "base.parquet", lambda tmp: frame.to_parquet(tmp, index=False))   # doctest: +SKIP
    """
    with staged(path) as stage:
        write(stage.temporary)
        stage.commit()
    return path


class Stage:
    """A temporary file beside ``path``; :meth:`commit` renames it over ``path``."""

    def __init__(self, path: Path, temporary: str) -> None:
        self.path, self.temporary, self.committed = path, temporary, False

    def commit(self) -> None:
        os.replace(self.temporary, self.path)
        self.committed = True


@contextmanager
def staged(path: Path) -> Iterator[Stage]:
    """A file written now and put in place later (:meth:`Stage.commit`), or removed if the block ends before: for
    several files that change together, written while other work goes on and committed when it all succeeded.

    Examples
    --------
    >>> with staged(folder / "state.parquet") as state:                                   # doctest: +SKIP
    ...     table.to_parquet(state.temporary)
    ...     check_everything_else()
    ...     state.commit()
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=_staged_prefix(path), suffix=".tmp")
    os.close(handle)
    stage = Stage(path, temporary)
    try:
        yield stage
    finally:
        if not stage.committed:
            Path(temporary).unlink(missing_ok=True)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if missing) for the ``with`` block, across processes."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def clear_staged(path: Path) -> None:
    """Remove what :func:`staged` left of ``path`` in a process that was killed. Call it holding the lock that
    every writer of ``path`` holds: then no staged file is anyone's work in progress."""
    for leftover in path.parent.glob(f"{_staged_prefix(path)}*.tmp"):
        leftover.unlink(missing_ok=True)


def _staged_prefix(path: Path) -> str:
    return f".{path.name}."
