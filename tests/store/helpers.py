"""Builders shared by the store tests: accounts with devices, sends, deterministic keys."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator

import pytest

from tidings.errors import IntegrityError, Rule
from tidings.store import Device, DeviceRef, Store, Submission

NOW = 1_000_000.0
DAY = 86_400.0
RETENTION = 30 * DAY


def key(label: str) -> bytes:
    """A deterministic 32-byte Noise key for ``label``."""
    return hashlib.sha256(b"key:" + label.encode()).digest()


def message_id(n: int, tag: str = "") -> bytes:
    """A deterministic 16-byte message id."""
    return hashlib.sha256(f"msg:{tag}:{n}".encode()).digest()[:16]


async def make_account(store: Store, account: str, devices: int = 1) -> list[DeviceRef]:
    """Create ``account`` with ``devices`` devices (ids 1..n) and return their refs."""
    first = await store.create_account(account, key(f"{account}.1"), "first", NOW)
    refs = [first.ref]
    for n in range(2, devices + 1):
        added = await link(store, first.ref, key(f"{account}.{n}"), code=f"{account}-{n}")
        refs.append(added.ref)
    return refs


async def link(store: Store, by: DeviceRef, noise_key: bytes, *, code: str) -> Device:
    """Link a new device to ``by``'s account with a fresh code."""
    code_hash = hashlib.sha256(code.encode()).digest()
    await store.put_link_code(by, code_hash, NOW + DAY, NOW)
    return await store.add_device(by.account, noise_key, code, code_hash, NOW)


def send(
    sender: DeviceRef,
    recipient: str,
    targets: Iterable[DeviceRef],
    *,
    mid: bytes | None = None,
    payload: bytes = b"ciphertext",
    now: float = NOW,
    expires_at: float = NOW + RETENTION,
    max_queue: int = 1000,
) -> Submission:
    """A submission with one payload per target (``payload`` tagged with the target)."""
    return Submission(
        sender=sender,
        message_id=message_id(0) if mid is None else mid,
        recipient=recipient,
        payloads=tuple((ref, payload + str(ref).encode()) for ref in targets),
        now=now,
        expires_at=expires_at,
        max_queue=max_queue,
    )


@contextlib.contextmanager
def breaks(rule: Rule) -> Iterator[None]:
    """The block raises IntegrityError for ``rule`` (the typed rule, not the message's text)."""
    with pytest.raises(IntegrityError) as raised:
        yield
    assert raised.value.rule is rule, raised.value.rule
