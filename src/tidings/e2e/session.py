"""Sessions with one peer device: X3DH or PQXDH to start, the Double Ratchet to run.

`Session` is libsignal's *session record*: at most one **open** session (the one we encrypt
with) and up to `MAX_ARCHIVED_SESSIONS` **archived** ones, which still decrypt late messages.
A session is identified by the initiator's X3DH base key.

Call order::

    initiator                                   responder
    session = Session(identity, reg_id)         session = Session(identity, reg_id)
    session.initiate_pq(bundle, rng)            (or initiate(x3dh_bundle, rng): v3)
    kind, data = session.encrypt(plaintext)  -> session.decrypt(kind, data, rng, prekeys)
                                                (delete ``used_prekey_id``, and
                                                ``used_kem_prekey_id`` if it is a one-time
                                                KEM prekey, with the message)
    ... both sides encrypt / decrypt ...
    session.close()        # end the session: the next message needs a new initiate()

The initiator sends `MessageType.PREKEY` messages (X3DH parameters around the ratchet message)
until it first decrypts a reply, then `MessageType.WHISPER` messages.

Versions (`tidings.e2e.message`): a session started by `Session.initiate` is a libsignal v3
session (X3DH, messages ``0x33``); one started by `Session.initiate_pq` is a v4 session (PQXDH,
messages ``0x44``, its PreKeyWhisperMessages also carrying the KEM prekey id and ciphertext).
Only the key agreement differs; the Double Ratchet is the same. A session accepts messages of
its own version only.

Invariants (Convention §9): every decryption runs against immutable copies of the state and
commits only after the MAC verified and the plaintext decrypted; a failure of any kind raises
the one `tidings.errors.DecryptionError` and leaves the session exactly as it was. One
decryption draws at most one key pair from ``rng`` (for a DH ratchet step). Nothing here checks
whether the peer's identity key is trusted: `Decrypted.their_identity` reports it, and the
caller decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol, runtime_checkable

import msgpack

from tidings.errors import DecryptionError, TidingsError

from . import kem, pqxdh
from .keys import KeyPair, PublicKey, Rng
from .message import PreKeyParser, PreKeyWhisperMessage, WhisperMessage
from .ratchet import DEFAULT_PARAMS, Header, RatchetParams, RatchetState
from .x3dh import SessionKeys, X3DHBundle, initiate, respond

__all__ = [
    "MAX_ARCHIVED_SESSIONS",
    "SESSION_VERSION",
    "Decrypted",
    "LocalKemPreKeys",
    "LocalPreKeys",
    "MessageType",
    "NoSessionError",
    "PendingPreKey",
    "Session",
    "SessionState",
]

#: Archived sessions kept per peer device (libsignal's ``ARCHIVED_STATES_MAX_LENGTH``).
MAX_ARCHIVED_SESSIONS = 40
#: Version of `Session.serialize`'s format (2: session version and KEM fields added; no
#: version-1 records were ever stored by a client, so version 1 is not read).
SESSION_VERSION = 2


class MessageType(IntEnum):
    """libsignal's envelope types for the two wire messages."""

    WHISPER = 1  # a WhisperMessage ("CIPHERTEXT")
    PREKEY = 3  # a PreKeyWhisperMessage ("PREKEY_BUNDLE")


class NoSessionError(TidingsError):
    """API misuse: `Session.encrypt` without an open session (call `Session.initiate`)."""


class LocalPreKeys(Protocol):
    """Our prekeys, as the responder looks them up (the client's prekey store)."""

    def signed_prekey(self, prekey_id: int) -> KeyPair | None:
        """Our signed prekey with this id, or ``None``."""

    def one_time_prekey(self, prekey_id: int) -> KeyPair | None:
        """Our unused one-time prekey with this id, or ``None``."""


