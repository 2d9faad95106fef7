"""DRIPIQ_TEST_SERVERS: which servers the tests get, and the one line that says when containers
cannot come. No Docker engine is reached: the engine's answer is given to the check."""

from __future__ import annotations

import pytest
from docker.errors import DockerException

from dripiq_devtools import containers
from dripiq_devtools.server_source import ServerSource, engine_problem
from dripiq_devtools.servers import SetupError

NO_SOCKET = DockerException(
    "Error while fetching server API version: ('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))"
)


def refused(_host: str | None) -> None:
    raise NO_SOCKET


def answered(_host: str | None) -> bool:
    return True


@pytest.mark.parametrize(
    ("environ", "source"),
    [
        ({}, ServerSource.EMBEDDED),
        ({"DRIPIQ_TEST_SERVERS": ""}, ServerSource.EMBEDDED),
        ({"DRIPIQ_TEST_SERVERS": "embedded"}, ServerSource.EMBEDDED),
        ({"DRIPIQ_TEST_SERVERS": "containers"}, ServerSource.CONTAINERS),
    ],
)
def test_the_variable_picks_the_source(environ, source):
    assert ServerSource.from_environment(environ) is source


@pytest.mark.parametrize("value", ["bogus", "Containers", "docker", " containers"])
def test_any_other_value_is_an_error_naming_the_variable_and_the_allowed_values(value):
    with pytest.raises(SetupError) as raised:
        ServerSource.from_environment({"DRIPIQ_TEST_SERVERS": value})
    message = str(raised.value)
    assert message.startswith(f"DRIPIQ_TEST_SERVERS={value!r} ")
    assert "embedded" in message and "containers" in message
    assert "\n" not in message


def test_no_engine_is_one_line_naming_the_engine_and_the_way_out():
    problem = containers.docker_engine_problem("tcp://127.0.0.1:2375", ping=refused)
    assert problem is not None
    assert problem.splitlines() == [problem]
    assert problem.startswith(
        "DRIPIQ_TEST_SERVERS=containers: no Docker engine answers (DOCKER_HOST=tcp://127.0.0.1:2375)"
    )
    assert "FileNotFoundError" in problem, "the engine's own words say why"
    assert problem.endswith("unset DRIPIQ_TEST_SERVERS to use the embedded servers")


def test_without_docker_host_the_line_names_the_default_socket():
    problem = containers.docker_engine_problem(None, ping=refused)
    assert problem is not None
    assert "(DOCKER_HOST=unset, so unix:///var/run/docker.sock)" in problem


def test_a_reason_over_several_lines_still_makes_one_line():
    def garrulous(_host: str | None) -> None:
        raise OSError("connection refused\n\nwhile talking to\n  the engine")

    problem = containers.docker_engine_problem("unix:///nowhere.sock", ping=garrulous)
    assert problem is not None and "\n" not in problem
    assert "connection refused while talking to the engine" in problem


def test_an_engine_that_answers_is_no_problem():
    assert containers.docker_engine_problem("unix:///var/run/docker.sock", ping=answered) is None


def test_embedded_servers_never_ask_for_an_engine(monkeypatch):
    def unexpected(_host: str | None) -> None:
        raise AssertionError("the embedded servers asked for a Docker engine")

    monkeypatch.setattr(containers, "ping_engine", unexpected)
    assert engine_problem(ServerSource.EMBEDDED) is None


def test_containers_ask_the_engine_testcontainers_will_use(monkeypatch):
    asked = []

    def ping(host: str | None) -> None:
        asked.append(host)
        raise NO_SOCKET

    monkeypatch.setattr(containers, "engine_host", lambda: "ssh://builder@example.invalid")
    monkeypatch.setattr(containers, "ping_engine", ping)
    problem = engine_problem(ServerSource.CONTAINERS)
    assert asked == ["ssh://builder@example.invalid"]
    assert problem is not None and "(DOCKER_HOST=ssh://builder@example.invalid)" in problem
