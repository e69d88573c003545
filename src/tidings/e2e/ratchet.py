"""The Double Ratchet (Signal's specification, revision 1) in libsignal v3's variant.

The libsignal v3 key schedule::

    KDF_RK(rk, dh)  = HKDF-SHA256(salt = rk, ikm = dh, info = "WhisperRatchet", 64) -> rk' || ck
    KDF_CK(ck)      = (HMAC-SHA256(ck, 0x02) -> ck', HMAC-SHA256(ck, 0x01) -> message key seed)
    message keys    = HKDF-SHA256(salt = none, ikm = seed, info = "WhisperMessageKeys", 80)
                      -> AES-256-CBC key (32) || HMAC key (32) || IV (16)

and two departures from the specification's pseudo-code: the header carries
``previousCounter = max(Ns, 1) - 1`` (the *index* of the last message of the previous sending
chain, where the specification sends the count ``PN``), so the receiver keeps the skipped keys
up to and *including* that index; and a receiving chain closed by a DH ratchet step keeps its
skipped keys but derives no more.

Invariants:

* `RatchetState` is an immutable value. `RatchetState.sending_step` and
  `RatchetState.receiving_step` return the keys *and a new state*; the old one is untouched.
  The session keeps the new state only after the message authenticates (Convention §9), so a
  forged, replayed or out-of-bounds message never changes anything.
* The work one message can cause is bounded (`RatchetParams`): at most ``max_skip_gap`` chain
  steps per chain, at most ``max_skip_per_chain`` stored keys per chain (the oldest dropped
  first), at most ``max_receiving_chains`` chains, at most ``max_skipped_total`` keys in all.
* A message key is used once: a duplicate or already-dropped counter is a `DecryptionError`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field, replace

import msgpack
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tidings.errors import DecryptionError, TidingsError

from .keys import KeyPair, PublicKey, Rng

__all__ = [
    "DEFAULT_PARAMS",
    "MAX_RECEIVING_CHAINS",
    "MAX_SKIPPED_TOTAL",
    "MAX_SKIP_GAP",
    "MAX_SKIP_PER_CHAIN",
    "STATE_VERSION",
    "Header",
    "MessageKeys",
    "RatchetParams",
    "RatchetState",
    "ReceivingChain",
    "SendingChainMissingError",
]

#: Skipped message keys kept per receiving chain, the oldest dropped first (libsignal's
#: ``MAX_MESSAGE_KEYS``): enough for a long offline burst, small enough to store per session.
MAX_SKIP_PER_CHAIN = 2000
#: How far past the next expected counter one message may jump (libsignal's
#: ``MAX_FORWARD_JUMPS``): bounds the HMACs one message can make us compute.
MAX_SKIP_GAP = 25_000
#: Receiving chains kept after DH ratchet steps (libsignal's ``MAX_RECEIVER_CHAINS``).
MAX_RECEIVING_CHAINS = 5
#: Total skipped keys per session: every kept chain full.
MAX_SKIPPED_TOTAL = MAX_SKIP_PER_CHAIN * MAX_RECEIVING_CHAINS
#: Version of `RatchetState.serialize`'s format.
STATE_VERSION = 1

_RATCHET_INFO = b"WhisperRatchet"
_MESSAGE_KEYS_INFO = b"WhisperMessageKeys"
_MESSAGE_KEY_SEED = b"\x01"
_CHAIN_KEY_SEED = b"\x02"


class SendingChainMissingError(TidingsError):
    """API misuse: the responder cannot send before it has received a message."""


@dataclass(frozen=True, slots=True)
class RatchetParams:
    """The resource bounds of one session (see the module constants for the reasons)."""

    max_skip_per_chain: int = MAX_SKIP_PER_CHAIN
    max_skip_gap: int = MAX_SKIP_GAP
    max_receiving_chains: int = MAX_RECEIVING_CHAINS
    max_skipped_total: int = MAX_SKIPPED_TOTAL

    def __post_init__(self) -> None:
        if min(self.max_skip_per_chain, self.max_skip_gap, self.max_skipped_total) < 0:
            raise ValueError("ratchet bounds are not negative")
        if self.max_receiving_chains < 1:
            raise ValueError("a session keeps at least one receiving chain")


#: The default bounds.
DEFAULT_PARAMS = RatchetParams()


@dataclass(frozen=True, slots=True)
class MessageKeys:
    """The keys of one message: AES-256-CBC key, HMAC-SHA256 key and CBC IV."""

    cipher_key: bytes = field(repr=False)
    mac_key: bytes = field(repr=False)
    iv: bytes = field(repr=False)

    @classmethod
    def from_seed(cls, seed: bytes) -> MessageKeys:
        """Expand a message key seed ``HMAC(CK, 0x01)`` into the three keys."""
        okm = _hkdf(None, seed, _MESSAGE_KEYS_INFO, 80)
        return cls(cipher_key=okm[:32], mac_key=okm[32:64], iv=okm[64:])

    def encrypt(self, plaintext: bytes) -> bytes:
        """AES-256-CBC with PKCS#7 padding."""
        pad = 16 - len(plaintext) % 16  # PKCS#7: 1..16 bytes, each the pad length
        padded = b"".join((plaintext, bytes((pad,)) * pad))
        encryptor = Cipher(algorithms.AES(self.cipher_key), modes.CBC(self.iv)).encryptor()
        return encryptor.update(padded) + encryptor.finalize()

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Invert `encrypt`.

        Raises:
            DecryptionError: not whole blocks, or bad padding.
        """
        if not ciphertext or len(ciphertext) % 16:
            raise DecryptionError()
        decryptor = Cipher(algorithms.AES(self.cipher_key), modes.CBC(self.iv)).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError as exc:
            raise DecryptionError() from exc


@dataclass(frozen=True, slots=True)
class Header:
    """What a message says about the ratchet: key, counter, previous counter."""

    ratchet_key: PublicKey
    counter: int
    previous_counter: int


@dataclass(frozen=True, slots=True)
class ReceivingChain:
    """One of the peer's ratchet keys and what we keep of its chain.

    Attributes:
        ratchet_key: the peer's ratchet public key.
        chain_key: the next chain key, or ``None`` once a DH step closed the chain.
        next_index: the counter whose key ``chain_key`` yields next.
        skipped: ``(counter, message key seed)`` pairs not yet used, by ascending counter.
    """

    ratchet_key: PublicKey
    chain_key: bytes | None = field(repr=False)
    next_index: int
    skipped: tuple[tuple[int, bytes], ...] = field(repr=False)

    def advance(self, until: int, params: RatchetParams) -> ReceivingChain:
        """The chain with the keys of counters ``next_index .. until - 1`` stored as skipped.

        Raises:
            DecryptionError: the chain is closed, or the jump exceeds ``max_skip_gap``.
        """
        if until <= self.next_index:
            return self
        if self.chain_key is None or until - self.next_index > params.max_skip_gap:
            raise DecryptionError()
        chain_key, skipped = self.chain_key, list(self.skipped)
        keep_from = until - params.max_skip_per_chain
        for index in range(self.next_index, until):
            if index >= keep_from:  # only the keys we keep cost a second HMAC
                seed, chain_key = _chain_step(chain_key)
                skipped.append((index, seed))
            else:
                chain_key = _hmac(chain_key, _CHAIN_KEY_SEED)
        kept = tuple(skipped[-params.max_skip_per_chain :] if params.max_skip_per_chain else ())
        return ReceivingChain(self.ratchet_key, chain_key, until, kept)

    def take(self, counter: int, params: RatchetParams) -> tuple[bytes, ReceivingChain]:
        """The message key seed of ``counter`` and the chain without it.

        Raises:
            DecryptionError: a used or dropped counter (duplicate), or one out of bounds.
        """
        if counter < self.next_index:
            for position, (index, seed) in enumerate(self.skipped):
                if index == counter:
                    rest = self.skipped[:position] + self.skipped[position + 1 :]
                    return seed, ReceivingChain(
                        self.ratchet_key, self.chain_key, self.next_index, rest
                    )
            raise DecryptionError()
        chain = self.advance(counter, params)
        if chain.chain_key is None:  # a chain closed by a DH step derives no more keys
            raise DecryptionError()
        seed, next_key = _chain_step(chain.chain_key)
        return seed, ReceivingChain(chain.ratchet_key, next_key, counter + 1, chain.skipped)


@dataclass(frozen=True, slots=True)
class RatchetState:
    """The whole Double Ratchet state of one session (an immutable value).

    Build it with `initiator` or `responder`, or `parse` a stored one.

    Attributes:
        root_key: the current root key ``RK``.
        our_ratchet_key: our current ratchet key pair ``DHs``.
        sending_chain_key: ``CKs``, or ``None`` until the responder first receives.
        send_index: ``Ns``, the counter of the next message we send.
        previous_counter: what our headers carry as ``previousCounter``.
        receiving: the receiving chains, oldest first; the last is the current one.
    """

    root_key: bytes = field(repr=False)
    our_ratchet_key: KeyPair
    sending_chain_key: bytes | None = field(repr=False)
    send_index: int
    previous_counter: int
    receiving: tuple[ReceivingChain, ...] = ()

    @classmethod
    def initiator(
        cls, root_key: bytes, their_ratchet_key: PublicKey, our_ratchet_key: KeyPair
    ) -> RatchetState:
        """Alice's state after X3DH: a sending chain towards Bob's signed prekey (DR §3.3).

        Raises:
            ValueError: ``their_ratchet_key`` is of small order.
        """
        root, chain = _kdf_rk(root_key, our_ratchet_key.dh(their_ratchet_key))
        return cls(root, our_ratchet_key, chain, 0, 0)

    @classmethod
    def responder(cls, root_key: bytes, our_ratchet_key: KeyPair) -> RatchetState:
        """Bob's state after X3DH: his signed prekey is his first ratchet key (DR §3.3)."""
        return cls(root_key, our_ratchet_key, None, 0, 0)

    def sending_step(self) -> tuple[Header, MessageKeys, RatchetState]:
        """The header and keys of our next message, and the state after it.

        Raises:
            SendingChainMissingError: we are the responder and have not received yet.
        """
        if self.sending_chain_key is None:
            raise SendingChainMissingError("the responder sends only after it has received")
        seed, chain_key = _chain_step(self.sending_chain_key)
        header = Header(self.our_ratchet_key.public, self.send_index, self.previous_counter)
        after = RatchetState(
            self.root_key,
            self.our_ratchet_key,
            chain_key,
            self.send_index + 1,
            self.previous_counter,
            self.receiving,
        )
        return header, MessageKeys.from_seed(seed), after

    def receiving_step(
        self, header: Header, rng: Rng, params: RatchetParams = DEFAULT_PARAMS
    ) -> tuple[MessageKeys, RatchetState]:
        """The keys of a received message, and the state to keep if it authenticates.

        A new ratchet key triggers a DH ratchet step, drawing a new key pair from ``rng``.

        Raises:
            DecryptionError: duplicate, beyond the bounds, or a small-order ratchet key.
        """
        state = self
        position = state._chain_position(header.ratchet_key)
        if position is None:
            state = state._dh_step(header, rng, params)
            position = len(state.receiving) - 1
        seed, chain = state.receiving[position].take(header.counter, params)
        chains = (*state.receiving[:position], chain, *state.receiving[position + 1 :])
        after = RatchetState(
            state.root_key,
            state.our_ratchet_key,
            state.sending_chain_key,
            state.send_index,
            state.previous_counter,
            _cap_total(chains, params),
        )
        return MessageKeys.from_seed(seed), after

    def has_receiving_chain(self, ratchet_key: PublicKey) -> bool:
        """Whether we keep a receiving chain for this peer ratchet key."""
        return self._chain_position(ratchet_key) is not None

    def _chain_position(self, ratchet_key: PublicKey) -> int | None:
        for position, chain in enumerate(self.receiving):
            if chain.ratchet_key == ratchet_key:
                return position
        return None

    def _dh_step(self, header: Header, rng: Rng, params: RatchetParams) -> RatchetState:
        chains = list(self.receiving)
        if chains:  # DR §3.5 SkipMessageKeys(state, header.pn), inclusive in libsignal v3
            last = chains[-1].advance(header.previous_counter + 1, params)
            chains[-1] = replace(last, chain_key=None)
        new_key = KeyPair.generate(rng)
        try:
            root, receiving_key = _kdf_rk(
                self.root_key, self.our_ratchet_key.dh(header.ratchet_key)
            )
            root, sending_key = _kdf_rk(root, new_key.dh(header.ratchet_key))
        except ValueError as exc:  # small-order ratchet key
            raise DecryptionError() from exc
        chains.append(ReceivingChain(header.ratchet_key, receiving_key, 0, ()))
        return RatchetState(
            root_key=root,
            our_ratchet_key=new_key,
            sending_chain_key=sending_key,
            send_index=0,
            previous_counter=max(self.send_index, 1) - 1,
            receiving=tuple(chains[-params.max_receiving_chains :]),
        )

    def serialize(self) -> bytes:
        """The state as bytes for the client store (msgpack, `STATE_VERSION` first)."""
        chains = [
            [c.ratchet_key.raw, c.chain_key, c.next_index, [list(s) for s in c.skipped]]
            for c in self.receiving
        ]
        record = [
            STATE_VERSION,
            self.root_key,
            self.our_ratchet_key.private,
            self.sending_chain_key,
            self.send_index,
            self.previous_counter,
            chains,
        ]
        return bytes(msgpack.packb(record, use_bin_type=True))

    @classmethod
    def parse(cls, data: bytes) -> RatchetState:
        """Invert `serialize`.

        Raises:
            ValueError: not a state of version `STATE_VERSION` (corrupt or from another
                version).
        """
        try:
            record = msgpack.unpackb(data, raw=False)
            version, root, private, sending, send_index, previous, chains = record
            if version != STATE_VERSION:
                raise ValueError(f"ratchet state version {version}, expected {STATE_VERSION}")
            receiving = tuple(
                ReceivingChain(
                    PublicKey(key), chain_key, next_index, tuple((i, s) for i, s in skipped)
                )
                for key, chain_key, next_index, skipped in chains
            )
            return cls(
                root, KeyPair.from_private(private), sending, send_index, previous, receiving
            )
        except (TypeError, ValueError, msgpack.UnpackException) as exc:
            raise ValueError("not a serialized ratchet state") from exc


