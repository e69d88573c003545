"""Noise Protocol Framework (revision 34) and the Noise Pipes handshake of tidings.

Two layers, both sans-I/O (no sockets, no clock, randomness injected as ``rng(n)``):

* the general core: `CipherState`, `SymmetricState` and `HandshakeState` for the patterns
  NN, XX and IK with the ``pskN`` and ``fallback`` modifiers, over 25519, AESGCM or
  ChaChaPoly, and SHA256, SHA512, BLAKE2s or BLAKE2b; checked against the public vectors;
* Noise Pipes (`PipesInitiator`, `PipesResponder`): XX, IK and the XXfallback switch over
  ``25519_AESGCM_SHA256``, ending in a `NoiseTransport`. The wire format is documented in
  `tidings.noise.pipes`.

Errors: peer input fails with `tidings.errors.HandshakeError` (handshake) or
`tidings.errors.DecryptionError` (transport); local misuse of limits with
`MessageTooLargeError`; running out of nonces with `NonceExhaustedError`.
"""

from .cipher import (
    MAX_MESSAGE,
    MAX_NONCE,
    TAG_LEN,
    CipherState,
    MessageTooLargeError,
    NonceExhaustedError,
)
from .handshake import PSK_LEN, HandshakeState
from .keys import DHLEN, Rng, fingerprint, generate_keypair, public_key
from .patterns import HandshakePattern, NoiseProtocol, parse_protocol_name
from .pipes import (
    MAX_HANDSHAKE_PAYLOAD,
    HandshakeTag,
    PipesInitiator,
    PipesPattern,
    PipesResponder,
)
from .symmetric import HashFunctions, SymmetricState
from .transport import MAX_PLAINTEXT, NoiseTransport

__all__ = [
    "DHLEN",
    "MAX_HANDSHAKE_PAYLOAD",
    "MAX_MESSAGE",
    "MAX_NONCE",
    "MAX_PLAINTEXT",
    "PSK_LEN",
    "TAG_LEN",
    "CipherState",
    "HandshakePattern",
    "HandshakeState",
    "HandshakeTag",
    "HashFunctions",
    "MessageTooLargeError",
    "NoiseProtocol",
    "NoiseTransport",
    "NonceExhaustedError",
    "PipesInitiator",
    "PipesPattern",
    "PipesResponder",
    "Rng",
    "SymmetricState",
    "fingerprint",
    "generate_keypair",
    "parse_protocol_name",
    "public_key",
]
