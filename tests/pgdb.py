"""Throw-away PostgreSQL databases for the tests of the PostgreSQL store.

The server is the one at ``TIDINGS_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``: trust authentication, as on the project's
machines and in CI, whose ``.ci/run`` starts it). Each database is created here with a unique
name and dropped after its tests. Without a server the tests that need one skip, saying why;
with ``TIDINGS_REQUIRE_POSTGRES=1`` (CI) they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

#: The maintenance database the tests connect to in order to create and drop theirs.
ADMIN_URL = os.environ.get("TIDINGS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")

#: Every table of the PostgreSQL store's schema, emptied between tests that share a database.
TABLES = (
    "accounts",
    "devices",
    "link_codes",
    "inbox",
    "sent",
    "contacts",
    "shared_bodies",
    "prekey_owners",
    "one_time_prekeys",
    "push_subscriptions",
    "device_cards",
    "access_keys",
    "sealed_tags",
)


def url_of(database: str) -> str:
    """The URL of ``database`` on the test server."""
    parts = urlsplit(ADMIN_URL)
    return urlunsplit(parts._replace(path=f"/{database}"))


def unavailable(reason: str) -> None:
    """Skip (or, with ``TIDINGS_REQUIRE_POSTGRES=1``, fail) for want of a server."""
    message = f"PostgreSQL is not reachable at {ADMIN_URL}: {reason}"
    if os.environ.get("TIDINGS_REQUIRE_POSTGRES") == "1":
        pytest.fail(message + " (TIDINGS_REQUIRE_POSTGRES=1)")
    pytest.skip(message + " (start it, or set TIDINGS_TEST_POSTGRES)")


async def create_database(prefix: str = "tidings_test") -> str:
    """Create an empty database with a unique name; return its name (skips without a server)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(ADMIN_URL, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        unavailable(str(exc) or type(exc).__name__)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_database(name: str) -> None:
    """Drop ``name``, closing what is still connected to it."""
    conn = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def truncate(url: str) -> None:
    """Empty every table of the store's schema in the database at ``url``."""
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(f"TRUNCATE {', '.join(TABLES)}")
    finally:
        await conn.close()


def create_database_sync(prefix: str = "tidings_test") -> str:
    """:func:`create_database` outside an event loop (session fixtures)."""
    return asyncio.run(create_database(prefix))


def drop_database_sync(name: str) -> None:
    """:func:`drop_database` outside an event loop."""
    asyncio.run(drop_database(name))


class Proxy:
    """A TCP relay to the test server that can go down and come back on the same port: the
    database as the store sees it when its host or network fails."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.links):
            writer.transport.abort()
        await self.server.wait_closed()

    def url(self, url: str) -> str:
        """``url`` through this proxy (call after :meth:`start`)."""
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{self.port}"))

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = urlsplit(ADMIN_URL)
        up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port or 5432)
        self.links.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(1 << 16):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