def _hmac(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256(key, data): the standard library's one-shot HMAC (OpenSSL underneath)."""
    return hmac.digest(key, data, "sha256")


def _chain_step(chain_key: bytes) -> tuple[bytes, bytes]:
    """``KDF_CK``: (message key seed ``HMAC(ck, 0x01)``, next chain key ``HMAC(ck, 0x02)``)."""
    return _hmac(chain_key, _MESSAGE_KEY_SEED), _hmac(chain_key, _CHAIN_KEY_SEED)


def _hkdf(salt: bytes | None, ikm: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869), ``cryptography``'s."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def _kdf_rk(root_key: bytes, dh_output: bytes) -> tuple[bytes, bytes]:
    okm = _hkdf(root_key, dh_output, _RATCHET_INFO, 64)
    return okm[:32], okm[32:]


def _cap_total(
    chains: tuple[ReceivingChain, ...], params: RatchetParams
) -> tuple[ReceivingChain, ...]:
    """Drop the oldest chains' oldest skipped keys until at most ``max_skipped_total`` remain."""
    excess = sum(len(c.skipped) for c in chains) - params.max_skipped_total
    capped = list(chains)
    for position, chain in enumerate(capped):
        if excess <= 0:
            break
        dropped = min(excess, len(chain.skipped))
        capped[position] = replace(chain, skipped=chain.skipped[dropped:])
        excess -= dropped
    return tuple(capped)
