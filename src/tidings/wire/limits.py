"""Protocol version, error codes and the named limits of the wire format.

Every limit has a one-line rationale. Servers may configure *lower* limits (see
``tidings.server.config``); they can never accept more than these, because peers size their
buffers by them.
"""

from __future__ import annotations

import enum

#: Version of the frame protocol, stated in HELLO/REGISTER. 2: WELCOME tells the backlog
#: (docs/protocol.md, "Versions").
PROTOCOL_VERSION = 2

#: The Noise prologue: both sides must agree on it or the handshake fails. It names the
#: transport (Noise Pipes framing, unchanged since version 1), not the frame protocol, so a
#: client of another frame version completes the handshake and is told UNSUPPORTED_VERSION.
PROLOGUE = b"tidings/1"

#: Length of a message id: 128 bits, chosen by the sending device (DESIGN §5).
MESSAGE_ID_LEN = 16

#: Longest account name. Names are short handles, like e-mail local parts.
MAX_ACCOUNT_NAME = 32

#: Longest device name ("alice's laptop").
MAX_DEVICE_NAME = 64

#: Longest link code (LINK_CODE, REGISTER): the server issues 16 random bytes; room for longer.
MAX_LINK_CODE = 64

#: Longest device certificate a relay stores (DEVICE_QUERY, DEVICE_DETAILS): opaque to it; the
#: client's certificate (``tidings.e2e.certificate``) is at most 208 bytes. Room, no more.
MAX_DEVICE_CERTIFICATE = 256

#: Longest reason text of ERROR and REFUSED, in UTF-8 bytes: a short phrase for logs, not prose.
MAX_REASON = 256

#: Largest payload for one device. Text, receipts and key material fit easily; Signal caps a
#: message body near this size and moves attachments out of band (a later issue).
MAX_PAYLOAD = 64 * 1024

#: Most target devices in one send (recipient's devices + the sender's other devices). Signal
#: allows 1 primary + 5 linked devices per account; two accounts' worth plus headroom.
MAX_TARGETS = 32

#: Largest SEND frame on the wire: all payloads together. Bounds the memory one frame can pin.
MAX_SEND_FRAME = 1024 * 1024

#: Most recipient devices in one MULTI_SEND. Signal and WhatsApp cap a group at about 1,000
#: members (1,000 and 1,024); a larger fan-out is split by the sender into several multi-sends
#: along account boundaries. 1,000 per-device parts of at most 128 bytes are ~140 KB of frame.
MAX_MULTI_RECIPIENTS = 1000

#: Largest per-device part of a MULTI_SEND: a sealed-sender v2 header is 49 bytes (version byte,
#: ``C_i`` 32, ``AT_i`` 16); room for a post-quantum or longer header, not for a second payload.
MAX_MULTI_PART = 128

#: Largest shared ciphertext of a MULTI_SEND: what a device receives is its part followed by
#: the shared ciphertext, one DELIVER payload, so both together fit :data:`MAX_PAYLOAD`.
MAX_MULTI_SHARED = MAX_PAYLOAD - MAX_MULTI_PART

#: Length of an unidentified-access key (SET_ACCESS_KEY, SEALED_SEND): 16 bytes, as Signal's,
#: derived by the client from its 32-byte profile key (docs/protocol.md §14).
ACCESS_KEY_LEN = 16

#: Length of a sealed send's tag: 128 random bits chosen by the sender, as a message id.
TAG_LEN = 16

#: Most tags in one TAG_QUERY: a client asks about its sends of the last days at once; 256
#: tags are ~4.6 KB of answer, still one small frame.
MAX_TAGS_PER_QUERY = 256

#: Longest sender certificate (SENDER_CERT): ours are at most ~260 bytes (a 32-byte account, two
#: keys, two signatures); room, no more.
MAX_SENDER_CERTIFICATE = 512

#: Largest DELIVER frame: one payload plus its header.
MAX_DELIVER_FRAME = MAX_PAYLOAD + 512

#: Largest control frame (HELLO, ACK, PING, SENT, ERROR, …): a few small fields.
MAX_CONTROL_FRAME = 2048

#: Length of an X25519 public prekey (signed or one-time) and of a bare identity key: RFC 7748 §5.
PREKEY_PUBLIC_LEN = 32

#: Longest identity key: 32 bytes bare, or 33 with libsignal's 0x05 type byte in front.
MAX_IDENTITY_KEY = 33

#: Length of a prekey signature (Ed25519 or XEdDSA).
PREKEY_SIGNATURE_LEN = 64

#: Length of an ML-KEM-1024 public (encapsulation) key: FIPS 203 Table 3.
KEM_PUBLIC_KEY_LEN = 1568

#: Key ids are unsigned 32-bit, as libsignal's PreKeyId, SignedPreKeyId and KyberPreKeyId.
MAX_KEY_ID = 2**32 - 1

