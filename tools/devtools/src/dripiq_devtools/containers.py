"""PostgreSQL and NATS in Docker containers, for the tests' DRIPIQ_TEST_SERVERS=containers.

They are the embedded servers' twins (servers.py), set up by the same functions: PostgreSQL 18
with the same settings, trust authentication and the `dripiq` database made by
`create_database`; NATS 2 with JetStream, the same configuration file, and ready by the same
check. Their ports are published on 127.0.0.1 only and their URLs name 127.0.0.1, as the
embedded servers' do, so the Docker engine must run on this machine.

testcontainers and the Docker client come with the repository's dev dependencies, not with
devtools: nothing imports this module unless containers are asked for.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import docker
from docker.errors import DockerException
from testcontainers.community.postgres import PostgresContainer
from testcontainers.core.container import DockerContainer
from testcontainers.core.docker_client import get_docker_host

from dripiq_devtools.server_source import VARIABLE
from dripiq_devtools.servers import (
    POSTGRES_SETTINGS,
    SetupError,
    create_database,
    nats_config,
    nats_url,
    postgres_url,
    wait_for_nats,
)

POSTGRES_IMAGE = "postgres:18"
NATS_IMAGE = "nats:2"
DEFAULT_ENGINE = "unix:///var/run/docker.sock"
# Beside the image's own nats-server.conf, at the root of its file system.
NATS_CONFIG_IN_CONTAINER = "/dripiq-nats.conf"


def ping_engine(host: str | None, timeout: float = 2.0) -> None:
    """Raise unless the engine at host (None: the local default) answers within timeout seconds."""
    environment = dict(os.environ)
    if host:
        environment["DOCKER_HOST"] = host
    client = docker.from_env(
        timeout=timeout, environment=environment, use_ssh_client=bool(host and host.startswith("ssh://"))
    )
    try:
        client.ping()
    finally:
        client.close()


def docker_engine_problem(host: str | None, ping: Callable[[str | None], object] | None = None) -> str | None:
    """None when the engine at host answers (`ping_engine` by default); otherwise one line saying
    so and what to do. host is where testcontainers will start the containers (`engine_host()`).
    """
    try:
        (ping or ping_engine)(host)
    except (DockerException, OSError) as exc:
        where = host or f"unset, so {DEFAULT_ENGINE}"
        reason = " ".join(str(exc).split())[:300]
        return (
            f"{VARIABLE}=containers: no Docker engine answers (DOCKER_HOST={where}): {reason}; "
            f"start one, or unset {VARIABLE} to use the embedded servers"
        )
    return None


def engine_host() -> str | None:
    """The engine testcontainers uses: tc.host in ~/.testcontainers.properties, DOCKER_HOST, or
    the current docker context; None for the local default socket."""
    return get_docker_host()


def _publish_on_loopback(container: DockerContainer, *ports: int) -> None:
    # Docker publishes a port on every interface of the host unless given an address; docker-py
    # takes (address, None) for "this address, any free port". testcontainers' type says int.
    for port in ports:
        container.ports[str(port)] = ("127.0.0.1", None)  # type: ignore[assignment]


def _published_port(container: DockerContainer, port: int) -> int:
    """The host port Docker chose for the container's port (on 127.0.0.1, see above)."""
    return int(container.get_docker_client().port(container.get_container_id(), port))


def _start(container: DockerContainer, what: str) -> None:
    """Start the container; what the engine refuses (an image it cannot pull...) is one SetupError."""
    try:
        container.start()
    except DockerException as exc:
        _remove(container)
        reason = " ".join(str(exc).split())[:300]
        raise SetupError(f"cannot start the {what} container ({container.image}): {reason}") from None
    except BaseException:
        _remove(container)
        raise


def _remove(container: DockerContainer) -> None:
    # What the engine cannot remove now, the reaper testcontainers starts beside the containers
    # removes when the test session ends.
    with contextlib.suppress(DockerException):
        container.stop()


@dataclass
class ContainerPostgres:
    """PostgreSQL 18 in a container, as the embedded one: superuser postgres, trust, `database`."""

    database: str = "dripiq"
    image: str = POSTGRES_IMAGE
    port: int = 0
    container: PostgresContainer | None = None

    @property
    def url(self) -> str:
        return postgres_url(self.port, self.database)

    def start(self) -> ContainerPostgres:
        settings = [arg for name, value in POSTGRES_SETTINGS.items() for arg in ("-c", f"{name}={value}")]
        # The image makes its cluster as the postgres superuser; trust lets the URL carry no
        # password, as the embedded server's does (the image wants one set all the same).
        # Parallel queries share memory through /dev/shm, which Docker keeps to 64 MB.
        container = PostgresContainer(
            self.image, username="postgres", password="postgres", dbname="postgres", driver=None, shm_size="256m"
        )
        container.with_env("POSTGRES_HOST_AUTH_METHOD", "trust").with_command(["postgres", *settings])
        _publish_on_loopback(container, 5432)
        # PostgresContainer's start waits until psql inside the container reaches the server over
        # TCP, which the image's entry point opens only once its set-up is done.
        _start(container, "PostgreSQL")
        self.container = container
        try:
            self.port = _published_port(container, 5432)
            create_database(self.port, self.database)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Remove the container and its data."""
        if self.container is not None:
            _remove(self.container)
            self.container = None


@dataclass
class ContainerNats:
    """nats-server 2 with JetStream in a container, as the embedded one: same configuration file."""

    image: str = NATS_IMAGE
    port: int = 0
    monitor_port: int = 0
    container: DockerContainer | None = None

    @property
    def url(self) -> str:
        return nats_url(self.port)

    def start(self, timeout: float = 60.0) -> ContainerNats:
        # The image's entry point is nats-server itself: these are its flags.
        container = (
            DockerContainer(self.image)
            .with_command(["-c", NATS_CONFIG_IN_CONTAINER, "-js", "-sd", "/data", "-p", "4222", "-m", "8222"])
            .with_copy_into_container(nats_config().encode(), NATS_CONFIG_IN_CONTAINER)
        )
        _publish_on_loopback(container, 4222, 8222)
        _start(container, "NATS")
        self.container = container
        try:
            self.port = _published_port(container, 4222)
            self.monitor_port = _published_port(container, 8222)
            wait_for_nats(self.monitor_port, timeout, self._gone)
        except BaseException:
            self.stop()
            raise
        return self

    def _gone(self) -> str | None:
        assert self.container is not None
        wrapped = self.container.get_wrapped_container()
        wrapped.reload()
        if wrapped.status in ("exited", "dead"):
            logs = wrapped.logs(tail=20).decode(errors="replace")
            return f"the NATS container exited ({wrapped.attrs['State'].get('ExitCode')}):\n{logs}"
        return None

    def stop(self) -> None:
        """Remove the container and its JetStream store."""
        if self.container is not None:
            _remove(self.container)
            self.container = None
