"""PROFILE_KEY content: an account's profile key, given end to end (docs/protocol.md §14.1).

Layout (a content array, see :mod:`.content`)::

    PROFILE_KEY  [1, 13, profile_key: bin32, generation: int, created_at: float, device: int]

To a contact it says "this is my account's profile key": the contact derives our access key
from it and may then send to us sealed. To the sender's own other devices it says "this is the
account's key". ``generation``, ``created_at`` and ``device`` (the device that made the key,
on its clock) order the keys of one account when two own devices hold different ones: the
higher generation wins (blocking a contact makes a new generation); of one generation, the
lower ``(created_at, device)`` wins, the same everywhere. Invariants as :mod:`.content`: valid
or unbuildable; :func:`parse_profile_key` refuses anything else with :class:`ContentError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .content import ContentError, ContentKind, _check_time, _pack

__all__ = ["PROFILE_KEY_LEN", "ProfileKey", "parse_profile_key"]

#: Bytes of a profile key (``tidings.e2e.access_key``).
PROFILE_KEY_LEN = 32

_U63 = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class ProfileKey:
    """An account's profile key and what orders it among its account's keys."""

    KIND: ClassVar[ContentKind] = ContentKind.PROFILE_KEY
    key: bytes
    generation: int
    created_at: float
    device: int

    def __post_init__(self) -> None:
        if type(self.key) is not bytes or len(self.key) != PROFILE_KEY_LEN:
            raise ContentError(f"a profile key is {PROFILE_KEY_LEN} bytes")
        if type(self.generation) is not int or not 0 <= self.generation <= _U63:
            raise ContentError("generation must be an integer in 0..2^63-1")
        _check_time("created_at", self.created_at)
        if type(self.device) is not int or not 1 <= self.device <= _U63:
            raise ContentError("device must be a device id (1..2^63-1)")

    @property
    def rank(self) -> tuple[int, float, int]:
        """Smaller wins: the higher generation, then the earlier ``(created_at, device)``."""
        return (-self.generation, self.created_at, self.device)

    def serialize(self) -> bytes:
        """The content bytes to hand to the end-to-end layer."""
        return _pack(self.KIND, [self.key, self.generation, float(self.created_at), self.device])


def parse_profile_key(fields: list[Any]) -> ProfileKey:
    """A PROFILE_KEY from its content fields (after version and kind).

    Raises:
        ContentError: not a valid profile key.
    """
    key, generation, created_at, device = fields
    return ProfileKey(key, generation, created_at, device)
