"""Noise handshake patterns, their modifiers and protocol names (Noise §7, §8, §9, §10.2).

A `HandshakePattern` is always held in *canonical* form: the initiator is the party that
sends message 0, even-numbered messages go initiator→responder, and ``"es"`` means DH of the
initiator's ephemeral with the responder's static. The ``fallback`` modifier (Noise §10.2)
produces a Bob-initiated pattern; it is converted to canonical form here, so the
HandshakeState never needs to know about Alice and Bob.

Supported: the base patterns NN, NK, XX and IK; the modifiers ``psk0``…``pskN`` (Noise §9.3) and
``fallback`` (Noise §10.2), combined with ``+`` (e.g. ``XXpsk0+psk3``); the DH ``25519``;
the ciphers ``AESGCM`` and ``ChaChaPoly``; the hashes ``SHA256``, ``SHA512``, ``BLAKE2s``
and ``BLAKE2b``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .cipher import CIPHERS
from .symmetric import HASHES

__all__ = ["PATTERNS", "TOKENS", "HandshakePattern", "NoiseProtocol", "parse_protocol_name"]

#: The tokens of a message pattern (Noise §7.1, §9.1).
TOKENS = frozenset({"e", "s", "ee", "es", "se", "ss", "psk"})

_Tokens = tuple[str, ...]

# es <-> se when the initiator role moves from Alice to Bob (Noise §7.2, §10.2).
_SWAP_ROLES = {"es": "se", "se": "es"}


@dataclass(frozen=True, slots=True)
class HandshakePattern:
    """A handshake pattern in canonical form (Noise §7).

    Attributes:
        name: the pattern part of a protocol name, e.g. ``"XX"``, ``"IKpsk2"``, ``"XXfallback"``.
        initiator_pre: the initiator's pre-message tokens (``"e"``/``"s"``).
        responder_pre: the responder's pre-message tokens.
        messages: the message patterns; message ``i`` is sent by the initiator iff ``i`` is even.

    Raises:
        ValueError: an unknown token, a non-key token in a pre-message, or no messages.
    """

    name: str
    initiator_pre: _Tokens
    responder_pre: _Tokens
    messages: tuple[_Tokens, ...]

    def __post_init__(self) -> None:
        if not self.messages:
            raise ValueError("a noise pattern has at least one message")
        for pre in (self.initiator_pre, self.responder_pre):
            if not set(pre) <= {"e", "s"}:
                raise ValueError("noise pre-messages hold only 'e' and 's'")
        for message in self.messages:
            if not set(message) <= TOKENS:
                raise ValueError(f"unknown noise token in {message!r}")

    @property
    def psk_count(self) -> int:
        """How many ``psk`` tokens the pattern holds, i.e. how many PSKs it consumes."""
        return sum(message.count("psk") for message in self.messages)

    def with_modifier(self, modifier: str) -> HandshakePattern:
        """This pattern with one modifier applied (Noise §9.3, §10.2).

        Raises:
            ValueError: unknown modifier, or one that cannot apply to this pattern.
        """
        match = re.fullmatch(r"psk(\d+)", modifier)
        if match:
            return self._with_psk(int(match.group(1)), modifier)
        if modifier == "fallback":
            return self._with_fallback()
        raise ValueError(f"unknown noise pattern modifier {modifier!r}")

    def _with_psk(self, position: int, modifier: str) -> HandshakePattern:
        # Noise §9.3: psk0 opens the first message, pskN (N >= 1) closes message N-1.
        if position > len(self.messages):
            raise ValueError(f"{modifier} needs at least {position} messages")
        messages = list(self.messages)
        if position == 0:
            messages[0] = ("psk", *messages[0])
        else:
            messages[position - 1] = (*messages[position - 1], "psk")
        return HandshakePattern(
            self.name + _join(self.name, modifier),
            self.initiator_pre,
            self.responder_pre,
            tuple(messages),
        )

    def _with_fallback(self) -> HandshakePattern:
        # Noise §10.2: Alice's first message becomes her pre-message, and Bob, who now sends
        # first, becomes the initiator. In canonical form Alice is the responder, so the
        # pre-messages change sides and "es"/"se" (first letter = Alice) swap.
        first = self.messages[0]
        if not set(first) <= {"e", "s"} or self.initiator_pre or len(self.messages) < 2:
            raise ValueError("fallback needs a first message of only 'e'/'s' and no initiator pre")
        messages = tuple(tuple(_SWAP_ROLES.get(t, t) for t in m) for m in self.messages[1:])
        return HandshakePattern(
            self.name + _join(self.name, "fallback"),
            self.responder_pre,
            first,
            messages,
        )

    def uses_psk(self) -> bool:
        """Whether this is a PSK handshake, where every ``e`` also calls MixKey (Noise §9.2)."""
        return self.psk_count > 0


def _join(name: str, modifier: str) -> str:
    """The separator before a modifier: none after the base name, ``+`` after a modifier."""
    return modifier if name.isupper() else "+" + modifier


#: The base patterns (Noise §7.4, §7.5).
PATTERNS: dict[str, HandshakePattern] = {
    "NN": HandshakePattern("NN", (), (), (("e",), ("e", "ee"))),
    "XX": HandshakePattern("XX", (), (), (("e",), ("e", "ee", "s", "es"), ("s", "se"))),
    "IK": HandshakePattern("IK", (), ("s",), (("e", "es", "s", "ss"), ("e", "ee", "se"))),
    # Noise §7.4: the responder's static key is known (pinned); the initiator stays anonymous.
    "NK": HandshakePattern("NK", (), ("s",), (("e", "es"), ("e", "ee"))),
}


@dataclass(frozen=True, slots=True)
class NoiseProtocol:
    """A parsed Noise protocol name (Noise §8).

    Attributes:
        name: the full name, e.g. ``"Noise_XXfallback_25519_AESGCM_SHA256"``.
        pattern: the handshake pattern, modifiers applied, in canonical form.
        dh: the DH function name (only ``"25519"``).
        cipher: the cipher name.
        hash: the hash name.
    """

    name: str
    pattern: HandshakePattern
    dh: str
    cipher: str
    hash: str


_NAME = re.compile(r"Noise_([A-Z][A-Z0-9]*)([a-z][a-z0-9+]*)?_([^_]+)_([^_]+)_([^_]+)")


def parse_protocol_name(name: str) -> NoiseProtocol:
    """Parse ``Noise_<pattern><modifiers>_<dh>_<cipher>_<hash>`` (Noise §8).

    Raises:
        ValueError: the name is malformed or names something unsupported.
    """
    match = _NAME.fullmatch(name)
    if match is None:
        raise ValueError(f"malformed noise protocol name {name!r}")
    base, modifiers, dh_name, cipher, hash_name = match.groups()
    if base not in PATTERNS:
        raise ValueError(f"unsupported noise pattern {base!r}")
    if dh_name != "25519" or cipher not in CIPHERS or hash_name not in HASHES:
        raise ValueError(f"unsupported noise functions in {name!r}")
    pattern = PATTERNS[base]
    for modifier in modifiers.split("+") if modifiers else ():
        pattern = pattern.with_modifier(modifier)
    return NoiseProtocol(name, pattern, dh_name, cipher, hash_name)