#: Most one-time prekeys, and most KEM prekeys, in one PREKEYS_UPLOAD: Signal's batch size
#: (PreKeyUtil.BATCH_SIZE), also the Signal server's per-request cap.
MAX_PREKEYS_PER_UPLOAD = 100

#: Largest PREKEYS_UPLOAD: 100 KEM prekeys of ~1.6 KB are ~165 KB, 100 one-time prekeys 4 KB.
MAX_PREKEYS_UPLOAD_FRAME = 192 * 1024

#: Largest PREKEY_BUNDLE: one KEM prekey (~1.6 KB) dominates a bundle of ~1.9 KB at most.
MAX_PREKEY_BUNDLE_FRAME = 4096

#: Longest Web Push endpoint URL (PUSH_REGISTER), in bytes: push services' URLs are a few
#: hundred bytes (FCM's ~170, Mozilla's ~300, UnifiedPush distributors' less).
MAX_PUSH_ENDPOINT = 1024

#: A push subscription's public key (``p256dh``): an uncompressed P-256 point (RFC 8291 §3.1).
PUSH_KEY_LEN = 65

#: A push subscription's authentication secret (``auth``): 16 bytes (RFC 8291 §3.2).
PUSH_AUTH_LEN = 16

#: Largest frame of any type: the stream decoder refuses a longer length prefix at once,
#: before buffering a byte of the body.
MAX_FRAME = MAX_SEND_FRAME

#: Length prefix of each frame in the decrypted stream: 4 bytes, big-endian.
LENGTH_PREFIX = 4

#: Largest frame a relay accepts before the peer's HELLO: the frames legal then are REGISTER (at
#: most 177 bytes: a 32-character account, a 64-byte name and link code), HELLO (20), PING/PONG
#: (11) and ERROR (279 with the longest reason). A peer that has not said who it is can make the
#: relay buffer this much of a frame, not MAX_FRAME (DESIGN §4, issue 8).
MAX_PRE_AUTH_FRAME = 512


class ErrorCode(enum.IntEnum):
    """Error codes carried by ERROR, REFUSED and REQUEST_FAILED frames (stable: never renumber)."""

    MALFORMED_FRAME = 1  #: bytes that do not decode to a valid frame
    FRAME_TOO_LARGE = 2  #: a frame over its type's limit
    UNEXPECTED_FRAME = 3  #: a valid frame in the wrong state or direction
    UNSUPPORTED_VERSION = 4  #: the peer speaks a protocol version we do not
    UNKNOWN_DEVICE = 5  #: HELLO from a Noise key no device is registered with
    ACCOUNT_EXISTS = 6  #: REGISTER of a new account whose name is taken
    INVALID_LINK_CODE = 7  #: REGISTER to an existing account without a valid link code
    NO_SUCH_ACCOUNT = 8  #: a SEND or GET_DEVICES naming an account that does not exist
    DEVICE_MISMATCH = 9  #: a SEND whose device set is not the current one (see REFUSED)
    QUEUE_FULL = 10  #: a target device's queue is at its limit
    RATE_LIMITED = 11  #: the account sends faster than its rate limit
    PAYLOAD_TOO_LARGE = 12  #: a payload over the server's payload limit
    INVALID_ACK = 13  #: an ACK above the highest seq delivered on this connection
    KEEPALIVE_TIMEOUT = 14  #: no frame from the peer within the keepalive deadline
    SHUTTING_DOWN = 15  #: the server is stopping; reconnect later
    INTERNAL = 16  #: the server failed; the request changed nothing and may be retried
    KEY_ALREADY_REGISTERED = 17  #: REGISTER with a Noise key that already has a device
    INVALID_FIELD = 18  #: a field out of range (bad name, bad message id length, …)
    HANDSHAKE_FAILED = 19  #: the Noise handshake failed (never sent: names the close in logs)
    NO_PREKEYS = 20  #: a PREKEY_FETCH for a device that has no prekey bundle to hand out
    STORE_UNAVAILABLE = 21  #: the relay's store cannot write now (disk full, I/O error)
    AUTH_TIMEOUT = 22  #: no REGISTER or HELLO within the deadline after the Noise handshake
    TOO_MANY_CONNECTIONS = 23  #: the relay is at its connection cap (in all, or for this address)
    PUSH_REFUSED = 24  #: a push endpoint the relay will not call (SSRF rules, no such host)
    TOO_MANY_DEVICES = 25  #: REGISTER with a link code to an account at its device limit
    LAST_DEVICE = 26  #: UNLINK of an account's only device (nothing would be left to use it)
    RECIPIENTS_REFUSED = (
        27  #: a MULTI_SEND refused for some recipient accounts (MULTI_SENT says which)
    )
    NOT_OWN_DEVICE = 30  #: a DEVICE_QUERY certificate for a device of another account
    ACCESS_DENIED = 31  #: a SEALED_SEND without the recipient's unidentified-access key
