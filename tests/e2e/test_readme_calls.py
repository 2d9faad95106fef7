"""Every grpcurl call the README shows, made with grpcurl against the running suite.

An operator copies these at 3 a.m.: each request body must be one grpcurl can read (it does not
take a FieldMask as the JSON string form, for one), and each call must get a domain answer from
the service, never a failure of the service itself. The calls run for a tenant of their own, so
what they change touches no other test.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from dripiq_devtools.suite import Suite

README = Path(__file__).resolve().parents[2] / "README.md"
TENANT = "t-readme"
PORT_SETTING = {
    "50051": "PLANNER_GRPC_PORT",
    "50052": "DISPATCHER_GRPC_PORT",
    "50053": "EVENTS_GRPC_PORT",
    "50054": "SCHEDULER_GRPC_PORT",
}
# What grpcurl prints when it cannot build the request from -d, and answers that are the
# service failing rather than answering.
UNREADABLE = ("error getting request data", "bad input")
FAILED = ("Code: Internal", "Code: Unknown", "Code: DeadlineExceeded", "Code: Unimplemented")


@dataclass(frozen=True)
class Call:
    line: int
    body: str
    port: str
    method: str


def readme_calls() -> list[Call]:
    """The grpcurl calls with a request body in the README's shell blocks: a command goes on
    while its line ends with a backslash or a quote is still open."""
    calls = []
    in_block = False
    pending: list[str] = []
    for number, line in enumerate(README.read_text().splitlines(), start=1):
        if line.startswith("```"):
            in_block, pending = line.strip() == "```sh", []
            continue
        if not in_block:
            continue
        pending.append(line.removesuffix("\\"))
        if line.endswith("\\"):
            continue
        try:
            words = shlex.split("\n".join(pending), comments=True)
        except ValueError:  # a quote still open: the body goes on to the next line
            continue
        first, pending = number - len(pending) + 1, []
        if not words or words[0] != "grpcurl" or "-d" not in words:
            continue
        address = next(w for w in words if re.fullmatch(r"127\.0\.0\.1:\d+", w))
        method = next(w for w in words if re.fullmatch(r"dripiq\.[a-z]+\.v1\.\w+/\w+", w))
        calls.append(Call(first, words[words.index("-d") + 1], address.split(":")[1], method))
    return calls


CALLS = readme_calls()


def test_the_readme_shows_calls_with_bodies() -> None:
    # A parser that found nothing would pass every test below.
    assert len(CALLS) >= 20
    assert {call.port for call in CALLS} <= set(PORT_SETTING)


@pytest.mark.parametrize("call", CALLS, ids=[f"README:{c.line}:{c.method.split('/')[1]}" for c in CALLS])
def test_a_readme_call_is_read_by_grpcurl_and_answered(suite: Suite, call: Call) -> None:
    assert suite.security is not None
    grpcurl = Path(sys.executable).parent / "grpcurl"
    token = (suite.run_dir / "dev-token").read_text().strip()
    body = call.body.replace('"acme"', f'"{TENANT}"')
    answer = subprocess.run(
        [
            str(grpcurl),
            "-cacert",
            str(suite.security.ca.path),
            "-H",
            f"authorization: Bearer {token}",
            "-d",
            body,
            f"127.0.0.1:{suite.port(PORT_SETTING[call.port])}",
            call.method,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = answer.stdout + answer.stderr
    assert not any(text in said for text in UNREADABLE), said
    assert not any(text in said for text in FAILED), said
