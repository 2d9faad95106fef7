"""Async SQLAlchemy 2 engine on asyncpg."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def async_url(url: str) -> str:
    """Accept the plain `postgresql://` URL users have and pick the asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must start with postgresql://")


def connect_args(*, application_name: str, sslmode: str = "") -> dict[str, Any]:
    """asyncpg's connection arguments: the application name PostgreSQL shows, and the TLS mode
    (libpq's names: disable, prefer, require, verify-ca, verify-full; the CA file from
    PGSSLROOTCERT, as libpq reads it). Empty leaves asyncpg's default (prefer)."""
    args: dict[str, Any] = {"server_settings": {"application_name": application_name}}
    if sslmode:
        args["ssl"] = sslmode
    return args


def create_engine(url: str, *, pool_size: int = 10, application_name: str = "dripiq", sslmode: str = "") -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        # A statement's parameters (addresses, names, message bodies) never reach a log or an
        # error message.
        hide_parameters=True,
        connect_args=connect_args(application_name=application_name, sslmode=sslmode),
    )
