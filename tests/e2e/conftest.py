"""One running suite for every end-to-end test: all five processes as their own OS processes,
with the fake SendGrid and the fake OpenAI-compatible server, as `make run` starts them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from suites import running_suite
from support import USER_ACCOUNT

from dripiq_devtools.server_source import ServerSource, start_nats, start_postgres
from dripiq_devtools.servers import SetupError
from dripiq_devtools.suite import Suite


@pytest.fixture(scope="session")
def suite_servers(server_source: ServerSource, server_root: Path) -> Iterator[dict[str, str]]:
    """The suite's DATABASE_URL and NATS_URL when they come from containers: a PostgreSQL and a
    NATS of its own, apart from the integration tests' ones, as the embedded suite has. Embedded,
    there is nothing to give: the suite starts its own as `make run` does, and migrates either way."""
    if server_source is ServerSource.EMBEDDED:
        yield {}
        return
    try:
        pg = start_postgres(server_source, server_root / "e2e-postgres")
    except SetupError as exc:
        pytest.exit(f"PostgreSQL cannot start for the tests: {exc}", returncode=pytest.ExitCode.INTERNAL_ERROR)
    try:
        nats = start_nats(server_source, server_root / "e2e-nats")
    except SetupError as exc:
        pg.close()
        pytest.exit(f"NATS cannot start for the tests: {exc}", returncode=pytest.ExitCode.INTERNAL_ERROR)
    except BaseException:
        pg.close()
        raise
    yield {"DATABASE_URL": pg.url, "NATS_URL": nats.url}
    nats.stop()
    pg.close()


@pytest.fixture(scope="session")
def suite(request: pytest.FixtureRequest, suite_servers: dict[str, str]) -> Iterator[Suite]:
    # The processes' logs are what tells a flaky end-to-end failure apart: kept when a test failed.
    with running_suite(
        "e2e",
        keep_logs=lambda: request.session.testsfailed > 0,
        fake_openai=True,
        user_env={"SENDGRID_WEBHOOK_PUBLIC_KEY": USER_ACCOUNT.public_key_base64, **suite_servers},
        extra_env={
            "SCHEDULER_POLL_SECONDS": "0.1",
            "PLANNER_OUTBOX_POLL_SECONDS": "0.2",
            "DISPATCHER_OUTBOX_POLL_SECONDS": "0.2",
            "EVENTS_OUTBOX_POLL_SECONDS": "0.2",
            # Faults compressed from hours to seconds (they change nothing while all is well).
            "DISPATCHER_RETRY_BACKOFF_SECONDS": "1",
            "DISPATCHER_RETRY_BACKOFF_MAX_SECONDS": "2",
            "DISPATCHER_BREAKER_THRESHOLD": "5",
            "DISPATCHER_BREAKER_COOLDOWN_SECONDS": "0.5",
            "DISPATCHER_BREAKER_MAX_COOLDOWN_SECONDS": "2",
            "DISPATCHER_UNKNOWN_RESEND_AFTER_SECONDS": "3",
            "DISPATCHER_UNKNOWN_SWEEP_SECONDS": "1",
        },
    ) as running:
        yield running
