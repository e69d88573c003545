"""Syndace's ``x3dh`` and ``doubleratchet`` (MIT, dev-only) configured as libsignal v3.

This is the *independent* side of ``test_differential.py``. Nothing here imports
``tidings.e2e``: the key agreement, the ratchet, the key schedule and the AES-CBC/HMAC
construction are Syndace's; this module only fills in the parameters Syndace leaves to the
application, plus a small libsignal wire codec of its own (so a bug in our ``message.py``
cannot hide behind a shared parser). See ``test_differential.py``'s docstring for exactly what
is Syndace's and what is adapter.
"""

from __future__ import annotations

import hmac
import random
from collections.abc import Callable, Sequence
from typing import Any

import x3dh
import x3dh.base_state
from doubleratchet import DiffieHellmanRatchet, DoubleRatchet, EncryptedMessage
from doubleratchet import Header as DRHeader
from doubleratchet.aead import AuthenticationFailedException
from doubleratchet.recommended import (
    HashFunction,
    aead_aes_hmac,
    diffie_hellman_ratchet_curve25519,
    kdf_hkdf,
    kdf_separate_hmacs,
)
from doubleratchet.recommended.crypto_provider_impl import CryptoProviderImpl
from x3dh.identity_key_pair import IdentityKeyPairSeed

WHISPER = 1  # libsignal's envelope types
PREKEY = 3
VERSION = 0x33
MAC_LEN = 8
IK_LEN = 33  # 0x05 || u
#: KDF_CK as a Syndace "separate HMACs" chain: HMAC(ck, 0x02) -> next chain key (the first
#: output is the new chain key), HMAC(ck, 0x01) -> message key.
MESSAGE_CHAIN_CONSTANT = b"\x02\x01"
DOS_THRESHOLD = 2000
MAX_SKIPPED = 4000


# -- deterministic randomness for Syndace ------------------------------------------------------


class SeededSecrets:
    """Stands in for the ``secrets`` module inside ``x3dh.base_state`` (tests patch it in)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def token_bytes(self, n: int) -> bytes:
        return self._rng.randbytes(n)

    def choice(self, seq: Sequence[bytes]) -> bytes:
        return self._rng.choice(sorted(seq))  # a frozenset's order depends on hash seeds


# -- X3DH ------------------------------------------------------------------------------------


class WhisperX3DH(x3dh.BaseState):
    """X3DH with libsignal's public-key encoding ``0x05 || u`` (signed, and in the AD)."""

    @staticmethod
    def _encode_public_key(key_format: x3dh.IdentityKeyFormat, pub: bytes) -> bytes:
        assert key_format is x3dh.IdentityKeyFormat.CURVE_25519
        return b"\x05" + pub


def x3dh_state(identity_seed: bytes) -> WhisperX3DH:
    """Syndace's X3DH state: SHA-256, info ``WhisperText``, Curve25519 identity keys."""
    return WhisperX3DH.create(
        x3dh.IdentityKeyFormat.CURVE_25519,
        x3dh.HashFunction.SHA_256,
        b"WhisperText",
        IdentityKeyPairSeed(identity_seed),
    )


# -- Double Ratchet --------------------------------------------------------------------------


class RootKDF(kdf_hkdf.KDF):
    """KDF_RK: HKDF-SHA256(salt = rk, ikm = dh, info = ``WhisperRatchet``)."""

    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256

    @staticmethod
    def _get_info() -> bytes:
        return b"WhisperRatchet"


class ChainKDF(kdf_separate_hmacs.KDF):
    """KDF_CK: one HMAC-SHA256 per byte of `MESSAGE_CHAIN_CONSTANT`."""

    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256


