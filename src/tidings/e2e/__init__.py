"""End-to-end encryption: X3DH/PQXDH and the Double Ratchet in libsignal's message format.

Sans-I/O throughout (Convention §1–2): no clock, no OS randomness (``rng(n)`` is injected; the
one exception is ML-KEM encapsulation, whose randomness `cryptography` draws itself — PQXDH takes
the encapsulate function as an argument so tests can pin it), no storage (states serialize to
bytes for the client store).

Modules: `keys` (X25519 key pairs, 0x05-prefixed public keys, Ed25519-based identity keys),
`xeddsa` (verifying libsignal's signatures), `x3dh` (key agreement), `kem` (ML-KEM-1024),
`pqxdh` (X3DH plus an ML-KEM-1024 encapsulation), `prekeys` (signed, one-time and KEM prekeys and
their bundles), `bundle` (a relay bundle → a verified session bundle), `ratchet` (the Double
Ratchet's state and key schedule), `message` (v3 WhisperMessage / PreKeyWhisperMessage and the v4
PQXDH prekey message), `padding`, `session` (all sessions with one peer device, v3 and v4),
`fingerprint` (Signal safety numbers), `envelope` (the type byte of a payload), `senderkey` and
`senderkey_wire` (libsignal's sender keys: one ciphertext per group message). The client
(`tidings.client.crypto`) runs them; the relay never imports this package.

Errors: peer input fails with the one `tidings.errors.DecryptionError`; a prekey bundle whose
signature does not verify with `BundleError` (a `RemoteProtocolError`); API misuse with
`NoSessionError` or `SendingChainMissingError`.
"""

from .fingerprint import (
    DEFAULT_ITERATIONS,
    FINGERPRINT_VERSION,
    SAFETY_NUMBER_DIGITS,
    SCANNABLE_FINGERPRINT_LEN,
    SCANNABLE_VERSION,
    FingerprintParsingError,
    FingerprintVersionMismatchError,
    compare_scannable,
    format_safety_number,
    safety_number,
    scannable_fingerprint,
)
from .kem import (
    KEM_CIPHERTEXT_LEN,
    KEM_PUBLIC_KEY_LEN,
    KEM_SEED_LEN,
    KEM_SHARED_SECRET_LEN,
    Encapsulate,
    check_kem_public_key,
    check_mlkem_support,
    decapsulate,
    encapsulate,
    generate_kem_keypair,
    kem_public_key,
)
from .keys import (
    KEY_LEN,
    SERIALIZED_PUBLIC_KEY_LEN,
    IdentityKeyPair,
    KeyPair,
    PublicKey,
    Rng,
    edwards_to_montgomery,
    montgomery_to_edwards,
)
from .message import MAC_LEN, VERSION_BYTE, PreKeyWhisperMessage, WhisperMessage
from .padding import pad, unpad
from .pqxdh import PQXDH_INFO, PQXDHBundle, PQXDHInitiation
from .prekeys import (
    BUNDLE_VERSION,
    KEM_KEY_TYPE_MLKEM1024,
    MAX_BUNDLE_LEN,
    MAX_ONE_TIME_PREKEYS_PER_UPLOAD,
    PREKEY_KEY_TYPE_DJB,
    PREKEY_LOW_WATERMARK,
    SIGNATURE_LEN,
    SIGNED_PREKEY_ROTATION,
    KemPreKey,
    OneTimePreKey,
    PreKeyBundle,
    PrivatePreKey,
    Sign,
    SignedPreKey,
    Verify,
    generate_kem_prekey,
    generate_one_time_prekeys,
    generate_signed_prekey,
    one_time_prekeys_to_upload,
    signed_prekey_due,
    verify_bundle,
)
from .ratchet import (
    MAX_RECEIVING_CHAINS,
    MAX_SKIP_GAP,
    MAX_SKIP_PER_CHAIN,
    MAX_SKIPPED_TOTAL,
    Header,
    MessageKeys,
    RatchetParams,
    RatchetState,
    SendingChainMissingError,
)
from .session import (
    MAX_ARCHIVED_SESSIONS,
    Decrypted,
    LocalPreKeys,
    MessageType,
    NoSessionError,
    Session,
)
from .x3dh import BundleError, SessionKeys, X3DHBundle, derive_session_keys
from .xeddsa import verify as xeddsa_verify

