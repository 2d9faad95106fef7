"""A private, throwaway redis-server on 127.0.0.1 for the peer benchmarks.

No persistence (`--save ""`, no AOF) and `noeviction`, so a queue that outgrows memory fails
loudly instead of silently losing timers. The project venv has no Redis client, so the few
commands needed here (PING, INFO, FLUSHALL) go over a plain socket in RESP.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

START_LIMIT_S = 10.0
STOP_LIMIT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _read_reply(f: io.BufferedReader) -> str:
    """One RESP reply as text; enough for status, error, integer and bulk string replies."""
    line = f.readline()
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind in (b"+", b":"):
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(f"redis: {rest.decode()}")
    if kind == b"$":
        size = int(rest)
        return "" if size < 0 else f.read(size + 2)[:size].decode()
    raise RuntimeError(f"unexpected redis reply {line!r}")


class RedisServer:
    """`with RedisServer(path) as r:` starts redis-server on a free port and stops it by its PID."""

    def __init__(self, executable: str = "redis-server") -> None:
        self.executable = executable
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="dripiq-bench-redis-"))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        self.port = free_port()
        # The port was free a moment ago; if another process took it, PING below fails and says so.
        self.proc = subprocess.Popen(
            [
                self.executable,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.dir),
                "--maxmemory-policy", "noeviction",
                "--daemonize", "no",
                "--logfile", str(self.dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_LIMIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if self.command("PING") == "PONG":
                    return self
            except OSError:
                time.sleep(0.05)
        log = (self.dir / "redis.log").read_text() if (self.dir / "redis.log").exists() else ""
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port}:\n{log[-2000:]}")

    def command(self, *args: str) -> str:
        payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(payload.encode())
            with s.makefile("rb") as f:
                return _read_reply(f)

    def info(self, section: str = "memory") -> dict[str, str]:
        lines = self.command("INFO", section).splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line and not line.startswith("#"))

    def flush(self) -> None:
        self.command("FLUSHALL", "SYNC")

    def rss_bytes(self) -> tuple[int, int]:
        """(current RSS, peak RSS) of the server process, from /proc (VmRSS, VmHWM)."""
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{self.pid}/status").read_text().splitlines() if ":" in line
        )
        kib = {k: int(fields[k].split()[0]) for k in ("VmRSS", "VmHWM")}
        return kib["VmRSS"] * 1024, kib["VmHWM"] * 1024

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_LIMIT_S)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_LIMIT_S)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