class WhisperAEAD(aead_aes_hmac.AEAD):
    """Syndace's AES-256-CBC + HMAC-SHA256 AEAD (HKDF info ``WhisperMessageKeys``), with
    libsignal's tag truncated to 8 bytes.

    Syndace's AEAD appends the full 32-byte tag and, decrypting, expects it: ``encrypt``
    truncates Syndace's output; ``decrypt`` checks the 8 received bytes against the first 8
    of the tag computed with Syndace's own provider, then hands Syndace's ``decrypt`` the full
    tag, so the key split, the tag check and AES-CBC/PKCS#7 decryption stay Syndace's.
    """

    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256

    @staticmethod
    def _get_info() -> bytes:
        return b"WhisperMessageKeys"

    @classmethod
    async def encrypt(cls, plaintext: bytes, key: bytes, associated_data: bytes) -> bytes:
        out = await super().encrypt(plaintext, key, associated_data)
        return out[:-32] + out[-32:][:MAC_LEN]

    @classmethod
    async def decrypt(cls, ciphertext: bytes, key: bytes, associated_data: bytes) -> bytes:
        body, mac = ciphertext[:-MAC_LEN], ciphertext[-MAC_LEN:]
        okm = await CryptoProviderImpl.hkdf_derive(
            HashFunction.SHA_256, 80, b"\x00" * 32, cls._get_info(), key
        )
        tag = await CryptoProviderImpl.hmac_calculate(
            okm[32:64], HashFunction.SHA_256, associated_data + body
        )
        if not hmac.compare_digest(tag[:MAC_LEN], mac):
            raise AuthenticationFailedException("truncated tag does not match")
        return await super().decrypt(body + tag, key, associated_data)


def seeded_dh_ratchet(rng: random.Random) -> type[DiffieHellmanRatchet]:
    """Syndace's Curve25519 DH ratchet drawing its ratchet keys from ``rng``."""

    class Seeded(diffie_hellman_ratchet_curve25519.DiffieHellmanRatchet):
        @staticmethod
        def _generate_priv() -> bytes:
            return rng.randbytes(32)

    return Seeded


class WhisperDoubleRatchet(DoubleRatchet):
    """The AD the AEAD's HMAC covers is libsignal's MAC input minus the ciphertext::

        senderIK33 || receiverIK33 || 0x33 || protobuf{1: ratchetKey, 2: counter,
                                                   3: previousCounter} || 0x22 || len(ct)

    Callers pass ``associated_data = senderIK33 || receiverIK33 || 0x22 || len(ct)``; the
    header part is encoded here from Syndace's own header.
    """

    @staticmethod
    def _build_associated_data(associated_data: bytes, header: DRHeader) -> bytes:
        identities, ct_prefix = associated_data[: 2 * IK_LEN], associated_data[2 * IK_LEN :]
        previous_counter = max(header.previous_sending_chain_length, 1) - 1
        body = header_fields(header.ratchet_pub, header.sending_chain_length, previous_counter)
        return identities + bytes([VERSION]) + body + ct_prefix


def ratchet_config(rng: random.Random) -> dict[str, Any]:
    """The keyword arguments that configure Syndace's Double Ratchet as libsignal v3."""
    return {
        "diffie_hellman_ratchet_class": seeded_dh_ratchet(rng),
        "root_chain_kdf": RootKDF,
        "message_chain_kdf": ChainKDF,
        "message_chain_constant": MESSAGE_CHAIN_CONSTANT,
        "dos_protection_threshold": DOS_THRESHOLD,
        "max_num_skipped_message_keys": MAX_SKIPPED,
        "aead": WhisperAEAD,
    }


# -- libsignal v3 wire codec (independent of tidings.e2e.message) -----------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _bytes_field(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def header_fields(ratchet_pub: bytes, counter: int, previous_counter: int) -> bytes:
    return (
        _bytes_field(1, b"\x05" + ratchet_pub)
        + _int_field(2, counter)
        + _int_field(3, previous_counter)
    )


def ciphertext_prefix(ciphertext_len: int) -> bytes:
    return _varint(4 << 3 | 2) + _varint(ciphertext_len)