__all__ = [
    "BUNDLE_VERSION",
    "DEFAULT_ITERATIONS",
    "FINGERPRINT_VERSION",
    "KEM_CIPHERTEXT_LEN",
    "KEM_KEY_TYPE_MLKEM1024",
    "KEM_PUBLIC_KEY_LEN",
    "KEM_SEED_LEN",
    "KEM_SHARED_SECRET_LEN",
    "KEY_LEN",
    "MAC_LEN",
    "MAX_ARCHIVED_SESSIONS",
    "MAX_BUNDLE_LEN",
    "MAX_ONE_TIME_PREKEYS_PER_UPLOAD",
    "MAX_RECEIVING_CHAINS",
    "MAX_SKIPPED_TOTAL",
    "MAX_SKIP_GAP",
    "MAX_SKIP_PER_CHAIN",
    "PQXDH_INFO",
    "PREKEY_KEY_TYPE_DJB",
    "PREKEY_LOW_WATERMARK",
    "SAFETY_NUMBER_DIGITS",
    "SCANNABLE_FINGERPRINT_LEN",
    "SCANNABLE_VERSION",
    "SERIALIZED_PUBLIC_KEY_LEN",
    "SIGNATURE_LEN",
    "SIGNED_PREKEY_ROTATION",
    "VERSION_BYTE",
    "BundleError",
    "Decrypted",
    "Encapsulate",
    "FingerprintParsingError",
    "FingerprintVersionMismatchError",
    "Header",
    "IdentityKeyPair",
    "KemPreKey",
    "KeyPair",
    "LocalPreKeys",
    "MessageKeys",
    "MessageType",
    "NoSessionError",
    "OneTimePreKey",
    "PQXDHBundle",
    "PQXDHInitiation",
    "PreKeyBundle",
    "PreKeyWhisperMessage",
    "PrivatePreKey",
    "PublicKey",
    "RatchetParams",
    "RatchetState",
    "Rng",
    "SendingChainMissingError",
    "Session",
    "SessionKeys",
    "Sign",
    "SignedPreKey",
    "Verify",
    "WhisperMessage",
    "X3DHBundle",
    "check_kem_public_key",
    "check_mlkem_support",
    "compare_scannable",
    "decapsulate",
    "derive_session_keys",
    "edwards_to_montgomery",
    "encapsulate",
    "format_safety_number",
    "generate_kem_keypair",
    "generate_kem_prekey",
    "generate_one_time_prekeys",
    "generate_signed_prekey",
    "kem_public_key",
    "montgomery_to_edwards",
    "one_time_prekeys_to_upload",
    "pad",
    "safety_number",
    "scannable_fingerprint",
    "signed_prekey_due",
    "unpad",
    "verify_bundle",
    "xeddsa_verify",
]

# PQXDH sessions: the relay bundle adapter, v4 messages, the KEM prekey store. `BundleError`
# (above) is now the one bundle error: a `RemoteProtocolError`, raised by `bundle_for_session`.
from .bundle import bundle_for_session, verify_identity_signature
from .envelope import EnvelopeType, open_envelope, seal_envelope
from .fingerprint import safety_number_for_keys
from .message import KEM_CIPHERTEXT_FIELD_LEN, VERSION_BYTE_PQ
from .session import LocalKemPreKeys

__all__ += [
    "KEM_CIPHERTEXT_FIELD_LEN",
    "VERSION_BYTE_PQ",
    "EnvelopeType",
    "LocalKemPreKeys",
    "bundle_for_session",
    "open_envelope",
    "safety_number_for_keys",
    "seal_envelope",
    "verify_identity_signature",
]
