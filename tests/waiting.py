"""Waiting in tests: poll until something holds, bounded, and say what never came.

`eventually` is for async tests (the check may be sync or async); `eventually_blocking` for
the end-to-end tests, which drive the suite from plain functions. Both return the first
truthy value the check gave, so a test can go on with what it waited for.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], Any], what: str = "the condition", *, seconds: float = 10.0, every: float = 0.05
) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for: {what}")
        await asyncio.sleep(every)


def eventually_blocking(
    check: Callable[[], T | None], what: str = "the condition", *, timeout: float = 30.0, every: float = 0.2
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(every)
