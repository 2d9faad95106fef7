"""Install the peers the scheduler benchmark compares against, idempotently.

Nothing here touches the project's locked environment: redis-server comes from Debian,
BullMQ goes into bench/peers/node/node_modules (pinned in node/package.json and its lock),
arq into its own virtual environment bench/peers/.venv-arq. Each step is skipped when the
pinned version is already there, so a benchmark can call `install_all()` on every run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PEERS_DIR = Path(__file__).resolve().parent
NODE_DIR = PEERS_DIR / "node"
ARQ_VENV = PEERS_DIR / ".venv-arq"
ARQ_VERSION = "0.28.0"  # newest on PyPI when this was written (`pip index versions arq`)
# Every step has a ceiling, so a stuck registry fails the benchmark instead of hanging it.
INSTALL_TIMEOUT_S = 600


@dataclass(frozen=True)
class Peers:
    redis_server: str
    redis_version: str
    node: str
    bullmq_version: str
    arq_python: str
    arq_version: str


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # No prompts (apt's debconf included): an install step either works unattended or fails.
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
    )


def _check(cmd: list[str], cwd: Path | None = None) -> str:
    done = _run(cmd, cwd)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def ensure_redis() -> tuple[str, str]:
    """(path, version) of redis-server; apt-get installs it when it is missing."""
    path = shutil.which("redis-server")
    if path is None:
        install = ["apt-get", "install", "-y", "--no-install-recommends", "redis-server"]
        # A fresh machine may have no package lists yet: update once, then try again.
        if _run(install).returncode != 0:
            _check(["apt-get", "update"])
            _check(install)
        path = shutil.which("redis-server")
        if path is None:
            raise RuntimeError("redis-server still missing after apt-get install")
    # "Redis server v=7.0.15 sha=..." -> "7.0.15"
    version = _check([path, "--version"]).split("v=", 1)[1].split()[0]
    return path, version


def _installed_bullmq() -> str | None:
    manifest = NODE_DIR / "node_modules" / "bullmq" / "package.json"
    if not manifest.exists():
        return None
    return str(json.loads(manifest.read_text())["version"])


def ensure_bullmq() -> tuple[str, str]:
    """(node path, bullmq version) with bullmq installed into bench/peers/node."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("node and npm are needed for the BullMQ peer (Debian: apt-get install nodejs npm)")
    wanted = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]["bullmq"]
    if _installed_bullmq() != wanted:
        # Installs what package.json pins, reproducibly through package-lock.json when it exists.
        _check([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR)
    installed = _installed_bullmq()
    if installed is None or installed != wanted:
        raise RuntimeError(f"bullmq {installed} installed, {wanted} wanted")
    return node, installed


def ensure_arq() -> tuple[str, str]:
    """(python of .venv-arq, arq version); the venv is made and filled when needed."""
    python = ARQ_VENV / "bin" / "python"
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('arq'))"]
    if python.exists() and _run(probe).stdout.strip() == ARQ_VERSION:
        return str(python), ARQ_VERSION
    base = shutil.which("python3.11") or sys.executable
    _check([base, "-m", "venv", "--clear", str(ARQ_VENV)])
    _check([str(python), "-m", "pip", "install", "--quiet", f"arq=={ARQ_VERSION}"])
    version = _check(probe).strip()
    if version != ARQ_VERSION:
        raise RuntimeError(f"arq {version} installed, {ARQ_VERSION} wanted")
    return str(python), version


def install_all() -> Peers:
    redis_server, redis_version = ensure_redis()
    node, bullmq_version = ensure_bullmq()
    arq_python, arq_version = ensure_arq()
    return Peers(redis_server, redis_version, node, bullmq_version, arq_python, arq_version)


if __name__ == "__main__":
    print(install_all())