@runtime_checkable
class LocalKemPreKeys(LocalPreKeys, Protocol):
    """Our prekeys including the KEM ones: needed to respond to a v4 (PQXDH) message."""

    def kem_prekey(self, prekey_id: int) -> bytes | None:
        """The 64-byte ML-KEM-1024 seed of our KEM prekey with this id (a one-time one not
        used yet, or the last-resort one), or ``None``."""


@dataclass(frozen=True, slots=True)
class PendingPreKey:
    """The initiator's X3DH/PQXDH parameters, repeated in each message until the peer replies.

    ``kem_prekey_id`` and ``kem_ciphertext`` (without the type byte) are set in v4 sessions.
    """

    prekey_id: int | None
    signed_prekey_id: int
    kem_prekey_id: int | None = None
    kem_ciphertext: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class SessionState:
    """One session: the peer, its X3DH base key, the ratchet and any pending prekey data.

    ``version`` is 3 (X3DH) or 4 (PQXDH): the version of every message of the session.
    """

    their_identity: PublicKey
    base_key: PublicKey
    ratchet: RatchetState
    pending_prekey: PendingPreKey | None = None
    their_registration_id: int = 0
    version: int = 3


@dataclass(frozen=True, slots=True)
class Decrypted:
    """A decrypted message.

    Attributes:
        plaintext: the authenticated plaintext.
        their_identity: the sender's identity key (check it against the trusted one).
        used_prekey_id: the one-time prekey this message consumed: delete it in the same
            transaction that stores the message and the session.
        used_kem_prekey_id: the KEM prekey this message's new v4 session used: if it is a
            one-time KEM prekey, delete it in that same transaction (keep the last-resort one).
        new_base_key: the base key of the session this message started (``None``: it
            continued one). A session started without a one-time prekey can be started again
            by a replay of the same message once its record is gone: record these base keys.
    """

    plaintext: bytes
    their_identity: PublicKey
    used_prekey_id: int | None = None
    used_kem_prekey_id: int | None = None
    new_base_key: PublicKey | None = None


