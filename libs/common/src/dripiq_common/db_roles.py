"""Two PostgreSQL roles per service: the owner of its schema, which runs its migrations (DDL),
and the app role its processes connect as, with data rights on its own schema and nothing
else (no DDL, no other service's tables).

The owner role is named after the service (`planner`), the app role `<service>_app`. The
migration step grants the app role its rights every time it runs, including default privileges
so a table a later migration creates is covered. `create_service_roles` makes both roles on a
server of our own (`make run`, the tests); in Kubernetes the database operator manages them.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from dripiq_common.db import async_url


def owner_role(service: str) -> str:
    return service


def app_role(service: str) -> str:
    return f"{service}_app"


def role_url(database_url: str, role: str, password: str | None = None) -> str:
    """`database_url` with another user (and its password, or none for trust authentication)."""
    return make_url(database_url).set(username=role, password=password).render_as_string(hide_password=False)


def _grants(schema: str, app: str) -> list[str]:
    data = "SELECT, INSERT, UPDATE, DELETE"
    return [
        f'GRANT USAGE ON SCHEMA "{schema}" TO "{app}"',
        f'GRANT {data} ON ALL TABLES IN SCHEMA "{schema}" TO "{app}"',
        f'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{app}"',
        f'GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA "{schema}" TO "{app}"',
        # Objects the owner (the role running this) creates later: tables of later migrations,
        # the monthly partitions the events service's SECURITY DEFINER functions create.
        f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT {data} ON TABLES TO "{app}"',
        f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO "{app}"',
        f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT EXECUTE ON FUNCTIONS TO "{app}"',
    ]


async def grant_app_role(conn: AsyncConnection, schema: str, app: str) -> bool:
    """Grant `app` its rights on `schema`, when that role exists (a server without app roles,
    an old cluster, is left as it is); whether it did."""
    if not await conn.scalar(text("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :r)"), {"r": app}):
        return False
    for statement in _grants(schema, app):
        await conn.execute(text(statement))
    return True


def _ensure_role(role: str) -> str:
    return (
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "
        f'THEN CREATE ROLE "{role}" LOGIN; END IF; END $$'
    )


# Everything in a schema, handed to its owner: a server whose schema an earlier version created
# as the superuser (an existing `make run` cluster) moves over to the owner role.
_ADOPT = """
DO $$
DECLARE item record;
BEGIN
  EXECUTE format('ALTER SCHEMA %I OWNER TO %I', :'schema', :'owner');
  FOR item IN
    SELECT format('ALTER %s %I.%I OWNER TO %I',
                  CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END,
                  n.nspname, c.relname, :'owner') AS statement
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = :'schema' AND c.relkind IN ('r', 'p', 'S', 'v')
      AND pg_get_userbyid(c.relowner) <> :'owner'
      -- A serial or identity column's sequence follows its table.
      AND NOT (c.relkind = 'S' AND EXISTS (
        SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
  LOOP
    EXECUTE item.statement;
  END LOOP;
END $$
"""


async def create_service_roles(admin_url: str, service: str, schema: str | None = None) -> None:
    """As a superuser: the service's owner and app roles (login, no password: a local server
    with trust authentication), its schema owned by the owner, and the database open to both."""
    schema = schema or service
    owner, app = owner_role(service), app_role(service)
    database = make_url(admin_url).database
    engine = create_async_engine(async_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(_ensure_role(owner)))
            await conn.execute(text(_ensure_role(app)))
            await conn.execute(text(f'GRANT CONNECT, CREATE ON DATABASE "{database}" TO "{owner}"'))
            await conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO "{app}"'))
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}" AUTHORIZATION "{owner}"'))
            adopt = _ADOPT.replace(":'schema'", f"'{schema}'").replace(":'owner'", f"'{owner}'")
            await conn.execute(text(adopt))
    finally:
        await engine.dispose()
