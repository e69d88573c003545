"""Which outbox entries go sealed, and their frames (docs/protocol.md §14.2): pure decisions.

An entry for **another account** goes sealed when the credentials know that account's
unidentified-access key and this device holds a valid sender certificate (and it has not
fallen back already, and the relay accepts sealed sends): each of the recipient's devices gets
the payload the SEND would have carried, sealed with
:func:`~tidings.e2e.sealed_payload.seal_payload`
(the message id inside), in one SEALED_SEND with the entry's tag. The copies for this
account's other devices go as a normal authenticated SEND to this account (the relay checks
its device set as a note to self's) with the same message id — written
only once the sealed send is stored, so that a fallback to an unsealed SEND (ACCESS_DENIED) is
never taken for a duplicate of it by the relay (SEND is idempotent on the message id). The two
share nothing in the clear: the message id is inside the sealed copies.

Anything else goes as today: a normal SEND.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..e2e.certificates import SenderCertificate
from ..e2e.keys import IdentityKeyPair, PublicKey
from ..e2e.sealed_payload import seal_payload
from ..refs import DeviceRef
from ..wire import SealedDevice, SealedSend, Send, Target

__all__ = ["Route", "SealedCredentials", "build_sealed", "route"]


class SealedCredentials(Protocol):
    """What sealed sending needs of this device's sealed-sender credentials
    (``tidings.client.sealed_keys.SealedKeys``)."""

    def access_key_for(self, account: str) -> bytes | None:
        """``account``'s unidentified-access key, if this device knows it."""

    def certificate(self, now: float) -> SenderCertificate | None:
        """This device's sender certificate, if one is valid at ``now`` (with margin)."""

    def forget_access_key(self, account: str) -> None:
        """The relay refused ``account``'s access key (ACCESS_DENIED): stop using it."""


@dataclass(frozen=True, slots=True)
class Route:
    """How an entry goes: sealed (with the access key and certificate to use) or not, and why.

    ``fallback``: it was to go sealed and does not any more (the trace says so).
    """

    sealed: bool
    reason: str
    access_key: bytes | None = None
    certificate: SenderCertificate | None = None
    fallback: bool = False


def route(
    recipient: str,
    me: str,
    credentials: SealedCredentials | None,
    unsealed: str | None,
    unsupported: str | None,
    now: float,
) -> Route:
    """How an entry for ``recipient`` goes at ``now``.

    Args:
        recipient: the entry's recipient account.
        me: this account.
        credentials: the sealed-sender credentials (``None``: no sealed sending).
        unsealed: why the entry fell back already (``None``: it did not).
        unsupported: why the relay does not take sealed sends now (``None``: it does).
        now: the wall clock.
    """
    if recipient == me:
        return Route(False, "own account")
    if unsealed is not None:
        return Route(False, unsealed, fallback=True)
    if credentials is None:
        return Route(False, "no sealed credentials")
    if unsupported is not None:
        return Route(False, unsupported, fallback=True)
    key = credentials.access_key_for(recipient)
    if key is None:
        return Route(False, "no access key")
    cert = credentials.certificate(now)
    if cert is None:
        return Route(False, "no valid sender certificate")
    return Route(True, "sealed", key, cert)


def build_sealed(
    message_id: bytes,
    recipient: str,
    targets: Sequence[DeviceRef],
    payloads: Mapping[DeviceRef, bytes],
    tag: bytes,
    chosen: Route,
    sender: IdentityKeyPair,
    pinned: Callable[[DeviceRef], bytes | None],
    rng: Callable[[int], bytes],
) -> tuple[SealedSend, Send | None]:
    """The SEALED_SEND for ``recipient``'s devices among ``targets`` and the SEND of the rest:
    this account's other devices, as a send to this account (its device set is the own
    account's for the relay); ``None`` if there are none.

    ``pinned(device)``: the device's pinned identity key (raw 32 bytes).

    Raises:
        ValueError: a recipient device has no pinned identity key, a payload cannot be sealed,
            or the frame would be invalid (the entry then goes unsealed).
    """
    assert chosen.sealed and chosen.certificate is not None and chosen.access_key is not None
    sealed_devices = []
    own: list[Target] = []
    for t in targets:
        if t.account != recipient:
            own.append(Target(t.account, t.device_id, payloads[t]))
            continue
        key = pinned(t)
        if key is None:
            raise ValueError(f"no pinned identity key for {t}")
        payload = seal_payload(
            message_id, payloads[t], chosen.certificate, sender, PublicKey(key), rng
        )
        sealed_devices.append(SealedDevice(t.device_id, payload))
    if not sealed_devices:
        raise ValueError("no device of the recipient")
    try:
        frame = SealedSend(tag, recipient, chosen.access_key, tuple(sealed_devices))
        own_send = Send(message_id, own[0].account, tuple(own)) if own else None
    except Exception as exc:  # FrameError: too large, too many devices
        raise ValueError(str(exc)) from exc
    return frame, own_send