class Session:
    """All sessions with one peer device (see the module docstring for the call order).

    Args:
        identity: our identity's X25519 key pair (``IdentityKeyPair.dh_key_pair``).
        registration_id: our device's registration id, sent in PreKeyWhisperMessages.
        params: the ratchet's resource bounds.
    """

    def __init__(
        self, identity: KeyPair, registration_id: int, params: RatchetParams = DEFAULT_PARAMS
    ) -> None:
        self.identity = identity
        self.registration_id = registration_id
        self.params = params
        self.open: SessionState | None = None
        self.archived: list[SessionState] = []  # newest first
        self._prekey_parser = PreKeyParser()  # the peer repeats its prekey part until we reply

    def initiate(self, bundle: X3DHBundle, rng: Rng) -> None:
        """Start a new open session from the peer's bundle, archiving the current one.

        Draws two key pairs from ``rng``: the X3DH base key, then our first ratchet key.

        Raises:
            tidings.e2e.x3dh.BundleError: the bundle's signature does not verify.
        """
        base_key = KeyPair.generate(rng)
        keys = initiate(self.identity, base_key, bundle)
        ratchet = RatchetState.initiator(keys.root_key, bundle.signed_prekey, KeyPair.generate(rng))
        pending = PendingPreKey(bundle.one_time_prekey_id, bundle.signed_prekey_id)
        state = SessionState(
            bundle.identity_key, base_key.public, ratchet, pending, bundle.registration_id
        )
        self._install(state)

    def initiate_pq(
        self, bundle: pqxdh.PQXDHBundle, rng: Rng, encapsulate: kem.Encapsulate = kem.encapsulate
    ) -> None:
        """Start a new open v4 (PQXDH) session from the peer's bundle, archiving the current one.

        Draws two key pairs from ``rng`` (the base key, then our first ratchet key) as
        `initiate` does; the KEM randomness is ``encapsulate``'s (tests pass a fake).

        Args:
            bundle: the peer's keys, from `tidings.e2e.bundle.bundle_for_session`.
            rng: randomness for the key pairs.
            encapsulate: ``encapsulate(public) -> (ciphertext, secret)``.

        Raises:
            tidings.e2e.x3dh.BundleError: a signature does not verify, or a key is unusable.
            tidings.errors.ConfigError: this ``cryptography`` build has no ML-KEM-1024.
        """
        base_key = KeyPair.generate(rng)
        result = pqxdh.initiate(self.identity, base_key, bundle, encapsulate)
        x3dh = bundle.x3dh
        ratchet = RatchetState.initiator(
            result.keys.root_key, x3dh.signed_prekey, KeyPair.generate(rng)
        )
        pending = PendingPreKey(
            x3dh.one_time_prekey_id,
            x3dh.signed_prekey_id,
            bundle.kem_prekey.key_id,
            result.kem_ciphertext,
        )
        state = SessionState(
            x3dh.identity_key, base_key.public, ratchet, pending, x3dh.registration_id, 4
        )
        self._install(state)

    def close(self) -> None:
        """Archive the open session (libsignal's END_SESSION); encrypting then needs a new one."""
        if self.open is not None:
            self._archive(self.open)
            self.open = None

    def encrypt(self, plaintext: bytes) -> tuple[MessageType, bytes]:
        """Encrypt with the open session.

        Returns:
            The message type and the serialized message.

        Raises:
            NoSessionError: there is no open session.
            tidings.e2e.ratchet.SendingChainMissingError: we responded but never received.
        """
        state = self.open
        if state is None:
            raise NoSessionError("no open session: initiate one first")
        header, keys, ratchet = state.ratchet.sending_step()
        message = WhisperMessage.create(
            ratchet_key=header.ratchet_key,
            counter=header.counter,
            previous_counter=header.previous_counter,
            ciphertext=keys.encrypt(plaintext),
            mac_key=keys.mac_key,
            sender_ik=self.identity.public,
            receiver_ik=state.their_identity,
            version=state.version,
        )
        self.open = _with_ratchet(state, ratchet, state.pending_prekey)
        pending = state.pending_prekey
        if pending is None:
            return MessageType.WHISPER, message.serialize()
        prekey_message = PreKeyWhisperMessage(
            registration_id=self.registration_id,
            prekey_id=pending.prekey_id,
            signed_prekey_id=pending.signed_prekey_id,
            base_key=state.base_key,
            identity_key=self.identity.public,
            message=message,
            kem_prekey_id=pending.kem_prekey_id,
            kem_ciphertext=pending.kem_ciphertext,
        )
        return MessageType.PREKEY, prekey_message.serialize()

    def decrypt(
        self,
        message_type: MessageType,
        data: bytes,
        rng: Rng,
        prekeys: LocalPreKeys | None = None,
    ) -> Decrypted:
        """Decrypt a message from the peer; the sessions change only if it authenticates.

        Args:
            message_type: the envelope's type.
            data: the serialized message.
            rng: randomness for a DH ratchet step (at most one key pair is drawn).
            prekeys: our prekeys, needed for a PreKeyWhisperMessage that starts a session
                (a `LocalKemPreKeys` for one that starts a v4 session).

        Raises:
            DecryptionError: whatever went wrong (garbage, forgery, duplicate, bounds,
                unknown prekey), with no detail.
        """
        once = _OnceRng(rng)
        if message_type == MessageType.PREKEY:
            return self._decrypt_prekey(self._prekey_parser.parse(data), once, prekeys)
        if message_type != MessageType.WHISPER:
            raise DecryptionError()
        message = WhisperMessage.parse(data)
        for state in self._candidates(message.ratchet_key):
            try:
                plaintext, after = self._open_whisper(state, message, once)
            except DecryptionError:
                continue
            self._replace(state, after)
            return Decrypted(plaintext, state.their_identity)
        raise DecryptionError()

    def _decrypt_prekey(
        self, message: PreKeyWhisperMessage, rng: Rng, prekeys: LocalPreKeys | None
    ) -> Decrypted:
        for state in self._all():
            if state.base_key == message.base_key:  # a session this message already started
                if state.their_identity != message.identity_key:
                    raise DecryptionError()
                plaintext, after = self._open_whisper(state, message.message, rng)
                self._replace(state, after)
                return Decrypted(plaintext, state.their_identity)
        state = self._respond(message, prekeys)
        plaintext, after = self._open_whisper(state, message.message, rng)
        self._install(after)
        return Decrypted(
            plaintext,
            message.identity_key,
            message.prekey_id,
            message.kem_prekey_id,
            message.base_key,
        )

    def _respond(self, message: PreKeyWhisperMessage, prekeys: LocalPreKeys | None) -> SessionState:
        """X3DH (X3DH §3.4) or PQXDH (PQXDH §3.4) as the responder: a new session state, not
        yet installed."""
        if prekeys is None:
            raise DecryptionError()
        signed = prekeys.signed_prekey(message.signed_prekey_id)
        one_time = None
        if message.prekey_id is not None:
            one_time = prekeys.one_time_prekey(message.prekey_id)
            if one_time is None:  # used already: most likely a replayed message
                raise DecryptionError()
        if signed is None:
            raise DecryptionError()
        if message.version == 4:
            keys = self._respond_pq(message, prekeys, signed, one_time)
        else:
            try:
                keys = respond(
                    self.identity, signed, one_time, message.identity_key, message.base_key
                )
            except ValueError as exc:
                raise DecryptionError() from exc
        ratchet = RatchetState.responder(keys.root_key, signed)
        return SessionState(
            message.identity_key,
            message.base_key,
            ratchet,
            None,
            message.registration_id,
            message.version,
        )

    def _respond_pq(
        self,
        message: PreKeyWhisperMessage,
        prekeys: LocalPreKeys,
        signed: KeyPair,
        one_time: KeyPair | None,
    ) -> SessionKeys:
        """PQXDH's keys for a v4 message: decapsulate with the KEM prekey it names."""
        if message.kem_prekey_id is None or message.kem_ciphertext is None:
            raise DecryptionError()  # (parse guarantees both in v4)
        if not isinstance(prekeys, LocalKemPreKeys):
            raise DecryptionError()
        kem_seed = prekeys.kem_prekey(message.kem_prekey_id)
        if kem_seed is None:  # a used one-time KEM prekey: most likely a replay
            raise DecryptionError()
        return pqxdh.respond(
            self.identity,
            signed,
            one_time,
            kem_seed,
            message.identity_key,
            message.base_key,
            message.kem_ciphertext,
        )

    def _open_whisper(
        self, state: SessionState, message: WhisperMessage, rng: Rng
    ) -> tuple[bytes, SessionState]:
        """Decrypt against ``state``; return the plaintext and the state to commit."""
        if message.version != state.version:
            raise DecryptionError()
        header = Header(message.ratchet_key, message.counter, message.previous_counter)
        keys, ratchet = state.ratchet.receiving_step(header, rng, self.params)
        if not message.verify_mac(keys.mac_key, state.their_identity, self.identity.public):
            raise DecryptionError()
        plaintext = keys.decrypt(message.ciphertext)
        return plaintext, _with_ratchet(state, ratchet, None)

    # -- the record: open + archived -------------------------------------------------------

    def _all(self) -> list[SessionState]:
        return ([self.open] if self.open is not None else []) + self.archived

    def _candidates(self, ratchet_key: PublicKey) -> list[SessionState]:
        """Sessions to try: those that know this ratchet key first, then the others."""
        known: list[SessionState] = []
        others: list[SessionState] = []
        for state in self._all():
            (known if state.ratchet.has_receiving_chain(ratchet_key) else others).append(state)
        return known + others

    def _replace(self, before: SessionState, after: SessionState) -> None:
        if self.open is before:
            self.open = after
        else:
            self.archived = [after if s is before else s for s in self.archived]

    def _install(self, state: SessionState) -> None:
        if self.open is not None:
            self._archive(self.open)
        self.open = state

    def _archive(self, state: SessionState) -> None:
        self.archived = [state, *self.archived][:MAX_ARCHIVED_SESSIONS]

    # -- storage ---------------------------------------------------------------------------

    def serialize(self) -> bytes:
        """The sessions as bytes for the client store (msgpack, `SESSION_VERSION` first).

        Our identity key is not included: the store keeps it once, and `parse` takes it.
        """
        states = [_state_record(s) for s in self._all()]
        record = [SESSION_VERSION, self.registration_id, self.open is not None, states]
        return bytes(msgpack.packb(record, use_bin_type=True))

    @classmethod
    def parse(
        cls, data: bytes, identity: KeyPair, params: RatchetParams = DEFAULT_PARAMS
    ) -> Session:
        """Invert `serialize`.

        Raises:
            ValueError: not a serialized session of version `SESSION_VERSION`.
        """
        try:
            version, registration_id, has_open, records = msgpack.unpackb(data, raw=False)
            if version != SESSION_VERSION:
                raise ValueError(f"session version {version}, expected {SESSION_VERSION}")
            states = [_state_from_record(r) for r in records]
        except (TypeError, ValueError, msgpack.UnpackException) as exc:
            raise ValueError("not a serialized session") from exc
        session = cls(identity, registration_id, params)
        if has_open:
            session.open, states = states[0], states[1:]
        session.archived = states
        return session


