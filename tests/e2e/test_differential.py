"""Differential tests: our X3DH and Double Ratchet against Syndace's ``x3dh`` and
``doubleratchet`` (MIT; dev dependencies only), configured as libsignal v3.

The independent side lives in ``_syndace.py`` and imports nothing from ``tidings.e2e``. Each
test below puts one of ours against one of Syndace's; none compares an implementation with
itself.

**What is Syndace's** (unmodified code paths, only parameters filled in):

* X3DH (``x3dh.BaseState``): the DH set ``DH1..DH3 [DH4]`` on both sides,
  ``HKDF-SHA256(salt = 0, ikm = 0xFF*32 || DH…, info = "WhisperText")``, the identity key
  derivation from its seed, and the signed-prekey signature (sign and verify). Public keys
  are encoded as libsignal's ``0x05 || u`` (what is signed, and Syndace's X3DH AD).
* Double Ratchet (``doubleratchet.DoubleRatchet``): DH ratchet, root chain
  (``recommended.kdf_hkdf``, info ``WhisperRatchet``), message chains
  (``recommended.kdf_separate_hmacs`` with the constant ``0x02 0x01``: next chain key
  ``HMAC(ck, 0x02)``, message key ``HMAC(ck, 0x01)``), skipped-key handling, and the AEAD
  (``recommended.aead_aes_hmac``, info ``WhisperMessageKeys``: HKDF to AES-256 key || HMAC
  key || IV, AES-256-CBC with PKCS#7, HMAC-SHA256 over ``AD || ciphertext``).

**What is adapter** (libsignal conventions Syndace's configuration surface cannot express):

1. *Tag length*: libsignal truncates the HMAC to 8 bytes, Syndace's AEAD appends all 32.
   ``WhisperAEAD.encrypt`` truncates Syndace's output; ``WhisperAEAD.decrypt`` checks the
   8 bytes against the tag it computes with Syndace's crypto provider, then calls Syndace's
   own ``decrypt`` with the full tag.
2. *What the MAC covers*: libsignal MACs ``senderIK33 || receiverIK33 || 0x33 ||
   protobuf{ratchetKey, counter, previousCounter, ciphertext}``; Syndace MACs
   ``_build_associated_data(ad, header) || ciphertext``. Since the ciphertext is the
   protobuf's last field, the AD is the MAC input up to and including the ciphertext's
   field tag and length; the header part is encoded by ``WhisperDoubleRatchet`` from
   Syndace's own header, the identities and the ciphertext length (known to a sender before
   encrypting: CBC with PKCS#7) are passed in. Syndace's X3DH AD is ``IK_A || IK_B`` in both
   directions, libsignal's is sender-first, so the adapter swaps it for Bob→Alice.
3. *previousCounter*: libsignal sends the index of the previous chain's last message
   (``max(PN, 1) - 1``), Syndace's header carries the count ``PN``. The codec maps
   ``PN = previousCounter + 1``; exact because every chain but a party's first carries at
   least one message in a two-party session, and Syndace ignores the field on the first.
4. *Wire format*: ``_syndace.py`` has its own protobuf codec for WhisperMessage and
   PreKeyWhisperMessage, so the byte layout of our ``message.py`` is checked too (the MAC
   only verifies if both sides encode the header identically).
5. *Determinism*: Syndace draws keys from ``secrets`` / the OS; the tests patch
   ``x3dh.base_state.secrets`` with a seeded stand-in and subclass the Curve25519 DH
   ratchet to draw from a seeded generator.

**Where the implementations differ (pinned, not papered over)**:

* *Signature sign bit*. Our identity keys are Ed25519 keys whose Edwards sign bit travels in
  ``sig[63]``'s top bit, as libsignal's ``curve25519_verify`` reads it. Syndace implements
  XEdDSA strictly: it verifies against the Edwards key *with sign bit 0*. So Syndace accepts
  our bundles only when our identity's Ed25519 public key has sign bit 0 (half of them),
  and the Syndace-initiates tests pick such identities; `test_sign_bit_convention` pins the
  difference. Syndace's signatures (sign bit 0) verify with ours.
* X3DH's second output, the responder's initial chain key ``CK`` (bytes 32..63 of our
  64-byte HKDF), is never produced by Syndace (it derives 32 bytes): only ``RK`` is
  compared. It is used by neither ratchet.
* Resource bounds are not compared: our default keeps libsignal's 5 receiving chains, Syndace
  keeps the skipped keys of any number of chains up to a total, and the random wire here
  delays messages across more DH steps than 5 (with our default, such a late message is a
  `DecryptionError` by design). Both sides get bounds the conversations stay within
  (`OUR_BOUNDS`, ``_syndace.MAX_SKIPPED``), so what is compared is the algorithm.
"""

