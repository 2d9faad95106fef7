"""Async SQLAlchemy 2 engine on asyncpg."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def async_url(url: str) -> str:
    """Accept the plain `postgresql://` URL users have and pick the asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must start with postgresql://")


def create_engine(url: str, *, pool_size: int = 10, application_name: str = "dripiq") -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        # A statement's parameters (addresses, names, message bodies) never reach a log or an
        # error message.
        hide_parameters=True,
        connect_args={"server_settings": {"application_name": application_name}},
    )