def cbc_len(plaintext_len: int) -> int:
    """AES-CBC with PKCS#7: always at least one byte of padding."""
    return (plaintext_len // 16 + 1) * 16


def _fields(data: bytes) -> dict[int, int | bytes]:
    fields: dict[int, int | bytes] = {}
    pos = 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while pos < len(data):
        key = varint()
        if key & 7 == 0:
            fields[key >> 3] = varint()
        elif key & 7 == 2:
            length = varint()
            fields[key >> 3] = data[pos : pos + length]
            pos += length
        else:
            raise ValueError(f"unexpected wire type {key & 7}")
    return fields


def _key(value: int | bytes) -> bytes:
    assert isinstance(value, bytes) and len(value) == IK_LEN and value[0] == 5
    return value[1:]


def _int(value: int | bytes) -> int:
    assert isinstance(value, int)
    return value


def encode_whisper(message: EncryptedMessage) -> bytes:
    """A Syndace message (ciphertext || 8-byte tag) as a libsignal WhisperMessage."""
    header = message.header
    ciphertext, mac = message.ciphertext[:-MAC_LEN], message.ciphertext[-MAC_LEN:]
    previous_counter = max(header.previous_sending_chain_length, 1) - 1
    body = header_fields(header.ratchet_pub, header.sending_chain_length, previous_counter)
    return bytes([VERSION]) + body + _bytes_field(4, ciphertext) + mac


def parse_whisper(data: bytes) -> tuple[EncryptedMessage, int]:
    """A libsignal WhisperMessage as a Syndace message, and its ciphertext's length.

    libsignal's ``previousCounter`` is the *index* of the last message of the previous chain;
    Syndace's header carries that chain's *length*. In a two-party session every chain but the
    first carries at least one message, so the length is ``previousCounter + 1`` (for the
    first chain Syndace ignores the field: it has no receiving chain yet to close).
    """
    assert data[0] == VERSION
    fields = _fields(data[1:-MAC_LEN])
    ciphertext = fields[4]
    assert isinstance(ciphertext, bytes)
    header = DRHeader(
        ratchet_pub=_key(fields[1]),
        previous_sending_chain_length=_int(fields[3]) + 1,
        sending_chain_length=_int(fields[2]),
    )
    return EncryptedMessage(header, ciphertext + data[-MAC_LEN:]), len(ciphertext)


def encode_prekey(
    *,
    registration_id: int,
    prekey_id: int | None,
    signed_prekey_id: int,
    base_key: bytes,
    identity_key: bytes,
    message: bytes,
) -> bytes:
    body = b"" if prekey_id is None else _int_field(1, prekey_id)
    body += (
        _bytes_field(2, b"\x05" + base_key)
        + _bytes_field(3, b"\x05" + identity_key)
        + _bytes_field(4, message)
        + _int_field(5, registration_id)
        + _int_field(6, signed_prekey_id)
    )
    return bytes([VERSION]) + body


def parse_prekey(data: bytes) -> dict[str, Any]:
    assert data[0] == VERSION
    fields = _fields(data[1:])
    prekey_id = fields.get(1)
    return {
        "prekey_id": None if prekey_id is None else _int(prekey_id),
        "base_key": _key(fields[2]),
        "identity_key": _key(fields[3]),
        "message": fields[4],
        "registration_id": _int(fields[5]),
        "signed_prekey_id": _int(fields[6]),
    }


# -- a Syndace peer speaking libsignal v3 -----------------------------------------------------


class SyndacePeer:
    """One device whose X3DH and Double Ratchet are Syndace's.

    As responder it publishes `bundle` (signed prekey id 1, one-time prekeys numbered in
    sorted order of their public keys); as initiator it `initiate`s from a peer's bundle and
    sends PreKeyWhisperMessages until its first decryption, as libsignal does.
    """

    def __init__(self, identity_seed: bytes, rng: random.Random, registration_id: int) -> None:
        self.x3dh = x3dh_state(identity_seed)
        self.rng = rng
        self.registration_id = registration_id
        self.ratchet: WhisperDoubleRatchet | None = None
        self.shared_secret = b""
        self.sending_ad = b""  # senderIK33 || receiverIK33 for messages we send
        self.base_key = b""
        self.pending: dict[str, Any] | None = None  # PreKeyWhisperMessage fields, initiator only
        self.peer_spk = b""

    @property
    def identity(self) -> bytes:
        return self.x3dh.bundle.identity_key

    def prekey_ids(self) -> dict[int, bytes]:
        return dict(enumerate(sorted(self.x3dh.bundle.pre_keys), start=100))

    async def initiate(
        self, bundle: x3dh.Bundle, prekey_id: Callable[[bytes], int], signed_prekey_id: int
    ) -> None:
        secret, ad, header = await self.x3dh.get_shared_secret_active(bundle, require_pre_key=False)
        self.shared_secret, self.sending_ad = secret, ad[: 2 * IK_LEN]
        self.base_key, self.peer_spk = header.ephemeral_key, bundle.signed_pre_key
        self.pending = {
            "registration_id": self.registration_id,
            "prekey_id": None if header.pre_key is None else prekey_id(header.pre_key),
            "signed_prekey_id": signed_prekey_id,
            "base_key": header.ephemeral_key,
            "identity_key": header.identity_key,
        }

    async def encrypt(self, plaintext: bytes) -> tuple[int, bytes]:
        ad = self.sending_ad + ciphertext_prefix(cbc_len(len(plaintext)))
        if self.ratchet is None:
            self.ratchet, message = await WhisperDoubleRatchet.encrypt_initial_message(
                shared_secret=self.shared_secret,
                recipient_ratchet_pub=self.peer_spk,
                message=plaintext,
                associated_data=ad,
                **ratchet_config(self.rng),
            )
        else:
            message = await self.ratchet.encrypt_message(plaintext, ad)
        whisper = encode_whisper(message)
        if self.pending is None:
            return WHISPER, whisper
        return PREKEY, encode_prekey(message=whisper, **self.pending)

    async def decrypt(self, kind: int, data: bytes) -> bytes:
        if kind == PREKEY:
            return await self._decrypt_prekey(parse_prekey(data))
        assert kind == WHISPER and self.ratchet is not None
        message, ct_len = parse_whisper(data)
        ad = self.sending_ad[IK_LEN:] + self.sending_ad[:IK_LEN] + ciphertext_prefix(ct_len)
        plaintext = await self.ratchet.decrypt_message(message, ad)
        self.pending = None  # the initiator heard back: WhisperMessages from now on
        return plaintext

    async def _decrypt_prekey(self, fields: dict[str, Any]) -> bytes:
        message, ct_len = parse_whisper(fields["message"])
        if self.ratchet is not None:  # a later PreKeyWhisperMessage of the same session
            assert fields["base_key"] == self.base_key
            ad = self.sending_ad[IK_LEN:] + self.sending_ad[:IK_LEN] + ciphertext_prefix(ct_len)
            return await self.ratchet.decrypt_message(message, ad)
        assert fields["signed_prekey_id"] == 1
        prekey_id = fields["prekey_id"]
        header = x3dh.Header(
            identity_key=fields["identity_key"],
            ephemeral_key=fields["base_key"],
            signed_pre_key=self.x3dh.bundle.signed_pre_key,
            pre_key=None if prekey_id is None else self.prekey_ids()[prekey_id],
        )
        secret, ad, spk = await self.x3dh.get_shared_secret_passive(header, require_pre_key=False)
        receiving_ad = ad[: 2 * IK_LEN]  # initiator's IK || ours: the sender's view
        self.ratchet, plaintext = await WhisperDoubleRatchet.decrypt_initial_message(
            shared_secret=secret,
            own_ratchet_priv=spk.priv,
            message=message,
            associated_data=receiving_ad + ciphertext_prefix(ct_len),
            **ratchet_config(self.rng),
        )
        self.base_key = fields["base_key"]
        self.sending_ad = receiving_ad[IK_LEN:] + receiving_ad[:IK_LEN]
        return plaintext
