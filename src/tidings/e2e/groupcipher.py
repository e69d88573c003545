"""A group's encryption behind one interface: sender keys now, MLS (RFC 9420) later.

:class:`GroupCipher` is what the device runtime needs of a group's cryptography, and no more:
encrypt once for the group, decrypt a member device's message, say what key material a member
device must be given over its pairwise session before it can read, take such material, and
start over when someone leaves. :class:`SenderKeyCipher` implements it with libsignal's sender
keys (:mod:`.senderkey`); an MLS implementation would keep the same calls (its welcome
and commit messages in place of distribution messages).

Sans-I/O: the records are values the caller stores (:meth:`SenderKeyCipher.records`,
:meth:`SenderKeyCipher.load`); randomness is injected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from ..errors import DecryptionError
from ..refs import DeviceRef
from .senderkey import (
    NoSenderKeyError,
    SenderKeyRecord,
    group_decrypt,
    group_encrypt,
    new_distribution,
    process_distribution,
    rotate,
)
from .senderkey_wire import SenderKeyDistributionMessage

__all__ = ["GroupCipher", "NoSenderKeyError", "SenderKeyCipher"]

Rng = Callable[[int], bytes]


class GroupCipher(Protocol):
    """One device's encryption for its groups (``group`` is the group's 16-byte id)."""

    def encrypt(self, group: bytes, plaintext: bytes) -> bytes:
        """One ciphertext that every member device holding our current key can read."""
        ...

    def decrypt(self, group: bytes, sender: DeviceRef, ciphertext: bytes) -> bytes:
        """Raises NoSenderKeyError when we lack ``sender``'s key (ask it), DecryptionError
        when the ciphertext is bad."""
        ...

    def key_for(self, group: bytes, device: DeviceRef) -> bytes | None:
        """What ``device`` must be sent (over the pairwise session) before it can read our
        next message; None if it has our current key already."""
        ...

    def given(self, group: bytes, device: DeviceRef) -> None:
        """``device`` has our current key (its pairwise message is durable in our outbox)."""
        ...

    def lacks(self, group: bytes, device: DeviceRef) -> None:
        """``device`` says it cannot read our messages: :meth:`key_for` gives it the key again."""
        ...

    def accept_key(self, group: bytes, sender: DeviceRef, material: bytes) -> None:
        """Take key material ``sender`` sent us over our pairwise session."""
        ...

    def member_left(self, group: bytes) -> None:
        """A member left or was removed: what we send next must be unreadable to it."""
        ...


class SenderKeyCipher:
    """:class:`GroupCipher` by sender keys. ``me`` is this device."""

    def __init__(self, me: DeviceRef, rng: Rng) -> None:
        self.me = me
        self._rng = rng
        self._records: dict[tuple[bytes, DeviceRef], SenderKeyRecord] = {}
        self._given: dict[bytes, set[DeviceRef]] = {}

    # ------------------------------------------------------------ storage

    def records(self) -> Mapping[tuple[bytes, DeviceRef], SenderKeyRecord]:
        """Every (group, sender device) record, to store."""
        return dict(self._records)

    def given_to(self, group: bytes) -> frozenset[DeviceRef]:
        """The devices that have our current key for ``group``, to store."""
        return frozenset(self._given.get(group, ()))

    def load(
        self,
        records: Mapping[tuple[bytes, DeviceRef], SenderKeyRecord],
        given: Mapping[bytes, Iterable[DeviceRef]] | None = None,
    ) -> None:
        self._records = dict(records)
        self._given = {g: set(d) for g, d in (given or {}).items()}

    # ------------------------------------------------------------ GroupCipher

    def _own(self, group: bytes) -> tuple[SenderKeyRecord, SenderKeyDistributionMessage]:
        record, distribution = new_distribution(
            self._records.get((group, self.me), SenderKeyRecord()), group, self._rng
        )
        self._records[(group, self.me)] = record
        return record, distribution

    def encrypt(self, group: bytes, plaintext: bytes) -> bytes:
        record, _ = self._own(group)
        record, ciphertext = group_encrypt(record, group, plaintext)
        self._records[(group, self.me)] = record
        return ciphertext

    def decrypt(self, group: bytes, sender: DeviceRef, ciphertext: bytes) -> bytes:
        record = self._records.get((group, sender))
        if record is None:
            raise NoSenderKeyError()
        record, plaintext = group_decrypt(record, ciphertext)
        self._records[(group, sender)] = record
        return plaintext

    def key_for(self, group: bytes, device: DeviceRef) -> bytes | None:
        if device in self._given.get(group, ()):
            return None
        _, distribution = self._own(group)
        return distribution.serialize()

    def given(self, group: bytes, device: DeviceRef) -> None:
        self._given.setdefault(group, set()).add(device)

    def lacks(self, group: bytes, device: DeviceRef) -> None:
        self._given.get(group, set()).discard(device)

    def accept_key(self, group: bytes, sender: DeviceRef, material: bytes) -> None:
        distribution = SenderKeyDistributionMessage.parse(material)
        if distribution.distribution_id != group:
            raise DecryptionError()  # a key for another group, sent as this one's
        record = self._records.get((group, sender), SenderKeyRecord())
        self._records[(group, sender)] = process_distribution(record, distribution)

    def member_left(self, group: bytes) -> None:
        own = self._records.get((group, self.me))
        if own is not None:
            self._records[(group, self.me)] = rotate(own)
        self._given.pop(group, None)  # everyone still in gets the new key before they read
