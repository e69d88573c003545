"""The sans-I/O parts of cross-node hints (tidings.server.hints): coalescing, messages, backoff;
and the settings that name a node and its Redis."""

from __future__ import annotations

import msgpack
import pytest

from tidings.errors import ConfigError
from tidings.server import hints as h
from tidings.server.config import ServerConfig, default_node_id
from tidings.store import DeviceRef

BOB, CAROL = DeviceRef("bob", 1), DeviceRef("carol", 2)
PG = "postgresql://postgres@127.0.0.1:5432/tidings"


def test_one_commit_batch_of_many_sends_is_one_message_naming_each_device_once() -> None:
    batch = h.HintBatch("a#1")
    for _ in range(64):  # 64 sends of one commit, to bob and carol
        batch.items.update([BOB, CAROL])
    hints, present, absent = batch.take()
    assert hints == [h.Hint("a#1", (BOB, CAROL))]
    assert present == absent == set()
    assert not batch and batch.take() == ([], set(), set())  # emptied


def test_more_devices_than_a_message_holds_are_split() -> None:
    batch = h.HintBatch("a#1")
    batch.items.update(DeviceRef(f"u{i:05}", 1) for i in range(h.MAX_HINT_DEVICES + 1))
    batch.devices["bob"] = (1, 2)
    hints, _, _ = batch.take()
    assert [len(x.items) for x in hints] == [h.MAX_HINT_DEVICES, 1]
    assert hints[0].devices == (("bob", (1, 2)),) and hints[1].devices == ()


def test_presence_changes_coalesce_to_the_last_one() -> None:
    batch = h.HintBatch("a#1")
    batch.attached(BOB)
    batch.detached(BOB)
    batch.attached(CAROL)
    hints, present, absent = batch.take()
    assert hints == [] and present == {CAROL} and absent == {BOB}  # no message, two records


def test_a_hint_survives_its_encoding() -> None:
    hint = h.Hint("a#1", (BOB,), (CAROL,), (("carol", (1, 3)),))
    assert h.decode(h.encode(hint)) == hint
    shared = h.Hint("a#1", takes=(("sends", "bob", 3.0), ("one_time", ["bob", 1], 1.0)))
    shared = h.Hint(shared.sender, takes=shared.takes, push=(CAROL,))
    assert h.decode(h.encode(shared)) == shared


def test_a_hint_of_a_node_of_the_version_before_is_read() -> None:
    old = msgpack.packb(["a#1", [["bob", 1]], [], []])  # four fields: no takes, no push
    assert h.decode(old) == h.Hint("a#1", (BOB,))


def test_rate_limit_takes_add_up_per_budget_and_key_in_one_message() -> None:
    batch = h.HintBatch("a#1")
    for _ in range(5):
        batch.took("sends", "bob", "bob")
    batch.took("one_time", BOB, ["bob", 1])
    batch.push.add(CAROL)
    assert batch
    (hint,), _, _ = batch.take()
    assert sorted(hint.takes, key=str) == sorted(
        [("sends", "bob", 5.0), ("one_time", ["bob", 1], 1.0)], key=str
    )
    assert hint.push == (CAROL,) and hint.items == ()
    assert not batch


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",  # not msgpack
        msgpack.packb(["a", [], []]),  # three parts
        msgpack.packb(["", [], [], []]),  # no sender
        msgpack.packb(["a", [["bob"]], [], []]),  # a ref without its id
        msgpack.packb(["a", [["bob", -1]], [], []]),  # a negative id
        msgpack.packb(["a", [["bob", True]], [], []]),  # a bool is no id
        msgpack.packb(["a", [], [], [["bob", ["x"]]]]),  # an id that is text
        msgpack.packb(["a", [], [], [], []]),  # five parts
        msgpack.packb(["a", [], [], [], [["sends", "bob"]], []]),  # a take without a count
        msgpack.packb(["a", [], [], [], [["sends", "bob", 0]], []]),  # a count of none
        msgpack.packb(["a", [], [], [], [["sends", "bob", True]], []]),  # a bool is no count
        msgpack.packb(["a", [], [], [], [], [["bob"]]]),  # a push ref without its id
    ],
)
def test_a_message_that_is_no_hint_is_refused(data: bytes) -> None:
    with pytest.raises(h.HintError):
        h.decode(data)


def test_presence_keys_put_the_id_first() -> None:
    assert h.presence_key(DeviceRef("a:b", 3)) == "tidings:presence:3:a:b"


def test_backoff_doubles_to_its_ceiling_with_jitter_and_resets() -> None:
    top = h.Backoff(random=lambda: 0.999999)
    waits = [round(top.next(), 3) for _ in range(8)]
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    low = h.Backoff(random=lambda: 0.0)
    assert [low.next() for _ in range(2)] == [0.05, 0.1]  # half of the base at the least
    low.reset()
    assert low.next() == 0.05


def test_node_id_defaults_to_host_and_port() -> None:
    assert ServerConfig(port=7400).node == default_node_id(7400)
    assert default_node_id(7400).endswith(":7400")
    assert ":pid" in default_node_id(0)  # any free port: the process id tells nodes apart
    assert ServerConfig(node_id="relay-3").node == "relay-3"


@pytest.mark.parametrize("bad", ["two words", "x" * 65, "tab\there"])
def test_a_bad_node_id_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="node_id"):
        ServerConfig(node_id=bad)


def test_redis_url_is_checked() -> None:
    assert ServerConfig(store=PG, redis_url="redis://127.0.0.1:6379/0").redis_url
    with pytest.raises(ConfigError, match="redis_url: expected a URL"):
        ServerConfig(store=PG, redis_url="http://127.0.0.1:6379")
    with pytest.raises(ConfigError, match="needs the PostgreSQL store"):
        ServerConfig(redis_url="redis://127.0.0.1:6379/0")  # sqlite: one node, nothing to hint
