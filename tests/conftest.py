"""Test-session checks.

With ``XMODAL_REQUIRE_SETUP=1`` (what ``make test`` sets) a test skipped because something the set-up installs
is missing (Java, espeak-ng, fluidsynth, the Debian sound and font packages, the reference packages) fails the
session: such a skip means the comparison silently did not run. Skips that no set-up can lift here (a GPU, a
second machine) say so in their reason and stay allowed.

The ``one_torch_thread`` fixture runs a test on one intra-op thread: for tiny models two threads only contend on
a shared 2-core machine (a module opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

# Reasons that a CPU-only machine with the full set-up may still give.
ALLOWED_SKIP = re.compile(r"\b(CUDA|GPU|accelerator|multi-node)\b", re.IGNORECASE)
_unexpected: list[tuple[str, str]] = []


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _required() -> bool:
    return os.environ.get("XMODAL_REQUIRE_SETUP") == "1"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not _required() or not report.skipped or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    if not ALLOWED_SKIP.search(reason):
        _unexpected.append((report.nodeid, reason))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _unexpected:
        terminalreporter.section("skipped although the set-up should enable them", red=True)
        for nodeid, reason in _unexpected:
            terminalreporter.line(f"{nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _unexpected and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