class _OnceRng:
    """An rng that draws once per size and repeats it: trying several sessions for one
    message must not consume more randomness than the one that succeeds uses."""

    def __init__(self, rng: Callable[[int], bytes]) -> None:
        self._rng = rng
        self._drawn: dict[int, bytes] = {}

    def __call__(self, n: int) -> bytes:
        if n not in self._drawn:
            self._drawn[n] = self._rng(n)
        return self._drawn[n]


def _with_ratchet(
    state: SessionState, ratchet: RatchetState, pending: PendingPreKey | None
) -> SessionState:
    """``replace(state, ratchet=ratchet, pending_prekey=pending)``, without its overhead."""
    return SessionState(
        state.their_identity,
        state.base_key,
        ratchet,
        pending,
        state.their_registration_id,
        state.version,
    )


def _state_record(state: SessionState) -> list[object]:
    """``[their_identity, base_key, ratchet, pending, their_registration_id, version]``, where
    ``pending`` is ``nil`` or ``[prekey_id, signed_prekey_id, kem_prekey_id, kem_ciphertext]``
    (the last two ``nil`` in v3)."""
    pending = state.pending_prekey
    return [
        state.their_identity.raw,
        state.base_key.raw,
        state.ratchet.serialize(),
        None
        if pending is None
        else [
            pending.prekey_id,
            pending.signed_prekey_id,
            pending.kem_prekey_id,
            pending.kem_ciphertext,
        ],
        state.their_registration_id,
        state.version,
    ]


def _state_from_record(record: list[object]) -> SessionState:
    their_identity, base_key, ratchet, pending, registration_id, version = record
    if not isinstance(their_identity, bytes) or not isinstance(base_key, bytes):
        raise TypeError("keys are bytes")
    if not isinstance(ratchet, bytes) or not isinstance(registration_id, int):
        raise TypeError("bad session record")
    if version not in (3, 4):
        raise ValueError("a session is of version 3 or 4")
    pending_prekey = None
    if pending is not None:
        if not isinstance(pending, list):
            raise TypeError("bad pending prekey")
        prekey_id, signed_prekey_id, kem_prekey_id, kem_ciphertext = pending
        pending_prekey = PendingPreKey(prekey_id, signed_prekey_id, kem_prekey_id, kem_ciphertext)
    return SessionState(
        PublicKey(their_identity),
        PublicKey(base_key),
        RatchetState.parse(ratchet),
        pending_prekey,
        registration_id,
        version,
    )
