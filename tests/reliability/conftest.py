"""Shared pieces of the reliability suite: counted results and the fast/long switch.

Every test here records what it tried with the ``count`` fixture, *after* its assertions
passed, so a count is a fault survived, a hostile file refused or a fuzz case checked.
``scripts/reliability.py`` runs the whole suite (``--long``) with
``VISIONKIT_RELIABILITY_COUNTS`` pointing at a JSON file and turns the counts into the
table on ``docs/reliability.md``; nothing there is typed by hand.

Without ``--long`` (the normal test command) each test runs its fast share; tests marked
``long`` are skipped and the hypothesis tests run fewer examples.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))  # the fuzz tests share fuzzing.py

COUNTS_ENV = "VISIONKIT_RELIABILITY_COUNTS"
_counts: Counter[str] = Counter()

_common = {
    "deadline": None,  # a shared 2-core machine: timing is not what is tested
    "database": None,  # nothing written into the test folders
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}
settings.register_profile("fast", max_examples=25, derandomize=True, **_common)
settings.register_profile("long", max_examples=250, **_common)


def long_run(config: pytest.Config) -> bool:
    """Whether ``--long`` was given (the long part of the reliability suite)."""
    return bool(config.getoption("--long", default=False))


def pytest_configure(config: pytest.Config) -> None:
    settings.load_profile("long" if long_run(config) else "fast")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if long_run(config):
        return
    skip = pytest.mark.skip(reason="long reliability test: run with --long")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def long(request: pytest.FixtureRequest) -> bool:
    """True under ``--long``: tests scale their number of injected faults with it."""
    return long_run(request.config)


@pytest.fixture
def count() -> Callable[..., None]:
    """``count("category", n=1)``: record ``n`` cases that passed their checks."""

    def record(category: str, n: int = 1) -> None:
        _counts[category] += n

    return record


@pytest.fixture(scope="session", autouse=True)
def _write_counts() -> Iterator[None]:
    yield
    target = os.environ.get(COUNTS_ENV)
    if target:
        path = Path(target)
        old = json.loads(path.read_text()) if path.is_file() else {}
        merged = Counter(old) + _counts
        path.write_text(json.dumps(dict(sorted(merged.items())), indent=2) + "\n")
