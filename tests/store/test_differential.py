"""SQLiteStore, PostgresStore and MemoryStore give the same answers to the same random operations.

Operations run in groups through ``asyncio.gather``: every backend runs a group in task order
(SQLite and PostgreSQL in one or a few transactions, one savepoint each), so the answers must
match one for one — results, refusals and error messages alike — and so must the state after
every group.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import pgdb
from tests.store.conftest import PgDatabases
from tests.store.helpers import NOW, key, message_id
from tidings.store import (
    DeviceRef,
    MemoryStore,
    PostgresStore,
    SealedSubmission,
    SQLiteStore,
    Store,
    Submission,
)

ACCOUNTS = ["a", "b", "c"]  # "c" is never created by the setup: sends to it are refused
DEVICES = [DeviceRef(account, n) for account in ACCOUNTS for n in (1, 2, 3)]


@dataclass(frozen=True)
class Send:
    sender: DeviceRef
    recipient: str
    exact: bool  #: target the current device set (else ``targets``)
    targets: tuple[DeviceRef, ...]
    mid: int
    expires: int
    max_queue: int


@dataclass(frozen=True)
class Ack:
    device: DeviceRef
    up_to: int


@dataclass(frozen=True)
class Expire:
    at: int
    limit: int


@dataclass(frozen=True)
class PutCode:
    by: DeviceRef
    code: int
    expires: int


@dataclass(frozen=True)
class AddDevice:
    account: str
    code: int
    key: int


@dataclass(frozen=True)
class Create:
    account: str
    key: int


@dataclass(frozen=True)
class SetKey:
    device: DeviceRef
    key: int


@dataclass(frozen=True)
class Sealed:
    recipient: str
    exact: bool  #: target the recipient's current devices (else ``targets``)
    targets: tuple[DeviceRef, ...]
    tag: int
    key: int  #: the access key it presents (``SetKey``'s are 0..1)
    expires: int
    max_queue: int
    share: int | None


Op = Send | Ack | Expire | PutCode | AddDevice | Create | SetKey | Sealed
TAGS = range(4)
_device = st.sampled_from(DEVICES)
_op: st.SearchStrategy[Op] = st.one_of(
    st.builds(
        Send,
        _device,
        st.sampled_from(ACCOUNTS),
        st.integers(0, 3).map(bool),  # mostly the exact device set, so most sends are stored
        st.lists(_device, max_size=3).map(tuple),
        st.integers(0, 20),
        st.integers(1, 4),
        st.sampled_from([2, 3, 100]),
    ),
    st.builds(Ack, _device, st.integers(0, 8)),
    st.builds(Expire, st.integers(0, 5), st.integers(1, 4)),
    st.builds(PutCode, _device, st.integers(0, 2), st.integers(1, 4)),
    st.builds(AddDevice, st.sampled_from(ACCOUNTS), st.integers(0, 2), st.integers(0, 6)),
    st.builds(Create, st.sampled_from(ACCOUNTS), st.integers(0, 6)),
    st.builds(SetKey, _device, st.integers(0, 1)),
    st.builds(
        Sealed,
        st.sampled_from(ACCOUNTS),
        st.integers(0, 3).map(bool),
        st.lists(_device, max_size=3).map(tuple),
        st.sampled_from(TAGS),
        st.integers(0, 2),
        st.integers(1, 4),
        st.sampled_from([2, 3, 100]),
        st.sampled_from([None, 1, 2]),
    ),
)


async def targets(store: Store, op: Send | Sealed) -> tuple[DeviceRef, ...]:
    if not op.exact:
        return op.targets
    if isinstance(op, Sealed):
        return tuple(d.ref for d in await store.devices(op.recipient))
    accounts = {op.recipient, op.sender.account}
    current = [d.ref for account in sorted(accounts) for d in await store.devices(account)]
    return tuple(ref for ref in current if ref != op.sender)


def call(store: Store, op: Op, resolved: tuple[DeviceRef, ...]) -> Awaitable[object]:
    if isinstance(op, Send):
        sub = Submission(
            op.sender,
            message_id(op.mid),
            op.recipient,
            tuple((ref, f"{op.mid}>{ref}".encode()) for ref in resolved),
            NOW,
            NOW + op.expires,
            op.max_queue,
        )
        return store.submit(sub)
    if isinstance(op, Sealed):
        sealed = SealedSubmission(
            bytes([op.tag]) * 16,
            op.recipient,
            bytes([op.key]) * 16,
            tuple((ref, f"sealed {op.tag}>{ref}".encode()) for ref in resolved),
            NOW,
            NOW + op.expires,
            op.max_queue,
            op.share,
        )
        return store.submit_sealed(sealed)
    if isinstance(op, SetKey):
        return store.put_access_key(op.device, bytes([op.key]) * 16)
    if isinstance(op, Ack):
        return store.ack(op.device, op.up_to)
    if isinstance(op, Expire):
        return store.expire(NOW + op.at, NOW + op.at + 2, op.limit)
    if isinstance(op, PutCode):
        return store.put_link_code(op.by, bytes([op.code]) * 32, NOW + op.expires, NOW)
    if isinstance(op, AddDevice):
        return store.add_device(op.account, key(f"k{op.key}"), "linked", bytes([op.code]) * 32, NOW)
    return store.create_account(op.account, key(f"k{op.key}"), op.account, NOW)


def outcome(result: object) -> object:
    if isinstance(result, Exception):
        return (type(result).__name__, str(result))
    return result


async def snapshot(store: Store) -> list[object]:
    state: list[object] = [await store.total_queued()]
    for account in ACCOUNTS:
        state.append(await store.devices(account))
    for ref in DEVICES:
        state.append((await store.last_seq(ref), await store.queue_depth(ref)))
        state.append(await store.fetch(ref, 0, 100))
    state.append(await store.tag_states([bytes([tag]) * 16 for tag in TAGS]))
    return state


async def run(groups: list[list[Op]], other: Store) -> None:
    memory = MemoryStore()
    stores: list[Store] = [memory, other]
    for store in stores:
        await store.open()
        await store.create_account("a", key("a"), "a", NOW)
        await store.create_account("b", key("b"), "b", NOW)
    try:
        for group in groups:
            resolved = [
                await targets(memory, op) if isinstance(op, Send | Sealed) else () for op in group
            ]
            answers = []
            for store in stores:
                calls = [call(store, op, refs) for op, refs in zip(group, resolved, strict=True)]
                answers.append(
                    [outcome(r) for r in await asyncio.gather(*calls, return_exceptions=True)]
                )
            assert answers[0] == answers[1], group
            assert await snapshot(memory) == await snapshot(other)
    finally:
        for store in stores:
            await store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_op, min_size=1, max_size=8), min_size=1, max_size=8))
async def test_sqlite_answers_like_memory(groups: list[list[Op]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await run(groups, SQLiteStore(Path(tmp) / "s.db", max_batch=4))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_op, min_size=1, max_size=8), min_size=1, max_size=8))
async def test_postgres_answers_like_memory(
    pg_databases: PgDatabases, groups: list[list[Op]]
) -> None:
    url = await pg_databases.shared_url()
    store = PostgresStore(url, max_batch=4)
    await store.open()  # creates the schema in a new database: TRUNCATE needs its tables
    await store.close()
    await pgdb.truncate(url)
    await run(groups, PostgresStore(url, max_batch=4))
