"""`make test` with DRIPIQ_TEST_SERVERS: a value it does not know, or containers without a Docker
engine, stops the run before any test with one line; tests that need no servers still run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_pytest(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # A home of its own: no ~/.testcontainers.properties or docker context names another engine.
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=REPO,
        env={**os.environ, "HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_containers_without_an_engine_stop_the_run_with_one_line(tmp_path: Path):
    socket = f"unix://{tmp_path}/no-engine.sock"
    done = run_pytest(tmp_path, "tests/integration/events", DRIPIQ_TEST_SERVERS="containers", DOCKER_HOST=socket)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.strip()]
    assert line.startswith(f"ERROR: DRIPIQ_TEST_SERVERS=containers: no Docker engine answers (DOCKER_HOST={socket})")
    assert line.endswith("unset DRIPIQ_TEST_SERVERS to use the embedded servers")
    assert "no tests ran" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_an_unknown_value_stops_the_run_naming_the_allowed_ones(tmp_path: Path):
    done = run_pytest(tmp_path, "tests/unit/test_token_keys.py", DRIPIQ_TEST_SERVERS="bogus")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert [line for line in done.stderr.splitlines() if line.strip()] == [
        "ERROR: DRIPIQ_TEST_SERVERS='bogus' is not a server source: use embedded or containers (unset means embedded)"
    ]


def test_tests_without_servers_run_whatever_the_source(tmp_path: Path):
    done = run_pytest(
        tmp_path,
        "tests/unit/test_token_keys.py",
        DRIPIQ_TEST_SERVERS="containers",
        DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock",
    )
    assert done.returncode == pytest.ExitCode.OK, done.stdout + done.stderr
    assert " passed" in done.stdout