from __future__ import annotations

import random

import pytest
import x3dh
import x3dh.base_state
from doubleratchet.aead import AuthenticationFailedException

from tidings.e2e import (
    IdentityKeyPair,
    KeyPair,
    MessageType,
    PublicKey,
    RatchetParams,
    Session,
    X3DHBundle,
)
from tidings.e2e.x3dh import initiate, respond

from . import _syndace
from ._support import DictPreKeys, seeded_rng

SEEDS = range(24)
CONVERSATION_LENGTH = 300
#: Our default keeps libsignal's 5 receiving chains; the random wire here delays messages
#: across more DH steps than that, and Syndace keeps skipped keys of any number of chains
#: (up to a total), so both get bounds the conversation stays within.
OUR_BOUNDS = RatchetParams(max_receiving_chains=64)


@pytest.fixture(autouse=True)
def seeded_syndace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Syndace's X3DH draws from a seeded stand-in for ``secrets`` (see the docstring)."""
    monkeypatch.setattr(x3dh.base_state, "secrets", _syndace.SeededSecrets(random.Random(99)))


def _identity_with_sign_bit(rng: random.Random, sign: int) -> IdentityKeyPair:
    while True:
        identity = IdentityKeyPair(rng.randbytes(32))
        if identity.ed25519_public[31] >> 7 == sign:
            return identity


def _our_bundle(
    identity: IdentityKeyPair, spk: KeyPair, opk: KeyPair | None
) -> tuple[X3DHBundle, x3dh.Bundle]:
    """Bob's bundle, ours and as Syndace sees it."""
    signature = identity.sign(spk.public.serialize())
    ours = X3DHBundle(
        2222, identity.public, 1, spk.public, signature, None if opk is None else 7,
        None if opk is None else opk.public,
    )  # fmt: skip
    theirs = x3dh.Bundle(
        identity_key=identity.public.raw,
        signed_pre_key=spk.public.raw,
        signed_pre_key_sig=signature,
        pre_keys=frozenset() if opk is None else frozenset({opk.public.raw}),
    )
    return ours, theirs


# -- X3DH -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_identity_keys_agree(seed: int) -> None:
    """Same Ed25519 seed, same X25519 identity key (RFC 8032 clamp on both sides)."""
    identity_seed = random.Random(seed).randbytes(32)
    assert (
        _syndace.x3dh_state(identity_seed).bundle.identity_key
        == IdentityKeyPair(identity_seed).public.raw
    )


