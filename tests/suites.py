"""The whole suite as the tests start it: every process on ports of its own, data in a
temporary folder, JSON logs kept beside it; stopped and removed when the test is done."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dripiq_devtools.suite import Suite


@contextmanager
def running_suite(name: str, *, keep_logs: Callable[[], bool] = lambda: False, **options: Any) -> Iterator[Suite]:
    """A started suite with `options` (as Suite takes them). A start that fails prints each
    process's last log lines; when `keep_logs()` says so at the end, the logs outlive the suite."""
    root = Path(tempfile.mkdtemp(prefix=f"dripiq-{name}-"))
    suite = Suite(
        run_dir=root / "run",
        ephemeral_ports=True,
        temporary_data=True,
        log_format="json",
        log_dir=root / "logs",
        **options,
    )
    try:
        try:
            suite.start()
        except BaseException:
            for log in sorted((root / "logs").glob("*.log")):
                print(f"--- {log.name}\n{log.read_text()[-4000:]}")
            raise
        yield suite
    finally:
        suite.stop()
        if keep_logs():
            print(f"\nsuite logs kept in {root / 'logs'}")
        else:
            shutil.rmtree(root, ignore_errors=True)
