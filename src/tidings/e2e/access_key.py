"""The unidentified-access key of sealed sender (docs/protocol.md §14.1).

An account's devices share a 32-byte random **profile key**, given end to end only to the
account's contacts (content kind PROFILE_KEY). Whoever holds it can derive the account's
**access key**, the 16 bytes a sealed send must name for the relay to accept it::

    access_key = HKDF-SHA256(ikm = profile key, salt = none,
                             info = "tidings unidentified access key", length = 16)

The relay keeps only the access key (SET_ACCESS_KEY), never the profile key. Pure.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..wire.limits import ACCESS_KEY_LEN

__all__ = ["ACCESS_KEY_INFO", "PROFILE_KEY_LEN", "access_key"]

#: Bytes of a profile key.
PROFILE_KEY_LEN = 32
#: The HKDF info of the access key (§14.1).
ACCESS_KEY_INFO = b"tidings unidentified access key"


def access_key(profile_key: bytes) -> bytes:
    """The 16-byte unidentified-access key of ``profile_key``.

    Raises:
        ValueError: ``profile_key`` is not :data:`PROFILE_KEY_LEN` bytes.
    """
    if type(profile_key) is not bytes or len(profile_key) != PROFILE_KEY_LEN:
        raise ValueError(f"a profile key is {PROFILE_KEY_LEN} bytes")
    hkdf = HKDF(hashes.SHA256(), ACCESS_KEY_LEN, salt=None, info=ACCESS_KEY_INFO)
    return hkdf.derive(profile_key)