@pytest.mark.parametrize("with_one_time", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
async def test_x3dh_syndace_responds(seed: int, with_one_time: bool) -> None:
    """Syndace is Bob: our initiate() and our respond() (with Bob's keys, taken from Syndace's
    state) both yield Syndace's shared secret as the root key."""
    rng = random.Random(seed)
    bob_seed = rng.randbytes(32)
    bob = _syndace.x3dh_state(bob_seed)
    bob.generate_pre_keys(3)
    spk_pub = bob.bundle.signed_pre_key
    opk_pub = sorted(bob.bundle.pre_keys)[rng.randrange(3)] if with_one_time else None
    bundle = X3DHBundle(
        2222, PublicKey(bob.bundle.identity_key), 1, PublicKey(spk_pub),
        bob.bundle.signed_pre_key_sig, 7 if opk_pub else None,
        PublicKey(opk_pub) if opk_pub else None,
    )  # fmt: skip
    alice = IdentityKeyPair(rng.randbytes(32)).dh_key_pair
    base = KeyPair.from_private(rng.randbytes(32))

    ours = initiate(alice, base, bundle)  # also verifies Syndace's signature with ours

    header = x3dh.Header(alice.public.raw, base.public.raw, spk_pub, opk_pub)
    secret, ad, spk = await bob.get_shared_secret_passive(header, require_pre_key=False)
    assert ours.root_key == secret
    assert ad == alice.public.serialize() + bundle.identity_key.serialize()

    one_time = None
    if opk_pub is not None:
        privates = [KeyPair.from_private(p) for p in bob.model.pre_keys]
        one_time = next(k for k in privates if k.public.raw == opk_pub)
    bob_ours = IdentityKeyPair(bob_seed).dh_key_pair
    theirs = respond(bob_ours, KeyPair.from_private(spk.priv), one_time, alice.public, base.public)
    assert theirs.root_key == secret


@pytest.mark.parametrize("with_one_time", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
async def test_x3dh_syndace_initiates(seed: int, with_one_time: bool) -> None:
    """Syndace is Alice against our bundle; our respond() yields its shared secret."""
    rng = random.Random(seed)
    bob = _identity_with_sign_bit(rng, 0)
    spk, opk = KeyPair.from_private(rng.randbytes(32)), KeyPair.from_private(rng.randbytes(32))
    _, theirs = _our_bundle(bob, spk, opk if with_one_time else None)
    alice = _syndace.x3dh_state(rng.randbytes(32))

    secret, ad, header = await alice.get_shared_secret_active(theirs, require_pre_key=False)

    assert header.pre_key == (opk.public.raw if with_one_time else None)
    ours = respond(
        bob.dh_key_pair,
        spk,
        opk if with_one_time else None,
        PublicKey(header.identity_key),
        PublicKey(header.ephemeral_key),
    )
    assert ours.root_key == secret
    assert ad == PublicKey(header.identity_key).serialize() + bob.public.serialize()


@pytest.mark.parametrize("seed", SEEDS)
async def test_sign_bit_convention(seed: int) -> None:
    """Syndace verifies our signed prekey iff our Ed25519 key's sign bit is 0 (see docstring)."""
    rng = random.Random(seed)
    alice = _syndace.x3dh_state(rng.randbytes(32))
    spk = KeyPair.from_private(rng.randbytes(32))
    for sign in (0, 1):
        bob = _identity_with_sign_bit(rng, sign)
        ours, theirs = _our_bundle(bob, spk, None)
        assert ours.verify_signature()  # libsignal's convention: both verify
        if sign == 0:
            await alice.get_shared_secret_active(theirs, require_pre_key=False)
        else:
            with pytest.raises(x3dh.KeyAgreementException, match="signature"):
                await alice.get_shared_secret_active(theirs, require_pre_key=False)


# -- Double Ratchet, message level ------------------------------------------------------------

Wire = tuple[int, bytes]


class Conversation:
    """One of our Sessions and a Syndace peer, with a reordering in-memory wire."""

    def __init__(self, seed: int, syndace_initiates: bool) -> None:
        self.rng = random.Random(seed)
        self.our_rng = seeded_rng(seed + 1000)
        self.syndace_initiates = syndace_initiates
        self.prekeys = DictPreKeys()
        if syndace_initiates:
            identity = _identity_with_sign_bit(self.rng, 0)
        else:
            identity = IdentityKeyPair(self.rng.randbytes(32))
        registration_id = 2222 if syndace_initiates else 1111
        self.ours = Session(identity.dh_key_pair, registration_id, params=OUR_BOUNDS)
        self.peer = _syndace.SyndacePeer(self.rng.randbytes(32), random.Random(seed + 2000), 3333)
        self.identity = identity

    async def start(self) -> None:
        if self.syndace_initiates:
            spk = KeyPair.generate(self.our_rng)
            opk = KeyPair.generate(self.our_rng)
            self.prekeys.signed[1] = spk
            self.prekeys.one_time[7] = opk
            _, theirs = _our_bundle(self.identity, spk, opk)
            await self.peer.initiate(theirs, lambda _: 7, 1)
        else:
            self.peer.x3dh.generate_pre_keys(5)
            ids = self.peer.prekey_ids()
            prekey_id = self.rng.choice(sorted(ids))
            bundle = self.peer.x3dh.bundle
            ours = X3DHBundle(
                3333, PublicKey(bundle.identity_key), 1, PublicKey(bundle.signed_pre_key),
                bundle.signed_pre_key_sig, prekey_id, PublicKey(ids[prekey_id]),
            )  # fmt: skip
            self.ours.initiate(ours, self.our_rng)

    def ours_decrypt(self, wire: Wire) -> bytes:
        result = self.ours.decrypt(MessageType(wire[0]), wire[1], self.our_rng, self.prekeys)
        assert result.their_identity.raw == self.peer.identity
        return result.plaintext


async def _run(conversation: Conversation, length: int) -> tuple[int, int, int]:
    """A seeded random conversation: random senders (the responder once it has received),
    random plaintext lengths, deliveries in random order with random delays; every message
    is decrypted by the other implementation and must give back its plaintext.

    Returns how many messages each side decrypted and how many arrived out of order.
    """
    rng = conversation.rng
    await conversation.start()
    initiator_is_ours = not conversation.syndace_initiates
    in_flight: list[tuple[bool, int, Wire, bytes]] = []  # (from ours?, index, wire, plaintext)
    received = {True: 0, False: 0}  # by receiving side: ours?
    last_index = {True: -1, False: -1}
    out_of_order = 0
    responder_can_send = False
    sender_is_ours = initiator_is_ours
    sent = 0

    async def deliver() -> None:
        nonlocal responder_can_send, out_of_order
        from_ours, index, wire, plaintext = in_flight.pop(rng.randrange(len(in_flight)))
        if from_ours:
            got = await conversation.peer.decrypt(*wire)
        else:
            got = conversation.ours_decrypt(wire)
        assert got == plaintext, f"message {index} from {'ours' if from_ours else 'Syndace'}"
        receiver_is_ours = not from_ours
        received[receiver_is_ours] += 1
        out_of_order += index < last_index[receiver_is_ours]
        last_index[receiver_is_ours] = max(last_index[receiver_is_ours], index)
        if receiver_is_ours != initiator_is_ours:
            responder_can_send = True

    while sent < length:
        if rng.random() < 0.25:  # change direction
            sender_is_ours = not sender_is_ours
        if sender_is_ours != initiator_is_ours and not responder_can_send:
            sender_is_ours = initiator_is_ours
        for _ in range(rng.choice([1, 1, 2, 3, 5, 8])):  # a burst
            plaintext = rng.randbytes(rng.choice([0, 1, 15, 16, 17, rng.randrange(400)]))
            if sender_is_ours:
                kind, data = conversation.ours.encrypt(plaintext)
                wire: Wire = (int(kind), data)
            else:
                wire = await conversation.peer.encrypt(plaintext)
            in_flight.append((sender_is_ours, sent, wire, plaintext))
            sent += 1
        while in_flight and rng.random() < 0.6:  # some stay in flight for a while
            await deliver()
    while in_flight:
        await deliver()
    return received[False], received[True], out_of_order


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_ours_initiates_syndace_responds(seed: int) -> None:
    conversation = Conversation(seed, syndace_initiates=False)
    by_syndace, by_ours, out_of_order = await _run(conversation, CONVERSATION_LENGTH)
    assert by_syndace + by_ours >= CONVERSATION_LENGTH
    assert by_syndace > 50 and by_ours > 50 and out_of_order > 20


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_syndace_initiates_ours_responds(seed: int) -> None:
    conversation = Conversation(seed, syndace_initiates=True)
    by_syndace, by_ours, out_of_order = await _run(conversation, CONVERSATION_LENGTH)
    assert by_syndace + by_ours >= CONVERSATION_LENGTH
    assert by_syndace > 50 and by_ours > 50 and out_of_order > 20


async def test_syndace_rejects_a_tampered_header() -> None:
    """The MAC really covers the header as both sides encode it: change our WhisperMessage's
    previousCounter (which selects no key here: same chain) and Syndace's AEAD refuses it."""
    conversation = Conversation(5, syndace_initiates=False)
    await conversation.start()
    first = conversation.ours.encrypt(b"hello")
    assert await conversation.peer.decrypt(*first) == b"hello"
    kind, data = conversation.ours.encrypt(b"again")
    fields = _syndace.parse_prekey(data)
    message, _ = _syndace.parse_whisper(fields["message"])
    forged_header = message.header._replace(previous_sending_chain_length=6)
    forged = _syndace.encode_prekey(
        message=_syndace.encode_whisper(message._replace(header=forged_header)),
        **{k: v for k, v in fields.items() if k != "message"},
    )
    with pytest.raises(AuthenticationFailedException):
        await conversation.peer.decrypt(kind, forged)
    assert await conversation.peer.decrypt(kind, data) == b"again"
