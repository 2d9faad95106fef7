"""Container images, checked without a Docker engine.

Every process is a build target of deploy/docker/Dockerfile: slim Python of the lock's minor
version, a non-root user, an exec-form entry point running the process's module, and a venv
holding exactly what uv.lock pins for its package, without the dev group.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import takewhile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
UV = ROOT / ".tools" / "bin" / "uv"
VENV = "/opt/venv"
LOCK = tomllib.loads((ROOT / "uv.lock").read_text())
COMMON_DEPS = ("grpcio", "protobuf", "sqlalchemy", "asyncpg", "nats-py", "structlog")


@dataclass(frozen=True)
class Process:
    name: str
    package: str
    module: str
    key_deps: tuple[str, ...]


PROCESSES = [
    Process("planner", "dripiq-planner", "dripiq_planner", (*COMMON_DEPS, "openai")),
    Process("dispatcher", "dripiq-dispatcher", "dripiq_dispatcher", (*COMMON_DEPS, "sendgrid")),
    Process("events", "dripiq-events", "dripiq_events", (*COMMON_DEPS, "sendgrid")),
    Process("edge", "dripiq-events", "dripiq_events.edge", (*COMMON_DEPS, "sendgrid")),
    Process("scheduler", "dripiq-scheduler", "dripiq_scheduler", COMMON_DEPS),
]
by_name = pytest.mark.parametrize("process", PROCESSES, ids=[p.name for p in PROCESSES])


@dataclass
class Stage:
    name: str
    base: str  # an image reference, or the name of an earlier stage
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def instructions(text: str) -> Iterator[tuple[str, str]]:
    """(KEYWORD, arguments) for each instruction, comments dropped and continued lines joined."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        yield keyword.upper(), args.strip()


def parse_stages(text: str) -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, args in instructions(text):
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", args, re.IGNORECASE)
            assert match, f"unreadable FROM {args}"
            current = Stage(name=match[2] or str(len(stages)), base=match[1])
            stages[current.name] = current
        elif current is not None:
            current.instructions.append((keyword, args))
    return stages


STAGES = parse_stages(DOCKERFILE.read_text())


