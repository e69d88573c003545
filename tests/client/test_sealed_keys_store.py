"""Sealed sender's keys at the client (store v12, tidings.client.sealed_keys): the profile key
and its order, who was given it, contacts' keys and access keys, blocking and rotation, the
certificate margin — with literal times, no relay."""

from __future__ import annotations

import sqlite3
from collections.abc import Coroutine, Iterator
from pathlib import Path

import pytest

from tidings.client.migrations import MIGRATIONS
from tidings.client.sealed_keys import SEALED_CERT_MARGIN, SealedKeys, _Certificate
from tidings.client.store import ClientStore, Identity, OutboxRequest
from tidings.client.store._profiles import CONTACT
from tidings.client.store._sql import statements
from tidings.delivery import ContentKind, parse_content
from tidings.delivery.content_profile import ProfileKey
from tidings.e2e import IdentityKeyPair
from tidings.e2e.access_key import access_key
from tidings.e2e.certificates import SenderCertificate, ServerCertificate
from tidings.refs import DeviceRef
from tidings.wire import Frame

ME = Identity(bytes(range(32)), "alice", 1, "laptop", "ws://relay.example:8080")
ALICE1 = DeviceRef("alice", 1)
K1 = ProfileKey(b"\x01" * 32, 0, 100.0, 1)


def mid(n: int) -> bytes:
    return n.to_bytes(16, "big")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClientStore]:
    with ClientStore(tmp_path / "client.db") as s:
        s.save_identity(ME)
        yield s


class Harness:
    """A SealedKeys with no relay: what it queues and spawns is recorded."""

    def __init__(self, store: ClientStore, me: DeviceRef = ALICE1) -> None:
        self.queued: list[bytes] = []
        self.spawned: list[Coroutine[object, object, None]] = []
        self.keys = SealedKeys(
            store,
            me,
            IdentityKeyPair(b"\x07" * 32).public,
            lambda: b"\x09" * 32,
            self._request,
            lambda: False,
            self.queued.extend,
            self.spawned.append,
            lambda: 1000.0,
        )

    async def _request(self, build: object) -> Frame:
        raise AssertionError("no relay here")


def contents(store: ClientStore, ids: list[bytes]) -> list[tuple[str, ProfileKey]]:
    out = []
    for i in ids:
        item = store.outbox_item(i)
        assert item is not None and item.kind == ContentKind.PROFILE_KEY
        content = parse_content(item.content)
        assert isinstance(content, ProfileKey)
        out.append((item.recipient, content))
    return out


# ------------------------------------------------------------ the store


def test_a_new_store_has_no_key_and_blocks_nobody(store: ClientStore) -> None:
    assert store.profile_key() is None
    assert store.blocked() == []
    assert store.contact_profile_key("bob") is None
    assert store.access_key_registered() is None


def test_the_own_key_and_what_the_relay_holds_of_it(store: ClientStore) -> None:
    store.set_profile_key(K1)
    assert store.profile_key() == K1
    store.set_access_key_registered(K1.key, access_key(K1.key))
    assert store.access_key_registered() == access_key(K1.key)
    store.set_access_key_registered(b"\x02" * 32, b"x" * 16)  # not our key: nothing
    assert store.access_key_registered() == access_key(K1.key)
    store.set_profile_key(ProfileKey(b"\x02" * 32, 1, 200.0, 1))  # a new key: not registered
    assert store.access_key_registered() is None


def test_an_own_devices_key_is_adopted_only_if_it_wins(store: ClientStore) -> None:
    store.set_profile_key(K1)
    later = ProfileKey(b"\x02" * 32, 0, 150.0, 2)
    assert not store.adopt_profile_key(1, later, 2)  # made later: ours wins
    assert store.profile_key() == K1
    assert store.profile_key_given("alice") == {}  # device 2 still lacks ours
    earlier = ProfileKey(b"\x03" * 32, 0, 50.0, 2)
    assert store.adopt_profile_key(2, earlier, 2)
    assert store.profile_key() == earlier
    assert store.profile_key_given("alice") == {2: earlier.key}
    rotated = ProfileKey(b"\x04" * 32, 1, 900.0, 3)  # a new generation beats any older one
    assert store.adopt_profile_key(3, rotated, 3)
    assert store.profile_key() == rotated
    assert not store.adopt_profile_key(3, K1, 1)  # a seq seen before: nothing
    assert store.cursor() == 3


def test_a_device_without_a_key_adopts_the_first_it_gets(store: ClientStore) -> None:
    assert store.adopt_profile_key(1, K1, 1)
    assert store.profile_key() == K1


def test_contacts_keys_are_kept_and_forgotten(store: ClientStore) -> None:
    assert store.commit_contact_profile_key(1, "bob", b"\x05" * 32, 10.0)
    assert not store.commit_contact_profile_key(1, "bob", b"\x06" * 32, 11.0)  # duplicate seq
    assert store.contact_profile_key("bob") == b"\x05" * 32
    assert store.commit_contact_profile_key(2, "bob", b"\x06" * 32, 12.0)  # a rotation
    assert store.contact_profile_key("bob") == b"\x06" * 32
    assert store.forget_contact_profile_key("bob")
    assert not store.forget_contact_profile_key("bob")
    assert store.contact_profile_key("bob") is None


