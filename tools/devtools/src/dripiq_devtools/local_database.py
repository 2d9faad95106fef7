"""A database of our own (`make run`, the tests) set up as in production: each service's owner
and app roles (dripiq_common.db_roles), its migrations run as the owner, its processes
connected as the app role."""

from __future__ import annotations

import asyncio

from dripiq_common import migrations
from dripiq_common.db_roles import app_role, create_service_roles, owner_role, role_url


def migrate_as_owners(admin_url: str) -> dict[str, str]:
    """Roles and migrations for every service, as the superuser of `admin_url`; the URL each
    service's processes connect with."""
    urls = {}
    for service in migrations.SERVICES:
        asyncio.run(create_service_roles(admin_url, service))
        migrations.upgrade(service, role_url(admin_url, owner_role(service)))
        urls[service] = role_url(admin_url, app_role(service))
    return urls
