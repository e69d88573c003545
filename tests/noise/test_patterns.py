"""Protocol names, patterns and modifiers in canonical form (Noise §7, §8, §9, §10.2)."""

from __future__ import annotations

import pytest

from tidings.noise import HandshakePattern, parse_protocol_name


def test_parse_plain_name() -> None:
    protocol = parse_protocol_name("Noise_XX_25519_ChaChaPoly_BLAKE2s")
    assert (protocol.dh, protocol.cipher, protocol.hash) == ("25519", "ChaChaPoly", "BLAKE2s")
    assert protocol.pattern.messages == (("e",), ("e", "ee", "s", "es"), ("s", "se"))
    assert not protocol.pattern.uses_psk()


@pytest.mark.parametrize(
    ("name", "messages"),
    [
        ("NNpsk0", (("psk", "e"), ("e", "ee"))),
        ("NNpsk2", (("e",), ("e", "ee", "psk"))),
        ("IKpsk1", (("e", "es", "s", "ss", "psk"), ("e", "ee", "se"))),
        ("IKpsk2", (("e", "es", "s", "ss"), ("e", "ee", "se", "psk"))),
        ("XXpsk3", (("e",), ("e", "ee", "s", "es"), ("s", "se", "psk"))),
        ("XXpsk0+psk3", (("psk", "e"), ("e", "ee", "s", "es"), ("s", "se", "psk"))),
    ],
)
def test_psk_modifiers(name: str, messages: tuple[tuple[str, ...], ...]) -> None:
    pattern = parse_protocol_name(f"Noise_{name}_25519_AESGCM_SHA256").pattern
    assert pattern.name == name
    assert pattern.messages == messages
    assert pattern.psk_count == name.count("psk")


def test_fallback_is_bob_initiated_in_canonical_form() -> None:
    pattern = parse_protocol_name("Noise_XXfallback_25519_AESGCM_SHA256").pattern
    assert pattern.name == "XXfallback"
    # Alice's "-> e" is now the responder's pre-message; Bob's "<- e, ee, s, es" is sent by
    # the initiator, so es (Alice e, Bob s) becomes se (initiator s, responder e).
    assert pattern.initiator_pre == ()
    assert pattern.responder_pre == ("e",)
    assert pattern.messages == (("e", "ee", "s", "se"), ("s", "es"))


@pytest.mark.parametrize(
    "name",
    [
        "Noise_XX_25519_AESGCM",
        "Noise_KK_25519_AESGCM_SHA256",
        "Noise_XX_448_AESGCM_SHA256",
        "Noise_XX_25519_DES_SHA256",
        "Noise_XX_25519_AESGCM_MD5",
        "Noise_XXpsk9_25519_AESGCM_SHA256",
        "Noise_XXbogus_25519_AESGCM_SHA256",
        "Noise_IKfallback_25519_AESGCM_SHA256",
        "NoiseXX_25519_AESGCM_SHA256",
    ],
)
def test_unsupported_or_malformed_names(name: str) -> None:
    with pytest.raises(ValueError):
        parse_protocol_name(name)


def test_pattern_validates_on_construction() -> None:
    with pytest.raises(ValueError):
        HandshakePattern("X", (), (), ())
    with pytest.raises(ValueError):
        HandshakePattern("X", ("ee",), (), (("e",),))
    with pytest.raises(ValueError):
        HandshakePattern("X", (), (), (("e", "zz"),))