def test_giving_a_key_queues_it_with_the_record(store: ClientStore) -> None:
    store.set_profile_key(K1)
    request = OutboxRequest(mid(1), "bob", K1.serialize(), ContentKind.PROFILE_KEY, 5.0)
    store.queue_profile_key([(request, [CONTACT])], K1.key)
    assert store.profile_key_given("bob") == {CONTACT: K1.key}
    assert store.contacts_given() == ["bob"]
    assert contents(store, [mid(1)]) == [("bob", K1)]


def test_blocking_is_one_transaction_and_once(store: ClientStore) -> None:
    store.set_profile_key(K1)
    new = ProfileKey(b"\x02" * 32, 1, 200.0, 1)
    request = OutboxRequest(mid(1), "carol", new.serialize(), ContentKind.PROFILE_KEY, 200.0)
    assert store.block("bob", 200.0, new, [(request, [CONTACT])])
    assert store.blocked() == ["bob"] and store.profile_key() == new
    assert store.profile_key_given("carol") == {CONTACT: new.key}
    assert not store.block("bob", 201.0, K1, [])  # already: nothing changes
    assert store.profile_key() == new
    assert store.unblock("bob") and not store.unblock("bob")
    assert store.blocked() == []


def test_a_version_11_store_gains_the_tables(tmp_path: Path) -> None:
    path = tmp_path / "v11.db"
    db = sqlite3.connect(path, isolation_level=None)
    for version, script in enumerate(MIGRATIONS[:11], 1):
        for stmt in statements(script):
            db.execute(stmt)
        db.execute(f"PRAGMA user_version = {version}")
    db.close()
    with ClientStore(path) as s:
        assert s.profile_key() is None and s.blocked() == []
    assert len(MIGRATIONS) >= 12  # v13: the sealed sends (h/sealedsend)


# ------------------------------------------------------------ SealedKeys


def test_a_contact_gets_our_key_once_per_key(store: ClientStore) -> None:
    h = Harness(store)
    first = h.keys.share_with("bob", 10.0)  # an old home: the key is made at the first need
    key = store.profile_key()
    assert key is not None and key.device == 1 and key.created_at == 10.0
    assert contents(store, first) == [("bob", key)]
    assert h.keys.share_with("bob", 11.0) == []
    assert h.keys.share_with("alice", 11.0) == []  # our own account: share_with_own
    assert h.keys.access_key_for("bob") is None  # bob gave us none
    assert h.keys.access_key_for("alice") == access_key(key.key)


def test_own_devices_get_the_key_when_one_lacks_it(store: ClientStore) -> None:
    h = Harness(store)
    assert h.keys.share_with_own((1,), 10.0) == []  # no other device
    ids = h.keys.share_with_own((1, 2, 3), 10.0)
    key = store.profile_key()
    assert key is not None and contents(store, ids) == [("alice", key)]
    assert store.profile_key_given("alice") == {2: key.key, 3: key.key}
    assert h.keys.share_with_own((1, 2, 3), 11.0) == []
    assert len(h.keys.share_with_own((1, 2, 3, 4), 12.0)) == 1  # a newly linked one


def test_a_linked_device_makes_no_key_of_its_own_for_its_siblings(store: ClientStore) -> None:
    h = Harness(store, DeviceRef("alice", 2))
    assert h.keys.share_with_own((1, 2), 10.0) == []
    assert store.profile_key() is None  # it waits for the account's


def test_blocking_rotates_and_skips_the_blocked(store: ClientStore) -> None:
    h = Harness(store)
    h.keys.share_with("bob", 10.0)
    h.keys.share_with("carol", 10.0)
    old = store.profile_key()
    assert old is not None
    store.commit_contact_profile_key(1, "bob", b"\x05" * 32, 10.0)
    assert h.keys.access_key_for("bob") == access_key(b"\x05" * 32)
    ids = h.keys.block("bob", 20.0, (1, 2))
    new = store.profile_key()
    assert new is not None and new.generation == old.generation + 1 and new.key != old.key
    sent = contents(store, ids)
    assert sorted(r for r, _ in sent) == ["alice", "carol"]  # never bob
    assert all(c == new for _, c in sent)
    assert h.keys.access_key_for("bob") is None  # blocked: we do not seal to it either
    assert h.keys.share_with("bob", 21.0) == []
    assert h.keys.block("bob", 22.0, (1, 2)) == []
    assert h.keys.unblock("bob")
    assert contents(store, h.keys.share_with("bob", 23.0)) == [("bob", new)]
    with pytest.raises(ValueError):
        h.keys.block("alice", 24.0, (1,))


def test_forgetting_an_access_key(store: ClientStore) -> None:
    h = Harness(store)
    store.commit_contact_profile_key(1, "bob", b"\x05" * 32, 10.0)
    h.keys.forget_access_key("bob")
    assert h.keys.access_key_for("bob") is None


def test_a_certificate_is_given_out_only_with_the_margin_left(store: ClientStore) -> None:
    h = Harness(store)
    assert h.keys.certificate(1000.0) is None  # none yet (a renewal is wanted)
    signer = IdentityKeyPair(b"\x08" * 32)
    server = ServerCertificate.issue(1, signer.public, signer)
    me = IdentityKeyPair(b"\x07" * 32)
    expires = 1000.0 + 24 * 3600
    cert = SenderCertificate.issue("alice", 1, me.public, int(expires * 1000), server, signer)
    h.keys._cert = _Certificate(cert, expires)
    assert h.keys.certificate(expires - SEALED_CERT_MARGIN) is cert
    assert h.keys.certificate(expires - SEALED_CERT_MARGIN + 0.001) is None
    assert SEALED_CERT_MARGIN == 3600.0
