"""Migrations on a PostgreSQL container, when a Docker engine answers; skipped cleanly otherwise."""

from __future__ import annotations

import pytest

from dripiq_common import migrations


def docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


@pytest.mark.skipif(not docker_answers(), reason="no Docker engine answers on this machine")
def test_migrations_apply_on_a_postgres_container() -> None:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver=None) as pg:
        url = pg.get_connection_url()
        for service in migrations.SERVICES:
            migrations.upgrade(service, url)
