"""The whole suite on one machine: PostgreSQL, NATS, migrations, fake SendGrid, five processes.

`make run` calls `main()`; the end-to-end test uses `Suite` with ephemeral ports. Existing
servers are used instead when DATABASE_URL, NATS_URL or SENDGRID_API_KEY are set.

NATS can be a cluster of several nodes on this machine, its streams replicated on up to three of
them, and each service can run as several processes (`Topology`; `make run` and the benchmarks
read it from DRIPIQ_NATS_CLUSTER and DRIPIQ_REPLICAS / DRIPIQ_REPLICAS_<SERVICE>).

Events can run as deployed, a query process apart from the ingest ones (DRIPIQ_EVENTS_QUERY=1):
"events-query" (EVENTS_ROLE=query) takes the events ports every caller and the planner use, and
"events" with its replicas consumes on ports of their own (docs/decisions/0057-events-query-role.md).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import nats
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NATS

from dripiq_common import migrations
from dripiq_common.bus.access import SETUP_USER, USERS
from dripiq_common.bus.client import servers, tls_context
from dripiq_common.bus.setup import set_up
from dripiq_devtools.fake_sendgrid import FakeSendGrid, load_or_create_private_key
from dripiq_devtools.local_database import migrate_as_owners
from dripiq_devtools.servers import EmbeddedNats, EmbeddedNatsCluster, EmbeddedPostgres, SetupError, free_port
from dripiq_devtools.suite_security import SuiteSecurity

REPO = Path(__file__).resolve().parents[4]
# The key a dispatcher without SENDGRID_API_KEY sends to the fake with (dripiq_dispatcher.provider).
FAKE_ACCOUNT_KEY = "SG.dripiq-local-fake"
# The README's example tenant sends as sales@acme.example: its domain is authenticated at the
# fake, as its owner would have done at SendGrid, so VerifySenderIdentity succeeds.
DEMO_DOMAINS = ("acme.example",)


@dataclass(frozen=True)
class Process:
    name: str
    module: str
    port_env: str
    grpc_services: tuple[str, ...] = ()


PROCESSES = (
    Process("planner", "dripiq_planner", "PLANNER_GRPC_PORT", ("dripiq.planner.v1.CampaignService",)),
    Process(
        "dispatcher",
        "dripiq_dispatcher",
        "DISPATCHER_GRPC_PORT",
        (
            "dripiq.dispatcher.v1.DispatcherService",
            "dripiq.dispatcher.v1.SenderIdentityService",
            "dripiq.dispatcher.v1.SuppressionService",
        ),
    ),
    Process("events", "dripiq_events", "EVENTS_GRPC_PORT", ("dripiq.events.v1.EventsService",)),
    Process("scheduler", "dripiq_scheduler", "SCHEDULER_GRPC_PORT", ("dripiq.scheduler.v1.SchedulerService",)),
    Process("edge", "dripiq_events.edge", "EDGE_PORT"),
)
DEFAULT_PORTS = {
    "PLANNER_GRPC_PORT": 50051,
    "DISPATCHER_GRPC_PORT": 50052,
    "EVENTS_GRPC_PORT": 50053,
    "SCHEDULER_GRPC_PORT": 50054,
    # The mutual-TLS ports the services call each other on.
    "PLANNER_GRPC_INTERNAL_PORT": 50151,
    "DISPATCHER_GRPC_INTERNAL_PORT": 50152,
    "EVENTS_GRPC_INTERNAL_PORT": 50153,
    "SCHEDULER_GRPC_INTERNAL_PORT": 50154,
    "EDGE_PORT": 8080,
    "FAKE_SENDGRID_PORT": 8025,
    "FAKE_OPENAI_PORT": 8026,
    "DRIPIQ_PG_PORT": 55432,
    "DRIPIQ_NATS_PORT": 4222,
    "DRIPIQ_NATS_MONITOR_PORT": 8222,
    # The first node's route port when NATS runs as a cluster; node i listens on this + i, as
    # its client and monitor ports are DRIPIQ_NATS_PORT + i and DRIPIQ_NATS_MONITOR_PORT + i.
    "DRIPIQ_NATS_CLUSTER_PORT": 6222,
}
# JetStream keeps at most this many copies of a stream, whatever the cluster's size.
MAX_STREAM_REPLICAS = 3


@dataclass(frozen=True)
class Topology:
    """How many NATS nodes, and how many processes of each service."""

    nats_nodes: int = 1
    replicas: Mapping[str, int] = field(default_factory=dict)
    events_query: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Topology:
        """DRIPIQ_NATS_CLUSTER=3 (NATS nodes), DRIPIQ_REPLICAS=2 (processes of every service),
        DRIPIQ_REPLICAS_<SERVICE>=N (of one service, over DRIPIQ_REPLICAS), DRIPIQ_EVENTS_QUERY=1
        (an events query process apart from the ingest ones)."""

        def count(name: str, default: int) -> int:
            raw = environ.get(name, "").strip()
            if not raw:
                return default
            if not raw.isdigit() or int(raw) < 1:
                raise SetupError(f"{name}={raw!r}: give a whole number, 1 or more")
            return int(raw)

        every = count("DRIPIQ_REPLICAS", 1)
        replicas = {p.name: count(f"DRIPIQ_REPLICAS_{p.name.upper()}", every) for p in PROCESSES}
        query = environ.get("DRIPIQ_EVENTS_QUERY", "").strip()
        if query not in ("", "0", "1"):
            raise SetupError(f"DRIPIQ_EVENTS_QUERY={query!r}: give 1 (a query process apart) or 0")
        return cls(count("DRIPIQ_NATS_CLUSTER", 1), {name: n for name, n in replicas.items() if n > 1}, query == "1")

    @property
    def stream_replicas(self) -> int:
        return min(self.nats_nodes, MAX_STREAM_REPLICAS)

    def describe(self) -> str:
        nats = (
            f"NATS cluster of {self.nats_nodes} nodes, streams R{self.stream_replicas}"
            if self.nats_nodes > 1
            else "NATS single node, streams R1"
        )
        processes = ", ".join(
            f"{p.name} x{self.replicas.get(p.name, 1)}"
            + (" (ingest) and events-query x1" if self.events_query and p.name == "events" else "")
            for p in PROCESSES
        )
        return f"{nats}; {processes}"


@dataclass
class Suite:
    run_dir: Path
    ephemeral_ports: bool = False
    log_format: str = "console"
    # Start the local OpenAI-compatible fake and point the planner at it (no key needed).
    fake_openai: bool = False
    # Seconds the fake OpenAI waits before each answer (a real model takes about one or more).
    fake_openai_latency: float = 0.0
    # Remove the PostgreSQL cluster when stopped (tests and benchmarks); `make run` keeps it.
    temporary_data: bool = False
    # The user's own settings, as `make run` finds them in its environment. A suite on ephemeral
    # ports ignores the caller's DATABASE_URL, NATS_URL and SENDGRID_*; a test gives them here.
    user_env: dict[str, str] = field(default_factory=dict)
    # Seconds after which the fake SendGrid posts `processed` and `delivered` for what it
    # accepted, to the edge, as SendGrid does by itself; 0 posts none.
    fake_auto_events_delay: float = 1.0
    # Extra environment for the five processes (tests shorten poll intervals with it).
    extra_env: dict[str, str] = field(default_factory=dict)
    # TLS and authentication as in production, with a development CA and token issuer under
    # run_dir/tls; False runs every service with DRIPIQ_DEV_INSECURE (plaintext, no tokens).
    secure: bool = True
    security: SuiteSecurity | None = None
    # The URL each service connects with (its app role), on the suite's own PostgreSQL.
    service_database_urls: dict[str, str] = field(default_factory=dict)
    # More than one process of a service, e.g. {"dispatcher": 2}: the others are named
    # "dispatcher-2", ... and listen on ports of their own; all share the database and streams.
    replicas: dict[str, int] = field(default_factory=dict)
    # NATS as a cluster of this many nodes on this machine, streams with min(nodes, 3) replicas.
    nats_nodes: int = 1
    # Events as deployed: "events-query" (EVENTS_ROLE=query) on the events ports, and "events"
    # (with its replicas) in `events_ingest_role` on ports of their own. A benchmark keeps that
    # one "all" to ask both processes in turn under the same ingest.
    events_query: bool = False
    events_ingest_role: str = "ingest"
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    children: dict[str, subprocess.Popen] = field(default_factory=dict)
    postgres: EmbeddedPostgres | None = None
    nats: EmbeddedNats | EmbeddedNatsCluster | None = None
    log_dir: Path | None = None
    fake_webhook_key: str | None = None

    def port(self, name: str) -> int:
        if name not in self.ports:
            configured = os.environ.get(name)
            self.ports[name] = free_port() if self.ephemeral_ports else int(configured or DEFAULT_PORTS[name])
        return self.ports[name]

    def start(self) -> Suite:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SetupError(f"cannot create {self.run_dir}: {exc.strerror}") from None
        try:
            self._start_servers()
            self._start_processes()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_servers(self) -> None:
        env = (
            dict(os.environ)
            if not self.ephemeral_ports
            else {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "NATS_URL", "SENDGRID_"))}
        ) | self.user_env
        database_url = env.get("DATABASE_URL")
        if not database_url:
            try:
                self.postgres = EmbeddedPostgres(
                    self.run_dir / "postgres", port=self.port("DRIPIQ_PG_PORT"), temporary=self.temporary_data
                ).start()
            except SetupError as exc:
                raise SetupError(f"{exc} (or set DATABASE_URL to a server of your own)") from None
            database_url = self.postgres.url
        if self.postgres is not None:
            # Our own server: each service migrates as its schema's owner and runs as its app role.
            self.service_database_urls = migrate_as_owners(database_url)
        else:
            for service in migrations.SERVICES:
                migrations.upgrade(service, database_url)
        if self.secure:
            self.security = SuiteSecurity.create(self.run_dir / "tls", [p.name for p in PROCESSES if p.grpc_services])
        nats_url = env.get("NATS_URL")
        if not nats_url:
            self.nats = self._start_nats()
            nats_url = self.nats.url
            if self.nats_nodes > 1:
                env["JETSTREAM_REPLICAS"] = str(self.topology.stream_replicas)
            if self.security is not None or self.nats_nodes > 1:
                # A user per process with its allow-lists; streams and consumers made up front by
                # the set-up user, so no process may create or change them. On a cluster also
                # without users: every stream change goes through the meta leader, and five
                # processes changing fourteen streams at once outlast the API's timeout.
                nats_url = self._nats_url_of(SETUP_USER) if self.security is not None else nats_url
                ca_file = str(self.security.ca.path) if self.security is not None else ""
                asyncio.run(set_up(nats_url, replicas=self.topology.stream_replicas, ca_file=ca_file))
                env["BUS_SETUP"] = "false"
        secret_file = self.run_dir / "token-secret"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_urlsafe(32))
            secret_file.chmod(0o600)
        env.update(
            DATABASE_URL=database_url,
            NATS_URL=nats_url,
            LOG_FORMAT=self.log_format,
            DRIPIQ_TOKEN_SECRET=env.get("DRIPIQ_TOKEN_SECRET") or secret_file.read_text().strip(),
            PYTHONUNBUFFERED="1",
        )
        edge_url = f"http://127.0.0.1:{self.port('EDGE_PORT')}"
        # Production refuses these without real values; on one machine mail points here, which
        # the dispatcher takes only when told this is development (it logs so at start-up).
        env.setdefault("DISPATCHER_UNSUBSCRIBE_BASE_URL", f"{edge_url}/u/")
        env.setdefault("DISPATCHER_REPLY_DOMAIN", "reply.dripiq.localhost")
        env.setdefault("DISPATCHER_MESSAGE_ID_DOMAIN", "dripiq.localhost")
        env.setdefault("DISPATCHER_ALLOW_LOCAL_MAIL_URLS", "true")
        # The planner calls the dispatcher and events on their internal (mutual TLS) ports.
        called = "GRPC_INTERNAL_PORT" if self.secure else "GRPC_PORT"
        env["PLANNER_DISPATCHER_ADDRESS"] = f"127.0.0.1:{self.port(f'DISPATCHER_{called}')}"
        env["PLANNER_EVENTS_ADDRESS"] = f"127.0.0.1:{self.port(f'EVENTS_{called}')}"
        if self.security is not None:
            env.update(self.security.env())
            (self.run_dir / "dev-token").write_text(self.security.operator_token() + "\n")
        else:
            env["DRIPIQ_DEV_INSECURE"] = "true"
        for process in PROCESSES:
            env[process.port_env] = str(self.port(process.port_env))
            if process.grpc_services:
                internal = f"{process.name.upper()}_GRPC_INTERNAL_PORT"
                env[internal] = str(self.port(internal))
            if self.ephemeral_ports:
                # Another suite on this machine (make run, a benchmark) holds the default ones.
                env[f"{process.name.upper()}_METRICS_PORT"] = str(free_port())
        if not (env.get("SENDGRID_API_KEY") or env.get("SENDGRID_API_HOST")):
            key_file = self.run_dir / "fake-sendgrid-key.pem"
            parse_key_file = self.run_dir / "fake-sendgrid-parse-key.pem"
            keys = FakeSendGrid(
                private_key_pem=load_or_create_private_key(key_file),
                parse_private_key_pem=load_or_create_private_key(parse_key_file),
            )
            public_key = keys.public_key_base64
            fake_port = self.port("FAKE_SENDGRID_PORT")
            self._spawn(
                "fake-sendgrid",
                [
                    sys.executable,
                    "-m",
                    "dripiq_devtools.fake_sendgrid",
                    "--port",
                    str(fake_port),
                    "--private-key-file",
                    str(key_file),
                    "--parse-private-key-file",
                    str(parse_key_file),
                    *[arg for domain in DEMO_DOMAINS for arg in ("--authenticate", f"{FAKE_ACCOUNT_KEY}={domain}")],
                    *(
                        ["--webhook-url", f"{edge_url}/webhooks/sendgrid/events"]
                        + ["--auto-events-delay", str(self.fake_auto_events_delay)]
                        if self.fake_auto_events_delay > 0
                        else []
                    ),
                ],
                env,
            )
            env["SENDGRID_API_HOST"] = f"http://127.0.0.1:{fake_port}"
            # A key the user set (a real account's, to receive its webhooks) stays valid beside the fake's.
            env["SENDGRID_WEBHOOK_PUBLIC_KEY"] = ",".join(
                key for key in (env.get("SENDGRID_WEBHOOK_PUBLIC_KEY", "").strip(), public_key) if key
            )
            self.fake_webhook_key = public_key
            # Inbound Parse as a security policy signs it, with the fake's policy key.
            env["SENDGRID_PARSE_PUBLIC_KEY"] = ",".join(
                key for key in (env.get("SENDGRID_PARSE_PUBLIC_KEY", "").strip(), keys.parse_public_key_base64) if key
            )
        elif not env.get("SENDGRID_WEBHOOK_PUBLIC_KEY"):
            raise SetupError(
                "SENDGRID_API_KEY or SENDGRID_API_HOST is set, so webhooks come from that SendGrid, not the fake: "
                "set SENDGRID_WEBHOOK_PUBLIC_KEY to its verification key (Mail Settings > Signed Event Webhook)"
            )
        elif not (
            env.get("SENDGRID_PARSE_PUBLIC_KEY") or env.get("EDGE_PARSE_URL_SECRET") or env.get("EDGE_PARSE_OAUTH")
        ):
            raise SetupError(
                "SENDGRID_API_KEY or SENDGRID_API_HOST is set, so Inbound Parse comes from that SendGrid: set "
                "SENDGRID_PARSE_PUBLIC_KEY (its Parse security policy's key) or EDGE_PARSE_URL_SECRET"
            )
        if self.fake_openai and not (env.get("OPENAI_API_KEY") or env.get("OPENAI_BASE_URL")):
            port = self.port("FAKE_OPENAI_PORT")
            self._spawn(
                "fake-openai",
                [
                    sys.executable,
                    "-m",
                    "dripiq_devtools.fake_openai",
                    "--port",
                    str(port),
                    "--latency",
                    str(self.fake_openai_latency),
                ],
                env,
            )
            env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{port}/v1"
        self.env = {**env, **self.extra_env}

    @property
    def topology(self) -> Topology:
        return Topology(self.nats_nodes, dict(self.replicas), self.events_query)

    def _start_nats(self) -> EmbeddedNats | EmbeddedNatsCluster:
        extra_config = self.security.nats_config() if self.security is not None else ""
        if self.nats_nodes <= 1:
            return EmbeddedNats(
                self.run_dir / "nats",
                port=self.port("DRIPIQ_NATS_PORT"),
                monitor_port=self.port("DRIPIQ_NATS_MONITOR_PORT"),
                extra_config=extra_config,
            ).start()
        cluster = EmbeddedNatsCluster(self.run_dir / "nats-cluster", size=self.nats_nodes, extra_config=extra_config)
        if not self.ephemeral_ports:
            for base, ports in (
                ("DRIPIQ_NATS_PORT", cluster.client_ports),
                ("DRIPIQ_NATS_MONITOR_PORT", cluster.monitor_ports),
                ("DRIPIQ_NATS_CLUSTER_PORT", cluster.cluster_ports),
            ):
                ports.extend(self.port(base) + i for i in range(self.nats_nodes))
        return cluster.start()

    def _nats_url_of(self, user: str) -> str:
        """The suite's own NATS (every node of a cluster) with `user`'s credentials."""
        assert self.nats is not None and self.security is not None
        return ",".join(self.security.nats_url(url, user) for url in self.nats.urls)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        output = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = open(self.log_dir / f"{name}.log", "ab")
        self.children[name] = subprocess.Popen(
            argv,
            env=env,
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,
        )
        if output:
            output.close()

    def _instances(self) -> list[tuple[str, Process, str]]:
        """(child name, process, port variable) of every process to run, replicas included."""
        found = []
        for process in PROCESSES:
            if self.events_query and process.name == "events":
                found.append(("events-query", process, process.port_env))
                found.append((process.name, process, f"{process.port_env}#ingest"))
            else:
                found.append((process.name, process, process.port_env))
            for n in range(2, self.replicas.get(process.name, 1) + 1):
                found.append((f"{process.name}-{n}", process, f"{process.port_env}#{n}"))
        return found

    def process_names(self) -> list[str]:
        """Every service process the suite runs, replicas included ("dispatcher-2", "events-query")."""
        return [name for name, _process, _port_env in self._instances()]

    def _start_processes(self) -> None:
        for name, process, port_env in self._instances():
            self._spawn(name, [sys.executable, "-m", process.module], self._process_env(name, process, port_env))

    def _process_env(self, name: str, process: Process, port_env: str) -> dict[str, str]:
        """A process's environment: the suite's, its own certificate, and for a replica its own ports."""
        env = self.env
        if self.security is not None and process.grpc_services:
            env = {**env, **self.security.process_env(process.name)}
        if process.name in self.service_database_urls:
            env = {**env, "DATABASE_URL": self.service_database_urls[process.name]}
        if self.security is not None and self.nats is not None and process.name in USERS:
            env = {**env, "NATS_URL": self._nats_url_of(process.name)}
        if self.events_query and process.name == "events":
            env = {**env, "EVENTS_ROLE": "query" if port_env == process.port_env else self.events_ingest_role}
        if port_env != process.port_env:
            env = {
                **env,
                process.port_env: str(self.ports.setdefault(port_env, free_port())),
                f"{process.name.upper()}_GRPC_INTERNAL_PORT": str(free_port()),
                f"{process.name.upper()}_METRICS_PORT": str(free_port()),
            }
        return env

    def _log_tail(self, name: str, lines: int = 30) -> str:
        """The last lines a process wrote, to say why it stopped; empty without a log directory."""
        if self.log_dir is None or not (self.log_dir / f"{name}.log").exists():
            return ""
        text = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()[-lines:]
        return "; its last output:\n" + "\n".join(text)

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for name, process, port_env in self._instances():
            port = self.port(port_env)
            while not self._ready(process, port):
                child = self.children[name]
                if child.poll() is not None:
                    raise RuntimeError(f"{name} exited with {child.returncode} during start-up{self._log_tail(name)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not become ready on port {port}{self._log_tail(name)}")
                time.sleep(0.1)

    async def nats_connect(self, **options: Any) -> NATS:
        """A NATS connection as the suite's set-up user (every right), over TLS when it is secured."""
        ca = str(self.security.ca.path) if self.security is not None and self.nats is not None else ""
        return await nats.connect(servers(self.env["NATS_URL"]), tls=tls_context(ca), **options)

    def channel(self, port_env: str, *, token: str | None = None, **options: int) -> grpc.aio.Channel:
        """An asyncio channel to a service's public port, as a caller outside the suite opens it:
        TLS with the development CA, every call carrying `token` (the operator's by default)."""
        address = f"127.0.0.1:{self.port(port_env)}"
        if self.security is None:
            return grpc.aio.insecure_channel(address, options=list(options.items()))
        creds = self.security.credentials(token or self.security.operator_token())
        return grpc.aio.secure_channel(address, creds, options=list(options.items()))

    def blocking_channel(self, port_env: str, *, token: str | None = None) -> grpc.Channel:
        """The same as `channel`, for synchronous callers."""
        address = f"127.0.0.1:{self.port(port_env)}"
        if self.security is None:
            return grpc.insecure_channel(address)
        return grpc.secure_channel(address, self.security.credentials(token or self.security.operator_token()))

    def _ready(self, process: Process, port: int) -> bool:
        if not process.grpc_services:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False
        address = f"127.0.0.1:{port}"
        # Health is open: no token, only the CA.
        opened = (
            grpc.secure_channel(address, self.security.credentials())
            if self.security is not None
            else grpc.insecure_channel(address)
        )
        with opened as channel:
            try:
                answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.RpcError:
                return False
        return answer.status == health_pb2.HealthCheckResponse.SERVING

    def kill(self, name: str) -> None:
        """SIGKILL one process, as a crash would: no graceful shutdown, nothing flushed."""
        child = self.children[name]
        child.kill()
        child.wait(10)

    def port_env_of(self, name: str) -> str:
        """The port variable of one process ("events", "events-query", "dispatcher-2"), for
        `port` and `channel`: a replica's is the service's with a suffix of its own."""
        return next(port_env for found, _process, port_env in self._instances() if found == name)

    def restart(self, name: str) -> None:
        """Start a process (or one replica of it, "dispatcher-2") again on its own ports."""
        name, process, port_env = next(instance for instance in self._instances() if instance[0] == name)
        env = self._process_env(name, process, port_env)
        self._spawn(name, [sys.executable, "-m", process.module], env)
        deadline = time.monotonic() + 60
        while not self._ready(process, self.port(port_env)):
            if time.monotonic() > deadline or self.children[name].poll() is not None:
                raise RuntimeError(f"{name} did not come back")
            time.sleep(0.1)

    def dead_children(self) -> list[str]:
        return [name for name, child in self.children.items() if child.poll() is not None]

    def stop_nats(self) -> None:
        """Stop the suite's own NATS server (every node of a cluster); its JetStream store stays
        for `start_nats`."""
        self._own_nats().stop()

    def start_nats(self) -> None:
        """Start the suite's NATS server again: same ports, same store, so the same streams."""
        self._own_nats().start()

    def nats_cluster(self) -> EmbeddedNatsCluster:
        """The suite's own NATS cluster, to crash and start one node of it."""
        own = self._own_nats()
        if not isinstance(own, EmbeddedNatsCluster):
            raise RuntimeError("NATS is a single server here (DRIPIQ_NATS_CLUSTER is not set)")
        return own

    def stop_postgres(self) -> None:
        """Stop the suite's own PostgreSQL (a fast shutdown); its data stays for `start_postgres`."""
        self._own_postgres().stop()

    def start_postgres(self) -> None:
        """Start the suite's PostgreSQL again on the same port from the same data folder."""
        self._own_postgres().start()

    def _own_nats(self) -> EmbeddedNats | EmbeddedNatsCluster:
        if self.nats is None:
            raise RuntimeError("NATS is not the suite's own (NATS_URL names another server)")
        return self.nats

    def _own_postgres(self) -> EmbeddedPostgres:
        if self.postgres is None:
            raise RuntimeError("PostgreSQL is not the suite's own (DATABASE_URL names another server)")
        return self.postgres

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM every process, wait for their graceful shutdown, then the servers."""
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if self.nats:
            self.nats.stop()
        if self.postgres:
            self.postgres.close()
