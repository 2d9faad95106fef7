"""The suite can crash one of its processes and bring it back, and stop and start its own NATS
and PostgreSQL on the same ports from the same data, as the chaos benchmark does."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator

import pytest
from suites import running_suite

from dripiq_devtools.servers import pg_bin
from dripiq_devtools.suite import Suite


@pytest.fixture(scope="module")
def suite() -> Iterator[Suite]:
    with running_suite(
        "restarts",
        fake_auto_events_delay=0,
    ) as running:
        yield running


def psql(suite: Suite, query: str) -> str:
    done = subprocess.run(
        [pg_bin("psql"), suite.env["DATABASE_URL"], "-tAc", query], capture_output=True, text=True, timeout=30
    )
    return done.stdout.strip() if done.returncode == 0 else f"error: {done.stderr.strip()}"


def stream_names(suite: Suite) -> set[str]:
    assert suite.nats is not None
    url = f"http://127.0.0.1:{suite.nats.monitor_port}/jsz?streams=true"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    return {
        stream["name"] for account in body.get("account_details", []) for stream in account.get("stream_detail", [])
    }


def test_a_killed_process_comes_back_as_a_new_process(suite: Suite) -> None:
    before = suite.children["edge"].pid
    suite.kill("edge")
    assert "edge" in suite.dead_children()
    suite.restart("edge")
    assert suite.children["edge"].pid != before
    assert "edge" not in suite.dead_children()


def test_nats_comes_back_on_its_port_with_its_streams(suite: Suite) -> None:
    streams = stream_names(suite)
    assert streams, "the processes declared their streams at start-up"
    assert suite.nats is not None
    url = suite.nats.url
    suite.stop_nats()
    assert suite.nats.process is not None and suite.nats.process.poll() is not None
    suite.start_nats()
    assert suite.nats.url == url
    assert stream_names(suite) == streams


def test_postgres_comes_back_on_its_port_with_its_data(suite: Suite) -> None:
    psql(suite, "CREATE TABLE public.restart_probe (n int); INSERT INTO public.restart_probe VALUES (7)")
    suite.stop_postgres()
    assert psql(suite, "SELECT 1").startswith("error")
    suite.start_postgres()
    assert psql(suite, "SELECT n FROM public.restart_probe") == "7"
