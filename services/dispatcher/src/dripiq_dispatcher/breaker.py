"""Stop taking sends while SendGrid is down, and probe until it answers again.

Without it, an outage spends an attempt of every message on the stream: each call fails, each
message goes back on a timer, and the stream is drained at full speed into the scheduler. With
it, once `threshold` calls in a row have failed for a passing reason (5xx, 429, no connection,
no answer), the send worker stops fetching for a cool-down; then one batch goes out as a probe.
An answer from SendGrid (accepted, or refused for the message's own reason) closes the breaker;
another passing failure opens it again for twice as long, up to `max_cooldown`. Messages wait on
the stream meanwhile, not in memory, and lose no attempt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import structlog

from dripiq_dispatcher import metrics

log = structlog.get_logger(__name__)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class ProviderBreaker:
    threshold: int = 50
    cooldown: float = 5.0
    max_cooldown: float = 300.0
    # A probe whose answer never comes (its process stopped mid-call) frees the next after this.
    probe_timeout: float = 30.0
    now: Callable[[], float] = time.monotonic
    state: BreakerState = BreakerState.CLOSED
    _failures: int = 0
    _openings: int = 0
    _until: float = 0.0
    _probe_since: float | None = field(default=None)

    @property
    def openings(self) -> int:
        """Times it opened since it last closed: the first opening, then one per failed probe."""
        return self._openings

    def hold(self) -> float:
        """Seconds the send worker should wait before its next fetch; 0: fetch now. Half open,
        fetches go on (an empty stream has nothing to probe with) until a batch starts its
        calls: the others then wait for that probe's answer."""
        if self.state == BreakerState.CLOSED:
            return 0.0
        now = self.now()
        if self.state == BreakerState.OPEN:
            if now < self._until:
                return self._until - now
            self._set(BreakerState.HALF_OPEN)
            log.info("provider_breaker.probing")
        if self._probe_since is None or now - self._probe_since >= self.probe_timeout:
            return 0.0
        return min(1.0, self.probe_timeout - (now - self._probe_since))

    def calling(self) -> None:
        """A batch is about to call the provider: half open, it is the probe."""
        if self.state == BreakerState.HALF_OPEN and self._probe_since is None:
            self._probe_since = self.now()

    def record(self, *, answered: int, failed: int) -> None:
        """What a batch's provider calls came to: `answered` got an answer from SendGrid (any
        status but a passing one), `failed` failed for a passing reason."""
        if answered:
            if self.state != BreakerState.CLOSED:
                log.info("provider_breaker.closed", after_openings=self._openings)
            self._failures = 0
            self._openings = 0
            self._probe_since = None
            self._set(BreakerState.CLOSED)
            return
        if not failed:
            return
        self._failures += failed
        if self.state == BreakerState.HALF_OPEN or (
            self.state == BreakerState.CLOSED and self._failures >= self.threshold
        ):
            self._open()

    def _open(self) -> None:
        wait = min(self.max_cooldown, self.cooldown * 2**self._openings)
        self._openings += 1
        self._until = self.now() + wait
        self._probe_since = None
        self._set(BreakerState.OPEN)
        metrics.BREAKER_OPENINGS.inc()
        log.warning("provider_breaker.opened", seconds=wait, failures_in_a_row=self._failures)

    def _set(self, state: BreakerState) -> None:
        self.state = state
        metrics.BREAKER_OPEN.set(0 if state == BreakerState.CLOSED else 1)
