"""The seeded simulation of the execute path (``tests/simulation.py``): 200 seeds in CI, 5,000 in the slow profile."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from .simulation import run_seeds

WORKERS = 6


def _run(seeds: list[int], capsys) -> None:
    started = time.monotonic()
    reports = run_seeds(seeds, workers=WORKERS)
    elapsed = time.monotonic() - started
    outcomes: Counter[str] = Counter()
    for report in reports:
        outcomes.update(report.outcomes)
    killed = sum(r.killed_after_s is not None for r in reports)
    refused = sum(r.second_exit == 3 for r in reports)
    outside = sum(len(r.outside) for r in reports)
    with capsys.disabled():
        print(f"\nsimulation: {len(reports)} seeds in {elapsed:.0f} s; executor A killed in {killed}, second executor refused "
              f"in {refused}; {outside} orders changed outside; final outcomes {dict(outcomes)}")
    bad = [r for r in reports if r.violations]
    assert len(reports) == len(seeds)
    assert not bad, "\n".join(f"seed {r.seed}: {v}\n  replay: {r.replay()}" for r in bad[:10] for v in r.violations[:5])


def test_simulation_200_seeds(capsys):
    _run(list(range(200)), capsys)


@pytest.mark.slow
def test_simulation_5000_seeds(capsys):
    _run(list(range(200, 5200)), capsys)