def lineage(name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, the image's first layers first."""
    chain: list[Stage] = []
    while name in STAGES:
        chain.insert(0, STAGES[name])
        name = STAGES[name].base
    return chain


def copy_sources(stage: Stage) -> list[str]:
    return [m[1] for args in stage.args("COPY") if (m := re.search(r"--from=(\S+)", args))]


def stages_behind(name: str) -> set[str]:
    """The stage and every stage it is built from or copies from."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        stage = STAGES.get(todo.pop())
        if stage is None or stage.name in seen:
            continue
        seen.add(stage.name)
        todo += [stage.base, *copy_sources(stage)]
    return seen


def environment(chain: list[Stage]) -> dict[str, str]:
    env: dict[str, str] = {}
    for stage in chain:
        for args in stage.args("ENV"):
            words = shlex.split(args)
            if "=" in words[0]:
                env.update(word.split("=", 1) for word in words)
            else:
                env[words[0]] = " ".join(words[1:])
    return env


def exec_form(keyword: str, args: str) -> list[str]:
    try:
        command = json.loads(args)
    except json.JSONDecodeError:
        command = None
    shell_form = not (isinstance(command, list) and all(isinstance(word, str) for word in command))
    assert not shell_form, f"{keyword} {args} is shell form: a shell would be PID 1 and keep SIGTERM from Python"
    return command


def command_of(name: str) -> list[str]:
    """ENTRYPOINT followed by CMD, as the image would run them."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    for stage in lineage(name):
        if own := stage.args("ENTRYPOINT"):
            # A new ENTRYPOINT drops the CMD inherited from the stage below.
            entrypoint, cmd = exec_form("ENTRYPOINT", own[-1]), []
        if own := stage.args("CMD"):
            cmd = exec_form("CMD", own[-1])
    return entrypoint + cmd


def venv_stage(process: Process) -> Stage:
    (source,) = {source for stage in lineage(process.name) for source in copy_sources(stage)}
    return STAGES[source]


def sync_flags(stage: Stage) -> list[str]:
    """The flags of the one `uv sync` that builds the stage's venv."""
    found = []
    for ancestor in lineage(stage.name):
        for args in ancestor.args("RUN"):
            words = shlex.split(args)
            for i in range(len(words) - 1):
                if words[i : i + 2] == ["uv", "sync"]:
                    found.append(list(takewhile(lambda word: word not in {"&&", "||", ";"}, words[i + 2 :])))
    assert len(found) == 1, f"stage {stage.name} runs `uv sync` {len(found)} times"
    return found[0]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions() -> dict[str, set[str]]:
    versions: dict[str, set[str]] = {}
    for package in LOCK["package"]:
        versions.setdefault(normalize(package["name"]), set()).add(package["version"])
    return versions


def workspace_paths() -> dict[str, str]:
    """Workspace member path -> package name, as the lock records them."""
    return {p["source"]["editable"]: p["name"] for p in LOCK["package"] if "editable" in p["source"]}


def dev_dependencies() -> set[str]:
    (root,) = [p for p in LOCK["package"] if "virtual" in p["source"]]
    return {normalize(dep["name"]) for group in root["dev-dependencies"].values() for dep in group}


@by_name
def test_every_stage_builds_on_slim_python_of_the_locked_minor(process: Process) -> None:
    assert process.name in STAGES, f"the Dockerfile has no build target {process.name}"
    minor = re.search(r"3\.\d+", LOCK["requires-python"])[0]
    slim = re.compile(rf"python:{re.escape(minor)}(\.\d+)?-slim(-[a-z]+)?(@sha256:[0-9a-f]{{64}})?")
    for name in stages_behind(process.name):
        base = STAGES[name].base
        if base not in STAGES:
            assert slim.fullmatch(base), f"stage {name} starts FROM {base}, not python:{minor}-slim"


@by_name
def test_the_process_runs_as_a_numeric_non_root_user(process: Process) -> None:
    users = [user for stage in lineage(process.name) for user in stage.args("USER")]
    assert users, f"{process.name} runs as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, f"{process.name}: USER {users[-1]}"
    assert not gid or gid.isdigit(), f"{process.name}: USER {users[-1]}"


@by_name
def test_the_entry_point_runs_the_process_module_with_the_venv_python(process: Process) -> None:
    assert command_of(process.name)[:3] == [f"{VENV}/bin/python", "-m", process.module]
    assert environment(lineage(process.name)).get("PYTHONUNBUFFERED") == "1"


@by_name
def test_the_module_is_the_process_own(process: Process) -> None:
    spec = importlib.util.find_spec(f"{process.module}.__main__")
    assert spec is not None and spec.origin, f"python -m {process.module} has no __main__"
    member = {name: path for path, name in workspace_paths().items()}[process.package]
    assert Path(spec.origin).is_relative_to(ROOT / member / "src"), f"{spec.origin} is not from {member}"


@by_name
def test_the_runtime_holds_the_venv_and_nothing_that_builds(process: Process) -> None:
    for stage in lineage(process.name):
        assert not stage.args("ADD"), f"stage {stage.name} ADDs files"
        for args in stage.args("COPY"):
            assert re.fullmatch(rf"--from=\S+\s+{VENV}\s+{VENV}", args), f"stage {stage.name}: COPY {args}"
        for args in stage.args("RUN"):
            assert not re.search(r"\b(pip|uv|apt-get|apt|gcc|make)\b", args), f"stage {stage.name}: RUN {args}"
    venv = venv_stage(process)
    assert environment(lineage(venv.name)).get("UV_PROJECT_ENVIRONMENT") == VENV, f"{venv.name} builds no {VENV}"


@by_name
def test_the_venv_holds_what_the_lock_pins_without_the_dev_group(process: Process) -> None:
    flags = sync_flags(venv_stage(process))
    assert {"--frozen", "--locked"} & set(flags), f"uv sync {' '.join(flags)} may change the lock"
    assert "--no-dev" in flags
    assert "--no-editable" in flags, "an editable install would point into the builder's sources"
    assert flags[flags.index("--package") + 1] == process.package
    result = subprocess.run(
        [UV, "export", *flags, "--no-hashes", "--no-header", "--no-annotate"],
        cwd=ROOT,
        env={**os.environ, "UV_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr

    pinned: dict[str, str] = {}
    members: set[str] = set()
    for line in result.stdout.splitlines():
        requirement = line.split(";")[0].strip()
        if requirement.startswith("./"):
            members.add(workspace_paths()[requirement.removeprefix("./")])
        elif requirement:
            name, pin, version = requirement.partition("==")
            assert pin, f"{requirement} is not pinned with =="
            pinned[normalize(name)] = version

    locked = locked_versions()
    unlocked = {name: version for name, version in pinned.items() if version not in locked.get(name, set())}
    assert not unlocked, f"versions not in uv.lock: {unlocked}"
    assert members == {process.package, "dripiq-common"}
    missing = set(process.key_deps) - pinned.keys()
    assert not missing, f"runtime dependencies missing: {missing}"
    leaked = dev_dependencies() & pinned.keys()
    assert not leaked, f"dev dependencies in the image: {leaked}"


def test_make_images_builds_every_process_with_the_pinned_uv() -> None:
    makefile = (ROOT / "Makefile").read_text()
    images = re.search(r"^IMAGES := (.+)$", makefile, re.MULTILINE)[1].split()
    assert images == [p.name for p in PROCESSES]
    uv_version = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)[1]
    uv_args = [args for stage in STAGES.values() for args in stage.args("ARG") if args.startswith("UV_VERSION")]
    assert uv_args == [f"UV_VERSION={uv_version}"], "the images install another uv than the Makefile pins"
